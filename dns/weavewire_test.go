package dns

import (
	"bytes"
	"encoding/gob"
	"errors"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"weavenet/mesh"
)

// Weave Net's nameserver gossip as Weave Net 2.8.1 declares it, written
// here from its field list (names and kinds only): named types, the
// embedded Entries slice and the unexported field gob leaves out are as
// there, so gob sees the same wire types.
type wnPeerName uint64
type wnAddress uint32
type wnEntry struct {
	ContainerID string
	Origin      wnPeerName
	Addr        wnAddress
	Hostname    string
	//lint:ignore U1000 mirrors an unexported field, which gob skips
	lHostname string
	Version   int
	Tombstone int64
}
type wnEntries []wnEntry

// wnGossipWire is Weave Net's GossipData; there Entries is an embedded
// field of type Entries, which gob names after its type.
type wnGossipWire struct {
	Timestamp int64
	Entries   wnEntries
}

func wnEncode(t testing.TB, g wnGossipWire) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&g); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func wnDecode(t testing.TB, msg []byte) wnGossipWire {
	t.Helper()
	var g wnGossipWire
	if err := gob.NewDecoder(bytes.NewReader(msg)).Decode(&g); err != nil {
		t.Fatalf("Weave Net's types do not decode our message: %v", err)
	}
	return g
}

