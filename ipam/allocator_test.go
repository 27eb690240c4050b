package ipam

import (
	"context"
	"errors"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"weavenet/mesh"
)

func consensusN(n int) Init { return Init{Mode: Consensus, Peers: n} }

func allocate(n *testNet, p *testPeer, owner string, subnet string) (netip.Prefix, error) {
	var sub netip.Prefix
	if subnet != "" {
		sub = mustPrefix(subnet)
	}
	type res struct {
		p   netip.Prefix
		err error
	}
	r := await(n, func() res {
		got, err := p.a.Allocate(context.Background(), owner, sub)
		return res{got, err}
	})
	return r.p, r.err
}

func mustAllocate(t *testing.T, n *testNet, p *testPeer, owner, subnet string) netip.Prefix {
	t.Helper()
	got, err := allocate(n, p, owner, subnet)
	if err != nil {
		t.Fatalf("allocate %s on %s: %v", owner, p.nick, err)
	}
	return got
}

func claim(n *testNet, p *testPeer, owner, addr string) error {
	return await(n, func() error { return p.a.Claim(context.Background(), owner, mustPrefix(addr)) })
}

func TestSinglePeerAllocateLowestAndReuse(t *testing.T) {
	n := newTestNet(t)
	p := n.add(1, Config{Range: mustPrefix("10.32.0.0/12"), Init: consensusN(1)})
	if s := p.a.Status().Status; s != "idle" {
		t.Fatalf("status before any allocation = %q, want idle", s)
	}
	want := []string{"10.32.0.1/12", "10.32.0.2/12", "10.32.0.3/12"}
	for i, w := range want {
		got := mustAllocate(t, n, p, "c"+string(rune('a'+i)), "")
		if got.String() != w {
			t.Fatalf("allocation %d = %v, want %v", i, got, w)
		}
	}
	// Same owner, same subnet: same address.
	if got := mustAllocate(t, n, p, "ca", ""); got.String() != "10.32.0.1/12" {
		t.Fatalf("re-allocate = %v", got)
	}
	if err := p.a.Release("cb", mustPrefix("10.32.0.2/12")); err != nil {
		t.Fatal(err)
	}
	if err := p.a.Release("cb", mustPrefix("10.32.0.2/12")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("double release: %v", err)
	}
	if got := mustAllocate(t, n, p, "cd", ""); got.String() != "10.32.0.2/12" {
		t.Fatalf("freed address not reused: %v", got)
	}
	// Another subnet inside the range: the prefix length follows it.
	if got := mustAllocate(t, n, p, "ca", "10.40.1.0/24"); got.String() != "10.40.1.1/24" {
		t.Fatalf("subnet allocation = %v", got)
	}
	if got := p.a.Lookup("ca"); len(got) != 2 || got[0].String() != "10.32.0.1/12" || got[1].String() != "10.40.1.1/24" {
		t.Fatalf("lookup = %v", got)
	}
	if _, err := allocate(n, p, "x", "10.2.2.0/24"); !errors.Is(err, ErrOutsideRange) {
		t.Fatalf("outside range: %v", err)
	}
	if err := p.a.ReleaseAll("ca"); err != nil || len(p.a.Lookup("ca")) != 0 {
		t.Fatalf("release all: %v %v", err, p.a.Lookup("ca"))
	}
	st := p.a.Status()
	if st.Status != "ready" || len(st.Peers) != 1 || st.Peers[0].Share != 1 || st.Peers[0].Addresses != 1<<20 {
		t.Fatalf("status = %+v", st)
	}
	n.noErrors()
}

