package router

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"

	"weavenet/mesh"

	"weavenet/gossip"
)

// NodeConfig describes a Node. The zero value of every field is a usable
// default, except that a Node with no Device only relays.
type NodeConfig struct {
	// Device is where this node's own traffic enters and leaves the
	// overlay: a TAP port on a bridge (tun.OpenTAP), or a userspace stack
	// (package netstack). nil makes a relay: the node carries its peers'
	// traffic and gossip but has no traffic of its own. The Node owns the
	// Device from NewNode on: Close closes it, and so does a failed NewNode.
	Device Device

	// Name is the peer name, six hex bytes as in aa:bb:cc:dd:ee:ff. Empty
	// means the one kept in DataDir (generated there the first time), or,
	// with no DataDir either, a new random name on every start.
	Name string
	// DataDir keeps the generated Name across restarts. Optional.
	DataDir string
	// NickName is shown beside the name in status; empty means the hostname.
	NickName string

	// Host is the address to listen on, TCP (gossip) and UDP (data); the
	// zero Addr means every IPv4 address of the host.
	Host netip.Addr
	// Port is the TCP and UDP port: 0 means DefaultPort (6783), AnyPort a
	// free port chosen by the system (see Node.Addr). Peers named without a
	// port are dialled on this node's port.
	Port int

	// Password, when set, encrypts gossip and data and refuses peers
	// without the same password. PasswordFile reads it from the first line
	// of a file instead; set at most one of them.
	Password     []byte
	PasswordFile string
	// PasswordKDF is how the password keys connections: gossip.KDFArgon2id
	// ("" too) or gossip.KDFWeave, only for networks with Weave Net 2.x
	// peers. Every peer of a network must use the same.
	PasswordKDF string
	// TrustedSubnets: a connection to a peer inside one of these, which
	// trusts our address in turn, is not encrypted. IPv4 prefixes.
	TrustedSubnets []netip.Prefix

	// Peers are connected to by Start and retried with backoff for as long
	// as the node runs: HOST or HOST:PORT, HOST a name or an IPv4 address.
	Peers []string
	// NoDiscovery stops the node from connecting to peers it hears of from
	// its peers; by default it does, so naming one member joins the whole
	// network.
	NoDiscovery bool
	// ConnLimit caps the number of connections; 0 means 100.
	ConnLimit int

	// MTU is the overlay MTU; 0 means the Device's (if it has an MTU() int
	// method, as a netstack.Stack has) or DefaultMTU. Between 576 and 65000,
	// and no larger than the Device's. Every peer should use the same.
	MTU int
	// Logger receives the node's log (connections coming and going, mesh's
	// messages); nil discards it.
	Logger *slog.Logger
}

// Bounds of NodeConfig.MTU: IPv4's minimum, and what still fits one
// datagram with the sleeve headers in front.
const (
	minMTU = 576
	maxMTU = 65000
)

// Node is one peer of a weavenet overlay, everything an embedding program
// needs in one value: the data plane (a Router on its Device), the gossip
// mesh, its TCP and UDP ports, status and events. Build it with NewNode,
// then Start it; Close releases it. All methods are safe for concurrent use.
type Node struct {
	cfg    NodeConfig // with defaults filled in
	log    *slog.Logger
	router *Router
	gossip *gossip.Node
	ln     *net.TCPListener
	addr   netip.AddrPort

	mu      sync.Mutex
	started bool
	closed  bool

	subMu      sync.Mutex
	subs       map[*subscriber]struct{}
	subsClosed bool

	closing      chan struct{}
	notes        chan Event
	peersChanged chan struct{}
	wg           sync.WaitGroup // accept loop, event loop, connection watchers
	closeOnce    sync.Once
	closeErr     error
}

// NewNode checks cfg, binds the TCP and UDP ports and builds the node. It
// starts nothing: connections are accepted and made from Start on. Every
// error names the NodeConfig field at fault.
func NewNode(cfg NodeConfig) (n *Node, err error) {
	defer func() {
		if err != nil && cfg.Device != nil {
			cfg.Device.Close()
		}
	}()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	password, err := cfg.check()
	if err != nil {
		return nil, err
	}
	if cfg.Name == "" && cfg.DataDir == "" {
		cfg.Name = randomPeerName()
	}
	if cfg.NickName == "" {
		if cfg.NickName, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("router: NodeConfig.NickName: empty, and no hostname to use: %w", err)
		}
	}
	dev := cfg.Device
	if dev == nil {
		dev = newRelayDevice()
	}
	ln, r, err := listen(cfg, dev)
	if err != nil {
		if cfg.Device == nil {
			dev.Close()
		}
		return nil, err
	}
	n = &Node{
		cfg:          cfg,
		log:          cfg.Logger,
		router:       r,
		ln:           ln,
		addr:         ln.Addr().(*net.TCPAddr).AddrPort(),
		subs:         map[*subscriber]struct{}{},
		closing:      make(chan struct{}),
		notes:        make(chan Event, 256),
		peersChanged: make(chan struct{}, 1),
	}
	n.addr = netip.AddrPortFrom(n.addr.Addr().Unmap(), n.addr.Port())
	g, err := gossip.New(gossip.Config{
		Name:              cfg.Name,
		NickName:          cfg.NickName,
		Host:              hostString(cfg.Host),
		Port:              int(n.addr.Port()),
		DataDir:           cfg.DataDir,
		Discovery:         !cfg.NoDiscovery,
		ConnLimit:         cfg.ConnLimit,
		Password:          password,
		PasswordKDF:       cfg.PasswordKDF,
		TrustedSubnets:    cfg.TrustedSubnets,
		Logger:            cfg.Logger,
		OnConnectionError: n.connectionError,
	}, nodeOverlay{n})
	if err != nil {
		ln.Close()
		r.Close() // closes the device too
		cfg.Device = nil
		return nil, fmt.Errorf("router: NodeConfig.DataDir: %w", err)
	}
	n.gossip = g
	return n, nil
}

