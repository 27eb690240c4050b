package ipam

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"weavenet/internal/wallclock"
	"weavenet/mesh"
)

// RemovePeer takes over the ranges of a peer that is gone for good
// (weave rmpeer) and returns how many addresses it took. It refuses a
// reachable peer with ErrPeerReachable. Run it on one surviving peer only:
// two peers removing the same peer at once both believe they own its
// space until their rings meet.
func (a *Allocator) RemovePeer(name mesh.PeerName) (uint64, error) {
	a.mu.Lock()
	defer a.unlock()
	if a.closed {
		return 0, net.ErrClosed
	}
	if name == a.cfg.Ourself {
		return 0, errors.New("ipam: rmpeer: that is this peer; run it on another one")
	}
	if a.reachable(name) {
		return 0, fmt.Errorf("ipam: rmpeer %s: %w; stop it first, or use `weave reset` on it", a.peerString(name), ErrPeerReachable)
	}
	if !a.ring.ready() {
		return 0, nil
	}
	r := a.ring.clone()
	n := r.reassign(name, a.cfg.Ourself)
	if n == 0 {
		return 0, nil
	}
	if err := a.adoptRing(r); err != nil {
		return 0, err
	}
	a.log.Warn("took over the address space of a removed peer", "peer", a.peerString(name), "addresses", n)
	a.bcast = true
	return n, nil
}

// Shutdown is weave reset: it releases every allocation here and hands all
// our ranges to a reachable peer, waiting (until ctx is done) for that peer
// to acknowledge. Alone in the mesh there is nobody to hand to, and it
// returns at once. Call Close afterwards.
func (a *Allocator) Shutdown(ctx context.Context) error {
	first := true
	for {
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			return net.ErrClosed
		}
		if first {
			first = false
			for ip := range a.space.allocs {
				if err := a.forget(ip); err != nil {
					a.unlock()
					return err
				}
			}
		}
		wait := a.changed
		done, err := a.tryHandover()
		a.unlock()
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ipam: hand over address ranges: %w", ctx.Err())
		case <-wait:
		}
	}
}

func (a *Allocator) tryHandover() (bool, error) {
	now := a.now()
	if h := a.handover; h != nil {
		if h.acked {
			return true, nil
		}
		if now.Sub(h.sentAt) >= handoverWait {
			h.sentAt = now
			a.send(h.to, &message{kind: kindHandover, state: a.snapshot()}, nil)
		}
		return false, nil
	}
	if !a.ring.ready() || len(a.ring.ownedBy(a.cfg.Ourself)) == 0 {
		return true, nil
	}
	var heirs []mesh.PeerName
	for _, p := range a.cfg.Peers.Reachable() {
		if p != a.cfg.Ourself {
			heirs = append(heirs, p)
		}
	}
	if len(heirs) == 0 {
		a.log.Warn("no reachable peer to hand our address ranges to; they stay ours until a peer runs rmpeer on us")
		return true, nil
	}
	// Prefer a peer that already owns space, then the lowest name.
	owners := a.ring.peers()
	slices.SortFunc(heirs, func(x, y mesh.PeerName) int {
		ox, oy := slices.Contains(owners, x), slices.Contains(owners, y)
		if ox != oy {
			if ox {
				return -1
			}
			return 1
		}
		if x < y {
			return -1
		}
		return 1
	})
	heir := heirs[0]
	r := a.ring.clone()
	n := r.reassign(a.cfg.Ourself, heir)
	if err := a.adoptRing(r); err != nil {
		return false, err
	}
	a.log.Info("handing our address ranges over", "to", a.peerString(heir), "addresses", n)
	a.handover = &handover{to: heir, sentAt: now}
	a.send(heir, &message{kind: kindHandover, state: a.snapshot()}, nil)
	a.bcast = true
	return false, nil
}

// PeersChanged tells the Allocator that the set of reachable peers may
// have changed, so that waiting requests look again. It only signals, so
// it is safe to call from mesh callbacks.
func (a *Allocator) PeersChanged() {
	a.mu.Lock()
	a.signal()
	a.mu.Unlock()
}

// Close stops the Allocator: waiting calls return net.ErrClosed, gossip
// is ignored, and its goroutine has ended when Close returns. It does not
// close the Store.
func (a *Allocator) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.signal()
	if a.ringUnsaved {
		_ = a.saveRing(a.ring)
	}
	a.mu.Unlock()
	close(a.done)
	a.wg.Wait()
	return nil
}

func (a *Allocator) ticker(d time.Duration) {
	defer a.wg.Done()
	t := wallclock.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-a.done:
			return
		case <-t.C:
			a.tick()
		}
	}
}

