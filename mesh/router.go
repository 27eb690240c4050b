package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"weavenet/internal/wallclock"
)

// Config configures a Router.
type Config struct {
	// Host is the address outbound connections are made from ("" any).
	Host string
	// Port is the mesh port of peers named without one (6783).
	Port int
	// Password, when not nil, encrypts every connection and admits only
	// peers with the same password.
	Password []byte
	// SessionPassword, when set, replaces Password per connection: it is
	// called once per encrypted handshake, when the session secret is
	// needed, with what is known of the remote by then (the Field*
	// pseudo-fields, and in protocol version 1 the remote's handshake
	// fields, which version 1 sends in clear; version 2 encrypts them with
	// the key being derived, so only the pseudo-fields are known). It
	// returns the secret to hash with the key exchange's; an error refuses
	// the connection. Setting it turns encryption on.
	SessionPassword func(remote map[string]string) ([]byte, error)
	// ConnLimit caps our connections (0: no cap).
	ConnLimit int
	// ProtocolMinVersion is the lowest version we accept (default 1).
	ProtocolMinVersion byte
	// AdvertiseWeavenet offers protocol version 3, a weavenet extension
	// with version 2's wire format: a mesh or Weave Net peer settles on 2,
	// two weavenet peers on 3. The version is agreed in clear before any
	// key, so SessionPassword can tell (FieldProtocolVersion) whether the
	// remote is a weavenet peer and pick the derivation. An attacker in
	// the path can rewrite it to 2: a hook that wants weavenet's
	// derivation only should refuse version 2.
	AdvertiseWeavenet bool
	// PeerDiscovery: connect to the peers our peers are connected to.
	PeerDiscovery bool
	// TrustedSubnets: connections with peers there leave the overlay
	// unencrypted (if the remote trusts us too).
	TrustedSubnets []*net.IPNet
	// GossipInterval is how often each channel's full state is gossiped
	// (default 30s).
	GossipInterval *time.Duration
	// MaxPendingHandshakes caps inbound connections in their handshake
	// (256), MaxPendingPerSource those from one address (16). Over a cap
	// the oldest that has not yet sent its header, or failing that the
	// oldest, is closed.
	MaxPendingHandshakes, MaxPendingPerSource int
	// OnConnectionError, when set, hears of each connection that failed
	// before it joined: a dial, or a handshake in either direction
	// (refused, another password, not a mesh peer). addr is the remote
	// HOST:PORT. It runs on the router's goroutines: it must not block.
	// Inbound failures are not logged (HandshakeStats counts them);
	// outbound ones are, once each.
	OnConnectionError func(addr string, outbound bool, err error)
}

const (
	defaultGossipInterval = 30 * time.Second
	// Our topology changes go out topologyGather after the first of a
	// burst, and then at most every topologySpacing: a change after a
	// quiet spell goes at once, and a joining peer's dozens of new links a
	// second still make a few updates, not dozens. (Every change waited
	// a whole second, the last links of a mesh among them.)
	topologyGather = 100 * time.Millisecond
	gcDelay        = time.Second
	maxSurrogates  = 64
)

// Router is one mesh peer: its topology, its connections, its gossip
// channels. Build it with NewRouter, register gossip channels, then Serve a
// listener and add targets to ConnectionMaker; Close ends it all.
type Router struct {
	Config
	Overlay         Overlay
	Ourself         *LocalPeer
	Peers           *Peers
	Routes          *Routes
	ConnectionMaker *ConnectionMaker
	connMaker       *ConnectionMaker
	logger          Logger

	chMu       sync.RWMutex
	channels   map[string]*gossipChannel
	surrogates int
	topology   *gossipChannel

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	live      map[*LocalConnection]struct{}
	pending   []*pendingConn
	wg        sync.WaitGroup
	closing   chan struct{}
	closeOnce sync.Once
	// ctx is cancelled by Close, which ends dials in progress.
	ctx    context.Context
	cancel context.CancelFunc

	changed  chan struct{}
	gcSoon   chan struct{}
	gcNow    chan struct{}
	topoKick chan struct{}
	topoMu   sync.Mutex
	topoSet  map[PeerName]struct{}

	stats routerStats
	// maxVersion is the highest version we offer: ProtocolMaxVersion, or
	// 3 with AdvertiseWeavenet; tests lower it to speak version 1.
	maxVersion byte
}

// LocalPeer is our own peer: its name, nickname and UID do not change.
type LocalPeer struct {
	Name     PeerName
	NickName string
	UID      PeerUID
	peers    *Peers
}

func (lp *LocalPeer) connectionTo(n PeerName) *LocalConnection { return lp.peers.connTo(n) }
func (lp *LocalPeer) connectionsTo(ns []PeerName) []*LocalConnection {
	return lp.peers.connsTo(ns)
}

