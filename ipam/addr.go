package ipam

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Addresses inside the Range are handled as offsets from the Range's first
// address. A Range is IPv4 with a prefix length of 1 to 30, so its size
// fits in a uint32 with room to spare and offset arithmetic never overflows.

// span is the half-open interval [lo, hi) of offsets.
type span struct{ lo, hi uint32 }

func (s span) len() uint32 { return s.hi - s.lo }

func (s span) empty() bool { return s.hi <= s.lo }

func (s span) contains(o uint32) bool { return s.lo <= o && o < s.hi }

// intersect returns the overlap of s and t (possibly empty).
func (s span) intersect(t span) span {
	r := span{max(s.lo, t.lo), min(s.hi, t.hi)}
	if r.hi < r.lo {
		r.hi = r.lo
	}
	return r
}

// geometry maps the Range's addresses to offsets and back.
type geometry struct {
	prefix netip.Prefix
	base   uint32
	size   uint32
}

func newGeometry(p netip.Prefix) (geometry, error) {
	if err := checkRange(p); err != nil {
		return geometry{}, err
	}
	return geometry{prefix: p, base: v4(p.Addr()), size: uint32(1) << (32 - p.Bits())}, nil
}

// checkRange validates an --ipalloc-range.
func checkRange(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("ipam: invalid range %v: give it as a CIDR such as 10.32.0.0/12", p)
	}
	if !p.Addr().Is4() {
		return fmt.Errorf("ipam: range %v: only IPv4 ranges are supported", p)
	}
	if p.Bits() < 1 || p.Bits() > 30 {
		return fmt.Errorf("ipam: range %v: the prefix length must be between /1 and /30", p)
	}
	if p.Masked() != p {
		return fmt.Errorf("ipam: range %v has host bits set: use %v", p, p.Masked())
	}
	return nil
}

func v4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func (g geometry) addr(o uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], g.base+o)
	return netip.AddrFrom4(b)
}

// offset returns a's offset and whether a is inside the Range.
func (g geometry) offset(a netip.Addr) (uint32, bool) {
	a = a.Unmap()
	if !a.Is4() || !g.prefix.Contains(a) {
		return 0, false
	}
	return v4(a) - g.base, true
}

func (g geometry) all() span { return span{0, g.size} }

// subnetSpan returns the offsets of subnet, which must lie inside the Range.
func (g geometry) subnetSpan(subnet netip.Prefix) (span, bool) {
	if !g.inside(subnet) {
		return span{}, false
	}
	lo, _ := g.offset(subnet.Masked().Addr())
	return span{lo, lo + uint32(1)<<(32-subnet.Bits())}, true
}

// inside reports whether subnet lies entirely inside the Range.
func (g geometry) inside(subnet netip.Prefix) bool {
	return subnet.IsValid() && subnet.Addr().Is4() && subnet.Bits() >= g.prefix.Bits() &&
		g.prefix.Contains(subnet.Addr())
}

// usable is the part of a subnet's span that may be handed out: all but
// the network and broadcast addresses.
func usable(subnet span) span {
	if subnet.len() < 4 {
		return span{subnet.lo, subnet.lo}
	}
	return span{subnet.lo + 1, subnet.hi - 1}
}

// AddrRange is an inclusive range of addresses, as shown by weave status.
type AddrRange struct {
	First netip.Addr `json:"first"`
	Last  netip.Addr `json:"last"`
}

func (r AddrRange) String() string { return r.First.String() + "-" + r.Last.String() }

func (g geometry) addrRange(s span) AddrRange {
	return AddrRange{First: g.addr(s.lo), Last: g.addr(s.hi - 1)}
}

// RangeString formats a prefix the way weave status shows a Range:
// first-last, e.g. 10.32.0.0-10.47.255.255.
func RangeString(p netip.Prefix) string {
	g, err := newGeometry(p)
	if err != nil {
		return p.String()
	}
	return g.addrRange(g.all()).String()
}
