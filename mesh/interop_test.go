package mesh

import (
	"testing"

	ref "github.com/weaveworks/mesh"
)

func TestInteropPair(t *testing.T) {
	for _, tc := range []struct {
		name     string
		password []byte
		weDial   bool
		v1       bool
	}{
		{"v1-plain", nil, true, true},
		{"v1-password", []byte("s3cret"), false, true},
		{"plain-we-dial", nil, true, false},
		{"plain-ref-dials", nil, false, false},
		{"password-we-dial", []byte("s3cret"), true, false},
		{"password-ref-dials", []byte("s3cret"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const on, rn = PeerName(0x0a0000000001), PeerName(0x0b0000000001)
			rf := startRef(t, rn, tc.password)
			o := startOursCfg(t, on, Config{Password: tc.password, ConnLimit: 64, PeerDiscovery: true}, func(r *Router) {
				if tc.v1 {
					r.maxVersion = 1
				}
			})
			if tc.weDial {
				if errs := o.r.ConnectionMaker.InitiateConnections([]string{rf.addr}, false); len(errs) > 0 {
					t.Fatal(errs)
				}
			} else {
				rf.r.ConnectionMaker.InitiateConnections([]string{o.addr}, false)
			}
			eventually(t, "both see each other", func() bool { return o.sees(rn) && rf.sees(on) })
			if p := o.r.Peers.Fetch(rn); p == nil || p.NickName != "ref-"+rn.String() {
				t.Fatalf("ours knows the reference peer as %v", p)
			}

			if err := o.g.GossipUnicast(rn, []byte("u1")); err != nil {
				t.Fatal(err)
			}
			if err := rf.g.GossipUnicast(ref.PeerName(on), []byte("u2")); err != nil {
				t.Fatal(err)
			}
			eventually(t, "unicasts", func() bool {
				return rf.rx.hasUnicast(on.String()+":u1") && o.rx.hasUnicast(rn.String()+":u2")
			})

			o.g.GossipBroadcast(setData{"b-ours"})
			rf.g.GossipBroadcast(refData{"b-ref"})
			eventually(t, "broadcasts", func() bool { return rf.rx.has("b-ours") && o.rx.has("b-ref") })

			o.g.GossipNeighbourSubset(setData{"g-ours"})
			rf.g.GossipNeighbourSubset(refData{"g-ref"})
			eventually(t, "gossip", func() bool { return rf.rx.has("g-ours") && o.rx.has("g-ref") })

			if c := o.r.Ourself.connectionTo(rn); c == nil || tc.v1 != (c.version == 1) {
				t.Fatalf("connection %+v: want version 1: %v", c, tc.v1)
			}
			st := NewStatus(o.r)
			if len(st.Connections) != 1 || st.Connections[0].State != "established" {
				t.Fatalf("status connections: %+v", st.Connections)
			}
			o.r.Close()
			checkNoLeaks(t)
		})
	}
}
