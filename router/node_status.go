package router

import (
	"sort"
	"strings"

	"github.com/weaveworks/mesh"

	"weavenet/api"
	"weavenet/gossip"
)

// Status is the node's state in the shape of `weave report`: api.Report
// with the Router section filled in (a Node has no IPAM or DNS, so those
// are nil). It encodes to the same JSON, and templates written for
// `weave report -f` work on it.
func (n *Node) Status() api.Report {
	st := n.gossip.Status()
	rs := n.router.Stats()
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
			MTU:                n.cfg.MTU,
			Targets:            st.Targets,
			Stats: api.Stats{
				FramesIn: rs.FramesIn, FramesOut: rs.FramesOut,
				BytesIn: rs.BytesIn, BytesOut: rs.BytesOut,
				Drops: rs.Drops,
			},
		},
	}
	rep.Router.Stats.Drops["handshake"] = n.gossip.HandshakeFailures()
	if rep.Router.Targets == nil {
		rep.Router.Targets = []string{}
	}
	sort.Strings(rep.Router.Targets)
	for _, c := range st.Connections {
		rep.Router.Connections = append(rep.Router.Connections, connectionStatus(c))
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

// connectionStatus turns mesh's view of a connection into the report's,
// as weaved does.
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
	return out
}
