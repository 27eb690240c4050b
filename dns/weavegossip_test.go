package dns

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"weavenet/mesh"
)

// A mixed in-memory mesh: weavenet Servers (channels "dns" and
// "nameserver") and stand-ins for Weave Net peers (channel "nameserver"
// with Weave Net's rules, and mesh's surrogate relay for "dns"). Delivery
// is FIFO and deterministic, as in fakeMesh.

type mixedMsg struct {
	ch        string
	from, to  mesh.PeerName
	broadcast bool
	parts     [][]byte
}

type mixedMesh struct {
	t     *testing.T
	clock *fakeClock
	nets  map[mesh.PeerName]*Server
	weave map[mesh.PeerName]*weaveStub
	links map[[2]mesh.PeerName]bool
	queue []mixedMsg
	// relays counts messages sent because of a received one (a delta
	// passed on, a broadcast, a correction): zero once converged. A
	// surrogate passing gossip on unread does not count.
	relays int
}

func newMixedMesh(t *testing.T) *mixedMesh {
	return &mixedMesh{t: t, clock: newFakeClock(), nets: map[mesh.PeerName]*Server{},
		weave: map[mesh.PeerName]*weaveStub{}, links: map[[2]mesh.PeerName]bool{}}
}

func (m *mixedMesh) addNet(i int) *Server {
	p := peerName(m.t, i)
	s := newWeaveTestServer(m.t, p, m.clock.Now)
	m.nets[p] = s
	s.SetGossip(&mixedGossip{m: m, ch: "dns", self: p})
	s.SetWeaveGossip(&mixedGossip{m: m, ch: "nameserver", self: p})
	return s
}

func (m *mixedMesh) addWeave(i int) *weaveStub {
	p := peerName(m.t, i)
	w := &weaveStub{t: m.t, name: p, now: m.clock.Now, entries: weaveTable{}, seen: map[string]bool{}}
	w.gossip = &mixedGossip{m: m, ch: "nameserver", self: p}
	m.weave[p] = w
	return w
}

func (m *mixedMesh) connect(i, j int) {
	a, b := peerName(m.t, i), peerName(m.t, j)
	m.links[linkKey(a, b)] = true
	m.sendComplete(a, b)
	m.sendComplete(b, a)
}

func (m *mixedMesh) gossipers(p mesh.PeerName) map[string]mesh.Gossiper {
	if s, ok := m.nets[p]; ok {
		return map[string]mesh.Gossiper{"dns": s, "nameserver": s.WeaveGossiper()}
	}
	w := m.weave[p]
	return map[string]mesh.Gossiper{"nameserver": w, "dns": (*surrogate)(w)}
}

func (m *mixedMesh) sendComplete(from, to mesh.PeerName) {
	for ch, g := range m.gossipers(from) {
		if d := g.Gossip(); d != nil {
			m.queue = append(m.queue, mixedMsg{ch: ch, from: from, to: to, parts: d.Encode()})
		}
	}
}

// tick is mesh's periodic gossip, every 30 s; the surrogates forget what
// they relayed before, as mesh's do after one gossip interval.
func (m *mixedMesh) tick() {
	m.clock.Advance(30 * time.Second)
	for _, w := range m.weave {
		clear(w.seen)
	}
	for k := range m.links {
		m.sendComplete(k[0], k[1])
		m.sendComplete(k[1], k[0])
	}
}

func (m *mixedMesh) neighbours(p mesh.PeerName) []mesh.PeerName {
	var ns []mesh.PeerName
	for k := range m.links {
		switch p {
		case k[0]:
			ns = append(ns, k[1])
		case k[1]:
			ns = append(ns, k[0])
		}
	}
	slices.Sort(ns)
	return ns
}

func (m *mixedMesh) reachable(p mesh.PeerName) []mesh.PeerName {
	seen := map[mesh.PeerName]bool{p: true}
	todo, out := []mesh.PeerName{p}, []mesh.PeerName{}
	for len(todo) > 0 {
		q := todo[0]
		todo = todo[1:]
		for _, n := range m.neighbours(q) {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
				todo = append(todo, n)
			}
		}
	}
	return out
}

func (m *mixedMesh) flush() {
	m.t.Helper()
	for n := 0; len(m.queue) > 0; n++ {
		if n > 100000 {
			m.t.Fatal("gossip did not quiesce")
		}
		msg := m.queue[0]
		m.queue = m.queue[1:]
		g := m.gossipers(msg.to)[msg.ch]
		for _, part := range msg.parts {
			if msg.broadcast {
				if _, err := g.OnGossipBroadcast(msg.from, part); err != nil {
					m.t.Fatal(err)
				}
				continue
			}
			delta, err := g.OnGossip(part)
			if err != nil {
				m.t.Fatal(err)
			}
			if delta != nil {
				_, surrogate := g.(*surrogate)
				for _, nb := range m.neighbours(msg.to) {
					if nb != msg.from {
						if !surrogate {
							m.relays++
						}
						m.queue = append(m.queue, mixedMsg{ch: msg.ch, from: msg.to, to: nb, parts: delta.Encode()})
					}
				}
			}
		}
	}
}

