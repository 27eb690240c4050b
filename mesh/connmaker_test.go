package mesh

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// A refused target shows in Status as failed and is reported once per
// attempt through OnConnectionError.
func TestConnectionMakerFailedTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	var mu sync.Mutex
	var reported []string
	p := startOursCfg(t, 0x201, Config{OnConnectionError: func(addr string, outbound bool, err error) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, addr)
	}})
	if errs := p.r.ConnectionMaker.InitiateConnections([]string{dead, "bad:port:x"}, false); len(errs) != 1 {
		t.Fatalf("errors %v", errs)
	}
	eventually(t, "a failed target", func() bool {
		for _, c := range NewStatus(p.r).Connections {
			if c.Address == dead && c.State == "failed" && strings.Contains(c.Info, "refused") {
				return true
			}
		}
		return false
	})
	mu.Lock()
	if len(reported) == 0 || reported[0] != dead {
		t.Errorf("reported %v", reported)
	}
	mu.Unlock()
	if ts := p.r.ConnectionMaker.Targets(false); len(ts) != 1 || ts[0] != dead {
		t.Errorf("targets %v", ts)
	}
	p.r.ConnectionMaker.ForgetConnections([]string{dead})
	eventually(t, "forgotten", func() bool { return len(p.r.ConnectionMaker.Targets(false)) == 0 })
	p.r.Close()
	checkNoLeaks(t)
}

// Two peers dialling each other at once keep one connection.
func TestSimultaneousConnect(t *testing.T) {
	a := startOursCfg(t, 0x301, Config{})
	b := startOursCfg(t, 0x302, Config{})
	a.connect(b.addr)
	b.connect(a.addr)
	eventually(t, "one established connection each", func() bool {
		sa, sb := NewStatus(a.r), NewStatus(b.r)
		est := func(st *Status) int {
			n := 0
			for _, c := range st.Connections {
				if c.State == "established" {
					n++
				}
			}
			return n
		}
		return est(sa) == 1 && est(sb) == 1 && a.sees(0x302) && b.sees(0x301)
	})
	a.r.Close()
	b.r.Close()
	checkNoLeaks(t)
}

// A peer that restarts (same name, new UID) is taken back, and a peer
// with our name is refused.
func TestRestartAndCollision(t *testing.T) {
	a := startOursCfg(t, 0x401, Config{})
	b := startOursCfg(t, 0x402, Config{})
	b.connect(a.addr)
	eventually(t, "connected", func() bool { return a.sees(0x402) && b.sees(0x401) })
	uid := b.r.Ourself.UID
	b.r.Close()
	eventually(t, "b gone", func() bool { return !a.sees(0x402) })
	b2 := startOursCfg(t, 0x402, Config{})
	b2.connect(a.addr)
	eventually(t, "b back", func() bool {
		p := a.r.Peers.Fetch(0x402)
		return a.sees(0x402) && p != nil && p.UID != uid && p.UID == b2.r.Ourself.UID
	})
	twin := startOursCfg(t, 0x401, Config{})
	twin.connect(a.addr)
	eventually(t, "the twin refused", func() bool { return a.r.HandshakeStats().Refused > 0 })
	for _, p := range []*ourPeer{a, b2, twin} {
		p.r.Close()
	}
	checkNoLeaks(t)
}

// establishedLink is p's established connection to to, as p's status
// shows it, or nil.
func establishedLink(p *ourPeer, to PeerName) *ConnectionStatus {
	for _, peer := range NewStatus(p.r).Peers {
		if peer.Name != p.r.Ourself.Name.String() {
			continue
		}
		for _, c := range peer.Connections {
			if c.Name == to.String() && c.Established {
				return &c
			}
		}
	}
	return nil
}

// Two peers that discover each other through a third at the same moment
// make one connection, not two: the lower name dials, the higher one
// waits (tieYield) and sees the connection arrive.
func TestDiscoveredPeersDialOnce(t *testing.T) {
	hub := startOursCfg(t, 0x601, Config{PeerDiscovery: true})
	lo := startOursCfg(t, 0x602, Config{PeerDiscovery: true})
	hi := startOursCfg(t, 0x603, Config{PeerDiscovery: true})
	hub.connect(lo.addr)
	hub.connect(hi.addr)
	link := establishedLink
	eventually(t, "lo and hi connected", func() bool { return link(lo, 0x603) != nil && link(hi, 0x602) != nil })
	if c := link(lo, 0x603); !c.Outbound {
		t.Errorf("the lower name did not dial: %+v", c)
	}
	if c := link(hi, 0x602); c.Outbound {
		t.Errorf("the higher name dialled: %+v", c)
	}
	for _, p := range []*ourPeer{lo, hi} {
		if n := NewStatus(p.r).TerminationCount; n != 0 {
			t.Errorf("%v: %d connections terminated, want 0 (a duplicate was made)", p.r.Ourself.Name, n)
		}
	}
	for _, p := range []*ourPeer{hub, lo, hi} {
		p.r.Close()
	}
	checkNoLeaks(t)
}

// A peer joining a formed mesh dials the peers it hears of at once,
// whatever their names: it is clearly the less connected, and the others,
// which hear of it later, wait for it rather than dial a second
// connection. The newcomer has the highest name, so by name alone the
// others would dial it, and it would wait tieYield first.
func TestNewcomerDials(t *testing.T) {
	names := []PeerName{0x701, 0x702, 0x703, 0x704, 0x705}
	var old []*ourPeer
	for _, n := range names {
		old = append(old, startOursCfg(t, n, Config{PeerDiscovery: true}))
	}
	for _, p := range old[1:] {
		old[0].connect(p.addr)
	}
	// The newcomer learns from old[0]: wait until old[0] knows each peer
	// has all its connections.
	degree := func(in *ourPeer, of PeerName) int {
		for _, peer := range NewStatus(in.r).Peers {
			if peer.Name == of.String() {
				k := 0
				for _, c := range peer.Connections {
					if c.Established {
						k++
					}
				}
				return k
			}
		}
		return 0
	}
	eventually(t, "a full mesh of five", func() bool {
		for _, n := range names {
			if degree(old[0], n) != len(names)-1 {
				return false
			}
		}
		return true
	})
	t0 := time.Now()
	nc := startOursCfg(t, 0x7ff, Config{PeerDiscovery: true})
	nc.connect(old[0].addr)
	eventually(t, "the newcomer connected to all five", func() bool {
		for _, n := range names {
			if establishedLink(nc, n) == nil {
				return false
			}
		}
		return true
	})
	if d := time.Since(t0); d >= tieYield {
		t.Errorf("the newcomer took %v to connect, at least tieYield", d)
	}
	for _, n := range names[1:] {
		if c := establishedLink(nc, n); !c.Outbound {
			t.Errorf("the newcomer did not dial %v: %+v", n, c)
		}
	}
	if n := NewStatus(nc.r).TerminationCount; n != 0 {
		t.Errorf("%d connections terminated, want 0 (a duplicate was made)", n)
	}
	for _, p := range append(old, nc) {
		p.r.Close()
	}
	checkNoLeaks(t)
}
