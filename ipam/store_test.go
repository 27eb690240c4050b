package ipam

import (
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

func openStore(t *testing.T, path string) *Store {
	t.Helper()
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// restart stops p, reopens its store and starts it again with cfg changes.
func restart(t *testing.T, p *testPeer, path string, change func(*Config)) {
	t.Helper()
	p.stop()
	if err := p.cfg.Store.Close(); err != nil {
		t.Fatal(err)
	}
	p.cfg.Store = openStore(t, path)
	if change != nil {
		change(&p.cfg)
	}
	p.start()
	t.Cleanup(func() { p.cfg.Store.Close() })
}

func TestPersistenceRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path1, path2 := filepath.Join(dir, "1.db"), filepath.Join(dir, "2.db")
	n := newTestNet(t)
	opts := Config{Range: mustPrefix("10.9.0.0/24"), Init: consensusN(2)}
	c1, c2 := opts, opts
	c1.Store, c2.Store = openStore(t, path1), openStore(t, path2)
	p1, p2 := n.add(1, c1), n.add(2, c2)
	var got []netip.Prefix
	for _, o := range []string{"a", "b", "c", "d"} {
		got = append(got, mustAllocate(t, n, p1, o, ""))
	}
	if err := claim(n, p1, "e", "10.9.0.200/24"); err != nil { // from p2
		t.Fatal(err)
	}
	if err := claim(n, p1, "f", "192.168.1.5/24"); err != nil { // outside
		t.Fatal(err)
	}
	if err := p1.a.Release("b", got[1]); err != nil {
		t.Fatal(err)
	}
	ringBefore := ringOf(p1)

	// kill -9 and launch again: p1 comes back alone, with its state.
	n.partition(1, p1)
	restart(t, p1, path1, nil)
	if !ringOf(p1).equal(ringBefore) {
		t.Fatal("ring not restored")
	}
	for owner, want := range map[string]string{"a": "10.9.0.1/24", "c": "10.9.0.3/24", "d": "10.9.0.4/24",
		"e": "10.9.0.200/24", "f": "192.168.1.5/24"} {
		if l := p1.a.Lookup(owner); len(l) != 1 || l[0].String() != want {
			t.Fatalf("after restart %s holds %v, want %s", owner, l, want)
		}
	}
	if len(p1.a.Lookup("b")) != 0 {
		t.Fatal("released address came back")
	}
	if st := p1.a.Status().Status; st != "ready" {
		t.Fatalf("status after restart %q", st)
	}
	// Freed address reused, none handed out twice.
	if g := mustAllocate(t, n, p1, "g", ""); g.String() != "10.9.0.2/24" {
		t.Fatalf("after restart got %v", g)
	}
	if g := mustAllocate(t, n, p1, "h", ""); g.String() != "10.9.0.5/24" {
		t.Fatalf("after restart got %v", g)
	}
	n.heal()
	n.settle()
	if !ringOf(p1).equal(ringOf(p2)) {
		t.Fatal("rings differ after restart and heal")
	}

	// A second daemon on the same data dir fails clearly.
	start := time.Now()
	if _, err := OpenStore(path1); !errors.Is(err, ErrStoreLocked) {
		t.Fatalf("second open: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("lock timeout took %v", d)
	}

	// A changed range discards the ring and the allocations inside it.
	restart(t, p1, path1, func(c *Config) {
		c.Range = mustPrefix("192.168.0.0/16")
		c.DefaultSubnet = netip.Prefix{}
		c.Init = consensusN(1)
	})
	if ringOf(p1).ready() {
		t.Fatal("old ring kept after a range change")
	}
	if l := p1.a.Lookup("a"); len(l) != 1 {
		t.Fatalf("allocation outside the new range dropped: %v", l)
	}
	if l := p1.a.Lookup("f"); len(l) != 0 {
		t.Fatalf("allocation inside the new range kept: %v", l)
	}
	n.partition(1, p1)
	if g := mustAllocate(t, n, p1, "i", ""); g.String() != "192.168.0.1/16" {
		t.Fatalf("new range allocation %v", g)
	}

	// A different peer name on the same store starts afresh.
	restart(t, p1, path1, func(c *Config) { c.Ourself = peerName(9) })
	if len(p1.a.Lookup("i")) != 0 || len(p1.a.Lookup("a")) != 0 || ringOf(p1).ready() {
		t.Fatal("state of another peer name kept")
	}
}

func TestStoreNilIsMemoryOnly(t *testing.T) {
	var s *Store
	if err := s.putAlloc(netip.MustParseAddr("10.0.0.1"), allocation{Owner: "x", Bits: 8}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// storedRing is the ring p's store holds.
func storedRing(t *testing.T, p *testPeer) *ring {
	t.Helper()
	st, err := p.cfg.Store.load()
	if err != nil || st.ring == nil {
		t.Fatalf("stored ring: %v, %v", st, err)
	}
	return st.ring
}

// A ring that changes only other peers' entries is not synced to disk
// while our lock is held for gossip: the next tick (or Close) stores it.
// One that changes ours is stored before it is used.
func TestOthersEntriesStoredByTick(t *testing.T) {
	n := newTestNet(t)
	opts := Config{Range: mustPrefix("10.9.0.0/24"), Init: consensusN(2)}
	c1 := opts
	c1.Store = openStore(t, filepath.Join(t.TempDir(), "1.db"))
	t.Cleanup(func() { c1.Store.Close() })
	p1, p2 := n.add(1, c1), n.add(2, opts)
	mustAllocate(t, n, p1, "a", "")
	n.settle()
	p1.a.tick()
	if !storedRing(t, p1).equal(ringOf(p1)) {
		t.Fatal("after a tick the stored ring is not the ring")
	}

	// p2 hands out an address: only the Free hint of its entry changes.
	mustAllocate(t, n, p2, "b", "")
	n.settle()
	stored, live := storedRing(t, p1), ringOf(p1)
	if stored.equal(live) {
		t.Fatal("p2's changed hint was synced at once")
	}
	if !stored.sameEntriesOf(live, p1.name) {
		t.Fatal("p1's own entries differ from the stored ones")
	}
	p1.a.tick()
	if !storedRing(t, p1).equal(ringOf(p1)) {
		t.Fatal("the tick did not store the ring")
	}

	// p2 gives p1 an address it asks for: p1's entries change, and the
	// store has them before the claim returns.
	if err := claim(n, p1, "c", "10.9.0.200/24"); err != nil {
		t.Fatal(err)
	}
	if !storedRing(t, p1).sameEntriesOf(ringOf(p1), p1.name) {
		t.Fatal("an entry given to p1 was not stored at once")
	}
}
