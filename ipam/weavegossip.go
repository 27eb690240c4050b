package ipam

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"weavenet/mesh"
)

// The second gossiper: the Allocator also speaks Weave Net 2.x's IPAM
// protocol on the mesh channel "IPallocation" (format in weavewire.go), so
// that Weave Net and weavenet peers share one ring, one consensus and
// donate space to each other.
//
//   - Ring: a Weave Net ring is validated, translated and merged into ours
//     like a weavenet one, after one more check, Weave Net's single-writer
//     rule: no merge may take away an address we have handed out. What we
//     send never trips Weave Net's own checks: we only split pieces we own,
//     claim with its split, and clamp Free counts.
//   - Consensus: one Paxos instance across both kinds. Records of either
//     kind join field by field (paxos.go), ballots are (round, proposer)
//     in both, and both sides split the decided list of peers the same way
//     (ring.claim), so whichever peer decides, the ring is the same.
//   - Unicasts to a peer known to be Weave Net's are translated: space
//     requests and claims become its space request (a claim is a request
//     for one address), grants and state become its ring update, refusals
//     its denial. Its requests are answered by the same donate.go code.
//
// Which peers are Weave Net's: a weavenet peer talks on "ipam" and lists
// the weavenet peers it knows in every IPallocation message it sends;
// Weave Net does neither. A peer heard on "ipam" is weavenet for good.
//
// Safety: once a Weave Net peer is heard, a disagreement with it (another
// Range, another bootstrap, a ring that would take our addresses, a
// message we can't decode) makes Allocate and Claim fail with the reason
// (ErrWeaveNetDisagreement) until that peer's state merges cleanly or it
// becomes unreachable: we never allocate from a ring a Weave Net peer may
// contradict. Malformed messages are dropped and counted, and never make
// mesh drop the connection, which also carries the data path.

// ErrWeaveNetDisagreement: a Weave Net peer's IPAM state can't be merged
// with ours, so allocating could hand out an address it owns too.
var ErrWeaveNetDisagreement = errors.New("refusing to allocate: cannot agree with a Weave Net peer on the address ring")

type peerKind uint8

const (
	kindUnknown peerKind = iota
	kindWeavenetPeer
	kindWeaveNetPeer
)

// WeaveGossiper returns the mesh.Gossiper for the channel "IPallocation":
// register it with NewGossip("IPallocation", a.WeaveGossiper()) and pass
// the result to SetWeaveGossip, before the mesh starts.
func (a *Allocator) WeaveGossiper() mesh.Gossiper { return weaveGossiper{a} }

// SetWeaveGossip gives the Allocator the "IPallocation" channel.
func (a *Allocator) SetWeaveGossip(g mesh.Gossip) {
	a.mu.Lock()
	a.weaveGossip = g
	a.mu.Unlock()
}

// SendWeaveWhen makes the Allocator broadcast its changes on
// "IPallocation" only while weaveNet says a Weave Net router is among our
// direct peers (nil, the default: always). Its state still goes to each
// new connection and in the periodic gossip, and it still hears and relays
// the channel. Between weavenet peers the channel says nothing "ipam"
// does not, and decoding it (gob, types and all, per message) was the
// largest part of every daemon's work while 50 peers agreed on their
// first ring.
func (a *Allocator) SendWeaveWhen(weaveNet func() bool) {
	a.mu.Lock()
	a.weaveWhen = weaveNet
	a.mu.Unlock()
}

type weaveGossiper struct{ a *Allocator }

// weaveData is the GossipData of "IPallocation": like Weave Net's, it
// encodes our state as it is when mesh first sends it, so merging is a
// no-op. The connections it is queued to share that encoding.
type weaveData struct {
	a    *Allocator
	once sync.Once
	enc  [][]byte
}

func (d *weaveData) Merge(mesh.GossipData) mesh.GossipData { return d }

func (d *weaveData) Encode() [][]byte {
	d.once.Do(func() {
		d.a.mu.Lock()
		defer d.a.mu.Unlock()
		d.enc = [][]byte{gobEncode(d.a.weaveState(true))}
	})
	return d.enc
}

// Gossip implements mesh.Gossiper.
func (g weaveGossiper) Gossip() mesh.GossipData {
	a := g.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || (!a.ring.ready() && (a.paxos == nil || len(a.paxos.state) == 0)) {
		return nil
	}
	return &weaveData{a: a}
}

// OnGossip implements mesh.Gossiper: periodic state from a peer we can't
// name. Like Weave Net, we don't pass it on.
func (g weaveGossiper) OnGossip(msg []byte) (mesh.GossipData, error) {
	g.a.onWeaveMessage(mesh.UnknownPeerName, msg)
	return nil, nil
}

