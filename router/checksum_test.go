package router

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// A TCP checksum turned partial for the fast format (the field holding the
// pseudo-header sum) comes back complete and identical once the receiving
// side finishes it; fragments and non-TCP frames are left alone.
func TestTCPChecksumPartialRoundTrip(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		seg, err := newTCPSegmenter(superFrame(v6, []byte("some payload bytes!")), 1000)
		if err != nil {
			t.Fatal(err)
		}
		eth := make([]byte, seg.maxLen())
		eth = eth[:seg.next(eth, false)]
		want := bytes.Clone(eth)
		at, pseudo, ok := tcpChecksumAt(eth)
		if !ok {
			t.Fatalf("v6=%v: TCP segment not recognised", v6)
		}
		binary.BigEndian.PutUint16(eth[at:], pseudo)
		completeChecksum(eth, at-16, at)
		if !bytes.Equal(eth, want) {
			t.Errorf("v6=%v: checksum %x after the round trip, want %x", v6, eth[at:at+2], want[at:at+2])
		}
	}
	frag := superFrame(false, []byte("x"))
	frag[ethHdrLen+6] |= 0x20 // more fragments
	if _, _, ok := tcpChecksumAt(frag); ok {
		t.Error("an IPv4 fragment was taken for a whole TCP segment")
	}
	udp := superFrame(false, []byte("x"))
	udp[ethHdrLen+9] = 17
	if _, _, ok := tcpChecksumAt(udp); ok {
		t.Error("a UDP datagram was taken for a TCP segment")
	}
}

func FuzzTCPChecksumAt(f *testing.F) {
	f.Add(superFrame(false, []byte("abc")))
	f.Add(superFrame(true, []byte("abc")))
	f.Fuzz(func(t *testing.T, eth []byte) {
		if at, _, ok := tcpChecksumAt(eth); ok && at+2 > len(eth) {
			t.Fatalf("checksum offset %d outside a %d-byte frame", at, len(eth))
		}
	})
}

// addBytes sums 64 bits at a time; the result folds to what a plain sum of
// 16-bit words folds to, whatever the length, the bytes and the sum it
// starts from (all ones included, where end-around carries pile up).
func TestChecksumAddBytesMatchesWordSum(t *testing.T) {
	words := func(sum uint64, b []byte) uint64 {
		for ; len(b) >= 2; b = b[2:] {
			sum += uint64(binary.BigEndian.Uint16(b))
		}
		if len(b) == 1 {
			sum += uint64(b[0]) << 8
		}
		return sum
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		b := make([]byte, rng.IntN(300))
		switch i % 3 {
		case 0:
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
		case 1:
			for j := range b {
				b[j] = 0xff
			}
		}
		sum := rng.Uint64N(1 << 40)
		if got, want := fold(addBytes(sum, b)), fold(words(sum, b)); got != want {
			t.Fatalf("%d bytes from %#x: %#04x, want %#04x", len(b), sum, got, want)
		}
	}
}
