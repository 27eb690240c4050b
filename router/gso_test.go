package router

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"weavenet/tun"
)

// superFrame builds an Ethernet frame holding one TCP segment with payload
// bigger than an MSS, as the kernel hands over with TSO.
func superFrame(v6 bool, payload []byte) []byte {
	eth := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00}
	var ip []byte
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:2], 40000)
	binary.BigEndian.PutUint16(tcp[2:4], 5201)
	binary.BigEndian.PutUint32(tcp[4:8], 0xfffff000) // wraps during segmentation
	tcp[12] = 5 << 4
	tcp[13] = 0x18 | 0x01 | 0x80 // PSH|ACK|FIN|CWR
	if v6 {
		eth[12], eth[13] = 0x86, 0xdd
		ip = make([]byte, 40)
		ip[0] = 6 << 4
		binary.BigEndian.PutUint16(ip[4:6], uint16(len(tcp)+len(payload)))
		ip[6], ip[7] = 6, 64
		ip[8], ip[23] = 0xfd, 1
		ip[24], ip[39] = 0xfd, 2
	} else {
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:4], uint16(20+len(tcp)+len(payload)))
		binary.BigEndian.PutUint16(ip[4:6], 0xfffe)
		ip[8], ip[9] = 64, 6
		copy(ip[12:16], []byte{10, 32, 0, 1})
		copy(ip[16:20], []byte{10, 32, 0, 2})
	}
	return append(append(append(eth, ip...), tcp...), payload...)
}

func TestSegmentTCP(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		payload := make([]byte, 5000)
		for i := range payload {
			payload[i] = byte(rand.IntN(256))
		}
		eth := superFrame(v6, payload)
		buf := make([]byte, txHeadroom+len(eth)+100)
		var got []byte
		var segs int
		err := segmentTCP(eth, 1448, buf, txHeadroom, func(n int) {
			seg := buf[txHeadroom+tun.VirtioNetHdrLen : txHeadroom+n]
			ipHL := 20
			if v6 {
				ipHL = 40
			}
			ip := seg[ethHdrLen:]
			tcp := ip[ipHL:]
			var sum uint64
			if v6 {
				sum = addBytes(0, ip[8:40])
				if int(binary.BigEndian.Uint16(ip[4:6])) != len(tcp) {
					t.Fatalf("v6 payload length %d, want %d", binary.BigEndian.Uint16(ip[4:6]), len(tcp))
				}
			} else {
				if fold(addBytes(0, ip[:20])) != 0xffff {
					t.Fatalf("segment %d: bad IP checksum", segs)
				}
				if id := binary.BigEndian.Uint16(ip[4:6]); id != 0xfffe+uint16(segs) {
					t.Fatalf("segment %d: IP ID %#x", segs, id)
				}
				sum = addBytes(0, ip[12:20])
			}
			sum += 6 + uint64(len(tcp))
			if fold(addBytes(sum, tcp)) != 0xffff {
				t.Fatalf("segment %d: bad TCP checksum", segs)
			}
			if seq := binary.BigEndian.Uint32(tcp[4:8]); seq != 0xfffff000+uint32(segs*1448) {
				t.Fatalf("segment %d: seq %#x", segs, seq)
			}
			last := len(got)+len(tcp[20:]) == len(payload)
			if fin := tcp[13]&0x01 != 0; fin != last {
				t.Fatalf("segment %d: FIN=%v on last=%v", segs, fin, last)
			}
			if cwr := tcp[13]&0x80 != 0; cwr != (segs == 0) {
				t.Fatalf("segment %d: CWR=%v", segs, cwr)
			}
			got = append(got, tcp[20:]...)
			segs++
		})
		if err != nil {
			t.Fatal(err)
		}
		if segs != 4 || !bytes.Equal(got, payload) {
			t.Fatalf("v6=%v: %d segments, payload intact %v", v6, segs, bytes.Equal(got, payload))
		}
	}
}

// FuzzSegmentTCP: super-frames relayed from the network are segmented too,
// so arbitrary bytes and segment sizes must never panic or overrun.
func FuzzSegmentTCP(f *testing.F) {
	f.Add(superFrame(false, make([]byte, 3000)), uint16(1000))
	f.Add(superFrame(true, make([]byte, 100)), uint16(1))
	f.Add([]byte{}, uint16(0))
	buf := make([]byte, txHeadroom+tun.VirtioNetHdrLen+ethHdrLen+65535)
	f.Fuzz(func(t *testing.T, eth []byte, mss uint16) {
		if len(eth) > 65535 {
			return
		}
		total := 0
		_ = segmentTCP(eth, int(mss), buf, txHeadroom, func(n int) {
			if n > len(buf)-txHeadroom {
				t.Fatalf("segment of %d bytes overruns the buffer", n)
			}
			total++
		})
	})
}

// plainRecorder is a PlainDevice that keeps what it is given.
type plainRecorder struct{ frames [][]byte }

func (d *plainRecorder) Read([]byte) (int, error) { return 0, nil }
func (d *plainRecorder) Write(b []byte) (int, error) {
	d.frames = append(d.frames, bytes.Clone(b))
	return len(b), nil
}
func (d *plainRecorder) Close() error      { return nil }
func (d *plainRecorder) PlainFrames() bool { return true }

func TestPlainDeviceGetsSegmentsAndChecksums(t *testing.T) {
	dev := &plainRecorder{}
	r := newRouter(dev, nil, nil)
	payload := bytes.Repeat([]byte("0123456789"), 500)
	eth := superFrame(false, payload)
	h := tun.VirtioNetHdr{GSOType: tun.VirtioNetHdrGSOTCPv4, GSOSize: 1000, Flags: tun.VirtioNetHdrFNeedsCsum, CsumStart: 34, CsumOffset: 16}
	frame := make([]byte, tun.VirtioNetHdrLen+len(eth))
	h.Encode(frame)
	copy(frame[tun.VirtioNetHdrLen:], eth)
	before := bytes.Clone(frame)
	r.deliver(frame)
	if len(dev.frames) != 5 {
		t.Fatalf("got %d frames, want 5 segments of 1000 bytes", len(dev.frames))
	}
	var got []byte
	for _, f := range dev.frames {
		if !bytes.Equal(f[:tun.VirtioNetHdrLen], make([]byte, tun.VirtioNetHdrLen)) {
			t.Fatalf("segment has a virtio header %x", f[:tun.VirtioNetHdrLen])
		}
		seg := f[tun.VirtioNetHdrLen:]
		if fold(addBytes(0, seg[ethHdrLen:ethHdrLen+20])) != 0xffff {
			t.Error("IPv4 header checksum wrong")
		}
		got = append(got, seg[ethHdrLen+40:]...)
	}
	if !bytes.Equal(got, payload) {
		t.Error("payload differs after segmentation")
	}
	if !bytes.Equal(frame, before) {
		t.Error("deliver changed the frame it was given")
	}

	// A single frame with a partial checksum gets it finished.
	dev.frames = nil
	small := superFrame(false, []byte("hello"))
	h = tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, CsumStart: 34, CsumOffset: 16}
	frame = make([]byte, tun.VirtioNetHdrLen+len(small))
	h.Encode(frame)
	copy(frame[tun.VirtioNetHdrLen:], small)
	r.deliver(frame)
	if len(dev.frames) != 1 || dev.frames[0][0] != 0 {
		t.Fatalf("want one plain frame, got %d", len(dev.frames))
	}
}
