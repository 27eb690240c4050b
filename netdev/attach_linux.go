//go:build linux

package netdev

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultIfName is the container-side interface name when none is given.
const DefaultIfName = "ethwe"

// hostIfPrefix starts derived host-side veth names, so they are recognisable
// in `ip link` as ours.
const hostIfPrefix = "vethwe"

// AttachConfig describes how to plug one container into the bridge.
type AttachConfig struct {
	Bridge     string         // host bridge to plug into; must exist (see EnsureBridge)
	NetNS      string         // network namespace path, from ContainerNetNSPath
	IfName     string         // interface name inside the container; DefaultIfName if empty
	HostIfName string         // host-side veth name; derived from the namespace's identity if empty
	MTU        int            // of both veth ends; 0 = kernel default
	Addrs      []netip.Prefix // addresses to add inside; ones already there are kept
	// Routes are destinations reached directly over IfName (link scope),
	// e.g. the host's DNS server address on the bridge.
	Routes []netip.Prefix
	// Existing plugs in only a pair that is already there, and never makes
	// one: for plugging containers in again after a restart, when a
	// namespace path (a PID's) may have come to mean another one.
	Existing bool
}

// ErrHostNamespace is Attach refusing the caller's own network namespace:
// a container needs one of its own.
var ErrHostNamespace = errors.New("it is the host's own network namespace, not a container's")

// Attach creates the veth pair if it is missing, with one end inside the
// namespace named IfName, sets the MTU of both ends, brings both ends and
// the container's lo up, enslaves the host end to the bridge and adds
// Addrs. It returns the container interface's MAC and all its addresses
// after the change (IPv6 link-local ones excluded, as the kernel makes
// those by itself), sorted.
//
// Attach is idempotent: attaching again reuses the pair and only adds the
// addresses not yet present. It refuses to adopt an interface that is not
// the veth pair it would have made.
func Attach(cfg AttachConfig) (mac net.HardwareAddr, addrs []netip.Prefix, err error) {
	if cfg.IfName == "" {
		cfg.IfName = DefaultIfName
	}
	if err := checkAttachConfig(cfg); err != nil {
		return nil, nil, fmt.Errorf("netdev: attach %s: %w", cfg.NetNS, err)
	}
	ns, err := netns.GetFromPath(cfg.NetNS)
	if err != nil {
		return nil, nil, fmt.Errorf("netdev: attach: open network namespace %s: %w", cfg.NetNS, err)
	}
	defer ns.Close()
	if own, err := netns.Get(); err == nil {
		same := own.Equal(ns)
		own.Close()
		if same {
			// Both ends would land here, the container's address and
			// route on the host itself.
			return nil, nil, fmt.Errorf("netdev: attach %s: %w", cfg.NetNS, ErrHostNamespace)
		}
	}
	if cfg.HostIfName == "" {
		if cfg.HostIfName, err = hostIfName(ns); err != nil {
			return nil, nil, fmt.Errorf("netdev: attach %s: %w", cfg.NetNS, err)
		}
	}
	// A handle bound to the container's namespace: its sockets were opened
	// there, so using it never moves this thread between namespaces.
	cont, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, nil, fmt.Errorf("netdev: attach: netlink in %s: %w", cfg.NetNS, err)
	}
	defer cont.Close()

	mac, addrs, err = attach(cont, ns, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("netdev: attach %s (%s in container, %s on host): %w", cfg.NetNS, cfg.IfName, cfg.HostIfName, err)
	}
	return mac, addrs, nil
}

func checkAttachConfig(cfg AttachConfig) error {
	if cfg.NetNS == "" {
		return errors.New("AttachConfig.NetNS is required")
	}
	if cfg.Bridge == "" {
		return errors.New("AttachConfig.Bridge is required")
	}
	if cfg.MTU < 0 {
		return fmt.Errorf("negative MTU %d", cfg.MTU)
	}
	for _, name := range []string{cfg.Bridge, cfg.IfName} {
		if err := checkIfName(name); err != nil {
			return err
		}
	}
	if cfg.HostIfName != "" {
		if err := checkIfName(cfg.HostIfName); err != nil {
			return err
		}
	}
	for _, p := range cfg.Addrs {
		if !p.IsValid() {
			return fmt.Errorf("invalid address %v", p)
		}
	}
	return nil
}

