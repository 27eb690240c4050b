package cni

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"

	"weavenet/api"
)

// NetFuncs are weave-net's commands, for skel.PluginMainFuncs.
//
// ADD, in order: ask weaved for the overlay's MTU (this fails at once when
// it is down), get an address (from weaved, or from the delegate IPAM
// plugin), find the bridge's address in the pod's subnet to route through
// (weave expose gives the bridge one when it has none), create the veth
// pair inside the pod's namespace with the host end in ours, enslave the
// host end to the bridge with hairpin mode, then put the address and
// routes on the pod's end.
func NetFuncs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: netAdd, Del: netDel, Check: netCheck, Status: netStatus, GC: netGC}
}

// delegateTimeout bounds a delegate IPAM plugin's run.
const delegateTimeout = allocTimeout + 10*time.Second

// hostVethPrefix starts host-side veth names. It differs from weave
// attach's "vethwe", whose removal weaved watches to reap containers.
const hostVethPrefix = "vethwc"

// hostVethName is derived from the attachment, so that DEL and GC find the
// host end without the pod's namespace and a retried ADD replaces it.
func hostVethName(owner string) string {
	sum := sha256.Sum256([]byte(owner))
	return hostVethPrefix + hex.EncodeToString(sum[:4])
}

// podMAC is derived from the attachment too (locally administered,
// unicast): a retried ADD recreates the pod's interface with the address
// and the MAC it had, so peers' ARP caches and the overlay's MAC tables
// stay right.
func podMAC(owner string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("mac:" + owner))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^1 | 2
	return mac
}

func netAdd(args *skel.CmdArgs) error {
	conf, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx := context.Background()
	w := newWeaved(conf.Daemon)
	rep, err := w.report(ctx)
	if err != nil {
		return err
	}
	if rep.Router.Mode == "l3" {
		return fmt.Errorf("weaved at %s runs in L3 mode: it has no bridge to plug pods into", conf.Daemon)
	}
	mtu := conf.MTU
	if mtu == 0 {
		mtu = rep.Router.MTU
	}
	bridge := conf.Bridge
	owner := Owner(conf.Name, args.ContainerID, args.IfName)

	res, err := netIPAMAdd(ctx, w, conf, args, owner)
	if err != nil {
		return err
	}
	br, err := netlinksafe.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %q: %w (is weaved running with --bridge %s?)", bridge, err, bridge)
	}
	if err := addGateway(ctx, w, br, res); err != nil {
		return err
	}

	podNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return fmt.Errorf("pod namespace %q: %w", args.Netns, err)
	}
	defer podNS.Close()
	hostNS, err := ns.GetCurrentNS()
	if err != nil {
		return fmt.Errorf("host namespace: %w", err)
	}
	defer hostNS.Close()

	hostName := hostVethName(owner)
	// An earlier try of this ADD left a pair: deleting the host end takes
	// the pod's end with it, and the retry starts over with the same
	// address.
	if err := delLink(hostName); err != nil {
		return fmt.Errorf("remove the host end of an earlier try: %w", err)
	}
	var hostIf, podIf net.Interface
	err = podNS.Do(func(ns.NetNS) error {
		if l, err := netlinksafe.LinkByName(args.IfName); err == nil {
			if _, ok := l.(*netlink.Veth); !ok {
				return fmt.Errorf("the pod already has an interface %q that is not a veth: not replacing it", args.IfName)
			}
			if err := netlink.LinkDel(l); err != nil {
				return fmt.Errorf("remove %q of an earlier try: %w", args.IfName, err)
			}
		}
		var err error
		if hostIf, podIf, err = ip.SetupVethWithName(args.IfName, hostName, mtu, podMAC(owner).String(), hostNS); err != nil {
			return err
		}
		// An address given back and handed to this pod may still sit in
		// peers' ARP caches with the old pod's MAC: announce ours when the
		// interface comes up.
		if _, err := sysctl.Sysctl("net/ipv4/conf/"+args.IfName+"/arp_notify", "1"); err != nil {
			return err
		}
		// As weave attach does: no IPv6 router solicitations, which the
		// overlay would flood to every peer with no router to answer.
		if _, err := sysctl.Sysctl("net/ipv6/conf/"+args.IfName+"/accept_ra", "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("veth pair: %w", err)
	}
	host, err := netlinksafe.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("host end %q: %w", hostName, err)
	}
	if err := netlink.LinkSetMaster(host, br); err != nil {
		return fmt.Errorf("plug %q into bridge %q: %w", hostName, bridge, err)
	}
	// Hairpin lets a pod reach itself through a service address that
	// kube-proxy rewrites back to it.
	if err := netlink.LinkSetHairpin(host, *conf.HairpinMode); err != nil {
		return fmt.Errorf("hairpin mode on %q: %w", hostName, err)
	}

	res.Interfaces = []*current.Interface{
		{Name: hostIf.Name, Mac: hostIf.HardwareAddr.String()},
		{Name: podIf.Name, Mac: podIf.HardwareAddr.String(), Mtu: mtu, Sandbox: args.Netns},
	}
	for _, ipc := range res.IPs {
		ipc.Interface = current.Int(1)
	}
	if err := podNS.Do(func(ns.NetNS) error { return ipam.ConfigureIface(args.IfName, res) }); err != nil {
		return fmt.Errorf("configure %q: %w", args.IfName, err)
	}
	res.DNS = conf.DNS
	return types.PrintResult(res, conf.CNIVersion)
}

