//go:build linux

package netdev

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnsureBridge creates a Linux bridge named name with the given MTU (0 =
// kernel default) and sets it up, or adopts an existing bridge of that name,
// setting its MTU if given and bringing it up. created reports whether this
// call made the bridge.
func EnsureBridge(name string, mtu int) (created bool, err error) {
	if err := checkIfName(name); err != nil {
		return false, fmt.Errorf("netdev: ensure bridge: %w", err)
	}
	if mtu < 0 {
		return false, fmt.Errorf("netdev: ensure bridge %q: negative MTU %d", name, mtu)
	}
	link, err := netlink.LinkByName(name)
	if isLinkNotFound(err) {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		attrs.MTU = mtu
		err = netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
		switch {
		case err == nil:
			created = true
		case errors.Is(err, unix.EEXIST):
			// Someone else created it between our lookup and add; adopt it.
		default:
			return false, fmt.Errorf("netdev: create bridge %q: %w", name, err)
		}
		link, err = netlink.LinkByName(name)
	}
	if err != nil {
		return false, fmt.Errorf("netdev: look up bridge %q: %w", name, err)
	}
	if err := setUpBridge(link, mtu); err != nil {
		if created {
			// Leave nothing half-made behind: the caller will not know to
			// delete a bridge whose creation it saw fail.
			netlink.LinkDel(link)
		}
		return false, err
	}
	return created, nil
}

func setUpBridge(link netlink.Link, mtu int) error {
	name := link.Attrs().Name
	if link.Type() != "bridge" {
		return fmt.Errorf("netdev: %q exists but is a %s device, not a bridge: remove it or choose another bridge name", name, link.Type())
	}
	if mtu != 0 && link.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("netdev: set MTU %d on bridge %q: %w", mtu, name, err)
		}
	}
	if err := noRouterSolicitations(name); err != nil {
		return fmt.Errorf("netdev: bridge %q: %w", name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("netdev: set bridge %q up: %w", name, err)
	}
	return nil
}

// noRouterSolicitations stops the kernel soliciting IPv6 routers from
// the interface name of the caller's namespace, as Weave Net does: the
// overlay has none to answer, so it would go on (backing off from 4 s to
// an hour) and every solicitation is flooded to every peer. The interface
// keeps its link-local address. Set before the interface goes up, as
// solicitations start then; nothing to do where the kernel has no IPv6.
func noRouterSolicitations(name string) error {
	err := os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/accept_ra", []byte("0\n"), 0)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("accept_ra: %w", err)
	}
	return nil
}

// DeleteLink deletes the network interface name in the caller's current
// namespace. It is not an error if no such interface exists. Deleting one
// end of a veth pair deletes both.
func DeleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if isLinkNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("netdev: look up %q to delete it: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("netdev: delete %q: %w", name, err)
	}
	return nil
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// checkIfName rejects names the kernel would refuse, with a message that
// says why instead of a bare EINVAL.
func checkIfName(name string) error {
	switch {
	case name == "":
		return errors.New("interface name is empty")
	case len(name) >= unix.IFNAMSIZ:
		return fmt.Errorf("interface name %q is longer than %d bytes", name, unix.IFNAMSIZ-1)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is reserved", name)
	}
	for _, c := range name {
		if c == '/' || c == ':' || c <= ' ' || c == 0x7f {
			return fmt.Errorf("interface name %q contains %q", name, c)
		}
	}
	return nil
}
