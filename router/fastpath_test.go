package router

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"weavenet/crypto"
	"weavenet/tun"
)

// The fast path's per-super-frame work: cut and send (segment, encode, seal,
// one sendmmsg of GSO runs), and receive (decode, open, coalesce, one write).

// tsoFrame is a 64 KiB-ish TCP super-frame in device form, as the TAP hands
// it over with TSO: a virtio header asking for segmentation, then the frame.
func tsoFrame(mss, payload int) []byte {
	eth := superFrame(false, make([]byte, payload))
	eth[ethHdrLen+20+13] = 0x18 // ACK|PSH, a bulk transfer's
	copy(eth[0:6], []byte{2, 0, 0, 0, 0, 9})
	frame := make([]byte, tun.VirtioNetHdrLen+len(eth))
	tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, GSOType: tun.VirtioNetHdrGSOTCPv4, HdrLen: 54, GSOSize: uint16(mss), CsumStart: 34, CsumOffset: 16}.Encode(frame)
	copy(frame[tun.VirtioNetHdrLen:], eth)
	return frame
}

// sealedPeer is a forwarder to 127.0.0.1:9 sealing with suite (none: plain).
func sealedPeer(r *Router, name uint64, suite crypto.Suite, seal bool) *forwarder {
	f := &forwarder{r: r, remoteName: 0, partialCsum: true, suite: suite}
	f.remoteName = peerNameFromBin([]byte{0, 0, 0, 0, 0, byte(name)})
	if seal {
		f.sealer = crypto.NewSealer(&crypto.Key{1}, true, suite)
	}
	addr := netip.MustParseAddrPort("127.0.0.1:9")
	f.addr.Store(&addr)
	return f
}

var suites = []struct {
	name  string
	suite crypto.Suite
	seal  bool
}{{"plain", 0, false}, {"aes-gcm", crypto.AESGCM, true}, {"nacl", crypto.NaCl, true}}

func TestSendSuperFrameDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers; run without -race")
	}
	r := fuzzRouter(t)
	frame := tsoFrame(1324, 44*1324)
	for _, s := range suites {
		f := sealedPeer(r, 6, s.suite, s.seal)
		before := r.Stats().FramesOut
		allocs := pathAllocs(20, func() {
			r.sendFrame(f, frame, 0, len(frame), r.name, f.remoteName, nil)
		})
		if allocs != 0 {
			t.Errorf("%s: sending a super-frame allocates %v times", s.name, allocs)
		}
		if sent := r.Stats().FramesOut - before; sent < 20*44 {
			t.Errorf("%s: %d datagrams sent for 21 super-frames of 44 segments", s.name, sent)
		}
	}
}

func BenchmarkSendSuperFrame(b *testing.B) {
	r := fuzzRouter(b)
	frame := tsoFrame(1324, 44*1324)
	for _, s := range suites {
		b.Run(s.name, func(b *testing.B) {
			f := sealedPeer(r, 6, s.suite, s.seal)
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				r.sendFrame(f, frame, 0, len(frame), r.name, f.remoteName, nil)
			}
		})
	}
}

// receiveRunFormat builds what one GRO read hands over for a super-frame:
// its segments as datagrams of the fast format (partial TCP checksums) or the
// classic one (complete), sealed as f's peer would.
func receiveRunFormat(tb testing.TB, r *Router, from uint64, sealer *crypto.Sealer, suite crypto.Suite, partial bool) (run []byte, size int) {
	frame := tsoFrame(1324, 44*1324)
	seg, err := newTCPSegmenter(frame[tun.VirtioNetHdrLen:], 1324)
	if err != nil {
		tb.Fatal(err)
	}
	name := peerNameFromBin([]byte{0, 0, 0, 0, 0, byte(from)})
	head := packetHdrLen + frameHdrLen
	if sealer != nil {
		head += suite.Headroom()
	}
	for {
		d := make([]byte, head+seg.maxLen()+crypto.MaxTailroom)
		n := seg.next(d[head:], partial)
		if n == 0 {
			return run, size
		}
		putPeerName(d, name)
		putFrameHeader(d[head-frameHdrLen:], name, r.name, n)
		pkt := d[:head+n]
		if sealer != nil {
			pkt = sealer.Seal(pkt, packetHdrLen)
		}
		if size == 0 {
			size = len(pkt)
		}
		run = append(run, pkt...)
	}
}