// tick retries what may have stalled: a consensus whose proposer went
// silent, an observer's call for a ring, requests to peers that never
// answered (the waiters re-check when signalled).
func (a *Allocator) tick() {
	a.mu.Lock()
	defer a.unlock()
	if a.closed {
		return
	}
	if a.ringUnsaved {
		_ = a.saveRing(a.ring)
	}
	now := a.now()
	if a.wantRing && !a.ring.ready() {
		if a.paxos != nil {
			// Re-propose only once the consensus has stalled, not
			// merely because our own proposal is old: with many peers
			// asking at once, each outbidding the others every
			// retryAfter kept any ballot from gathering its promises
			// (50 peers never agreed within 3 minutes).
			if now.Sub(a.proposed) >= retryAfter && now.Sub(a.moved) >= retryAfter {
				a.propose(now)
			} else if a.paxos.step(a.quorumOK()) {
				a.paxosChanged()
			}
		} else {
			a.needRing()
		}
	}
	a.signal()
}

// Status is the ipam section of weave status.
type Status struct {
	// Status is one of: idle, ready, awaiting consensus (quorum Q, known
	// peers K), waiting for the ring from other peers, waiting for
	// donation, all ranges owned by unreachable peers.
	Status        string       `json:"status"`
	Range         netip.Prefix `json:"range"`
	DefaultSubnet netip.Prefix `json:"defaultSubnet"`
	Init          string       `json:"init"`
	Quorum        int          `json:"quorum,omitempty"`
	KnownPeers    int          `json:"knownPeers,omitempty"`
	// Allocations is how many addresses this peer has handed out or recorded.
	Allocations int          `json:"allocations"`
	Peers       []PeerStatus `json:"peers"`
}

// PeerStatus is one owner of space in the ring.
type PeerStatus struct {
	Name      string      `json:"name"`
	NickName  string      `json:"nickName,omitempty"`
	Ourself   bool        `json:"ourself,omitempty"`
	Reachable bool        `json:"reachable"`
	Ranges    []AddrRange `json:"ranges"`
	Addresses uint64      `json:"addresses"` // size of its ranges
	Share     float64     `json:"share"`     // of the Range, 0..1
	Free      uint64      `json:"free"`      // its last reported free count
}

// Status reports the allocator's state.
func (a *Allocator) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Status{Range: a.cfg.Range, DefaultSubnet: a.cfg.DefaultSubnet, Init: a.cfg.Init.String(),
		Allocations: len(a.space.allocs)}
	if a.paxos != nil {
		s.Quorum = a.quorum
		s.KnownPeers = len(a.paxos.state)
	}
	reach := map[mesh.PeerName]bool{a.cfg.Ourself: true}
	for _, p := range a.cfg.Peers.Reachable() {
		reach[p] = true
	}
	if a.ring.ready() {
		byPeer := map[mesh.PeerName]*PeerStatus{}
		for i, e := range a.ring.Entries {
			ps := byPeer[e.Peer]
			if ps == nil {
				ps = &PeerStatus{Name: e.Peer.String(), Ourself: e.Peer == a.cfg.Ourself, Reachable: reach[e.Peer]}
				if ps.Ourself {
					ps.NickName = a.cfg.NickName
				} else {
					ps.NickName = a.cfg.Peers.NickName(e.Peer)
				}
				byPeer[e.Peer] = ps
			}
			sp := a.ring.spanAt(i)
			ps.Addresses += uint64(sp.len())
			if ps.Ourself {
				ps.Free += uint64(a.space.freeIn(sp))
			} else {
				ps.Free += uint64(min(e.Free, sp.len()))
			}
			if n := len(ps.Ranges); n > 0 && ps.Ranges[n-1].Last.Next() == a.geo.addr(sp.lo) {
				ps.Ranges[n-1].Last = a.geo.addr(sp.hi - 1)
			} else {
				ps.Ranges = append(ps.Ranges, a.geo.addrRange(sp))
			}
		}
		for _, p := range a.ring.peers() {
			ps := byPeer[p]
			ps.Share = float64(ps.Addresses) / float64(a.geo.size)
			s.Peers = append(s.Peers, *ps)
		}
	}
	s.Status = a.statusText(reach)
	return s
}

func (a *Allocator) statusText(reach map[mesh.PeerName]bool) string {
	if err := a.weaveRefusal(); err != nil {
		return err.Error()
	}
	if !a.ring.ready() {
		switch {
		case a.paxos != nil && (a.wantRing || len(a.paxos.state) > 0):
			return fmt.Sprintf("awaiting consensus (quorum %d, known peers %d)", a.quorum, max(len(a.paxos.state), 1))
		case a.wantRing:
			return "waiting for the ring from other peers"
		}
		return "idle"
	}
	for _, req := range a.spaceReqs {
		if req.asked != mesh.UnknownPeerName {
			return "waiting for donation"
		}
	}
	if len(a.space.owned) == 0 {
		for _, p := range a.ring.peers() {
			if reach[p] {
				return "ready"
			}
		}
		return "all ranges owned by unreachable peers: `weave rmpeer` the ones that are gone"
	}
	return "ready"
}
