package ipam

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"

	"weavenet/mesh"
)

// Weave Net 2.x's IPAM wire format, spoken on the mesh channel
// "IPallocation" so that one ring spans peers of both kinds. Every message
// is encoding/gob with a fresh encoder (type definitions first):
//
//	gossip, broadcast:  state
//	unicast:            kind:u8 body
//	  0 space request   range   "give me space in [Start, End)" (a single
//	                             address is a claim of that address)
//	  1 ring update     state
//	  2 request denied  range
//	state  = {Now int64, Nicknames map[peer]string,
//	          Paxos map[{Name, UID}]{Promise, Accepted: {Round, Proposer: {Name, UID}},
//	                                 AcceptedVal: {Value []peer, Origin: proposal}},
//	          Ring *{Start, End, Peer, Entries []*{Token, Peer, Version, Free}, Seeds []peer}}
//	range  = {Start, End uint32}
//
// Tokens are absolute IPv4 addresses (ours are offsets from the Range's
// start); a Weave Net ring holds Paxos state only until it has a ring. The
// struct and field names below are the wire: gob matches fields by name.
// Our own state carries one more field, WeavenetPeers (Weave Net ignores
// fields it does not know), which tells our peers which peers are
// weavenet.
//
// Everything decoded here is hostile until checked: the message length is
// bounded before gob sees it, every count after, and rings and consensus
// records are validated (sorted tokens inside the Range, starting at its
// first address, no repeats, free counts within their pieces, no unknown
// peer names) before they are translated.

const (
	weaveSpaceRequest byte = 0
	weaveRingUpdate   byte = 1
	weaveSpaceDenied  byte = 2

	// maxWeaveMessage bounds what gob may read; a ring of maxWeaveEntries
	// entries is well under it.
	maxWeaveMessage = 4 << 20
	maxWeaveEntries = 1 << 16
	maxWeavePeers   = 4096
	maxNickname     = 255
)

// ErrWeaveFormat is wrapped by every rejection of a Weave Net IPAM message.
var ErrWeaveFormat = errors.New("ipam: bad Weave Net IPAM message")

// The wire types: names and field types mirror Weave Net's (mesh.PeerName
// is a uint64, its addresses and counts uint32, its rounds uint).
type (
	wnRange  struct{ Start, End uint32 }
	wnNodeID struct {
		Name mesh.PeerName
		UID  mesh.PeerUID
	}
	wnProposalID struct {
		Round    uint
		Proposer wnNodeID
	}
	wnAcceptedValue struct {
		Value  []mesh.PeerName
		Origin wnProposalID
	}
	wnNodeClaims struct {
		Promise     wnProposalID
		Accepted    wnProposalID
		AcceptedVal wnAcceptedValue
	}
	wnEntry struct {
		Token   uint32
		Peer    mesh.PeerName
		Version uint32
		Free    uint32
	}
	wnRing struct {
		Start, End uint32
		Peer       mesh.PeerName
		Entries    []*wnEntry
		Seeds      []mesh.PeerName
	}
	wnState struct {
		Now       int64
		Nicknames map[mesh.PeerName]string
		Paxos     map[wnNodeID]wnNodeClaims
		Ring      *wnRing
		// WeavenetPeers lists the weavenet peers the sender knows,
		// itself first. Weave Net never sends it.
		WeavenetPeers []mesh.PeerName
	}
)

func weaveErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrWeaveFormat}, args...)...)
}

// gobDecode decodes b into v, never panicking: gob reports most bad input
// as errors, and a recover catches the rest.
func gobDecode(b []byte, v any) (err error) {
	if len(b) > maxWeaveMessage {
		return weaveErr("%d bytes, more than %d", len(b), maxWeaveMessage)
	}
	defer func() {
		if r := recover(); r != nil {
			err = weaveErr("gob: %v", r)
		}
	}()
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(v); err != nil {
		return weaveErr("gob: %v", err)
	}
	return nil
}

func gobEncode(v any) []byte {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		// Only our own fixed types are encoded; gob fails on them only
		// for a programming error.
		panic(fmt.Sprintf("ipam: gob encode %T: %v", v, err))
	}
	return buf.Bytes()
}

