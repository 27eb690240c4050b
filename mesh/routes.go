package mesh

import (
	"maps"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// Routes are computed from a snapshot of the topology, on demand when it
// has changed since the last computation. Snapshot is exact: our own
// gossip, and the unicasts relayed for others, must find a peer that just
// connected. Passing on others' gossip (recent) may use routes up to
// routesInterval old, and the router's goroutine computes the new ones
// when the interval is up: while 50 peers formed a mesh the topology
// changed about a hundred times a second at each, and computing routes
// for every broadcast relayed (two searches of 2,450 links) was a tenth of
// all the work. A relay by old routes reaches a peer late at worst, or
// twice, which gossip allows.
//
// Both ends of every computation are deterministic (worklists in name
// order), so peers with the same topology agree, which is what makes a
// broadcast reach every peer exactly once: a peer relays a broadcast from
// X to those of its neighbours that a breadth-first search from X reaches
// only through it.
type Routes struct {
	peers   *Peers
	ourName PeerName

	mu         sync.Mutex
	cur        *RouteSnapshot // nil until first computed
	computedAt time.Time
	// stale tells the router's goroutine that a reader got routes older
	// than the topology (see due).
	stale func()
	// notified is the generation OnChange callbacks last heard of: a
	// reader may have recomputed since, which is still news to them.
	notified uint64

	cbMu     sync.Mutex
	onChange []func()
}

// A RouteSnapshot is the routes of one state of the topology. It never
// changes; its methods are safe for concurrent use. The zero value knows
// no peers.
type RouteSnapshot struct {
	us          PeerName
	gen, ownGen uint64
	g           graph
	unicast     map[PeerName]PeerName
	unicastAll  map[PeerName]PeerName

	// Broadcast trees, computed on first use: few sources ever flood.
	mu           sync.Mutex
	broadcast    map[PeerName][]PeerName
	broadcastAll map[PeerName][]PeerName
}

// routesInterval is the least time between two computations of routes.
const routesInterval = 100 * time.Millisecond

func newRoutes(ourName PeerName, peers *Peers, stale func()) *Routes {
	return &Routes{peers: peers, ourName: ourName, stale: stale}
}

// OnChange registers f to run after the routes change. f runs on the
// router's goroutine.
func (r *Routes) OnChange(f func()) {
	r.cbMu.Lock()
	defer r.cbMu.Unlock()
	r.onChange = append(r.onChange, f)
}

func (r *Routes) notify() {
	r.cbMu.Lock()
	fs := append([]func(){}, r.onChange...)
	r.cbMu.Unlock()
	for _, f := range fs {
		f()
	}
}

// currentLocked brings the snapshot up to date and returns it; callers
// hold mu.
func (r *Routes) currentLocked() *RouteSnapshot {
	if gen, _ := r.peers.generation(); r.cur != nil && r.cur.gen == gen {
		return r.cur
	}
	s := &RouteSnapshot{us: r.ourName}
	s.g, s.gen, s.ownGen = r.peers.snapshot()
	_, s.unicast = s.g.routes(r.ourName, UnknownPeerName, true)
	_, s.unicastAll = s.g.routes(r.ourName, UnknownPeerName, false)
	r.cur, r.computedAt = s, time.Now()
	return s
}

// Snapshot returns the routes of the topology as it stands.
func (r *Routes) Snapshot() *RouteSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.currentLocked()
}

// recent returns the routes of the topology as it stands, or as it stood
// at most routesInterval ago if our own links are the same, for passing
// on others' gossip: a neighbour that just connected is always in them.
func (r *Routes) recent() *RouteSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	gen, ownGen := r.peers.generation()
	if r.cur != nil && r.cur.gen != gen && r.cur.ownGen == ownGen && time.Since(r.computedAt) < routesInterval {
		if r.stale != nil {
			r.stale()
		}
		return r.cur
	}
	return r.currentLocked()
}

// due is how long until routes may be computed again (zero: now).
func (r *Routes) due() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return max(0, routesInterval-time.Since(r.computedAt))
}

