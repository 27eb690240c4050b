package ipam

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"testing"

	"weavenet/mesh"
)

func sampleState() *gossipState {
	r := &ring{Range: mustPrefix("10.32.0.0/12")}
	r.claim([]mesh.PeerName{peerName(1), peerName(2)})
	_ = r.transfer(peerName(1), peerName(3), span{100, 200})
	return &gossipState{ring: r, paxos: paxosState{
		peerName(1): {Version: 3, Promised: ballot{2, peerName(1)}, Accepted: ballot{2, peerName(1)},
			Value: []mesh.PeerName{peerName(1), peerName(2)}},
		peerName(2): {Version: 1, Promised: ballot{2, peerName(1)}},
	}}
}

func sampleMessages() []*message {
	st := sampleState()
	sub := mustPrefix("10.32.4.0/24")
	addr := netip.MustParseAddr("10.32.4.7")
	return []*message{
		{kind: kindState, state: st},
		{kind: kindState, state: &gossipState{ring: &ring{Range: DefaultRange}, paxos: paxosState{}}},
		{kind: kindSpaceRequest, subnet: sub},
		{kind: kindSpaceGrant, subnet: sub, state: st},
		{kind: kindSpaceRefused, subnet: sub},
		{kind: kindClaimRequest, addr: addr},
		{kind: kindClaimGrant, addr: addr, state: st},
		{kind: kindClaimRefused, addr: addr, reason: reasonInUse},
		{kind: kindHandover, state: st},
		{kind: kindHandoverAck},
		{kind: kindWantRing},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		b := encodeMessage(m)
		if b[0] != formatVersion || b[1] != m.kind {
			t.Fatalf("header %x", b[:2])
		}
		got, err := decodeMessage(b)
		if err != nil {
			t.Fatalf("kind %d: %v", m.kind, err)
		}
		if !bytes.Equal(encodeMessage(got), b) {
			t.Fatalf("kind %d: round trip differs", m.kind)
		}
		if m.state != nil && (!got.state.ring.equal(m.state.ring) || !got.state.paxos.equal(m.state.paxos)) {
			t.Fatalf("kind %d: state differs", m.kind)
		}
		// Every truncation fails cleanly.
		for i := range len(b) - 1 {
			if _, err := decodeMessage(b[:i]); err == nil {
				t.Fatalf("kind %d: truncated to %d bytes decoded", m.kind, i)
			}
		}
		if _, err := decodeMessage(append(b, 0)); err == nil {
			t.Fatalf("kind %d: trailing byte accepted", m.kind)
		}
	}
}

func TestCodecRejectsUnknownVersion(t *testing.T) {
	b := encodeMessage(sampleMessages()[0])
	b[0] = 2
	if _, err := decodeMessage(b); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("version 2: %v", err)
	}
	b[0], b[1] = formatVersion, 99
	if _, err := decodeMessage(b); err == nil {
		t.Fatal("unknown kind accepted")
	}
	if _, err := decodeStoredRing([]byte{9}); !errors.Is(err, ErrUnknownVersion) {
		t.Fatal(err)
	}
	if _, _, err := decodeAlloc([]byte{10, 0, 0, 1}, []byte{9, 24, 'x'}); !errors.Is(err, ErrUnknownVersion) {
		t.Fatal(err)
	}
}

func TestCodecRejectsBadRings(t *testing.T) {
	enc := func(r *ring) []byte {
		return encodeMessage(&message{kind: kindState, state: &gossipState{ring: r, paxos: paxosState{}}})
	}
	good := sampleState().ring
	bad := []*ring{
		{Range: good.Range, Seeds: good.Seeds, Entries: []entry{{Token: 5, Peer: 1}}},                      // not at 0
		{Range: good.Range, Seeds: good.Seeds, Entries: []entry{{Token: 0, Peer: 1}, {Token: 0, Peer: 2}}}, // duplicate
		{Range: good.Range, Seeds: good.Seeds, Entries: []entry{{Token: 0, Peer: 1}, {Token: 1 << 20, Peer: 2}}},
		{Range: good.Range, Seeds: good.Seeds, Entries: []entry{{Token: 0, Peer: 0}}},
		{Range: good.Range, Seeds: []mesh.PeerName{2, 1}, Entries: []entry{{Token: 0, Peer: 1}}},
		{Range: good.Range, Entries: []entry{{Token: 0, Peer: 1}}},
		{Range: mustPrefix("10.0.0.0/31"), Seeds: []mesh.PeerName{1}, Entries: []entry{{Token: 0, Peer: 1}}},
	}
	for i, r := range bad {
		if _, err := decodeMessage(enc(r)); err == nil {
			t.Errorf("bad ring %d accepted", i)
		}
	}
}

