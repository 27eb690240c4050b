package mesh

import (
	"fmt"
	"testing"
	"time"

	ref "github.com/weaveworks/mesh"
)

// node is one peer of a test mesh, ours or the reference.
type node interface {
	peerName() PeerName
	address() string
	connect(addr string)
	broadcast(s string)
	unicast(to PeerName, s string) error
	gossip(s string)
	inbox() *received
	sees(PeerName) bool
	broadcastHops(src PeerName) int
}

func (p *ourPeer) peerName() PeerName { return p.r.Ourself.Name }
func (p *ourPeer) address() string    { return p.addr }
func (p *ourPeer) connect(addr string) {
	p.r.ConnectionMaker.InitiateConnections([]string{addr}, false)
}
func (p *ourPeer) broadcast(s string) { p.g.GossipBroadcast(setData{s}) }
func (p *ourPeer) gossip(s string)    { p.g.GossipNeighbourSubset(setData{s}) }
func (p *ourPeer) unicast(to PeerName, s string) error {
	return p.g.GossipUnicast(to, []byte(s))
}
func (p *ourPeer) inbox() *received { return p.rx }

func (p *refPeer) peerName() PeerName { return PeerName(p.r.Ourself.Name) }
func (p *refPeer) address() string    { return p.addr }
func (p *refPeer) connect(addr string) {
	p.r.ConnectionMaker.InitiateConnections([]string{addr}, false)
}
func (p *refPeer) broadcast(s string) { p.g.GossipBroadcast(refData{s}) }
func (p *refPeer) gossip(s string)    { p.g.GossipNeighbourSubset(refData{s}) }
func (p *refPeer) unicast(to PeerName, s string) error {
	return p.g.GossipUnicast(ref.PeerName(to), []byte(s))
}
func (p *refPeer) inbox() *received { return p.rx }

// TestLine: three peers in a line, a-b-c, without discovery (so a and c
// stay unconnected). A broadcast from either end reaches every other peer
// exactly once, and a unicast crosses the middle.
func TestLine(t *testing.T) {
	for _, kinds := range []string{"ooo", "ror", "oro", "roo"} {
		t.Run(kinds, func(t *testing.T) {
			var ns []node
			for i, k := range kinds {
				name := PeerName(0x0c0000000000 + uint64(i+1))
				if k == 'o' {
					ns = append(ns, startOursCfg(t, name, Config{ConnLimit: 64}))
				} else {
					ns = append(ns, startRefNode(t, name, nil, false))
				}
			}
			a, b, c := ns[0], ns[1], ns[2]
			a.connect(b.address())
			c.connect(b.address())
			eventually(t, "a line", func() bool {
				for _, x := range ns {
					for _, y := range ns {
						if !x.sees(y.peerName()) {
							return false
						}
					}
				}
				return true
			})
			for i, src := range []node{a, c} {
				msg := fmt.Sprintf("bcast-%d", i)
				src.broadcast(msg)
				eventually(t, msg+" everywhere", func() bool {
					for _, x := range ns {
						if x != src && !x.inbox().has(msg) {
							return false
						}
					}
					return true
				})
			}
			if err := a.unicast(c.peerName(), "across"); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the unicast", func() bool { return c.inbox().hasUnicast(a.peerName().String() + ":across") })
			// Let anything duplicated arrive before counting.
			a.broadcast("flush-a")
			c.broadcast("flush-c")
			eventually(t, "the flush", func() bool {
				return b.inbox().has("flush-a") && c.inbox().has("flush-a") && a.inbox().has("flush-c") && b.inbox().has("flush-c")
			})
			for i := range 2 {
				msg := fmt.Sprintf("bcast-%d", i)
				for j, x := range ns {
					if n := x.inbox().count(msg); n > 1 {
						t.Errorf("%s reached peer %d %d times", msg, j, n)
					}
				}
			}
			for _, x := range ns {
				if o, ok := x.(*ourPeer); ok {
					o.r.Close()
				}
			}
			checkNoLeaks(t)
		})
	}
}