// Peer is our current Peer value.
func (lp *LocalPeer) Peer() *Peer { return lp.peers.ourself() }

// String is our name and nickname.
func (lp *LocalPeer) String() string { return fmt.Sprint(lp.Name, "(", lp.NickName, ")") }

// NewRouter makes a router; nothing runs until Serve or a connection
// target. overlay may be nil (NullOverlay), logger too.
func NewRouter(cfg Config, name PeerName, nickName string, overlay Overlay, logger Logger) (*Router, error) {
	if overlay == nil {
		overlay = NullOverlay{}
	}
	if cfg.Port == 0 {
		cfg.Port = 6783
	}
	if cfg.MaxPendingHandshakes <= 0 {
		cfg.MaxPendingHandshakes = 256
	}
	if cfg.MaxPendingPerSource <= 0 {
		cfg.MaxPendingPerSource = 16
	}
	us := &Peer{Name: name, NickName: nickName, UID: randomPeerUID(), ShortID: randomShortID(), HasShortID: true}
	r := &Router{
		Config:     cfg,
		Overlay:    overlay,
		logger:     logger,
		channels:   map[string]*gossipChannel{},
		listeners:  map[net.Listener]struct{}{},
		live:       map[*LocalConnection]struct{}{},
		closing:    make(chan struct{}),
		changed:    make(chan struct{}, 1),
		gcSoon:     make(chan struct{}, 1),
		gcNow:      make(chan struct{}, 1),
		topoKick:   make(chan struct{}, 1),
		topoSet:    map[PeerName]struct{}{},
		maxVersion: ProtocolMaxVersion,
	}
	if cfg.AdvertiseWeavenet {
		r.maxVersion = weavenetVersion
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.Peers = newPeers(us)
	r.Ourself = &LocalPeer{Name: name, NickName: nickName, UID: us.UID, peers: r.Peers}
	r.Routes = newRoutes(name, r.Peers, func() { signal(r.changed) })
	r.connMaker = newConnectionMaker(r)
	r.ConnectionMaker = r.connMaker
	g, err := r.newGossip("topology", &topologyGossiper{r: r, repeats: newRepeatFilter(r.gossipInterval())}, false)
	if err != nil {
		return nil, err
	}
	r.topology = g.(*gossipChannel)
	r.wg.Add(2)
	go func() { defer r.wg.Done(); r.loop() }()
	go func() { defer r.wg.Done(); r.connMaker.loop() }()
	return r, nil
}

func (r *Router) logf(format string, args ...interface{}) {
	if r.logger != nil {
		r.logger.Printf(format, args...)
	}
}

func (r *Router) protocolMinVersion() byte {
	if r.ProtocolMinVersion < ProtocolMinVersion {
		return ProtocolMinVersion
	}
	return r.ProtocolMinVersion
}

func (r *Router) encrypts() bool { return r.Password != nil || r.SessionPassword != nil }

func (r *Router) usingPassword() bool { return r.encrypts() }

func (r *Router) sessionPassword(remote map[string]string) ([]byte, error) {
	if r.SessionPassword != nil {
		return r.SessionPassword(remote)
	}
	return r.Password, nil
}

func (r *Router) trusts(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	for _, n := range r.TrustedSubnets {
		if n.Contains(ta.IP) {
			return true
		}
	}
	return false
}

func (r *Router) gossipInterval() time.Duration {
	if r.GossipInterval != nil && *r.GossipInterval > 0 {
		return *r.GossipInterval
	}
	return defaultGossipInterval
}

// Stop stops the overlay, as mesh's Router.Stop does; Close stops the
// router.
func (r *Router) Stop() error {
	r.Overlay.Stop()
	return nil
}

// Close stops the router: it closes the listeners being served, every
// connection (in its handshake or not) and the connection maker, and
// waits for all of the router's goroutines to end. The overlay is the
// caller's to stop.
func (r *Router) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		close(r.closing)
		r.cancel()
		for ln := range r.listeners {
			ln.Close()
		}
		for c := range r.live {
			c.shutdown(errRouterClosed)
			c.tcp.Close()
		}
		r.mu.Unlock()
	})
	r.wg.Wait()
	return nil
}

// addLive records c so that Close can close it; false if closed.
func (r *Router) addLive(c *LocalConnection) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.live[c] = struct{}{}
	return true
}

func (r *Router) removeLive(c *LocalConnection) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live, c)
}

// goConn runs f for c on a goroutine of the router's, unless the router
// is closed (then c's TCP connection is closed).
func (r *Router) goConn(c *LocalConnection, f func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.tcp.Close()
		return false
	}
	r.live[c] = struct{}{}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.removeLive(c)
		f()
	}()
	return true
}