func BenchmarkReceiveSuperFrame(b *testing.B) {
	// classic: Weave Net's format, complete TCP checksums, which the
	// coalescer verifies before it merges segments.
	for _, s := range append(suites, struct {
		name  string
		suite crypto.Suite
		seal  bool
	}{"classic", 0, false}) {
		partial := s.name != "classic"
		b.Run(s.name, func(b *testing.B) {
			r := fuzzRouter(b)
			var sealer *crypto.Sealer
			f := &forwarder{r: r, remoteName: peerNameFromBin([]byte{0, 0, 0, 0, 0, 7}), partialCsum: partial, suite: s.suite}
			if s.seal {
				key := &crypto.Key{2}
				sealer = crypto.NewSealer(key, true, s.suite)
				f.opener = crypto.NewOpener(key, false, s.suite)
			}
			f.addr.Store(&testPeerAddr)
			r.setForwarder(f.remoteName, f, nil)
			buf := make([]byte, rxHeadroom+groBufLen+txTailroom)
			from := testPeerAddr
			dev := r.dev.(*discardDevice)
			b.ReportAllocs()
			var bytes int
			for b.Loop() {
				b.StopTimer()
				run, size := receiveRunFormat(b, r, 7, sealer, s.suite, partial) // fresh nonces: the replay window would drop repeats
				n := copy(buf[rxHeadroom:], run)
				bytes = n
				b.StartTimer()
				for off := 0; off < n; off += size {
					r.receivePacket(buf, rxHeadroom+off, min(size, n-off), from)
				}
				r.rx.flush(r.writeDevice)
			}
			b.SetBytes(int64(bytes))
			if dev.writes == 0 {
				b.Fatal("nothing delivered")
			}
		})
	}
}

// Every datagram sendSuperFrame sends is a whole segment: none empty, none
// malformed, all delivered, whatever the batch's runs look like.
func TestSuperFrameDatagramsAllDecode(t *testing.T) {
	tx, rx := fuzzRouter(t), fuzzRouter(t)
	rx.name++ // two routers, two names
	conn, err := listenUDP(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.close()
	f := sealedPeer(tx, 6, 0, false)
	to := conn.localAddr()
	f.addr.Store(&to)
	from := &forwarder{r: rx, remoteName: tx.name, partialCsum: true}
	txAddr := tx.LocalAddr()
	from.addr.Store(&txAddr)
	rx.setForwarder(tx.name, from, nil)
	for _, mss := range []int{1324, 500, 88} {
		frame := tsoFrame(mss, 44*mss-100) // the last segment short
		tx.sendFrame(f, frame, 0, len(frame), tx.name, rx.name, nil)
		want := (len(frame) - tun.VirtioNetHdrLen - 54 + mss - 1) / mss
		buf := make([]byte, rxHeadroom+groBufLen+txTailroom)
		rd := conn.reader(func() {})
		got := 0
		for got < want {
			conn.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, seg, addr, err := rd.next(buf[rxHeadroom : rxHeadroom+groBufLen])
			if err != nil {
				t.Fatalf("mss %d: %d of %d datagrams, then %v", mss, got, want, err)
			}
			for off := 0; off < n; off += seg {
				rx.receivePacket(buf, rxHeadroom+off, min(seg, n-off), addr)
				got++
			}
		}
		conn.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _, _, err := rd.next(buf[rxHeadroom : rxHeadroom+groBufLen]); err == nil {
			t.Fatalf("mss %d: a datagram of %d bytes more than the segments", mss, n)
		}
		if d := rx.Stats().Drops; d["malformed"] != 0 {
			t.Fatalf("mss %d: receiver dropped %v", mss, d)
		}
	}
}

// A GRO run relayed through this peer leaves again as one batch once the
// read is done, every datagram intact and relabelled as sent by us; also
// onto a sealed link, whose tags must not spill over the run's next
// datagram.
func TestRelayedRunLeavesAsOneBatch(t *testing.T) {
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) { testRelayedRun(t, s.suite, s.seal) })
	}
}

