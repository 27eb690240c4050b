package meshgate

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"testing"
)

func newScanner() *Scanner {
	return &Scanner{MinVersion: 1, MaxVersion: 2, MaxFrame: 64 << 10, MaxBytes: 256 << 10}
}

func frame(body []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	return append(out, body...)
}

// v2 is what a version-2 peer sends: header, flag (and key), then frames.
func v2(encrypted bool, frames ...[]byte) []byte {
	out := []byte("weave\x01\x02")
	if encrypted {
		out = append(out, 1)
		out = append(out, bytes.Repeat([]byte{7}, 32)...)
	} else {
		out = append(out, 0)
	}
	for _, f := range frames {
		out = append(out, frame(f)...)
	}
	return out
}

// scanAll feeds stream to s in chunks of size chunk, as a connection would
// deliver it, and returns the bytes accepted and the verdict.
func scanAll(s *Scanner, stream []byte, chunk int) (int, error) {
	var buf []byte
	accepted := 0
	for off := 0; off < len(stream) || len(buf) > 0; {
		if off < len(stream) {
			end := min(off+chunk, len(stream))
			buf = append(buf, stream[off:end]...)
			off = end
		}
		n, err := s.Scan(buf)
		accepted += n
		buf = buf[n:]
		if err != nil {
			return accepted, err
		}
		if off >= len(stream) {
			break
		}
	}
	return accepted, nil
}

func TestScannerPassesARealHandshake(t *testing.T) {
	features := bytes.Repeat([]byte("f"), 400)
	gossipFrame := bytes.Repeat([]byte("g"), 1000)
	for _, enc := range []bool{false, true} {
		stream := v2(enc, features, gossipFrame)
		for _, chunk := range []int{1, 3, 7, 64, 1 << 20} {
			s := newScanner()
			n, err := scanAll(s, stream, chunk)
			if err != nil || n != len(stream) {
				t.Errorf("encrypted %v, chunk %d: accepted %d of %d, err %v", enc, chunk, n, len(stream), err)
			}
			if s.Version() != 2 {
				t.Errorf("version %d, want 2", s.Version())
			}
		}
	}
}

func TestScannerRefusesAnOversizedHandshakeFrame(t *testing.T) {
	stream := v2(true)
	stream = binary.BigEndian.AppendUint32(stream, 10<<20)
	stream = append(stream, make([]byte, 100)...)
	for _, chunk := range []int{1, 5, 1 << 20} {
		s := newScanner()
		n, err := scanAll(s, stream, chunk)
		if !errors.Is(err, ErrOversize) {
			t.Fatalf("chunk %d: err %v, want ErrOversize", chunk, err)
		}
		// Nothing of the length reaches mesh: header, flag and key only.
		if n != HeaderLen+1+32 {
			t.Errorf("chunk %d: accepted %d bytes, want %d", chunk, n, HeaderLen+33)
		}
	}
}

func TestScannerHoldsALargeLaterFrame(t *testing.T) {
	stream := v2(false, []byte("features"))
	before := len(stream)
	stream = binary.BigEndian.AppendUint32(stream, 1<<20)
	s := newScanner()
	n, err := scanAll(s, stream, 1<<20)
	if !errors.Is(err, ErrHold) || n != before {
		t.Fatalf("accepted %d (want %d), err %v (want ErrHold)", n, before, err)
	}
}

func TestScannerHoldsPastTheByteBudget(t *testing.T) {
	s := newScanner()
	s.MaxBytes = 10_000
	stream := v2(false, make([]byte, 4000), make([]byte, 4000), make([]byte, 4000))
	n, err := scanAll(s, stream, 100)
	if !errors.Is(err, ErrHold) || n != HeaderLen+1+2*4004 {
		t.Fatalf("accepted %d, err %v: want the first two frames, then ErrHold", n, err)
	}
}

func TestScannerRefusesWhatIsNotMesh(t *testing.T) {
	for name, stream := range map[string][]byte{
		"http":      []byte("GET / HTTP/1.1\r\n\r\n"),
		"versions":  []byte("weave\x03\x07"),
		"zero":      []byte("weave\x00\x00"),
		"flag":      []byte("weave\x01\x02\x05"),
		"gobcount9": append([]byte("weave\x01\x01"), 0xf7, 1, 2, 3, 4, 5, 6, 7, 8, 9),
	} {
		s := newScanner()
		if _, err := scanAll(s, stream, 1); err == nil || errors.Is(err, ErrHold) {
			t.Errorf("%s: err %v, want a rejection", name, err)
		}
	}
}

// Version 1 is a gob stream: the real features exchange passes, a message
// announcing gigabytes does not.
func TestScannerVersion1(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("weave\x01\x01")
	if err := gob.NewEncoder(&b).Encode(map[string]string{"Name": "aa:bb:cc:dd:ee:ff", "NickName": "h1"}); err != nil {
		t.Fatal(err)
	}
	s := newScanner()
	if n, err := scanAll(s, b.Bytes(), 3); err != nil || n != b.Len() {
		t.Fatalf("real v1 features: accepted %d of %d, err %v", n, b.Len(), err)
	}
	if s.Version() != 1 {
		t.Fatalf("version %d", s.Version())
	}
	huge := append([]byte("weave\x01\x01"), 0xfc, 0x40, 0, 0, 0) // 1 GiB
	if _, err := scanAll(newScanner(), huge, 1); !errors.Is(err, ErrOversize) {
		t.Fatalf("1 GiB gob message: err %v, want ErrOversize", err)
	}
}

// FuzzScanner: any input, in any chunking, neither panics nor accepts more
// than it was given, and the verdict and count do not depend on chunking.
func FuzzScanner(f *testing.F) {
	f.Add(v2(true, []byte("features")), uint8(1))
	f.Add(v2(false, make([]byte, 70000)), uint8(9))
	f.Add([]byte("weave\x01\x01\x0c\xff\x81"), uint8(2))
	f.Add([]byte("weave\x02\x02\x00\xff\xff\xff\xff"), uint8(200))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		whole := newScanner()
		whole.MaxBytes = 100_000
		n1, err1 := scanAll(whole, stream, len(stream)+1)
		parts := newScanner()
		parts.MaxBytes = 100_000
		n2, err2 := scanAll(parts, stream, int(chunk)+1)
		if n1 > len(stream) || n2 > len(stream) {
			t.Fatalf("accepted %d/%d of %d bytes", n1, n2, len(stream))
		}
		if n1 != n2 || !errors.Is(err1, err2) && !(err1 == nil && err2 == nil) {
			t.Fatalf("whole: %d %v; chunks of %d: %d %v", n1, err1, int(chunk)+1, n2, err2)
		}
		if n1 > whole.MaxBytes+HeaderLen+33 {
			t.Fatalf("accepted %d bytes, over the budget", n1)
		}
	})
}