// goTask runs f on a goroutine of the router's unless it is closed.
func (r *Router) goTask(f func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); f() }()
	return true
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// loop is the router's own goroutine: route-change callbacks, garbage
// collection of peers, batched topology broadcasts, periodic gossip.
func (r *Router) loop() {
	// On the wall clock's multiples: every peer's periodic gossip arrives
	// in one burst.
	gossipTick := wallclock.NewTicker(r.gossipInterval())
	defer gossipTick.Stop()
	gcTimer := time.NewTimer(time.Hour)
	gcTimer.Stop()
	defer gcTimer.Stop()
	topoTimer := time.NewTimer(time.Hour)
	topoTimer.Stop()
	defer topoTimer.Stop()
	routesTimer := time.NewTimer(time.Hour)
	routesTimer.Stop()
	defer routesTimer.Stop()
	gcPending, topoPending, routesPending := false, false, false
	var topoSent time.Time
	refresh := func() {
		if r.Routes.refresh() {
			r.Routes.notify()
		}
	}
	collect := func() {
		gone, again := r.Peers.collect()
		if again && !gcPending {
			gcPending = true
			gcTimer.Reset(gcDelay)
		}
		if len(gone) > 0 {
			for _, p := range gone {
				r.logf("Removed unreachable peer %s", p)
			}
			r.Peers.notifyGC(gone)
			signal(r.changed)
		}
	}
	for {
		select {
		case <-r.closing:
			return
		case <-r.changed:
			if wait := r.Routes.due(); wait > 0 {
				if !routesPending {
					routesPending = true
					routesTimer.Reset(wait)
				}
				continue
			}
			refresh()
		case <-routesTimer.C:
			routesPending = false
			refresh()
		case <-r.gcNow:
			collect()
		case <-r.gcSoon:
			if !gcPending {
				gcPending = true
				gcTimer.Reset(gcDelay)
			}
		case <-gcTimer.C:
			gcPending = false
			collect()
		case <-r.topoKick:
			if !topoPending {
				topoPending = true
				topoTimer.Reset(max(topologyGather, time.Until(topoSent.Add(topologySpacing(r.Peers.numConns())))))
			}
		case <-topoTimer.C:
			topoPending, topoSent = false, time.Now()
			r.topoMu.Lock()
			names := r.topoSet
			r.topoSet = map[PeerName]struct{}{}
			r.topoMu.Unlock()
			names[r.Ourself.Name] = struct{}{}
			// Every neighbour hears each version of our record from us,
			// which lets weavenet peers relay it only to peers we have
			// no connection to (topologyGossiper.relayPlan).
			r.topology.tellNeighbours(&topologyData{peers: r.Peers, names: names})
		case <-gossipTick.C:
			r.sendAllGossip()
		}
	}
}

// topologySpacing is the least time between two sends of our topology
// record to our neighbours, longer the more there are, so that we send
// at most about topologySendRate records a second: every peer's record
// changes each time a peer joins, and while 50 peers launched one after
// another each of them sent its record to 49 neighbours twice a second,
// some 70,000 records in all, most of the work of forming the mesh.
func topologySpacing(neighbours int) time.Duration {
	return max(500*time.Millisecond, time.Duration(neighbours)*time.Second/topologySendRate)
}

const topologySendRate = 40

// topologyChanged schedules a topology broadcast naming us and peers.
func (r *Router) topologyChanged(peers ...PeerName) {
	r.topoMu.Lock()
	for _, p := range peers {
		r.topoSet[p] = struct{}{}
	}
	r.topoMu.Unlock()
	signal(r.topoKick)
	signal(r.changed)
}

// addConnection adds c to the topology and says whether its peer was
// known before: whether a record of it had reached us by gossip. A known
// peer has been hearing the same gossip as we have, so it needs no copy of
// everything we know (join). It was "has a route over established
// connections", which a peer joining a mesh has to nobody until its links
// are confirmed: all 49 of its peers sent it the whole topology, and it
// sent each of them its own, some 7 MB to encode and decode at 50 peers.
func (r *Router) addConnection(c *LocalConnection) (known bool, err error) {
	known = r.Peers.gossiped(c.remote.Name)
	replaced, err := r.Peers.addConn(c, r.ConnLimit)
	if replaced != nil {
		replaced.shutdown(fmt.Errorf("multiple connections to %s: replaced", c.remote))
	}
	if err != nil {
		if replaced != nil {
			r.topologyChanged()
		}
		return known, err
	}
	r.logf("->[%s|%s]: connection added", c.remoteAddr, c.remote)
	if c.tellsNeighbours {
		// It tells its own neighbours, and relayPlan the others. The
		// new link goes out with the next change, at the latest when
		// it is established, a second or so later: every link added
		// and then established at both ends made four records for
		// every neighbour to read, most of a forming mesh's messages.
		// Routes need it now.
		signal(r.changed)
	} else {
		// Others learn of a peer that does not from those it connects
		// to, as they always did.
		r.topologyChanged(c.remote.Name)
	}
	return known, nil
}

