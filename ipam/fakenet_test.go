package ipam

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"weavenet/mesh"
)

// testNet is an in-memory mesh for allocators in one process. Messages
// queue in FIFO order and are delivered only by Flush, on the caller's
// goroutine, so tests are deterministic: no sockets, no sleeps.
// Partitions are groups: peers see each other only in the same group.
type testNet struct {
	t testing.TB

	mu      sync.Mutex
	queue   []delivery
	peers   map[mesh.PeerName]*testPeer
	order   []mesh.PeerName
	errs    []error
	notify  chan struct{}
	clock   atomic.Int64 // unix nanos of the fake clock
	learned int          // OnGossip calls that returned a delta
	// idle, if set, runs when a call under await waits with nothing to
	// deliver: typically advance the clock and tick, as time would.
	idle func()
	// drop, if set, loses the deliveries it returns true for.
	drop func(delivery) bool
}

type deliveryKind int

const (
	unicast deliveryKind = iota
	broadcast
	periodic
)

type delivery struct {
	kind     deliveryKind
	src, dst mesh.PeerName
	msg      []byte
}

type testPeer struct {
	net   *testNet
	name  mesh.PeerName
	nick  string
	group int
	down  bool // stopped: unreachable and deaf
	a     *Allocator
	cfg   Config
}

func newTestNet(t testing.TB) *testNet {
	n := &testNet{t: t, peers: map[mesh.PeerName]*testPeer{}, notify: make(chan struct{}, 1)}
	n.clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return n
}

func (n *testNet) now() time.Time { return time.Unix(0, n.clock.Load()) }

func (n *testNet) advance(d time.Duration) { n.clock.Add(int64(d)) }

func peerName(i int) mesh.PeerName { return mesh.PeerName(0x0a0000000000 + uint64(i)) }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// add makes a peer with cfg (Ourself, Peers, clock and ticker filled in)
// and starts its allocator.
func (n *testNet) add(i int, cfg Config) *testPeer {
	n.t.Helper()
	p := &testPeer{net: n, name: peerName(i), nick: fmt.Sprintf("h%d", i)}
	cfg.Ourself, cfg.NickName, cfg.Peers = p.name, p.nick, p
	cfg.clock, cfg.tickInterval = n.now, -1
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	p.cfg = cfg
	n.mu.Lock()
	n.peers[p.name] = p
	n.order = append(n.order, p.name)
	n.mu.Unlock()
	p.start()
	return p
}

func (p *testPeer) start() {
	p.net.t.Helper()
	a, err := New(p.cfg)
	if err != nil {
		p.net.t.Fatalf("New %v: %v", p.name, err)
	}
	a.SetGossip(p)
	p.net.mu.Lock()
	p.a, p.down = a, false
	p.net.mu.Unlock()
	p.net.t.Cleanup(func() { a.Close() })
}

// stop takes the peer off the network and closes its allocator.
func (p *testPeer) stop() {
	p.net.mu.Lock()
	p.down = true
	p.net.mu.Unlock()
	p.a.Close()
}

// partition puts each listed peer in group g.
func (n *testNet) partition(g int, peers ...*testPeer) {
	n.mu.Lock()
	for _, p := range peers {
		p.group = g
	}
	n.mu.Unlock()
}

func (n *testNet) heal() {
	n.mu.Lock()
	for _, p := range n.peers {
		p.group = 0
	}
	n.mu.Unlock()
}

// linked: lock held.
func (n *testNet) linked(a, b mesh.PeerName) bool {
	pa, pb := n.peers[a], n.peers[b]
	return pa != nil && pb != nil && !pa.down && !pb.down && pa.group == pb.group
}

func (n *testNet) enqueue(d delivery) {
	n.queue = append(n.queue, d)
	select {
	case n.notify <- struct{}{}:
	default:
	}
}

