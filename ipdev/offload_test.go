package ipdev

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"weavenet/tun"
)

// tcpPacket is an IPv4 TCP packet from src to dst with n bytes of payload,
// an IP header of ipHdrLen bytes and a TCP header of 32 (timestamps).
func tcpPacket(src, dst netip.Addr, ipHdrLen, n int) []byte {
	const tcpHdrLen = 32
	p := make([]byte, ipHdrLen+tcpHdrLen+n)
	p[0] = 0x40 | byte(ipHdrLen/4)
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	p[6] = 0x40 // DF
	p[8], p[9] = 64, 6
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	tcp := p[ipHdrLen:]
	binary.BigEndian.PutUint16(tcp[0:2], 40000)
	binary.BigEndian.PutUint16(tcp[2:4], 5201)
	binary.BigEndian.PutUint32(tcp[4:8], 1000)
	tcp[12], tcp[13] = tcpHdrLen/4<<4, 0x10 // ACK
	for i := ipHdrLen + tcpHdrLen; i < len(p); i++ {
		p[i] = byte(i * 7)
	}
	return p
}

// kernelGSO is the header a TUN with TSO puts before a TCP super-packet:
// HdrLen is the length of the kernel buffer's linear part, not of the
// headers.
func kernelGSO(ipHdrLen int) tun.VirtioNetHdr {
	return tun.VirtioNetHdr{
		Flags: tun.VirtioNetHdrFNeedsCsum, GSOType: tun.VirtioNetHdrGSOTCPv4,
		HdrLen: 1200, GSOSize: 1448, CsumStart: uint16(ipHdrLen), CsumOffset: 16,
	}
}

func TestHeaderTranslation(t *testing.T) {
	src, dst := ourAddr.Addr(), peerAddr
	super := tcpPacket(src, dst, 20, 40000)
	withOpts := tcpPacket(src, dst, 24, 9000)
	ecn := kernelGSO(20)
	ecn.GSOType |= tun.VirtioNetHdrGSOECN
	for _, c := range []struct {
		name   string
		pkt    []byte
		kernel tun.VirtioNetHdr // as the TUN reads or takes it
		frame  tun.VirtioNetHdr // as the router has it
	}{
		{"plain", ipPacket(src, dst, 100), tun.VirtioNetHdr{}, tun.VirtioNetHdr{}},
		{"checksum verified", ipPacket(src, dst, 100),
			tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFDataValid}, tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFDataValid}},
		{"UDP partial checksum", ipPacket(src, dst, 100),
			tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, CsumStart: 20, CsumOffset: 6},
			tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, CsumStart: 34, CsumOffset: 6}},
		{"TCP super-packet", super, kernelGSO(20),
			tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, GSOType: tun.VirtioNetHdrGSOTCPv4, HdrLen: 14 + 20 + 32, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}},
		{"TCP super-packet with ECN", super, ecn,
			tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, GSOType: tun.VirtioNetHdrGSOTCPv4 | tun.VirtioNetHdrGSOECN, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}},
		{"TCP super-packet with IP options", withOpts, kernelGSO(24),
			tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, GSOType: tun.VirtioNetHdrGSOTCPv4, HdrLen: 14 + 24 + 32, GSOSize: 1448, CsumStart: 38, CsumOffset: 16}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// TUN → router, in the router's buffer.
			b := make([]byte, frameHead+len(c.pkt))
			c.kernel.Encode(b[ethHdrLen:])
			copy(b[frameHead:], c.pkt)
			if !fromTUN(b, len(b)) {
				t.Fatalf("fromTUN refused %+v", c.kernel)
			}
			var got tun.VirtioNetHdr
			_ = got.Decode(b)
			if got != c.frame {
				t.Errorf("frame header %+v, want %+v", got, c.frame)
			}
			if !bytes.Equal(b[frameHead:], c.pkt) {
				t.Error("fromTUN moved or changed the packet")
			}
			// Router → TUN: the offsets shrink back; HdrLen is the headers'.
			back, ok := toTUN(c.frame, c.pkt)
			if !ok {
				t.Fatalf("toTUN refused %+v", c.frame)
			}
			want := c.kernel
			if want.GSOType == tun.VirtioNetHdrGSONone {
				want.HdrLen, want.GSOSize = 0, 0
			} else {
				want.HdrLen = c.frame.HdrLen - ethHdrLen
			}
			if back != want {
				t.Errorf("TUN header %+v, want %+v", back, want)
			}
		})
	}
}

