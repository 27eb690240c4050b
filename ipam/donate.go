package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"weavenet/mesh"
)

// Space moves between peers only by donation, decided by the owner:
//
//  1. A peer with no free address in a subnet asks one reachable peer
//     owning part of it (most free first, by the ring's Free hints) with
//     kindSpaceRequest, and waits.
//  2. The owner hands over the upper half of its largest free run in the
//     subnet (ring.transfer), persists the ring, and answers
//     kindSpaceGrant with it; it also broadcasts it. With nothing free it
//     answers kindSpaceRefused, and the asker tries the next peer.
//  3. When every reachable owner refused, Allocate fails with
//     ErrNoFreeAddresses, naming unreachable owners if any.
//
// A claim of a specific address works the same way for the single
// address: kindClaimRequest to its owner, which grants it if it is not in
// use (kindClaimGrant) or refuses (kindClaimRefused with a reason).

// requestSpace asks the next peer for space in subnet, or fails when
// nobody reachable has any. Lock held.
func (a *Allocator) requestSpace(subnet netip.Prefix, u span) error {
	req := a.spaceReqs[subnet]
	if req == nil {
		req = &spaceRequest{refused: map[mesh.PeerName]bool{}}
		a.spaceReqs[subnet] = req
	}
	now := a.now()
	if req.asked != mesh.UnknownPeerName {
		if now.Sub(req.sentAt) < retryAfter && a.reachable(req.asked) {
			return nil // wait for the answer
		}
		req.refused[req.asked] = true // silent or gone
		req.asked = mesh.UnknownPeerName
	}
	donors, unreachable, lost := a.donors(u, req.refused)
	if len(donors) == 0 {
		delete(a.spaceReqs, subnet)
		if len(unreachable) > 0 {
			return fmt.Errorf("ipam: %w in %v on the reachable peers; %d of its addresses belong to unreachable peers %s: wait for them, or `weave rmpeer` those that are gone",
				ErrNoFreeAddresses, subnet, lost, strings.Join(unreachable, ", "))
		}
		return fmt.Errorf("ipam: %w in %v: all its addresses are in use; release some or use a larger subnet", ErrNoFreeAddresses, subnet)
	}
	to := donors[0]
	req.asked, req.sentAt = to, now
	a.send(to, &message{kind: kindSpaceRequest, subnet: subnet}, func() {
		if a.spaceReqs[subnet] == req && req.asked == to {
			req.refused[to] = true
			req.asked = mesh.UnknownPeerName
			a.signal()
		}
	})
	return nil
}

// donors returns the reachable peers owning part of u that haven't
// refused, most free first; and the unreachable owners with how many
// addresses of u they hold.
func (a *Allocator) donors(u span, refused map[mesh.PeerName]bool) (donors []mesh.PeerName, unreachable []string, lost uint64) {
	hint := map[mesh.PeerName]uint64{}
	reach := map[mesh.PeerName]bool{}
	for _, p := range a.cfg.Peers.Reachable() {
		reach[p] = true
	}
	for i, e := range a.ring.Entries {
		if e.Peer == a.cfg.Ourself {
			continue
		}
		ov := a.ring.spanAt(i).intersect(u).len()
		if ov == 0 {
			continue
		}
		hint[e.Peer] += uint64(min(e.Free, ov))
		if !reach[e.Peer] {
			lost += uint64(ov)
		}
	}
	for p := range hint {
		switch {
		case !reach[p]:
			unreachable = append(unreachable, a.peerString(p))
		case !refused[p]:
			donors = append(donors, p)
		}
	}
	slices.SortFunc(donors, func(x, y mesh.PeerName) int {
		if hint[x] != hint[y] {
			if hint[x] > hint[y] {
				return -1
			}
			return 1
		}
		if x < y {
			return -1
		}
		return 1
	})
	slices.Sort(unreachable)
	return donors, unreachable, lost
}

