package cni

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// IPAMFuncs are weave-ipam's commands, for skel.PluginMainFuncs.
func IPAMFuncs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: ipamAdd, Del: ipamDel, Check: ipamCheck, Status: ipamStatus, GC: ipamGC}
}

func ipamAdd(args *skel.CmdArgs) error {
	conf, err := ParseIPAMNetConf(args.StdinData)
	if err != nil {
		return err
	}
	res, err := allocateResult(context.Background(), newWeaved(conf.Daemon), Owner(conf.Name, args.ContainerID, args.IfName), conf.IPAM)
	if err != nil {
		return err
	}
	return types.PrintResult(res, conf.CNIVersion)
}

// allocateResult asks weaved for owner's address and shapes it as an IPAM
// result: the address, and the conf's routes.
func allocateResult(ctx context.Context, w *weaved, owner string, ipam IPAMConf) (*current.Result, error) {
	p, err := w.allocate(ctx, owner, ipam.Subnet)
	if err != nil {
		return nil, err
	}
	return &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		IPs:        []*current.IPConfig{{Address: ipNet(p)}},
		Routes:     ipam.Routes,
	}, nil
}

func ipamDel(args *skel.CmdArgs) error {
	conf, err := ParseIPAMNetConf(args.StdinData)
	if err != nil {
		return err
	}
	return newWeaved(conf.Daemon).release(context.Background(), Owner(conf.Name, args.ContainerID, args.IfName))
}

func ipamCheck(args *skel.CmdArgs) error {
	conf, err := ParseIPAMNetConf(args.StdinData)
	if err != nil {
		return err
	}
	res, err := prevResult(&conf.PluginConf)
	if err != nil {
		return err
	}
	return checkHeld(context.Background(), newWeaved(conf.Daemon), Owner(conf.Name, args.ContainerID, args.IfName), res)
}

// checkHeld verifies that weaved still holds every IPv4 address of res for
// owner.
func checkHeld(ctx context.Context, w *weaved, owner string, res *current.Result) error {
	held, err := w.held(ctx, owner)
	if err != nil {
		return err
	}
	if len(held) == 0 {
		return fmt.Errorf("check: weaved holds no address for %s", owner)
	}
	for _, ipc := range res.IPs {
		p, ok := prefixOf(ipc.Address)
		if !ok || !p.Addr().Is4() {
			continue
		}
		if !slices.Contains(held, p) {
			return fmt.Errorf("check: weaved holds %v for %s, not %v", held, owner, p)
		}
	}
	return nil
}

func ipamStatus(args *skel.CmdArgs) error {
	conf, err := ParseIPAMNetConf(args.StdinData)
	if err != nil {
		return err
	}
	_, err = newWeaved(conf.Daemon).ready(context.Background())
	return err
}

func ipamGC(args *skel.CmdArgs) error {
	conf, err := ParseIPAMNetConf(args.StdinData)
	if err != nil {
		return err
	}
	_, err = newWeaved(conf.Daemon).gc(context.Background(), conf.Name, conf.ValidAttachments)
	return err
}

// prevResult is the result CHECK verifies, in the current version.
func prevResult(pc *types.PluginConf) (*current.Result, error) {
	if err := version.ParsePrevResult(pc); err != nil {
		return nil, fmt.Errorf("check: prevResult: %w", err)
	}
	if pc.PrevResult == nil {
		return nil, fmt.Errorf("check: the runtime sent no prevResult")
	}
	res, err := current.NewResultFromResult(pc.PrevResult)
	if err != nil {
		return nil, fmt.Errorf("check: prevResult: %w", err)
	}
	return res, nil
}

func ipNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if a.Is4In6() && bits == 128 {
		ones -= 96
	}
	return netip.PrefixFrom(a.Unmap(), ones), true
}
