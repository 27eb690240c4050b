package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"

	"weavenet/api"
)

// The /ipam endpoints hand out addresses to programs that plug containers
// in themselves (the CNI plugins), keyed by an owner of their choosing.
// weaved neither plugs nor reaps these owners: their callers release them
// (CNI DEL and GC).

func (d *daemon) ipamHandlers(mux *http.ServeMux) {
	post(mux, "/ipam/allocate", func(ctx context.Context, req api.IPAMRequest) (any, error) {
		if err := checkOwner(req.Owner); err != nil {
			return nil, err
		}
		spec := addrSpec{isNet: true}
		if req.Subnet != "" {
			p, err := netip.ParsePrefix(req.Subnet)
			if err != nil || !p.Addr().Is4() {
				return nil, fmt.Errorf("subnet %q: want an IPv4 CIDR such as 10.32.0.0/12", req.Subnet)
			}
			spec.subnet = p.Masked()
		}
		ctx, cancel := context.WithTimeout(ctx, allocTimeout)
		defer cancel()
		p, err := d.obtain(ctx, req.Owner, spec)
		if err != nil {
			return nil, err
		}
		return api.IPAMResponse{Addr: p.String()}, nil
	})
	post(mux, "/ipam/release", func(_ context.Context, req api.IPAMRequest) (any, error) {
		if err := checkOwner(req.Owner); err != nil {
			return nil, err
		}
		return struct{}{}, d.alloc.ReleaseAll(req.Owner)
	})
	mux.HandleFunc("GET /ipam/owners", func(w http.ResponseWriter, r *http.Request) {
		prefix := r.URL.Query().Get("prefix")
		owners := []api.IPAMOwner{}
		for _, o := range d.alloc.Owners() {
			if strings.HasPrefix(o, prefix) {
				owners = append(owners, api.IPAMOwner{Owner: o, Addrs: prefixStrings(d.alloc.Lookup(o))})
			}
		}
		sort.Slice(owners, func(i, j int) bool { return owners[i].Owner < owners[j].Owner })
		writeJSON(w, http.StatusOK, owners)
	})
}

// checkOwner refuses owners that would collide with the ones weaved keys
// itself (containers and the host's exposed addresses) or are unbounded.
func checkOwner(owner string) error {
	switch {
	case owner == "":
		return errors.New("owner: empty")
	case len(owner) > api.MaxOwnerLen:
		return fmt.Errorf("owner: longer than %d bytes", api.MaxOwnerLen)
	case owner == exposeKey:
		return fmt.Errorf("owner %q is weaved's own (weave expose)", owner)
	}
	return nil
}