func TestClaim(t *testing.T) {
	n := newTestNet(t)
	opts := Config{Range: mustPrefix("10.2.0.0/16"), DefaultSubnet: mustPrefix("10.2.1.0/24"), Init: consensusN(2)}
	p1, p2 := n.add(1, opts), n.add(2, opts)
	mustAllocate(t, n, p1, "first", "") // bootstraps the ring
	// 10.2.200.9 is in p2's half: claimed from p1 through p2.
	if err := claim(n, p1, "a", "10.2.200.9/24"); err != nil {
		t.Fatal(err)
	}
	if got := p1.a.Lookup("a"); len(got) != 1 || got[0].String() != "10.2.200.9/24" {
		t.Fatalf("lookup = %v", got)
	}
	if o := ringOf(p2).owner(mustOffset(t, p2, "10.2.200.9")); o != p1.name {
		t.Fatalf("claimed address owned by %v", o)
	}
	// Used on p2: refused.
	if err := claim(n, p2, "b", "10.2.201.1/24"); err != nil {
		t.Fatal(err)
	}
	if err := claim(n, p1, "c", "10.2.201.1/24"); !errors.Is(err, ErrAddressInUse) {
		t.Fatalf("claim of a used address: %v", err)
	}
	// Used locally by someone else: refused; by the same owner: fine.
	if err := claim(n, p1, "c", "10.2.200.9/24"); !errors.Is(err, ErrAddressInUse) {
		t.Fatalf("claim of a locally used address: %v", err)
	}
	if err := claim(n, p1, "a", "10.2.200.9/24"); err != nil {
		t.Fatal(err)
	}
	// Outside the range: recorded.
	if err := claim(n, p1, "d", "192.168.7.7/24"); err != nil {
		t.Fatal(err)
	}
	if err := claim(n, p2, "e", "192.168.7.7/24"); err != nil {
		t.Fatal("outside the range, peers don't coordinate:", err)
	}
	if err := claim(n, p1, "f", "10.2.1.0/24"); err == nil {
		t.Fatal("claimed a network address")
	}
	// The default subnet allocation skips the claimed address.
	if err := claim(n, p1, "g", "10.2.1.2/24"); err != nil {
		t.Fatal(err)
	}
	if got := mustAllocate(t, n, p1, "h", ""); got.String() != "10.2.1.3/24" {
		t.Fatalf("allocation after claims = %v", got)
	}
	// Owner unreachable: a clear error.
	p2.stop()
	err := claim(n, p1, "i", "10.2.250.1/24")
	if !errors.Is(err, ErrOwnerUnreachable) || !strings.Contains(err.Error(), "rmpeer") {
		t.Fatalf("claim from a dead owner: %v", err)
	}
	n.noErrors()
}

func mustOffset(t *testing.T, p *testPeer, addr string) uint32 {
	t.Helper()
	o, ok := p.a.geo.offset(netip.MustParseAddr(addr))
	if !ok {
		t.Fatalf("%s outside range", addr)
	}
	return o
}

func TestConsensusThreePeers(t *testing.T) {
	n := newTestNet(t)
	opts := Config{Range: mustPrefix("10.32.0.0/12"), Init: consensusN(3)}
	var ps []*testPeer
	for i := 1; i <= 3; i++ {
		ps = append(ps, n.add(i, opts))
	}
	got := mustAllocate(t, n, ps[1], "c1", "")
	if !mustPrefix("10.32.0.0/12").Contains(got.Addr()) {
		t.Fatalf("allocated %v", got)
	}
	n.settle()
	r := ringOf(ps[0])
	if len(r.Seeds) != 3 || len(r.Entries) != 3 {
		t.Fatalf("ring after consensus: %+v", r)
	}
	for _, p := range ps {
		if !ringOf(p).equal(r) {
			t.Fatalf("%s has a different ring", p.nick)
		}
		st := p.a.Status()
		if st.Status != "ready" || len(st.Peers) != 3 {
			t.Fatalf("%s status %+v", p.nick, st)
		}
		// Weave Net's split: half, then a quarter each.
		for i, ps := range st.Peers {
			want := 0.25
			if i == 0 {
				want = 0.5
			}
			if ps.Share != want || !ps.Reachable {
				t.Fatalf("peer share %+v, want %v", ps, want)
			}
		}
	}
	// Everybody allocates distinct addresses.
	seen := map[netip.Addr]string{got.Addr(): "c1"}
	for i := range 30 {
		p := ps[i%3]
		owner := "x" + string(rune('A'+i))
		a := mustAllocate(t, n, p, owner, "")
		if prev, dup := seen[a.Addr()]; dup {
			t.Fatalf("%v handed out twice (%s, %s)", a, prev, owner)
		}
		seen[a.Addr()] = owner
	}
	n.noErrors()
}

