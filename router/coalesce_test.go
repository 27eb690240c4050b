package router

import (
	"bytes"
	"testing"

	"weavenet/tun"
)

// segments cuts a super-frame as sendSuperFrame does and returns the
// segments in device form, as the receiving peer decodes them.
func segments(t testing.TB, eth []byte, mss int, partial bool) [][]byte {
	t.Helper()
	seg, err := newTCPSegmenter(eth, mss)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		b := make([]byte, tun.VirtioNetHdrLen+seg.maxLen())
		n := seg.next(b[tun.VirtioNetHdrLen:], partial)
		if n == 0 {
			return out
		}
		if partial {
			tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, CsumStart: uint16(seg.csumStart()), CsumOffset: 16}.Encode(b)
		}
		out = append(out, b[:tun.VirtioNetHdrLen+n])
	}
}

func TestCoalesceRebuildsTheSuperFrame(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, partial := range []bool{false, true} {
			payload := bytes.Repeat([]byte("abcdefghijklm"), 4400)
			eth := superFrame(v6, payload)
			ipHdrLen := 20
			if v6 {
				ipHdrLen = 40
			}
			eth[ethHdrLen+ipHdrLen+13] = 0x18 // ACK|PSH: a bulk transfer's
			c := newCoalescer()
			for i, s := range segments(t, eth, 1300, partial) {
				if !c.add(s) {
					t.Fatalf("v6=%v partial=%v: segment %d not coalesced", v6, partial, i)
				}
			}
			var got [][]byte
			c.flush(func(f []byte) { got = append(got, bytes.Clone(f)) })
			if len(got) != 1 {
				t.Fatalf("v6=%v: %d writes, want 1", v6, len(got))
			}
			var h tun.VirtioNetHdr
			_ = h.Decode(got[0])
			if h.GSOSize != 1300 || h.Flags != tun.VirtioNetHdrFNeedsCsum || h.GSOType == tun.VirtioNetHdrGSONone {
				t.Errorf("v6=%v: header %+v", v6, h)
			}
			// Segmenting the result again gives the same segments.
			again := segments(t, got[0][tun.VirtioNetHdrLen:], int(h.GSOSize), false)
			want := segments(t, eth, 1300, false)
			if len(again) != len(want) {
				t.Fatalf("v6=%v: %d segments after the round trip, want %d", v6, len(again), len(want))
			}
			for i := range want {
				if !bytes.Equal(again[i][tun.VirtioNetHdrLen:], want[i][tun.VirtioNetHdrLen:]) {
					t.Fatalf("v6=%v: segment %d differs after the round trip", v6, i)
				}
			}
		}
	}
}

// FuzzCoalesce feeds arbitrary frames, as decoded from the network, to a
// coalescer: whatever the bytes, it never panics, and what it writes is
// never longer than the largest super-frame.
func FuzzCoalesce(f *testing.F) {
	for _, s := range segments(f, superFrame(false, bytes.Repeat([]byte("x"), 3000)), 1000, true)[:2] {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		c := newCoalescer()
		write := func(frame []byte) {
			if len(frame) > tun.VirtioNetHdrLen+ethHdrLen+maxCoalesced {
				t.Fatalf("wrote %d bytes", len(frame))
			}
		}
		for _, fr := range [][]byte{a, b, a} {
			if !c.add(fr) {
				c.flush(write)
				c.add(fr)
			}
		}
		c.flush(write)
	})
}
