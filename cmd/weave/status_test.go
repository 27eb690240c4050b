package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"weavenet/api"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// threeHosts is a known state: h2's view of a three-host network with one
// failed target, IPAM shared three ways and two names.
func threeHosts() *api.Report {
	return &api.Report{
		Version: "0.1.0",
		Router: api.Router{
			Name: "9a:d4:60:be:bb:f4", NickName: "h2", Port: 6783, Protocol: "weave",
			ProtocolMinVersion: 1, ProtocolMaxVersion: 2, Encryption: true, PeerDiscovery: true,
			TrustedSubnets: []string{}, Targets: []string{"192.168.200.1", "192.168.200.9"},
			Connections: []api.Connection{
				{Address: "192.168.200.1:6783", Outbound: true, State: "established", Info: "sleeve 2e:11:3c:00:00:01(h1)", Transport: "sleeve", MTU: 1376, Encrypted: true, Cipher: "aes-256-gcm",
					Format: "fast", PeerName: "2e:11:3c:00:00:01", PeerKind: "weavenet", PeerVersion: "0.1.0", Heartbeat: "1s", HeartbeatTimeout: "5s"},
				{Address: "192.168.200.3:44120", Outbound: false, State: "established", Info: "sleeve 2e:11:3c:00:00:03(h3)", Transport: "sleeve", MTU: 1376, Encrypted: true, Cipher: "nacl",
					Format: "classic", PeerName: "2e:11:3c:00:00:03", PeerKind: "weave", Heartbeat: "10s", HeartbeatTimeout: "60s"},
				{Address: "192.168.200.9:6783", Outbound: true, State: "failed", Info: "dial tcp 192.168.200.9:6783: connect: no route to host, retry: 2026-11-26 07:40:00"},
			},
			Peers: []api.Peer{
				{Name: "2e:11:3c:00:00:01", NickName: "h1", Kind: "weavenet", Release: "0.1.0", Connections: []api.PeerConnection{
					{Name: "9a:d4:60:be:bb:f4", NickName: "h2", Address: "192.168.200.2:51000", Established: true},
					{Name: "2e:11:3c:00:00:03", NickName: "h3", Address: "192.168.200.3:6783", Outbound: true, Established: true}}},
				{Name: "2e:11:3c:00:00:03", NickName: "h3", Kind: "weave", Connections: []api.PeerConnection{
					{Name: "2e:11:3c:00:00:01", NickName: "h1", Address: "192.168.200.1:45000", Established: true},
					{Name: "9a:d4:60:be:bb:f4", NickName: "h2", Address: "192.168.200.2:6783", Outbound: true, Established: true}}},
				{Name: "9a:d4:60:be:bb:f4", NickName: "h2", Kind: "weavenet", Release: "0.1.0", Connections: []api.PeerConnection{
					{Name: "2e:11:3c:00:00:01", NickName: "h1", Address: "192.168.200.1:6783", Outbound: true, Established: true},
					{Name: "2e:11:3c:00:00:03", NickName: "h3", Address: "192.168.200.3:44120", Established: true}}},
			},
		},
		IPAM: &api.IPAM{
			Status: "ready", Range: "10.32.0.0-10.47.255.255", RangeCIDR: "10.32.0.0/12", DefaultSubnet: "10.32.0.0/12",
			Peers: []api.IPAMPeer{
				{Name: "2e:11:3c:00:00:01", NickName: "h1", Reachable: true, Ranges: []string{"10.32.0.0-10.37.85.84"}, Addresses: 349525, Share: 1.0 / 3},
				{Name: "2e:11:3c:00:00:03", NickName: "h3", Reachable: false, Ranges: []string{"10.42.170.170-10.47.255.255"}, Addresses: 349526, Share: 1.0 / 3},
				{Name: "9a:d4:60:be:bb:f4", NickName: "h2", Ourself: true, Reachable: true, Ranges: []string{"10.37.85.85-10.42.170.169"}, Addresses: 349525, Share: 1.0 / 3},
			},
		},
		DNS: &api.DNS{
			Domain: "weave.local.", Address: "169.254.53.53:53", Upstream: []string{"10.0.2.3"}, TTL: 1,
			Entries: []api.DNSEntry{
				{Hostname: "c1.weave.local.", Address: "10.32.0.1", Container: "c1", Origin: "2e:11:3c:00:00:01"},
				{Hostname: "c2.weave.local.", Address: "10.37.85.85", Container: "c2", Origin: "9a:d4:60:be:bb:f4"},
			},
		},
	}
}