// Peers asked for addresses one after another, each once the ballots
// before have reached it (and before they gathered their promises), leave
// the first ballot to run rather than each outbidding the last: one
// proposal, not one per peer.
func TestConsensusOneProposalWhenAskedInTurn(t *testing.T) {
	n := newTestNet(t)
	const peers = 12
	opts := Config{Range: mustPrefix("10.32.0.0/12"), Init: consensusN(peers)}
	var ps []*testPeer
	for i := 1; i <= peers; i++ {
		ps = append(ps, n.add(i, opts))
	}
	errs := make(chan error, peers)
	for i, p := range ps {
		go func() {
			_, err := p.a.Allocate(context.Background(), "c"+string(rune('a'+i)), netip.Prefix{})
			errs <- err
		}()
		deadline := time.Now().Add(10 * time.Second)
		for {
			p.a.mu.Lock()
			asked := p.a.wantRing
			p.a.mu.Unlock()
			if asked {
				break
			}
			if time.Now().After(deadline) {
				select {
				case err := <-errs:
					t.Fatalf("%s never asked for the ring: %v", p.nick, err)
				default:
				}
				t.Fatalf("%s never asked for the ring", p.nick)
			}
			time.Sleep(time.Millisecond)
		}
		// The next peer hears of the ballots so far, nobody else does.
		if i+1 < peers {
			n.flushTo(ps[i+1].name)
		}
	}
	for range peers {
		if err := await(n, func() error { return <-errs }); err != nil {
			t.Fatal(err)
		}
	}
	proposers := 0
	for _, p := range ps {
		p.a.mu.Lock()
		if !p.a.proposed.IsZero() {
			proposers++
		}
		p.a.mu.Unlock()
	}
	if proposers != 1 {
		t.Fatalf("%d peers proposed, want 1", proposers)
	}
	n.noErrors()
}

func TestConsensusNeedsQuorum(t *testing.T) {
	n := newTestNet(t)
	opts := Config{Range: mustPrefix("10.32.0.0/12"), Init: consensusN(3)}
	p1, p2, p3 := n.add(1, opts), n.add(2, opts), n.add(3, opts)
	n.partition(1, p1)
	n.partition(2, p2, p3)
	// Alone, p1 can't decide.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p1.a.Allocate(ctx, "lonely", netip.Prefix{})
		done <- err
	}()
	for !strings.HasPrefix(p1.a.Status().Status, "awaiting") {
		runtime.Gosched() // until its proposal is made (it reaches nobody)
	}
	st := p1.a.Status()
	if !strings.HasPrefix(st.Status, "awaiting consensus (quorum 2, known peers 1)") {
		t.Fatalf("status %q", st.Status)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "awaiting consensus") {
		t.Fatalf("allocate without quorum: %v", err)
	}
	// The majority side decides without p1, once it stops waiting for it.
	n.idle = func() { n.tickAll(time.Second) }
	mustAllocate(t, n, p2, "c2", "")
	if r := ringOf(p2); len(r.Seeds) != 2 || ringOf(p1).ready() {
		t.Fatalf("p2 ring %+v, p1 ready %v", r, ringOf(p1).ready())
	}
	n.idle = nil
	// After healing p1 joins the ring, owning nothing, and gets a donation.
	n.heal()
	n.settle()
	if !ringOf(p1).equal(ringOf(p2)) {
		t.Fatal("rings differ after heal")
	}
	got := mustAllocate(t, n, p1, "c1", "")
	if ringOf(p1).owner(mustOffset(t, p1, got.Addr().String())) != p1.name {
		t.Fatal("p1 allocated outside its space")
	}
	n.noErrors()
}