type mixedGossip struct {
	m    *mixedMesh
	ch   string
	self mesh.PeerName
}

func (g *mixedGossip) GossipUnicast(mesh.PeerName, []byte) error { return nil }
func (g *mixedGossip) GossipBroadcast(d mesh.GossipData) {
	g.m.relays++
	parts := d.Encode()
	for _, p := range g.m.reachable(g.self) {
		g.m.queue = append(g.m.queue, mixedMsg{ch: g.ch, from: g.self, to: p, broadcast: true, parts: parts})
	}
}
func (g *mixedGossip) GossipNeighbourSubset(d mesh.GossipData) { g.GossipBroadcast(d) }

// weaveStub behaves as a Weave Net 2.8 peer's nameserver does: entries
// keyed exactly, a per-entry version from 0, tombstones with their time,
// merge by version then tombstone time, and its own entries defended
// (a newer or unknown one of its own is overridden with version + 1). It
// decodes with Weave Net's declarations, not with our decoder.
type weaveStub struct {
	t       *testing.T
	name    mesh.PeerName
	now     func() time.Time
	entries weaveTable
	gossip  mesh.Gossip
	seen    map[string]bool // for the dns surrogate
}

func (w *weaveStub) add(host, container string, addr uint32) {
	k := weaveKey{Origin: w.name, Hostname: host, Addr: addr, Container: container}
	r, ok := w.entries[k]
	if ok && r.Tombstone == 0 {
		return
	}
	if ok {
		r = weaveRec{Version: r.Version + 1}
	}
	w.entries[k] = r
	w.gossip.GossipBroadcast(&weaveData{timestamp: w.now().Unix(), entries: weaveTable{k: r}})
}

func (w *weaveStub) del(host, container string, addr uint32) {
	k := weaveKey{Origin: w.name, Hostname: host, Addr: addr, Container: container}
	r, ok := w.entries[k]
	if !ok || r.Tombstone != 0 {
		return
	}
	r = weaveRec{Version: r.Version + 1, Tombstone: w.now().Unix()}
	w.entries[k] = r
	w.gossip.GossipBroadcast(&weaveData{timestamp: w.now().Unix(), entries: weaveTable{k: r}})
}

// lookup answers as Weave Net does: case-insensitive, live entries.
func (w *weaveStub) lookup(name string) []string {
	var out []string
	for k, r := range w.entries {
		if r.Tombstone == 0 && strings.EqualFold(k.Hostname, name) {
			out = append(out, fmt.Sprintf("%d.%d.%d.%d", byte(k.Addr>>24), byte(k.Addr>>16), byte(k.Addr>>8), byte(k.Addr)))
		}
	}
	slices.Sort(out)
	return out
}

func (w *weaveStub) receive(msg []byte) (all, delta *weaveData) {
	var g wnGossipWire
	if err := gob.NewDecoder(bytes.NewReader(msg)).Decode(&g); err != nil {
		w.t.Fatalf("Weave Net's types do not decode our message: %v", err)
	}
	in := weaveTable{}
	for _, e := range g.Entries {
		k := weaveKey{Origin: mesh.PeerName(e.Origin), Hostname: e.Hostname, Addr: uint32(e.Addr), Container: e.ContainerID}
		if _, dup := in[k]; dup {
			w.t.Fatalf("a message holds %v twice: Weave Net would panic", k)
		}
		in[k] = weaveRec{Version: int64(e.Version), Tombstone: e.Tombstone}
	}
	over := weaveTable{}
	for k, r := range in {
		if k.Origin != w.name {
			continue
		}
		mine, ok := w.entries[k]
		switch {
		case ok && (mine.Version < r.Version || mine.Version == r.Version && mine.Tombstone != r.Tombstone):
			mine.Version = r.Version + 1
			in[k], over[k] = mine, mine
		case !ok && r.Tombstone == 0:
			r = weaveRec{Version: r.Version + 1, Tombstone: w.now().Unix()}
			in[k], over[k] = r, r
		}
	}
	dl := w.entries.merge(in)
	if len(over) > 0 {
		w.gossip.GossipBroadcast(&weaveData{timestamp: w.now().Unix(), entries: over})
	}
	return &weaveData{timestamp: g.Timestamp, entries: in}, &weaveData{timestamp: w.now().Unix(), entries: dl}
}

func (w *weaveStub) OnGossipUnicast(mesh.PeerName, []byte) error { return nil }
func (w *weaveStub) OnGossipBroadcast(_ mesh.PeerName, msg []byte) (mesh.GossipData, error) {
	all, _ := w.receive(msg)
	return all, nil
}
func (w *weaveStub) OnGossip(msg []byte) (mesh.GossipData, error) {
	if _, d := w.receive(msg); len(d.entries) > 0 {
		return d, nil
	}
	return nil, nil
}
func (w *weaveStub) Gossip() mesh.GossipData {
	c := weaveTable{}
	c.merge(w.entries)
	return &weaveData{timestamp: w.now().Unix(), entries: c}
}

