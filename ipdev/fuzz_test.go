package ipdev

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
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