func TestStatusGolden(t *testing.T) {
	for view, render := range statusViews {
		name := view
		if name == "" {
			name = "status"
		}
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			render(&b, threeHosts())
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("weave status %s:\n%s\nwant:\n%s", view, b.Bytes(), want)
			}
		})
	}
}

// justJoined is h2's report a few milliseconds after it joined h1, as the
// integration test TestStatusJustJoined sees it: both ends of the link are
// established, but h1's gossip, which mesh holds back up to a second, still
// has its end as pending.
func justJoined() *api.Report {
	return &api.Report{
		Version: "0.1.0",
		Router: api.Router{
			Name: "9a:d4:60:be:bb:f4", NickName: "h2", Port: 6783, Protocol: "weave",
			ProtocolMinVersion: 1, ProtocolMaxVersion: 2, PeerDiscovery: true,
			TrustedSubnets: []string{}, Targets: []string{"192.168.200.1"},
			Connections: []api.Connection{
				{Address: "192.168.200.1:6783", Outbound: true, State: "established", Info: "sleeve 2e:11:3c:00:00:01(h1)", Transport: "sleeve", MTU: 1376, Cipher: "none",
					Format: "fast", PeerName: "2e:11:3c:00:00:01", PeerKind: "weavenet", PeerVersion: "0.1.0", Heartbeat: "1s", HeartbeatTimeout: "5s"},
			},
			Peers: []api.Peer{
				{Name: "2e:11:3c:00:00:01", NickName: "h1", Kind: "weavenet", Release: "0.1.0", Connections: []api.PeerConnection{
					{Name: "9a:d4:60:be:bb:f4", NickName: "h2", Address: "192.168.200.2:51000", Established: false}}},
				{Name: "9a:d4:60:be:bb:f4", NickName: "h2", Kind: "weavenet", Release: "0.1.0", Connections: []api.PeerConnection{
					{Name: "2e:11:3c:00:00:01", NickName: "h1", Address: "192.168.200.1:6783", Outbound: true, Established: true}}},
			},
		},
	}
}

// TestStatusGoldenJustJoined: Weave Net says "with 2 established
// connections" for two peers once both ends are up; so must we at once,
// not a second later when the peer's gossip catches up.
func TestStatusGoldenJustJoined(t *testing.T) {
	for _, view := range []string{"", "peers"} {
		name := "joined-" + view
		if view == "" {
			name = "joined-status"
		}
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			statusViews[view](&b, justJoined())
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("weave status %s:\n%s\nwant:\n%s", view, b.Bytes(), want)
			}
		})
	}
}

func TestCountPeers(t *testing.T) {
	alone := &api.Report{Router: api.Router{Name: "9a:d4:60:be:bb:f4", Peers: []api.Peer{{Name: "9a:d4:60:be:bb:f4"}}}}
	// Our end not established yet either: both ends pending, as in Weave Net.
	early := justJoined()
	early.Router.Connections[0].State = "pending"
	early.Router.Peers[1].Connections[0].Established = false
	// A link between two other peers is taken as gossiped, even when we
	// have an established connection to one of them.
	third := threeHosts()
	third.Router.Peers[0].Connections[1].Established = false // h1 -> h3
	for _, tc := range []struct {
		name string
		rep  *api.Report
		want string
	}{
		{"alone", alone, "1"},
		{"just joined", justJoined(), "2 (with 2 established connections)"},
		{"handshake done, heartbeats not yet", early, "2 (with 2 pending connections)"},
		{"three hosts", threeHosts(), "3 (with 6 established connections)"},
		{"others' link pending", third, "3 (with 5 established, 1 pending connections)"},
	} {
		if got := countPeers(tc.rep); got != tc.want {
			t.Errorf("%s: countPeers = %q, want %q", tc.name, got, tc.want)
		}
	}
}
