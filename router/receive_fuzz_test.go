package router

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"weavenet/mesh"

	"weavenet/crypto"
)

type nopLogger struct{}

func (nopLogger) Printf(string, ...interface{}) {}

type discardDevice struct{ writes int }

func (d *discardDevice) Read([]byte) (int, error)    { return 0, net.ErrClosed }
func (d *discardDevice) Write(b []byte) (int, error) { d.writes++; return len(b), nil }
func (d *discardDevice) Close() error                { return nil }

// testPeerAddr is the UDP address of every test peer: datagrams naming one
// of them as sender must come from it.
var testPeerAddr = netip.MustParseAddrPort("127.0.0.1:9")

// fuzzRouter is a router that is not started: its receive path runs
// synchronously, with two known peers (legacy framing and virtio framing)
// whose forwarders are registered but whose goroutines never run.
func fuzzRouter(t testing.TB) *Router {
	sock, err := listenUDP(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.close() })
	r := newRouter(&discardDevice{}, sock, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m, err := mesh.NewRouter(mesh.Config{Port: 1, ConnLimit: 10, ProtocolMinVersion: mesh.ProtocolMinVersion}, 0x0a0000000001, "fuzz", r, nopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	r.mesh, r.name = m, m.Ourself.Name
	for name, vnet := range map[mesh.PeerName]bool{1: false, 2: true} {
		f := &forwarder{r: r, remoteName: name, partialCsum: vnet, specials: make(chan special, 1), stop: make(chan struct{})}
		addr := netip.MustParseAddrPort("127.0.0.1:9")
		f.addr.Store(&addr)
		r.setForwarder(name, f, nil)
	}
	return r
}

// FuzzReceivePacket feeds arbitrary datagrams through the whole receive path
// (datagram, frames, control frames, MAC learning, delivery, relaying),
// from the named peer's address or another: it must never panic, whatever
// the bytes, and nothing from another address may reach the device.
func FuzzReceivePacket(f *testing.F) {
	legacy := encodeTestPacket(1, make([]byte, heartbeatLen), append(make([]byte, 12), 8, 0, 1))
	fast := encodeTestPacket(2, make([]byte, heartbeatLen), superFrame(false, make([]byte, 30)))
	for _, fromPeer := range []bool{true, false} {
		f.Add(legacy, fromPeer)
		f.Add(fast, fromPeer)
		f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0}, fromPeer)
	}
	r := fuzzRouter(f)
	buf := make([]byte, rxHeadroom+maxUDPPayload+1)
	elsewhere := netip.MustParseAddrPort("127.0.0.2:6783")
	dev := r.dev.(*discardDevice)
	f.Fuzz(func(t *testing.T, pkt []byte, fromPeer bool) {
		if len(pkt) > maxUDPPayload {
			return
		}
		from := testPeerAddr
		if !fromPeer {
			from = elsewhere
		}
		writes := dev.writes
		n := copy(buf[rxHeadroom:], pkt)
		r.receivePacket(buf, rxHeadroom, n, from)
		r.rx.flush(r.writeDevice)
		if !fromPeer && dev.writes != writes {
			t.Fatal("a datagram from another address reached the device")
		}
		for len(r.forwarder(1).specials) > 0 {
			<-r.forwarder(1).specials
		}
		for len(r.forwarder(2).specials) > 0 {
			<-r.forwarder(2).specials
		}
	})
}

func TestReceiveDoesNotAllocate(t *testing.T) {
	r := fuzzRouter(t)
	// A frame from peer 1 for us, to a broadcast MAC: learned, delivered, flooded (nowhere).
	eth := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 8, 0}, make([]byte, 100)...)
	pkt := encodeTestPacket(1, eth)
	putPeerName(pkt[6:12], 1)
	putPeerName(pkt[12:18], r.name)
	buf := make([]byte, rxHeadroom+maxUDPPayload+1)
	from := testPeerAddr
	allocs := pathAllocs(100, func() {
		n := copy(buf[rxHeadroom:], pkt)
		r.receivePacket(buf, rxHeadroom, n, from)
	})
	if allocs != 0 {
		t.Fatalf("receive path allocates %v times per datagram", allocs)
	}
	if r.dev.(*discardDevice).writes == 0 {
		t.Fatal("frame was not delivered")
	}
}

