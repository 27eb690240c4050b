package dns

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"weavenet/mesh"
)

// randomTable draws a table over a small universe of keys, so that random
// tables overlap a lot: versions, tombstones and watermarks collide.
func randomTable(t testing.TB, next func(n int) int, now time.Time) *table {
	tab := newTable(now)
	for range next(12) {
		k := key{
			Origin:    peerName(t, 1+next(3)),
			Hostname:  fmt.Sprintf("h%d.weave.local.", next(3)),
			Addr:      netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + next(2))}),
			Container: fmt.Sprintf("c%d", next(2)),
		}
		r := record{Version: uint64(1 + next(6)), Tombstone: next(2) == 0}
		if r.Tombstone {
			r.Expires = now.Add(time.Duration(1+next(600)) * time.Second)
		}
		tab.mergeDelta(&table{entries: map[key]record{k: r}})
	}
	for range next(2) {
		tab.mergeDelta(&table{retired: map[mesh.PeerName]uint64{peerName(t, 1+next(3)): uint64(1 + next(4))}})
	}
	return tab
}

func join(a, b *table) *table {
	c := a.clone()
	c.mergeDelta(b)
	return c
}

// checkLaws checks that merge is a join: commutative, associative,
// idempotent; that a delta merged into the old state gives the new one; and
// that encoding round-trips.
func checkLaws(t testing.TB, a, b, c *table) {
	t.Helper()
	if !join(a, b).sameState(join(b, a)) {
		t.Fatalf("not commutative:\na=%v\nb=%v", a, b)
	}
	if !join(join(a, b), c).sameState(join(a, join(b, c))) {
		t.Fatalf("not associative:\na=%v\nb=%v\nc=%v", a, b, c)
	}
	if !join(a, a).sameState(a) {
		t.Fatalf("not idempotent: %v", a)
	}
	if !join(join(a, b), b).sameState(join(a, b)) {
		t.Fatal("merging again changes the state")
	}
	// The delta carries everything b taught a.
	ab := a.clone()
	delta := ab.mergeDelta(b)
	if !join(a, delta).sameState(ab) {
		t.Fatal("old state + delta != new state")
	}
	if d2 := ab.mergeDelta(b); !d2.empty() {
		t.Fatalf("second merge reports a delta: %v", d2)
	}
	for _, x := range []*table{a, b, c, join(join(a, b), c)} {
		checkRoundTrip(t, x)
	}
}

func checkRoundTrip(t testing.TB, x *table) {
	t.Helper()
	got := newTable(x.now)
	for _, part := range x.Encode() {
		d, err := decodeTable(part, x.now)
		if err != nil {
			t.Fatalf("decoding own encoding: %v", err)
		}
		got.mergeDelta(d)
	}
	if !got.sameState(x) {
		t.Fatalf("round trip changed the table:\n%v\n%v", x, got)
	}
	for k, r := range x.entries {
		if g, ok := got.entries[k]; ok && r.Tombstone && g.Expires.After(r.Expires) {
			t.Fatalf("tombstone lifetime grew in transit: %v → %v", r.Expires, got.entries[k].Expires)
		}
	}
}

func TestMergeLawsRandom(t *testing.T) {
	now := newFakeClock().Now()
	for seed := uint64(0); seed < 3000; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		a := randomTable(t, rng.IntN, now)
		b := randomTable(t, rng.IntN, now)
		c := randomTable(t, rng.IntN, now)
		checkLaws(t, a, b, c)
	}
}

func FuzzMergeLaws(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	f.Add(bytes.Repeat([]byte{0xff, 0, 7}, 40))
	f.Fuzz(func(t *testing.T, data []byte) {
		i := 0
		next := func(n int) int {
			if i >= len(data) {
				return 0
			}
			i++
			return int(data[i-1]) % n
		}
		now := newFakeClock().Now()
		a := randomTable(t, next, now)
		b := randomTable(t, next, now)
		c := randomTable(t, next, now)
		checkLaws(t, a, b, c)
	})
}