func TestSeedAndObserver(t *testing.T) {
	n := newTestNet(t)
	seeds := Init{Mode: Seed, Seeds: []mesh.PeerName{peerName(1), peerName(2)}}
	p1 := n.add(1, Config{Range: mustPrefix("10.32.0.0/12"), Init: seeds})
	p2 := n.add(2, Config{Range: mustPrefix("10.32.0.0/12"), Init: seeds})
	p3 := n.add(3, Config{Range: mustPrefix("10.32.0.0/12"), Init: seeds})
	obs := n.add(4, Config{Range: mustPrefix("10.32.0.0/12"), Init: Init{Mode: Observer}})
	// Seeded peers have the ring at once, identical, without gossip.
	r := ringOf(p1)
	if !r.ready() || !r.equal(ringOf(p2)) || !r.equal(ringOf(p3)) {
		t.Fatal("seed rings differ")
	}
	if got := r.ownedBy(p1.name); len(got) != 1 || got[0] != (span{0, 1 << 19}) {
		t.Fatalf("p1 owns %v", got)
	}
	if len(r.ownedBy(p3.name)) != 0 {
		t.Fatal("non-seed owns space")
	}
	if ringOf(obs).ready() {
		t.Fatal("observer has a ring before gossip")
	}
	if st := obs.a.Status().Status; st != "idle" {
		t.Fatalf("observer status %q", st)
	}
	// The observer and the non-seed get space by donation.
	a3 := mustAllocate(t, n, p3, "c3", "")
	a4 := mustAllocate(t, n, obs, "c4", "")
	if a3 == a4 {
		t.Fatal("duplicate")
	}
	n.settle()
	for _, p := range []*testPeer{p2, p3, obs} {
		if !ringOf(p).equal(ringOf(p1)) {
			t.Fatalf("%s ring differs", p.nick)
		}
	}
	if len(ringOf(p1).ownedBy(obs.name)) == 0 {
		t.Fatal("observer got no space")
	}
	n.noErrors()
}

func TestObserverStartsConsensus(t *testing.T) {
	n := newTestNet(t)
	p1 := n.add(1, Config{Init: consensusN(2)})
	p2 := n.add(2, Config{Init: consensusN(2)})
	obs := n.add(3, Config{Init: Init{Mode: Observer}})
	got := mustAllocate(t, n, obs, "c", "")
	if !DefaultRange.Contains(got.Addr()) {
		t.Fatalf("got %v", got)
	}
	n.settle()
	r := ringOf(p1)
	if len(r.Seeds) != 2 || !r.equal(ringOf(p2)) || !r.equal(ringOf(obs)) {
		t.Fatalf("ring %+v", r)
	}
	n.noErrors()
}

func TestDonationUntilExhausted(t *testing.T) {
	n := newTestNet(t)
	opts := Config{Range: mustPrefix("10.9.0.0/28"), Init: consensusN(3)}
	p1, p2, p3 := n.add(1, opts), n.add(2, opts), n.add(3, opts)
	_ = p3
	seen := map[netip.Addr]bool{}
	// 16 addresses minus network and broadcast: 14, all on p1.
	for i := range 14 {
		got, err := allocate(n, p1, "c"+string(rune('a'+i)), "")
		if err != nil {
			t.Fatalf("allocation %d: %v (status %q)", i, err, p1.a.Status().Status)
		}
		if seen[got.Addr()] || got.Bits() != 28 {
			t.Fatalf("bad allocation %v", got)
		}
		seen[got.Addr()] = true
	}
	_, err := allocate(n, p1, "one-too-many", "")
	if !errors.Is(err, ErrNoFreeAddresses) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("15th allocation: %v", err)
	}
	_, err = allocate(n, p2, "elsewhere", "")
	if !errors.Is(err, ErrNoFreeAddresses) {
		t.Fatalf("allocation on p2: %v", err)
	}
	// Free one on p1: p2 gets it by donation.
	if err := p1.a.Release("cc", mustPrefix("10.9.0.3/28")); err != nil {
		t.Fatal(err)
	}
	if got := mustAllocate(t, n, p2, "elsewhere", ""); got.String() != "10.9.0.3/28" {
		t.Fatalf("after release p2 got %v", got)
	}
	n.settle()
	if !ringOf(p1).equal(ringOf(p2)) || !ringOf(p1).equal(ringOf(p3)) {
		t.Fatal("rings differ")
	}
	n.noErrors()
}