// decodeWeaveState decodes and bounds a state; validation against our
// Range is translate's job.
func decodeWeaveState(b []byte) (*wnState, error) {
	var st wnState
	if err := gobDecode(b, &st); err != nil {
		return nil, err
	}
	switch {
	case len(st.Nicknames) > maxWeavePeers:
		return nil, weaveErr("%d nicknames", len(st.Nicknames))
	case len(st.Paxos) > maxWeavePeers:
		return nil, weaveErr("%d consensus records", len(st.Paxos))
	case len(st.WeavenetPeers) > maxWeavePeers:
		return nil, weaveErr("%d weavenet peers", len(st.WeavenetPeers))
	}
	for p, n := range st.Nicknames {
		if p == mesh.UnknownPeerName || len(n) > maxNickname {
			return nil, weaveErr("bad nickname entry %v", p)
		}
	}
	for _, p := range st.WeavenetPeers {
		if p == mesh.UnknownPeerName {
			return nil, weaveErr("unknown peer in weavenet list")
		}
	}
	if r := st.Ring; r != nil {
		if len(r.Entries) > maxWeaveEntries || len(r.Seeds) > maxWeavePeers {
			return nil, weaveErr("ring of %d entries, %d seeds", len(r.Entries), len(r.Seeds))
		}
	}
	for id, c := range st.Paxos {
		if id.Name == mesh.UnknownPeerName || len(c.AcceptedVal.Value) > maxWeavePeers {
			return nil, weaveErr("bad consensus record of %v", id.Name)
		}
	}
	return &st, nil
}

func decodeWeaveRange(b []byte) (wnRange, error) {
	var r wnRange
	if err := gobDecode(b, &r); err != nil {
		return r, err
	}
	return r, nil
}

// weaveBounds are the Range's [Start, End) as Weave Net writes them.
func (g geometry) weaveBounds() (uint32, uint32) { return g.base, g.base + g.size }

// errSeedOrder: Weave Net keeps seed= names in the order given; we keep
// them sorted, and rings compare seeds in order.
var errSeedOrder = errors.New("ipam: a Weave Net peer's ring lists its seeds unsorted (seed= names given out of order): give --ipalloc-init seed= names in sorted order on every peer")

// ringFromWeave validates a Weave Net ring against our Range and
// translates it. A ring with no entries comes back not ready.
func ringFromWeave(w *wnRing, geo geometry) (*ring, error) {
	start, end := geo.weaveBounds()
	if w.Start != start || w.End != end {
		return nil, fmt.Errorf("%w: a Weave Net peer uses %s, we use %v: give every peer the same --ipalloc-range",
			errRangeMismatch, weaveRangeString(w.Start, w.End), geo.prefix)
	}
	r := &ring{Range: geo.prefix}
	for i, s := range w.Seeds {
		switch {
		case s == mesh.UnknownPeerName:
			return nil, weaveErr("unknown peer among the seeds")
		case i > 0 && s == w.Seeds[i-1]:
			return nil, weaveErr("seed %v repeated", s)
		case i > 0 && s < w.Seeds[i-1]:
			return nil, errSeedOrder
		}
	}
	r.Seeds = slices.Clone(w.Seeds)
	if len(w.Entries) > 0 {
		r.Entries = make([]entry, 0, len(w.Entries))
	}
	for i, e := range w.Entries {
		switch {
		case e == nil:
			return nil, weaveErr("nil ring entry")
		case e.Token < start || e.Token-start >= geo.size:
			return nil, weaveErr("token %v outside the range", addrOf(e.Token))
		case i == 0 && e.Token != start:
			return nil, weaveErr("ring does not start at %v", addrOf(start))
		case i > 0 && e.Token <= w.Entries[i-1].Token:
			return nil, weaveErr("ring tokens not sorted or repeated at %v", addrOf(e.Token))
		case e.Peer == mesh.UnknownPeerName:
			return nil, weaveErr("ring entry at %v without a peer", addrOf(e.Token))
		}
		r.Entries = append(r.Entries, entry{Token: e.Token - start, Peer: e.Peer, Version: e.Version, Free: e.Free})
	}
	for i, e := range r.Entries {
		if e.Free > r.spanAt(i).len() {
			return nil, weaveErr("entry at %v reports %d free of %d", addrOf(e.Token+start), e.Free, r.spanAt(i).len())
		}
	}
	if (len(r.Seeds) == 0) != (len(r.Entries) == 0) {
		return nil, weaveErr("ring with %d seeds and %d entries", len(r.Seeds), len(r.Entries))
	}
	return r, nil
}

// ringToWeave writes r as a Weave Net ring held by self. Free counts are
// clamped to their pieces: Weave Net rejects a whole ring otherwise, and a
// piece we just split can carry its old count until its owner refreshes it.
func ringToWeave(r *ring, geo geometry, self mesh.PeerName) *wnRing {
	start, end := geo.weaveBounds()
	w := &wnRing{Start: start, End: end, Peer: self, Seeds: slices.Clone(r.Seeds),
		Entries: make([]*wnEntry, len(r.Entries))}
	for i, e := range r.Entries {
		w.Entries[i] = &wnEntry{Token: start + e.Token, Peer: e.Peer, Version: e.Version, Free: min(e.Free, r.spanAt(i).len())}
	}
	return w
}

