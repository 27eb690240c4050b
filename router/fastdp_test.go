package router

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"weavenet/mesh"
)

func TestChoosePath(t *testing.T) {
	start := time.Unix(1000, 0)
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	var never time.Time
	for _, c := range []struct {
		name        string
		now         float64
		acked, seen [numProbeClasses]time.Time
		fast        bool
		why         string
		inProbes    bool
	}{
		{"fresh link, nothing yet", 0.5, [2]time.Time{}, [2]time.Time{}, false, "probing", false},
		{"both ways proven", 1, [2]time.Time{at(0.9), at(0.9)}, [2]time.Time{at(0.8), at(0.8)}, true, "", false},
		{"one way proven only, still early", 1, [2]time.Time{at(0.9), at(0.9)}, [2]time.Time{}, false, "probing", false},
		{"port blocked towards the peer", 10, [2]time.Time{at(2), at(2)}, [2]time.Time{at(9.9), at(9.9)}, false, "no answer", false},
		{"never answered", 10, [2]time.Time{never, never}, [2]time.Time{at(9.9), at(9.9)}, false, "no answer", false},
		{"MTU too small towards the peer", 10, [2]time.Time{at(9.9), at(1)}, [2]time.Time{at(9.9), at(9.9)}, false, "MTU", false},
		{"port blocked here", 10, [2]time.Time{at(9.9), at(9.9)}, [2]time.Time{at(1), at(1)}, false, "blocked on this host", false},
		{"MTU too small from the peer", 10, [2]time.Time{at(9.9), at(9.9)}, [2]time.Time{at(9.9), never}, false, "full-sized", false},
		{"just within the timeout", 10, [2]time.Time{at(7.1), at(7.1)}, [2]time.Time{at(7.1), at(7.1)}, true, "", false},
		// Acknowledged inside the peer's probes: with none arriving, ours
		// are unanswered too, and the reason is the one we know.
		{"port blocked here, acks in probes", 10, [2]time.Time{at(2), at(2)}, [2]time.Time{at(2), at(2)}, false, "blocked on this host", true},
		{"port blocked towards the peer, acks in probes", 10, [2]time.Time{at(2), at(2)}, [2]time.Time{at(9.9), at(9.9)}, false, "no answer", true},
	} {
		fast, why := choosePath(probeTimes{now: at(c.now), start: start, acked: c.acked, seen: c.seen, acksInProbes: c.inProbes}, 4789)
		if fast != c.fast || !strings.Contains(why, c.why) {
			t.Errorf("%s: got %v %q, want %v and a reason with %q", c.name, fast, why, c.fast, c.why)
		}
	}
	// A starved daemon's late round: the acknowledged probe went 11 s ago,
	// but it was one of our last few, so the link stays; once more of ours
	// go unanswered, it does not.
	for gap, want := range map[uint32]bool{2: true, maxAckGap: true, maxAckGap + 1: false} {
		old := [2]time.Time{at(9), at(9)}
		fast, why := choosePath(probeTimes{now: at(20), start: start, acked: old, seen: [2]time.Time{at(19.9), at(19.9)},
			ackGap: [2]uint32{gap, gap}, acksInProbes: true}, 4789)
		if fast != want || !want && !strings.Contains(why, "no answer") {
			t.Errorf("acknowledged probe 11 s old, %d sent since: got %v %q, want %v", gap, fast, why, want)
		}
	}
}

