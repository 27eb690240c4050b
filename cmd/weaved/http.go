package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"time"

	"weavenet/mesh"

	"weavenet/api"
	"weavenet/ipam"
	"weavenet/router"
)

func (d *daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /report", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, d.report())
	})
	post(mux, "/connect", func(_ context.Context, req api.PeersRequest) (any, error) {
		if err := d.checkTargets(req); err != nil {
			return nil, err
		}
		return struct{}{}, d.node.Connect(req.Peers, req.Replace)
	})
	post(mux, "/forget", func(_ context.Context, req api.PeersRequest) (any, error) {
		d.node.Forget(req.Peers)
		return struct{}{}, nil
	})
	post(mux, "/attach", func(ctx context.Context, req api.AttachRequest) (any, error) { return d.attach(ctx, req) })
	post(mux, "/detach", func(_ context.Context, req api.AttachRequest) (any, error) { return d.detach(req) })
	post(mux, "/expose", func(ctx context.Context, req api.AttachRequest) (any, error) { return d.expose(ctx, req) })
	post(mux, "/hide", func(_ context.Context, req api.AttachRequest) (any, error) { return d.hide(req) })
	post(mux, "/rm", func(ctx context.Context, req api.ContainerRequest) (any, error) {
		return struct{}{}, d.rmRef(ctx, req.Container)
	})
	post(mux, "/rmpeer", func(_ context.Context, req api.PeersRequest) (any, error) { return d.rmpeer(req.Peers) })
	post(mux, "/dns-add", func(ctx context.Context, req api.DNSRequest) (any, error) {
		return struct{}{}, d.dnsChange(ctx, req, true)
	})
	post(mux, "/dns-remove", func(ctx context.Context, req api.DNSRequest) (any, error) {
		return struct{}{}, d.dnsChange(ctx, req, false)
	})
	mux.HandleFunc("GET /ps", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, d.ps())
	})
	mux.HandleFunc("GET /dns-lookup", func(w http.ResponseWriter, r *http.Request) {
		if d.dns == nil {
			writeError(w, http.StatusNotFound, errNoDNS)
			return
		}
		addrs := []string{}
		for _, a := range d.dns.Lookup(r.URL.Query().Get("name")) {
			addrs = append(addrs, a.String())
		}
		writeJSON(w, http.StatusOK, addrs)
	})
	d.ipamHandlers(mux)
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, struct{}{})
		d.requestStop()
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		// Hand our address space to a peer before leaving, so that it is
		// not lost with us.
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		for key := range d.containers.all() {
			if err := d.rm(key); err != nil {
				d.log.Warn("reset: removing container", "container", key, "err", err)
			}
		}
		if err := d.alloc.Shutdown(ctx); err != nil {
			d.log.Warn("reset: handing over address space", "err", err)
		}
		d.reset = true
		writeJSON(w, http.StatusOK, struct{}{})
		d.requestStop()
	})
	return mux
}

func (d *daemon) requestStop() {
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
}

// post serves a JSON request of type Req at POST path with do: its answer
// as JSON, or its error as a 404 (what does not exist) or 400 (the request
// cannot be met as asked).
func post[Req any](mux *http.ServeMux, path string, do func(context.Context, Req) (any, error)) {
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if !readJSON(w, r, &req) {
			return
		}
		// Within what clients wait (api.ClientTimeout), so that they
		// get our error rather than a timeout of their own.
		ctx, cancel := context.WithTimeout(r.Context(), api.RequestWait)
		defer cancel()
		v, err := do(ctx, req)
		switch {
		case err == nil:
			writeJSON(w, http.StatusOK, v)
		case errors.Is(err, os.ErrNotExist):
			writeError(w, http.StatusNotFound, err)
		default:
			writeError(w, http.StatusBadRequest, err)
		}
	})
}

const containerIfName = "ethwe"

// maxTargets bounds the addresses weave connect may keep: mesh dials each
// one in a goroutine of its own with no timeout but the kernel's (about
// two minutes for an address that never answers), and forget cannot
// cancel a dial under way, so the bound is what caps those goroutines. A
// mesh needs one target per peer at most, and far fewer in practice.
const maxTargets = 256

func (d *daemon) checkTargets(req api.PeersRequest) error {
	n := len(req.Peers)
	if !req.Replace {
		n += len(d.node.Mesh.ConnectionMaker.Targets(false))
	}
	if n > maxTargets {
		return fmt.Errorf("connect: %d targets would be over the limit of %d; weave forget some first, or connect with --replace", n, maxTargets)
	}
	return nil
}

var errNoDNS = errors.New("weaveDNS is off (--no-dns)")