// GossipUnicast implements mesh.Gossip.
func (p *testPeer) GossipUnicast(dst mesh.PeerName, msg []byte) error {
	n := p.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.linked(p.name, dst) {
		return fmt.Errorf("unknown relay destination: %s", dst)
	}
	n.enqueue(delivery{kind: unicast, src: p.name, dst: dst, msg: slices.Clone(msg)})
	return nil
}

// GossipBroadcast implements mesh.Gossip: the data goes to every peer
// reachable now, encoded now.
func (p *testPeer) GossipBroadcast(update mesh.GossipData) { p.spread(broadcast, update) }

// GossipNeighbourSubset implements mesh.Gossip.
func (p *testPeer) GossipNeighbourSubset(update mesh.GossipData) { p.spread(periodic, update) }

func (p *testPeer) spread(kind deliveryKind, update mesh.GossipData) {
	n := p.net
	msgs := update.Encode()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, dst := range n.order {
		if dst != p.name && n.linked(p.name, dst) {
			for _, m := range msgs {
				n.enqueue(delivery{kind: kind, src: p.name, dst: dst, msg: m})
			}
		}
	}
}

// Reachable implements PeerSource.
func (p *testPeer) Reachable() []mesh.PeerName {
	n := p.net
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []mesh.PeerName
	for _, q := range n.order {
		if n.linked(p.name, q) {
			out = append(out, q)
		}
	}
	return out
}

// NickName implements PeerSource.
func (p *testPeer) NickName(name mesh.PeerName) string {
	p.net.mu.Lock()
	defer p.net.mu.Unlock()
	if q := p.net.peers[name]; q != nil {
		return q.nick
	}
	return ""
}

// Flush delivers until the queue is empty and returns how many messages
// it delivered. Messages to peers no longer reachable are dropped.
func (n *testNet) Flush() int {
	count := 0
	for {
		n.mu.Lock()
		if len(n.queue) == 0 {
			n.mu.Unlock()
			return count
		}
		d := n.queue[0]
		n.queue = n.queue[1:]
		n.mu.Unlock()
		if n.deliver(d) {
			count++
		}
	}
}

// flushTo delivers what is queued for dst now, and nothing else: what
// those deliveries send stays queued.
func (n *testNet) flushTo(dst mesh.PeerName) {
	n.mu.Lock()
	var now, rest []delivery
	for _, d := range n.queue {
		if d.dst == dst {
			now = append(now, d)
		} else {
			rest = append(rest, d)
		}
	}
	n.queue = rest
	n.mu.Unlock()
	for _, d := range now {
		n.deliver(d)
	}
}

// deliver hands d to its destination unless it is unreachable or dropped,
// and says whether it did.
func (n *testNet) deliver(d delivery) bool {
	n.mu.Lock()
	ok := n.linked(d.src, d.dst) && (n.drop == nil || !n.drop(d))
	dst := n.peers[d.dst]
	n.mu.Unlock()
	if !ok {
		return false
	}
	var err error
	switch d.kind {
	case unicast:
		err = dst.a.OnGossipUnicast(d.src, d.msg)
	case broadcast:
		_, err = dst.a.OnGossipBroadcast(d.src, d.msg)
	case periodic:
		var delta mesh.GossipData
		delta, err = dst.a.OnGossip(d.msg)
		if delta != nil {
			n.mu.Lock()
			n.learned++
			n.mu.Unlock()
		}
	}
	if err != nil {
		n.mu.Lock()
		n.errs = append(n.errs, fmt.Errorf("%v -> %v: %w", d.src, d.dst, err))
		n.mu.Unlock()
	}
	return true
}

// gossipAll is mesh's periodic gossip: every peer sends its whole state to
// every reachable peer.
func (n *testNet) gossipAll() {
	n.mu.Lock()
	var up []*testPeer
	for _, name := range n.order {
		if p := n.peers[name]; !p.down {
			up = append(up, p)
		}
	}
	n.mu.Unlock()
	for _, p := range up {
		if g := p.a.Gossip(); g != nil {
			p.spread(periodic, g)
		}
	}
}

