package ipdev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"weavenet/tun"
)

func newTestTUNDevice(t *testing.T) (*TUNDevice, *fakeKernelTUN) {
	t.Helper()
	ft := newFakeKernelTUN()
	d, err := newTUNDevice(ft, Config{MAC: net.HardwareAddr(ourMAC[:]), Addrs: []netip.Prefix{ourAddr}, MTU: 1376})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	p, dst := readTUNARP(t, d)
	if p.op != arpRequest || p.senderIP != ourAddr.Addr() || dst != broadcastMAC {
		t.Fatalf("first frame %+v to %v, want a gratuitous ARP", p, dst)
	}
	return d, ft
}

// kernelRead is what a TUN's read gives for pkt: h, then the packet.
func kernelRead(h tun.VirtioNetHdr, pkt []byte) []byte {
	b := make([]byte, vnetHdrLen+len(pkt))
	h.Encode(b)
	copy(b[vnetHdrLen:], pkt)
	return b
}

// readTUNFrame is one Read, failing the test if it does not return within
// a few seconds.
func readTUNFrame(t *testing.T, d *TUNDevice) []byte {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		b := make([]byte, frameHead+maxPacket)
		n, err := d.Read(b)
		ch <- res{b[:n], err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Read: %v", r.err)
		}
		return r.b
	case <-time.After(5 * time.Second):
		t.Fatal("no frame from Read")
		return nil
	}
}

func readTUNARP(t *testing.T, d *TUNDevice) (arpPacket, mac) {
	t.Helper()
	f := readTUNFrame(t, d)
	eth := f[vnetHdrLen:]
	p, ok := parseARP(eth[ethHdrLen:])
	if binary.BigEndian.Uint16(eth[12:14]) != etherTypeARP || !ok {
		t.Fatalf("want an ARP frame, got % x", f[:min(len(f), 64)])
	}
	return p, mac(eth[0:6])
}

// checkFrame checks that f carries pkt from us to dst with virtio header h.
func checkFrame(t *testing.T, f []byte, h tun.VirtioNetHdr, dst mac, pkt []byte) {
	t.Helper()
	var got tun.VirtioNetHdr
	_ = got.Decode(f)
	if got != h {
		t.Errorf("frame header %+v, want %+v", got, h)
	}
	if want := ethFrame(dst, ourMAC, etherTypeIP4, pkt); !bytes.Equal(f[vnetHdrLen:], want[vnetHdrLen:]) {
		t.Errorf("frame of %d bytes is not the packet of %d to %v", len(f), len(pkt), dst)
	}
}

func learnPeer(t *testing.T, w interface{ Write([]byte) (int, error) }) {
	t.Helper()
	f := arpFrame(ourMAC, arpPacket{op: arpReply, senderMAC: peerMAC, senderIP: peerAddr, targetMAC: ourMAC, targetIP: ourAddr.Addr()})
	if n, err := w.Write(f); err != nil || n != len(f) {
		t.Fatalf("Write = %d, %v", n, err)
	}
}

// A TCP super-packet leaves as one super-frame, its header's offsets
// counted from the Ethernet header, before and after waiting for ARP.
func TestTUNDeviceReadsSuperFrames(t *testing.T) {
	d, ft := newTestTUNDevice(t)
	super := tcpPacket(ourAddr.Addr(), peerAddr, 20, 60000)
	frameHdr := tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, GSOType: tun.VirtioNetHdrGSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}

	// Unknown destination: the super-packet waits, an ARP request goes.
	ft.in <- kernelRead(kernelGSO(20), super)
	if p, dst := readTUNARP(t, d); p.op != arpRequest || p.targetIP != peerAddr || dst != broadcastMAC {
		t.Fatalf("got %+v to %v, want a request for %v", p, dst, peerAddr)
	}
	learnPeer(t, d)
	checkFrame(t, readTUNFrame(t, d), frameHdr, peerMAC, super)

	// Known destination: straight out.
	ft.in <- kernelRead(kernelGSO(20), super)
	checkFrame(t, readTUNFrame(t, d), frameHdr, peerMAC, super)

	// A small UDP packet with its checksum left to us.
	udp := ipPacket(ourAddr.Addr(), peerAddr, 100)
	ft.in <- kernelRead(tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, CsumStart: 20, CsumOffset: 6}, udp)
	checkFrame(t, readTUNFrame(t, d), tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, CsumStart: 34, CsumOffset: 6}, peerMAC, udp)

	// IPv6 and broken headers are dropped and counted; the next packet
	// goes.
	v6 := make([]byte, 60)
	v6[0] = 0x60
	ft.in <- kernelRead(tun.VirtioNetHdr{}, v6)
	ft.in <- kernelRead(tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, CsumStart: 20, CsumOffset: 200}, udp)
	ft.in <- make([]byte, 5)
	ft.in <- kernelRead(tun.VirtioNetHdr{}, udp)
	checkFrame(t, readTUNFrame(t, d), tun.VirtioNetHdr{}, peerMAC, udp)
	if s := d.Stats(); s.PacketsOut != 4 || s.Unsupported != 1 || s.Malformed != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// A coalesced super-frame from the router goes to the TUN in one write,
