package ipam

import (
	"math/rand/v2"
	"testing"

	"weavenet/mesh"
)

// ringSim evolves one ring replica per peer by random legal operations:
// owners transfer pieces of their own space and update Free hints, and
// replicas merge pairwise as gossip would.
type ringSim struct {
	rnd      *rand.Rand
	peers    []mesh.PeerName
	replicas map[mesh.PeerName]*ring
}

func newRingSim(seed uint64, nPeers int, seeds int) *ringSim {
	s := &ringSim{rnd: rand.New(rand.NewPCG(seed, seed^0x9e37)), replicas: map[mesh.PeerName]*ring{}}
	for i := 1; i <= nPeers; i++ {
		s.peers = append(s.peers, peerName(i))
	}
	r := &ring{Range: mustPrefix("10.9.0.0/24")}
	r.claim(s.peers[:min(seeds, nPeers)])
	for _, p := range s.peers {
		s.replicas[p] = r.clone()
	}
	return s
}

func (s *ringSim) peer() mesh.PeerName { return s.peers[s.rnd.IntN(len(s.peers))] }

// step does one random operation.
func (s *ringSim) step(t testing.TB) {
	p := s.peer()
	r := s.replicas[p]
	switch s.rnd.IntN(4) {
	case 0, 1: // p donates part of its space to q
		owned := r.ownedBy(p)
		if len(owned) == 0 {
			return
		}
		sp := owned[s.rnd.IntN(len(owned))]
		lo := sp.lo + uint32(s.rnd.IntN(int(sp.len())))
		hi := lo + 1 + uint32(s.rnd.IntN(int(sp.hi-lo)))
		if err := r.transfer(p, s.peer(), span{lo, hi}); err != nil {
			t.Fatal(err)
		}
	case 2: // p updates a Free hint
		for i, e := range r.Entries {
			if e.Peer == p {
				r.setFree(i, uint32(s.rnd.IntN(10)))
				break
			}
		}
	case 3: // gossip from q to p
		m, err := r.merge(s.replicas[s.peer()])
		if err != nil {
			t.Fatal(err)
		}
		s.replicas[p] = m
	}
}

// checkInvariants: every replica is well formed, and no two peers
// both believe they own the same address.
func (s *ringSim) checkInvariants(t testing.TB) {
	t.Helper()
	for p, r := range s.replicas {
		if !r.ready() || r.Entries[0].Token != 0 {
			t.Fatalf("%v: ring does not start at 0", p)
		}
		for i := 1; i < len(r.Entries); i++ {
			if r.Entries[i].Token <= r.Entries[i-1].Token {
				t.Fatalf("%v: tokens out of order", p)
			}
		}
		// Round trip through the wire format.
		d := &decoder{b: appendRing(nil, r)}
		if got := d.ring(); d.err != nil || !got.equal(r) {
			t.Fatalf("%v: encoding round trip: %v", p, d.err)
		}
	}
	owner := make([]mesh.PeerName, 256)
	for _, p := range s.peers {
		for _, sp := range s.replicas[p].ownedBy(p) {
			for o := sp.lo; o < sp.hi; o++ {
				if owner[o] != 0 {
					t.Fatalf("offset %d owned by both %v and %v", o, owner[o], p)
				}
				owner[o] = p
			}
		}
	}
}