// surrogate is mesh's relay for a channel a peer does not speak: gossip
// is passed on unread (once per distinct message); nothing is its own.
type surrogate weaveStub

type rawData [][]byte

func (d rawData) Encode() [][]byte                        { return d }
func (d rawData) Merge(o mesh.GossipData) mesh.GossipData { return append(d, o.(rawData)...) }

func (s *surrogate) OnGossipUnicast(mesh.PeerName, []byte) error { return nil }
func (s *surrogate) OnGossipBroadcast(_ mesh.PeerName, msg []byte) (mesh.GossipData, error) {
	return rawData{slices.Clone(msg)}, nil
}
func (s *surrogate) OnGossip(msg []byte) (mesh.GossipData, error) {
	if s.seen[string(msg)] {
		return nil, nil
	}
	s.seen[string(msg)] = true
	return rawData{slices.Clone(msg)}, nil
}
func (s *surrogate) Gossip() mesh.GossipData { return nil }

// Weave Net and weavenet peers alternating in a line (so each kind relays
// the other's channel): names from either kind resolve everywhere,
// deletions reach everyone, and once converged periodic gossip on both
// channels changes nothing and sends nothing on.
func TestWeaveMixedLineConverges(t *testing.T) {
	m := newMixedMesh(t)
	n1, a2, n3, c4 := m.addNet(1), m.addWeave(2), m.addNet(3), m.addWeave(4)
	m.connect(1, 2)
	m.connect(2, 3)
	m.connect(3, 4)
	m.flush()
	mustAdd(t, n1, "c1", "n1", "10.32.0.1")
	mustAdd(t, n3, "c3", "n3", "10.32.0.3")
	mustAdd(t, n3, "c3", "n3", "fd00::3") // stays on our channel
	a2.add("A2.weave.local.", "cA", 10<<24|32<<16|2)
	c4.add("c4.weave.local.", "cC", 10<<24|32<<16|4)
	m.flush()

	want := map[string][]string{
		"n1": {"10.32.0.1"}, "n3": {"10.32.0.3"}, "a2": {"10.32.0.2"}, "c4": {"10.32.0.4"},
	}
	check := func(when string) {
		t.Helper()
		for name, addrs := range want {
			for _, s := range []*Server{n1, n3} {
				var got []string
				for _, a := range s.Lookup(name) {
					if a.Is4() {
						got = append(got, a.String())
					}
				}
				if !slices.Equal(got, addrs) {
					t.Errorf("%s: %s on weavenet %s: %v, want %v", when, name, s.ourself, got, addrs)
				}
			}
			for _, w := range []*weaveStub{a2, c4} {
				if got := w.lookup(name + ".weave.local."); !slices.Equal(got, addrs) {
					t.Errorf("%s: %s on Weave Net %s: %v, want %v", when, name, w.name, got, addrs)
				}
			}
		}
	}
	check("after adding")
	if got := n1.Lookup("n3"); len(got) != 2 {
		t.Errorf("n3 on n1 (through a Weave Net relay, IPv6 on our channel only): %v", got)
	}

	n1.RemoveEntries("c1", "", ip("10.32.0.1"))
	a2.del("A2.weave.local.", "cA", 10<<24|32<<16|2)
	m.flush()
	want["n1"], want["a2"] = nil, nil
	check("after deleting")

	// Settle, then one more round of periodic gossip must be quiet.
	for range 3 {
		m.tick()
		m.flush()
	}
	m.relays = 0
	m.tick()
	m.flush()
	if m.relays != 0 {
		t.Errorf("periodic gossip after convergence still sent %d messages on", m.relays)
	}
	check("after periodic gossip")
	for _, s := range []*Server{n1, n3} {
		if c := s.Counters(); c.Retractions != 0 || c.NameserverMalformed != 0 || c.GossipMalformed != 0 {
			t.Errorf("%s counters %+v", s.ourself, c)
		}
	}

	// A weavenet peer restarts without n3: it retracts it on both channels
	// and Weave Net peers drop it as well.
	m.links = map[[2]mesh.PeerName]bool{}
	n3 = m.addNet(3)
	mustAdd(t, n3, "c3b", "n3b", "10.32.0.33")
	m.connect(2, 3)
	m.connect(3, 4)
	m.connect(1, 2)
	m.flush()
	m.tick()
	m.flush()
	delete(want, "n3")
	want["n3b"] = []string{"10.32.0.33"}
	check("after the restart")
	for _, w := range []*weaveStub{a2, c4} {
		if got := w.lookup("n3.weave.local."); len(got) != 0 {
			t.Errorf("Weave Net %s still has n3: %v", w.name, got)
		}
	}
	if got := n1.Lookup("n3"); len(got) != 0 {
		t.Errorf("n1 still has n3: %v", got)
	}
}
