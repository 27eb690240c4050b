package router

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"weavenet/mesh"

	"weavenet/tun"
)

// Datagrams that are not what they claim: spoofed senders, unknown peers,
// MAC floods, corrupt TCP segments. All run on fuzzRouter, without mesh.

// hostileFrame is a sleeve datagram naming sender, holding one frame
// src→dst whose Ethernet source is smac, to broadcast, with payload.
func hostileFrame(sender, src, dst mesh.PeerName, smac mac, payload []byte) []byte {
	eth := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, smac[:]...)
	eth = append(append(eth, 0x08, 0x00), payload...)
	pkt := make([]byte, packetHdrLen+frameHdrLen, packetHdrLen+frameHdrLen+len(eth))
	putPeerName(pkt, sender)
	putFrameHeader(pkt[packetHdrLen:], src, dst, len(eth))
	return append(pkt, eth...)
}

func receiveFrom(r *Router, pkt []byte, from netip.AddrPort) {
	buf := make([]byte, rxHeadroom+maxUDPPayload+1)
	n := copy(buf[rxHeadroom:], pkt)
	r.receivePacket(buf, rxHeadroom, n, from)
	r.rx.flush(r.writeDevice)
	r.flushRelays(&r.relays)
}

// A datagram naming peer 1 as sender but not from peer 1's address is
// dropped: nothing is delivered, and the MAC it claims is neither learned
// nor moved away from the peer it lives behind.
func TestSpoofedSenderDropped(t *testing.T) {
	r := fuzzRouter(t)
	dev := r.dev.(*discardDevice)
	victim := mac{2, 0, 0, 0, 0, 0x42}
	// The MAC lives behind peer 2, as its own datagram says.
	receiveFrom(r, hostileFrame(2, 2, r.name, victim, []byte("real")), testPeerAddr)
	if owner, ok := r.macs.lookup(victim); !ok || owner != 2 || dev.writes != 1 {
		t.Fatalf("peer 2's frame: owner %v %v, %d writes", owner, ok, dev.writes)
	}
	attacker := netip.MustParseAddrPort("127.0.0.2:6783")
	for _, from := range []netip.AddrPort{attacker, netip.AddrPortFrom(testPeerAddr.Addr(), 6783)} {
		receiveFrom(r, hostileFrame(1, 1, r.name, victim, []byte("spoof")), from)
	}
	if dev.writes != 1 {
		t.Errorf("spoofed frames delivered: %d writes", dev.writes)
	}
	if owner, _ := r.macs.lookup(victim); owner != 2 {
		t.Errorf("spoofed frames moved the MAC to %v", owner)
	}
	if d := r.Stats().Drops; d["spoofed"] != 2 {
		t.Errorf("drops = %v, want 2 spoofed", d)
	}
	// The real peer 1, from its address, still gets through.
	receiveFrom(r, hostileFrame(1, 1, r.name, mac{2, 0, 0, 0, 0, 1}, []byte("real")), testPeerAddr)
	if dev.writes != 2 {
		t.Errorf("peer 1's own frame: %d writes, want 2", dev.writes)
	}
}

// A heartbeat from an address other than the peer's reaches the forwarder
// (which then moves the peer's address) only if it bears the connection's
// ID; other control frames from elsewhere are dropped.
func TestSpoofedHeartbeat(t *testing.T) {
	r := fuzzRouter(t)
	f := r.forwarder(1)
	f.connUID = 0x1234
	heartbeat := func(uid uint64) []byte {
		eth := make([]byte, heartbeatLen)
		binary.BigEndian.PutUint64(eth[ethHdrLen:], uid)
		pkt := make([]byte, packetHdrLen+frameHdrLen)
		putPeerName(pkt, 1)
		putFrameHeader(pkt[packetHdrLen:], 1, r.name, len(eth))
		return append(pkt, eth...)
	}
	moved := netip.MustParseAddrPort("127.0.0.3:6783")
	receiveFrom(r, heartbeat(0x9999), moved)
	if len(f.specials) != 0 {
		t.Fatal("a heartbeat with a made-up ID from another address was queued")
	}
	receiveFrom(r, heartbeat(0x1234), moved)
	if len(f.specials) != 1 {
		t.Fatal("the connection's heartbeat from a new address was not queued")
	}
	if s := <-f.specials; s.from != moved || s.uid != 0x1234 {
		t.Fatalf("queued %+v", s)
	}
	if d := r.Stats().Drops; d["spoofed"] != 1 {
		t.Errorf("drops = %v, want 1 spoofed", d)
	}
}

