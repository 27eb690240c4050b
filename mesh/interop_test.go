package mesh

import (
	"testing"
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
			rf := startRefNode(t, rn, tc.password, true)
			o := startOursCfg(t, on, Config{Password: tc.password, ConnLimit: 64, PeerDiscovery: true}, func(r *Router) {
				if tc.v1 {
					r.maxVersion = 1
				}
			})
			if tc.weDial {
				o.connect(rf.address())
			} else {
				rf.connect(o.addr)
			}
			eventually(t, "both see each other", func() bool { return o.sees(rn) && rf.sees(on) })
			if p := o.r.Peers.Fetch(rn); p == nil || p.NickName != "ref-"+rn.String() {
				t.Fatalf("ours knows the reference peer as %v", p)
			}

			if err := o.g.GossipUnicast(rn, []byte("u1")); err != nil {
				t.Fatal(err)
			}
			if err := rf.unicast(on, "u2"); err != nil {
				t.Fatal(err)
			}
			eventually(t, "unicasts", func() bool {
				return rf.inbox().hasUnicast(on.String()+":u1") && o.rx.hasUnicast(rn.String()+":u2")
			})

			o.g.GossipBroadcast(setData{"b-ours"})
			rf.broadcast("b-ref")
			eventually(t, "broadcasts", func() bool { return rf.inbox().has("b-ours") && o.rx.has("b-ref") })

			o.g.GossipNeighbourSubset(setData{"g-ours"})
			rf.gossip("g-ref")
			eventually(t, "gossip", func() bool { return rf.inbox().has("g-ours") && o.rx.has("g-ref") })

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