// OnGossipBroadcast implements mesh.Gossiper; the relayed data is our own
// state, which includes what we just merged.
func (g weaveGossiper) OnGossipBroadcast(src mesh.PeerName, msg []byte) (mesh.GossipData, error) {
	g.a.onWeaveMessage(src, msg)
	return &weaveData{a: g.a}, nil
}

// OnGossipUnicast implements mesh.Gossiper.
func (g weaveGossiper) OnGossipUnicast(src mesh.PeerName, msg []byte) error {
	if len(msg) == 0 {
		g.a.weaveDrop(src, weaveErr("empty unicast"))
		return nil
	}
	a := g.a
	switch msg[0] {
	case weaveRingUpdate:
		a.onWeaveMessage(src, msg[1:])
		// Weave Net answers a space request with its ring, having
		// donated or not (a refusal comes first, separately): look at
		// what we got and ask again at once if it is not enough.
		// Donations of a few addresses (the free ends of its range)
		// take some rounds.
		a.mu.Lock()
		for _, req := range a.spaceReqs {
			if req.asked == src {
				req.asked = mesh.UnknownPeerName
				a.signal()
			}
		}
		for _, req := range a.claimReqs {
			if req.to == src && req.err == nil {
				req.sentAt = time.Time{}
				a.signal()
			}
		}
		a.unlock()
	case weaveSpaceRequest, weaveSpaceDenied:
		r, err := decodeWeaveRange(msg[1:])
		a.mu.Lock()
		defer a.unlock()
		if a.closed {
			return nil
		}
		if a.kinds[src] != kindWeavenetPeer {
			a.setKind(src, kindWeaveNetPeer)
		}
		if err != nil {
			a.weaveDropLocked(src, err)
			return nil
		}
		sp, err := a.geo.spanFromWeave(r)
		if err != nil {
			a.weaveDropLocked(src, err)
			return nil
		}
		if msg[0] == weaveSpaceRequest {
			a.onWeaveSpaceRequest(src, sp)
		} else {
			a.onWeaveDenied(src, sp)
		}
	default:
		a.weaveDrop(src, weaveErr("unicast of unknown kind %d", msg[0]))
	}
	return nil
}

// onWeaveMessage decodes and merges a state.
func (a *Allocator) onWeaveMessage(src mesh.PeerName, msg []byte) {
	st, err := decodeWeaveState(msg)
	a.mu.Lock()
	defer a.unlock()
	if a.closed {
		return
	}
	if err != nil {
		a.weaveDropLocked(src, err)
		return
	}
	a.onWeaveState(src, st)
}

func (a *Allocator) weaveDrop(src mesh.PeerName, err error) {
	a.mu.Lock()
	defer a.unlock()
	a.weaveDropLocked(src, err)
}

// weaveDropLocked counts a message we can't use. Unless it came from a
// weavenet peer (then it is only a bad message), we can't know what its
// sender owns, so we refuse to allocate until it gets through. Lock held.
func (a *Allocator) weaveDropLocked(src mesh.PeerName, err error) {
	a.weaveDrops++
	a.log.Warn("dropped an IPAM message on the Weave Net channel", "from", a.peerString(src), "err", err, "dropped", a.weaveDrops)
	if a.kinds[src] != kindWeavenetPeer {
		a.disagree(src, fmt.Errorf("cannot decode its IPAM message: %w", err))
	}
}

// disagree records why we can't agree with src. Lock held.
func (a *Allocator) disagree(src mesh.PeerName, err error) {
	if prev, ok := a.weaveErrs[src]; !ok || prev.Error() != err.Error() {
		a.log.Error("refusing to allocate: cannot agree with a Weave Net peer", "peer", a.peerString(src), "err", err)
	}
	a.weaveErrs[src] = err
	a.signal()
}

// weaveRefusal is the reason not to allocate now, or nil. Lock held.
func (a *Allocator) weaveRefusal() error {
	if len(a.weaveErrs) == 0 {
		return nil
	}
	for _, p := range slices.Sorted(maps.Keys(a.weaveErrs)) {
		if p != mesh.UnknownPeerName && !a.reachable(p) {
			delete(a.weaveErrs, p)
			continue
		}
		who := "a Weave Net peer"
		if p != mesh.UnknownPeerName {
			who = "Weave Net peer " + a.peerString(p)
		}
		return fmt.Errorf("ipam: %w: %s: %v", ErrWeaveNetDisagreement, who, a.weaveErrs[p])
	}
	return nil
}

// setKind records what src is; weavenet is final. Lock held.
func (a *Allocator) setKind(p mesh.PeerName, k peerKind) {
	if p == mesh.UnknownPeerName || p == a.cfg.Ourself || a.kinds[p] == kindWeavenetPeer || a.kinds[p] == k {
		return
	}
	a.kinds[p] = k
	if k == kindWeavenetPeer {
		delete(a.weaveErrs, p)
	}
}