// hostIfName derives the host-side veth name from the namespace's nsfs
// inode number rather than from its path, so a container attached once by
// name and once by PID gets the same pair instead of two. Inode numbers are
// unique among live namespaces and today are 32-bit, so "vethwe" plus eight
// hex digits is exact; a wider one is hashed down to nine digits, still
// within the 15-byte limit and distinct in length from the exact form.
func hostIfName(ns netns.NsHandle) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return "", fmt.Errorf("stat network namespace: %w", err)
	}
	if st.Ino <= 0xffffffff {
		return fmt.Sprintf("%s%08x", hostIfPrefix, st.Ino), nil
	}
	h := fnv.New64a()
	fmt.Fprint(h, st.Ino)
	return fmt.Sprintf("%s%09x", hostIfPrefix, h.Sum64()&0xfffffffff), nil
}

func attach(cont *netlink.Handle, ns netns.NsHandle, cfg AttachConfig) (net.HardwareAddr, []netip.Prefix, error) {
	br, err := netlink.LinkByName(cfg.Bridge)
	if err != nil {
		return nil, nil, fmt.Errorf("look up bridge %q (it must exist first): %w", cfg.Bridge, err)
	}
	if br.Type() != "bridge" {
		return nil, nil, fmt.Errorf("%q is a %s device, not a bridge", cfg.Bridge, br.Type())
	}
	host, peer, created, err := ensureVeth(cont, ns, cfg)
	if errors.Is(err, unix.EEXIST) {
		// A concurrent Attach of the same container created the pair
		// between our lookup and our add; take what it made.
		host, peer, created, err = ensureVeth(cont, ns, cfg)
	}
	if err != nil {
		return nil, nil, err
	}
	mac, addrs, err := configure(cont, ns, br, host, peer, cfg)
	if err != nil && created {
		// Do not leave a half-configured pair the caller never saw
		// succeed; deleting the host end takes the peer with it.
		netlink.LinkDel(host)
	}
	return mac, addrs, err
}

