package mesh

import (
	"sync"
	"sync/atomic"
	"testing"
)

// Readers of every kind run while peers connect, gossip and leave: the race
// detector checks that snapshots (Status, Peer values, routes) share
// nothing with the writers.
func TestChurnWithReaders(t *testing.T) {
	hub := startOursCfg(t, 0x601, Config{PeerDiscovery: true})
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			st := NewStatus(hub.r)
			for _, p := range st.Peers {
				_ = p.Name
			}
			for _, d := range hub.r.Peers.Descriptions() {
				if p := hub.r.Peers.Fetch(d.Name); p != nil {
					_ = p.String()
				}
				hub.r.Routes.Unicast(d.Name)
				hub.r.Routes.Broadcast(d.Name)
			}
			_ = hub.r.HandshakeStats()
		}
	}()
	var gone []*ourPeer
	for round := range 3 {
		var ps []*ourPeer
		for i := range 3 {
			p := startOursCfg(t, PeerName(0x610+round*16+i), Config{PeerDiscovery: true})
			p.connect(hub.addr)
			ps = append(ps, p)
		}
		for _, p := range ps {
			eventually(t, "joined", func() bool { return hub.sees(p.peerName()) })
			p.g.GossipBroadcast(setData{p.peerName().String()})
		}
		for _, p := range ps {
			p.r.Close()
			gone = append(gone, p)
		}
	}
	for _, p := range gone {
		eventually(t, "forgotten", func() bool { return hub.r.Peers.Fetch(p.peerName()) == nil })
	}
	stop.Store(true)
	wg.Wait()
	hub.r.Close()
	checkNoLeaks(t)
}
