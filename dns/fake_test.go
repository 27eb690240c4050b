package dns

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"weavenet/mesh"
)

// Test helpers: peer names, a settable clock, and an in-memory mesh that
// delivers gossip deterministically (flush until quiet, no sleeping).

func peerName(t testing.TB, i int) mesh.PeerName {
	t.Helper()
	p, err := mesh.PeerNameFromString(fmt.Sprintf("00:00:00:00:00:%02x", i))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeClock is a settable clock for tombstone expiry.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// fakeMesh connects Servers in one process. Broadcasts go to every peer
// reachable from the sender (mesh relays them down a spanning tree; the
// effect is the same); gossip goes to neighbours, and what a receiver
// reports as new is relayed to its other neighbours, as mesh does. Every
// message is encoded and decoded, so the codec is exercised too.
type fakeMesh struct {
	t     testing.TB
	clock *fakeClock
	rng   *rand.Rand // nil: FIFO delivery; else random order and duplicates

	mu      sync.Mutex
	servers map[mesh.PeerName]*Server
	links   map[[2]mesh.PeerName]bool
	queue   []fakeMsg
	sent    int
}

type fakeMsg struct {
	from, to  mesh.PeerName
	broadcast bool
	parts     [][]byte
}

func newFakeMesh(t testing.TB) *fakeMesh {
	return &fakeMesh{t: t, clock: newFakeClock(), servers: map[mesh.PeerName]*Server{}, links: map[[2]mesh.PeerName]bool{}}
}

// add makes a new Server for peer i (replacing a previous process of the
// same peer, as a restart does) without links.
func (m *fakeMesh) add(i int, setup func(*Server)) *Server {
	m.t.Helper()
	p := peerName(m.t, i)
	s, err := New(Config{Ourself: p, Logger: quietLogger(), Now: m.clock.Now,
		Upstream: StaticUpstreams(nil)})
	if err != nil {
		m.t.Fatal(err)
	}
	if setup != nil {
		setup(s)
	}
	m.mu.Lock()
	m.servers[p] = s
	m.mu.Unlock()
	s.SetGossip(&fakeGossip{m: m, self: p})
	return s
}

func linkKey(a, b mesh.PeerName) [2]mesh.PeerName {
	if b < a {
		a, b = b, a
	}
	return [2]mesh.PeerName{a, b}
}

// connect links peers i and j and has each send the other its complete
// state, as mesh does when a connection is established.
func (m *fakeMesh) connect(i, j int) {
	a, b := peerName(m.t, i), peerName(m.t, j)
	m.mu.Lock()
	m.links[linkKey(a, b)] = true
	sa, sb := m.servers[a], m.servers[b]
	m.mu.Unlock()
	m.sendComplete(sa, a, b)
	m.sendComplete(sb, b, a)
}

func (m *fakeMesh) disconnect(i, j int) {
	m.mu.Lock()
	delete(m.links, linkKey(peerName(m.t, i), peerName(m.t, j)))
	m.mu.Unlock()
}

// isolate removes every link of peer i.
func (m *fakeMesh) isolate(i int) {
	p := peerName(m.t, i)
	m.mu.Lock()
	for k := range m.links {
		if k[0] == p || k[1] == p {
			delete(m.links, k)
		}
	}
	m.mu.Unlock()
}

func (m *fakeMesh) sendComplete(s *Server, from, to mesh.PeerName) {
	if g := s.Gossip(); g != nil {
		m.enqueue(fakeMsg{from: from, to: to, parts: g.Encode()})
	}
}

// tick is mesh's periodic gossip: everyone sends its complete state to
// its neighbours.
func (m *fakeMesh) tick() {
	for _, p := range m.peers() {
		m.mu.Lock()
		s := m.servers[p]
		m.mu.Unlock()
		for _, n := range m.neighbours(p) {
			m.sendComplete(s, p, n)
		}
	}
}

func (m *fakeMesh) peers() []mesh.PeerName {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := make([]mesh.PeerName, 0, len(m.servers))
	for p := range m.servers {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

func (m *fakeMesh) neighbours(p mesh.PeerName) []mesh.PeerName {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ns []mesh.PeerName
	for k := range m.links {
		switch p {
		case k[0]:
			ns = append(ns, k[1])
		case k[1]:
			ns = append(ns, k[0])
		}
	}
	slices.Sort(ns)
	return ns
}

// reachable lists the peers connected to p, directly or not, p excluded.
func (m *fakeMesh) reachable(p mesh.PeerName) []mesh.PeerName {
	seen := map[mesh.PeerName]bool{p: true}
	todo := []mesh.PeerName{p}
	var out []mesh.PeerName
	for len(todo) > 0 {
		q := todo[0]
		todo = todo[1:]
		for _, n := range m.neighbours(q) {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
				todo = append(todo, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (m *fakeMesh) enqueue(msg fakeMsg) {
	m.mu.Lock()
	m.queue = append(m.queue, msg)
	m.sent++
	m.mu.Unlock()
}

// flush delivers messages until none is left; it fails the test if gossip
// does not quiesce.
func (m *fakeMesh) flush() {
	m.t.Helper()
	for n := 0; ; n++ {
		if n > 100000 {
			m.t.Fatal("gossip did not quiesce")
		}
		m.mu.Lock()
		if len(m.queue) == 0 {
			m.mu.Unlock()
			return
		}
		i := 0
		if m.rng != nil {
			i = m.rng.IntN(len(m.queue))
		}
		msg := m.queue[i]
		dup := m.rng != nil && m.rng.IntN(8) == 0
		if !dup {
			m.queue = slices.Delete(m.queue, i, i+1)
		}
		linked := m.links[linkKey(msg.from, msg.to)]
		s := m.servers[msg.to]
		m.mu.Unlock()
		if !msg.broadcast && !linked {
			continue // the connection went away
		}
		if msg.broadcast && !slices.Contains(m.reachable(msg.from), msg.to) {
			continue
		}
		for _, part := range msg.parts {
			if msg.broadcast {
				if _, err := s.OnGossipBroadcast(msg.from, part); err != nil {
					m.t.Fatal(err)
				}
				continue
			}
			delta, err := s.OnGossip(part)
			if err != nil {
				m.t.Fatal(err)
			}
			if delta != nil {
				for _, nb := range m.neighbours(msg.to) {
					if nb != msg.from {
						m.enqueue(fakeMsg{from: msg.to, to: nb, parts: delta.Encode()})
					}
				}
			}
		}
	}
}

type fakeGossip struct {
	m    *fakeMesh
	self mesh.PeerName
}

func (g *fakeGossip) GossipUnicast(dst mesh.PeerName, msg []byte) error {
	g.m.enqueue(fakeMsg{from: g.self, to: dst, parts: [][]byte{msg}})
	return nil
}

func (g *fakeGossip) GossipBroadcast(update mesh.GossipData) {
	parts := update.Encode()
	for _, p := range g.m.reachable(g.self) {
		g.m.enqueue(fakeMsg{from: g.self, to: p, broadcast: true, parts: parts})
	}
}

func (g *fakeGossip) GossipNeighbourSubset(update mesh.GossipData) {
	parts := update.Encode()
	for _, p := range g.m.neighbours(g.self) {
		g.m.enqueue(fakeMsg{from: g.self, to: p, parts: parts})
	}
}

// server returns peer i's current Server.
func (m *fakeMesh) server(i int) *Server {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.servers[peerName(m.t, i)]
}

// liveView renders what a server answers: "name=addr,addr;..." sorted.
func liveView(s *Server) string {
	names := map[string][]string{}
	for _, e := range s.Entries() {
		if !e.Tombstone {
			names[e.Hostname] = append(names[e.Hostname], e.Addr.String())
		}
	}
	var out []string
	for n, as := range names {
		slices.Sort(as)
		as = slices.Compact(as)
		out = append(out, n+"="+strings.Join(as, ","))
	}
	slices.Sort(out)
	return strings.Join(out, ";")
}

// converged fails unless every server holds the same replicated state,
// and returns their common live view.
func (m *fakeMesh) converged() string {
	m.t.Helper()
	ps := m.peers()
	first := m.servers[ps[0]]
	first.mu.Lock()
	ref := first.tab.clone()
	first.mu.Unlock()
	for _, p := range ps[1:] {
		s := m.servers[p]
		s.mu.Lock()
		same := s.tab.sameState(ref)
		s.mu.Unlock()
		if !same {
			m.t.Fatalf("peer %v differs from %v:\n%v\nvs\n%v", p, ps[0], dumpEntries(s), dumpEntries(first))
		}
	}
	return liveView(first)
}

func dumpEntries(s *Server) string {
	var b strings.Builder
	for _, e := range s.Entries() {
		fmt.Fprintf(&b, "  %s %v %s origin=%v v%d tomb=%v\n", e.Hostname, e.Addr, e.Container, e.Origin, e.Version, e.Tombstone)
	}
	s.mu.Lock()
	fmt.Fprintf(&b, "  retired=%v\n", s.tab.retired)
	s.mu.Unlock()
	return b.String()
}

// checkNoServerGoroutines fails if a goroutine of s's serving code (or of
// any Server's, if s is nil) is still running after Close. Close waits for
// all of them, but a goroutine that has signalled its WaitGroup may not
// have returned yet, so this gives them a moment, as goleak does.
func checkNoServerGoroutines(t testing.TB, s *Server) {
	t.Helper()
	if g := waitServerGoroutines(s); g != "" {
		t.Fatalf("goroutine left running after Close:\n%s", g)
	}
}

func waitServerGoroutines(s *Server) string {
	deadline := time.Now().Add(2 * time.Second)
	for {
		g := serverGoroutine(s)
		if g == "" || time.Now().After(deadline) {
			return g
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func serverGoroutine(s *Server) string {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		for _, line := range strings.Split(g, "\n") {
			if !strings.Contains(line, "weavenet/dns.(*Server).serve") && !strings.Contains(line, "weavenet/dns.(*Server).handle") {
				continue
			}
			if s == nil || strings.Contains(line, fmt.Sprintf("(%p", s)) {
				return g
			}
		}
	}
	return ""
}

func TestMain(m *testing.M) {
	code := m.Run()
	if g := waitServerGoroutines(nil); g != "" && code == 0 {
		fmt.Fprintf(os.Stderr, "goroutine left running after all tests:\n%s\n", g)
		code = 1
	}
	os.Exit(code)
}
