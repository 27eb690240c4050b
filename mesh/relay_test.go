package mesh

import (
	"testing"
	"time"
)

// linksTo makes a peer's links to the named peers, all established.
func linksTo(names ...PeerName) map[PeerName]link {
	m := map[PeerName]link{}
	for _, n := range names {
		m[n] = link{established: true}
	}
	return m
}

// relayPlan sends a record of a neighbour that tells its own neighbours
// only to those of ours its record shows no connection to, with our own
// record beside it; a record of a neighbour that does not tell them goes
// to random neighbours, as mesh gossip always did.
func TestRelayPlan(t *testing.T) {
	const us, p, q, n, w = 1, 2, 3, 4, 5
	r, err := NewRouter(Config{}, us, "us", nil, quietLog{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ps := r.Peers
	conns := map[PeerName]*LocalConnection{}
	ps.mu.Lock()
	for name, tells := range map[PeerName]bool{p: true, q: true, n: true, w: false} {
		c := &LocalConnection{remote: &Peer{Name: name}, tellsNeighbours: tells}
		ps.conns[name], conns[name] = c, c
	}
	ps.byName[us].links = linksTo(p, q, n, w)
	ps.byName[p] = &peerState{p: &Peer{Name: p, Version: 1}, links: linksTo(us, q)}
	ps.byName[q] = &peerState{p: &Peer{Name: q, Version: 1}, links: linksTo(us, p, n)}
	ps.byName[n] = &peerState{p: &Peer{Name: n, Version: 1}, links: linksTo(us, q)}
	ps.byName[w] = &peerState{p: &Peer{Name: w, Version: 1}, links: linksTo(us)}
	ps.gen++
	ps.mu.Unlock()
	tg := r.topology.gossiper.(*topologyGossiper)

	// p's record, relayed to us by q: p told q and us itself; n and w
	// are not p's neighbours, and we are among the first relayCopies of
	// the peers connected to both (for w, the only one).
	plan := tg.relayPlan(q, &topologyData{peers: ps, names: map[PeerName]struct{}{p: {}}})
	want := map[PeerName]bool{n: true, w: true}
	if len(plan) != len(want) {
		t.Errorf("p's record goes to %d neighbours, want n and w", len(plan))
	}
	for c, d := range plan {
		names := d.(*topologyData).names
		_, hasP := names[p]
		_, hasUs := names[us]
		if !want[c.remote.Name] || !hasP || !hasUs || len(names) != 2 {
			t.Errorf("p's record: %v gets %v, want n and w to get p's and ours", c.remote.Name, names)
		}
	}

	// w does not tell its neighbours: its record goes to random ones,
	// with ours, whose link to w makes w reachable there.
	plan = tg.relayPlan(p, &topologyData{peers: ps, names: map[PeerName]struct{}{w: {}}})
	if len(plan) == 0 {
		t.Error("w's record goes nowhere")
	}
	for c, d := range plan {
		names := d.(*topologyData).names
		_, hasW := names[w]
		_, hasUs := names[us]
		if !hasW || !hasUs || c.remote.Name == p {
			t.Errorf("w's record from p: %v gets %v, want w's and ours", c.remote.Name, names)
		}
	}

	// s is no neighbour of ours: its record goes to strangerFanout
	// random neighbours at most.
	const s = 6
	ps.mu.Lock()
	ps.byName[s] = &peerState{p: &Peer{Name: s, Version: 1}, links: linksTo(q)}
	ps.byName[q].links = linksTo(us, p, n, s)
	ps.gen++
	ps.mu.Unlock()
	plan = tg.relayPlan(q, &topologyData{peers: ps, names: map[PeerName]struct{}{s: {}}})
	if len(plan) == 0 || len(plan) > strangerFanout {
		t.Errorf("s's record goes to %d neighbours, want 1 to %d", len(plan), strangerFanout)
	}
	for c, d := range plan {
		if _, ok := d.(*topologyData).names[s]; !ok || c.remote.Name == q {
			t.Errorf("s's record from q: %v gets %v", c.remote.Name, d.(*topologyData).names)
		}
	}
}

// Of the peers connected to both a record's subject and a peer it has no
// connection to, exactly relayCopies relay the record there, when they see
// the same topology.
func TestRelaysExactlyCopies(t *testing.T) {
	const subject, far = 100, 200
	g := graph{subject: linksTo(), far: linksTo()}
	for x := PeerName(1); x <= 12; x++ {
		g[subject][x] = link{established: true}
		if x%3 != 0 { // some are not connected to far
			g[x] = linksTo(subject, far)
		} else {
			g[x] = linksTo(subject)
		}
	}
	// Subjects of other names, with the same links: other rankings.
	for sub := PeerName(100); sub < 110; sub++ {
		g[sub] = g[subject]
		relaying := 0
		for x := PeerName(1); x <= 12; x++ {
			if _, both := g[x][far]; both && g.relays(sub, far, x) {
				relaying++
			}
		}
		if relaying != relayCopies {
			t.Errorf("subject %v: %d peers relay its record to %v, want %d", sub, relaying, PeerName(far), relayCopies)
		}
	}
}

// A peer's record reaches a peer it has no connection to, through a
// neighbour, as soon as it changes: at C, the far end of the line A-B-C,
// A's new connection to D, and D itself, show up well within the periodic
// gossip interval.
func TestRecordReachesNonNeighbour(t *testing.T) {
	cfg := Config{ConnLimit: 64, AdvertiseWeavenet: true}
	a := startOursCfg(t, 0x0d0000000001, cfg)
	b := startOursCfg(t, 0x0d0000000002, cfg)
	c := startOursCfg(t, 0x0d0000000003, cfg)
	a.connect(b.addr)
	c.connect(b.addr)
	eventually(t, "a line", func() bool { return a.sees(c.peerName()) && c.sees(a.peerName()) })
	d := startOursCfg(t, 0x0d0000000004, cfg)
	d.connect(a.addr)
	eventually(t, "A's link to D at C", func() bool {
		c.r.Peers.mu.RLock()
		defer c.r.Peers.mu.RUnlock()
		s := c.r.Peers.byName[a.peerName()]
		_, linked := s.links[d.peerName()]
		return linked && c.r.Peers.byName[d.peerName()] != nil && c.r.Peers.byName[d.peerName()].p.UID != 0
	})
	for _, x := range []*ourPeer{a, b, c, d} {
		x.r.Close()
	}
	checkNoLeaks(t)
}

// A broadcast that comes from a peer we relay the source's broadcasts to
// has come round a loop: it is dropped and counted, not delivered. From a
// peer before us in the source's tree it is delivered.
func TestBroadcastLoopDropped(t *testing.T) {
	const us, before, after, src = 1, 2, 3, 5
	r, err := NewRouter(Config{}, us, "us", nil, quietLog{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rx := newReceived()
	if _, err := r.NewGossip("test", ourGossiper{rx}); err != nil {
		t.Fatal(err)
	}
	// The line src - before - us - after.
	ps := r.Peers
	ps.mu.Lock()
	ps.byName[us].links = linksTo(before, after)
	ps.byName[before] = &peerState{p: &Peer{Name: before}, links: linksTo(src, us)}
	ps.byName[after] = &peerState{p: &Peer{Name: after}, links: linksTo(us)}
	ps.byName[src] = &peerState{p: &Peer{Name: src}, links: linksTo(before)}
	ps.gen++
	ps.mu.Unlock()

	from := func(n PeerName) *LocalConnection {
		return &LocalConnection{remote: &Peer{Name: n}, stop: make(chan struct{})}
	}
	if err := r.handleGossip(from(after), ProtocolGossipBroadcast, gossipBody("test", []byte("looped"), src)); err != nil {
		t.Fatal(err)
	}
	if err := r.handleGossip(from(before), ProtocolGossipBroadcast, gossipBody("test", []byte("down the tree"), src)); err != nil {
		t.Fatal(err)
	}
	// The channel's goroutine delivers in order.
	eventually(t, "the broadcast down the tree delivered", func() bool { return rx.has("down the tree") })
	if rx.has("looped") {
		t.Errorf("delivered: looped %v, down the tree %v; want only the second", rx.has("looped"), rx.has("down the tree"))
	}
	if n := r.HandshakeStats().LoopedBroadcasts; n != 1 {
		t.Errorf("looped broadcasts counted: %d, want 1", n)
	}
}

// A peer joining a mesh is sent the whole topology by every peer it
// connects to. Records no newer than ours are stepped over without decoding
// their connections: applying a 50-peer topology we already hold allocates
// a few objects per peer, not one per connection.
func TestKnownTopologyNotDecoded(t *testing.T) {
	const n = 50
	src := newPeers(&Peer{Name: 1, UID: 1, Version: 1})
	src.mu.Lock()
	for i := PeerName(1); i <= n; i++ {
		links := map[PeerName]link{}
		for j := PeerName(1); j <= n; j++ {
			if j != i {
				links[j] = link{addr: "192.168.200.1:6783", established: true}
			}
		}
		if i == 1 {
			src.byName[1].links = links
			continue
		}
		src.byName[i] = &peerState{p: &Peer{Name: i, UID: PeerUID(i), Version: 3, HasShortID: true, ShortID: PeerShortID(i)}, links: links}
	}
	src.mu.Unlock()
	payload := src.encode(src.names())

	dst := newPeers(&Peer{Name: 99, UID: 99})
	_, learnt, _, err := dst.applyUpdate(payload)
	if err != nil || len(learnt) != n {
		t.Fatalf("first apply: learnt %d peers, err %v", len(learnt), err)
	}
	allocs := testing.AllocsPerRun(5, func() {
		if _, learnt, _, err := dst.applyUpdate(payload); err != nil || len(learnt) != 0 {
			t.Fatalf("second apply: learnt %d, err %v", len(learnt), err)
		}
	})
	if allocs > 5*n {
		t.Errorf("applying a known topology: %.0f allocations, want at most %d", allocs, 5*n)
	}
}

// A peer nothing reaches is collected, unless its record came within
// collectGrace and links to a peer we reach: a joining peer's record can
// arrive before any record of a link to it. A link to us does not count:
// our own links say whether it is there.
func TestCollectSparesNewcomer(t *testing.T) {
	const us, nb, newcomer, gone, left = 1, 2, 3, 4, 5
	ps := newPeers(&Peer{Name: us})
	ps.mu.Lock()
	ps.byName[us].links = linksTo(nb)
	ps.byName[nb] = &peerState{p: &Peer{Name: nb, Version: 1}, links: linksTo(us)}
	ps.byName[newcomer] = &peerState{p: &Peer{Name: newcomer, Version: 1}, links: linksTo(nb), learnt: time.Now()}
	ps.byName[gone] = &peerState{p: &Peer{Name: gone, Version: 1}, links: linksTo(nb), learnt: time.Now().Add(-collectGrace)}
	ps.byName[left] = &peerState{p: &Peer{Name: left, Version: 1}, links: linksTo(us), learnt: time.Now()}
	ps.mu.Unlock()
	collected, again := ps.collect()
	if len(collected) != 2 || collected[0].Name != gone || collected[1].Name != left || !again {
		t.Fatalf("collected %v (again %v), want the old record and the one linked to us only, and to look again", collected, again)
	}
	ps.mu.Lock()
	ps.byName[newcomer].learnt = time.Now().Add(-collectGrace)
	ps.mu.Unlock()
	if collected, again := ps.collect(); len(collected) != 1 || collected[0].Name != newcomer || again {
		t.Fatalf("after the grace: collected %v (again %v), want the newcomer", collected, again)
	}
}
