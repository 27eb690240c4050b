package mesh

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"
	"unicode"
)

// ConnectionMaker keeps connecting to the targets: the addresses it was
// given, and with discovery the addresses our peers report connections
// with. Failed targets are retried with a randomised, growing delay. All
// its state belongs to its goroutine (loop); methods send it actions.
type ConnectionMaker struct {
	r       *Router
	actions chan func() bool

	// Owned by loop.
	targets     map[string]*target
	direct      map[string]*net.TCPAddr
	connections map[*LocalConnection]struct{}
	terminated  int
}

type targetState int

const (
	targetWaiting targetState = iota
	targetAttempting
	targetConnected
	targetSuspended
)

type target struct {
	state     targetState
	lastError error
	tryAfter  time.Time // zero: never
	interval  time.Duration
}

const (
	initialRetry = 2 * time.Second
	maxRetry     = 6 * time.Minute
	resetAfter   = time.Minute
	dialTimeout  = 10 * time.Second
	// discoveryYield is how long a peer waits before dialling a peer it
	// discovered, when the other should dial (yieldFor). If both dialled,
	// one of the two connections would be shut down as a duplicate after
	// a whole handshake (at 50 peers forming a mesh, most links were made
	// twice); the one that waits dials only if no connection has come by
	// then, e.g. when the other cannot reach it.
	discoveryYield = 5 * time.Second
	// tieYield is the wait between peers about as connected (fewer than
	// clearlyMore established connections apart), see yieldFor.
	tieYield    = 2 * time.Second
	clearlyMore = 3
)

func newConnectionMaker(r *Router) *ConnectionMaker {
	return &ConnectionMaker{
		r:           r,
		actions:     make(chan func() bool, 16),
		targets:     map[string]*target{},
		direct:      map[string]*net.TCPAddr{},
		connections: map[*LocalConnection]struct{}{},
	}
}

// do runs f on the loop; f returns whether to reconsider the targets. It
// gives up once the router is closed.
func (cm *ConnectionMaker) do(f func() bool) bool {
	select {
	case cm.actions <- f:
		return true
	case <-cm.r.closing:
		return false
	}
}

// InitiateConnections adds targets, each HOST or HOST:PORT; replace drops
// the others. It returns the addresses that did not parse or resolve.
func (cm *ConnectionMaker) InitiateConnections(peers []string, replace bool) []error {
	var errs []error
	addrs := map[string]*net.TCPAddr{}
	for _, p := range peers {
		host, port, err := net.SplitHostPort(p)
		if err != nil {
			host, port = p, "0" // no port: the mesh port
		}
		if host == "" || !alnum(port) {
			errs = append(errs, fmt.Errorf("invalid peer name %q, should be host[:port]", p))
			continue
		}
		a, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(host, port))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		addrs[p] = a
	}
	cm.do(func() bool {
		if replace {
			cm.direct = map[string]*net.TCPAddr{}
		}
		for p, a := range addrs {
			cm.direct[p] = a
			if t := cm.targets[cm.complete(a)]; t != nil {
				t.retryNow()
			}
		}
		return true
	})
	return errs
}

func alnum(s string) bool {
	for _, c := range s {
		if !unicode.IsLetter(c) && !unicode.IsDigit(c) {
			return false
		}
	}
	return true
}

// ForgetConnections drops targets; connections already made stay.
func (cm *ConnectionMaker) ForgetConnections(peers []string) {
	cm.do(func() bool {
		for _, p := range peers {
			delete(cm.direct, p)
		}
		return true
	})
}

// Targets lists the targets as given, or only those not connected.
func (cm *ConnectionMaker) Targets(activeOnly bool) []string {
	res := make(chan []string, 1)
	if !cm.do(func() bool {
		var out []string
		for p, a := range cm.direct {
			if activeOnly {
				if t := cm.targets[cm.complete(a)]; t != nil && t.tryAfter.IsZero() {
					continue
				}
			}
			out = append(out, p)
		}
		res <- out
		return false
	}) {
		return nil
	}
	return <-res
}

func (cm *ConnectionMaker) refresh() { cm.do(func() bool { return true }) }

func (cm *ConnectionMaker) connectionCreated(c *LocalConnection) {
	cm.do(func() bool {
		cm.connections[c] = struct{}{}
		if c.outbound {
			if t := cm.targets[c.remoteAddr]; t != nil {
				t.state = targetConnected
			}
		}
		return false
	})
}