func TestHeaderTranslationRefuses(t *testing.T) {
	src, dst := ourAddr.Addr(), peerAddr
	super := tcpPacket(src, dst, 20, 4000)
	gso := func(f func(*tun.VirtioNetHdr)) tun.VirtioNetHdr {
		h := kernelGSO(20)
		f(&h)
		return h
	}
	udp := ipPacket(src, dst, 100)
	for _, c := range []struct {
		name string
		pkt  []byte
		h    tun.VirtioNetHdr
	}{
		{"checksum past the end", udp, tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, CsumStart: 20, CsumOffset: 99}},
		{"checksum inside the IP header", udp, tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, CsumStart: 10, CsumOffset: 6}},
		{"UDP segmentation", udp, tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, GSOType: tun.VirtioNetHdrGSOUDP, GSOSize: 50, CsumStart: 20, CsumOffset: 6}},
		{"TCPv6 segmentation of IPv4", super, gso(func(h *tun.VirtioNetHdr) { h.GSOType = tun.VirtioNetHdrGSOTCPv6 })},
		{"segmentation of UDP", udp, gso(func(*tun.VirtioNetHdr) {})},
		{"segmentation without checksum", super, gso(func(h *tun.VirtioNetHdr) { h.Flags = 0 })},
		{"segment size 0", super, gso(func(h *tun.VirtioNetHdr) { h.GSOSize = 0 })},
		{"checksum not TCP's", super, gso(func(h *tun.VirtioNetHdr) { h.CsumOffset = 6 })},
		{"checksum not at the TCP header", super, gso(func(h *tun.VirtioNetHdr) { h.CsumStart = 24 })},
		{"TCP header cut", super[:45], gso(func(*tun.VirtioNetHdr) {})},
	} {
		b := make([]byte, frameHead+len(c.pkt))
		c.h.Encode(b[ethHdrLen:])
		copy(b[frameHead:], c.pkt)
		if fromTUN(b, len(b)) {
			t.Errorf("%s: fromTUN took %+v", c.name, c.h)
		}
		// The same header seen from the frame side.
		fh := c.h
		fh.CsumStart += ethHdrLen
		if h, ok := toTUN(fh, c.pkt); ok {
			t.Errorf("%s: toTUN took %+v, made %+v", c.name, fh, h)
		}
	}
}

// FuzzFromTUN feeds arbitrary reads of a TUN (virtio header and packet) to
// the header translation. Whatever it accepts must describe the packet in
// the frame, leave the packet where it was, and translate back to a header
// that translates forward to the same again.
func FuzzFromTUN(f *testing.F) {
	seed := func(h tun.VirtioNetHdr, pkt []byte) {
		b := make([]byte, vnetHdrLen+len(pkt))
		h.Encode(b)
		copy(b[vnetHdrLen:], pkt)
		f.Add(b)
	}
	seed(tun.VirtioNetHdr{}, ipPacket(ourAddr.Addr(), peerAddr, 30))
	seed(tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, CsumStart: 20, CsumOffset: 6}, ipPacket(ourAddr.Addr(), peerAddr, 30))
	seed(kernelGSO(20), tcpPacket(ourAddr.Addr(), peerAddr, 20, 3000))
	seed(kernelGSO(24), tcpPacket(ourAddr.Addr(), peerAddr, 24, 100))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, read []byte) {
		if len(read) < vnetHdrLen {
			return // Read drops these before translating
		}
		b := make([]byte, ethHdrLen+len(read))
		copy(b[ethHdrLen:], read)
		pkt := read[vnetHdrLen:]
		if !fromTUN(b, len(b)) {
			return
		}
		if !bytes.Equal(b[frameHead:], pkt) {
			t.Fatal("fromTUN changed the packet")
		}
		var fh tun.VirtioNetHdr
		_ = fh.Decode(b)
		if fh.Flags&tun.VirtioNetHdrFNeedsCsum != 0 &&
			(fh.CsumStart < ethHdrLen+20 || int(fh.CsumStart)+int(fh.CsumOffset)+2 > ethHdrLen+len(pkt)) {
			t.Fatalf("checksum at %d+%d outside the frame's packet of %d", fh.CsumStart, fh.CsumOffset, len(pkt))
		}
		if fh.GSOType != tun.VirtioNetHdrGSONone &&
			(fh.HdrLen < ethHdrLen+40 || int(fh.HdrLen) > ethHdrLen+len(pkt) || fh.CsumStart >= fh.HdrLen || fh.GSOSize == 0) {
			t.Fatalf("GSO header %+v does not fit a packet of %d", fh, len(pkt))
		}
		th, ok := toTUN(fh, pkt)
		if !ok {
			t.Fatalf("toTUN refused %+v, made by fromTUN", fh)
		}
		th.Encode(b[ethHdrLen:])
		if !fromTUN(b, len(b)) {
			t.Fatalf("fromTUN refused %+v, made by toTUN", th)
		}
		var again tun.VirtioNetHdr
		_ = again.Decode(b)
		if again != fh {
			t.Fatalf("round trip %+v → %+v → %+v", fh, th, again)
		}
	})
}
