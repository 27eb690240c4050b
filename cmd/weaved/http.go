package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"

	"github.com/weaveworks/mesh"

	"weavenet/api"
	"weavenet/gossip"
	"weavenet/netdev"
)

func (d *daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /report", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, d.report())
	})
	mux.HandleFunc("POST /connect", func(w http.ResponseWriter, r *http.Request) {
		var req api.PeersRequest
		if !readJSON(w, r, &req) {
			return
		}
		if err := d.node.Connect(req.Peers, req.Replace); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("POST /forget", func(w http.ResponseWriter, r *http.Request) {
		var req api.PeersRequest
		if !readJSON(w, r, &req) {
			return
		}
		d.node.Forget(req.Peers)
		writeJSON(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("POST /attach", func(w http.ResponseWriter, r *http.Request) { d.attach(w, r, true) })
	mux.HandleFunc("POST /detach", func(w http.ResponseWriter, r *http.Request) { d.attach(w, r, false) })
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, struct{}{})
		select {
		case <-d.stop:
		default:
			close(d.stop)
		}
	})
	return mux
}

const containerIfName = "ethwe"

func (d *daemon) attach(w http.ResponseWriter, r *http.Request, attach bool) {
	var req api.AttachRequest
	if !readJSON(w, r, &req) {
		return
	}
	addrs, err := parseCIDRs(req.Addrs)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ns, err := netdev.ContainerNetNSPath(req.Container)
	if err != nil {
		writeError(w, http.StatusNotFound, err)
		return
	}
	var resp api.AttachResponse
	var left []netip.Prefix
	if attach {
		if len(addrs) == 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("attach %s: give at least one CIDR (automatic allocation comes with IPAM)", req.Container))
			return
		}
		mac, got, err := netdev.Attach(netdev.AttachConfig{Bridge: d.cfg.bridge, NetNS: ns, IfName: containerIfName, MTU: d.cfg.mtu, Addrs: addrs})
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		resp.MAC, left = mac.String(), got
	} else {
		if left, err = netdev.Detach(ns, containerIfName, addrs); err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
	}
	for _, p := range left {
		resp.Addrs = append(resp.Addrs, p.String())
	}
	writeJSON(w, http.StatusOK, resp)
}

func parseCIDRs(in []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(in))
	for _, s := range in {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("%q is not an IPv4 CIDR such as 10.32.0.1/12", s)
		}
		out = append(out, p)
	}
	return out, nil
}

func (d *daemon) report() api.Report {
	st := d.node.Status()
	rs := d.router.Stats()
	rep := api.Report{
		Version: api.Version,
		Router: api.Router{
			Name:               st.Name,
			NickName:           st.NickName,
			Port:               st.Port,
			Protocol:           st.Protocol,
			ProtocolMinVersion: st.ProtocolMinVersion,
			ProtocolMaxVersion: st.ProtocolMaxVersion,
			Encryption:         st.Encryption,
			PeerDiscovery:      st.PeerDiscovery,
			TrustedSubnets:     st.TrustedSubnets,
			MTU:                d.cfg.mtu,
			Bridge:             d.cfg.bridge,
			Targets:            st.Targets,
			Stats: api.Stats{
				FramesIn: rs.FramesIn, FramesOut: rs.FramesOut,
				BytesIn: rs.BytesIn, BytesOut: rs.BytesOut,
				Drops: rs.Drops,
			},
		},
	}
	rep.Router.Stats.Drops["handshake"] = d.node.HandshakeFailures()
	if rep.Router.Targets == nil {
		rep.Router.Targets = []string{}
	}
	for _, c := range st.Connections {
		rep.Router.Connections = append(rep.Router.Connections, connection(c))
	}
	sort.Slice(rep.Router.Connections, func(i, j int) bool {
		return rep.Router.Connections[i].Address < rep.Router.Connections[j].Address
	})
	for _, p := range st.Peers {
		peer := api.Peer{Name: p.Name, NickName: p.NickName, UID: uint64(p.UID), ShortID: uint16(p.ShortID), Version: p.Version}
		for _, c := range p.Connections {
			peer.Connections = append(peer.Connections, api.PeerConnection{
				Name: c.Name, NickName: c.NickName, Address: c.Address, Outbound: c.Outbound, Established: c.Established,
			})
		}
		rep.Router.Peers = append(rep.Router.Peers, peer)
	}
	sort.Slice(rep.Router.Peers, func(i, j int) bool { return rep.Router.Peers[i].Name < rep.Router.Peers[j].Name })
	return rep
}

func connection(c mesh.LocalConnectionStatus) api.Connection {
	// mesh prefixes the info of an established connection with its
	// encryption when a password is set; we report that as a field.
	info := strings.TrimPrefix(c.Info, "unencrypted")
	info = strings.Join(strings.Fields(strings.TrimPrefix(info, "encrypted")), " ")
	out := api.Connection{Address: c.Address, Outbound: c.Outbound, State: c.State, Info: gossip.Explain(info)}
	if name, ok := c.Attrs["name"].(string); ok {
		out.Transport = name
	}
	if mtu, ok := c.Attrs["mtu"].(int); ok {
		out.MTU = mtu
	}
	if enc, ok := c.Attrs["encrypted"].(bool); ok {
		out.Encrypted = enc
	}
	if cipher, ok := c.Attrs["cipher"].(string); ok {
		out.Cipher = cipher
	}
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