// Datagrams naming a sender we have no connection with, and frames naming
// a source or destination peer outside the topology, are dropped and
// counted without asking mesh; a relayed frame, whose source is a peer in
// the topology behind the neighbour that sent it, is delivered and its MAC
// learned behind its source.
func TestUnknownPeerDropped(t *testing.T) {
	r := fuzzRouter(t)
	dev := r.dev.(*discardDevice)
	const far, nowhere = 5, 0x77
	r.routes.Store(&routeView{testRoutes{far: {}, r.name: {}}})

	receiveFrom(r, hostileFrame(nowhere, nowhere, r.name, mac{2, 0, 0, 0, 0, 7}, nil), testPeerAddr)
	receiveFrom(r, hostileFrame(1, nowhere, r.name, mac{2, 0, 0, 0, 0, 8}, nil), testPeerAddr)
	receiveFrom(r, hostileFrame(1, 1, nowhere, mac{2, 0, 0, 0, 0, 9}, nil), testPeerAddr)
	if dev.writes != 0 || r.Stats().FramesOut != 0 {
		t.Fatalf("frames naming unknown peers went somewhere: %d writes, %d sent", dev.writes, r.Stats().FramesOut)
	}
	if d := r.Stats().Drops; d["unknown_peer"] != 3 {
		t.Fatalf("drops = %v, want 3 unknown_peer", d)
	}
	for _, m := range []mac{{2, 0, 0, 0, 0, 7}, {2, 0, 0, 0, 0, 8}} {
		if _, ok := r.macs.lookup(m); ok {
			t.Errorf("MAC %v learned from a frame naming an unknown peer", m)
		}
	}

	relayed := mac{2, 0, 0, 0, 0, 5}
	receiveFrom(r, hostileFrame(1, far, r.name, relayed, []byte("via 1")), testPeerAddr)
	if dev.writes != 1 {
		t.Fatalf("relayed frame: %d writes, want 1", dev.writes)
	}
	if owner, ok := r.macs.lookup(relayed); !ok || owner != far {
		t.Errorf("relayed frame's MAC learned behind %v %v, want %v", owner, ok, mesh.PeerName(far))
	}
}

// relay tells a destination outside the topology from one in it that has
// no route; flood follows the table's broadcast hops.
func TestRouteTableDecides(t *testing.T) {
	r := fuzzRouter(t)
	const unreachable, viaTwo = 6, 7
	r.routes.Store(&routeView{testRoutes{unreachable: {}, viaTwo: {hop: 2, hasHop: true}, 1: {broadcast: []mesh.PeerName{2}}}})
	frame := append(make([]byte, tun.VirtioNetHdrLen), hostileFrame(0, 0, 0, mac{2, 0, 0, 0, 0, 1}, make([]byte, 50))[packetHdrLen+frameHdrLen:]...)
	buf := make([]byte, txHeadroom+len(frame)+txTailroom)
	send := func(dst mesh.PeerName) {
		n := copy(buf[txHeadroom:], frame)
		r.relay(buf, txHeadroom, n, r.name, dst, nil)
	}
	send(unreachable)
	send(0x99)
	if d := r.Stats().Drops; d["no_route"] != 1 || d["unknown_peer"] != 1 {
		t.Fatalf("drops = %v, want one no_route and one unknown_peer", d)
	}
	send(viaTwo)
	if r.Stats().FramesOut != 1 {
		t.Fatalf("frame for a peer routed via 2: %d sent", r.Stats().FramesOut)
	}
	n := copy(buf[txHeadroom:], frame)
	r.flood(buf, txHeadroom, n, 1)
	if r.Stats().FramesOut != 2 {
		t.Fatalf("flood from 1: %d sent in all, want 2", r.Stats().FramesOut)
	}
}

