package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"weavenet/mesh"
)

// gossipState is the GossipData of the "ipam" channel: an immutable
// snapshot of the ring and, until the ring exists, the consensus state.
// mesh merges and encodes it on its own goroutines, so nothing may change
// it after it is made.
type gossipState struct {
	ring  *ring
	paxos paxosState
	// The connections it is queued to share one encoding.
	once sync.Once
	enc  [][]byte
}

var _ mesh.GossipData = (*gossipState)(nil)
var _ mesh.Gossiper = (*Allocator)(nil)

// Encode returns one message in the versioned format of codec.go.
func (g *gossipState) Encode() [][]byte {
	g.once.Do(func() { g.enc = [][]byte{encodeMessage(&message{kind: kindState, state: g})} })
	return g.enc
}

// Merge returns the join of g and other, changing neither.
func (g *gossipState) Merge(other mesh.GossipData) mesh.GossipData {
	o, ok := other.(*gossipState)
	if !ok {
		return g
	}
	out := &gossipState{ring: g.ring, paxos: paxosState{}}
	if r, err := g.ring.merge(o.ring); err == nil {
		out.ring = r
	}
	out.paxos.merge(g.paxos)
	out.paxos.merge(o.paxos)
	return out
}

// snapshot is our state to send. Lock held.
func (a *Allocator) snapshot() *gossipState {
	if a.refreshFree() {
		// Persisted so that versions never go back after a restart.
		_ = a.saveRing(a.ring)
	}
	st := &gossipState{ring: a.ring.clone(), paxos: paxosState{}}
	if a.paxos != nil && !a.ring.ready() {
		st.paxos = a.paxos.state.clone()
	}
	return st
}

// refreshFree updates the Free hints of our entries and reports whether
// any changed. Lock held.
func (a *Allocator) refreshFree() bool {
	changed := false
	for i, e := range a.ring.Entries {
		if e.Peer == a.cfg.Ourself && a.ring.setFree(i, a.space.freeIn(a.ring.spanAt(i))) {
			changed = true
		}
	}
	return changed
}

// Gossip implements mesh.Gossiper: our whole state, or nil if we have
// nothing worth telling.
func (a *Allocator) Gossip() mesh.GossipData {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || (!a.ring.ready() && (a.paxos == nil || len(a.paxos.state) == 0)) {
		return nil
	}
	return a.snapshot()
}

// OnGossip implements mesh.Gossiper: merge a peer's periodic gossip and
// return it if it taught us something, so that mesh passes it on. msg is
// not retained.
func (a *Allocator) OnGossip(msg []byte) (mesh.GossipData, error) {
	m, err := decodeMessage(msg)
	if err != nil {
		return nil, err
	}
	if m.kind != kindState {
		return nil, fmt.Errorf("ipam: gossip of kind %d, want state", m.kind)
	}
	a.mu.Lock()
	defer a.unlock()
	if a.closed {
		return nil, nil
	}
	before := a.ring
	learned, err := a.mergeState(m.state, mesh.UnknownPeerName)
	if err != nil || !learned {
		return nil, err
	}
	if before.ready() && a.ring.sameOwners(before) {
		// Only Free hints changed. Passed on, each peer's hints, new
		// since its last allocation, went to a dozen neighbours from
		// everyone that learned them: 18,000 messages among 50 peers
		// at one round of periodic gossip. The periodic rounds carry
		// hints on; a change of owner is broadcast when it happens.
		return nil, nil
	}
	return m.state, nil
}

// OnGossipBroadcast implements mesh.Gossiper: merge a peer's broadcast
// and return it for mesh to relay further. update is not retained.
func (a *Allocator) OnGossipBroadcast(src mesh.PeerName, update []byte) (mesh.GossipData, error) {
	m, err := decodeMessage(update)
	if err != nil {
		return nil, err
	}
	if m.kind != kindState {
		return nil, fmt.Errorf("ipam: broadcast of kind %d from %v, want state", m.kind, src)
	}
	a.mu.Lock()
	defer a.unlock()
	if a.closed {
		return nil, nil
	}
	a.setKind(src, kindWeavenetPeer) // only weavenet speaks on "ipam"
	if _, err := a.mergeState(m.state, src); err != nil {
		return nil, err
	}
	return m.state, nil
}

