package mesh

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// gossipFrame writes what encoding/gob writes, for every size class of
// the lengths and names (one-byte and multi-byte integers, empty values),
// and allocates exactly what it fills.
func TestGossipFrameMatchesGob(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 60, 125, 126, 127, 128, 255, 256, 4000, 65535, 65536, 84000}
	names := []PeerName{0, 1, 0x7f, 0x80, 0xff, 0x100, 0x0102030405, 0xffffffffffff, 1<<64 - 1}
	for _, size := range sizes {
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		for _, channel := range []string{"", "topology", string(make([]byte, 200))} {
			src, dst := names[rng.IntN(len(names))], names[rng.IntN(len(names))]
			got := gossipFrame(ProtocolGossip, channel, payload, src)
			want := append([]byte{ProtocolGossip}, gobOf(channel, src, payload)...)
			if !bytes.Equal(got, want) || cap(got) != len(got) {
				t.Fatalf("payload %d, channel %d, src %x: %d bytes (cap %d), gob %d; first difference at %d",
					size, len(channel), uint64(src), len(got), cap(got), len(want), firstDiff(got, want))
			}
			got = gossipFrame(ProtocolGossipUnicast, channel, payload, src, dst)
			want = append([]byte{ProtocolGossipUnicast}, gobOf(channel, src, dst, payload)...)
			if !bytes.Equal(got, want) {
				t.Fatalf("unicast: payload %d, names %x %x: differs at %d", size, uint64(src), uint64(dst), firstDiff(got, want))
			}
			if body := gossipBody(channel, payload, src, dst); !bytes.Equal(body, got[1:]) || cap(body) != len(body) {
				t.Fatal("gossipBody differs from the frame after its tag")
			}
			if m, err := decodeGossip(ProtocolGossipUnicast, got[1:]); err != nil || m.channel != channel || m.src != src || m.dst != dst || !bytes.Equal(m.payload, payload) {
				t.Fatalf("decodeGossip: %+v, %v", m.channel, err)
			}
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
