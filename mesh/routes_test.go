package mesh

import (
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"
)

// square: 1-2, 2-3, 3-4, 4-1, plus 1-3 one-sided (only 1 reports it).
func squareGraph(established bool) graph {
	g := graph{1: {}, 2: {}, 3: {}, 4: {}}
	link2 := func(a, b PeerName) {
		g[a][b] = link{established: established}
		g[b][a] = link{established: established}
	}
	link2(1, 2)
	link2(2, 3)
	link2(3, 4)
	link2(4, 1)
	g[1][3] = link{established: true}
	return g
}

func TestRoutesUnicast(t *testing.T) {
	g := squareGraph(true)
	_, strict := g.routes(1, UnknownPeerName, true)
	want := map[PeerName]PeerName{1: UnknownPeerName, 2: 2, 4: 4, 3: 2}
	if !reflect.DeepEqual(strict, want) {
		t.Errorf("strict routes %v, want %v", strict, want)
	}
	_, all := g.routes(1, UnknownPeerName, false)
	if all[3] != 3 {
		t.Errorf("over all connections 3 is direct: %v", all)
	}
	_, none := squareGraph(false).routes(1, UnknownPeerName, true)
	if len(none) != 1 {
		t.Errorf("unestablished connections route: %v", none)
	}
}

// Every source's broadcast tree has n-1 edges, and the edges reach all.
func TestRoutesBroadcastTree(t *testing.T) {
	g := squareGraph(true)
	for src := PeerName(1); src <= 4; src++ {
		reached := map[PeerName]bool{src: true}
		edges := 0
		var walk func(at PeerName)
		walk = func(at PeerName) {
			for _, h := range g.broadcastHops(src, at, true) {
				edges++
				if reached[h] {
					t.Fatalf("source %d: %d reached twice", src, h)
				}
				reached[h] = true
				walk(h)
			}
		}
		walk(src)
		if edges != 3 || len(reached) != 4 {
			t.Errorf("source %d: %d edges reach %v", src, edges, reached)
		}
	}
	if hops := g.broadcastHops(9, 1, true); len(hops) != 0 {
		t.Errorf("unknown source: %v", hops)
	}
}

// broadcastHops stops its search once all our neighbours are reached; on
// random topologies (some links one-sided or not established, some to
// peers the topology does not hold) it gives what searching on to us
// gives: our neighbours the search has not reached when it takes us.
func TestBroadcastHopsStopsEarlySameResult(t *testing.T) {
	full := func(g graph, src, us PeerName, strict bool) []PeerName {
		hops := []PeerName{}
		if _, ok := g[src]; !ok {
			return hops
		}
		if !strict {
			g = g.withOurLink(src, us)
		}
		found, reached := g.routes(src, us, strict)
		if !found {
			return hops
		}
		g.neighbours(us, strict, reached, func(to PeerName) { hops = append(hops, to) })
		sort.Slice(hops, func(i, j int) bool { return hops[i] < hops[j] })
		return hops
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 300; round++ {
		g, n := randomGraph(rng, 2)
		for src := PeerName(1); src <= PeerName(n+1); src++ {
			for us := PeerName(1); us <= PeerName(n); us++ {
				for _, strict := range []bool{true, false} {
					got, want := g.broadcastHops(src, us, strict), full(g, src, us, strict)
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("round %d, src %v, us %v, strict %v: %v, searching on gives %v\n%v", round, src, us, strict, got, want, g)
					}
				}
			}
		}
	}
}