func TestFdbChanges(t *testing.T) {
	const self, p1, p2, p3 = mesh.PeerName(1), mesh.PeerName(2), mesh.PeerName(3), mesh.PeerName(4)
	a1, a2 := netip.MustParseAddr("192.168.200.2"), netip.MustParseAddr("192.168.200.3")
	m := func(b byte) mac { return mac{0x02, 0, 0, 0, 0, b} }
	fast := map[mesh.PeerName]netip.Addr{p1: a1, p2: a2} // p3 is on the sleeve
	learned := map[mac]mesh.PeerName{
		m(1): p1,   // new: install
		m(2): p2,   // installed already: nothing
		m(3): p3,   // sleeve peer: nothing
		m(4): self, // moved here from p1: remove
		m(5): p2,   // moved from p1 to p2: install again
		m(7): p3,   // moved from p1 to a sleeve peer: remove
	}
	installed := map[mac]fdbEntry{
		m(2): {p2, a2},
		m(4): {p1, a1},
		m(5): {p1, a1},
		m(6): {p1, a1},                  // forgotten by the router but p1 is still fast: keep
		m(7): {p1, a1},                  // see above
		m(8): {p3, a2},                  // its peer left the fast datapath: remove
		m(9): {p2, netip.Addr{}.Next()}, // its peer's address changed: remove
	}
	add, del := fdbChanges(learned, installed, fast, nil)
	wantAdd := map[mac]fdbEntry{m(1): {p1, a1}, m(5): {p2, a2}}
	if len(add) != len(wantAdd) {
		t.Errorf("add %v, want %v", add, wantAdd)
	}
	for k, v := range wantAdd {
		if add[k] != v {
			t.Errorf("add[%v] = %v, want %v", k, add[k], v)
		}
	}
	slices.SortFunc(del, func(a, b mac) int { return int(a[5]) - int(b[5]) })
	if want := []mac{m(4), m(7), m(8), m(9)}; !slices.Equal(del, want) {
		t.Errorf("del %v, want %v", del, want)
	}
	// Applying the changes reaches a fixed point.
	for _, k := range del {
		delete(installed, k)
	}
	for k, v := range add {
		installed[k] = v
	}
	if add, del := fdbChanges(learned, installed, fast, nil); len(add)+len(del) != 0 {
		t.Errorf("not a fixed point: add %v del %v", add, del)
	}
	// A peer leaving the fast datapath takes all its entries with it.
	if _, del := fdbChanges(learned, installed, map[mesh.PeerName]netip.Addr{p2: a2}, nil); len(del) != 2 {
		t.Errorf("p1 left: del %v, want its 2 entries", del)
	}
	// An entry the kernel has not used for long goes once the router has
	// forgotten the MAC too; one the router still knows stays.
	stale := map[mac]bool{m(6): true, m(1): true}
	if _, del := fdbChanges(learned, installed, fast, stale); !slices.Equal(del, []mac{m(6)}) {
		t.Errorf("stale entries: del %v, want only the forgotten %v", del, m(6))
	}
}

func TestParseFastFeature(t *testing.T) {
	for v, ok := range map[string]bool{
		"vxlan 4789 22382": true, "vxlan 4789 0": true, "vxlan 0 1": false, "vxlan 70000 1": false,
		"vxlan 4789 16777216": false, "vxlan 4789": false, "gre 4789 1": false, "": false,
		"vxlan 4789 1 extra": false, "vxlan " + strings.Repeat("9", 40) + " 1": false,
	} {
		if _, _, got := parseFastFeature(v); got != ok {
			t.Errorf("parseFastFeature(%q) ok=%v, want %v", v, got, ok)
		}
	}
}

func TestProbeRoundTrip(t *testing.T) {
	p := probe{class: probeFull, from: 0x0211_2233_4455, to: 0x0266_7788_99aa, connUID: 1<<63 | 5, seq: 77, acks: [numProbeClasses]uint32{75, 76}}
	b := putProbe(make([]byte, 1400), 1390, p)
	got, err := decodeProbe(b)
	if err != nil || got != p {
		t.Fatalf("decode(encode(%+v)) = %+v, %v", p, got, err)
	}
	class, seq, err := decodeProbeAck(putProbeAck(p.class, p.seq))
	if err != nil || class != p.class || seq != p.seq {
		t.Fatalf("ack round trip: %d %d %v", class, seq, err)
	}
}