// rmpeer takes over the address space of peers gone for good, named by
// peer name or nickname.
func (d *daemon) rmpeer(peers []string) (*api.RmpeerResponse, error) {
	resp := &api.RmpeerResponse{Reclaimed: map[string]uint64{}}
	for _, p := range peers {
		name, err := d.peerByNameOrNick(p)
		if err != nil {
			return nil, err
		}
		if d.node.Mesh.Peers.Fetch(name) != nil {
			return nil, fmt.Errorf("rmpeer %s: the peer is still part of the mesh; stop it first (or wait until its connections are gone)", p)
		}
		n, err := d.alloc.RemovePeer(name)
		if err != nil {
			return nil, fmt.Errorf("rmpeer %s: %w", p, err)
		}
		if d.dns != nil {
			d.dns.PeerGone(name)
		}
		resp.Reclaimed[p] = n
	}
	return resp, nil
}

func (d *daemon) peerByNameOrNick(s string) (mesh.PeerName, error) {
	if name, err := mesh.PeerNameFromString(s); err == nil {
		return name, nil
	}
	for _, p := range d.alloc.Status().Peers {
		if p.NickName == s {
			return mesh.PeerNameFromString(p.Name)
		}
	}
	return 0, fmt.Errorf("no peer named %q: give a peer name (aa:bb:cc:dd:ee:ff) or a nickname from weave status ipam", s)
}

func (d *daemon) dnsChange(ctx context.Context, req api.DNSRequest, add bool) error {
	if d.dns == nil {
		return errNoDNS
	}
	key, _, err := d.resolve(ctx, req.Container)
	if err != nil {
		return err
	}
	req.Container = key
	info, _ := d.containers.get(req.Container)
	hostname := req.Hostname
	if hostname == "" {
		hostname = info.Hostname
	}
	var addrs []netip.Addr
	for _, s := range req.Addrs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("%q is not an IP address", s)
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		for _, p := range d.alloc.Lookup(req.Container) {
			addrs = append(addrs, p.Addr())
		}
	}
	if !add {
		if len(addrs) == 0 {
			_, err := d.dns.RemoveEntries(req.Container, req.Hostname, netip.Addr{})
			return err
		}
		for _, a := range addrs {
			if _, err := d.dns.RemoveEntries(req.Container, req.Hostname, a); err != nil {
				return err
			}
		}
		return nil
	}
	if hostname == "" {
		return fmt.Errorf("no name for %q: give one with -h FQDN", req.Container)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%q has no addresses: give them, or attach it first", req.Container)
	}
	for _, a := range addrs {
		if err := d.dns.AddEntry(req.Container, hostname, a); err != nil {
			return err
		}
	}
	return nil
}

func (d *daemon) report() api.Report {
	rep := api.Report{Version: api.Version, Router: router.Report(d.node, d.router, d.cfg.mtu)}
	rep.Router.Bridge = d.cfg.bridge
	rep.Router.Mode = d.cfg.mode
	rep.IPAM = d.ipamReport()
	rep.DNS = d.dnsReport()
	rep.Proxy = d.proxyReport()
	rep.Plugin = d.pluginReport()
	return rep
}

func (d *daemon) ipamReport() *api.IPAM {
	st := d.alloc.Status()
	out := &api.IPAM{
		Status:        st.Status,
		Range:         ipam.RangeString(st.Range),
		RangeCIDR:     st.Range.String(),
		DefaultSubnet: st.DefaultSubnet.String(),
		Init:          st.Init,
		Allocations:   st.Allocations,
	}
	for _, p := range st.Peers {
		ap := api.IPAMPeer{Name: p.Name, NickName: p.NickName, Ourself: p.Ourself, Reachable: p.Reachable,
			Addresses: p.Addresses, Share: p.Share, Free: p.Free}
		for _, r := range p.Ranges {
			ap.Ranges = append(ap.Ranges, r.String())
		}
		out.Peers = append(out.Peers, ap)
	}
	return out
}

func (d *daemon) dnsReport() *api.DNS {
	if d.dns == nil {
		return nil
	}
	st := d.dns.Status()
	out := &api.DNS{Domain: st.Domain, TTL: st.TTL, Upstream: []string{}, Entries: []api.DNSEntry{}}
	if st.Address.IsValid() {
		out.Address = st.Address.String()
	}
	for _, u := range st.Upstream {
		out.Upstream = append(out.Upstream, u.Addr().String())
	}
	for _, e := range d.dns.Entries() {
		if e.Tombstone {
			continue
		}
		out.Entries = append(out.Entries, api.DNSEntry{Hostname: e.Hostname, Address: e.Addr.String(), Container: e.Container, Origin: e.Origin.String()})
	}
	sort.Slice(out.Entries, func(i, j int) bool {
		a, b := out.Entries[i], out.Entries[j]
		return a.Hostname < b.Hostname || a.Hostname == b.Hostname && a.Address < b.Address
	})
	return out
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, api.ErrorResponse{Error: err.Error()})
}