func testRelayedRun(t *testing.T, suite crypto.Suite, seal bool) {
	r := fuzzRouter(t)
	conn, err := listenUDP(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.close()
	a, c := peerNameFromBin([]byte{0, 0, 0, 0, 0, 0x21}), peerNameFromBin([]byte{0, 0, 0, 0, 0, 0x22})
	fa := &forwarder{r: r, remoteName: a, partialCsum: true}
	fa.addr.Store(&testPeerAddr)
	r.setForwarder(a, fa, nil)
	fc := &forwarder{r: r, remoteName: c, partialCsum: true, suite: suite}
	var opener *crypto.Opener
	if seal {
		key := &crypto.Key{3}
		fc.sealer = crypto.NewSealer(key, true, suite)
		opener = crypto.NewOpener(key, false, suite)
	}
	to := conn.localAddr()
	fc.addr.Store(&to)
	r.setForwarder(c, fc, nil)

	frame := tsoFrame(1324, 44*1324-100)
	seg, err := newTCPSegmenter(frame[tun.VirtioNetHdrLen:], 1324)
	if err != nil {
		t.Fatal(err)
	}
	var run []byte
	size, want := 0, 0
	for {
		d := make([]byte, packetHdrLen+frameHdrLen+seg.maxLen())
		n := seg.next(d[packetHdrLen+frameHdrLen:], true)
		if n == 0 {
			break
		}
		putPeerName(d, a)
		putFrameHeader(d[packetHdrLen:], a, c, n)
		pkt := d[:packetHdrLen+frameHdrLen+n]
		if size == 0 {
			size = len(pkt)
		}
		run = append(run, pkt...)
		want++
	}
	buf := make([]byte, rxHeadroom+groBufLen+txTailroom)
	n := copy(buf[rxHeadroom:], run)
	from := testPeerAddr
	before := r.Stats().FramesOut
	for off := 0; off < n; off += size {
		r.receivePacket(buf, rxHeadroom+off, min(size, n-off), from)
	}
	if r.Stats().FramesOut != before {
		t.Fatal("relayed before the read was done")
	}
	r.flushRelays(&r.relays)
	if got := r.Stats().FramesOut - before; got != uint64(want) {
		t.Fatalf("%d datagrams relayed, want %d", got, want)
	}

	rd := conn.reader(func() {})
	rbuf := make([]byte, groBufLen)
	for got := 0; got < want; {
		conn.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, seg, _, err := rd.next(rbuf)
		if err != nil {
			t.Fatalf("%d of %d relayed datagrams arrived, then %v", got, want, err)
		}
		for off := 0; off < n; off += seg {
			pkt := rbuf[off:min(off+seg, n)]
			sender, _ := senderOf(pkt)
			frameAt := packetHdrLen
			if opener != nil {
				plain, err := opener.Open(pkt[packetHdrLen:])
				if err != nil {
					t.Fatalf("datagram %d does not open: %v", got, err)
				}
				frameAt += suite.Headroom()
				pkt = pkt[:frameAt+len(plain)]
			}
			h, _, ok, err := nextFrame(pkt, frameAt)
			if sender != r.name || !ok || err != nil || h.Src != a || h.Dst != c {
				t.Fatalf("datagram %d: sender %v, frame %v→%v, %v %v", got, sender, h.Src, h.Dst, ok, err)
			}
			got++
		}
	}
}