func (a *Allocator) isWeaveNet(p mesh.PeerName) bool { return a.kinds[p] == kindWeaveNetPeer }

// onWeaveState merges a Weave-format state. Lock held.
func (a *Allocator) onWeaveState(src mesh.PeerName, st *wnState) {
	for _, p := range st.WeavenetPeers {
		a.setKind(p, kindWeavenetPeer)
	}
	fromWeaveNet := len(st.WeavenetPeers) == 0
	if fromWeaveNet {
		a.weaveSeen = true
		// A broadcast's payload may be a relay's; its source sent
		// the marker unless it is Weave Net's.
		if src != mesh.UnknownPeerName && a.kinds[src] != kindWeavenetPeer {
			a.setKind(src, kindWeaveNetPeer)
		}
	}
	in := &gossipState{ring: &ring{Range: a.cfg.Range}}
	if st.Ring != nil {
		r, err := ringFromWeave(st.Ring, a.geo)
		if err != nil {
			a.weaveReject(src, fromWeaveNet, err)
			return
		}
		in.ring = r
	}
	if len(st.Paxos) > 0 {
		ps, err := paxosFromWeave(st.Paxos, a.weaveUIDs)
		if err != nil {
			a.weaveReject(src, fromWeaveNet, err)
			return
		}
		for n := range a.weaveUIDs {
			if a.kinds[n] == kindUnknown {
				a.setKind(n, kindWeaveNetPeer)
			}
		}
		in.paxos = ps
	}
	if in.ring.ready() {
		merged, err := a.ring.merge(in.ring)
		if errors.Is(err, errDifferentSeeds) {
			err = fmt.Errorf("%w (its seeds %s, ours %s)", err, a.peerList(in.ring.Seeds), a.peerList(a.ring.Seeds))
		}
		if err == nil {
			err = a.checkKeepsOurs(merged)
		}
		if err != nil {
			a.weaveReject(src, fromWeaveNet, err)
			return
		}
	}
	if _, err := a.mergeState(in, mesh.UnknownPeerName); err != nil {
		a.weaveReject(src, fromWeaveNet, err)
		return
	}
	if fromWeaveNet {
		delete(a.weaveErrs, src)
	}
	if !fromWeaveNet || src == mesh.UnknownPeerName || in.ring.ready() {
		return
	}
	// A Weave Net peer without a ring: answer with ours, or, as its own
	// peers do when asked, work towards one.
	switch {
	case a.ring.ready():
		a.sendWeaveState(src)
	case len(in.paxos) == 0 && a.paxos != nil:
		a.needRing()
	}
}

func (a *Allocator) weaveReject(src mesh.PeerName, fromWeaveNet bool, err error) {
	a.weaveDrops++
	if fromWeaveNet {
		a.disagree(src, err)
	} else {
		a.log.Warn("dropped a weavenet peer's IPAM message on the Weave Net channel", "from", a.peerString(src), "err", err)
	}
}

// checkKeepsOurs is Weave Net's single-writer rule: a merged ring must
// leave every address we handed out in our pieces.
func (a *Allocator) checkKeepsOurs(merged *ring) error {
	for _, o := range a.space.inRange() {
		if a.space.owns(o) {
			if p := merged.owner(o); p != a.cfg.Ourself {
				return fmt.Errorf("its ring gives %v, which a container here holds, to %s", a.geo.addr(o), a.peerString(p))
			}
		}
	}
	return nil
}

func (a *Allocator) peerList(ps []mesh.PeerName) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = a.peerString(p)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// weaveState is our state in Weave Net's format. Lock held.
func (a *Allocator) weaveState(withRing bool) *wnState {
	st := &wnState{Now: a.now().Unix(), Nicknames: map[mesh.PeerName]string{}}
	st.WeavenetPeers = append(st.WeavenetPeers, a.cfg.Ourself)
	for _, p := range slices.Sorted(maps.Keys(a.kinds)) {
		if a.kinds[p] == kindWeavenetPeer && len(st.WeavenetPeers) < maxWeavePeers {
			st.WeavenetPeers = append(st.WeavenetPeers, p)
		}
	}
	if a.cfg.NickName != "" {
		st.Nicknames[a.cfg.Ourself] = a.cfg.NickName
	}
	snap := a.snapshot()
	if withRing && snap.ring.ready() {
		st.Ring = ringToWeave(snap.ring, a.geo, a.cfg.Ourself)
		for _, p := range snap.ring.peers() {
			if n := a.cfg.Peers.NickName(p); n != "" && p != a.cfg.Ourself && len(st.Nicknames) < maxWeavePeers {
				st.Nicknames[p] = n
			}
		}
		return st
	}
	if a.paxos != nil && !snap.ring.ready() {
		// Our record, and those of Weave Net peers (under their UIDs);
		// other weavenet peers send their own.
		names := []mesh.PeerName{a.cfg.Ourself}
		for n := range a.paxos.state {
			if _, ok := a.weaveUIDs[n]; ok {
				names = append(names, n)
			}
		}
		st.Paxos = paxosToWeave(a.paxos.state, names, a.consensusUID)
	}
	return st
}