// settle gossips until nobody learns anything.
func (n *testNet) settle() {
	n.t.Helper()
	n.Flush()
	for range 50 {
		n.mu.Lock()
		n.learned = 0
		n.mu.Unlock()
		n.gossipAll()
		n.Flush()
		n.mu.Lock()
		quiet := n.learned == 0
		n.mu.Unlock()
		if quiet {
			return
		}
	}
	n.t.Fatal("gossip did not settle")
}

// await runs f on another goroutine and delivers messages until it
// returns. It fails the test if f blocks with nothing left to deliver for
// a long time (a wait that no message can end).
func await[T any](n *testNet, f func() T) T {
	n.t.Helper()
	res := make(chan T, 1)
	go func() { res <- f() }()
	stuck := time.NewTimer(20 * time.Second)
	defer stuck.Stop()
	for i := 0; n.idle != nil; i++ {
		n.Flush()
		select {
		case r := <-res:
			n.Flush()
			return r
		default:
		}
		if i > 10000 {
			n.t.Fatal("blocked call made no progress:" + n.dump())
		}
		n.idle()
		// Let f's goroutine run before time moves on again: with a mere
		// Gosched, a loaded machine (CI) could advance the fake clock by
		// many seconds before f asked anything, and peers it had not yet
		// waited on looked silent.
		time.Sleep(time.Millisecond)
	}
	for {
		n.Flush()
		select {
		case r := <-res:
			n.Flush()
			return r
		case <-n.notify:
		case <-stuck.C:
			n.t.Fatal("blocked call made no progress:" + n.dump())
		}
	}
}

// dump describes every peer, for failures.
func (n *testNet) dump() string {
	n.mu.Lock()
	var ps []*testPeer
	for _, name := range n.order {
		ps = append(ps, n.peers[name])
	}
	n.mu.Unlock()
	var b strings.Builder
	for _, p := range ps {
		st := p.a.Status()
		fmt.Fprintf(&b, "\n%s group %d down %v: %s", p.nick, p.group, p.down, st.Status)
		p.a.mu.Lock()
		for sub, r := range p.a.spaceReqs {
			fmt.Fprintf(&b, "\n  space %v asked %v refused %v", sub, r.asked, r.refused)
		}
		for addr, r := range p.a.claimReqs {
			fmt.Fprintf(&b, "\n  claim %v to %v err %v", addr, r.to, r.err)
		}
		fmt.Fprintf(&b, "\n  owned %v free %v", p.a.space.owned, p.a.space.free)
		p.a.mu.Unlock()
	}
	return b.String()
}

// tickAll advances the clock by d and runs every allocator's tick.
func (n *testNet) tickAll(d time.Duration) {
	n.advance(d)
	n.mu.Lock()
	var up []*testPeer
	for _, name := range n.order {
		if p := n.peers[name]; !p.down {
			up = append(up, p)
		}
	}
	n.mu.Unlock()
	for _, p := range up {
		p.a.tick()
	}
}

// noErrors fails the test if any delivery returned an error.
func (n *testNet) noErrors() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, err := range n.errs {
		n.t.Error(err)
	}
	n.errs = nil
}

func (n *testNet) takeErrors() []error {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.errs
	n.errs = nil
	return e
}

// ringOf returns a copy of a peer's ring.
func ringOf(p *testPeer) *ring {
	p.a.mu.Lock()
	defer p.a.mu.Unlock()
	return p.a.ring.clone()
}

// ipamGoroutines counts live goroutines running this package's code,
// other than tests.
func ipamGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "weavenet/ipam.(*Allocator)") && !strings.Contains(g, "_test.go") {
			n++
		}
	}
	return n
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestMain fails the run if any allocator goroutine outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if n := ipamGoroutines(); n > 0 {
			fmt.Fprintf(os.Stderr, "%d allocator goroutines leaked\n", n)
			code = 1
		}
	}
	os.Exit(code)
}
