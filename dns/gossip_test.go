package dns

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// threePeers starts peers 1, 2, 3 in a line 1-2-3, so that 1 and 3 only
// hear each other through 2.
func threePeers(t *testing.T) *fakeMesh {
	m := newFakeMesh(t)
	for i := 1; i <= 3; i++ {
		m.add(i, nil)
	}
	m.connect(1, 2)
	m.connect(2, 3)
	m.flush()
	return m
}

func mustAdd(t *testing.T, s *Server, container, host, addr string) {
	t.Helper()
	if err := s.AddEntry(container, host, ip(addr)); err != nil {
		t.Fatal(err)
	}
}

func wantLookup(t *testing.T, s *Server, name string, want ...string) {
	t.Helper()
	var got []string
	for _, a := range s.Lookup(name) {
		got = append(got, a.String())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%v: Lookup(%q) = %v, want %v", s.ourself, name, got, want)
	}
}

func TestGossipAddConverges(t *testing.T) {
	m := threePeers(t)
	mustAdd(t, m.server(1), "c1", "c1", "10.32.0.1")
	mustAdd(t, m.server(2), "c2", "c2.weave.local.", "10.32.0.2")
	mustAdd(t, m.server(3), "c3", "C3.Weave.Local", "10.32.0.3")
	mustAdd(t, m.server(3), "web3", "web", "10.32.0.13")
	mustAdd(t, m.server(1), "web1", "web", "10.32.0.11")
	m.flush()
	want := "c1.weave.local.=10.32.0.1;c2.weave.local.=10.32.0.2;c3.weave.local.=10.32.0.3;web.weave.local.=10.32.0.11,10.32.0.13"
	if got := m.converged(); got != want {
		t.Fatalf("view = %q, want %q", got, want)
	}
	for i := 1; i <= 3; i++ {
		wantLookup(t, m.server(i), "web", "10.32.0.11", "10.32.0.13")
	}
	// Ownership is the registering peer's.
	for _, e := range m.server(2).Entries() {
		if e.Hostname == "c1.weave.local." && e.Origin != peerName(t, 1) {
			t.Fatalf("c1 owned by %v", e.Origin)
		}
	}
}

func TestGossipLateJoinerGetsEverything(t *testing.T) {
	m := threePeers(t)
	mustAdd(t, m.server(1), "c1", "c1", "10.32.0.1")
	mustAdd(t, m.server(3), "c3", "c3", "10.32.0.3")
	m.flush()
	m.add(4, nil)
	m.connect(4, 3)
	m.flush()
	m.converged()
	wantLookup(t, m.server(4), "c1", "10.32.0.1")
}

func TestGossipRemoveWithinOneFlush(t *testing.T) {
	m := threePeers(t)
	mustAdd(t, m.server(1), "c1", "c1", "10.32.0.1")
	mustAdd(t, m.server(1), "c1", "c1-alias", "10.32.0.1")
	mustAdd(t, m.server(1), "c9", "c9", "10.32.0.9")
	m.flush()
	n, err := m.server(1).RemoveEntries("c1", "", netip.Addr{})
	if err != nil || n != 2 {
		t.Fatalf("RemoveEntries = %d, %v; want 2", n, err)
	}
	m.flush()
	if got := m.converged(); got != "c9.weave.local.=10.32.0.9" {
		t.Fatalf("view = %q", got)
	}
	// The deletions are tombstones until they expire.
	tombs := 0
	for _, e := range m.server(3).Entries() {
		if e.Tombstone {
			tombs++
		}
	}
	if tombs != 2 {
		t.Fatalf("%d tombstones on peer 3, want 2", tombs)
	}
	// A new c1 resolves to its new address.
	mustAdd(t, m.server(2), "c1", "c1", "10.32.0.21")
	m.flush()
	m.converged()
	wantLookup(t, m.server(3), "c1", "10.32.0.21")

	// Tombstones are collected after their lifetime and stay gone.
	m.clock.Advance(DefaultTombstoneLifetime + time.Second)
	m.tick()
	m.flush()
	for i := 1; i <= 3; i++ {
		if st := m.server(i).Status(); st.Tombstones != 0 || st.Entries != 2 {
			t.Fatalf("peer %d after GC: %+v", i, st)
		}
	}
}