// configure brings an existing pair to the state cfg asks for.
func configure(cont *netlink.Handle, ns netns.NsHandle, br, host, peer netlink.Link, cfg AttachConfig) (net.HardwareAddr, []netip.Prefix, error) {
	if cfg.MTU != 0 {
		if host.Attrs().MTU != cfg.MTU {
			if err := netlink.LinkSetMTU(host, cfg.MTU); err != nil {
				return nil, nil, fmt.Errorf("set MTU %d on host end: %w", cfg.MTU, err)
			}
		}
		if peer.Attrs().MTU != cfg.MTU {
			if err := cont.LinkSetMTU(peer, cfg.MTU); err != nil {
				return nil, nil, fmt.Errorf("set MTU %d on container end: %w", cfg.MTU, err)
			}
		}
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		if err := netlink.LinkSetMasterByIndex(host, br.Attrs().Index); err != nil {
			return nil, nil, fmt.Errorf("enslave host end to bridge %q: %w", cfg.Bridge, err)
		}
	}
	// The host end is only a bridge port: no IPv6 address, so none of the
	// router solicitations the kernel would send out of it for as long as
	// no router answers.
	if err := netlink.LinkSetIP6AddrGenMode(host, nl.IN6_ADDR_GEN_MODE_NONE); err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
		return nil, nil, fmt.Errorf("no IPv6 address on host end: %w", err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return nil, nil, fmt.Errorf("set host end up: %w", err)
	}
	lo, err := cont.LinkByName("lo")
	if err != nil {
		return nil, nil, fmt.Errorf("look up container lo: %w", err)
	}
	if err := cont.LinkSetUp(lo); err != nil {
		return nil, nil, fmt.Errorf("set container lo up: %w", err)
	}
	// The container's end keeps its IPv6 link-local address but, as in
	// Weave Net, solicits no routers: the overlay has none to answer, and
	// every solicitation would be flooded to every peer.
	if err := inNetNS(ns, func() error { return noRouterSolicitations(cfg.IfName) }); err != nil {
		return nil, nil, fmt.Errorf("container end: %w", err)
	}
	if err := cont.LinkSetUp(peer); err != nil {
		return nil, nil, fmt.Errorf("set container end up: %w", err)
	}

	// The kernel turns a link's carrier on asynchronously (link watch, up
	// to a second later) and drops what is sent before: a container's first
	// ARP request would vanish. Wait until both ends are operationally up.
	waitOperUp(host.Attrs().Name, netlink.LinkByName)
	waitOperUp(peer.Attrs().Name, cont.LinkByName)

	have, err := listAddrs(cont, peer)
	if err != nil {
		return nil, nil, err
	}
	added := false
	for _, p := range cfg.Addrs {
		if slices.Contains(have, p) {
			continue
		}
		if err := cont.AddrAdd(peer, toNetlinkAddr(p)); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, nil, fmt.Errorf("add address %v: %w", p, err)
		}
		added = true
	}
	if added {
		if have, err = listAddrs(cont, peer); err != nil {
			return nil, nil, err
		}
	}
	for _, p := range cfg.Routes {
		if err := cont.RouteReplace(&netlink.Route{LinkIndex: peer.Attrs().Index, Dst: ipNet(p), Scope: netlink.SCOPE_LINK}); err != nil {
			return nil, nil, fmt.Errorf("add route to %v: %w", p, err)
		}
	}
	return slices.Clone(peer.Attrs().HardwareAddr), have, nil
}

// ensureVeth returns the host and container ends of the pair, creating it
// if neither exists. A half-present or mismatched pair is an error rather
// than something to repair, because the interfaces in the way may belong to
// someone else.
func ensureVeth(cont *netlink.Handle, ns netns.NsHandle, cfg AttachConfig) (host, peer netlink.Link, created bool, err error) {
	host, hostErr := netlink.LinkByName(cfg.HostIfName)
	peer, peerErr := cont.LinkByName(cfg.IfName)
	hostMissing, peerMissing := isLinkNotFound(hostErr), isLinkNotFound(peerErr)
	switch {
	case hostErr != nil && !hostMissing:
		return nil, nil, false, fmt.Errorf("look up host end: %w", hostErr)
	case peerErr != nil && !peerMissing:
		return nil, nil, false, fmt.Errorf("look up container end: %w", peerErr)
	case hostMissing && peerMissing && cfg.Existing:
		return nil, nil, false, fmt.Errorf("no veth pair %s/%s to plug in again: %w", cfg.HostIfName, cfg.IfName, os.ErrNotExist)
	case hostMissing && peerMissing:
		host, peer, err = createVeth(cont, ns, cfg)
		return host, peer, err == nil, err
	case hostMissing:
		return nil, nil, false, fmt.Errorf("the container already has an interface %q that is not plugged into this host: choose another interface name or remove it", cfg.IfName)
	case peerMissing:
		return nil, nil, false, fmt.Errorf("host interface %q exists but its peer is not %q in this container: delete it (it may be left from another container) and retry", cfg.HostIfName, cfg.IfName)
	}
	// Both exist: they must be the two ends of one veth. IFLA_LINK of a
	// veth end is its peer's ifindex.
	_, hostVeth := host.(*netlink.Veth)
	_, peerVeth := peer.(*netlink.Veth)
	if !hostVeth || !peerVeth || host.Attrs().ParentIndex != peer.Attrs().Index || peer.Attrs().ParentIndex != host.Attrs().Index {
		return nil, nil, false, fmt.Errorf("host interface %q and container interface %q both exist but are not one veth pair: remove the stale one and retry", cfg.HostIfName, cfg.IfName)
	}
	return host, peer, false, nil
}