func fuzzSeeds(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(encodeMessage(m))
	}
	f.Add([]byte{formatVersion, kindState, 10, 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0x0f})
}

// FuzzDecodeMessage: the decoder of every gossip message (broadcast,
// periodic gossip and unicast) never panics, and what it accepts
// re-encodes to the same bytes and merges like a join.
func FuzzDecodeMessage(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeMessage(m), b) {
			t.Fatalf("accepted a non-canonical encoding")
		}
		if m.state != nil {
			r := m.state.ring
			if mm, err := r.merge(r); err != nil || !mm.equal(r) {
				t.Fatalf("self-merge: %v", err)
			}
			g := m.state.Merge(m.state).(*gossipState)
			if !g.ring.equal(r) || !g.paxos.equal(m.state.paxos) {
				t.Fatal("GossipData self-merge changed it")
			}
		}
	})
}

// FuzzDecodeOnGossip feeds fuzzed messages to a live allocator through all
// three mesh entry points: no panic, no broken invariant.
func FuzzDecodeOnGossip(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		n := newTestNet(t)
		p := n.add(1, Config{Range: mustPrefix("10.32.0.0/12"), Init: consensusN(1)})
		if len(b) > 0 && b[len(b)-1]&1 == 1 { // half the time, with a ring
			if _, err := p.a.Allocate(context.Background(), "c", netip.Prefix{}); err != nil {
				t.Fatal(err)
			}
		}
		_ = p.a.OnGossipUnicast(peerName(2), b)
		_, _ = p.a.OnGossipBroadcast(peerName(2), b)
		_, _ = p.a.OnGossip(b)
		p.a.mu.Lock()
		defer p.a.mu.Unlock()
		if p.a.ring.ready() && p.a.ring.Entries[0].Token != 0 {
			t.Fatal("ring broken")
		}
	})
}

// FuzzDecodeStoredRing covers the Store's ring record.
func FuzzDecodeStoredRing(f *testing.F) {
	f.Add(appendRing([]byte{formatVersion}, sampleState().ring))
	f.Add(appendRing([]byte{formatVersion}, &ring{Range: DefaultRange}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeStoredRing(b)
		if err != nil {
			return
		}
		if !bytes.Equal(appendRing([]byte{formatVersion}, r), b) {
			t.Fatal("non-canonical")
		}
	})
}

// FuzzDecodeStoredPaxos covers the Store's consensus record.
func FuzzDecodeStoredPaxos(f *testing.F) {
	f.Add(appendPaxos([]byte{formatVersion}, sampleState().paxos))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeStoredPaxos(b)
		if err != nil {
			return
		}
		if !bytes.Equal(appendPaxos([]byte{formatVersion}, p), b) {
			t.Fatal("non-canonical")
		}
	})
}

// FuzzDecodeAlloc covers the Store's allocation records.
func FuzzDecodeAlloc(f *testing.F) {
	f.Add([]byte{10, 32, 0, 1}, encodeAlloc(allocation{Owner: "c1", Bits: 12}))
	f.Add(netip.MustParseAddr("fd00::1").AsSlice(), encodeAlloc(allocation{Owner: "c2", Bits: 64}))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		addr, al, err := decodeAlloc(k, v)
		if err != nil {
			return
		}
		if !bytes.Equal(addr.AsSlice(), k) || !bytes.Equal(encodeAlloc(al), v) {
			t.Fatal("round trip")
		}
	})
}
