package integration

import (
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// h2 and h3 name only h1; discovery completes the mesh.
func TestDiscoveryCompletesMesh(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.FullMesh})
	h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
	launch(t, h1)
	launch(t, h2, peerArg(t, h2, h1)...)
	launch(t, h3, peerArg(t, h3, h1)...)
	for _, h := range b.Hosts {
		waitMesh(t, h, 2, 3)
	}
	for _, h := range b.Hosts {
		r := h.Report(t)
		if !r.Router.PeerDiscovery {
			t.Errorf("%s: PeerDiscovery = false by default", h.Name)
		}
		for _, o := range b.Hosts {
			if o != h && !r.Router.EstablishedTo(o.Addr.String()) {
				t.Errorf("%s: no established connection to %s: %s", h.Name, o.Name, describe(&r.Router))
			}
			if o != h && r.Router.Peer(o.Name) == nil {
				t.Errorf("%s: peer %s unknown: %s", h.Name, o.Name, describe(&r.Router))
			}
		}
	}
}

// With --no-discovery only the named connections exist: h2 and h3 know of
// each other through h1 but never connect.
func TestNoDiscoveryKeepsNamedConnections(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.FullMesh})
	h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
	launch(t, h1, "--no-discovery")
	launch(t, h2, append([]string{"--no-discovery"}, peerArg(t, h2, h1)...)...)
	launch(t, h3, append([]string{"--no-discovery"}, peerArg(t, h3, h1)...)...)
	waitMesh(t, h1, 2, 3)
	waitMesh(t, h2, 1, 3)
	waitMesh(t, h3, 1, 3)

	testbed.Consistently(t, 5*time.Second, func() bool {
		r2, err2 := h2.TryReport(t)
		r3, err3 := h3.TryReport(t)
		if err2 != nil || err3 != nil {
			t.Logf("report: %v %v", err2, err3)
			return false
		}
		if r2.Router.PeerDiscovery || r3.Router.PeerDiscovery {
			t.Log("PeerDiscovery reported true despite --no-discovery")
			return false
		}
		for _, c := range append(r2.Router.Connections, r3.Router.Connections...) {
			if host := hostOf(c.Address); host == h2.Addr.String() || host == h3.Addr.String() {
				t.Logf("h2/h3 connection: %+v", c)
				return false
			}
		}
		return r2.Router.Established() == 1 && r3.Router.Established() == 1
	}, "h2 and h3 each keep only their connection to h1")
}

func hostOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i]
		}
	}
	return addr
}
