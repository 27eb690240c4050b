package ipam

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weavenet/mesh"
)

// The fixtures in testdata/weavenet-2.8.1 are messages a real Weave Net
// 2.8.1 router (weaver) sent to weaved on "IPallocation", recorded once
// during the interop integration tests: consensus between h1 (weaver,
// 02:57:29:87:00:01) and h2 (weaved) over 10.32.0.0/12, and a donation
// test over 10.2.0.0/28.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "weavenet-2.8.1", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func geoOf(t testing.TB, p string) geometry {
	t.Helper()
	g, err := newGeometry(netip.MustParsePrefix(p))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestWeaveFixtures(t *testing.T) {
	weaver := mustPeer(t, "02:57:29:87:00:01")

	st, err := decodeWeaveState(fixture(t, "consensus-state.gob"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Ring != nil || len(st.Paxos) != 2 || len(st.WeavenetPeers) != 0 || st.Nicknames[weaver] != "h1" {
		t.Fatalf("consensus state: %+v", st)
	}
	uids := map[mesh.PeerName]mesh.PeerUID{}
	ps, err := paxosFromWeave(st.Paxos, uids)
	if err != nil || len(ps) != 2 {
		t.Fatalf("consensus records: %v, %v", ps, err)
	}
	// The weaver's own record is under its random UID; weaved's under
	// the stable one, which we don't record as Weave Net's.
	if _, ok := uids[weaver]; !ok || len(uids) != 1 {
		t.Fatalf("Weave Net UIDs learned: %v", uids)
	}

	st, err = decodeWeaveState(fixture(t, "ring-state.gob"))
	if err != nil {
		t.Fatal(err)
	}
	g := geoOf(t, "10.32.0.0/12")
	r, err := ringFromWeave(st.Ring, g)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Seeds) != 2 || len(r.Entries) != 2 || r.Entries[1].Token != 1<<19 || r.owner(0) != weaver {
		t.Fatalf("ring: %+v", r)
	}
	// Claiming for the same seeds gives the same pieces: one ring
	// whichever kind decided.
	mine := &ring{Range: g.prefix}
	mine.claim(r.Seeds)
	for i := range mine.Entries {
		if mine.Entries[i].Token != r.Entries[i].Token || mine.Entries[i].Peer != r.Entries[i].Peer {
			t.Fatalf("our claim %+v, Weave Net's %+v", mine.Entries, r.Entries)
		}
	}
	// Back to Weave Net's form and again: the same ring.
	again, err := ringFromWeave(decodeBack(t, ringToWeave(r, g, weaver)), g)
	if err != nil || !again.equal(r) {
		t.Fatalf("round trip: %+v, %v", again, err)
	}

	st, err = decodeWeaveState(fixture(t, "empty-state.gob"))
	if err != nil || st.Ring != nil || len(st.Paxos) != 0 {
		t.Fatalf("empty state: %+v, %v", st, err)
	}

	g = geoOf(t, "10.2.0.0/28")
	st, err = decodeWeaveState(fixture(t, "donated-ring-state.gob"))
	if err != nil {
		t.Fatal(err)
	}
	if r, err = ringFromWeave(st.Ring, g); err != nil || len(r.Entries) < 3 {
		t.Fatalf("ring after a donation: %+v, %v", r, err)
	}

	u := fixture(t, "space-request.unicast")
	if u[0] != weaveSpaceRequest {
		t.Fatalf("space request kind %d", u[0])
	}
	rg, err := decodeWeaveRange(u[1:])
	if err != nil {
		t.Fatal(err)
	}
	if sp, err := g.spanFromWeave(rg); err != nil || sp != (span{0, 16}) {
		t.Fatalf("space request for %v: %v, %v", rg, sp, err)
	}
	u = fixture(t, "ring-update.unicast")
	if u[0] != weaveRingUpdate {
		t.Fatalf("ring update kind %d", u[0])
	}
	if st, err = decodeWeaveState(u[1:]); err != nil || st.Ring == nil {
		t.Fatalf("ring update: %+v, %v", st, err)
	}
}

func mustPeer(t testing.TB, s string) mesh.PeerName {
	t.Helper()
	p, err := mesh.PeerNameFromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// decodeBack sends w through gob as a state and returns the ring read.
func decodeBack(t testing.TB, w *wnRing) *wnRing {
	t.Helper()
	st, err := decodeWeaveState(gobEncode(&wnState{Ring: w}))
	if err != nil {
		t.Fatal(err)
	}
	return st.Ring
}

func TestRingFromWeaveRejects(t *testing.T) {
	g := geoOf(t, "10.2.0.0/24")
	start, end := g.weaveBounds()
	good := func() *wnRing {
		return &wnRing{Start: start, End: end, Seeds: []mesh.PeerName{1, 2}, Entries: []*wnEntry{
			{Token: start, Peer: 1, Version: 1, Free: 128},
			{Token: start + 128, Peer: 2, Version: 1, Free: 128},
		}}
	}
	if _, err := ringFromWeave(good(), g); err != nil {
		t.Fatal(err)
	}
	for name, spoil := range map[string]func(w *wnRing){
		"other range":     func(w *wnRing) { w.End += 256 },
		"unsorted":        func(w *wnRing) { w.Entries[1].Token = start - 1 },
		"repeated":        func(w *wnRing) { w.Entries[1].Token = start },
		"outside":         func(w *wnRing) { w.Entries[1].Token = end },
		"not at start":    func(w *wnRing) { w.Entries[0].Token = start + 1 },
		"too much free":   func(w *wnRing) { w.Entries[1].Free = 129 },
		"nil entry":       func(w *wnRing) { w.Entries[1] = nil },
		"no peer":         func(w *wnRing) { w.Entries[0].Peer = 0 },
		"seeds unsorted":  func(w *wnRing) { w.Seeds = []mesh.PeerName{2, 1} },
		"seeds repeated":  func(w *wnRing) { w.Seeds = []mesh.PeerName{1, 1} },
		"entries no seed": func(w *wnRing) { w.Seeds = nil },
	} {
		w := good()
		spoil(w)
		if r, err := ringFromWeave(w, g); err == nil {
			t.Errorf("%s: accepted %+v", name, r)
		}
	}
}

func TestPaxosWeaveRoundTrip(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		s := paxosState{}
		names := []mesh.PeerName{}
		for i := range 1 + rnd.IntN(5) {
			n := mesh.PeerName(10 + i)
			names = append(names, n)
			acc := ballot{}
			var val []mesh.PeerName
			if rnd.IntN(2) == 0 {
				acc = ballot{Round: uint32(1 + rnd.IntN(3)), Proposer: mesh.PeerName(10 + rnd.IntN(5))}
				val = []mesh.PeerName{10, mesh.PeerName(11 + rnd.IntN(3))}
			}
			prom := acc
			if rnd.IntN(2) == 0 {
				prom = ballot{Round: acc.Round + 1, Proposer: mesh.PeerName(10 + rnd.IntN(5))}
			}
			s[n] = paxosNode{Promised: prom, Accepted: acc, Value: val}
		}
		uid := func(p mesh.PeerName) mesh.PeerUID {
			if p == 12 {
				return 999 // a Weave Net peer's random UID
			}
			return stableUID(p)
		}
		w := paxosToWeave(s, names, uid)
		st, err := decodeWeaveState(gobEncode(&wnState{Paxos: w}))
		if err != nil {
			t.Fatal(err)
		}
		uids := map[mesh.PeerName]mesh.PeerUID{}
		back, err := paxosFromWeave(st.Paxos, uids)
		if err != nil {
			t.Fatal(err)
		}
		if !back.equal(s) {
			t.Fatalf("round trip:\n%v\n%v", s, back)
		}
		for n, u := range uids {
			if n != 12 || u != 999 {
				t.Fatalf("UIDs learned %v", uids)
			}
		}
	}
}

type fixedPeers []mesh.PeerName

func (f fixedPeers) Reachable() []mesh.PeerName { return f }
func (f fixedPeers) NickName(mesh.PeerName) string {
	return ""
}

// newSeeded makes an allocator at peer 1 whose ring is seeded with peers
// 1 and weave (2): it owns 10.2.0.0-10.2.0.127.
func newSeeded(t *testing.T) (*Allocator, mesh.PeerName) {
	t.Helper()
	const weave mesh.PeerName = 2
	a, err := New(Config{Ourself: 1, Range: mustPrefix("10.2.0.0/24"),
		Init: Init{Mode: Seed, Seeds: []mesh.PeerName{1, weave}}, Peers: fixedPeers{weave},
		Logger: quietLogger(), tickInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, weave
}

func allocNow(a *Allocator, owner string) (netip.Prefix, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return a.Allocate(ctx, owner, netip.Prefix{})
}

// Weave Net's single-writer rule, on our side: a Weave Net ring that
// would hand an address we gave out to another peer is refused, and we
// stop allocating, saying why, rather than build on a ring it contradicts.
func TestWeaveRingTakingOurAddressIsRefused(t *testing.T) {
	a, weave := newSeeded(t)
	p, err := allocNow(a, "c1")
	if err != nil || p.Addr() != netip.MustParseAddr("10.2.0.1") {
		t.Fatalf("allocate: %v, %v", p, err)
	}
	a.mu.Lock()
	bad := ringToWeave(a.ring, a.geo, weave)
	a.mu.Unlock()
	bad.Entries[0].Peer, bad.Entries[0].Version = weave, 50
	msg := gobEncode(&wnState{Ring: bad})
	if _, err := a.WeaveGossiper().OnGossipBroadcast(weave, msg); err != nil {
		t.Fatalf("the gossiper must not make mesh drop the connection: %v", err)
	}
	if o := ringOf2(a).owner(1); o != 1 {
		t.Fatalf("our address now belongs to %v", o)
	}
	if _, err := allocNow(a, "c2"); !errors.Is(err, ErrWeaveNetDisagreement) || !strings.Contains(err.Error(), "10.2.0.1") {
		t.Fatalf("allocate after a contradicting Weave Net ring: %v", err)
	}
	if st := a.Status().Status; !strings.Contains(st, "refusing to allocate") {
		t.Fatalf("status %q", st)
	}
	// The same peer's ring agreeing again lifts the refusal.
	a.mu.Lock()
	ok := ringToWeave(a.ring, a.geo, weave)
	a.mu.Unlock()
	a.WeaveGossiper().OnGossipBroadcast(weave, gobEncode(&wnState{Ring: ok}))
	if _, err := allocNow(a, "c2"); err != nil {
		t.Fatalf("allocate after agreement: %v", err)
	}
}

func ringOf2(a *Allocator) *ring {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ring.clone()
}

// Another bootstrap, another range, or bytes we can't read from a peer
// that may be Weave Net's: refuse to allocate, and say why.
func TestWeaveDisagreementsRefuse(t *testing.T) {
	for name, msg := range map[string]func(a *Allocator) []byte{
		"seeds": func(a *Allocator) []byte {
			r := &ring{Range: a.cfg.Range}
			r.claim([]mesh.PeerName{2, 3})
			return gobEncode(&wnState{Ring: ringToWeave(r, a.geo, 2)})
		},
		"range": func(a *Allocator) []byte {
			g, _ := newGeometry(mustPrefix("10.3.0.0/24"))
			r := &ring{Range: g.prefix}
			r.claim([]mesh.PeerName{1, 2})
			return gobEncode(&wnState{Ring: ringToWeave(r, g, 2)})
		},
		"garbage": func(*Allocator) []byte { return []byte("\x05not gob at all") },
	} {
		a, weave := newSeeded(t)
		a.WeaveGossiper().OnGossipBroadcast(weave, msg(a))
		_, err := allocNow(a, "c1")
		if !errors.Is(err, ErrWeaveNetDisagreement) {
			t.Errorf("%s: allocate: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
		if a.Status().Peers[0].Ranges[0].First != netip.MustParseAddr("10.2.0.0") {
			t.Errorf("%s: our ring changed", name)
		}
	}
	// From a peer known to be weavenet, garbage is only dropped.
	a, weave := newSeeded(t)
	a.mu.Lock()
	a.setKind(weave, kindWeavenetPeer)
	a.mu.Unlock()
	a.WeaveGossiper().OnGossipUnicast(weave, []byte{7, 1, 2})
	if _, err := allocNow(a, "c1"); err != nil {
		t.Fatalf("garbage from a weavenet peer stopped allocation: %v", err)
	}
	if a.weaveDrops != 1 {
		t.Fatalf("drops %d", a.weaveDrops)
	}
}

// What we send on IPallocation decodes, carries the marker, and a Weave
// Net peer's space request is answered with a donation it can merge.
func TestWeaveOutgoing(t *testing.T) {
	a, weave := newSeeded(t)
	out := &captureGossip{}
	a.SetWeaveGossip(out)
	enc := (&weaveData{a: a}).Encode()
	st, err := decodeWeaveState(enc[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(st.WeavenetPeers) == 0 || st.WeavenetPeers[0] != 1 || st.Ring == nil {
		t.Fatalf("our state: %+v", st)
	}
	// Weave Net asks for space in the whole range, as its allocator does.
	req := weaveUnicast(weaveSpaceRequest, a.geo.weaveRangeOf(a.geo.all()))
	if err := a.WeaveGossiper().OnGossipUnicast(weave, req); err != nil {
		t.Fatal(err)
	}
	if len(out.unicasts) != 1 || out.unicasts[0][0] != weaveRingUpdate {
		t.Fatalf("answer: %d unicasts", len(out.unicasts))
	}
	st, err = decodeWeaveState(out.unicasts[0][1:])
	if err != nil {
		t.Fatal(err)
	}
	r, err := ringFromWeave(st.Ring, a.geo)
	if err != nil {
		t.Fatal(err)
	}
	if o := r.ownedBy(weave); len(o) != 1 || o[0].len() <= 128 {
		t.Fatalf("after donating, Weave Net owns %v", o)
	}
	// Nothing left for it in a subnet that is all ours and all used:
	// a denial, then our ring.
	out.unicasts = nil
	sub := mustPrefix("10.2.0.0/30")
	if _, err := a.Allocate(context.Background(), "x", sub); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Allocate(context.Background(), "y", sub); err != nil {
		t.Fatal(err)
	}
	s, _ := a.geo.subnetSpan(sub)
	a.WeaveGossiper().OnGossipUnicast(weave, weaveUnicast(weaveSpaceRequest, a.geo.weaveRangeOf(s)))
	if len(out.unicasts) != 2 || out.unicasts[0][0] != weaveSpaceDenied || out.unicasts[1][0] != weaveRingUpdate {
		t.Fatalf("refusal: %d unicasts", len(out.unicasts))
	}
}

type captureGossip struct {
	unicasts   [][]byte
	broadcasts int
}

func (c *captureGossip) GossipUnicast(_ mesh.PeerName, msg []byte) error {
	c.unicasts = append(c.unicasts, msg)
	return nil
}
func (c *captureGossip) GossipBroadcast(mesh.GossipData)       { c.broadcasts++ }
func (c *captureGossip) GossipNeighbourSubset(mesh.GossipData) {}

// The decoders never panic, and what they accept translates and comes
// back unchanged.
func FuzzWeaveState(f *testing.F) {
	for _, n := range []string{"consensus-state.gob", "ring-state.gob", "empty-state.gob", "donated-ring-state.gob"} {
		f.Add(fixture(f, n))
	}
	f.Add(fixture(f, "ring-update.unicast")[1:])
	geos := []geometry{geoOf(f, "10.32.0.0/12"), geoOf(f, "10.2.0.0/28")}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeWeaveState(b)
		if err != nil {
			return
		}
		if st.Ring != nil {
			for _, g := range geos {
				r, err := ringFromWeave(st.Ring, g)
				if err != nil {
					continue
				}
				again, err := ringFromWeave(decodeBack(t, ringToWeave(r, g, 1)), g)
				if err != nil || !again.equal(r) {
					t.Fatalf("round trip of an accepted ring: %v", err)
				}
			}
		}
		if _, err := paxosFromWeave(st.Paxos, map[mesh.PeerName]mesh.PeerUID{}); err != nil {
			return
		}
	})
}

// Whatever arrives on the channel, the allocator neither panics nor
// loses the space it owns.
func FuzzWeaveUnicast(f *testing.F) {
	f.Add(fixture(f, "space-request.unicast"))
	f.Add(fixture(f, "ring-update.unicast"))
	f.Add([]byte{weaveSpaceDenied})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, weave := newSeeded(t)
		p, err := allocNow(a, "c1")
		if err != nil {
			t.Fatal(err)
		}
		a.WeaveGossiper().OnGossipUnicast(weave, b)
		a.WeaveGossiper().OnGossipBroadcast(weave, b)
		a.WeaveGossiper().OnGossip(b)
		o, _ := a.geo.offset(p.Addr())
		if ringOf2(a).owner(o) != a.cfg.Ourself {
			t.Fatal("lost the owner of an address in use")
		}
	})
}

// A change goes out on IPallocation only while SendWeaveWhen says a Weave
// Net router is connected; on "ipam" always.
func TestWeaveBroadcastOnlyWithWeaveNet(t *testing.T) {
	for _, connected := range []bool{false, true} {
		a, err := New(Config{Ourself: 1, Range: mustPrefix("10.2.0.0/24"),
			Init: Init{Mode: Seed, Seeds: []mesh.PeerName{1, 2, 3}}, Peers: fixedPeers{2},
			Logger: quietLogger(), tickInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		native, weave := &captureGossip{}, &captureGossip{}
		a.SetGossip(native)
		a.SetWeaveGossip(weave)
		a.SendWeaveWhen(func() bool { return connected })
		if n, err := a.RemovePeer(3); err != nil || n == 0 {
			t.Fatalf("rmpeer: %d addresses, %v", n, err)
		}
		if native.broadcasts == 0 {
			t.Errorf("connected=%v: no broadcast on ipam", connected)
		}
		if got := weave.broadcasts > 0; got != connected {
			t.Errorf("connected=%v: %d broadcasts on IPallocation", connected, weave.broadcasts)
		}
		a.Close()
	}
}

// A peer with the ring shows it to a peer still in consensus by a unicast
// to that peer, not by a broadcast to all: every peer with the ring answers
// every consensus broadcast, and as broadcasts those answers were about a
// thousand while 50 peers agreed.
func TestRingShownToBootstrappingPeerByUnicast(t *testing.T) {
	a, _ := newSeeded(t)
	c := &captureGossip{}
	a.SetGossip(c)
	const late mesh.PeerName = 3
	st := &gossipState{ring: &ring{Range: a.cfg.Range}, paxos: paxosState{late: {Version: 1, Promised: ballot{Round: 1, Proposer: late}}}}
	if _, err := a.OnGossipBroadcast(late, encodeMessage(&message{kind: kindState, state: st})); err != nil {
		t.Fatal(err)
	}
	if c.broadcasts != 0 || len(c.unicasts) != 1 {
		t.Fatalf("answer to a bootstrapping peer: %d broadcasts, %d unicasts; want one unicast", c.broadcasts, len(c.unicasts))
	}
	m, err := decodeMessage(c.unicasts[0])
	if err != nil || m.kind != kindState || !m.state.ring.ready() {
		t.Fatalf("the unicast is not our ring: %+v, %v", m, err)
	}
}
