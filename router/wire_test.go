package router

import (
	"bytes"
	"net/netip"
	"testing"

	"weavenet/mesh"
)

func encodeTestPacket(sender mesh.PeerName, frames ...[]byte) []byte {
	pkt := make([]byte, nameSize)
	putPeerName(pkt, sender)
	for i, f := range frames {
		h := make([]byte, frameHdrLen)
		putPeerName(h[0:6], mesh.PeerName(i+1))
		putPeerName(h[6:12], mesh.PeerName(i+100))
		h[12], h[13] = byte(len(f)>>8), byte(len(f))
		pkt = append(append(pkt, h...), f...)
	}
	return pkt
}

func TestDecodeFrames(t *testing.T) {
	pkt := encodeTestPacket(0x0a0b0c0d0e0f, []byte("hello"), []byte{}, bytes.Repeat([]byte{7}, 1500))
	sender, err := senderOf(pkt)
	if err != nil || sender != 0x0a0b0c0d0e0f {
		t.Fatalf("sender = %v, %v", sender, err)
	}
	var got [][]byte
	for off := packetHdrLen; ; {
		h, next, ok, err := nextFrame(pkt, off)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if h.Src != mesh.PeerName(len(got)+1) || h.Dst != mesh.PeerName(len(got)+100) {
			t.Errorf("frame %d: src %v dst %v", len(got), h.Src, h.Dst)
		}
		got = append(got, h.Payload)
		off = next
	}
	if len(got) != 3 || string(got[0]) != "hello" || len(got[1]) != 0 || len(got[2]) != 1500 {
		t.Fatalf("frames = %q", got)
	}
}

func TestDecodeRejectsTruncated(t *testing.T) {
	pkt := encodeTestPacket(1, []byte("hello world"))
	for cut := packetHdrLen + 1; cut < len(pkt); cut++ {
		_, _, _, err := nextFrame(pkt[:cut], packetHdrLen)
		if err == nil {
			t.Errorf("cut at %d: no error", cut)
		}
	}
	if _, err := senderOf(pkt[:5]); err == nil {
		t.Error("5-byte datagram: no error")
	}
}

func TestPutHeadersRoundTrip(t *testing.T) {
	b := make([]byte, packetHdrLen+frameHdrLen+4)
	copy(b[packetHdrLen+frameHdrLen:], "abcd")
	putPeerName(b, 0x112233445566)
	putFrameHeader(b[packetHdrLen:], 0x010203040506, 0xa1a2a3a4a5a6, 4)
	sender, _ := senderOf(b)
	h, next, ok, err := nextFrame(b, packetHdrLen)
	if err != nil || !ok || next != len(b) {
		t.Fatalf("decode: ok=%v err=%v next=%d", ok, err, next)
	}
	if sender != 0x112233445566 || h.Src != 0x010203040506 || h.Dst != 0xa1a2a3a4a5a6 || string(h.Payload) != "abcd" {
		t.Fatalf("got sender %v %+v", sender, h)
	}
	// mesh's own encoding agrees with ours.
	if mesh.PeerNameFromBin(b[0:6]) != sender {
		t.Fatal("peer name encoding differs from mesh's")
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	pkt := encodeTestPacket(1, []byte("one"), []byte("two"))
	allocs := testing.AllocsPerRun(100, func() {
		for off := packetHdrLen; ; {
			_, next, ok, _ := nextFrame(pkt, off)
			if !ok {
				break
			}
			off = next
		}
		_, _ = senderOf(pkt)
		_ = isSpecial(pkt)
	})
	if allocs != 0 {
		t.Fatalf("decode allocates %v times per packet", allocs)
	}
}

// FuzzDecodePacket feeds arbitrary datagrams to the decoder: it must never
// panic, every frame it yields must lie inside the datagram, and the frames
// must account for every byte when it reports no error.
func FuzzDecodePacket(f *testing.F) {
	f.Add(encodeTestPacket(1, []byte("hello"), make([]byte, 22)))
	f.Add([]byte{1, 2, 3})
	f.Add(make([]byte, 20))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if _, err := senderOf(pkt); err != nil {
			return
		}
		off, consumed := packetHdrLen, packetHdrLen
		for {
			h, next, ok, err := nextFrame(pkt, off)
			if err != nil {
				return
			}
			if !ok {
				break
			}
			if h.Off < off || h.Off+len(h.Payload) != next || next > len(pkt) {
				t.Fatalf("frame out of bounds: off %d, payload at %d len %d, next %d, len %d", off, h.Off, len(h.Payload), next, len(pkt))
			}
			_ = isSpecial(h.Payload)
			consumed += frameHdrLen + len(h.Payload)
			off = next
		}
		if consumed != len(pkt) {
			t.Fatalf("consumed %d of %d bytes without error", consumed, len(pkt))
		}
	})
}

func TestARPForHostLocalAddressStaysHome(t *testing.T) {
	dns := netip.MustParseAddr("169.254.53.53")
	arp := func(sender, target string) []byte {
		eth := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06}
		body := []byte{0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1}
		body = append(body, netip.MustParseAddr(sender).AsSlice()...)
		body = append(body, 0, 0, 0, 0, 0, 0)
		body = append(body, netip.MustParseAddr(target).AsSlice()...)
		return append(eth, body...)
	}
	if !arpsFor(arp("10.32.0.1", "169.254.53.53"), []netip.Addr{dns}) {
		t.Error("who-has for the host-local address would leave the host")
	}
	if !arpsFor(arp("169.254.53.53", "10.32.0.1"), []netip.Addr{dns}) {
		t.Error("the host's own who-has from the host-local address would leave the host")
	}
	if arpsFor(arp("10.32.0.1", "10.32.0.2"), []netip.Addr{dns}) {
		t.Error("ordinary ARP held back")
	}
	if arpsFor(arp("10.32.0.1", "169.254.53.53")[:30], []netip.Addr{dns}) {
		t.Error("truncated ARP matched")
	}
}