// refresh recomputes if needed and says whether the routes changed since
// the last refresh.
func (r *Routes) refresh() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	gen := r.currentLocked().gen
	if r.notified == gen {
		return false
	}
	r.notified = gen
	return true
}

// Unicast returns the neighbour to send to for name, over established
// connections that both ends report.
func (r *Routes) Unicast(name PeerName) (PeerName, bool) { return r.Snapshot().Unicast(name) }

// UnicastAll is Unicast over all connections.
func (r *Routes) UnicastAll(name PeerName) (PeerName, bool) {
	hop, ok := r.Snapshot().unicastAll[name]
	return hop, ok
}

// Broadcast returns the neighbours to relay a broadcast from name to, over
// established symmetric connections.
func (r *Routes) Broadcast(name PeerName) []PeerName { return r.Snapshot().Broadcast(name) }

// BroadcastAll is Broadcast over all connections.
func (r *Routes) BroadcastAll(name PeerName) []PeerName {
	return r.Snapshot().lookupBroadcast(name, false)
}

// relayHops is BroadcastAll by recent routes, for passing on a broadcast
// from another peer.
func (r *Routes) relayHops(name PeerName) []PeerName {
	return r.recent().lookupBroadcast(name, false)
}

// Known says whether name is a peer of the topology.
func (s *RouteSnapshot) Known(name PeerName) bool {
	_, ok := s.g[name]
	return ok
}

// Unicast returns the neighbour to send to for name, over established
// connections that both ends report.
func (s *RouteSnapshot) Unicast(name PeerName) (PeerName, bool) {
	hop, ok := s.unicast[name]
	return hop, ok
}

// Broadcast returns the neighbours to relay a broadcast from name to, over
// established symmetric connections. The slice is shared: read only.
func (s *RouteSnapshot) Broadcast(name PeerName) []PeerName { return s.lookupBroadcast(name, true) }

