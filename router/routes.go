package router

import (
	"slices"
	"time"

	"weavenet/mesh"
)

// The router's view of mesh's routes. mesh computes them on first use
// after a topology change, behind its lock; a datagram naming a made-up
// peer would thus make the receive loop wait on mesh. Instead routeLoop
// takes mesh's RouteSnapshot, immutable, whenever mesh recalculates its
// routes or forgets a peer, and the forwarding loops read it through an
// atomic pointer: no wait on mesh. A snapshot computes a peer's broadcast
// tree the first time a frame from it floods; few peers ever flood.

// routeSource is what the forwarding loops ask about routes: mesh's
// RouteSnapshot (tests give tables of their own).
type routeSource interface {
	// Known says whether the peer is in the topology.
	Known(mesh.PeerName) bool
	// Unicast is the next hop towards the peer.
	Unicast(mesh.PeerName) (mesh.PeerName, bool)
	// Broadcast are the next hops of a frame flooded from the peer (read
	// only).
	Broadcast(mesh.PeerName) []mesh.PeerName
}

// routeView holds a routeSource for the atomic pointer.
type routeView struct{ routeSource }

// routeRebuildGap bounds how stale the view may be during a burst. A new
// direct neighbour needs no route (knownPeer falls back to its forwarder);
// a peer reached through others waits at most this long.
const routeRebuildGap = 250 * time.Millisecond

// routesChanged asks routeLoop for a new snapshot. It never blocks: mesh calls
// it from its own goroutine.
func (r *Router) routesChanged() {
	select {
	case r.routesDirty <- struct{}{}:
	default:
	}
}

// routeLoop takes a new snapshot each time routesChanged asks, at most
// once per routeRebuildGap: a burst of changes (a mesh forming) is one at
// its start and one per gap after, not one per change.
func (r *Router) routeLoop() {
	gap := time.NewTimer(0)
	defer gap.Stop()
	for {
		select {
		case <-r.closing:
			return
		case <-gap.C:
		}
		select {
		case <-r.closing:
			return
		case <-r.routesDirty:
		}
		gap.Reset(routeRebuildGap)
		r.routes.Store(&routeView{r.mesh.Routes.Snapshot()})
	}
}

// RouteTo is what the data path's routes say now about frames to and
// from peer: the next hop towards it (ok false if none), and the
// neighbours a frame flooded from it goes to. They follow mesh's routes
// within routeRebuildGap.
func (r *Router) RouteTo(peer mesh.PeerName) (hop mesh.PeerName, broadcast []mesh.PeerName, ok bool) {
	rt := r.routes.Load()
	hop, ok = rt.Unicast(peer)
	return hop, slices.Clone(rt.Broadcast(peer)), ok
}

// knownPeer reports whether a frame may name peer as its source: a peer in
// the topology, or a direct neighbour whose connection is newer than the
// snapshot.
func (r *Router) knownPeer(peer mesh.PeerName) bool {
	if r.routes.Load().Known(peer) {
		return true
	}
	return r.forwarder(peer) != nil
}