// check validates cfg, fills in defaults and returns the password.
func (cfg *NodeConfig) check() ([]byte, error) {
	if cfg.Name != "" {
		if _, err := mesh.PeerNameFromUserInput(cfg.Name); err != nil {
			return nil, fmt.Errorf("router: NodeConfig.Name %q: want six hex bytes like aa:bb:cc:dd:ee:ff: %w", cfg.Name, err)
		}
	}
	if cfg.Host.IsValid() {
		cfg.Host = cfg.Host.Unmap()
		if !cfg.Host.Is4() {
			return nil, fmt.Errorf("router: NodeConfig.Host %v: want an IPv4 address (the sleeve transport is IPv4)", cfg.Host)
		}
	}
	switch {
	case cfg.Port == 0:
		cfg.Port = DefaultPort
	case cfg.Port == AnyPort:
	case cfg.Port < 0 || cfg.Port > 65535:
		return nil, fmt.Errorf("router: NodeConfig.Port %d: want 1-65535, 0 for %d or AnyPort", cfg.Port, DefaultPort)
	}
	if cfg.ConnLimit < 0 {
		return nil, fmt.Errorf("router: NodeConfig.ConnLimit %d: want 0 (the default, 100) or more", cfg.ConnLimit)
	}
	devMTU := 0
	if d, ok := cfg.Device.(interface{ MTU() int }); ok {
		devMTU = d.MTU()
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
		if devMTU > 0 {
			cfg.MTU = devMTU
		}
	}
	if cfg.MTU < minMTU || cfg.MTU > maxMTU {
		return nil, fmt.Errorf("router: NodeConfig.MTU %d: want %d-%d, or 0 for the default", cfg.MTU, minMTU, maxMTU)
	}
	if devMTU > 0 && cfg.MTU > devMTU {
		return nil, fmt.Errorf("router: NodeConfig.MTU %d is larger than the Device's MTU %d: leave it 0 to use the Device's", cfg.MTU, devMTU)
	}
	for i, p := range cfg.TrustedSubnets {
		if !p.IsValid() || !p.Addr().Unmap().Is4() {
			return nil, fmt.Errorf("router: NodeConfig.TrustedSubnets[%d] %v: want an IPv4 CIDR such as 10.0.0.0/8", i, p)
		}
	}
	for i, p := range cfg.Peers {
		if err := checkPeer(p); err != nil {
			return nil, fmt.Errorf("router: NodeConfig.Peers[%d]: %w", i, err)
		}
	}
	if len(cfg.Password) > 0 && cfg.PasswordFile != "" {
		return nil, errors.New("router: NodeConfig.Password and NodeConfig.PasswordFile are both set: use one")
	}
	if cfg.PasswordFile == "" {
		if len(cfg.Password) == 0 {
			return nil, nil
		}
		return cfg.Password, nil
	}
	b, err := os.ReadFile(cfg.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("router: NodeConfig.PasswordFile: %w", err)
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimRight(pw, "\r")
	if pw == "" {
		return nil, fmt.Errorf("router: NodeConfig.PasswordFile %s: the first line is empty", cfg.PasswordFile)
	}
	return []byte(pw), nil
}

// checkPeer accepts what mesh can dial: HOST or HOST:PORT with a numeric
// port, HOST not empty.
func checkPeer(p string) error {
	host := p
	if strings.Contains(p, ":") {
		h, port, err := net.SplitHostPort(p)
		if err != nil {
			return fmt.Errorf("%q: want HOST or HOST:PORT", p)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %q is not a number from 1 to 65535", p, port)
		}
		host = h
	}
	if host == "" {
		return fmt.Errorf("%q: empty host", p)
	}
	if strings.ContainsAny(host, " /,") {
		return fmt.Errorf("%q: %q is neither a host name nor an IPv4 address", p, host)
	}
	return nil
}

// listen binds the TCP listener and the router's UDP socket on one port.
// With AnyPort it takes a port the system offers for TCP and tries again if
// its UDP twin is taken.
func listen(cfg NodeConfig, dev Device) (*net.TCPListener, *Router, error) {
	host := hostString(cfg.Host)
	for attempt := 0; ; attempt++ {
		port := max(cfg.Port, 0)
		ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(listenAddr(cfg.Host), uint16(port))))
		if err != nil {
			return nil, nil, fmt.Errorf("router: NodeConfig.Port %d: TCP: %w", cfg.Port, err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		r, err := New(Config{Device: dev, Host: host, Port: port, MTU: cfg.MTU, Logger: cfg.Logger})
		if err == nil {
			return ln, r, nil
		}
		ln.Close()
		if cfg.Port != AnyPort || attempt == 20 {
			return nil, nil, fmt.Errorf("router: NodeConfig.Port %d: UDP: %w", cfg.Port, err)
		}
	}
}

func hostString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func listenAddr(a netip.Addr) netip.Addr {
	if !a.IsValid() {
		return netip.IPv4Unspecified()
	}
	return a
}

// randomPeerName makes a locally administered unicast MAC, as mesh names are.
func randomPeerName() string {
	var mac [6]byte
	_, _ = rand.Read(mac[:]) // never fails
	mac[0] = (mac[0] | 0x02) &^ 0x01
	return net.HardwareAddr(mac[:]).String()
}

// Start starts forwarding, accepts peers' connections and connects to
// NodeConfig.Peers. ctx bounds only the start itself (looking up the peers'
// names); the node runs until Close. A peer whose name does not resolve is
// reported in the error and skipped, the others are connected to: the node
// is running whenever Start got past its checks, and must be closed.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	switch {
	case n.closed:
		n.mu.Unlock()
		return fmt.Errorf("router: start node: %w", net.ErrClosed)
	case n.started:
		n.mu.Unlock()
		return errors.New("router: node already started")
	}
	if err := ctx.Err(); err != nil {
		n.mu.Unlock()
		return fmt.Errorf("router: start node: %w", err)
	}
	n.started = true
	n.mu.Unlock()

	m := n.gossip.Mesh
	n.router.Start(m)
	m.Routes.OnChange(n.signalPeers)
	m.Peers.OnGC(func(*mesh.Peer) { n.signalPeers() })
	n.wg.Add(2)
	go func() { defer n.wg.Done(); _ = n.gossip.Serve(n.ln) }()
	go func() { defer n.wg.Done(); n.eventLoop() }()

	var errs []error
	peers := make([]string, 0, len(n.cfg.Peers))
	for i, p := range n.cfg.Peers {
		if err := resolvePeer(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("router: NodeConfig.Peers[%d] %q: %w", i, p, err))
			continue
		}
		peers = append(peers, p)
	}
	if err := n.Connect(peers...); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func resolvePeer(ctx context.Context, p string) error {
	host := p
	if h, _, err := net.SplitHostPort(p); err == nil {
		host = h
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	_, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
	return err
}

// Connect adds peers (HOST or HOST:PORT) to the ones the node keeps
// connecting to, with backoff, until Forget or Close. Already known peers
// are tried again at once.
func (n *Node) Connect(peers ...string) error {
	for _, p := range peers {
		if err := checkPeer(p); err != nil {
			return fmt.Errorf("router: connect: %w", err)
		}
	}
	if n.isClosed() {
		return fmt.Errorf("router: connect: %w", net.ErrClosed)
	}
	if len(peers) == 0 {
		return nil
	}
	if err := n.gossip.Connect(peers, false); err != nil {
		return fmt.Errorf("router: connect: %w", err)
	}
	return nil
}

// Forget stops connecting to peers, spelled as they were given to Connect
// or NodeConfig.Peers. Connections already up stay up.
func (n *Node) Forget(peers ...string) {
	if !n.isClosed() {
		n.gossip.Forget(peers)
	}
}

// Failed is closed when the node has given up on its Device (see
// Router.Failed): the node then carries nothing, and Err says why; Close it
// and build another on a new device.
func (n *Node) Failed() <-chan struct{} { return n.router.Failed() }

// Err is why the node gave up on its Device, once Failed is closed; nil
// before.
func (n *Node) Err() error { return n.router.Err() }

// Addr is the address the node listens on, TCP and UDP: Host and the port,
// the one the system chose when NodeConfig.Port was AnyPort.
func (n *Node) Addr() netip.AddrPort { return n.addr }

// Name is the node's peer name, NickName its nickname.
func (n *Node) Name() string { return n.gossip.Name.String() }

// NickName is the name shown beside Name in status.
func (n *Node) NickName() string { return n.cfg.NickName }

// Router is the node's data plane, for its counters and lower-level use.
func (n *Node) Router() *Router { return n.router }

func (n *Node) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// Close disconnects from every peer, stops the node's goroutines (the
// mesh's included) and releases its ports and its Device; a new Node may
// listen on the same port as soon as Close returns. Subscriptions' channels
// are closed.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Node) close() error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	// Every connection's watcher now fails it (see nodeConn); no new one is
	// prepared.
	close(n.closing)
	err := n.ln.Close()
	// The mesh closes every connection, stopping its overlay side, and
	// waits for its goroutines.
	n.gossip.Close()
	n.wg.Wait()
	err = errors.Join(err, n.router.Close())
	n.closeSubscribers()
	return err
}