func (s *RouteSnapshot) lookupBroadcast(name PeerName, strict bool) []PeerName {
	if !s.Known(name) {
		// Not cached: sources named on the wire are anyone's choice.
		return []PeerName{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cache := &s.broadcastAll
	if strict {
		cache = &s.broadcast
	}
	if hops, ok := (*cache)[name]; ok {
		return hops
	}
	if *cache == nil {
		*cache = map[PeerName][]PeerName{}
	}
	hops := s.g.broadcastHops(name, s.us, strict)
	(*cache)[name] = hops
	return hops
}

// PeerNames are the peers in the topology.
func (r *Routes) PeerNames() map[PeerName]struct{} { return r.peers.names() }

// randomNeighbours picks up to limit neighbours (0: about 2·log2(peers)),
// weighted by how many peers each is the unicast next hop for (by recent
// routes), so that gossip crosses bottleneck links.
func (r *Routes) randomNeighbours(except PeerName, limit int) []PeerName {
	unicastAll := r.recent().unicastAll
	weights := map[PeerName]int64{}
	var total int64
	for _, hop := range unicastAll {
		if hop != UnknownPeerName && hop != except {
			weights[hop]++
			total++
		}
	}
	n := len(unicastAll)
	want := int(math.Min(2*math.Log2(float64(n)), float64(len(weights))))
	if limit > 0 {
		want = min(want, limit)
	}
	names := make([]PeerName, 0, len(weights))
	for h := range weights {
		names = append(names, h)
	}
	sort.Slice(names, func(i, j int) bool { return names[i] < names[j] })
	out := make([]PeerName, 0, want)
	for len(out) < want && total > 0 {
		x := rand.Int64N(total)
		for i, h := range names {
			if x < weights[h] {
				out = append(out, h)
				total -= weights[h]
				names = append(names[:i], names[i+1:]...)
				break
			}
			x -= weights[h]
		}
	}
	return out
}

// neighbours calls f for each peer from links to, skipping those in
// exclude, and with strict only over established connections that the far
// end reports too (established).
func (g graph) neighbours(from PeerName, strict bool, exclude map[PeerName]PeerName, f func(PeerName)) {
	for to, l := range g[from] {
		if strict && !l.established {
			continue
		}
		if _, ok := g[to]; !ok {
			continue // a link to a peer the topology does not hold
		}
		if _, seen := exclude[to]; seen {
			continue
		}
		if strict {
			back, ok := g[to][from]
			if !ok || !back.established {
				continue
			}
		}
		f(to)
	}
}

// routes widens breadth-first from start, level by level in name order,
// recording for each peer reached the neighbour of start it was reached
// through. It stops when it takes stopAt from the worklist (if stopAt is a
// peer) and says so.
func (g graph) routes(start, stopAt PeerName, strict bool) (bool, map[PeerName]PeerName) {
	if stopAt != UnknownPeerName {
		return g.search(start, strict, nil, func(cur PeerName) bool { return cur == stopAt })
	}
	// Every route is known once every peer is reached. In a full mesh
	// that is at start's own links, where the search went on through
	// every neighbour's links (2,450 at 50 peers) for nothing, twice (all
	// and established links) at every change of the topology: a tenth of
	// a forming mesh's work.
	reached := 1 // start
	_, hops := g.search(start, strict, func(PeerName) { reached++ }, func(PeerName) bool { return reached == len(g) })
	return false, hops
}

// search is routes' search: it calls reached (if not nil) with each peer
// as it is reached, and stop with each peer before taking it from the
// worklist; it ends there if stop says so, and says whether it did.
func (g graph) search(start PeerName, strict bool, reached func(PeerName), stop func(PeerName) bool) (bool, map[PeerName]PeerName) {
	hops := map[PeerName]PeerName{start: UnknownPeerName}
	next := []PeerName{start}
	for len(next) > 0 {
		level := next
		sort.Slice(level, func(i, j int) bool { return level[i] < level[j] })
		next = nil
		for _, cur := range level {
			if stop(cur) {
				return true, hops
			}
			g.neighbours(cur, strict, hops, func(to PeerName) {
				next = append(next, to)
				if cur == start {
					hops[to] = to
				} else {
					hops[to] = hops[cur]
				}
				if reached != nil {
					reached(to)
				}
			})
		}
	}
	return false, hops
}

// withOurLink is g with our link to src in src's record too, if only
// ours shows it: src sends its record when the link is established, and
// sends to us over it before that. Searched without it, a broadcast src
// sent us right after connecting reached nobody and went no further.
func (g graph) withOurLink(src, us PeerName) graph {
	if _, ours := g[us][src]; !ours {
		return g
	}
	if _, theirs := g[src][us]; theirs {
		return g
	}
	links := maps.Clone(g[src])
	links[us] = link{}
	g = maps.Clone(g)
	g[src] = links
	return g
}

// broadcastHops: of our neighbours, those a search from src (routes'
// order) has not reached by the time it reaches us. The search stops as
// soon as it has reached all of them, since none then needs us: in a full
// mesh that is at src's own links, where searching on to us took about 25
// peers' links, for every source at every change of the topology, a tenth
// of every daemon's work while 50 peers formed a mesh.
func (g graph) broadcastHops(src, us PeerName, strict bool) []PeerName {
	hops := []PeerName{}
	if _, ok := g[src]; !ok {
		return hops
	}
	if !strict {
		g = g.withOurLink(src, us)
	}
	ours := map[PeerName]struct{}{}
	g.neighbours(us, strict, nil, func(to PeerName) { ours[to] = struct{}{} })
	left := len(ours)
	reach := func(p PeerName) {
		if _, ok := ours[p]; ok {
			left--
		}
	}
	reach(src)
	allReached := false
	found, reached := g.search(src, strict, reach, func(cur PeerName) bool {
		allReached = cur != us && left == 0
		return cur == us || allReached
	})
	if !found || allReached {
		return hops // unreachable, or reachable through any of them
	}
	g.neighbours(us, strict, reached, func(to PeerName) { hops = append(hops, to) })
	sort.Slice(hops, func(i, j int) bool { return hops[i] < hops[j] })
	return hops
}