func TestGossipRemoveOnlyOwnEntries(t *testing.T) {
	m := threePeers(t)
	mustAdd(t, m.server(1), "web", "web", "10.32.0.1")
	mustAdd(t, m.server(2), "web", "web", "10.32.0.2")
	m.flush()
	if n, _ := m.server(2).RemoveEntries("web", "", netip.Addr{}); n != 1 {
		t.Fatalf("removed %d", n)
	}
	m.flush()
	m.converged()
	wantLookup(t, m.server(3), "web", "10.32.0.1")
	// By hostname and address.
	mustAdd(t, m.server(1), "web", "www", "10.32.0.1")
	mustAdd(t, m.server(1), "web", "web", "10.32.0.5")
	m.flush()
	if n, _ := m.server(1).RemoveEntries("", "web", ip("10.32.0.1")); n != 1 {
		t.Fatalf("removed %d", n)
	}
	m.flush()
	if got := m.converged(); got != "web.weave.local.=10.32.0.5;www.weave.local.=10.32.0.1" {
		t.Fatalf("view = %q", got)
	}
}

// TestGossipRestart: peer 2's process restarts (same peer name, empty
// memory). It re-registers what still runs before gossip starts; what it
// no longer has is retracted everywhere, what it has is back everywhere.
func TestGossipRestart(t *testing.T) {
	m := threePeers(t)
	mustAdd(t, m.server(2), "c2", "c2", "10.32.0.2")
	mustAdd(t, m.server(2), "old", "old", "10.32.0.99")
	mustAdd(t, m.server(2), "gone", "gone", "10.32.0.98")
	m.server(2).RemoveEntries("gone", "", netip.Addr{}) // a tombstone with a high version
	mustAdd(t, m.server(1), "c1", "c1", "10.32.0.1")
	for i := 0; i < 5; i++ { // push peer 2's clock well ahead
		mustAdd(t, m.server(2), "churn", "churn", "10.32.0.50")
		m.server(2).RemoveEntries("churn", "", netip.Addr{})
	}
	m.flush()
	oldVersion := m.server(2).clock

	m.isolate(2)
	m.add(2, func(s *Server) {
		// The daemon re-registers its running containers first. "gone"
		// comes back too, with a version lower than its tombstone.
		if err := s.Reconcile([]Registration{
			{Container: "c2", Hostname: "c2", Addr: ip("10.32.0.2")},
			{Container: "gone", Hostname: "gone", Addr: ip("10.32.0.98")},
			{Container: "new", Hostname: "new", Addr: ip("10.32.0.3")},
		}); err != nil {
			t.Fatal(err)
		}
	})
	m.connect(1, 2)
	m.connect(2, 3)
	m.flush()
	want := "c1.weave.local.=10.32.0.1;c2.weave.local.=10.32.0.2;gone.weave.local.=10.32.0.98;new.weave.local.=10.32.0.3"
	if got := m.converged(); got != want {
		t.Fatalf("view = %q\nwant   %q", got, want)
	}
	if c := m.server(2).clock; c <= oldVersion {
		t.Fatalf("restarted clock %d not past the old %d", c, oldVersion)
	}
	if m.server(2).Counters().Retractions == 0 {
		t.Fatal("no retractions counted")
	}
	// Later changes of the new process win everywhere.
	m.server(2).RemoveEntries("c2", "", netip.Addr{})
	m.flush()
	wantLookup(t, m.server(1), "c2")
	m.converged()
}

// TestGossipRestartLateRegistration: the daemon registers its containers
// only after gossip started. The stale entries are retracted at first and
// the re-registrations still win.
func TestGossipRestartLateRegistration(t *testing.T) {
	m := threePeers(t)
	mustAdd(t, m.server(2), "c2", "c2", "10.32.0.2")
	m.flush()
	m.isolate(2)
	s2 := m.add(2, nil)
	m.connect(1, 2)
	m.connect(2, 3)
	m.flush()
	wantLookup(t, m.server(1), "c2") // retracted: the new process does not have it
	mustAdd(t, s2, "c2", "c2", "10.32.0.2")
	m.flush()
	m.converged()
	wantLookup(t, m.server(3), "c2", "10.32.0.2")
}

