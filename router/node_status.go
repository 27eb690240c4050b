package router

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"weavenet/mesh"

	"weavenet/api"
	"weavenet/gossip"
)

// Status is the node's state in the shape of `weave report`: api.Report
// with the Router section filled in (a Node has no IPAM or DNS, so those
// are nil). It encodes to the same JSON, and templates written for
// `weave report -f` work on it.
func (n *Node) Status() api.Report {
	return api.Report{Version: api.Version, Router: Report(n.gossip, n.router, n.cfg.MTU)}
}

// Report is the router section of `weave report` for a router r that is
// node's overlay, with mtu the overlay MTU: weaved's report and a Node's
// Status share it.
func Report(node *gossip.Node, r *Router, mtu int) api.Router {
	st := node.Status()
	rs := r.Stats()
	rep := api.Router{
		Name:               st.Name,
		NickName:           st.NickName,
		Port:               st.Port,
		Protocol:           st.Protocol,
		ProtocolMinVersion: st.ProtocolMinVersion,
		ProtocolMaxVersion: st.ProtocolMaxVersion,
		Encryption:         st.Encryption,
		PeerDiscovery:      st.PeerDiscovery,
		TrustedSubnets:     st.TrustedSubnets,
		MTU:                mtu,
		Targets:            st.Targets,
		Stats: api.Stats{
			FramesIn: rs.FramesIn, FramesOut: rs.FramesOut,
			BytesIn: rs.BytesIn, BytesOut: rs.BytesOut,
			Drops: rs.Drops,
		},
	}
	rep.Stats.Drops["handshake"] = node.HandshakeFailures()
	// Inbound connections the mesh closed before their handshake
	// completed, by why.
	gs := node.HandshakeStats()
	rep.Stats.Drops["handshake_silent"] = gs.Silent
	rep.Stats.Drops["handshake_not_mesh"] = gs.NotMesh
	rep.Stats.Drops["handshake_oversize"] = gs.Oversize
	rep.Stats.Drops["handshake_timeout"] = gs.Timeout
	rep.Stats.Drops["handshake_evicted"] = gs.Evicted
	rep.Stats.Drops["gossip_loop"] = gs.LoopedBroadcasts
	fs := r.FastDatapathStatus()
	rep.FastDatapath = &api.FastDatapath{Enabled: fs.Enabled, Why: fs.Why, Port: fs.Port, VNI: fs.VNI, Entries: fs.Entries, Encrypted: fs.Encrypted, RxBytes: fs.RxBytes, TxBytes: fs.TxBytes,
		AllowList: fs.AllowList, AllowListOff: fs.AllowListOff, AllowedPeers: fs.AllowedPeers, Dropped: fs.Dropped}
	if fs.AllowList != "" {
		rep.Stats.Drops["vxlan_not_peer"] = fs.Dropped
	}
	if rep.Targets == nil {
		rep.Targets = []string{}
	}
	sort.Strings(rep.Targets)
	for _, c := range st.Connections {
		rep.Connections = append(rep.Connections, connectionStatus(c))
	}
	sort.Slice(rep.Connections, func(i, j int) bool {
		return rep.Connections[i].Address < rep.Connections[j].Address
	})
	// The kinds we know: ours, and those of the peers we have a
	// connection to (the handshake says); gossip does not carry them.
	kinds := map[string][2]string{st.Name: {KindWeavenet, ourRelease}}
	for _, c := range rep.Connections {
		if c.PeerName != "" && c.PeerKind != "" {
			kinds[c.PeerName] = [2]string{c.PeerKind, c.PeerVersion}
		}
	}
	for _, p := range st.Peers {
		peer := api.Peer{Name: p.Name, NickName: p.NickName, UID: uint64(p.UID), ShortID: uint16(p.ShortID), Version: p.Version}
		peer.Kind, peer.Release = kinds[p.Name][0], kinds[p.Name][1]
		for _, c := range p.Connections {
			peer.Connections = append(peer.Connections, api.PeerConnection{
				Name: c.Name, NickName: c.NickName, Address: c.Address, Outbound: c.Outbound, Established: c.Established,
			})
		}
		rep.Peers = append(rep.Peers, peer)
	}
	sort.Slice(rep.Peers, func(i, j int) bool { return rep.Peers[i].Name < rep.Peers[j].Name })
	return rep
}

// connectionStatus turns mesh's view of a connection into the report's.
func connectionStatus(c mesh.LocalConnectionStatus) api.Connection {
	// mesh prefixes the info of an established connection with its
	// encryption when a password is set; the report has a field for that.
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
	if format, ok := c.Attrs["format"].(string); ok {
		out.Format = format
	}
	out.PeerName, _ = c.Attrs["peer"].(string)
	out.PeerKind, _ = c.Attrs["peer_kind"].(string)
	out.PeerVersion, _ = c.Attrs["peer_version"].(string)
	if d, ok := c.Attrs["heartbeat"].(time.Duration); ok {
		out.Heartbeat = seconds(d)
	}
	if d, ok := c.Attrs["heartbeat_timeout"].(time.Duration); ok {
		out.HeartbeatTimeout = seconds(d)
	}
	out.Datapath, _ = c.Attrs["datapath"].(string)
	out.DatapathReason, _ = c.Attrs["datapath_reason"].(string)
	if !c.EstablishedAt.IsZero() {
		at := c.EstablishedAt
		out.EstablishedAt = &at
	}
	return out
}

// seconds prints a whole number of seconds as "60s" rather than "1m0s".
func seconds(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}