// TestSealedReplayAndTamperingDropped: a sealed datagram delivers once; the
// same bytes again, and a copy with one flipped bit, are dropped and counted.
func TestSealedReplayAndTamperingDropped(t *testing.T) {
	r := fuzzRouter(t)
	key := &crypto.Key{9, 9, 9}
	f := &forwarder{r: r, remoteName: 3, partialCsum: true, specials: make(chan special, 1), stop: make(chan struct{}),
		opener: crypto.NewOpener(key, false, crypto.NaCl)}
	f.addr.Store(&testPeerAddr)
	r.setForwarder(3, f, nil)
	peer := crypto.NewSealer(key, true, crypto.NaCl) // the other end dialled

	eth := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 3, 8, 0}, []byte("marker")...)
	payload := eth
	seal := func() []byte {
		pkt := make([]byte, packetHdrLen+crypto.Overhead+frameHdrLen+len(payload))
		putPeerName(pkt, 3)
		putFrameHeader(pkt[packetHdrLen+crypto.Overhead:], 3, r.name, len(payload))
		copy(pkt[packetHdrLen+crypto.Overhead+frameHdrLen:], payload)
		return peer.Seal(pkt, packetHdrLen)
	}
	buf := make([]byte, rxHeadroom+maxUDPPayload+1)
	from := testPeerAddr
	deliver := func(pkt []byte) { r.receivePacket(buf, rxHeadroom, copy(buf[rxHeadroom:], pkt), from) }
	dev := r.dev.(*discardDevice)

	first := seal()
	replay := bytes.Clone(first)
	deliver(first)
	if dev.writes != 1 {
		t.Fatalf("sealed frame not delivered: %d writes", dev.writes)
	}
	deliver(replay)
	tampered := seal()
	tampered[len(tampered)-3] ^= 0x10
	deliver(tampered)
	if dev.writes != 1 {
		t.Fatalf("replayed or tampered frame delivered: %d writes", dev.writes)
	}
	st := r.Stats()
	if st.Drops["replay"] != 1 || st.Drops["decrypt"] != 1 {
		t.Fatalf("drops = %v", st.Drops)
	}
}

// pathAllocs is testing.AllocsPerRun of fn, the fewest of three
// measurements. AllocsPerRun counts every goroutine's allocations (mesh's
// periodic gossip, on the wall clock's multiples of 30 s, among them), and
// under the race detector sync.Pool drops a quarter of what is put back:
// a path that allocates nothing sometimes measures 1 (2 runs in 100 of
// TestSendDoesNotAllocate under -race). One that allocates does so in all
// three.
func pathAllocs(runs int, fn func()) float64 {
	allocs := testing.AllocsPerRun(runs, fn)
	for i := 0; i < 2 && allocs != 0; i++ {
		allocs = min(allocs, testing.AllocsPerRun(runs, fn))
	}
	return allocs
}

// TestSendDoesNotAllocate: forwarding a frame to a peer, in the clear and
// sealed, allocates nothing.
func TestSendDoesNotAllocate(t *testing.T) {
	r := fuzzRouter(t)
	key := &crypto.Key{7}
	plain, sealed := r.forwarder(2), &forwarder{r: r, remoteName: 4, partialCsum: true, suite: crypto.AESGCM,
		sealer: crypto.NewSealer(key, true, crypto.AESGCM)}
	addr := netip.MustParseAddrPort("127.0.0.1:9")
	sealed.addr.Store(&addr)
	buf := make([]byte, txHeadroom+maxDeviceFrame+txTailroom)
	frame := append(make([]byte, 10), append([]byte{2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 1, 8, 0}, make([]byte, 1000)...)...)
	n := copy(buf[txHeadroom:], frame)
	for _, f := range []*forwarder{plain, sealed} {
		allocs := pathAllocs(100, func() {
			r.sendFrame(f, buf, txHeadroom, n, r.name, f.remoteName, nil)
		})
		if allocs != 0 {
			t.Errorf("sending to %v (sealed: %v) allocates %v times per frame", f.remoteName, f.sealer != nil, allocs)
		}
	}
	if r.Stats().FramesOut == 0 {
		t.Fatal("nothing was sent")
	}
}

// BenchmarkReceivePacket decodes a datagram of one frame, learns, delivers
// to a device that discards.
func BenchmarkReceivePacket(b *testing.B) {
	r := fuzzRouter(b)
	eth := append([]byte{2, 0, 0, 0, 0, 0x0a, 2, 0, 0, 0, 0, 1, 8, 0}, make([]byte, 1400)...)
	pkt := encodeTestPacket(1, eth)
	putPeerName(pkt[6:12], 1)
	putPeerName(pkt[12:18], r.name)
	buf := make([]byte, rxHeadroom+maxUDPPayload+1)
	from := testPeerAddr
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		n := copy(buf[rxHeadroom:], pkt)
		r.receivePacket(buf, rxHeadroom, n, from)
	}
}

// BenchmarkSendFrame encodes and sends one 1400-byte frame to a peer over
// loopback UDP, in the clear and sealed with each suite. Most of the time is
// the sendto system call.
func BenchmarkSendFrame(b *testing.B) {
	r := fuzzRouter(b)
	addr := netip.MustParseAddrPort("127.0.0.1:9")
	for _, tc := range []struct {
		name  string
		suite crypto.Suite
		seal  bool
	}{{"plain", 0, false}, {"nacl", crypto.NaCl, true}, {"aes-gcm", crypto.AESGCM, true}} {
		b.Run(tc.name, func(b *testing.B) {
			f := &forwarder{r: r, remoteName: 5, partialCsum: true, suite: tc.suite}
			if tc.seal {
				f.sealer = crypto.NewSealer(&crypto.Key{1}, true, tc.suite)
			}
			f.addr.Store(&addr)
			buf := make([]byte, txHeadroom+maxDeviceFrame+txTailroom)
			frame := append(make([]byte, 10), append([]byte{2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 1, 8, 0}, make([]byte, 1400)...)...)
			n := copy(buf[txHeadroom:], frame)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf[txHeadroom:], frame) // sealing encrypted the last one in place
				r.sendFrame(f, buf, txHeadroom, n, r.name, f.remoteName, nil)
			}
		})
	}
}