// A flooded frame from a peer that our view of the source's broadcast tree
// puts after us has come round a loop: it is dropped and counted, neither
// delivered nor flooded again. From a peer before us it is both.
func TestFloodLoopDropped(t *testing.T) {
	r := fuzzRouter(t)
	dev := r.dev.(*discardDevice)
	const src = 5
	// Peer 1 relays src's frames to us; in our view, we relay them to 2.
	r.routes.Store(&routeView{testRoutes{src: {broadcast: []mesh.PeerName{2}}, r.name: {}}})
	receiveFrom(r, hostileFrame(1, src, r.name, mac{2, 0, 0, 0, 0, 5}, []byte("from upstream")), testPeerAddr)
	if dev.writes != 1 || r.Stats().FramesOut != 1 {
		t.Fatalf("frame from before us: %d writes, %d sent; want 1 and 1", dev.writes, r.Stats().FramesOut)
	}
	// Now we would relay src's frames to 1: one from 1 has looped.
	r.routes.Store(&routeView{testRoutes{src: {broadcast: []mesh.PeerName{1, 2}}, r.name: {}}})
	receiveFrom(r, hostileFrame(1, src, r.name, mac{2, 0, 0, 0, 0, 5}, []byte("round a loop")), testPeerAddr)
	if dev.writes != 1 || r.Stats().FramesOut != 1 {
		t.Fatalf("looped frame: %d writes, %d sent; want it dropped", dev.writes, r.Stats().FramesOut)
	}
	if d := r.Stats().Drops["loop"]; d != 1 {
		t.Fatalf("loop drops = %d, want 1", d)
	}
}

// Of two connections to one peer confirmed at once (mesh settling a
// duplicate), the one stopped last must not leave the peer without a
// forwarder: the other is put back. A forwarder stopped before it was
// confirmed is never installed.
func TestForwarderPutBack(t *testing.T) {
	r := fuzzRouter(t)
	const peer = 7
	newF := func() *forwarder { return &forwarder{r: r, remoteName: peer, stop: make(chan struct{})} }
	kept, dropped := newF(), newF()
	r.setForwarder(peer, kept, nil)
	r.setForwarder(peer, dropped, nil) // confirmed after the kept one
	if r.forwarder(peer) != dropped {
		t.Fatal("the latest confirmed forwarder is not the one in use")
	}
	r.setForwarder(peer, nil, dropped)
	if r.forwarder(peer) != kept {
		t.Fatal("stopping the dropped connection's forwarder did not put the kept one back")
	}
	late := newF()
	r.setForwarder(peer, nil, late) // stopped
	r.setForwarder(peer, late, nil) // then its goroutine sees the confirmation
	if r.forwarder(peer) != kept {
		t.Fatal("a stopped forwarder was installed")
	}
	r.setForwarder(peer, nil, kept)
	if r.forwarder(peer) != nil {
		t.Fatal("a forwarder is left after every connection stopped")
	}
}

// testRoutes is a route table made by hand: every peer in it is known.
type testRoutes map[mesh.PeerName]struct {
	hop       mesh.PeerName
	hasHop    bool
	broadcast []mesh.PeerName
}