func (cm *ConnectionMaker) connectionTerminated(c *LocalConnection, err error) {
	cm.do(func() bool {
		if !errors.Is(err, errConnectToSelf) {
			cm.terminated++
		}
		delete(cm.connections, c)
		if !c.outbound {
			return true
		}
		t := cm.targets[c.remoteAddr]
		if t == nil {
			return true
		}
		t.state, t.lastError = targetWaiting, err
		var pe *peerNameCollisionError
		switch {
		case errors.As(err, &pe) || errors.Is(err, errConnectToSelf):
			t.retryNever()
		case time.Now().After(t.tryAfter.Add(resetAfter)):
			t.retryNow()
		default:
			t.retryLater()
		}
		return true
	})
}

func (cm *ConnectionMaker) dialFailed(address string, err error) {
	cm.r.stats.outboundFailed.Add(1)
	cm.r.logf("->[%s] error during connection attempt: %v", address, err)
	if f := cm.r.OnConnectionError; f != nil {
		f(address, true, err)
	}
	cm.do(func() bool {
		if t := cm.targets[address]; t != nil {
			t.state, t.lastError = targetWaiting, err
			t.retryLater()
		}
		return true
	})
}

// checkSpacing is the least time between two checks that changes ask
// for (a dial that is due is not held back by it). Every topology update
// that teaches us something asks for one: while 50 peers formed a mesh
// that was hundreds a second at each, and each looks at every link of the
// topology, a tenth of all the work.
const checkSpacing = 100 * time.Millisecond

func (cm *ConnectionMaker) loop() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var last time.Time
	held := false // a check asked for waits on the timer
	check := func() {
		timer.Stop()
		held, last = false, time.Now()
		if d := cm.check(); d > 0 {
			timer.Reset(d)
		}
	}
	for {
		select {
		case <-cm.r.closing:
			return
		case f := <-cm.actions:
			if !f() || held {
				continue
			}
			if wait := checkSpacing - time.Since(last); wait > 0 {
				held = true
				timer.Stop()
				timer.Reset(wait)
				continue
			}
			check()
		case <-timer.C:
			check()
		}
	}
}

func (cm *ConnectionMaker) complete(a *net.TCPAddr) string {
	c := *a
	if c.Port == 0 {
		c.Port = cm.r.Port
	}
	return c.String()
}

// check brings the targets up to date and starts the attempts that are
// due; it returns when to look again (0: not until something happens).
func (cm *ConnectionMaker) check() time.Duration {
	connectedPeers := map[PeerName]bool{}
	connectedAddrs := map[string]bool{}
	inboundIPs := map[string]bool{}
	for c := range cm.connections {
		connectedPeers[c.remote.Name] = true
		connectedAddrs[c.remoteAddr] = true
		if !c.outbound {
			if ip, _, err := net.SplitHostPort(c.remoteAddr); err == nil {
				inboundIPs[ip] = true
			}
		}
	}
	valid := map[string]bool{}
	direct := map[string]bool{}
	// add makes addr a target; yield delays the first dial (see
	// yieldFor).
	add := func(addr string, yield time.Duration) {
		if connectedAddrs[addr] {
			return
		}
		valid[addr] = true
		if cm.targets[addr] == nil {
			t := &target{state: targetWaiting}
			t.retryNow()
			t.tryAfter = t.tryAfter.Add(yield)
			cm.targets[addr] = t
		}
	}
	for _, a := range cm.direct {
		addr := cm.complete(a)
		direct[addr] = true
		// A target given without a port is not dialled while it has
		// connected to us: it is likely the same peer.
		if a.Port == 0 && inboundIPs[a.IP.String()] {
			continue
		}
		add(addr, 0)
	}
	if cm.r.PeerDiscovery {
		us := cm.r.Ourself.Name
		found, degree := cm.r.Peers.discoveryTargets(us, connectedPeers, cm.r.Port)
		for _, d := range found {
			add(d.addr, yieldFor(us, degree, d))
		}
	}
	now := time.Now()
	var next time.Duration
	for addr, t := range cm.targets {
		if t.state != targetWaiting && t.state != targetSuspended {
			continue
		}
		if !valid[addr] {
			if direct[addr] {
				t.state = targetSuspended
			} else {
				delete(cm.targets, addr)
			}
			continue
		}
		if t.tryAfter.IsZero() {
			continue
		}
		t.state = targetWaiting
		if d := t.tryAfter.Sub(now); d > 0 {
			if next == 0 || d < next {
				next = d
			}
			continue
		}
		t.state = targetAttempting
		addr, acceptNew := addr, direct[addr]
		if !cm.r.goTask(func() { cm.attempt(addr, acceptNew) }) {
			return 0
		}
	}
	return next
}