// netIPAMAdd gets the pod's addresses: in-process from weaved when the
// conf names no IPAM plugin, else from that plugin.
func netIPAMAdd(ctx context.Context, w *weaved, conf *NetConf, args *skel.CmdArgs, owner string) (*current.Result, error) {
	if conf.IPAM.Type == "" {
		return allocateResult(ctx, w, owner, conf.IPAM)
	}
	ctx, cancel := context.WithTimeout(ctx, delegateTimeout)
	defer cancel()
	r, err := invoke.DelegateAdd(ctx, conf.IPAM.Type, args.StdinData, nil)
	if err != nil {
		return nil, fmt.Errorf("ipam plugin %s: %w", conf.IPAM.Type, err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return nil, fmt.Errorf("ipam plugin %s: %w", conf.IPAM.Type, err)
	}
	if len(res.IPs) == 0 {
		return nil, fmt.Errorf("ipam plugin %s returned no address", conf.IPAM.Type)
	}
	return res, nil
}

// addGateway routes the pod through the bridge's address in its subnet,
// as Weave Net's plugin did: each address without a gateway gets it, and
// with no routes from IPAM the default route goes there.
func addGateway(ctx context.Context, w *weaved, br netlink.Link, res *current.Result) error {
	for _, ipc := range res.IPs {
		if ipc.Gateway != nil || ipc.Address.IP.To4() == nil {
			continue
		}
		gw, err := bridgeAddr(ctx, w, br, ipc.Address)
		if err != nil {
			return err
		}
		ipc.Gateway = gw
	}
	if len(res.Routes) == 0 {
		res.Routes = []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}}
	}
	return nil
}

// bridgeAddr is the bridge's address in pod's subnet; weaved exposes one
// (an address from the ring, routed from the host) if it has none yet.
// weaved keys the exposed address by subnet, so concurrent ADDs agree.
func bridgeAddr(ctx context.Context, w *weaved, br netlink.Link, pod net.IPNet) (net.IP, error) {
	p, ok := prefixOf(pod)
	if !ok {
		return nil, fmt.Errorf("pod address %v", pod)
	}
	subnet := p.Masked()
	addrs, err := netlinksafe.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("bridge addresses: %w", err)
	}
	for _, a := range addrs {
		if ba, ok := netip.AddrFromSlice(a.IP); ok && subnet.Contains(ba.Unmap()) {
			return a.IP, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, allocTimeout)
	defer cancel()
	r, err := w.c.Expose(ctx, api.AttachRequest{Addrs: []string{"net:" + subnet.String()}})
	if err != nil {
		return nil, w.wrap("give the bridge an address in "+subnet.String(), err)
	}
	for _, s := range r.Addrs {
		if e, err := netip.ParsePrefix(s); err == nil && subnet.Contains(e.Addr()) {
			return net.IP(e.Addr().AsSlice()), nil
		}
	}
	return nil, fmt.Errorf("weaved exposed %v, none in %v", r.Addrs, subnet)
}

// delLink deletes a host link if it exists.
func delLink(name string) error {
	err := ip.DelLinkByName(name)
	if errors.Is(err, ip.ErrLinkNotFound) {
		return nil
	}
	return err
}