func (r *Router) connectionEstablished(c *LocalConnection) {
	if !r.Peers.setEstablished(c) {
		c.shutdown(errors.New("cannot set unknown connection active"))
		return
	}
	r.topologyChanged()
}

func (r *Router) deleteConnection(c *LocalConnection) {
	if r.Peers.removeConn(c) {
		signal(r.gcNow)
		r.topologyChanged()
	}
}

// NewGossip makes the channel name, with g receiving its messages.
func (r *Router) NewGossip(name string, g Gossiper) (Gossip, error) {
	return r.newGossip(name, g, true)
}

// newGossip makes a channel; with an inbox, its gossiper is called on a
// goroutine of its own (see gossipChannel.inbox).
func (r *Router) newGossip(name string, g Gossiper, inbox bool) (Gossip, error) {
	r.chMu.Lock()
	defer r.chMu.Unlock()
	if c, ok := r.channels[name]; ok {
		if _, sur := c.gossiper.(*surrogateGossiper); !sur {
			return nil, fmt.Errorf("[gossip] duplicate channel %s", name)
		}
		r.surrogates--
	}
	c := &gossipChannel{name: name, router: r, gossiper: g}
	if inbox {
		c.inbox = newInbox()
		if !r.goTask(func() { c.inbox.serve(r.closing) }) {
			return nil, fmt.Errorf("[gossip] channel %s: %w", name, errRouterClosed)
		}
	}
	r.channels[name] = c
	return c, nil
}

// channel finds a channel, making a surrogate for one we do not have
// (up to maxSurrogates).
func (r *Router) channel(name string) *gossipChannel {
	r.chMu.RLock()
	c := r.channels[name]
	r.chMu.RUnlock()
	if c != nil {
		return c
	}
	r.chMu.Lock()
	defer r.chMu.Unlock()
	if c = r.channels[name]; c != nil {
		return c
	}
	if r.surrogates >= maxSurrogates {
		return nil
	}
	r.surrogates++
	c = &gossipChannel{name: name, router: r, gossiper: &surrogateGossiper{window: r.gossipInterval()}}
	r.channels[name] = c
	return c
}

func (r *Router) channelList() []*gossipChannel {
	r.chMu.RLock()
	defer r.chMu.RUnlock()
	out := make([]*gossipChannel, 0, len(r.channels))
	for _, c := range r.channels {
		out = append(out, c)
	}
	return out
}

// handleGossip takes a gossip message that the neighbour at the other end
// of conn sent. An error ends the connection, also when the gossiper
// reports it later.
func (r *Router) handleGossip(conn *LocalConnection, tag byte, body []byte) error {
	from := conn.remote.Name
	m, err := decodeGossip(tag, body)
	if err != nil {
		return err
	}
	c := r.channel(m.channel)
	if c == nil {
		r.stats.droppedGossip.Add(1)
		return nil
	}
	if tag == ProtocolGossipBroadcast && from != m.src && slices.Contains(r.Routes.relayHops(m.src), from) {
		// A broadcast comes from its source or from a peer before us
		// in the source's tree, never from one we relay it to: it has
		// come round a loop. While 50 peers formed a mesh and their
		// views of the topology disagreed, IPAM's broadcasts went round
		// such loops: some two thousand reached one peer in two seconds.
		r.stats.loopedBroadcasts.Add(1)
		return nil
	}
	if c.inbox == nil {
		return c.deliver(m, tag, body)
	}
	c.do(conn.stop, len(body), func() {
		if err := c.deliver(m, tag, body); err != nil {
			conn.shutdown(err)
		}
	})
	return nil
}

func (r *Router) sendAllGossip() {
	for _, c := range r.channelList() {
		c.do(nil, 0, func() {
			if d := c.gossiper.Gossip(); d != nil {
				c.relay(r.Ourself.Name, d, periodicFanout)
			}
		})
	}
}

func (r *Router) sendAllGossipDown(conn *LocalConnection) {
	for _, c := range r.channelList() {
		c.do(conn.stop, 0, func() {
			if d := c.gossiper.Gossip(); d != nil {
				conn.queueGossip(c, r.Ourself.Name, d, false)
			}
		})
	}
}

// routerStats count what is not worth a log line each.
type routerStats struct {
	accepted, authenticated, silent, notMesh, oversize, timeout, evicted, refused, failed atomic.Uint64
	outboundFailed, outboundHandshakeFailed, unknownTags, droppedGossip, loopedBroadcasts atomic.Uint64
}
