package mesh

import "testing"

// A channel the middle peer has no gossiper for still carries broadcasts,
// gossip and unicasts across it (a surrogate relays them).
func TestSurrogateRelays(t *testing.T) {
	cfg := Config{ConnLimit: 8}
	a := startOursCfg(t, 0x101, cfg)
	b := startOursCfg(t, 0x102, cfg)
	c := startOursCfg(t, 0x103, cfg)
	extra := func(p *ourPeer) (Gossip, *received) {
		rx := newReceived()
		g, err := p.r.NewGossip("extra", ourGossiper{rx})
		if err != nil {
			t.Fatal(err)
		}
		return g, rx
	}
	ga, rxa := extra(a)
	_, rxc := extra(c)
	a.connect(b.addr)
	c.connect(b.addr)
	eventually(t, "a line", func() bool { return a.sees(0x103) && c.sees(0x101) })
	ga.GossipBroadcast(setData{"x-bcast"})
	ga.GossipNeighbourSubset(setData{"x-gossip"})
	if err := ga.GossipUnicast(0x103, []byte("x-uni")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "relayed by the surrogate", func() bool {
		return rxc.has("x-bcast") && rxc.has("x-gossip") && rxc.hasUnicast(PeerName(0x101).String()+":x-uni")
	})
	if len(rxa.all()) != 0 {
		t.Errorf("a heard its own messages back: %v", rxa.all())
	}
	// The real gossiper replaces the surrogate when it registers late.
	if _, err := b.r.NewGossip("extra", ourGossiper{newReceived()}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.r.NewGossip("extra", ourGossiper{newReceived()}); err == nil {
		t.Fatal("a channel was registered twice")
	}
	for _, p := range []*ourPeer{a, b, c} {
		p.r.Close()
	}
	checkNoLeaks(t)
}