func TestRemovePeer(t *testing.T) {
	n := newTestNet(t)
	opts := Config{Range: mustPrefix("10.9.0.0/28"), Init: consensusN(3)}
	p1, p2, p3 := n.add(1, opts), n.add(2, opts), n.add(3, opts)
	mustAllocate(t, n, p3, "c3", "")
	n.settle()
	// p3 owns 10.9.0.12-15.
	if _, err := p1.a.RemovePeer(p3.name); !errors.Is(err, ErrPeerReachable) {
		t.Fatalf("rmpeer of a live peer: %v", err)
	}
	if _, err := p1.a.RemovePeer(p1.name); err == nil {
		t.Fatal("rmpeer of ourself")
	}
	p3.stop()
	err := claim(n, p1, "x", "10.9.0.12/28")
	if !errors.Is(err, ErrOwnerUnreachable) {
		t.Fatalf("claim from dead peer: %v", err)
	}
	if st := p1.a.Status(); st.Peers[2].Reachable {
		t.Fatalf("dead peer shown reachable: %+v", st.Peers[2])
	}
	taken, err := p1.a.RemovePeer(p3.name)
	if err != nil || taken != 4 {
		t.Fatalf("rmpeer: %d, %v", taken, err)
	}
	if err := claim(n, p1, "x", "10.9.0.12/28"); err != nil {
		t.Fatal(err)
	}
	// p3's space is reused: fill the whole range from p1 and p2.
	total := 1 // x; p3's own allocations died with it
	for i := 0; ; i++ {
		_, err := allocate(n, p2, "y"+string(rune('a'+i)), "")
		if errors.Is(err, ErrNoFreeAddresses) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		total++
	}
	if total != 14 {
		t.Fatalf("%d addresses usable after rmpeer, want 14", total)
	}
	n.settle()
	if !ringOf(p1).equal(ringOf(p2)) || len(ringOf(p1).ownedBy(p3.name)) != 0 {
		t.Fatal("rings differ or p3 still owns space")
	}
	n.noErrors()
}