// OnGossipUnicast implements mesh.Gossiper: requests and answers between
// two peers. Only undecodable or incompatible messages return an error
// (mesh then drops the connection); refusals travel as messages. msg is
// not retained.
func (a *Allocator) OnGossipUnicast(src mesh.PeerName, msg []byte) error {
	m, err := decodeMessage(msg)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.unlock()
	if a.closed {
		return nil
	}
	a.setKind(src, kindWeavenetPeer)
	if m.state != nil {
		if _, err := a.mergeState(m.state, src); err != nil {
			return err
		}
	}
	switch m.kind {
	case kindSpaceRequest:
		a.onSpaceRequest(src, m.subnet)
	case kindSpaceGrant, kindSpaceRefused:
		if req := a.spaceReqs[m.subnet]; req != nil {
			if m.kind == kindSpaceGrant {
				delete(a.spaceReqs, m.subnet)
			} else if req.asked == src {
				req.refused[src] = true
				req.asked = mesh.UnknownPeerName
			}
			a.signal()
		}
	case kindClaimRequest:
		a.onClaimRequest(src, m.addr)
	case kindClaimGrant:
		a.onClaimGrant(m.addr)
	case kindClaimRefused:
		a.onClaimRefused(src, m.addr, m.reason)
	case kindHandover:
		a.log.Info("took over the address ranges of a leaving peer", "peer", a.peerString(src))
		a.send(src, &message{kind: kindHandoverAck}, nil)
	case kindHandoverAck:
		if h := a.handover; h != nil && h.to == src {
			h.acked = true
			a.signal()
		}
	case kindWantRing:
		if a.ring.ready() {
			a.send(src, &message{kind: kindState, state: a.snapshot()}, nil)
		} else if a.paxos != nil {
			a.needRing()
		}
	}
	return nil
}

// mergeState merges the state of src (UnknownPeerName when gossip does
// not say whose it is) into ours and reports whether we learned
// anything. Lock held.
func (a *Allocator) mergeState(st *gossipState, src mesh.PeerName) (bool, error) {
	if st.ring.Range != a.cfg.Range {
		err := fmt.Errorf("%w: a peer uses %v, we use %v: give every peer the same --ipalloc-range", errRangeMismatch, st.ring.Range, a.cfg.Range)
		a.log.Error(err.Error())
		return false, err
	}
	learned := false
	merged, err := a.ring.merge(st.ring)
	if err != nil {
		a.log.Error("refusing a peer's ring", "err", err)
		return false, err
	}
	if !merged.equal(a.ring) {
		learned = true
		if err := a.adoptRing(merged); err != nil {
			return false, err
		}
	}
	if a.paxos != nil && !a.ring.ready() && len(st.paxos) > 0 {
		if a.paxos.state.merge(st.paxos) {
			learned = true
			a.moved = a.now()
		}
		joined := a.paxos.join()
		if a.paxos.step(a.quorumOK()) || joined {
			a.paxosChanged()
		} else {
			a.checkDecision()
		}
	}
	if a.ring.ready() && !st.ring.ready() && len(st.paxos) > 0 {
		// They are still bootstrapping: show them the ring, or when
		// it is not known whose state this is, everyone. Every peer
		// with the ring answers every broadcast of a peer still in
		// consensus: as broadcasts, those answers were about a
		// thousand ring broadcasts while 50 peers agreed, each to
		// every peer.
		if src != mesh.UnknownPeerName && src != a.cfg.Ourself {
			a.send(src, &message{kind: kindState, state: a.snapshot()}, nil)
		} else {
			a.bcast = true
		}
	}
	return learned, nil
}

// adoptRing installs r as our ring and updates what we own. A ring that
// changes our own entries (what we own, their versions and hints) is
// stored before it is used. One that changes only other peers' entries
// is stored by the next tick: a restart that loses it learns them again
// from their owners' gossip, newer versions winning. Each store is a
// sync to disk under our lock, which the mesh's connections wait on to
// deliver gossip: while 50 peers formed a mesh, each merged ring was
// one, up to 0.1 s each on a shared disk, and a newcomer's connections
// were established seconds late. Our ring edited in place is stored.
// Lock held.
func (a *Allocator) adoptRing(r *ring) error {
	if r != a.ring && a.ring.ready() && r.sameEntriesOf(a.ring, a.cfg.Ourself) {
		a.ringUnsaved = a.cfg.Store != nil
	} else if err := a.saveRing(r); err != nil {
		return err
	}
	a.ring = r
	if owned := r.ownedBy(a.cfg.Ourself); !slices.Equal(owned, a.space.owned) {
		a.space.setOwned(owned)
		a.checkConflicts()
	}
	if r.ready() {
		a.wantRing = false
	}
	a.signal()
	return nil
}

