package tun

import (
	"bytes"
	"errors"
	"testing"
)

func TestVirtioNetHdrRoundTrip(t *testing.T) {
	for _, h := range []VirtioNetHdr{
		{},
		{Flags: VirtioNetHdrFNeedsCsum, CsumStart: 34, CsumOffset: 6},
		{Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16},
		{Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOTCPv6 | VirtioNetHdrGSOECN, HdrLen: 86, GSOSize: 1428, CsumStart: 54, CsumOffset: 16},
		{Flags: 0xff, GSOType: 0xff, HdrLen: 0xffff, GSOSize: 0xffff, CsumStart: 0xffff, CsumOffset: 0xffff},
	} {
		var b [VirtioNetHdrLen]byte
		h.Encode(b[:])
		var got VirtioNetHdr
		if err := got.Decode(b[:]); err != nil {
			t.Fatalf("Decode(%x): %v", b, err)
		}
		if got != h {
			t.Errorf("round trip of %+v gave %+v", h, got)
		}
	}
}

// TestVirtioNetHdrLayout pins the byte layout against struct virtio_net_hdr
// so that a field-order slip cannot hide behind a symmetric round trip.
func TestVirtioNetHdrLayout(t *testing.T) {
	h := VirtioNetHdr{Flags: 1, GSOType: 4, HdrLen: 0x0102, GSOSize: 0x0304, CsumStart: 0x0506, CsumOffset: 0x0708}
	want := []byte{1, 4, 0x02, 0x01, 0x04, 0x03, 0x06, 0x05, 0x08, 0x07}
	b := make([]byte, 12) // longer than needed: Encode must touch only 10 bytes
	h.Encode(b)
	if !bytes.Equal(b[:VirtioNetHdrLen], want) || b[10] != 0 || b[11] != 0 {
		t.Fatalf("Encode = %x, want %x followed by zeros", b, want)
	}
}

func TestVirtioNetHdrDecodeShort(t *testing.T) {
	var h VirtioNetHdr
	for n := 0; n < VirtioNetHdrLen; n++ {
		if err := h.Decode(make([]byte, n)); !errors.Is(err, ErrShortVirtioNetHdr) {
			t.Errorf("Decode of %d bytes: err = %v, want ErrShortVirtioNetHdr", n, err)
		}
	}
}

func TestVirtioNetHdrEncodeShortPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Encode into a 9-byte buffer did not panic")
		}
	}()
	VirtioNetHdr{}.Encode(make([]byte, VirtioNetHdrLen-1))
}

func TestVirtioNetHdrZeroAllocs(t *testing.T) {
	b := make([]byte, VirtioNetHdrLen)
	h := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	var got VirtioNetHdr
	allocs := testing.AllocsPerRun(1000, func() {
		h.Encode(b)
		if err := got.Decode(b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Encode+Decode allocate %v times per run, want 0", allocs)
	}
	short := b[:3]
	allocs = testing.AllocsPerRun(1000, func() {
		if got.Decode(short) == nil {
			t.Fatal("short Decode succeeded")
		}
	})
	if allocs != 0 {
		t.Fatalf("failing Decode allocates %v times per run, want 0", allocs)
	}
}

func FuzzVirtioNetHdrDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, VirtioNetHdrLen))
	f.Add([]byte{1, 1, 66, 0, 0xa8, 5, 34, 0, 16, 0, 0xde, 0xad})
	f.Fuzz(func(t *testing.T, b []byte) {
		var h VirtioNetHdr
		if err := h.Decode(b); err != nil {
			if len(b) >= VirtioNetHdrLen {
				t.Fatalf("Decode of %d bytes failed: %v", len(b), err)
			}
			return
		}
		// Every 10-byte pattern is a valid header, so re-encoding must
		// reproduce the input exactly.
		var out [VirtioNetHdrLen]byte
		h.Encode(out[:])
		if !bytes.Equal(out[:], b[:VirtioNetHdrLen]) {
			t.Fatalf("Decode/Encode of %x gave %x", b[:VirtioNetHdrLen], out)
		}
	})
}
