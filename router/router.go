package router

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"weavenet/mesh"

	"weavenet/crypto"
)

// DefaultPort is the TCP (control) and UDP (data) port of Weave Net.
const DefaultPort = 6783

// AnyPort as a port asks the system for a free one (tests, several nodes in
// one process); the port it chose is in LocalAddr, or Node.Addr.
const AnyPort = -1

// DefaultMTU is the overlay MTU: a 1500-byte underlay minus the sleeve
// overhead, the same default as Weave Net so mixed clusters agree.
const DefaultMTU = 1376

// Device is the kernel side of the router: a source and sink of Ethernet
// frames, each preceded by a 10-byte virtio-net header (VirtioNetHdrLen).
// Read and Write move exactly one frame; the caller owns the buffer.
type Device interface {
	Read(b []byte) (int, error)
	Write(b []byte) (int, error)
	Close() error
}

// PlainDevice is implemented by a Device that cannot take offloaded frames:
// a TUN adapter or a userspace network stack rather than a TAP with virtio
// headers. When PlainFrames reports true, every frame the router writes to
// it has a blank virtio header and complete checksums, and none is longer
// than the MTU plus the Ethernet header: the router segments and finishes
// whatever its peers sent offloaded. Frames read from such a device should
// carry a blank virtio header too.
type PlainDevice interface {
	Device
	PlainFrames() bool
}

// Config is what a Router needs from its caller.
type Config struct {
	// Device is where captured frames come from and delivered frames go.
	Device Device
	// Host and Port are the UDP address to listen on. Port 0 picks
	// DefaultPort, AnyPort a free one.
	Host string
	Port int
	// MTU is the overlay MTU the bridge and containers use; reported in status.
	MTU int
	// Logger receives connection events; nil means slog.Default().
	Logger *slog.Logger
	// HostLocal are addresses every host gives its own bridge (the DNS
	// server's, say): ARP for them never leaves the host, so each host's
	// containers find their own host's, and no host hears the others claim
	// the same address.
	HostLocal []netip.Addr
	// WeaveCompat speaks only what Weave Net 2.x speaks, on every link:
	// plain Ethernet frames (offloaded super-frames are cut into segments
	// first) and NaCl for encryption, even where both ends could do
	// better. For testing interoperability, or a policy of one format.
	WeaveCompat bool
	// FastDatapath, if not nil, carries known unicast to directly
	// connected peers that have one too, over links that need no
	// encryption, in the kernel (see fastdp.go). The Router closes it.
	FastDatapath FastDatapath
	// FastDatapathOff says why there is none, for status: "--datapath
	// sleeve", say.
	FastDatapathOff string
	// EncryptedSleeve says why encrypted links stay on the sleeve (what
	// the kernel's IPsec probe found), for status.
	EncryptedSleeve string
}

// Router forwards frames between its Device and its peers. Build it with New,
// hand it to mesh as the Overlay, then Start it with the mesh router.
type Router struct {
	dev Device
	// plainDev: dev takes only plain, complete frames (see PlainDevice).
	plainDev bool
	sock     *udpSocket
	mtu      int
	log      *slog.Logger
	// fastCipher: we offer, and accept, AES-GCM on encrypted links.
	// partialCsum: we offer, and accept, the fast format.
	fastCipher  bool
	partialCsum bool
	hostLocal   []netip.Addr
	fast        fastState // fastdp.go

	// Set by Start, read-only after.
	mesh *mesh.Router
	name mesh.PeerName

	macs   *macCache
	rx     *coalescer // the receive loop's
	relays relayQueue // the receive loop's
	stats  counters

	// fwds maps a directly connected peer to its confirmed forwarder. It is
	// read for every datagram and changed only when connections come and go,
	// so it is an immutable map swapped under fwdMu.
	fwds  atomic.Pointer[map[mesh.PeerName]*forwarder]
	fwdMu sync.Mutex
	// confirmed are, per peer, the forwarders confirmed and not stopped,
	// the latest last; fwdMu guards it, and forwarder.stopped.
	confirmed map[mesh.PeerName][]*forwarder
	// routes is the forwarding loops' view of mesh's routes (routes.go),
	// taken again by routeLoop when routesDirty says so.
	routes      atomic.Pointer[routeView]
	routesDirty chan struct{}

	closing chan struct{}
	wg      sync.WaitGroup
	closed  sync.Once

	failed   chan struct{} // closed when the device is given up on
	failErr  error         // why; set before failed is closed
	failOnce sync.Once
}