// TestGossipRestartAfterPeerGone: while peer 2 restarts, the others
// garbage-collect it from the topology and call PeerGone. The new process
// registers its containers with low versions, below the watermark; on
// hearing the watermark it re-issues them above it.
func TestGossipRestartAfterPeerGone(t *testing.T) {
	m := threePeers(t)
	mustAdd(t, m.server(2), "c2", "c2", "10.32.0.2")
	mustAdd(t, m.server(2), "old", "old", "10.32.0.99")
	m.flush()
	m.isolate(2)
	m.server(1).PeerGone(peerName(t, 2))
	m.server(3).PeerGone(peerName(t, 2))
	m.flush()
	wantLookup(t, m.server(3), "c2")
	m.add(2, func(s *Server) { mustAdd(t, s, "c2", "c2", "10.32.0.2") })
	m.connect(1, 2)
	m.connect(2, 3)
	m.flush()
	if got := m.converged(); got != "c2.weave.local.=10.32.0.2" {
		t.Fatalf("view = %q", got)
	}
}

func TestGossipPeerGone(t *testing.T) {
	m := threePeers(t)
	mustAdd(t, m.server(1), "c1", "c1", "10.32.0.1")
	mustAdd(t, m.server(3), "c3", "c3", "10.32.0.3")
	mustAdd(t, m.server(3), "d3", "d3", "10.32.0.4")
	m.server(3).RemoveEntries("d3", "", netip.Addr{})
	m.flush()
	m.isolate(3)
	// rmpeer on peer 1 only: peer 2 hears of it by gossip.
	m.server(1).PeerGone(peerName(t, 3))
	m.flush()
	wantLookup(t, m.server(2), "c3")
	wantLookup(t, m.server(1), "c3")
	for _, e := range m.server(2).Entries() {
		if e.Origin == peerName(t, 3) {
			t.Fatalf("entry of gone peer left: %+v", e)
		}
	}
	// Stale gossip about peer 3 from someone who missed the news does not
	// bring its entries back.
	m.add(4, nil)
	m.server(4).receive(func() *table {
		s3 := m.server(3)
		s3.mu.Lock()
		defer s3.mu.Unlock()
		return s3.tab.clone()
	}())
	m.connect(4, 1)
	m.flush()
	m.disconnect(4, 1) // peer 4 is the odd one out; compare 1 and 2 only
	wantLookup(t, m.server(2), "c3")
	wantLookup(t, m.server(4), "c3")

	// PeerGone of ourselves is refused.
	m.server(1).PeerGone(peerName(t, 1))
	wantLookup(t, m.server(1), "c1", "10.32.0.1")
}

// TestGossipPeerGoneButAlive: a peer removed by mistake (or cut off, then
// garbage-collected by topology) re-announces its entries when it hears.
func TestGossipPeerGoneButAlive(t *testing.T) {
	m := threePeers(t)
	mustAdd(t, m.server(3), "c3", "c3", "10.32.0.3")
	m.flush()
	m.isolate(3)
	m.server(1).PeerGone(peerName(t, 3))
	m.flush()
	wantLookup(t, m.server(2), "c3")
	m.connect(2, 3)
	m.flush()
	m.converged()
	wantLookup(t, m.server(1), "c3", "10.32.0.3")
}

// TestGossipPartitionOutlivesTombstone: peer 3 is cut off while peer 1
// deletes c1, long enough for the tombstone to be collected. When 3 comes
// back with its stale live c1, the origin retracts it again.
func TestGossipPartitionOutlivesTombstone(t *testing.T) {
	m := threePeers(t)
	mustAdd(t, m.server(1), "c1", "c1", "10.32.0.1")
	m.flush()
	m.isolate(3)
	m.server(1).RemoveEntries("c1", "", netip.Addr{})
	m.flush()
	m.clock.Advance(DefaultTombstoneLifetime + time.Minute)
	m.tick()
	m.flush()
	if n := len(m.server(1).Entries()); n != 0 {
		t.Fatalf("tombstone not collected: %d entries", n)
	}
	wantLookup(t, m.server(3), "c1", "10.32.0.1") // stale, cut off
	m.connect(2, 3)
	m.flush()
	m.converged()
	for i := 1; i <= 3; i++ {
		wantLookup(t, m.server(i), "c1")
	}
}