// netDel removes the pod's interface and releases its address. What is
// already gone (the namespace, the interface, the allocation) is success,
// so a second DEL succeeds; weaved being down is not, since the address
// would leak (GC would find it later, but the runtime retries DEL first).
func netDel(args *skel.CmdArgs) error {
	conf, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	owner := Owner(conf.Name, args.ContainerID, args.IfName)
	if args.Netns != "" {
		err := ns.WithNetNSPath(args.Netns, func(ns.NetNS) error { return delLink(args.IfName) })
		var notExist ns.NSPathNotExistErr
		if err != nil && !errors.As(err, &notExist) {
			return fmt.Errorf("remove %q: %w", args.IfName, err)
		}
	}
	if err := delLink(hostVethName(owner)); err != nil {
		return fmt.Errorf("remove host end: %w", err)
	}
	ctx := context.Background()
	if conf.IPAM.Type == "" {
		return newWeaved(conf.Daemon).release(ctx, owner)
	}
	ctx, cancel := context.WithTimeout(ctx, delegateTimeout)
	defer cancel()
	if err := invoke.DelegateDel(ctx, conf.IPAM.Type, args.StdinData, nil); err != nil {
		return fmt.Errorf("ipam plugin %s: %w", conf.IPAM.Type, err)
	}
	return nil
}

// netCheck verifies what ADD made: the allocation, the host end on the
// bridge, and the pod's interface with its addresses and routes.
func netCheck(args *skel.CmdArgs) error {
	conf, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	res, err := prevResult(&conf.PluginConf)
	if err != nil {
		return err
	}
	ctx := context.Background()
	owner := Owner(conf.Name, args.ContainerID, args.IfName)
	if conf.IPAM.Type == "" {
		if err := checkHeld(ctx, newWeaved(conf.Daemon), owner, res); err != nil {
			return err
		}
	} else {
		ctx, cancel := context.WithTimeout(ctx, delegateTimeout)
		defer cancel()
		if err := invoke.DelegateCheck(ctx, conf.IPAM.Type, args.StdinData, nil); err != nil {
			return fmt.Errorf("ipam plugin %s: %w", conf.IPAM.Type, err)
		}
	}
	var peerIndex int
	err = ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName(args.IfName)
		if err != nil {
			return fmt.Errorf("check: pod interface %q: %w", args.IfName, err)
		}
		if _, ok := l.(*netlink.Veth); !ok {
			return fmt.Errorf("check: pod interface %q is not a veth", args.IfName)
		}
		peerIndex = l.Attrs().ParentIndex
		if err := ip.ValidateExpectedInterfaceIPs(args.IfName, res.IPs); err != nil {
			return fmt.Errorf("check: %w", err)
		}
		if err := ip.ValidateExpectedRoute(res.Routes); err != nil {
			return fmt.Errorf("check: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	br, err := netlinksafe.LinkByName(conf.Bridge)
	if err != nil {
		return fmt.Errorf("check: bridge %q: %w", conf.Bridge, err)
	}
	hostName := hostVethName(owner)
	host, err := netlinksafe.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("check: host end %q: %w", hostName, err)
	}
	if host.Attrs().Index != peerIndex {
		return fmt.Errorf("check: pod interface %q is not the peer of %q", args.IfName, hostName)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		return fmt.Errorf("check: host end %q is not plugged into bridge %q", hostName, conf.Bridge)
	}
	return nil
}

func netStatus(args *skel.CmdArgs) error {
	conf, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if _, err := newWeaved(conf.Daemon).ready(ctx); err != nil {
		return err
	}
	if conf.IPAM.Type != "" {
		ctx, cancel := context.WithTimeout(ctx, delegateTimeout)
		defer cancel()
		return invoke.DelegateStatus(ctx, conf.IPAM.Type, args.StdinData, nil)
	}
	return nil
}

// netGC releases the allocations of attachments the runtime no longer
// lists and removes their host ends (and so their pods' ends).
func netGC(args *skel.CmdArgs) error {
	conf, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if conf.IPAM.Type != "" {
		ctx, cancel := context.WithTimeout(ctx, delegateTimeout)
		defer cancel()
		if err := invoke.DelegateGC(ctx, conf.IPAM.Type, args.StdinData, nil); err != nil {
			return fmt.Errorf("ipam plugin %s: %w", conf.IPAM.Type, err)
		}
		return nil
	}
	released, err := newWeaved(conf.Daemon).gc(ctx, conf.Name, conf.ValidAttachments)
	var errs []error
	for _, owner := range released {
		if err := delLink(hostVethName(owner)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, err)...)
}