// A snapshot shares the peers' link maps with Peers: a change to our own
// links afterwards makes a new map, and the snapshot, and routes computed
// from it, keep the topology they were taken of; for relays the routes of
// a change elsewhere wait until routesInterval after the last ones. The
// zero snapshot knows nobody.
func TestSnapshotKeepsItsTopology(t *testing.T) {
	ps := newPeers(&Peer{Name: 1})
	ps.mu.Lock()
	ps.byName[2] = &peerState{p: &Peer{Name: 2}, links: map[PeerName]link{1: {established: true}, 9: {established: true}}}
	ps.setOwnLinkLocked(2, link{established: true}, true)
	ps.gen++
	ps.mu.Unlock()
	stale := 0
	r := newRoutes(1, ps, func() { stale++ })
	before := r.Snapshot()
	if hop, ok := before.Unicast(2); !ok || hop != 2 || !before.Known(2) || before.Known(9) {
		t.Fatalf("before: route to 2 %v %v, known 2 %v, known 9 (not a peer) %v", hop, ok, before.Known(2), before.Known(9))
	}
	if got := before.Broadcast(1); !reflect.DeepEqual(got, []PeerName{2}) {
		t.Errorf("broadcast from us: %v, want [2]", got)
	}

	// Within routesInterval of the last computation a relay gets the
	// last routes after a change elsewhere, and the router's goroutine is
	// told to compute anew; after a change to our own links, and from
	// Snapshot, routes are exact.
	ps.mu.Lock()
	ps.byName[2].links = map[PeerName]link{1: {established: true}}
	ps.gen++
	ps.mu.Unlock()
	if r.recent() != before || stale != 1 || r.due() == 0 {
		t.Fatalf("within the interval: a new snapshot, or %d calls of stale, or due now", stale)
	}
	ps.mu.Lock()
	ps.setOwnLinkLocked(2, link{}, false)
	ps.gen++
	ps.mu.Unlock()
	if r.recent() == before {
		t.Fatal("our own link changed, and a relay got the old routes")
	}
	after := r.Snapshot()
	if _, ok := after.Unicast(2); ok {
		t.Error("after removing the link: still a route to 2")
	}
	if _, ok := before.Unicast(2); !ok || len(before.g[1]) != 1 {
		t.Errorf("the earlier snapshot changed: our links %v", before.g[1])
	}
	if got := before.Broadcast(2); len(got) != 0 {
		t.Errorf("broadcast from 2 relayed to %v; we are its only neighbour", got)
	}

	var zero RouteSnapshot
	if _, ok := zero.Unicast(1); ok || zero.Known(1) || len(zero.Broadcast(1)) != 0 {
		t.Error("the zero snapshot knows a peer")
	}
}

// A peer with many neighbours sends its record less often: about
// topologySendRate records a second at most, and never more than two a
// second.
func TestTopologySpacing(t *testing.T) {
	for _, c := range []struct {
		neighbours int
		want       time.Duration
	}{{0, 500 * time.Millisecond}, {10, 500 * time.Millisecond}, {49, 1225 * time.Millisecond}, {200, 5 * time.Second}} {
		if got := topologySpacing(c.neighbours); got != c.want {
			t.Errorf("topologySpacing(%d) = %v, want %v", c.neighbours, got, c.want)
		}
	}
}

// A broadcast from a neighbour whose record we hold without its link to us
// (it sends its record when the link is established) is still passed on.
func TestBroadcastHopsFromNeighbourWithStaleRecord(t *testing.T) {
	// 1 - 2 - 3; we are 2, and 1's record does not show 2 yet.
	g := graph{1: {}, 2: {1: link{}, 3: link{}}, 3: {2: link{}}}
	if got := g.broadcastHops(1, 2, false); !reflect.DeepEqual(got, []PeerName{3}) {
		t.Fatalf("hops for a broadcast from 1 = %v, want [3]", got)
	}
	if len(g[1]) != 0 {
		t.Fatal("the search changed the topology")
	}
}

// Routes found by a search that stops once every peer is reached are those
// of the whole search.
func TestRoutesStopWhenAllReachedSameResult(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 300; round++ {
		g, n := randomGraph(rng, 1)
		for start := PeerName(1); start <= PeerName(n+1); start++ {
			for _, strict := range []bool{true, false} {
				_, got := g.routes(start, UnknownPeerName, strict)
				_, want := g.search(start, strict, nil, func(PeerName) bool { return false })
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("round %d, start %v, strict %v: %v, the whole search gives %v\n%v", round, start, strict, got, want, g)
				}
			}
		}
	}
}

// randomGraph is a topology of least to least+11 peers, named
// 1 to n, of random density, with some links to peer n+1, which it does
// not hold, and some not established.
func randomGraph(rng *rand.Rand, least int) (graph, int) {
	n := least + rng.IntN(12)
	g := graph{}
	for p := 1; p <= n; p++ {
		g[PeerName(p)] = map[PeerName]link{}
	}
	density := rng.Float64()
	for a := 1; a <= n; a++ {
		for b := 1; b <= n+1; b++ {
			if a != b && rng.Float64() < density {
				g[PeerName(a)][PeerName(b)] = link{established: rng.IntN(5) > 0}
			}
		}
	}
	return g, n
}