// TestGossipRandomDelivery: random operations on three peers, with gossip
// delivered in random order, duplicated, and partly lost to partitions;
// after healing and one round of periodic gossip everyone agrees, and on
// what the origins hold.
func TestGossipRandomDelivery(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		rng := rand.New(rand.NewPCG(seed, 42))
		m := newFakeMesh(t)
		m.rng = rng
		for i := 1; i <= 3; i++ {
			m.add(i, nil)
		}
		m.connect(1, 2)
		m.connect(2, 3)
		m.connect(1, 3)
		containers := []string{"a", "b", "c"}
		for op := 0; op < 60; op++ {
			s := m.server(1 + rng.IntN(3))
			c := containers[rng.IntN(len(containers))]
			addr := netip.AddrFrom4([4]byte{10, 32, 0, byte(1 + rng.IntN(3))})
			switch rng.IntN(10) {
			case 0, 1, 2, 3:
				mustAdd(t, s, c, c, addr.String())
			case 4, 5:
				s.RemoveEntries(c, "", netip.Addr{})
			case 6:
				m.isolate(1 + rng.IntN(3))
			case 7:
				i, j := 1+rng.IntN(3), 1+rng.IntN(3)
				if i != j {
					m.connect(i, j)
				}
			case 8:
				// deliver a few messages
				for k := 0; k < 3 && len(m.queue) > 0; k++ {
					m.flushOne()
				}
			case 9:
				m.clock.Advance(time.Duration(rng.IntN(60)) * time.Second)
			}
		}
		m.connect(1, 2)
		m.connect(2, 3)
		m.flush()
		m.tick()
		m.flush()
		m.converged()
		// Every live entry is live at its origin.
		for _, e := range m.server(2).Entries() {
			if e.Tombstone {
				continue
			}
			origin := m.servers[e.Origin]
			found := false
			for _, o := range origin.Entries() {
				if o.Hostname == e.Hostname && o.Addr == e.Addr && o.Container == e.Container && !o.Tombstone {
					found = true
				}
			}
			if !found {
				t.Fatalf("seed %d: %+v live but not at its origin", seed, e)
			}
		}
	}
}

// flushOne delivers at most one message (for interleaving in tests).
func (m *fakeMesh) flushOne() {
	m.mu.Lock()
	if len(m.queue) == 0 {
		m.mu.Unlock()
		return
	}
	rest := m.queue[1:]
	m.queue = m.queue[:1]
	m.mu.Unlock()
	rng := m.rng
	m.rng = nil
	m.flush() // delivers the one message and what it causes
	m.rng = rng
	m.mu.Lock()
	m.queue = append(m.queue, rest...)
	m.mu.Unlock()
}

func TestGossipMalformedIsCountedNotFatal(t *testing.T) {
	m := threePeers(t)
	s := m.server(1)
	for _, msg := range [][]byte{nil, {0}, {1, 200}, {1, 0, 0, 5}, {99, 1, 2}} {
		if d, err := s.OnGossip(msg); err != nil || d != nil {
			t.Fatalf("OnGossip(%v) = %v, %v", msg, d, err)
		}
		if d, err := s.OnGossipBroadcast(peerName(t, 2), msg); err != nil || d != nil {
			t.Fatalf("OnGossipBroadcast(%v) = %v, %v", msg, d, err)
		}
		if err := s.OnGossipUnicast(peerName(t, 2), msg); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Counters().GossipMalformed; got != 9 { // unknown versions (0, 99) are not counted
		t.Fatalf("GossipMalformed = %d, want 9", got)
	}
}

func TestGossipNothingToSay(t *testing.T) {
	m := newFakeMesh(t)
	s := m.add(1, nil)
	if g := s.Gossip(); g != nil {
		t.Fatalf("empty table gossips %v", g)
	}
	mustAdd(t, s, "c", "c", "10.0.0.1")
	g := s.Gossip()
	if g == nil {
		t.Fatal("no gossip")
	}
	// Receiving what we already know yields no delta.
	for _, part := range g.Encode() {
		if d, _ := s.OnGossip(part); d != nil {
			t.Fatalf("delta from own state: %v", d)
		}
	}
}
