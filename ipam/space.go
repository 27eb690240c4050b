package ipam

import (
	"net/netip"
	"slices"
	"sort"
)

// allocation is one address held by one owner (a container id).
type allocation struct {
	Owner string
	Bits  int // prefix length of the subnet it was given in
}

// space is our local view: the pieces of the Range we own, every address
// we recorded (inside or outside the Range) and the free offsets inside
// our pieces. It is not replicated; the Store persists it.
type space struct {
	geo    geometry
	owned  []span                    // sorted, disjoint, adjacent joined
	free   []span                    // owned minus allocated, same form
	allocs map[netip.Addr]allocation // everything recorded
	owners map[string][]netip.Addr   // owner -> its addresses
}

func newSpace(geo geometry) *space {
	return &space{geo: geo, allocs: map[netip.Addr]allocation{}, owners: map[string][]netip.Addr{}}
}

// setOwned replaces the pieces we own and recomputes the free list.
func (s *space) setOwned(owned []span) {
	s.owned = owned
	used := s.inRange()
	s.free = s.free[:0]
	for _, sp := range owned {
		lo := sp.lo
		i := sort.Search(len(used), func(i int) bool { return used[i] >= sp.lo })
		for ; i < len(used) && used[i] < sp.hi; i++ {
			if used[i] > lo {
				s.free = append(s.free, span{lo, used[i]})
			}
			lo = used[i] + 1
		}
		if lo < sp.hi {
			s.free = append(s.free, span{lo, sp.hi})
		}
	}
}

// inRange returns the sorted offsets of the allocations inside the Range.
func (s *space) inRange() []uint32 {
	var used []uint32
	for addr := range s.allocs {
		if o, ok := s.geo.offset(addr); ok {
			used = append(used, o)
		}
	}
	slices.Sort(used)
	return used
}

// owns reports whether offset o is in one of our pieces.
func (s *space) owns(o uint32) bool {
	i := sort.Search(len(s.owned), func(i int) bool { return s.owned[i].hi > o })
	return i < len(s.owned) && s.owned[i].contains(o)
}

// lowestFree returns the lowest free offset in within.
func (s *space) lowestFree(within span) (uint32, bool) {
	i := sort.Search(len(s.free), func(i int) bool { return s.free[i].hi > within.lo })
	if i == len(s.free) {
		return 0, false
	}
	o := max(s.free[i].lo, within.lo)
	return o, o < within.hi
}

// freeIn counts free offsets in within.
func (s *space) freeIn(within span) uint32 {
	var n uint32
	i := sort.Search(len(s.free), func(i int) bool { return s.free[i].hi > within.lo })
	for ; i < len(s.free) && s.free[i].lo < within.hi; i++ {
		n += s.free[i].intersect(within).len()
	}
	return n
}

// largestFree returns the longest free run inside within.
func (s *space) largestFree(within span) span {
	var best span
	i := sort.Search(len(s.free), func(i int) bool { return s.free[i].hi > within.lo })
	for ; i < len(s.free) && s.free[i].lo < within.hi; i++ {
		if r := s.free[i].intersect(within); r.len() > best.len() {
			best = r
		}
	}
	return best
}

// takeFree removes offset o from the free list (a no-op if it isn't free).
func (s *space) takeFree(o uint32) {
	i := sort.Search(len(s.free), func(i int) bool { return s.free[i].hi > o })
	if i == len(s.free) || !s.free[i].contains(o) {
		return
	}
	f := s.free[i]
	switch {
	case f.len() == 1:
		s.free = slices.Delete(s.free, i, i+1)
	case o == f.lo:
		s.free[i].lo++
	case o == f.hi-1:
		s.free[i].hi--
	default:
		s.free[i].hi = o
		s.free = slices.Insert(s.free, i+1, span{o + 1, f.hi})
	}
}

// putFree adds offset o back to the free list, if we own it.
func (s *space) putFree(o uint32) {
	if !s.owns(o) {
		return
	}
	i := sort.Search(len(s.free), func(i int) bool { return s.free[i].lo > o })
	// s.free[i-1].lo <= o < s.free[i].lo
	joinLeft := i > 0 && s.free[i-1].hi == o
	joinRight := i < len(s.free) && s.free[i].lo == o+1
	switch {
	case joinLeft && joinRight:
		s.free[i-1].hi = s.free[i].hi
		s.free = slices.Delete(s.free, i, i+1)
	case joinLeft:
		s.free[i-1].hi++
	case joinRight:
		s.free[i].lo--
	default:
		s.free = slices.Insert(s.free, i, span{o, o + 1})
	}
}

// add records addr for owner. The caller checked it is not recorded.
func (s *space) add(addr netip.Addr, a allocation) {
	s.allocs[addr] = a
	s.owners[a.Owner] = append(s.owners[a.Owner], addr)
	if o, ok := s.geo.offset(addr); ok {
		s.takeFree(o)
	}
}

// remove forgets addr.
func (s *space) remove(addr netip.Addr) {
	a, ok := s.allocs[addr]
	if !ok {
		return
	}
	delete(s.allocs, addr)
	list := s.owners[a.Owner]
	if i := slices.Index(list, addr); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(s.owners, a.Owner)
	} else {
		s.owners[a.Owner] = list
	}
	if o, ok := s.geo.offset(addr); ok {
		s.putFree(o)
	}
}

// ownerIn returns an address owner already holds inside subnet span sub.
func (s *space) ownerIn(owner string, sub span, bits int) (netip.Addr, bool) {
	for _, addr := range s.owners[owner] {
		if o, ok := s.geo.offset(addr); ok && sub.contains(o) && s.allocs[addr].Bits == bits {
			return addr, true
		}
	}
	return netip.Addr{}, false
}

func (s *space) lookup(owner string) []netip.Prefix {
	var out []netip.Prefix
	for _, addr := range s.owners[owner] {
		out = append(out, netip.PrefixFrom(addr, s.allocs[addr].Bits))
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out
}
