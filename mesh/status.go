package mesh

import (
	"fmt"
	"sort"
	"time"
)

// Status is a snapshot of a router, for diagnostics; it shares nothing
// with the router.
type Status struct {
	Protocol           string
	ProtocolMinVersion int
	ProtocolMaxVersion int
	Encryption         bool
	PeerDiscovery      bool
	Name               string
	NickName           string
	Port               int
	Peers              []PeerStatus
	UnicastRoutes      []UnicastRouteStatus
	BroadcastRoutes    []BroadcastRouteStatus
	Connections        []LocalConnectionStatus
	TerminationCount   int
	Targets            []string
	OverlayDiagnostics interface{}
	TrustedSubnets     []string
}

// PeerStatus is one peer of the topology.
type PeerStatus struct {
	Name        string
	NickName    string
	UID         PeerUID
	ShortID     PeerShortID
	Version     uint64
	Connections []ConnectionStatus
}

// ConnectionStatus is a connection a peer reports.
type ConnectionStatus struct {
	Name        string
	NickName    string
	Address     string
	Outbound    bool
	Established bool
}

// UnicastRouteStatus is the next hop to Dest.
type UnicastRouteStatus struct{ Dest, Via string }

// BroadcastRouteStatus are the neighbours a broadcast from Source goes to.
type BroadcastRouteStatus struct {
	Source string
	Via    []string
}

// LocalConnectionStatus is one of our connections, or a target we are
// trying to connect to.
type LocalConnectionStatus struct {
	Address  string
	Outbound bool
	State    string
	Info     string
	Attrs    map[string]interface{}
	// EstablishedAt is when the connection became established (zero
	// until then).
	EstablishedAt time.Time
}

// NewStatus takes a snapshot of r.
func NewStatus(r *Router) *Status {
	us := r.Peers.ourself()
	st := &Status{
		Protocol:           Protocol,
		ProtocolMinVersion: int(r.protocolMinVersion()),
		ProtocolMaxVersion: int(r.maxVersion),
		Encryption:         r.usingPassword(),
		PeerDiscovery:      r.PeerDiscovery,
		Name:               us.Name.String(),
		NickName:           us.NickName,
		Port:               r.Port,
		Peers:              r.Peers.status(),
		OverlayDiagnostics: r.Overlay.Diagnostics(),
		TrustedSubnets:     []string{},
	}
	for _, n := range r.TrustedSubnets {
		st.TrustedSubnets = append(st.TrustedSubnets, n.String())
	}
	routes := r.Routes.Snapshot()
	for d, v := range routes.unicast {
		st.UnicastRoutes = append(st.UnicastRoutes, UnicastRouteStatus{d.String(), v.String()})
	}
	hops := routes.Broadcast(us.Name)
	b := BroadcastRouteStatus{Source: us.Name.String()}
	for _, h := range hops {
		b.Via = append(b.Via, h.String())
	}
	st.BroadcastRoutes = []BroadcastRouteStatus{b}
	st.Connections, st.TerminationCount, st.Targets = r.connMaker.status()
	return st
}

func (ps *Peers) status() []PeerStatus {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	out := make([]PeerStatus, 0, len(ps.byName))
	for _, s := range ps.byName {
		p := PeerStatus{Name: s.p.Name.String(), NickName: s.p.NickName, UID: s.p.UID, ShortID: s.p.ShortID, Version: s.p.Version}
		for to, l := range s.links {
			cs := ConnectionStatus{Name: to.String(), Address: l.addr, Outbound: l.outbound, Established: l.established}
			if t := ps.byName[to]; t != nil {
				cs.NickName = t.p.NickName
			}
			p.Connections = append(p.Connections, cs)
		}
		sort.Slice(p.Connections, func(i, j int) bool { return p.Connections[i].Name < p.Connections[j].Name })
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// status lists connections and targets, the termination count, and the
// targets as given.
func (cm *ConnectionMaker) status() ([]LocalConnectionStatus, int, []string) {
	type result struct {
		conns   []LocalConnectionStatus
		n       int
		targets []string
	}
	res := make(chan result, 1)
	encrypted := cm.r.usingPassword()
	if !cm.do(func() bool {
		var out result
		for c := range cm.connections {
			state := "pending"
			var since time.Time
			if c.established.Load() {
				state = "established"
				since = time.Unix(0, c.establishedAt.Load())
			}
			// A copy: the overlay's map may be its own.
			var attrs map[string]interface{}
			if a := c.OverlayConn.Attrs(); a != nil {
				attrs = make(map[string]interface{}, len(a)+1)
				for k, v := range a {
					attrs[k] = v
				}
			}
			name, ok := attrs["name"]
			if !ok {
				name = "none"
			}
			info := fmt.Sprintf("%-6v %v", name, c.remote)
			if encrypted {
				if c.untrusted() {
					info = fmt.Sprintf("%-11v %v", "encrypted", info)
					if attrs != nil {
						attrs["encrypted"] = true
					}
				} else {
					info = fmt.Sprintf("%-11v %v", "unencrypted", info)
				}
			}
			out.conns = append(out.conns, LocalConnectionStatus{c.remoteAddr, c.outbound, state, info, attrs, since})
		}
		for addr, t := range cm.targets {
			switch t.state {
			case targetWaiting:
				until := "never"
				if !t.tryAfter.IsZero() {
					until = t.tryAfter.String()
				}
				if t.lastError == nil {
					out.conns = append(out.conns, LocalConnectionStatus{Address: addr, Outbound: true, State: "waiting", Info: "until: " + until})
				} else {
					out.conns = append(out.conns, LocalConnectionStatus{Address: addr, Outbound: true, State: "failed", Info: t.lastError.Error() + ", retry: " + until})
				}
			case targetAttempting:
				if t.lastError == nil {
					out.conns = append(out.conns, LocalConnectionStatus{Address: addr, Outbound: true, State: "connecting"})
				} else {
					out.conns = append(out.conns, LocalConnectionStatus{Address: addr, Outbound: true, State: "retrying", Info: t.lastError.Error()})
				}
			}
		}
		out.n = cm.terminated
		for p := range cm.direct {
			out.targets = append(out.targets, p)
		}
		res <- out
		return false
	}) {
		return nil, 0, nil
	}
	r := <-res
	return r.conns, r.n, r.targets
}