func createVeth(cont *netlink.Handle, ns netns.NsHandle, cfg AttachConfig) (host, peer netlink.Link, err error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = cfg.HostIfName
	attrs.MTU = cfg.MTU // the peer inherits it
	veth := netlink.NewVeth(attrs)
	// Creating the peer directly inside the namespace under its final name
	// makes the pair appear atomically: there is no moment where it sits in
	// the host under a temporary name, or clashes with a host "ethwe".
	veth.PeerName = cfg.IfName
	veth.PeerNamespace = netlink.NsFd(ns)
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, nil, fmt.Errorf("create veth pair: %w", err)
	}
	if host, err = netlink.LinkByName(cfg.HostIfName); err == nil {
		if peer, err = cont.LinkByName(cfg.IfName); err == nil {
			return host, peer, nil
		}
	}
	netlink.LinkDel(veth) // takes the peer with it
	return nil, nil, fmt.Errorf("look up new veth pair: %w", err)
}

// Detach removes addrs from the container interface ifName (DefaultIfName
// if empty) in the namespace at netnsPath. When addrs is empty, or no
// address remains, it deletes the veth pair. It returns the addresses that
// remain, like Attach. Detaching a container that has no such interface
// succeeds and returns none.
func Detach(netnsPath, ifName string, addrs []netip.Prefix) ([]netip.Prefix, error) {
	if ifName == "" {
		ifName = DefaultIfName
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("netdev: detach: open network namespace %s: %w", netnsPath, err)
	}
	defer ns.Close()
	cont, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netdev: detach: netlink in %s: %w", netnsPath, err)
	}
	defer cont.Close()
	remaining, err := detach(cont, ifName, addrs)
	if err != nil {
		return nil, fmt.Errorf("netdev: detach %s in %s: %w", ifName, netnsPath, err)
	}
	return remaining, nil
}

func detach(cont *netlink.Handle, ifName string, addrs []netip.Prefix) ([]netip.Prefix, error) {
	link, err := cont.LinkByName(ifName)
	if isLinkNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up: %w", err)
	}
	if _, ok := link.(*netlink.Veth); !ok {
		// Never delete an interface we did not make.
		return nil, fmt.Errorf("is a %s device, not a veth", link.Type())
	}
	for _, p := range addrs {
		if !p.IsValid() {
			return nil, fmt.Errorf("invalid address %v", p)
		}
		err := cont.AddrDel(link, toNetlinkAddr(p))
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return nil, fmt.Errorf("remove address %v: %w", p, err)
		}
	}
	remaining, err := listAddrs(cont, link)
	if err != nil {
		return nil, err
	}
	if len(addrs) > 0 && len(remaining) > 0 {
		return remaining, nil
	}
	if err := cont.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return nil, fmt.Errorf("delete veth pair: %w", err)
	}
	return nil, nil
}

// listAddrs returns link's addresses, IPv6 link-local excluded, sorted.
func listAddrs(h *netlink.Handle, link netlink.Link) ([]netip.Prefix, error) {
	var list []netlink.Addr
	var err error
	// A dump that races with another change is reported as interrupted;
	// a retry sees a consistent view.
	for range 5 {
		list, err = h.AddrList(link, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	out := make([]netip.Prefix, 0, len(list))
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.IPNet == nil {
			continue
		}
		ip = ip.Unmap()
		if ip.Is6() && ip.IsLinkLocalUnicast() {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip, ones))
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out, nil
}

func toNetlinkAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
}

// waitOperUp polls until the named link reports operstate up, for at most
// two seconds; a link that stays down is the caller's problem to discover,
// not a reason to fail the attach.
func waitOperUp(name string, lookup func(string) (netlink.Link, error)) {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if l, err := lookup(name); err != nil || l.Attrs().OperState == netlink.OperUp {
			return
		}
	}
}
