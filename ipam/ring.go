package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"weavenet/mesh"
)

// The ring is the replicated state of IPAM: the Range cut into consecutive
// pieces, each owned by one peer. An entry at token t owns the offsets
// from t up to the next entry's token (the last entry owns up to the end of
// the Range). A ready ring always has an entry at token 0, so every
// address has exactly one owner.
//
// The ring is a state-based CRDT:
//   - tokens are never removed, so the set of tokens only grows;
//   - each entry is a register that only the peer owning it changes, and
//     every change bumps its Version;
//   - merge takes the union of tokens and, for a token on both sides, the
//     greater entry in the order (Version, Peer, Free).
//
// That merge is a join: commutative, associative and idempotent. Equal
// versions with different content only arise when two peers break the
// single-writer rule at once (two concurrent rmpeers of the same dead
// peer); the order then picks the same winner everywhere.
//
// A peer changes only the entries it owns: it inserts a token inside its
// own piece to split it, hands a piece to another peer (donation,
// handover) or updates the Free hint. The one exception is RemovePeer,
// which takes a dead peer's entries over.
type ring struct {
	Range netip.Prefix
	// Seeds are the peers among which the Range was first split (by
	// consensus or by seed=). Rings with different Seeds come from
	// different bootstraps and must never be merged.
	Seeds   []mesh.PeerName
	Entries []entry
}

type entry struct {
	Token   uint32
	Peer    mesh.PeerName
	Version uint32
	// Free is the owner's count of unallocated addresses in this piece, a
	// hint for choosing whom to ask for space.
	Free uint32
}

var (
	errRangeMismatch  = errors.New("ipam: peers use different --ipalloc-range values")
	errDifferentSeeds = errors.New("ipam: the ring was bootstrapped by different peers: two clusters that allocated separately cannot merge; reset one of them")
)

// newer reports whether a should replace b in a merge.
func (a entry) newer(b entry) bool {
	if a.Version != b.Version {
		return a.Version > b.Version
	}
	if a.Peer != b.Peer {
		return a.Peer > b.Peer
	}
	return a.Free > b.Free
}

func (r *ring) ready() bool { return len(r.Entries) > 0 }

func (r *ring) clone() *ring {
	return &ring{Range: r.Range, Seeds: slices.Clone(r.Seeds), Entries: slices.Clone(r.Entries)}
}

func (r *ring) equal(o *ring) bool {
	return r.Range == o.Range && slices.Equal(r.Seeds, o.Seeds) && slices.Equal(r.Entries, o.Entries)
}

// sameOwners says whether r and o split the Range the same way, whatever
// their Free hints.
func (r *ring) sameOwners(o *ring) bool {
	return r.Range == o.Range && slices.Equal(r.Seeds, o.Seeds) &&
		slices.EqualFunc(r.Entries, o.Entries, func(a, b entry) bool { return a.Token == b.Token && a.Peer == b.Peer })
}

// sameEntriesOf says whether r and o give peer the same entries, at the
// same versions and with the same hints.
func (r *ring) sameEntriesOf(o *ring, peer mesh.PeerName) bool {
	of := func(x *ring) []entry {
		var out []entry
		for _, e := range x.Entries {
			if e.Peer == peer {
				out = append(out, e)
			}
		}
		return out
	}
	return r.Range == o.Range && slices.Equal(r.Seeds, o.Seeds) && slices.Equal(of(r), of(o))
}

// size is the number of addresses in the Range.
func (r *ring) size() uint32 { return uint32(1) << (32 - r.Range.Bits()) }

// spanAt is the piece owned by entry i.
func (r *ring) spanAt(i int) span {
	hi := r.size()
	if i+1 < len(r.Entries) {
		hi = r.Entries[i+1].Token
	}
	return span{r.Entries[i].Token, hi}
}

// index returns the entry owning offset o; the ring must be ready.
func (r *ring) index(o uint32) int {
	return sort.Search(len(r.Entries), func(i int) bool { return r.Entries[i].Token > o }) - 1
}

// owner returns the peer owning offset o, or UnknownPeerName before the
// ring is ready.
func (r *ring) owner(o uint32) mesh.PeerName {
	if !r.ready() || o >= r.size() {
		return mesh.UnknownPeerName
	}
	return r.Entries[r.index(o)].Peer
}

// ownedBy returns the pieces owned by peer, adjacent ones joined.
func (r *ring) ownedBy(peer mesh.PeerName) []span {
	var out []span
	for i, e := range r.Entries {
		if e.Peer != peer {
			continue
		}
		s := r.spanAt(i)
		if n := len(out); n > 0 && out[n-1].hi == s.lo {
			out[n-1].hi = s.hi
		} else {
			out = append(out, s)
		}
	}
	return out
}