func FuzzDecodeProbe(f *testing.F) {
	f.Add(putProbe(make([]byte, 64), 60, probe{from: 1, to: 2, connUID: 3, seq: 4}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeProbe(b)
		if err != nil {
			return
		}
		if p.class >= numProbeClasses {
			t.Fatalf("class %d accepted", p.class)
		}
		again, err := decodeProbe(putProbe(make([]byte, len(b)), len(b), p))
		if err != nil || again != p {
			t.Fatalf("re-encoding %+v gives %+v, %v", p, again, err)
		}
	})
}

func FuzzDecodeProbeAck(f *testing.F) {
	f.Add(putProbeAck(1, 9))
	f.Fuzz(func(t *testing.T, b []byte) {
		if class, _, err := decodeProbeAck(b); err == nil && class >= numProbeClasses {
			t.Fatalf("class %d accepted", class)
		}
	})
}

// A peer offering featureProbeAcks acknowledges our probes inside its own:
// what counts is when the acknowledged probe went (a peer that stopped
// hearing ours repeats an old number), an older acknowledgement never
// takes that back, and nothing goes over the mesh connection. A peer
// without it gets a control message per probe.
func TestProbeAcksInProbes(t *testing.T) {
	now := time.Now()
	var controls int
	f := &forwarder{fast: &fastLink{usable: true, peerAcks: true}, sendControl: func(byte, []byte) error { controls++; return nil }}
	l := f.fast
	sent := func(seq uint32) int64 { return now.Add(-time.Duration(5-seq) * steadyProbeInterval).UnixNano() }
	for seq := uint32(1); seq <= 5; seq++ {
		l.sentAt[seq%uint32(len(l.sentAt))].Store(sent(seq))
		l.seq.Store(seq)
	}
	// Probe 5 went now, 4 one round ago, 1 four rounds ago.
	f.onProbe(probe{class: probeSmall, seq: 9, acks: [numProbeClasses]uint32{1, 4}}, now)
	if got := l.acked[probeSmall].Load(); got != sent(1) {
		t.Errorf("small: acknowledged probe sent at %v, want probe 1's", timeOf(got))
	}
	if got := l.acked[probeFull].Load(); got != sent(4) {
		t.Errorf("full: acknowledged probe sent at %v, want probe 4's", timeOf(got))
	}
	f.onProbe(probe{class: probeSmall, seq: 10, acks: [numProbeClasses]uint32{0, 2}}, now)
	if got := l.acked[probeFull].Load(); got != sent(4) {
		t.Errorf("an older acknowledgement took the full class back to %v", timeOf(got))
	}
	if choose := func(acked int64) bool {
		fast, _ := choosePath(probeTimes{now: now, start: now.Add(-time.Minute), acked: [numProbeClasses]time.Time{timeOf(acked), timeOf(acked)},
			seen: [numProbeClasses]time.Time{now, now}, acksInProbes: true}, 4789)
		return fast
	}; !choose(sent(4)) || choose(sent(1)) {
		t.Error("a probe acknowledged a round ago does not keep the link fast, or one of four rounds ago does")
	}
	if got := l.peerSeq[probeSmall].Load(); got != 10 {
		t.Errorf("peer's small seq = %d, want 10", got)
	}
	// A number we never sent, and an older probe of the peer's.
	l.acked[probeSmall].Store(0)
	f.onProbe(probe{class: probeSmall, seq: 3, acks: [numProbeClasses]uint32{6, 0}}, now)
	if l.acked[probeSmall].Load() != 0 || l.peerSeq[probeSmall].Load() != 10 {
		t.Error("an acknowledgement of an unsent probe counted, or the peer's seq went back")
	}
	if controls != 0 {
		t.Errorf("%d control messages to a peer that acknowledges in probes", controls)
	}
	f.fast.peerAcks = false
	f.onProbe(probe{class: probeFull, seq: 10}, now)
	if controls != 1 {
		t.Errorf("%d control messages to a peer without probe acks, want 1", controls)
	}
}