// its header's offsets counted from the IP header, and the router's buffer
// is as it was afterwards.
func TestTUNDeviceWritesSuperFrames(t *testing.T) {
	d, ft := newTestTUNDevice(t)
	super := tcpPacket(peerAddr, ourAddr.Addr(), 20, 30000)
	f := ethFrame(ourMAC, peerMAC, etherTypeIP4, super)
	tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, GSOType: tun.VirtioNetHdrGSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}.Encode(f)
	orig := append([]byte(nil), f...)
	if n, err := d.Write(f); err != nil || n != len(f) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if !bytes.Equal(f, orig) {
		t.Fatal("Write left the caller's frame changed")
	}
	got := <-ft.out
	want := kernelRead(tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, GSOType: tun.VirtioNetHdrGSOTCPv4, HdrLen: 52, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}, super)
	if !bytes.Equal(got, want) {
		t.Fatalf("TUN got % x..., want % x...", got[:64], want[:64])
	}

	// A lone segment with a partial checksum, padded as Ethernet pads.
	udp := ipPacket(peerAddr, ourAddr.Addr(), 10)
	f = ethFrame(ourMAC, peerMAC, etherTypeIP4, udp)
	tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, CsumStart: 34, CsumOffset: 6}.Encode(f)
	f = append(f, make([]byte, 20)...)
	if _, err := d.Write(f); err != nil {
		t.Fatal(err)
	}
	if got, want := <-ft.out, kernelRead(tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, CsumStart: 20, CsumOffset: 6}, udp); !bytes.Equal(got, want) {
		t.Fatalf("TUN got % x, want % x", got, want)
	}

	// A GSO header that does not fit the packet is dropped, not written.
	f = ethFrame(ourMAC, peerMAC, etherTypeIP4, udp)
	tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, GSOType: tun.VirtioNetHdrGSOTCPv4, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}.Encode(f)
	if n, err := d.Write(f); err != nil || n != len(f) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	select {
	case got := <-ft.out:
		t.Fatalf("TUN got % x", got)
	default:
	}
	if s := d.Stats(); s.PacketsIn != 2 || s.Malformed != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// An ARP request arriving while Read waits on the TUN is answered at once:
// the station wakes the Read with a past deadline, and the Read clears it
// before it waits again.
func TestTUNDeviceWakesBlockedRead(t *testing.T) {
	d, ft := newTestTUNDevice(t)
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, frameHead+maxPacket)
		n, err := d.Read(b)
		if err != nil {
			got <- nil
			return
		}
		got <- b[:n]
	}()
	time.Sleep(20 * time.Millisecond) // let it block; the test holds either way
	learnPeer(t, d)                   // nothing to send: no wake
	write := func(f []byte) {
		t.Helper()
		if n, err := d.Write(f); err != nil || n != len(f) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	write(arpFrame(broadcastMAC, arpPacket{op: arpRequest, senderMAC: peerMAC, senderIP: peerAddr, targetIP: ourAddr.Addr()}))
	select {
	case f := <-got:
		p, ok := parseARP(f[frameHead:])
		if !ok || p.op != arpReply || p.targetMAC != peerMAC || mac(f[vnetHdrLen:vnetHdrLen+6]) != peerMAC {
			t.Fatalf("got % x, want our ARP reply to the peer", f)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a Read blocked on the TUN was not woken for the ARP reply")
	}
	// The deadline is cleared again: the next Read waits for the TUN.
	pkt := ipPacket(ourAddr.Addr(), peerAddr, 10)
	ft.in <- kernelRead(tun.VirtioNetHdr{}, pkt)
	checkFrame(t, readTUNFrame(t, d), tun.VirtioNetHdr{}, peerMAC, pkt)
	ft.mu.Lock()
	defer ft.mu.Unlock()
	select {
	case <-ft.expired:
		t.Fatal("Read left the deadline in the past")
	default:
	}
	if ft.wakes != 2 { // the gratuitous ARP, the reply
		t.Errorf("%d wakes, want 2", ft.wakes)
	}
}

func TestTUNDeviceCloseEndsRead(t *testing.T) {
	d, _ := newTestTUNDevice(t)
	done := make(chan error, 1)
	go func() {
		b := make([]byte, frameHead+maxPacket)
		_, err := d.Read(b)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	d.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked after Close")
	}
	if _, err := d.Read(make([]byte, 100)); !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("Read into a short buffer: %v", err)
	}
}

func TestNewTUNValidates(t *testing.T) {
	if _, err := NewTUN(nil, Config{MAC: net.HardwareAddr(ourMAC[:])}); err == nil {
		t.Error("NewTUN(nil) succeeded")
	}
	if _, err := newTUNDevice(newFakeKernelTUN(), Config{MAC: net.HardwareAddr(ourMAC[:]), MTU: 70000}); err == nil || !bytes.Contains([]byte(err.Error()), []byte("Config.MTU")) {
		t.Errorf("MTU 70000: %v, want an error naming Config.MTU", err)
	}
}

func TestTUNDeviceAllocatesNothing(t *testing.T) {
	lt := &loopKernelTUN{read: kernelRead(kernelGSO(20), tcpPacket(ourAddr.Addr(), peerAddr, 20, 60000)), done: make(chan struct{})}
	d, err := newTUNDevice(lt, Config{MAC: net.HardwareAddr(ourMAC[:]), Addrs: []netip.Prefix{ourAddr}, MTU: 1376})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	learnPeer(t, d)
	b := make([]byte, frameHead+maxPacket)
	for range 4 { // the gratuitous ARP, then super-frames
		if _, err := d.Read(b); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(200, func() {
		if n, err := d.Read(b); err != nil || n != frameHead+60000+52 {
			t.Fatalf("Read = %d, %v", n, err)
		}
	}); n != 0 {
		t.Errorf("Read: %v allocations per super-frame", n)
	}
	in := ethFrame(ourMAC, peerMAC, etherTypeIP4, tcpPacket(peerAddr, ourAddr.Addr(), 20, 60000))
	tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, GSOType: tun.VirtioNetHdrGSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}.Encode(in)
	if n := testing.AllocsPerRun(200, func() {
		if _, err := d.Write(in); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Write: %v allocations per super-frame", n)
	}
	if s := d.Stats(); s.Malformed != 0 || s.PacketsIn == 0 {
		t.Errorf("stats %+v", s)
	}
}
