package ipdev

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"weavenet/tun"
)

// FuzzWrite feeds arbitrary frames to the inbound decoder. Whatever comes
// in, Write must not fail or panic, anything it passes to the TUN must be
// an IPv4 packet cut from the frame, and any ARP frame it queues must be a
// well-formed reply from us.
func FuzzWrite(f *testing.F) {
	pkt := ipPacket(peerAddr, ourAddr.Addr(), 12)
	f.Add(ethFrame(ourMAC, peerMAC, etherTypeIP4, pkt))
	f.Add(ethFrame(broadcastMAC, peerMAC, etherTypeIP4, pkt))
	f.Add(arpFrame(broadcastMAC, arpPacket{op: arpRequest, senderMAC: peerMAC, senderIP: peerAddr, targetIP: ourAddr.Addr()}))
	f.Add(arpFrame(ourMAC, arpPacket{op: arpReply, senderMAC: peerMAC, senderIP: peerAddr, targetMAC: ourMAC, targetIP: ourAddr.Addr()}))
	f.Add(ethFrame(ourMAC, peerMAC, 0x86dd, make([]byte, 40)))
	f.Add([]byte{})
	ft := newFakeTUN(1)
	d, err := New(ft, Config{MAC: net.HardwareAddr(ourMAC[:]), Addrs: []netip.Prefix{ourAddr}})
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close()
	f.Fuzz(func(t *testing.T, frame []byte) {
		orig := append([]byte(nil), frame...)
		if n, err := d.Write(frame); err != nil || n != len(frame) {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if !bytes.Equal(frame, orig) {
			t.Fatal("Write modified its input")
		}
		select {
		case got := <-ft.out:
			if len(got) < 20 || got[0]>>4 != 4 || int(binary.BigEndian.Uint16(got[2:4])) != len(got) {
				t.Fatalf("TUN got a bad packet % x", got)
			}
			if !bytes.Contains(frame, got) {
				t.Fatal("TUN got bytes that were not in the frame")
			}
		default:
		}
		for len(d.ctrl) > 0 {
			c := <-d.ctrl
			eth := c.b[vnetHdrLen:c.n]
			p, ok := parseARP(eth[ethHdrLen:])
			if mac(eth[6:12]) != ourMAC || !ok || p.senderMAC != ourMAC || p.op == arpReply && p.senderIP != ourAddr.Addr() {
				t.Fatalf("queued a bad ARP frame % x", eth)
			}
		}
	})
}

// FuzzParseARP checks that what parseARP accepts survives a round trip.
func FuzzParseARP(f *testing.F) {
	b := arpFrame(broadcastMAC, arpPacket{op: arpRequest, senderMAC: peerMAC, senderIP: peerAddr, targetIP: ourAddr.Addr()})
	f.Add(b[frameHead:])
	f.Add(make([]byte, arpLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := parseARP(b)
		if !ok {
			return
		}
		var out [vnetHdrLen + minEthFrame]byte
		putARPFrame(out[:], broadcastMAC, p.senderMAC, p)
		q, ok := parseARP(out[frameHead:])
		if !ok || q != p {
			t.Fatalf("round trip %+v -> %+v", p, q)
		}
		if !bytes.Equal(out[frameHead:frameHead+arpLen], b[:arpLen]) {
			t.Fatalf("re-encoded % x, was % x", out[frameHead:frameHead+arpLen], b[:arpLen])
		}
	})
}

// FuzzTUNWrite feeds arbitrary frames, virtio header included, to the
// TUNDevice's inbound decoder. Whatever comes in, Write must not fail or
// panic or leave its input changed, and anything it writes to the TUN must
// be a virtio header that describes the IPv4 packet behind it, cut from the
// frame.
func FuzzTUNWrite(f *testing.F) {
	pkt := ipPacket(peerAddr, ourAddr.Addr(), 12)
	f.Add(ethFrame(ourMAC, peerMAC, etherTypeIP4, pkt))
	super := ethFrame(ourMAC, peerMAC, etherTypeIP4, tcpPacket(peerAddr, ourAddr.Addr(), 20, 3000))
	tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, GSOType: tun.VirtioNetHdrGSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}.Encode(super)
	f.Add(super)
	csum := ethFrame(ourMAC, peerMAC, etherTypeIP4, pkt)
	tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, CsumStart: 34, CsumOffset: 6}.Encode(csum)
	f.Add(csum)
	f.Add(arpFrame(broadcastMAC, arpPacket{op: arpRequest, senderMAC: peerMAC, senderIP: peerAddr, targetIP: ourAddr.Addr()}))
	f.Add([]byte{})
	ft := newFakeKernelTUN()
	d, err := newTUNDevice(ft, Config{MAC: net.HardwareAddr(ourMAC[:]), Addrs: []netip.Prefix{ourAddr}, MTU: 1376})
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close()
	f.Fuzz(func(t *testing.T, frame []byte) {
		orig := append([]byte(nil), frame...)
		if n, err := d.Write(frame); err != nil || n != len(frame) {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if !bytes.Equal(frame, orig) {
			t.Fatal("Write left its input changed")
		}
		for len(d.ctrl) > 0 {
			<-d.ctrl // ARP replies are FuzzWrite's business
		}
		select {
		case got := <-ft.out:
			var h tun.VirtioNetHdr
			if err := h.Decode(got); err != nil {
				t.Fatal(err)
			}
			p := got[vnetHdrLen:]
			if len(p) < 20 || p[0]>>4 != 4 || int(binary.BigEndian.Uint16(p[2:4])) != len(p) {
				t.Fatalf("TUN got a bad packet % x", p)
			}
			if !bytes.Equal(p, orig[frameHead:frameHead+len(p)]) {
				t.Fatal("TUN got a packet that was not the frame's")
			}
			if h.Flags&tun.VirtioNetHdrFNeedsCsum != 0 && int(h.CsumStart)+int(h.CsumOffset)+2 > len(p) {
				t.Fatalf("checksum at %d+%d past a packet of %d", h.CsumStart, h.CsumOffset, len(p))
			}
			if h.GSOType != tun.VirtioNetHdrGSONone && (int(h.HdrLen) > len(p) || h.GSOSize == 0) {
				t.Fatalf("GSO header %+v for a packet of %d", h, len(p))
			}
		default:
		}
	})
}