func mustMerge(t testing.TB, a, b *ring) *ring {
	t.Helper()
	m, err := a.merge(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkLaws checks the merge of three random replicas is a join.
func (s *ringSim) checkLaws(t testing.TB) {
	t.Helper()
	a, b, c := s.replicas[s.peer()], s.replicas[s.peer()], s.replicas[s.peer()]
	a0 := a.clone()
	if !mustMerge(t, a, b).equal(mustMerge(t, b, a)) {
		t.Fatal("merge not commutative")
	}
	if !mustMerge(t, mustMerge(t, a, b), c).equal(mustMerge(t, a, mustMerge(t, b, c))) {
		t.Fatal("merge not associative")
	}
	if !mustMerge(t, a, a).equal(a) {
		t.Fatal("merge not idempotent")
	}
	if !a.equal(a0) {
		t.Fatal("merge changed its receiver")
	}
}

func TestRingMergeProperties(t *testing.T) {
	for seed := range uint64(200) {
		s := newRingSim(seed, 2+int(seed%5), 1+int(seed%3))
		for range 150 {
			s.step(t)
			s.checkInvariants(t)
			s.checkLaws(t)
		}
		// Gossip to convergence in two different orders: same ring.
		var all1, all2 *ring
		for i, p := range s.peers {
			q := s.peers[len(s.peers)-1-i]
			if all1 == nil {
				all1, all2 = s.replicas[p], s.replicas[q]
				continue
			}
			all1, all2 = mustMerge(t, all1, s.replicas[p]), mustMerge(t, s.replicas[q], all2)
		}
		if !all1.equal(all2) {
			t.Fatalf("seed %d: merge order changed the result", seed)
		}
		// Converged, every address has exactly one owner and every
		// peer agrees.
		for _, p := range s.peers {
			s.replicas[p] = all1.clone()
		}
		s.checkInvariants(t)
	}
}

func TestRingClaimSplitsLikeWeaveNet(t *testing.T) {
	r := &ring{Range: mustPrefix("10.32.0.0/12")}
	r.claim([]mesh.PeerName{peerName(3), peerName(1), peerName(2), peerName(1)})
	if len(r.Seeds) != 3 || len(r.Entries) != 3 || r.Entries[0].Peer != peerName(1) {
		t.Fatalf("claim: %+v", r)
	}
	// Halves, recursively: 1/2, 1/4, 1/4, each piece CIDR-aligned.
	for i, want := range []uint32{1 << 19, 1 << 18, 1 << 18} {
		if l := r.spanAt(i).len(); l != want {
			t.Fatalf("piece %d has %d addresses, want %d", i, l, want)
		}
	}
	tiny := &ring{Range: mustPrefix("10.0.0.0/30")}
	tiny.claim([]mesh.PeerName{1, 2, 3, 4, 5, 6})
	if len(tiny.Entries) != 4 || tiny.Entries[0].Token != 0 {
		t.Fatalf("more seeds than addresses: %+v", tiny)
	}
}

func TestRingTransferChecksOwnership(t *testing.T) {
	r := &ring{Range: mustPrefix("10.9.0.0/24")}
	r.claim([]mesh.PeerName{1, 2})
	if err := r.transfer(1, 3, span{100, 200}); err == nil {
		t.Fatal("transferred space owned by someone else")
	}
	if err := r.transfer(1, 3, span{10, 20}); err != nil {
		t.Fatal(err)
	}
	want := []entry{{0, 1, 0, 128}, {10, 3, 1, 10}, {20, 1, 0, 0}, {128, 2, 0, 128}}
	if len(r.Entries) != len(want) {
		t.Fatalf("entries %+v", r.Entries)
	}
	for i := range want {
		if r.Entries[i] != want[i] {
			t.Fatalf("entry %d = %+v, want %+v", i, r.Entries[i], want[i])
		}
	}
	if r.owner(9) != 1 || r.owner(10) != 3 || r.owner(19) != 3 || r.owner(20) != 1 || r.owner(255) != 2 {
		t.Fatal("owner lookup")
	}
	other := &ring{Range: mustPrefix("10.9.0.0/24")}
	other.claim([]mesh.PeerName{1})
	if _, err := r.merge(other); err != errDifferentSeeds {
		t.Fatalf("merge of different bootstraps: %v", err)
	}
	if _, err := r.merge(&ring{Range: mustPrefix("10.8.0.0/24")}); err == nil {
		t.Fatal("merged different ranges")
	}
}

// FuzzRingMerge drives the ring simulation from fuzzed seeds.
func FuzzRingMerge(f *testing.F) {
	f.Add(uint64(1), uint8(3), uint8(40))
	f.Add(uint64(99), uint8(6), uint8(200))
	f.Fuzz(func(t *testing.T, seed uint64, peers, steps uint8) {
		s := newRingSim(seed, 2+int(peers%6), 1+int(peers%2))
		for range int(steps) {
			s.step(t)
		}
		s.checkInvariants(t)
		s.checkLaws(t)
	})
}