// TestReferenceKeepsPeersBehindUs: reference peers that join through ours
// are never dropped as gone by a reference peer on our other side. The
// reference collects unreachable peers a second after the first topology
// update of a batch; our record, whose link makes a joining peer
// reachable, goes out at most every topologySpacing, and the joining
// peer's record is relayed at once. Unless ours travels with it, a
// collection between the two drops the peer, and Weave Net's DNS then
// refuses the names it broadcasts (TestInteropDNSLine lost one so). The
// peers join at staggered moments so that some land in such a window.
// And each joining peer's records reach the first: it has no other way
// to hear them, and random relays missed it until the next gossip round.
func TestReferenceKeepsPeersBehindUs(t *testing.T) {
	a := startRefNode(t, 0x0e0000000001, nil, false)
	b := startOursCfg(t, 0x0e0000000002, Config{ConnLimit: 64})
	a.connect(b.address())
	eventually(t, "a-b", func() bool { return a.sees(b.peerName()) && b.sees(a.peerName()) })
	var cs []node
	for i := range 10 {
		time.Sleep(110 * time.Millisecond)
		c := startRefNode(t, PeerName(0x0e0000000010+uint64(i)), nil, false)
		c.connect(b.address())
		cs = append(cs, c)
	}
	eventually(t, "every peer seeing every other", func() bool {
		for _, c := range cs {
			if !b.sees(c.peerName()) || !a.sees(c.peerName()) {
				return false
			}
		}
		return true
	})
	time.Sleep(1200 * time.Millisecond) // one more collection at a
	if gone := a.inbox().goneList(); len(gone) > 0 {
		t.Errorf("the reference peer dropped live peers behind ours as gone: %v", gone)
	}
	b.r.Close()
	checkNoLeaks(t)
}

func (p *ourPeer) broadcastHops(src PeerName) int { return len(p.r.Routes.BroadcastAll(src)) }
func (p *refPeer) broadcastHops(src PeerName) int {
	return len(p.r.Routes.BroadcastAll(ref.PeerName(src)))
}

// TestFullMeshBroadcastOnce: four peers, ours and the reference
// alternating, find each other by discovery; once their broadcast trees
// agree (each source's tree has n-1 edges), a broadcast from each peer
// reaches every other exactly once.
func TestFullMeshBroadcastOnce(t *testing.T) {
	for _, kinds := range []string{"oooo", "oror"} {
		t.Run(kinds, func(t *testing.T) {
			var ns []node
			for i, k := range kinds {
				name := PeerName(0x0f1000000000 + uint64(i+1))
				if k == 'o' {
					ns = append(ns, startOursCfg(t, name, Config{ConnLimit: 64, PeerDiscovery: true}))
				} else {
					ns = append(ns, startRefNode(t, name, nil, true))
				}
			}
			for _, x := range ns[1:] {
				x.connect(ns[0].address())
			}
			eventually(t, "agreed spanning trees", func() bool {
				for _, src := range ns {
					edges := 0
					for _, x := range ns {
						if !x.sees(src.peerName()) {
							return false
						}
						edges += x.broadcastHops(src.peerName())
					}
					if edges != len(ns)-1 {
						return false
					}
				}
				return true
			})
			for i, src := range ns {
				src.broadcast(fmt.Sprintf("from-%d", i))
			}
			eventually(t, "all broadcasts", func() bool {
				for i := range ns {
					for j, x := range ns {
						if i != j && !x.inbox().has(fmt.Sprintf("from-%d", i)) {
							return false
						}
					}
				}
				return true
			})
			for i := range ns {
				for j, x := range ns {
					if n := x.inbox().count(fmt.Sprintf("from-%d", i)); i != j && n != 1 {
						t.Errorf("the broadcast from %d reached %d %d times", i, j, n)
					}
				}
			}
			for _, x := range ns {
				if o, ok := x.(*ourPeer); ok {
					o.r.Close()
				}
			}
			checkNoLeaks(t)
		})
	}
}
