package cni

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"weavenet/api"
)

// Every call to weaved has a deadline, so that a plugin run while weaved is
// down or wedged fails with a message naming it instead of hanging the
// runtime. Allocation may wait for the ring (consensus, a donation), which
// weaved itself bounds at 30 s; the plugin gives it a little more so that
// weaved's own explanation arrives first.
const (
	queryTimeout   = 5 * time.Second
	allocTimeout   = 40 * time.Second
	releaseTimeout = 10 * time.Second
)

// weaved is the local daemon as the plugins see it.
type weaved struct {
	c *api.Client
}

func newWeaved(addr string) *weaved {
	c := api.NewClient(addr)
	// The per-call contexts bound each request; this only stops a
	// response body that trickles forever.
	c.HTTP.Timeout = allocTimeout + 5*time.Second
	return &weaved{c: c}
}

// wrap names weaved in every error, with what to do when it is not there.
func (w *weaved) wrap(what string, err error) error {
	switch {
	case errors.Is(err, api.ErrNoDaemon):
		return fmt.Errorf("%s: weaved is not running: nothing answers at %s (start it with weave launch, or check the conf's daemon address)", what, w.c.Addr)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: weaved at %s did not answer in time: %w", what, w.c.Addr, err)
	default:
		return fmt.Errorf("%s: weaved at %s: %w", what, w.c.Addr, err)
	}
}

// ready is STATUS: weaved answers, runs a bridge and its IPAM can
// allocate now or will on the first request ("idle": nothing asked yet,
// so no consensus was sought).
func (w *weaved) ready(ctx context.Context) (*api.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rep, err := w.c.Report(ctx)
	if err != nil {
		return nil, types.NewError(types.ErrPluginNotAvailable, w.wrap("status", err).Error(), "")
	}
	if rep.Router.Mode == "l3" {
		return nil, types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("weaved at %s runs in L3 mode: it has no bridge to plug pods into", w.c.Addr), "")
	}
	if rep.IPAM == nil {
		return nil, types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("weaved at %s reports no IPAM", w.c.Addr), "")
	}
	if st := rep.IPAM.Status; st != "ready" && st != "idle" {
		return nil, types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("weaved's IPAM at %s is not ready: %s", w.c.Addr, st), "")
	}
	return rep, nil
}

// report is the daemon's state, for the bridge's MTU.
func (w *weaved) report(ctx context.Context) (*api.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rep, err := w.c.Report(ctx)
	if err != nil {
		return nil, w.wrap("report", err)
	}
	return rep, nil
}

func (w *weaved) allocate(ctx context.Context, owner, subnet string) (netip.Prefix, error) {
	ctx, cancel := context.WithTimeout(ctx, allocTimeout)
	defer cancel()
	r, err := w.c.IPAMAllocate(ctx, api.IPAMRequest{Owner: owner, Subnet: subnet})
	if err != nil {
		return netip.Prefix{}, w.wrap("allocate", err)
	}
	p, err := netip.ParsePrefix(r.Addr)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("allocate: weaved at %s answered %q: %w", w.c.Addr, r.Addr, err)
	}
	return p, nil
}

func (w *weaved) release(ctx context.Context, owner string) error {
	ctx, cancel := context.WithTimeout(ctx, releaseTimeout)
	defer cancel()
	if err := w.c.IPAMRelease(ctx, owner); err != nil {
		return w.wrap("release", err)
	}
	return nil
}

// held is what owner holds, none if it holds nothing.
func (w *weaved) held(ctx context.Context, owner string) ([]netip.Prefix, error) {
	owners, err := w.owners(ctx, owner)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(owners, func(o api.IPAMOwner) bool { return o.Owner == owner })
	if i < 0 {
		return nil, nil
	}
	var out []netip.Prefix
	for _, s := range owners[i].Addrs {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

func (w *weaved) owners(ctx context.Context, prefix string) ([]api.IPAMOwner, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	owners, err := w.c.IPAMOwners(ctx, prefix)
	if err != nil {
		return nil, w.wrap("list allocations", err)
	}
	return owners, nil
}

// gc releases the network's allocations whose attachment is not among
// valid, and returns the owners it released.
func (w *weaved) gc(ctx context.Context, network string, valid []types.GCAttachment) ([]string, error) {
	owners, err := w.owners(ctx, OwnerPrefix+network+":")
	if err != nil {
		return nil, err
	}
	keep := make(map[types.GCAttachment]bool, len(valid))
	for _, a := range valid {
		keep[a] = true
	}
	var released []string
	var errs []error
	for _, o := range owners {
		cid, ifName, ok := ParseOwner(network, o.Owner)
		if !ok || keep[types.GCAttachment{ContainerID: cid, IfName: ifName}] {
			continue
		}
		if err := w.release(ctx, o.Owner); err != nil {
			errs = append(errs, err)
			continue
		}
		released = append(released, o.Owner)
	}
	return released, errors.Join(errs...)
}
