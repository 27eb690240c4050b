package mesh

import (
	"bytes"
	"testing"
	"time"
)

// Equal tables encode to equal bytes, whatever the order maps iterate in:
// the periodic gossip's repeats are recognised by their bytes.
func TestTopologyEncodesDeterministically(t *testing.T) {
	ps := newPeers(&Peer{Name: 0x0a0b0c0d0e0f, UID: 5, HasShortID: true})
	if _, _, _, err := ps.applyUpdate(encodeTopology(sampleTopology())); err != nil {
		t.Fatal(err)
	}
	names := ps.names()
	first := ps.encode(names)
	for range 20 {
		if again := ps.encode(names); !bytes.Equal(first, again) {
			t.Fatal("the same table encoded to different bytes")
		}
	}
}

func TestRepeatFilter(t *testing.T) {
	f := newRepeatFilter(30 * time.Second)
	now := time.Now()
	a, b := []byte("table a"), []byte("table b")
	if f.seen(a, now) {
		t.Fatal("a first payload counted as a repeat")
	}
	if !f.seen(a, now.Add(time.Second)) {
		t.Fatal("a repeat within the window not recognised")
	}
	if f.seen(b, now) {
		t.Fatal("a different payload counted as a repeat")
	}
	if f.seen(a, now.Add(31*time.Second)) {
		t.Fatal("a payload counted as a repeat after the window")
	}
	// The filter is bounded: old hashes make way for new ones.
	for i := range 2 * repeatFilterSize {
		f.seen([]byte{byte(i), byte(i >> 8)}, now)
	}
	if f.seen(b, now.Add(time.Second)) {
		t.Fatal("the filter kept more than its bound")
	}
}