func (a *Allocator) consensusUID(p mesh.PeerName) mesh.PeerUID {
	if uid, ok := a.weaveUIDs[p]; ok {
		return uid
	}
	return stableUID(p)
}

// sendWeaveState unicasts our state to a Weave Net peer. Lock held.
func (a *Allocator) sendWeaveState(dst mesh.PeerName) {
	a.queueWeave(dst, weaveUnicast(weaveRingUpdate, a.weaveState(true)), nil)
}

func (a *Allocator) queueWeave(dst mesh.PeerName, msg []byte, onFail func()) {
	a.outbox = append(a.outbox, outMsg{dst: dst, msg: msg, onFail: onFail, weave: true})
}

// sendWeave translates one of our unicasts for a Weave Net peer. Lock held.
func (a *Allocator) sendWeave(dst mesh.PeerName, m *message, onFail func()) {
	denied := func(s span) {
		a.queueWeave(dst, weaveUnicast(weaveSpaceDenied, a.geo.weaveRangeOf(s)), onFail)
		onFail = nil
	}
	one := func(addr netip.Addr) span {
		o, _ := a.geo.offset(addr)
		return span{o, o + 1}
	}
	switch m.kind {
	case kindSpaceRequest:
		// Only the addresses we could use: Weave Net donates from
		// what it is asked for, network and broadcast addresses too.
		sub, _ := a.geo.subnetSpan(m.subnet)
		a.queueWeave(dst, weaveUnicast(weaveSpaceRequest, a.geo.weaveRangeOf(usable(sub))), onFail)
	case kindClaimRequest:
		a.queueWeave(dst, weaveUnicast(weaveSpaceRequest, a.geo.weaveRangeOf(one(m.addr))), onFail)
	case kindSpaceRefused:
		sub, _ := a.geo.subnetSpan(m.subnet)
		denied(sub)
		a.sendWeaveState(dst)
	case kindClaimRefused:
		denied(one(m.addr))
		a.sendWeaveState(dst)
	case kindState, kindSpaceGrant, kindClaimGrant, kindWantRing:
		a.queueWeave(dst, weaveUnicast(weaveRingUpdate, a.weaveState(m.kind != kindWantRing)), onFail)
	case kindHandover:
		// Weave Net acknowledges nothing; the ring it now holds is
		// the acknowledgement, and our broadcast repeats it.
		a.sendWeaveState(dst)
		if h := a.handover; h != nil && h.to == dst {
			h.acked = true
			a.signal()
		}
	case kindHandoverAck:
	}
}

// onWeaveSpaceRequest answers a Weave Net peer's request for space in
// sp; a single address is a claim. Like Weave Net, without a ring we
// ignore it and it asks again. Lock held.
func (a *Allocator) onWeaveSpaceRequest(src mesh.PeerName, sp span) {
	if !a.ring.ready() {
		return
	}
	if sp.len() == 1 {
		a.onClaimRequest(src, a.geo.addr(sp.lo))
		return
	}
	if p, ok := a.geo.prefixOf(sp); ok {
		a.onSpaceRequest(src, p)
		return
	}
	a.send(src, &message{kind: kindSpaceRefused, subnet: a.cfg.Range}, nil)
}

// onWeaveDenied is a Weave Net peer's refusal of our space request or
// claim. Lock held.
func (a *Allocator) onWeaveDenied(src mesh.PeerName, sp span) {
	if sp.len() == 1 {
		addr := a.geo.addr(sp.lo)
		reason := reasonNotOwner
		if a.ring.owner(sp.lo) == src {
			reason = reasonInUse
		}
		a.onClaimRefused(src, addr, reason)
		return
	}
	for subnet, req := range a.spaceReqs {
		if s, _ := a.geo.subnetSpan(subnet); s == sp && req.asked == src {
			req.refused[src] = true
			req.asked = mesh.UnknownPeerName
			a.signal()
		}
	}
}

// prefixOf is the subnet whose span is s, if s is one.
func (g geometry) prefixOf(s span) (netip.Prefix, bool) {
	n := s.len()
	if n == 0 || n&(n-1) != 0 || s.lo%n != 0 {
		return netip.Prefix{}, false
	}
	bits := 32
	for ; n > 1; n >>= 1 {
		bits--
	}
	return netip.PrefixFrom(g.addr(s.lo), bits), true
}
