package router

import (
	"slices"
	"time"

	"weavenet/mesh"
)

// The router's own copy of mesh's routes. mesh keeps its tables behind a
// lock, and computes them, and a peer's broadcast tree, on first use after
// a topology change; a datagram naming a made-up peer would thus make the
// receive loop wait on mesh. Instead routeLoop rebuilds an immutable table
// whenever mesh recalculates its routes or forgets a peer, and the
// forwarding loops read it through an atomic pointer: no lock, no wait.

// peerRoute is what the forwarding loops need to know about one peer in the
// topology.
type peerRoute struct {
	// hop is the next hop of the unicast route to the peer, if hasHop.
	hop    mesh.PeerName
	hasHop bool
	// broadcast are the next hops of a frame flooded from the peer (mesh's
	// slice: read only).
	broadcast []mesh.PeerName
}

// routeTable maps every peer in the topology, ourselves included, to its
// routes. A table is never changed once stored.
type routeTable map[mesh.PeerName]peerRoute

// buildRoutes builds a table for the peers named, asking unicast and
// broadcast (mesh's, in the router) for their routes.
func buildRoutes(peers []mesh.PeerName, unicast func(mesh.PeerName) (mesh.PeerName, bool), broadcast func(mesh.PeerName) []mesh.PeerName) routeTable {
	t := make(routeTable, len(peers))
	for _, p := range peers {
		hop, ok := unicast(p)
		t[p] = peerRoute{hop: hop, hasHop: ok, broadcast: broadcast(p)}
	}
	return t
}

// routeRebuildGap bounds how stale the table may be during a burst. A new
// direct neighbour needs no entry (knownPeer falls back to its forwarder);
// a peer reached through others waits at most this long.
const routeRebuildGap = 250 * time.Millisecond

// routesChanged asks routeLoop for a new table. It never blocks: mesh calls
// it from its own goroutine.
func (r *Router) routesChanged() {
	select {
	case r.routesDirty <- struct{}{}:
	default:
	}
}

// routeLoop rebuilds the route table each time routesChanged asks, at most
// once per routeRebuildGap: a burst of changes (a mesh forming) is one
// rebuild at its start and one per gap after, not one per change; every
// rebuild computes every peer's broadcast hops.
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
		descs := r.mesh.Peers.Descriptions()
		names := make([]mesh.PeerName, len(descs))
		for i, d := range descs {
			names[i] = d.Name
		}
		t := buildRoutes(names, r.mesh.Routes.Unicast, r.mesh.Routes.Broadcast)
		r.routes.Store(&t)
	}
}

// RouteTo is what the data path's route table says now about frames to
// and from peer: the next hop towards it (ok false if none), and the
// neighbours a frame flooded from it goes to. The table follows mesh's
// routes within routeRebuildGap.
func (r *Router) RouteTo(peer mesh.PeerName) (hop mesh.PeerName, broadcast []mesh.PeerName, ok bool) {
	pr, known := r.route(peer)
	return pr.hop, slices.Clone(pr.broadcast), known && pr.hasHop
}

// route returns what the route table says about peer.
func (r *Router) route(peer mesh.PeerName) (peerRoute, bool) {
	pr, ok := (*r.routes.Load())[peer]
	return pr, ok
}

// knownPeer reports whether a frame may name peer as its source: a peer in
// the topology, or a direct neighbour whose connection is newer than the
// table.
func (r *Router) knownPeer(peer mesh.PeerName) bool {
	if _, ok := r.route(peer); ok {
		return true
	}
	return r.forwarder(peer) != nil
}