func (t testRoutes) Known(p mesh.PeerName) bool { _, ok := t[p]; return ok }
func (t testRoutes) Unicast(p mesh.PeerName) (mesh.PeerName, bool) {
	return t[p].hop, t[p].hasHop
}
func (t testRoutes) Broadcast(p mesh.PeerName) []mesh.PeerName { return t[p].broadcast }

// The MAC table never holds more than its limit; each MAC beyond it evicts
// one and is counted.
func TestMACTableBounded(t *testing.T) {
	r := fuzzRouter(t)
	r.macs.limit = 64
	for i := range 1000 {
		r.macs.now.Store(int64(i))
		r.learn(mac{2, 0, 0, 0, byte(i >> 8), byte(i)}, 1)
	}
	r.macs.mu.RLock()
	n := len(r.macs.m)
	r.macs.mu.RUnlock()
	if n != 64 {
		t.Fatalf("%d MACs in a table limited to 64", n)
	}
	if d := r.Stats().Drops["mac_table_full"]; d != 1000-64 {
		t.Fatalf("mac_table_full = %d, want %d", d, 1000-64)
	}
	if owner, ok := r.macs.lookup(mac{2, 0, 0, 0, 999 >> 8, 999 & 0xff}); !ok || owner != 1 {
		t.Fatal("the newest MAC is not in the table")
	}
	// Refreshing and moving known MACs needs no room.
	before := r.Stats().Drops["mac_table_full"]
	r.learn(mac{2, 0, 0, 0, 999 >> 8, 999 & 0xff}, 2)
	if r.Stats().Drops["mac_table_full"] != before {
		t.Fatal("moving a known MAC evicted another")
	}
}

// A classic-format segment with a wrong checksum is neither merged nor
// marked for offload: the run before it is written as it was, the bad one
// alone with its checksum as it came, and the run goes on after it.
func TestCoalesceRefusesBadChecksum(t *testing.T) {
	eth := superFrame(false, bytes.Repeat([]byte("0123456789abc"), 600))
	eth[ethHdrLen+20+13] = 0x10 // ACK
	segs := segments(t, eth, 1300, false)
	if len(segs) < 5 {
		t.Fatalf("%d segments", len(segs))
	}
	const bad = 2
	segs[bad][len(segs[bad])-1] ^= 0x01 // a flipped payload bit
	var st counters
	c := newCoalescer()
	c.stats = &st
	var got [][]byte
	write := func(f []byte) { got = append(got, bytes.Clone(f)) }
	for _, s := range segs {
		if !c.add(s) {
			c.flush(write)
			if !c.add(s) {
				write(s)
			}
		}
	}
	c.flush(write)
	if len(got) != 3 {
		t.Fatalf("%d writes, want 3 (the run before, the bad segment, the run after)", len(got))
	}
	var h tun.VirtioNetHdr
	_ = h.Decode(got[1])
	if h != (tun.VirtioNetHdr{}) || !bytes.Equal(got[1], segs[bad]) {
		t.Errorf("bad segment written as %+v, changed: %v", h, !bytes.Equal(got[1], segs[bad]))
	}
	for _, i := range []int{0, 2} {
		_ = h.Decode(got[i])
		if h.GSOType == tun.VirtioNetHdrGSONone {
			t.Errorf("write %d: good segments not coalesced", i)
		}
	}
	if st.drops[DropBadChecksum].Load() != 1 {
		t.Errorf("bad_checksum = %d, want 1", st.drops[DropBadChecksum].Load())
	}

	// A bad first segment starts no run either.
	c = newCoalescer()
	first := bytes.Clone(segs[0])
	first[len(first)-1] ^= 0x01
	got = nil
	if !c.add(first) || c.add(segs[1]) {
		t.Fatal("a segment followed a bad first one")
	}
	c.flush(write)
	if len(got) != 1 || !bytes.Equal(got[0], first) {
		t.Fatal("the bad first segment was not written as it came")
	}
}

