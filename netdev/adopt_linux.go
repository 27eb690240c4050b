//go:build linux

package netdev

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Taking over a bridge that another program (Weave Net) made: its own
// ports go, the containers' ports stay.

// RemoveBridgePorts deletes the interfaces named in names that are ports of
// bridge, and returns the names it deleted. An interface of such a name that
// is not a port of bridge is left alone. Deleting a veth end deletes its
// peer too.
func RemoveBridgePorts(bridge string, names ...string) ([]string, error) {
	br, err := netlink.LinkByName(bridge)
	if isLinkNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netdev: look up bridge %q: %w", bridge, err)
	}
	var deleted []string
	for _, name := range names {
		l, err := netlink.LinkByName(name)
		if isLinkNotFound(err) {
			continue
		}
		if err != nil {
			return deleted, fmt.Errorf("netdev: look up %q: %w", name, err)
		}
		if l.Attrs().MasterIndex != br.Attrs().Index {
			continue
		}
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			return deleted, fmt.Errorf("netdev: delete %q from bridge %q: %w", name, bridge, err)
		}
		deleted = append(deleted, name)
	}
	return deleted, nil
}

// Plugged is a container found plugged into a bridge: a veth whose
// container end is IfName in the namespace at NetNS and whose host end,
// HostIf, is a port of the bridge.
type Plugged struct {
	NetNS  string
	IfName string
	HostIf string
	MAC    string         // of IfName
	Addrs  []netip.Prefix // of IfName, IPv6 link-local ones excluded
}

// FindPlugged looks into each namespace of nsPaths for veths whose other end
// is a port of bridge in the caller's namespace. Namespaces that cannot be
// opened are skipped: they may have gone meanwhile.
func FindPlugged(bridge string, nsPaths []string) ([]Plugged, error) {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil, fmt.Errorf("netdev: look up bridge %q: %w", bridge, err)
	}
	own, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("netdev: own network namespace: %w", err)
	}
	defer own.Close()
	var out []Plugged
	seen := map[uint64]bool{} // by namespace inode: two paths may name one
	for _, path := range nsPaths {
		found, ino, err := pluggedIn(path, own, br)
		if err != nil || seen[ino] {
			continue
		}
		seen[ino] = true
		out = append(out, found...)
	}
	return out, nil
}

func pluggedIn(path string, own netns.NsHandle, br netlink.Link) ([]Plugged, uint64, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, 0, err
	}
	defer ns.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return nil, 0, err
	}
	if own.Equal(ns) {
		return nil, st.Ino, nil
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, st.Ino, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, st.Ino, err
	}
	var out []Plugged
	for _, l := range links {
		if _, ok := l.(*netlink.Veth); !ok {
			continue
		}
		// IFLA_LINK of a veth end is its peer's ifindex, in the peer's
		// namespace; the peer must be a veth here, pointing back, on br.
		host, err := netlink.LinkByIndex(l.Attrs().ParentIndex)
		if err != nil {
			continue
		}
		if _, ok := host.(*netlink.Veth); !ok || host.Attrs().ParentIndex != l.Attrs().Index || host.Attrs().MasterIndex != br.Attrs().Index {
			continue
		}
		addrs, err := listAddrs(h, l)
		if err != nil {
			continue
		}
		out = append(out, Plugged{NetNS: path, IfName: l.Attrs().Name, HostIf: host.Attrs().Name, MAC: l.Attrs().HardwareAddr.String(), Addrs: addrs})
	}
	return out, st.Ino, nil
}