// saveRing stores r. Lock held.
func (a *Allocator) saveRing(r *ring) error {
	if err := a.cfg.Store.putRing(r); err != nil {
		err = fmt.Errorf("ipam: persist ring: %w", err)
		a.log.Error(err.Error())
		return err
	}
	a.ringUnsaved = false
	return nil
}

// checkConflicts reports addresses we hand out that the ring now gives to
// someone else: a peer was removed with rmpeer while it was alive.
func (a *Allocator) checkConflicts() {
	if !a.ring.ready() {
		return
	}
	var lost []netip.Addr
	for _, o := range a.space.inRange() {
		if !a.space.owns(o) {
			lost = append(lost, a.geo.addr(o))
		}
	}
	if len(lost) > 0 {
		a.log.Error("addresses in use here are owned by other peers in the ring; was this peer removed with rmpeer while alive? They may be handed out twice",
			"count", len(lost), "first", lost[0])
	}
}

// paxosChanged persists our consensus record and spreads it. Lock held.
func (a *Allocator) paxosChanged() {
	if err := a.cfg.Store.putPaxos(a.paxos.state); err != nil {
		// A promise or acceptance that leaves before it is durable can
		// be forgotten by a restart, and a lower ballot promised after
		// it: consensus could then decide twice. Our record goes back
		// to what the store holds, so that no gossip carries it; the
		// next tick proposes again.
		a.log.Error("persist consensus state; not sending it", "err", err)
		if a.paxos.hasDurable {
			a.paxos.state[a.paxos.self] = a.paxos.durable
		} else {
			delete(a.paxos.state, a.paxos.self)
		}
		a.paxos.proposal = ballot{}
		return
	}
	a.paxos.durable, a.paxos.hasDurable = a.paxos.state[a.paxos.self]
	a.bcast = true
	a.checkDecision()
}

// checkDecision claims the ring once consensus is reached. Lock held.
func (a *Allocator) checkDecision() {
	if a.paxos == nil || a.ring.ready() {
		return
	}
	value, ok := a.paxos.state.decision(a.quorum)
	if !ok {
		return
	}
	r := &ring{Range: a.cfg.Range}
	r.claim(value)
	names := make([]string, len(value))
	for i, p := range value {
		names[i] = a.peerString(p)
	}
	a.log.Info("consensus reached: the range is split among the initial peers", "peers", names)
	if a.adoptRing(r) == nil {
		a.bcast = true
	}
}

// send queues a unicast for after the lock is released. Lock held.
func (a *Allocator) send(dst mesh.PeerName, m *message, onFail func()) {
	if a.isWeaveNet(dst) {
		a.sendWeave(dst, m, onFail)
		return
	}
	if a.kinds[dst] == kindUnknown && (m.kind == kindWantRing || m.kind == kindSpaceRequest || m.kind == kindClaimRequest) {
		// A peer we haven't heard on "ipam" may be Weave Net's: ask
		// it for its ring in its format too. Its answer tells us its
		// kind, and the request is then repeated in its format.
		a.sendWeave(dst, &message{kind: kindWantRing}, nil)
	}
	a.outbox = append(a.outbox, outMsg{dst: dst, msg: encodeMessage(m), onFail: onFail})
}

// unlock releases the lock, then sends what was queued under it: mesh is
// never called with our lock held.
func (a *Allocator) unlock() {
	for {
		out := a.outbox
		a.outbox = nil
		var st *gossipState
		if a.bcast {
			a.bcast = false
			st = a.snapshot()
		}
		g, wg, weaveWhen := a.gossip, a.weaveGossip, a.weaveWhen
		a.mu.Unlock()
		var failed []func()
		for _, m := range out {
			ch := g
			if m.weave {
				ch = wg
			}
			var err error
			if ch == nil {
				err = fmt.Errorf("no gossip channel")
			} else {
				err = ch.GossipUnicast(m.dst, m.msg)
			}
			if err != nil {
				a.log.Debug("unicast failed", "to", m.dst, "err", err)
				if m.onFail != nil {
					failed = append(failed, m.onFail)
				}
			}
		}
		if st != nil && g != nil {
			g.GossipBroadcast(st)
		}
		if st != nil && wg != nil && (weaveWhen == nil || weaveWhen()) {
			wg.GossipBroadcast(&weaveData{a: a})
		}
		if len(failed) == 0 {
			return
		}
		a.mu.Lock()
		for _, f := range failed {
			f()
		}
	}
}