// Receiving a classic-format super-frame, checksums verified, allocates
// nothing either.
func TestReceiveClassicSuperFrameDoesNotAllocate(t *testing.T) {
	r := fuzzRouter(t)
	f := &forwarder{r: r, remoteName: peerNameFromBin([]byte{0, 0, 0, 0, 0, 7})}
	f.addr.Store(&testPeerAddr)
	r.setForwarder(f.remoteName, f, nil)
	run, size := receiveRunFormat(t, r, 7, nil, 0, false)
	buf := make([]byte, rxHeadroom+groBufLen+txTailroom)
	dev := r.dev.(*discardDevice)
	receive := func() {
		n := copy(buf[rxHeadroom:], run)
		for off := 0; off < n; off += size {
			r.receivePacket(buf, rxHeadroom+off, min(size, n-off), testPeerAddr)
		}
		r.rx.flush(r.writeDevice)
	}
	if allocs := pathAllocs(20, receive); allocs != 0 {
		t.Fatalf("receiving a classic super-frame allocates %v times", allocs)
	}
	if dev.writes%21 != 0 || r.Stats().Drops["bad_checksum"] != 0 {
		t.Fatalf("%d writes for a multiple of 21 super-frames, drops %v", dev.writes, r.Stats().Drops)
	}
}

// BenchmarkReceiveUnsealedRun receives one super-frame's run of unsealed
// datagrams (the same bytes each time: nothing to replay-check) in the fast
// format (partial checksums) and the classic one (complete checksums,
// verified before coalescing), without BenchmarkReceiveSuperFrame's
// per-iteration setup.
func BenchmarkReceiveUnsealedRun(b *testing.B) {
	for _, partial := range []bool{true, false} {
		b.Run(map[bool]string{true: "fast", false: "classic"}[partial], func(b *testing.B) {
			r := fuzzRouter(b)
			f := &forwarder{r: r, remoteName: peerNameFromBin([]byte{0, 0, 0, 0, 0, 7}), partialCsum: partial}
			f.addr.Store(&testPeerAddr)
			r.setForwarder(f.remoteName, f, nil)
			run, size := receiveRunFormat(b, r, 7, nil, 0, partial)
			buf := make([]byte, rxHeadroom+groBufLen+txTailroom)
			b.SetBytes(int64(len(run)))
			b.ReportAllocs()
			for b.Loop() {
				n := copy(buf[rxHeadroom:], run)
				for off := 0; off < n; off += size {
					r.receivePacket(buf, rxHeadroom+off, min(size, n-off), testPeerAddr)
				}
				r.rx.flush(r.writeDevice)
			}
		})
	}
}

// On a fast link a complete TCP checksum leaves partial, taken on trust at
// the other end, so a segment whose complete checksum is wrong is dropped
// and counted rather than made good; one the kernel marked as verified, and
// a right one, leave.
func TestSendDropsBadChecksumOnFastLink(t *testing.T) {
	r := fuzzRouter(t)
	f := r.forwarder(2) // fast format
	seg := segments(t, superFrame(false, bytes.Repeat([]byte("x"), 500)), 1000, false)[0]
	bad := bytes.Clone(seg)
	bad[len(bad)-1] ^= 0x40
	valid := bytes.Clone(bad)
	tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFDataValid}.Encode(valid)
	buf := make([]byte, txHeadroom+len(seg)+txTailroom)
	for i, frame := range [][]byte{seg, bad, valid} {
		before := r.Stats()
		n := copy(buf[txHeadroom:], frame)
		r.sendFrame(f, buf, txHeadroom, n, r.name, f.remoteName, nil)
		sent, dropped := r.Stats().FramesOut-before.FramesOut, r.Stats().Drops["bad_checksum"]-before.Drops["bad_checksum"]
		if wantSent := i != 1; (sent == 1) != wantSent || (dropped == 1) == wantSent {
			t.Errorf("frame %d: sent %d, dropped %d", i, sent, dropped)
		}
	}
}