// claim splits the Range among peers, deterministically: every peer that
// claims with the same list computes the same ring. The split is the one
// Weave Net 2.x makes (halve the Range, give the first half to the first
// half of the sorted peers, recurse), so that a mixed cluster bootstrapped
// by consensus computes one ring whichever kind of peer decided.
func (r *ring) claim(peers []mesh.PeerName) {
	seeds := slices.Clone(peers)
	slices.Sort(seeds)
	seeds = slices.Compact(seeds)
	r.Seeds = seeds
	r.Entries = r.Entries[:0]
	r.subdivide(0, uint64(r.size()), seeds)
}

// subdivide gives [lo, hi) to peers, halving it among them; pieces stay
// CIDR-aligned because the Range's size is a power of two.
func (r *ring) subdivide(lo, hi uint64, peers []mesh.PeerName) {
	share := hi - lo
	if share == 0 || len(peers) == 0 {
		return
	}
	if share == 1 || len(peers) == 1 {
		r.Entries = append(r.Entries, entry{Token: uint32(lo), Peer: peers[0], Free: uint32(share)})
		return
	}
	mid := lo + share/2
	r.subdivide(lo, mid, peers[:len(peers)/2])
	r.subdivide(mid+share%2, hi, peers[len(peers)/2:])
}

// split makes sure a token exists at o (o < size), inheriting the owner of
// the piece it cuts. It returns the entry index of token o.
func (r *ring) split(o uint32) int {
	i := r.index(o)
	if r.Entries[i].Token == o {
		return i
	}
	e := entry{Token: o, Peer: r.Entries[i].Peer}
	r.Entries = slices.Insert(r.Entries, i+1, e)
	return i + 1
}

// transfer hands [s.lo, s.hi) from one peer to another. Every address of s
// must be owned by from.
func (r *ring) transfer(from, to mesh.PeerName, s span) error {
	if !r.ready() || s.empty() || s.hi > r.size() {
		return fmt.Errorf("ipam: bad transfer of %v", s)
	}
	for i := r.index(s.lo); i < len(r.Entries) && r.Entries[i].Token < s.hi; i++ {
		if r.Entries[i].Peer != from {
			return fmt.Errorf("ipam: transfer of %v: part is owned by %v, not %v", s, r.Entries[i].Peer, from)
		}
	}
	first := r.split(s.lo)
	if s.hi < r.size() {
		r.split(s.hi)
	}
	for i := first; i < len(r.Entries) && r.Entries[i].Token < s.hi; i++ {
		r.Entries[i].Peer = to
		r.Entries[i].Version++
		r.Entries[i].Free = r.spanAt(i).len()
	}
	return nil
}

// reassign hands every piece of from to to and returns how many addresses
// moved.
func (r *ring) reassign(from, to mesh.PeerName) uint64 {
	var n uint64
	for i := range r.Entries {
		if r.Entries[i].Peer == from {
			r.Entries[i].Peer = to
			r.Entries[i].Version++
			n += uint64(r.spanAt(i).len())
		}
	}
	return n
}

// setFree records peer's free count of entry i; it bumps the version only
// when the count changes.
func (r *ring) setFree(i int, free uint32) bool {
	if r.Entries[i].Free == free {
		return false
	}
	r.Entries[i].Free = free
	r.Entries[i].Version++
	return true
}

// merge returns the join of r and o without changing either.
func (r *ring) merge(o *ring) (*ring, error) {
	if r.Range != o.Range {
		return nil, fmt.Errorf("%w: %v and %v", errRangeMismatch, r.Range, o.Range)
	}
	if !o.ready() {
		return r.clone(), nil
	}
	if !r.ready() {
		return o.clone(), nil
	}
	if !slices.Equal(r.Seeds, o.Seeds) {
		return nil, errDifferentSeeds
	}
	out := &ring{Range: r.Range, Seeds: slices.Clone(r.Seeds),
		Entries: make([]entry, 0, max(len(r.Entries), len(o.Entries)))}
	a, b := r.Entries, o.Entries
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(b) == 0 || (len(a) > 0 && a[0].Token < b[0].Token):
			out.Entries = append(out.Entries, a[0])
			a = a[1:]
		case len(a) == 0 || b[0].Token < a[0].Token:
			out.Entries = append(out.Entries, b[0])
			b = b[1:]
		default:
			e := a[0]
			if b[0].newer(e) {
				e = b[0]
			}
			out.Entries = append(out.Entries, e)
			a, b = a[1:], b[1:]
		}
	}
	return out, nil
}

// peers returns every peer owning space, sorted.
func (r *ring) peers() []mesh.PeerName {
	var ps []mesh.PeerName
	for _, e := range r.Entries {
		ps = append(ps, e.Peer)
	}
	slices.Sort(ps)
	return slices.Compact(ps)
}