func addrOf(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func weaveRangeString(start, end uint32) string {
	size := uint64(end) - uint64(start)
	if end <= start || size&(size-1) != 0 {
		return addrOf(start).String() + "-" + addrOf(end-1).String()
	}
	bits := 32
	for s := size; s > 1; s >>= 1 {
		bits--
	}
	return netip.PrefixFrom(addrOf(start), bits).String()
}

// stableUID is the consensus identity under which we show a weavenet
// acceptor to Weave Net. Weave Net tells acceptors apart by name and UID
// because its acceptors forget their promises on restart; ours persist
// them, so each keeps one identity across restarts, the same on every
// weavenet peer that relays its record.
func stableUID(p mesh.PeerName) mesh.PeerUID { return mesh.PeerUID(p) }

// paxosFromWeave validates and translates Weave Net consensus records.
// Records of one name under several UIDs (a Weave Net peer that restarted)
// are joined. uids receives the UIDs Weave Net peers use (their names are
// then known to be Weave Net's).
func paxosFromWeave(in map[wnNodeID]wnNodeClaims, uids map[mesh.PeerName]mesh.PeerUID) (paxosState, error) {
	out := make(paxosState, len(in))
	note := func(id wnNodeID) {
		if id.Name != mesh.UnknownPeerName && id.UID != stableUID(id.Name) {
			uids[id.Name] = id.UID
		}
	}
	for id, c := range in {
		promised, err := ballotFromWeave(c.Promise)
		if err != nil {
			return nil, err
		}
		accepted, err := ballotFromWeave(c.Accepted)
		if err != nil {
			return nil, err
		}
		rec := paxosNode{Promised: promised, Accepted: accepted}
		if !accepted.zero() {
			v := slices.Clone(c.AcceptedVal.Value)
			slices.Sort(v)
			v = slices.Compact(v)
			if len(v) == 0 || v[0] == mesh.UnknownPeerName {
				return nil, weaveErr("consensus record of %v accepts an empty or unknown peer list", id.Name)
			}
			rec.Value = v
		}
		if promised.less(accepted) {
			return nil, weaveErr("consensus record of %v accepts above its promise", id.Name)
		}
		note(id)
		note(c.Promise.Proposer)
		note(c.Accepted.Proposer)
		if cur, ok := out[id.Name]; ok {
			rec = cur.join(rec)
		}
		out[id.Name] = rec
	}
	return out, nil
}

func ballotFromWeave(p wnProposalID) (ballot, error) {
	if p.Round == 0 {
		return ballot{}, nil
	}
	if p.Round > math.MaxUint32 || p.Proposer.Name == mesh.UnknownPeerName {
		return ballot{}, weaveErr("bad proposal round %d by %v", p.Round, p.Proposer.Name)
	}
	return ballot{Round: uint32(p.Round), Proposer: p.Proposer.Name}, nil
}

// paxosToWeave writes the records of the given names; uid gives each
// name's consensus UID.
func paxosToWeave(s paxosState, names []mesh.PeerName, uid func(mesh.PeerName) mesh.PeerUID) map[wnNodeID]wnNodeClaims {
	out := make(map[wnNodeID]wnNodeClaims, len(names))
	prop := func(b ballot) wnProposalID {
		if b.zero() {
			return wnProposalID{}
		}
		return wnProposalID{Round: uint(b.Round), Proposer: wnNodeID{b.Proposer, uid(b.Proposer)}}
	}
	for _, n := range names {
		rec, ok := s[n]
		if !ok {
			continue
		}
		c := wnNodeClaims{Promise: prop(rec.Promised), Accepted: prop(rec.Accepted)}
		if !rec.Accepted.zero() {
			c.AcceptedVal = wnAcceptedValue{Value: slices.Clone(rec.Value), Origin: prop(rec.Accepted)}
		}
		out[wnNodeID{n, uid(n)}] = c
	}
	return out
}

// weaveUnicast builds a unicast: kind, then the gob body.
func weaveUnicast(kind byte, body any) []byte {
	return append([]byte{kind}, gobEncode(body)...)
}

// weaveRangeOf is subnet's span as a Weave Net range.
func (g geometry) weaveRangeOf(s span) wnRange {
	return wnRange{Start: g.base + s.lo, End: g.base + s.hi}
}

// spanFromWeave validates a Weave Net range against the Range.
func (g geometry) spanFromWeave(r wnRange) (span, error) {
	start, _ := g.weaveBounds()
	if r.Start < start || r.End <= r.Start || uint64(r.End)-uint64(start) > uint64(g.size) {
		return span{}, weaveErr("range %s outside %v", weaveRangeString(r.Start, r.End), g.prefix)
	}
	return span{r.Start - start, r.End - start}, nil
}