func (cm *ConnectionMaker) attempt(address string, acceptNew bool) {
	r := cm.r
	if r.ConnLimit > 0 && len(r.Peers.allConns()) >= r.ConnLimit {
		cm.dialFailed(address, fmt.Errorf("connection limit reached (%d)", r.ConnLimit))
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, dialTimeout)
	defer cancel()
	d := net.Dialer{}
	if r.Host != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(r.Host)}
	}
	tcp, err := d.DialContext(ctx, "tcp", address)
	cancel()
	if err != nil {
		cm.dialFailed(address, err)
		return
	}
	c := newLocalConnection(r, tcp, true)
	c.remoteAddr = address
	if !r.addLive(c) {
		tcp.Close()
		return
	}
	defer r.removeLive(c)
	c.run(acceptNew, time.Now().Add(handshakeTimeout), nil, func(err error) {
		if err != nil {
			r.stats.outboundFailed.Add(1)
			r.stats.outboundHandshakeFailed.Add(1)
			r.logf("->[%s] connection shutting down due to error during handshake: %v", address, err)
			if f := r.OnConnectionError; f != nil {
				f(address, true, err)
			}
		}
	})
}

func (t *target) retryNever() { t.tryAfter, t.interval = time.Time{}, maxRetry }
func (t *target) retryNow()   { t.tryAfter, t.interval = time.Now(), initialRetry }

// retryLater waits a random time in [i/2, 3i/2), i growing by half each
// time up to maxRetry.
func (t *target) retryLater() {
	if t.interval <= 0 {
		t.interval = initialRetry
	}
	t.tryAfter = time.Now().Add(t.interval/2 + rand.N(t.interval))
	t.interval = min(t.interval*3/2, maxRetry)
}

// discovered is a peer one of our peers reports a connection to, and the
// address to dial it at.
type discovered struct {
	addr string
	name PeerName
	// degree: the peer's established connections, as the topology has
	// them.
	degree int
}

// yieldFor is how long we (us, with degree established connections) wait
// before dialling d, for d to dial us. A new peer hears of everyone in the
// first topology it gets, while the others hear of it through gossip,
// which on a busy machine takes seconds: the peer clearly less connected
// dials at once, and the other waits discoveryYield (at 50 peers, going
// by name alone, the last peer's links to the lower-named half waited on
// that gossip or on the yield). Between peers about as connected, the
// lower name dials and the higher waits tieYield. Each end sees the
// other's connections late, so both may wait: then for tieYield at most,
// unless their views differ by twice clearlyMore; a first version, in
// which the better connected always waited, left both waiting 5 s now and
// then, and one in which the less connected dialled while the other went
// by name made most new links twice.
func yieldFor(us PeerName, degree int, d discovered) time.Duration {
	switch {
	case degree >= d.degree+clearlyMore:
		return discoveryYield
	case d.degree >= degree+clearlyMore:
		return 0
	case d.name < us:
		return tieYield
	default:
		return 0
	}
}

// discoveryTargets are the addresses of connections our peers report to
// peers we are not connected to: outbound ones as reported, inbound ones
// at the mesh port. It walks every link, 2,450 at 50 peers, so it walks
// a snapshot: under the topology's lock, a newcomer's 47 dials queued
// behind the walk to register, for most of a second.
func (ps *Peers) discoveryTargets(us PeerName, connected map[PeerName]bool, port int) (out []discovered, degree int) {
	g, _, _ := ps.snapshot()
	degrees := map[PeerName]int{}
	degreeOf := func(n PeerName) int {
		if k, ok := degrees[n]; ok {
			return k
		}
		k := 0
		for _, l := range g[n] {
			if l.established {
				k++
			}
		}
		degrees[n] = k
		return k
	}
	for n, links := range g {
		if n == us {
			continue
		}
		for to, l := range links {
			if to == us || connected[to] {
				continue
			}
			if l.outbound {
				out = append(out, discovered{l.addr, to, degreeOf(to)})
			} else if ip, _, err := net.SplitHostPort(l.addr); err == nil {
				out = append(out, discovered{net.JoinHostPort(ip, strconv.Itoa(port)), to, degreeOf(to)})
			}
		}
	}
	return out, degreeOf(us)
}
