package ipdev

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
)

var (
	ourMAC   = mac{0x02, 0, 0, 0, 0, 0x01}
	peerMAC  = mac{0x02, 0, 0, 0, 0, 0x02}
	ourAddr  = netip.MustParsePrefix("10.32.0.1/12")
	peerAddr = netip.MustParseAddr("10.32.0.2")
)

func newTestDevice(t *testing.T, batch int) (*Device, *fakeTUN) {
	t.Helper()
	ft := newFakeTUN(batch)
	d, err := New(ft, Config{MAC: net.HardwareAddr(ourMAC[:]), Addrs: []netip.Prefix{ourAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	// The gratuitous ARP announcing our address comes first.
	p, dst := readARP(t, d)
	if p.op != arpRequest || p.senderIP != ourAddr.Addr() || p.targetIP != ourAddr.Addr() || dst != broadcastMAC {
		t.Fatalf("first frame %+v to %v, want a gratuitous ARP for %v", p, dst, ourAddr.Addr())
	}
	return d, ft
}

// ipPacket is an IPv4 packet from src to dst with n bytes of payload.
func ipPacket(src, dst netip.Addr, n int) []byte {
	p := make([]byte, 20+n)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	p[8], p[9] = 64, 17
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	for i := 20; i < len(p); i++ {
		p[i] = byte(i)
	}
	return p
}

// ethFrame is pkt in the router's form, from src to dst.
func ethFrame(dst, src mac, etherType uint16, pkt []byte) []byte {
	f := make([]byte, frameHead+len(pkt))
	copy(f[vnetHdrLen:], dst[:])
	copy(f[vnetHdrLen+6:], src[:])
	binary.BigEndian.PutUint16(f[vnetHdrLen+12:], etherType)
	copy(f[frameHead:], pkt)
	return f
}

func arpFrame(dst mac, p arpPacket) []byte {
	b := make([]byte, vnetHdrLen+minEthFrame)
	return b[:putARPFrame(b, dst, p.senderMAC, p)]
}

// readFrame is one Read, failing the test if it does not return within a
// few seconds.
func readFrame(t *testing.T, d *Device) []byte {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		b := make([]byte, frameHead+d.mtu)
		n, err := d.Read(b)
		ch <- res{b[:n], err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Read: %v", r.err)
		}
		if !bytes.Equal(r.b[:vnetHdrLen], make([]byte, vnetHdrLen)) {
			t.Fatalf("virtio header not blank: % x", r.b[:vnetHdrLen])
		}
		return r.b
	case <-time.After(5 * time.Second):
		t.Fatal("no frame from Read")
		return nil
	}
}

func readARP(t *testing.T, d *Device) (arpPacket, mac) {
	t.Helper()
	f := readFrame(t, d)
	eth := f[vnetHdrLen:]
	if binary.BigEndian.Uint16(eth[12:14]) != etherTypeARP {
		t.Fatalf("got ethertype %#x, want ARP", binary.BigEndian.Uint16(eth[12:14]))
	}
	if mac(eth[6:12]) != ourMAC {
		t.Fatalf("ARP from %v, want our MAC", mac(eth[6:12]))
	}
	p, ok := parseARP(eth[ethHdrLen:])
	if !ok {
		t.Fatalf("bad ARP packet % x", eth[ethHdrLen:])
	}
	return p, mac(eth[0:6])
}

// readIP reads a frame and checks it carries pkt to dst.
func readIP(t *testing.T, d *Device, dst mac, pkt []byte) {
	t.Helper()
	f := readFrame(t, d)
	want := ethFrame(dst, ourMAC, etherTypeIP4, pkt)
	if !bytes.Equal(f, want) {
		t.Fatalf("frame\n% x\nwant\n% x", f, want)
	}
}

func write(t *testing.T, d *Device, f []byte) {
	t.Helper()
	if n, err := d.Write(f); err != nil || n != len(f) {
		t.Fatalf("Write = %d, %v", n, err)
	}
}

func noFrame(t *testing.T, d *Device) {
	t.Helper()
	if len(d.ctrl) != 0 || d.ready.Load() != 0 {
		t.Fatalf("unexpected frame queued: %d ARP, %d held", len(d.ctrl), d.ready.Load())
	}
}

func TestAnswersARPForItsAddress(t *testing.T) {
	d, ft := newTestDevice(t, 1)
	write(t, d, arpFrame(broadcastMAC, arpPacket{op: arpRequest, senderMAC: peerMAC, senderIP: peerAddr, targetIP: ourAddr.Addr()}))
	p, dst := readARP(t, d)
	want := arpPacket{op: arpReply, senderMAC: ourMAC, senderIP: ourAddr.Addr(), targetMAC: peerMAC, targetIP: peerAddr}
	if p != want || dst != peerMAC {
		t.Fatalf("reply %+v to %v, want %+v to %v", p, dst, want, peerMAC)
	}
	// The asker is learned: a packet to it goes out at once.
	pkt := ipPacket(ourAddr.Addr(), peerAddr, 100)
	ft.in <- pkt
	readIP(t, d, peerMAC, pkt)

	// Requests for other addresses get no answer.
	write(t, d, arpFrame(broadcastMAC, arpPacket{op: arpRequest, senderMAC: peerMAC, senderIP: peerAddr, targetIP: netip.MustParseAddr("10.32.0.9")}))
	noFrame(t, d)
	if s := d.Stats(); s.ARPReplies != 1 || s.PacketsOut != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestResolvesHoldsAndReleases(t *testing.T) {
	d, ft := newTestDevice(t, 8)
	var pkts [][]byte
	for i := range 5 {
		pkts = append(pkts, ipPacket(ourAddr.Addr(), peerAddr, 50+i))
	}
	ft.in <- pkts[0]
	p, dst := readARP(t, d)
	want := arpPacket{op: arpRequest, senderMAC: ourMAC, senderIP: ourAddr.Addr(), targetIP: peerAddr}
	if p != want || dst != broadcastMAC {
		t.Fatalf("request %+v to %v, want %+v broadcast", p, dst, want)
	}
	// Four more while resolving: only the newest heldPerAddr wait.
	for _, pkt := range pkts[1:] {
		ft.in <- pkt
	}
	// A Read takes them in (holding them all) and waits.
	first := make(chan []byte, 1)
	go func() {
		b := make([]byte, frameHead+d.mtu)
		n, _ := d.Read(b)
		first <- b[:n]
	}()
	for deadline := time.Now().Add(5 * time.Second); d.Stats().Unresolved != 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want 2 unresolved", d.Stats())
		}
	}

	write(t, d, arpFrame(ourMAC, arpPacket{op: arpReply, senderMAC: peerMAC, senderIP: peerAddr, targetMAC: ourMAC, targetIP: ourAddr.Addr()}))
	if got, want := <-first, ethFrame(peerMAC, ourMAC, etherTypeIP4, pkts[2]); !bytes.Equal(got, want) {
		t.Fatalf("first released frame\n% x\nwant\n% x", got, want)
	}
	for _, pkt := range pkts[3:] {
		readIP(t, d, peerMAC, pkt)
	}
	next := ipPacket(ourAddr.Addr(), peerAddr, 10)
	ft.in <- next
	readIP(t, d, peerMAC, next)
}

func TestBroadcastAndMulticastNeedNoARP(t *testing.T) {
	d, ft := newTestDevice(t, 1)
	for _, c := range []struct {
		dst string
		mac mac
	}{
		{"255.255.255.255", broadcastMAC},
		{"10.47.255.255", broadcastMAC}, // 10.32.0.0/12's broadcast
		{"224.1.2.3", mac{0x01, 0x00, 0x5e, 0x01, 0x02, 0x03}},
		{"239.129.2.3", mac{0x01, 0x00, 0x5e, 0x01, 0x02, 0x03}},
	} {
		pkt := ipPacket(ourAddr.Addr(), netip.MustParseAddr(c.dst), 20)
		ft.in <- pkt
		readIP(t, d, c.mac, pkt)
	}
}

func TestUnwrapsFramesForUs(t *testing.T) {
	d, ft := newTestDevice(t, 1)
	pkt := ipPacket(peerAddr, ourAddr.Addr(), 6)
	f := ethFrame(ourMAC, peerMAC, etherTypeIP4, pkt)
	f = append(f, make([]byte, 60+vnetHdrLen-len(f))...) // Ethernet padding
	orig := append([]byte(nil), f...)
	write(t, d, f)
	if got := <-ft.out; !bytes.Equal(got, pkt) {
		t.Fatalf("TUN got % x, want % x", got, pkt)
	}
	if !bytes.Equal(f, orig) {
		t.Fatal("Write modified the caller's frame")
	}
	bc := ipPacket(peerAddr, netip.MustParseAddr("10.47.255.255"), 30)
	write(t, d, ethFrame(broadcastMAC, peerMAC, etherTypeIP4, bc))
	if got := <-ft.out; !bytes.Equal(got, bc) {
		t.Fatalf("TUN got % x, want the broadcast", got)
	}
	// Not for us, not IPv4, broken: nothing reaches the TUN.
	other := mac{0x02, 9, 9, 9, 9, 9}
	write(t, d, ethFrame(other, peerMAC, etherTypeIP4, pkt))
	write(t, d, ethFrame(ourMAC, peerMAC, 0x86dd, make([]byte, 40)))
	write(t, d, ethFrame(ourMAC, peerMAC, etherTypeIP4, pkt[:19]))
	write(t, d, f[:frameHead-1])
	bad := append([]byte(nil), pkt...)
	binary.BigEndian.PutUint16(bad[2:4], uint16(len(bad)+1)) // longer than the frame
	write(t, d, ethFrame(ourMAC, peerMAC, etherTypeIP4, bad))
	select {
	case got := <-ft.out:
		t.Fatalf("TUN got % x", got)
	default:
	}
	if s := d.Stats(); s.PacketsIn != 2 || s.Unsupported != 1 || s.Malformed != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestNeighbourExpiry(t *testing.T) {
	d, ft := newTestDevice(t, 1)
	base := int64(time.Hour) // ahead of the real ticker's clock
	d.tick(base)
	write(t, d, arpFrame(ourMAC, arpPacket{op: arpReply, senderMAC: peerMAC, senderIP: peerAddr, targetMAC: ourMAC, targetIP: ourAddr.Addr()}))
	pkt := ipPacket(ourAddr.Addr(), peerAddr, 10)

	// Fresh: straight out.
	d.tick(base + reachableTime/4)
	ft.in <- pkt
	readIP(t, d, peerMAC, pkt)

	// Ageing: out, plus a unicast request to renew it.
	d.tick(base + reachableTime*3/4)
	ft.in <- pkt
	readIP(t, d, peerMAC, pkt)
	p, dst := readARP(t, d)
	if p.op != arpRequest || dst != peerMAC || p.targetIP != peerAddr {
		t.Fatalf("refresh %+v to %v, want a unicast request", p, dst)
	}

	// Expired: swept by the tick, resolved again from scratch.
	d.tick(base + reachableTime + 1)
	ft.in <- pkt
	p, dst = readARP(t, d)
	if p.op != arpRequest || dst != broadcastMAC {
		t.Fatalf("after expiry %+v to %v, want a broadcast request", p, dst)
	}

	// Nobody answers: two more requests a second apart, then the held
	// packet is dropped and the entry is gone.
	now := base + reachableTime + 1
	for range maxProbes - 1 {
		now += retransmit
		d.tick(now)
		if p, dst := readARP(t, d); dst != broadcastMAC || p.targetIP != peerAddr {
			t.Fatalf("retry %+v to %v", p, dst)
		}
	}
	now += retransmit
	d.tick(now)
	noFrame(t, d)
	if s := d.Stats(); s.Unresolved != 1 {
		t.Fatalf("stats %+v, want one unresolved packet", s)
	}
	d.mu.Lock()
	n := len(d.neigh.m)
	d.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d neighbours left", n)
	}
}

func TestNeighbourTableIsBounded(t *testing.T) {
	tbl := newNeighbors(func(netip.Addr) {})
	for i := range maxNeighbors + 10 {
		ip := netip.AddrFrom4([4]byte{10, 32, byte(i >> 8), byte(i)})
		tbl.learn(ip, peerMAC, int64(i), true)
	}
	if len(tbl.m) != maxNeighbors {
		t.Fatalf("%d entries, want %d", len(tbl.m), maxNeighbors)
	}
	if _, ok := tbl.m[netip.AddrFrom4([4]byte{10, 32, 0, 0})]; ok {
		t.Fatal("the oldest entry survived")
	}
}

func TestNewValidates(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"no MAC", Config{}},
		{"multicast MAC", Config{MAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}}},
		{"IPv6 address", Config{MAC: net.HardwareAddr(ourMAC[:]), Addrs: []netip.Prefix{netip.MustParsePrefix("fd00::1/64")}}},
		{"tiny MTU", Config{MAC: net.HardwareAddr(ourMAC[:]), MTU: 100}},
	} {
		ft := newFakeTUN(1)
		if _, err := New(ft, c.cfg); err == nil {
			t.Errorf("%s: no error", c.name)
		} else if !bytes.Contains([]byte(err.Error()), []byte("Config.")) {
			t.Errorf("%s: error %q does not name the field", c.name, err)
		}
	}
}

func TestCloseEndsRead(t *testing.T) {
	ft := newFakeTUN(1)
	d, err := New(ft, Config{MAC: net.HardwareAddr(ourMAC[:])})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		b := make([]byte, 2048)
		for {
			if _, err := d.Read(b); err != nil {
				done <- err
				return
			}
		}
	}()
	d.Close()
	select {
	case err := <-done:
		if !errorsIsClosed(err) {
			t.Fatalf("Read after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked after Close")
	}
}

func errorsIsClosed(err error) bool { return isClosed(err) }