// onSpaceRequest donates space in subnet to src, or refuses. Lock held.
func (a *Allocator) onSpaceRequest(src mesh.PeerName, subnet netip.Prefix) {
	refuse := func() {
		a.send(src, &message{kind: kindSpaceRefused, subnet: subnet}, nil)
		a.bcast = true // spread our true Free hints
	}
	sub, ok := a.geo.subnetSpan(subnet)
	if !a.ring.ready() || !ok || src == a.cfg.Ourself {
		refuse()
		return
	}
	u := usable(sub)
	best := a.space.largestFree(u)
	if best.empty() {
		refuse()
		return
	}
	n := (best.len() + 1) / 2
	chunk := span{best.hi - n, best.hi}
	if tail := (span{u.hi, sub.hi}); chunk.hi == u.hi && !tail.empty() && a.space.freeIn(tail) == tail.len() {
		chunk.hi = sub.hi // the subnet's broadcast address too, rather than keep a useless sliver
	}
	r := a.ring.clone()
	if err := r.transfer(a.cfg.Ourself, src, chunk); err != nil {
		a.log.Error("donation failed", "err", err)
		refuse()
		return
	}
	if a.adoptRing(r) != nil {
		refuse()
		return
	}
	a.log.Info("donated address space", "to", a.peerString(src), "range", a.geo.addrRange(chunk).String(), "addresses", chunk.len())
	a.send(src, &message{kind: kindSpaceGrant, subnet: subnet, state: a.snapshot()}, nil)
	a.bcast = true
}

// onClaimRequest gives src one address we own, if it is free. Lock held.
func (a *Allocator) onClaimRequest(src mesh.PeerName, addr netip.Addr) {
	refuse := func(reason byte) {
		a.send(src, &message{kind: kindClaimRefused, addr: addr, reason: reason}, nil)
	}
	if !a.ring.ready() {
		refuse(reasonNotReady)
		return
	}
	o, ok := a.geo.offset(addr)
	if !ok || a.ring.owner(o) != a.cfg.Ourself || src == a.cfg.Ourself {
		// Our ring first, so that they see who owns it now.
		a.send(src, &message{kind: kindState, state: a.snapshot()}, nil)
		refuse(reasonNotOwner)
		return
	}
	if _, used := a.space.allocs[addr]; used {
		refuse(reasonInUse)
		return
	}
	r := a.ring.clone()
	if err := r.transfer(a.cfg.Ourself, src, span{o, o + 1}); err != nil || a.adoptRing(r) != nil {
		refuse(reasonNotReady)
		return
	}
	a.log.Info("gave a claimed address", "to", a.peerString(src), "addr", addr)
	a.send(src, &message{kind: kindClaimGrant, addr: addr, state: a.snapshot()}, nil)
	a.bcast = true
}

// onClaimGrant records a claimed address that its owner just gave us.
// The state in the message was merged already. Lock held.
func (a *Allocator) onClaimGrant(addr netip.Addr) {
	req := a.claimReqs[addr]
	if req == nil {
		return // the claimer gave up; the address is simply ours and free
	}
	o, _ := a.geo.offset(addr)
	if _, used := a.space.allocs[addr]; !used && a.ring.owner(o) == a.cfg.Ourself {
		if err := a.record(addr, allocation{Owner: req.owner, Bits: req.bits}); err != nil {
			req.err = err
		}
	}
	a.signal()
}

// onClaimRefused ends or redirects a claim. Lock held.
func (a *Allocator) onClaimRefused(src mesh.PeerName, addr netip.Addr, reason byte) {
	req := a.claimReqs[addr]
	if req == nil || req.to != src {
		return
	}
	o, _ := a.geo.offset(addr)
	switch {
	case reason == reasonInUse:
		req.err = fmt.Errorf("ipam: claim %v: %w on peer %s", addr, ErrAddressInUse, a.peerString(src))
	case a.ring.owner(o) == src:
		req.err = fmt.Errorf("ipam: claim %v: peer %s does not consider it its own yet; retry in a moment", addr, a.peerString(src))
	default:
		req.to = mesh.UnknownPeerName // ask the owner our ring now shows
	}
	a.signal()
}
