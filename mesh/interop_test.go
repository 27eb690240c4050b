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
	}{
		{"plain-we-dial", nil, true},
		{"plain-ref-dials", nil, false},
		{"password-we-dial", []byte("s3cret"), true},
		{"password-ref-dials", []byte("s3cret"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const on, rn = PeerName(0x0a0000000001), PeerName(0x0b0000000001)
			o := startOurs(t, on, tc.password)
			rf := startRef(t, rn, tc.password)
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

			st := NewStatus(o.r)
			if len(st.Connections) != 1 || st.Connections[0].State != "established" {
				t.Fatalf("status connections: %+v", st.Connections)
			}
			o.r.Close()
			checkNoLeaks(t)
		})
	}
}