// The fixtures are messages a real Weave Net 2.8.1 router (weaver) sent a
// weaved peer in TestInteropDNS, captured as received: its periodic
// gossip before any name, then broadcasts for PUT /name/cw1/10.99.0.1
// ?fqdn=webw.weave.local., PUT /name/cw2/10.99.0.3?fqdn=MixedCase.
// weave.local., DELETE /name/cw1/10.99.0.1, the same PUT again, and its
// complete table sent to the restarted weaved.
const (
	fixtureOrigin = mesh.PeerName(0x025705b60001) // 02:57:05:b6:00:01
	fixtureTime   = 1796360647
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/weave281-" + name + ".gob")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fixtureNow() time.Time { return time.Unix(fixtureTime, 0) }

func TestWeaveFixturesDecode(t *testing.T) {
	webw := weaveKey{Origin: fixtureOrigin, Hostname: "webw.weave.local.", Addr: 10<<24 | 99<<16 | 1, Container: "cw1"}
	mixed := weaveKey{Origin: fixtureOrigin, Hostname: "MixedCase.weave.local.", Addr: 10<<24 | 99<<16 | 3, Container: "cw2"}
	for _, tc := range []struct {
		name string
		want weaveTable
	}{
		{"empty", weaveTable{}},
		{"add", weaveTable{webw: {}}},
		{"delete", weaveTable{webw: {Version: 1, Tombstone: fixtureTime}}},
		{"readd", weaveTable{webw: {Version: 2}}},
		{"full", weaveTable{webw: {Version: 2}, mixed: {}}},
	} {
		d, skipped, err := decodeWeave(fixture(t, tc.name), fixtureNow())
		if err != nil || skipped != 0 {
			t.Fatalf("%s: %v, %d skipped", tc.name, err, skipped)
		}
		if d.timestamp < fixtureTime-1 || d.timestamp > fixtureTime {
			t.Errorf("%s: timestamp %d", tc.name, d.timestamp)
		}
		if !mapsEqual(d.entries, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, d.entries, tc.want)
		}
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func newWeaveTestServer(t testing.TB, self mesh.PeerName, now func() time.Time) *Server {
	t.Helper()
	s, err := New(Config{Ourself: self, Logger: quietLogger(), Now: now, Upstream: StaticUpstreams(nil)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The real messages in order: each takes effect on what we answer, and
// what we gossip on carries Weave Net's entries exactly (case, version).
func TestWeaveFixturesSequence(t *testing.T) {
	s := newWeaveTestServer(t, peerName(t, 1), fixtureNow)
	g := s.WeaveGossiper()
	for _, step := range []struct {
		fixture string
		webw    []string
	}{
		{"empty", nil},
		{"add", []string{"10.99.0.1"}},
		{"delete", nil},
		{"readd", []string{"10.99.0.1"}},
		{"full", []string{"10.99.0.1"}},
	} {
		if _, err := g.OnGossipBroadcast(fixtureOrigin, fixture(t, step.fixture)); err != nil {
			t.Fatal(err)
		}
		wantLookup(t, s, "webw", step.webw...)
	}
	wantLookup(t, s, "MIXEDCASE.weave.local.", "10.99.0.3")
	wantLookup(t, s, "mixedcase", "10.99.0.3")
	var seen []string
	for _, e := range s.Entries() {
		if e.Origin != fixtureOrigin || e.Tombstone {
			t.Errorf("unexpected entry %+v", e)
		}
		seen = append(seen, e.Hostname)
	}
	if !slices.Equal(seen, []string{"mixedcase.weave.local.", "webw.weave.local."}) {
		t.Errorf("Entries: %v", seen)
	}
	if st := s.Status(); st.Entries != 2 || st.Counters.NameserverMalformed != 0 || st.Counters.NameserverSkipped != 0 {
		t.Errorf("status %+v", st)
	}

	// What we gossip on decodes with Weave Net's types, as it came.
	parts := g.Gossip().Encode()
	if len(parts) != 1 {
		t.Fatalf("%d messages, Weave Net takes one", len(parts))
	}
	got := wnDecode(t, parts[0])
	want := wnEntries{
		{ContainerID: "cw2", Origin: wnPeerName(fixtureOrigin), Addr: 10<<24 | 99<<16 | 3, Hostname: "MixedCase.weave.local."},
		{ContainerID: "cw1", Origin: wnPeerName(fixtureOrigin), Addr: 10<<24 | 99<<16 | 1, Hostname: "webw.weave.local.", Version: 2},
	}
	if got.Timestamp != fixtureTime || !slices.Equal(got.Entries, want) {
		t.Errorf("relayed %+v, want %+v", got, want)
	}
}

// Our own entries in Weave Net's form: version - 1, the deletion time,
// IPv4 only, sorted as Weave Net sorts, no entry twice; and back.
func TestWeaveOwnEntriesEncode(t *testing.T) {
	clock := newFakeClock()
	self := peerName(t, 1)
	s := newWeaveTestServer(t, self, clock.Now)
	mustAdd(t, s, "c1", "b", "10.32.0.1")
	mustAdd(t, s, "c1", "b", "fd00::1")
	mustAdd(t, s, "c2", "a", "10.32.0.2")
	clock.Advance(time.Minute)
	if n, err := s.RemoveEntries("c2", "", ip("10.32.0.2")); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	msg := s.WeaveGossiper().Gossip().Encode()[0]
	got := wnDecode(t, msg)
	now := clock.Now().Unix()
	want := wnEntries{
		{ContainerID: "c2", Origin: wnPeerName(self), Addr: 10<<24 | 32<<16 | 2, Hostname: "a.weave.local.", Version: 3, Tombstone: now},
		{ContainerID: "c1", Origin: wnPeerName(self), Addr: 10<<24 | 32<<16 | 1, Hostname: "b.weave.local.", Version: 0},
	}
	if got.Timestamp != now || !slices.Equal(got.Entries, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}

	// A second weavenet peer maps them back to the same versions.
	d, skipped, err := decodeWeave(msg, clock.Now())
	if err != nil || skipped != 0 {
		t.Fatal(err, skipped)
	}
	for wk, wr := range d.entries {
		k, r := fromWeave(wk, wr, s.tombLife)
		s.mu.Lock()
		cur := s.tab.entries[k]
		s.mu.Unlock()
		if !cur.same(r) || !cur.Expires.Equal(r.Expires) {
			t.Errorf("%v: round trip %+v, ours %+v", k, r, cur)
		}
	}
}

// Messages built with Weave Net's declarations decode; what cannot be a
// valid entry is left out and counted; what cannot be a message is
// dropped and counted, never an error.
func TestWeaveHostileInput(t *testing.T) {
	now := fixtureNow()
	self := peerName(t, 1)
	origin := wnPeerName(peerName(t, 2))
	good := wnEntry{ContainerID: "c", Origin: origin, Addr: 1, Hostname: "ok.weave.local."}
	bad := []wnEntry{
		{ContainerID: "c", Origin: 0, Addr: 1, Hostname: "a.weave.local."},
		{ContainerID: "c", Origin: origin, Addr: 0, Hostname: "b.weave.local."},
		{ContainerID: "c", Origin: origin, Addr: 1, Hostname: "has space.weave.local."},
		{ContainerID: "c", Origin: origin, Addr: 1, Hostname: "no-dot.weave.local"},
		{ContainerID: "c", Origin: origin, Addr: 1, Hostname: strings.Repeat("a.", 130)},
		{ContainerID: strings.Repeat("x", 256), Origin: origin, Addr: 1, Hostname: "c.weave.local."},
		{ContainerID: "\xff", Origin: origin, Addr: 1, Hostname: "d.weave.local."},
		{ContainerID: "c", Origin: origin, Addr: 1, Hostname: "e.weave.local.", Version: -1},
		{ContainerID: "c", Origin: origin, Addr: 1, Hostname: "f.weave.local.", Tombstone: -5},
		{ContainerID: "c", Origin: origin, Addr: 1, Hostname: "g.weave.local.", Version: maxWeaveVersion},
	}
	s := newWeaveTestServer(t, self, func() time.Time { return now })
	mustAdd(t, s, "mine", "mine", "10.9.9.9")
	g := s.WeaveGossiper()
	msg := wnEncode(t, wnGossipWire{Timestamp: now.Unix(), Entries: append(bad, good)})
	if _, err := g.OnGossip(msg); err != nil {
		t.Fatal(err)
	}
	wantLookup(t, s, "ok", "0.0.0.1")
	if c := s.Counters(); c.NameserverSkipped != uint64(len(bad)) || c.NameserverMalformed != 0 {
		t.Errorf("counters %+v, want %d skipped", c, len(bad))
	}

	many := make(wnEntries, maxWeaveEntries+1)
	var str bytes.Buffer
	_ = gob.NewEncoder(&str).Encode("just a string")
	malformed := map[string][]byte{
		"empty":            nil,
		"garbage":          []byte("\x03\x04\x05not gob"),
		"truncated":        msg[:len(msg)/2],
		"another type":     str.Bytes(),
		"too large":        make([]byte, maxWeaveMessage+1),
		"too many entries": wnEncode(t, wnGossipWire{Timestamp: now.Unix(), Entries: many}),
		"clock ahead":      wnEncode(t, wnGossipWire{Timestamp: now.Add(16 * time.Minute).Unix(), Entries: wnEntries{good}}),
		"clock behind":     wnEncode(t, wnGossipWire{Timestamp: now.Add(-16 * time.Minute).Unix(), Entries: wnEntries{good}}),
		"no timestamp":     wnEncode(t, wnGossipWire{Entries: wnEntries{good}}),
		"length too large": {0xfc, 0x3f, 0xff, 0xff, 0xff, 0x01},
		"bad length":       {0xf0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17},
		"trailing length":  append(slices.Clone(msg), 0x05, 1),
	}
	for name, m := range malformed {
		before := s.Counters().NameserverMalformed
		if d, err := g.OnGossip(m); d != nil || err != nil {
			t.Errorf("%s: OnGossip = %v, %v", name, d, err)
		}
		if d, err := g.OnGossipBroadcast(mesh.PeerName(origin), m); d != nil || err != nil {
			t.Errorf("%s: OnGossipBroadcast = %v, %v", name, d, err)
		}
		if err := g.OnGossipUnicast(mesh.PeerName(origin), m); err != nil {
			t.Errorf("%s: OnGossipUnicast = %v", name, err)
		}
		if got := s.Counters().NameserverMalformed - before; got != 2 {
			t.Errorf("%s: counted %d times, want 2", name, got)
		}
		if _, _, err := decodeWeave(m, now); !errors.Is(err, errWeaveMalformed) {
			t.Errorf("%s: decode error %v", name, err)
		}
	}
	wantLookup(t, s, "mine", "10.9.9.9")
	wantLookup(t, s, "ok", "0.0.0.1")
}

// Entries of peers mesh does not know are ignored; a peer mesh forgets
// takes its Weave Net entries along.
func TestWeaveKnownPeersAndPeerGone(t *testing.T) {
	now := fixtureNow()
	known := map[mesh.PeerName]bool{fixtureOrigin: true}
	s, err := New(Config{Ourself: peerName(t, 1), Logger: quietLogger(), Now: func() time.Time { return now },
		Upstream: StaticUpstreams(nil), KnownPeer: func(p mesh.PeerName) bool { return known[p] }})
	if err != nil {
		t.Fatal(err)
	}
	g := s.WeaveGossiper()
	stranger := wnPeerName(peerName(t, 9))
	msg := wnEncode(t, wnGossipWire{Timestamp: now.Unix(), Entries: wnEntries{
		{ContainerID: "x", Origin: stranger, Addr: 5, Hostname: "stranger.weave.local."}}})
	if d, _ := g.OnGossip(msg); d != nil {
		t.Errorf("entries of an unknown peer were new: %v", d)
	}
	wantLookup(t, s, "stranger")
	if _, err := g.OnGossip(fixture(t, "full")); err != nil {
		t.Fatal(err)
	}
	wantLookup(t, s, "webw", "10.99.0.1")
	s.PeerGone(fixtureOrigin)
	wantLookup(t, s, "webw")
	wantLookup(t, s, "mixedcase")
	if g.Gossip() != nil {
		t.Errorf("still gossiping entries of a gone peer")
	}
	// Back (same name, a new process): its entries count again, from
	// version 0, unlike a retired weavenet origin.
	if _, err := g.OnGossip(fixture(t, "add")); err != nil {
		t.Fatal(err)
	}
	wantLookup(t, s, "webw", "10.99.0.1")
}

// Entries of a peer mesh does not know yet wait for it: merged (and
// gossiped on) once PeersChanged finds it known, and dropped after
// weaveWaitLife.
func TestWeaveEntriesWaitForTheirPeer(t *testing.T) {
	var mu sync.Mutex
	now := fixtureNow()
	known := map[mesh.PeerName]bool{}
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	s, err := New(Config{Ourself: peerName(t, 1), Logger: quietLogger(), Now: clock, Upstream: StaticUpstreams(nil),
		KnownPeer: func(p mesh.PeerName) bool {
			mu.Lock()
			defer mu.Unlock()
			return known[p]
		}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &lockedGossip{}
	s.SetWeaveGossip(rec)
	g := s.WeaveGossiper()
	entry := func(origin mesh.PeerName, host string, addr uint32) []byte {
		return wnEncode(t, wnGossipWire{Timestamp: clock().Unix(), Entries: wnEntries{
			{ContainerID: host, Origin: wnPeerName(origin), Addr: wnAddress(addr), Hostname: host + ".weave.local."}}})
	}
	settled := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for s.wwaitBusy.Load() {
			if time.Now().After(deadline) {
				t.Fatal("the waiting entries are still being merged after 10 s")
			}
			time.Sleep(time.Millisecond)
		}
	}
	late, old := peerName(t, 8), peerName(t, 9)

	if _, err := g.OnGossipBroadcast(late, entry(late, "late", 5)); err != nil {
		t.Fatal(err)
	}
	wantLookup(t, s, "late")
	s.PeersChanged()
	settled()
	wantLookup(t, s, "late")
	mu.Lock()
	known[late] = true
	mu.Unlock()
	s.PeersChanged()
	settled()
	wantLookup(t, s, "late", "0.0.0.5")
	if rec.count() != 1 {
		t.Errorf("the entries merged late were gossiped %d times, want once", rec.count())
	}

	if _, err := g.OnGossip(entry(old, "old", 6)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(weaveWaitLife)
	known[old] = true
	mu.Unlock()
	s.PeersChanged()
	settled()
	wantLookup(t, s, "old")
	if n := s.wwaitN.Load(); n != 0 {
		t.Errorf("%d entries still wait", n)
	}
}

// lockedGossip counts what a Server gossips, from any goroutine.
type lockedGossip struct {
	mu   sync.Mutex
	sent int
}

func (g *lockedGossip) GossipUnicast(mesh.PeerName, []byte) error { return nil }
func (g *lockedGossip) GossipBroadcast(mesh.GossipData)           {}
func (g *lockedGossip) GossipNeighbourSubset(mesh.GossipData) {
	g.mu.Lock()
	g.sent++
	g.mu.Unlock()
}
func (g *lockedGossip) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sent
}

// recordingGossip keeps what a Server broadcasts.
type recordingGossip struct{ sent []mesh.GossipData }

func (g *recordingGossip) GossipUnicast(mesh.PeerName, []byte) error { return nil }
func (g *recordingGossip) GossipBroadcast(d mesh.GossipData)         { g.sent = append(g.sent, d) }
func (g *recordingGossip) GossipNeighbourSubset(d mesh.GossipData)   { g.sent = append(g.sent, d) }

// After a restart, Weave Net peers remember an entry of ours we no longer
// have: we retract it on both channels with a higher version, as Weave
// Net's own peers do; what we do have is left alone.
func TestWeaveOwnStaleEntryRetracted(t *testing.T) {
	now := fixtureNow()
	self := peerName(t, 1)
	s := newWeaveTestServer(t, self, func() time.Time { return now })
	mustAdd(t, s, "c1", "kept", "10.32.0.1") // version 1
	var dnsG, wG recordingGossip
	s.SetGossip(&dnsG)
	s.SetWeaveGossip(&wG)
	dnsG.sent, wG.sent = nil, nil
	msg := wnEncode(t, wnGossipWire{Timestamp: now.Unix(), Entries: wnEntries{
		{ContainerID: "c1", Origin: wnPeerName(self), Addr: 10<<24 | 32<<16 | 1, Hostname: "kept.weave.local."},
		{ContainerID: "old", Origin: wnPeerName(self), Addr: 10<<24 | 32<<16 | 7, Hostname: "old.weave.local.", Version: 4},
	}})
	if d, err := s.WeaveGossiper().OnGossip(msg); err != nil || d != nil {
		t.Fatalf("OnGossip = %v, %v (our own entries are not relayed as new)", d, err)
	}
	wantLookup(t, s, "old")
	wantLookup(t, s, "kept", "10.32.0.1")
	if len(dnsG.sent) != 1 || len(wG.sent) != 1 {
		t.Fatalf("broadcasts: dns %d, nameserver %d; want one each", len(dnsG.sent), len(wG.sent))
	}
	got := wnDecode(t, wG.sent[0].Encode()[0])
	want := wnEntries{{ContainerID: "old", Origin: wnPeerName(self), Addr: 10<<24 | 32<<16 | 7,
		Hostname: "old.weave.local.", Version: 5, Tombstone: now.Unix()}}
	if !slices.Equal(got.Entries, want) {
		t.Errorf("retraction %+v, want %+v", got.Entries, want)
	}
	// Hearing our retraction back changes nothing.
	dnsG.sent, wG.sent = nil, nil
	if d, _ := s.WeaveGossiper().OnGossip(wnEncode(t, got)); d != nil || len(dnsG.sent)+len(wG.sent) != 0 {
		t.Errorf("our retraction heard back: delta %v, %d broadcasts", d, len(dnsG.sent)+len(wG.sent))
	}
	if c := s.Counters(); c.Retractions != 1 {
		t.Errorf("Retractions = %d", c.Retractions)
	}
}

// FuzzWeaveNameserverDecode: any bytes are either refused with an error
// or decode into entries that re-encode to the same entries; a Server fed
// them on every entry point of the channel never panics and keeps its own
// names.
func FuzzWeaveNameserverDecode(f *testing.F) {
	for _, name := range []string{"empty", "add", "delete", "readd", "full"} {
		f.Add(fixture(f, name))
	}
	f.Add(wnEncode(f, wnGossipWire{Timestamp: fixtureTime, Entries: wnEntries{
		{ContainerID: "c", Origin: wnPeerName(peerName(f, 1)), Addr: 10<<24 | 7, Hostname: "mine.weave.local.", Version: 3},
		{ContainerID: "c", Origin: 2, Addr: 7, Hostname: "X.weave.local.", Tombstone: fixtureTime - 60},
	}}))
	f.Add([]byte{})
	now := fixtureNow()
	self := peerName(f, 1)
	f.Fuzz(func(t *testing.T, msg []byte) {
		d, _, err := decodeWeave(msg, now)
		if err == nil {
			if len(d.entries) > maxWeaveEntries {
				t.Fatalf("%d entries", len(d.entries))
			}
			back, skipped, err := decodeWeave(d.Encode()[0], now)
			if err != nil || skipped != 0 || back.timestamp != d.timestamp || !mapsEqual(back.entries, d.entries) {
				t.Fatalf("round trip: %v %d\n%v\n%v", err, skipped, d, back)
			}
		} else if !errors.Is(err, errWeaveMalformed) {
			t.Fatalf("error not marked malformed: %v", err)
		}
		s := newWeaveTestServer(t, self, func() time.Time { return now })
		if err := s.AddEntry("mine", "mine", ip("10.9.9.9")); err != nil {
			t.Fatal(err)
		}
		g := s.WeaveGossiper()
		if _, err := g.OnGossip(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := g.OnGossipBroadcast(peerName(t, 2), msg); err != nil {
			t.Fatal(err)
		}
		if err := g.OnGossipUnicast(peerName(t, 2), msg); err != nil {
			t.Fatal(err)
		}
		if got := s.Lookup("mine"); len(got) != 1 {
			t.Fatalf("own entry lost: %v", got)
		}
		for _, p := range g.Gossip().Encode() {
			wnDecode(t, p)
		}
		s.Entries()
	})
}

// A hostile message costs memory in proportion to its size: declared
// lengths are checked before gob allocates for them, and the entry count
// before the entries are.
func TestWeaveDecodeMemoryFollowsSize(t *testing.T) {
	now := fixtureNow()
	for name, msg := range map[string][]byte{
		"declares 1 GiB":   {0xfc, 0x3f, 0xff, 0xff, 0xff, 0x01},
		"declares 9 MiB":   {0xfd, 0x90, 0x00, 0x00, 0x01},
		"too many entries": wnEncode(t, wnGossipWire{Timestamp: now.Unix(), Entries: make(wnEntries, maxWeaveEntries+1)}),
		"4 MiB of entries": wnEncode(t, wnGossipWire{Timestamp: now.Unix(), Entries: make(wnEntries, maxWeaveMessage-1000)}),
		"full":             fixture(t, "full"),
		"empty entries":    wnEncode(t, wnGossipWire{Timestamp: now.Unix(), Entries: make(wnEntries, 50_000)}),
		"many valid":       wnEncode(t, wnGossipWire{Timestamp: now.Unix(), Entries: manyValid(maxWeaveEntries)}),
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		decodeWeave(msg, now)
		runtime.ReadMemStats(&after)
		used := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d bytes in, %d allocated", name, len(msg), used)
		// The smallest valid entries cost the most per byte: 11 bytes
		// on the wire, about 180 in the decoded table (a map).
		if limit := 64<<10 + 24*uint64(len(msg)); used > limit {
			t.Errorf("%s: %d bytes allocated for a %d-byte message (limit %d)", name, used, len(msg), limit)
		}
	}
}

// manyValid returns n distinct entries as small as valid ones get.
func manyValid(n int) wnEntries {
	es := make(wnEntries, n)
	for i := range es {
		es[i] = wnEntry{Origin: 1, Addr: wnAddress(i + 1), Hostname: "a."}
	}
	return es
}