// New opens the router's UDP socket. Nothing is forwarded until Start.
func New(cfg Config) (*Router, error) {
	if cfg.Device == nil {
		return nil, errors.New("router: Config.Device is nil")
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if (cfg.Port < 0 && cfg.Port != AnyPort) || cfg.Port > 65535 {
		return nil, fmt.Errorf("router: Config.Port %d out of range", cfg.Port)
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	laddr := &net.UDPAddr{Port: max(cfg.Port, 0)}
	if cfg.Host != "" {
		ip, err := netip.ParseAddr(cfg.Host)
		if err != nil {
			return nil, fmt.Errorf("router: Config.Host %q: %w", cfg.Host, err)
		}
		laddr.IP = ip.AsSlice()
	}
	sock, err := listenUDP(laddr)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	r := newRouter(cfg.Device, sock, cfg.Logger)
	r.mtu = cfg.MTU
	r.fastCipher = crypto.HardwareAES() && !cfg.WeaveCompat
	r.partialCsum = !cfg.WeaveCompat
	r.hostLocal = cfg.HostLocal
	r.fast.fastConfig = fastConfig{dev: cfg.FastDatapath, off: cfg.FastDatapathOff, encrypted: cfg.EncryptedSleeve}
	if r.fast.off == "" {
		r.fast.off = "no fast datapath on this peer"
	}
	if r.fast.encrypted == "" {
		r.fast.encrypted = "the kernel's IPsec datapath is not used"
	}
	return r, nil
}

// newRouter builds a Router around dev and sock with the state the
// forwarding loops need, and nothing negotiated yet.
func newRouter(dev Device, sock *udpSocket, log *slog.Logger) *Router {
	plain, _ := dev.(PlainDevice)
	r := &Router{
		dev:      dev,
		plainDev: plain != nil && plain.PlainFrames(),
		sock:     sock,
		log:      log,
		macs:     newMACCache(),
		rx:       newCoalescer(),
		relays:   relayQueue{batch: newRunBatch()},
		closing:  make(chan struct{}),
		failed:   make(chan struct{}),

		routesDirty: make(chan struct{}, 1),
		confirmed:   map[mesh.PeerName][]*forwarder{},
	}
	r.rx.stats = &r.stats
	empty := map[mesh.PeerName]*forwarder{}
	r.fwds.Store(&empty)
	r.routes.Store(&routeView{&mesh.RouteSnapshot{}})
	return r
}

// Start begins forwarding. m must be the mesh router this Router was given
// to as its Overlay.
func (r *Router) Start(m *mesh.Router) {
	r.mesh = m
	r.name = m.Ourself.Name
	m.Peers.OnGC(func(p *mesh.Peer) { r.macs.forgetPeer(p.Name); r.routesChanged() })
	m.Routes.OnChange(r.routesChanged)
	r.routesChanged()
	r.wg.Add(4)
	go func() { defer r.wg.Done(); r.routeLoop() }()
	go func() { defer r.wg.Done(); r.sendLoop() }()
	go func() { defer r.wg.Done(); r.receiveLoop() }()
	go func() { defer r.wg.Done(); r.macs.expireLoop(r.closing) }()
	if r.fast.dev != nil {
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.fastLoop() }()
	}
}

// Close stops forwarding, closes the socket and the device, and waits for the
// router's goroutines to end.
func (r *Router) Close() error {
	var err error
	r.closed.Do(func() {
		close(r.closing)
		err = errors.Join(r.sock.close(), r.dev.Close(), r.closeFast())
		r.wg.Wait()
	})
	return err
}

// DeviceGiveUp is how long the router keeps reading a Device whose every
// read fails before it gives up on it: longer than any hiccup, short
// enough that a deleted interface is noticed at once.
const DeviceGiveUp = 2 * time.Second

// Failed is closed when the router has given up on its Device: every read
// failed for DeviceGiveUp, as when the interface is deleted under it. Err
// says why. Nothing more comes from the device; the owner should Close the
// router and start again with a new device (weaved exits, for its service
// manager to restart it).
func (r *Router) Failed() <-chan struct{} { return r.failed }

// Err is why the router gave up on its Device, once Failed is closed;
// nil before.
func (r *Router) Err() error {
	select {
	case <-r.failed:
		return r.failErr
	default:
		return nil
	}
}

func (r *Router) fail(err error) {
	r.failOnce.Do(func() {
		r.failErr = err
		close(r.failed)
	})
}

// LocalAddr is the UDP address the router receives on.
func (r *Router) LocalAddr() netip.AddrPort {
	return r.sock.localAddr()
}

func (r *Router) forwarder(name mesh.PeerName) *forwarder {
	return (*r.fwds.Load())[name]
}

// setForwarder makes f, just confirmed, the forwarder for its peer, or with
// f nil removes replace, stopped, putting back the latest other one still
// confirmed, if any. Two connections to a peer can be confirmed at once
// for a moment: mesh settles a duplicate while both handshakes finish, and
// the one it drops may be confirmed after the one it keeps. Without the
// putting back, the dropped one's stop left the peer without a forwarder:
// the kept connection's heartbeats were dropped as from an unknown peer,
// and it failed after confirmTimeout.
func (r *Router) setForwarder(name mesh.PeerName, f *forwarder, replace *forwarder) {
	r.fwdMu.Lock()
	defer r.fwdMu.Unlock()
	if f != nil {
		if f.stopped {
			return // stopped before its goroutine saw the confirmation
		}
		r.confirmed[name] = append(slices.DeleteFunc(r.confirmed[name], func(g *forwarder) bool { return g == f }), f)
	} else {
		replace.stopped = true
		left := slices.DeleteFunc(r.confirmed[name], func(g *forwarder) bool { return g == replace })
		if len(left) == 0 {
			delete(r.confirmed, name)
		} else {
			r.confirmed[name] = left
		}
		if (*r.fwds.Load())[name] != replace {
			return // a newer connection already took the slot
		}
		if len(left) > 0 {
			f = left[len(left)-1]
		}
	}
	old := *r.fwds.Load()
	m := make(map[mesh.PeerName]*forwarder, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	if f == nil {
		delete(m, name)
	} else {
		m[name] = f
	}
	r.fwds.Store(&m)
}
