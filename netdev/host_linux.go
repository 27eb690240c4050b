package netdev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AddAddr gives the named link (in the caller's namespace) an address; an
// address it already has is not an error.
func AddAddr(link string, p netip.Prefix) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("netdev: %s: %w", link, err)
	}
	if err := netlink.AddrAdd(l, toNetlinkAddr(p)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("netdev: add %v to %s: %w", p, link, err)
	}
	return nil
}

// DelAddr takes an address from the named link; a missing one is not an error.
func DelAddr(link string, p netip.Prefix) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("netdev: %s: %w", link, err)
	}
	if err := netlink.AddrDel(l, toNetlinkAddr(p)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("netdev: remove %v from %s: %w", p, link, err)
	}
	return nil
}

// AddRoute routes dst directly over the named link (link scope), with src as
// the preferred source address when valid.
func AddRoute(link string, dst netip.Prefix, src netip.Addr) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("netdev: %s: %w", link, err)
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(dst), Scope: netlink.SCOPE_LINK}
	if src.IsValid() {
		r.Src = src.AsSlice()
	}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("netdev: route %v over %s: %w", dst, link, err)
	}
	return nil
}

// OverlappingRoutes describes the host's IPv4 routes whose destinations
// overlap p, other than default routes and routes over the link except.
func OverlappingRoutes(p netip.Prefix, except string) ([]string, error) {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("netdev: list routes: %w", err)
	}
	var out []string
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if ones == 0 {
			continue
		}
		addr, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if !ok {
			continue
		}
		dst := netip.PrefixFrom(addr, ones)
		if !dst.Overlaps(p) {
			continue
		}
		name := fmt.Sprint(r.LinkIndex)
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
			name = l.Attrs().Name
		}
		if name == except {
			continue
		}
		out = append(out, fmt.Sprintf("%v dev %s", dst, name))
	}
	return out, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Masked().Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// SetMAC gives the named link a fixed hardware address. A Linux bridge
// otherwise takes the lowest address of its ports and changes it as
// containers come and go, which strands what containers cached for the
// host's own addresses on the bridge (the DNS server's).
func SetMAC(link string, mac net.HardwareAddr) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("netdev: %s: %w", link, err)
	}
	if l.Attrs().HardwareAddr.String() == mac.String() {
		return nil
	}
	if err := netlink.LinkSetHardwareAddr(l, mac); err != nil {
		return fmt.Errorf("netdev: set %s's MAC to %v: %w", link, mac, err)
	}
	return nil
}