func TestShutdownHandsOver(t *testing.T) {
	n := newTestNet(t)
	opts := Config{Range: mustPrefix("10.9.0.0/24"), Init: consensusN(2)}
	p1, p2 := n.add(1, opts), n.add(2, opts)
	mustAllocate(t, n, p1, "c", "")
	if err := await(n, func() error { return p1.a.Shutdown(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	r := ringOf(p2)
	if len(r.ownedBy(p1.name)) != 0 || len(r.ownedBy(p2.name)) != 1 || r.ownedBy(p2.name)[0] != (span{0, 256}) {
		t.Fatalf("ring after handover: %+v", r)
	}
	if len(p1.a.Lookup("c")) != 0 {
		t.Fatal("allocations survive reset")
	}
	p1.stop()
	if got := mustAllocate(t, n, p2, "d", ""); got.String() != "10.9.0.1/24" {
		t.Fatalf("p2 after handover got %v", got)
	}
	// Alone, Shutdown returns at once.
	if err := await(n, func() error { return p2.a.Shutdown(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	n.noErrors()
}

func TestRangeMismatchRefused(t *testing.T) {
	n := newTestNet(t)
	p1 := n.add(1, Config{Range: mustPrefix("10.9.0.0/24"), Init: consensusN(1)})
	n.add(2, Config{Range: mustPrefix("10.8.0.0/24"), Init: consensusN(1)})
	mustAllocate(t, n, p1, "c", "")
	n.gossipAll()
	n.Flush()
	errs := n.takeErrors()
	if len(errs) == 0 || !strings.Contains(errs[0].Error(), "--ipalloc-range") {
		t.Fatalf("errors %v", errs)
	}
}

func TestDifferentSeedsRefused(t *testing.T) {
	n := newTestNet(t)
	p1 := n.add(1, Config{Range: mustPrefix("10.9.0.0/24"), Init: consensusN(1)})
	p2 := n.add(2, Config{Range: mustPrefix("10.9.0.0/24"), Init: consensusN(1)})
	n.partition(1, p1)
	mustAllocate(t, n, p1, "c", "")
	mustAllocate(t, n, p2, "c", "")
	n.heal()
	n.gossipAll()
	n.Flush()
	errs := n.takeErrors()
	if len(errs) == 0 || !errors.Is(errs[0], errDifferentSeeds) {
		t.Fatalf("errors %v", errs)
	}
	if ringOf(p1).equal(ringOf(p2)) {
		t.Fatal("merged incompatible rings")
	}
}

func TestCloseUnblocksAndEndsGoroutines(t *testing.T) {
	before := ipamGoroutines()
	a, err := New(Config{Ourself: peerName(1), Peers: &testPeer{net: newTestNet(t), name: peerName(1)},
		Init: consensusN(3), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := a.Allocate(context.Background(), "c", netip.Prefix{})
		done <- err
	}()
	a.Close()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("allocate after close: %v", err)
	}
	// Close waits for the allocator's own goroutines; one that was
	// answering the Allocate may still be on its way out.
	got := ipamGoroutines()
	for deadline := time.Now().Add(2 * time.Second); got > before && time.Now().Before(deadline); got = ipamGoroutines() {
		time.Sleep(10 * time.Millisecond)
	}
	if got > before {
		t.Fatalf("%d goroutines left running", got-before)
	}
}

func TestNewValidates(t *testing.T) {
	src := &testPeer{net: newTestNet(t), name: peerName(1)}
	for _, cfg := range []Config{
		{Ourself: peerName(1), Peers: src, Range: mustPrefix("10.0.0.0/31")},
		{Ourself: peerName(1), Peers: src, Range: mustPrefix("10.0.0.1/24")},
		{Ourself: peerName(1), Peers: src, Range: mustPrefix("fd00::/64")},
		{Ourself: peerName(1), Peers: src, DefaultSubnet: mustPrefix("10.2.0.0/24")},
		{Ourself: peerName(1), Peers: src, Init: Init{Mode: Seed}},
		{Peers: src},
		{Ourself: peerName(1)},
	} {
		if a, err := New(cfg); err == nil {
			a.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestParseInit(t *testing.T) {
	for in, want := range map[string]string{
		"":          "consensus",
		"consensus": "consensus", "consensus=3": "consensus=3",
		"observer": "observer",
		"seed=0a:00:00:00:00:02,0a:00:00:00:00:01": "seed=0a:00:00:00:00:01,0a:00:00:00:00:02",
	} {
		got, err := ParseInit(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseInit(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"consensus=0", "consensus=x", "seed=", "seed=bob", "observer=1", "paxos"} {
		if _, err := ParseInit(bad); err == nil {
			t.Errorf("ParseInit(%q) succeeded", bad)
		}
	}
}

// Periodic gossip that teaches a peer only another's Free hints is merged
// but not passed on; one that teaches it a new owner is.
func TestFreeHintsNotPassedOn(t *testing.T) {
	n := newTestNet(t)
	opts := Config{Range: mustPrefix("10.32.0.0/12"), Init: consensusN(2)}
	p1, p2 := n.add(1, opts), n.add(2, opts)
	mustAllocate(t, n, p1, "c1", "")
	n.settle()
	mustAllocate(t, n, p2, "c2", "")
	n.Flush()
	st := p2.a.Gossip() // refreshes p2's hints
	delta, err := p1.a.OnGossip(st.Encode()[0])
	if err != nil {
		t.Fatal(err)
	}
	if delta != nil {
		t.Fatal("hints alone were passed on")
	}
	if !ringOf(p1).equal(ringOf(p2)) {
		t.Fatalf("p1 did not take p2's hints:\n%+v\n%+v", ringOf(p1), ringOf(p2))
	}

	// A peer that has no ring yet learns owners: that goes on.
	p3 := n.add(3, Config{Range: mustPrefix("10.32.0.0/12"), Init: Init{Mode: Observer}})
	if delta, err := p3.a.OnGossip(p1.a.Gossip().Encode()[0]); err != nil || delta == nil {
		t.Fatalf("a first ring was not passed on: %v %v", delta, err)
	}
	n.noErrors()
}