func TestRecordOrder(t *testing.T) {
	live1 := record{Version: 1}
	tomb1 := record{Version: 1, Tombstone: true}
	live2 := record{Version: 2}
	switch {
	case !live2.newer(tomb1), tomb1.newer(live2):
		t.Fatal("higher version must win")
	case !tomb1.newer(live1), live1.newer(tomb1):
		t.Fatal("tombstone must win a tie")
	case live1.newer(live1):
		t.Fatal("a record is not newer than itself")
	}
}

func TestRetiredDropsOlder(t *testing.T) {
	now := time.Now()
	p := peerName(t, 9)
	tab := newTable(now)
	old := key{Origin: p, Hostname: "a.weave.local.", Addr: ip("10.0.0.1"), Container: "a"}
	fresh := key{Origin: p, Hostname: "b.weave.local.", Addr: ip("10.0.0.2"), Container: "b"}
	tab.entries[old] = record{Version: 3}
	tab.entries[fresh] = record{Version: 5}
	delta := tab.mergeDelta(&table{retired: map[mesh.PeerName]uint64{p: 4}})
	if _, ok := tab.entries[old]; ok {
		t.Fatal("entry at or below the watermark kept")
	}
	if _, ok := tab.entries[fresh]; !ok {
		t.Fatal("entry above the watermark dropped")
	}
	if delta.retired[p] != 4 {
		t.Fatalf("delta = %v", delta)
	}
	// Late arrivals below the watermark stay out.
	if d := tab.mergeDelta(&table{entries: map[key]record{old: {Version: 4}}}); !d.empty() {
		t.Fatalf("accepted %v", d)
	}
}

func TestEncodeChunks(t *testing.T) {
	now := time.Now()
	tab := newTable(now)
	for i := range 5000 {
		k := key{Origin: peerName(t, 1+i%3), Hostname: fmt.Sprintf("container-%d.weave.local.", i),
			Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Container: fmt.Sprintf("c%d", i)}
		tab.entries[k] = record{Version: uint64(i + 1), Tombstone: i%7 == 0, Expires: now.Add(time.Minute)}
	}
	tab.retired[peerName(t, 4)] = 77
	parts := tab.Encode()
	if len(parts) < 2 {
		t.Fatalf("%d parts for 5000 entries", len(parts))
	}
	for _, p := range parts {
		if len(p) > maxChunk+1024 {
			t.Fatalf("part of %d bytes", len(p))
		}
	}
	checkRoundTrip(t, tab)
}

func TestEncodeSkipsDyingTombstones(t *testing.T) {
	now := time.Now()
	tab := newTable(now)
	k := key{Origin: peerName(t, 1), Hostname: "a.weave.local.", Addr: ip("10.0.0.1"), Container: "a"}
	tab.entries[k] = record{Version: 1, Tombstone: true, Expires: now.Add(500 * time.Millisecond)}
	got, err := decodeTable(tab.Encode()[0], now)
	if err != nil || len(got.entries) != 0 {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	now := time.Now()
	good := func() []byte {
		tab := newTable(now)
		tab.entries[key{Origin: peerName(t, 1), Hostname: "a.weave.local.", Addr: ip("10.0.0.1"), Container: "a"}] = record{Version: 1}
		return tab.Encode()[0]
	}()
	if _, err := decodeTable(good, now); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":          {},
		"trailing":       append(bytes.Clone(good), 0),
		"truncated":      good[:len(good)-1],
		"huge count":     {1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad peer":       {1, 1, 3, 'x', 'y', 'z', 0, 0},
		"peer index":     {1, 0, 0, 1, 0},
		"unknown format": {2},
	}
	for name, msg := range cases {
		if _, err := decodeTable(msg, now); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	// Upper-case hostnames are not canonical.
	bad := bytes.Replace(good, []byte("a.weave.local."), []byte("A.weave.local."), 1)
	if _, err := decodeTable(bad, now); err == nil {
		t.Error("non-canonical hostname decoded")
	}
}

func (t *table) String() string {
	return fmt.Sprintf("entries=%v retired=%v", t.entries, t.retired)
}
