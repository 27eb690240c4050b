package crypto

import (
	"bytes"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"golang.org/x/crypto/nacl/secretbox"
)

func testKey(t testing.TB) *Key {
	var k Key
	if _, err := crand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return &k
}

// sealed builds a datagram: 6-byte sender, then plaintext, sealed.
func sealed(s *Sealer, plain []byte) []byte {
	suite := NaCl
	if s.gcm != nil {
		suite = AESGCM
	}
	pkt := make([]byte, 6+suite.Headroom()+len(plain), 6+Overhead+len(plain))
	copy(pkt, "sender")
	copy(pkt[6+suite.Headroom():], plain)
	return s.Seal(pkt, 6)
}

var suites = []Suite{NaCl, AESGCM}

// TestCompatibleWithSecretbox: what Seal writes is exactly NaCl secretbox
// (Weave Net's format), and secretbox's output opens with Open.
func TestCompatibleWithSecretbox(t *testing.T) {
	key := testKey(t)
	msg := bytes.Repeat([]byte("0123456789"), 20)
	pkt := sealed(NewSealer(key, true, NaCl), msg)
	var n [24]byte
	n[0] = 0x80
	copy(n[16:], pkt[6:6+seqLen])
	got, ok := secretbox.Open(nil, pkt[6+seqLen:], &n, key)
	if !ok || !bytes.Equal(got, msg) {
		t.Fatal("secretbox cannot open what Seal sealed")
	}
	for _, size := range []int{0, 1, 31, 32, 33, 64, 200} {
		n[0] = 0
		binary.BigEndian.PutUint64(n[16:], uint64(size))
		box := append(binary.BigEndian.AppendUint64(nil, uint64(size)), secretbox.Seal(nil, msg[:size], &n, key)...)
		plain, err := NewOpener(key, true, NaCl).Open(box)
		if err != nil || !bytes.Equal(plain, msg[:size]) {
			t.Fatalf("size %d: Open of secretbox output: %v", size, err)
		}
	}
}

func TestSealOpenBothDirections(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) { testSealOpenBothDirections(t, suite) })
	}
}

func testSealOpenBothDirections(t *testing.T, suite Suite) {
	key := testKey(t)
	dialer, acceptor := NewSealer(key, true, suite), NewSealer(key, false, suite)
	atDialer, atAcceptor := NewOpener(key, true, suite), NewOpener(key, false, suite)
	for i := range 100 {
		msg := []byte{byte(i), 'x', 'y'}
		got, err := atAcceptor.Open(sealed(dialer, msg)[6:])
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("dialer→acceptor %d: %q %v", i, got, err)
		}
		got, err = atDialer.Open(sealed(acceptor, msg)[6:])
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("acceptor→dialer %d: %q %v", i, got, err)
		}
	}
	// A datagram reflected back to its sender must not open: the direction
	// bit differs, so the nonce does.
	if _, err := NewOpener(key, true, suite).Open(sealed(dialer, []byte("x"))[6:]); !errors.Is(err, ErrAuth) {
		t.Fatalf("reflected datagram: %v", err)
	}
}

// TestNoncesNeverRepeat: across many datagrams from both ends of a
// connection, no (key, nonce) pair is used twice.
func TestNoncesNeverRepeat(t *testing.T) {
	key := testKey(t)
	seen := map[[24]byte]bool{}
	for _, outbound := range []bool{true, false} {
		s := NewSealer(key, outbound, NaCl)
		for range 100000 {
			pkt := sealed(s, nil)
			var nonce [24]byte
			if outbound {
				nonce[0] = 0x80
			}
			copy(nonce[16:], pkt[6:6+seqLen])
			if seen[nonce] {
				t.Fatalf("nonce %x used twice", nonce)
			}
			seen[nonce] = true
		}
	}
}

func TestSealConcurrentUniqueSeq(t *testing.T) {
	s := NewSealer(testKey(t), true, AESGCM)
	const workers, each = 4, 5000
	seqs := make(chan uint64, workers*each)
	done := make(chan bool)
	for range workers {
		go func() {
			for range each {
				seqs <- binary.BigEndian.Uint64(sealed(s, []byte("p"))[6:])
			}
			done <- true
		}()
	}
	for range workers {
		<-done
	}
	close(seqs)
	seen := map[uint64]bool{}
	for q := range seqs {
		if seen[q] {
			t.Fatalf("sequence number %d used twice", q)
		}
		seen[q] = true
	}
}

func TestOpenRejectsReplayAndTampering(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) { testOpenRejectsReplayAndTampering(t, suite) })
	}
}

func testOpenRejectsReplayAndTampering(t *testing.T, suite Suite) {
	key := testKey(t)
	s, o := NewSealer(key, true, suite), NewOpener(key, false, suite)
	pkt := sealed(s, []byte("secret frame"))
	replay := bytes.Clone(pkt)
	if _, err := o.Open(pkt[6:]); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Open(replay[6:]); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	for bit := 0; bit < (len(replay)-6)*8; bit += 7 {
		p := sealed(s, []byte("secret frame"))
		p[6+bit/8] ^= 1 << (bit % 8)
		if _, err := o.Open(p[6:]); err == nil {
			t.Fatalf("flipped bit %d: opened", bit)
		}
	}
	// A forged datagram with a far-future sequence number must not slide
	// the window and lock out the real ones.
	forged := sealed(s, []byte("x"))
	binary.BigEndian.PutUint64(forged[6:], 1<<40)
	if _, err := o.Open(forged[6:]); !errors.Is(err, ErrAuth) {
		t.Fatalf("forged: %v", err)
	}
	if _, err := o.Open(sealed(s, []byte("after"))[6:]); err != nil {
		t.Fatalf("real datagram after forgery: %v", err)
	}
	if _, err := o.Open(make([]byte, Overhead-1)); !errors.Is(err, ErrShort) {
		t.Fatalf("short: %v", err)
	}
}

func TestReplayWindowEdges(t *testing.T) {
	var w ReplayWindow
	if !w.Accept(0) || w.Accept(0) {
		t.Fatal("0: first accept must succeed, second fail")
	}
	top := uint64(ReplayWindowSize + 1000)
	if !w.Accept(top) {
		t.Fatal("jump ahead refused")
	}
	oldest := top - ReplayWindowSize + 1
	if !w.Fresh(oldest) || !w.Accept(oldest) {
		t.Fatal("oldest in window refused")
	}
	if w.Fresh(oldest - 1) {
		t.Fatal("just outside the window accepted")
	}
	if w.Accept(top) {
		t.Fatal("top accepted twice")
	}
	// Sliding by exactly one word boundary must not resurrect old bits.
	var v ReplayWindow
	for c := uint64(0); c < 64*replayWords*3; c++ {
		if !v.Accept(c) {
			t.Fatalf("in-order counter %d refused", c)
		}
	}
	// Every counter accepted once in a random order within the window.
	var r ReplayWindow
	perm := rand.Perm(ReplayWindowSize)
	for _, c := range perm {
		if !r.Accept(uint64(c)) {
			t.Fatalf("reordered counter %d refused", c)
		}
	}
	for _, c := range perm {
		if r.Accept(uint64(c)) {
			t.Fatalf("counter %d accepted twice", c)
		}
	}
}

// TestReplayWindowModel compares the window with a simple set model under
// random, mostly increasing sequences.
func TestReplayWindowModel(t *testing.T) {
	var w ReplayWindow
	seen := map[uint64]bool{}
	var highest uint64
	any := false
	for range 200000 {
		var c uint64
		switch rand.IntN(4) {
		case 0:
			c = highest + uint64(rand.IntN(3*ReplayWindowSize))
		default:
			c = highest - min(highest, uint64(rand.IntN(ReplayWindowSize+200)))
		}
		want := !seen[c] && (!any || c+ReplayWindowSize >= highest+1)
		if got := w.Accept(c); got != want {
			t.Fatalf("Accept(%d) = %v, want %v (highest %d)", c, got, want, highest)
		}
		if want {
			seen[c] = true
			if !any || c > highest {
				highest = c
			}
			any = true
		}
	}
}

// FuzzOpen: arbitrary bytes never panic the opener, and never open.
func FuzzOpen(f *testing.F) {
	key := &Key{1, 2, 3}
	for _, suite := range suites {
		f.Add(byte(suite), sealed(NewSealer(key, true, suite), []byte("hello"))[6:])
	}
	f.Add(byte(0), make([]byte, Overhead))
	f.Add(byte(1), []byte{})
	f.Fuzz(func(t *testing.T, suite byte, box []byte) {
		o := NewOpener(key, false, Suite(suite%2))
		if plain, err := o.Open(box); err == nil && len(box) != 0 {
			// Only a genuine datagram opens; the seed is one.
			if !bytes.Equal(plain, []byte("hello")) {
				t.Fatalf("forged datagram opened: %q", plain)
			}
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	for _, suite := range suites {
		for _, size := range []int{64, 1400, 65000} {
			b.Run(suite.String()+"/"+sizeName(size), func(b *testing.B) {
				s := NewSealer(testKey(b), true, suite)
				pkt := make([]byte, 6+suite.Headroom()+size, 6+Overhead+size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					s.Seal(pkt, 6)
				}
			})
		}
	}
}

// BenchmarkSealOpen seals and opens each datagram: the cost of one
// encrypted hop.
func BenchmarkSealOpen(b *testing.B) {
	for _, suite := range suites {
		for _, size := range []int{64, 1400, 65000} {
			b.Run(suite.String()+"/"+sizeName(size), func(b *testing.B) {
				key := testKey(b)
				s, o := NewSealer(key, true, suite), NewOpener(key, false, suite)
				pkt := make([]byte, 6+suite.Headroom()+size, 6+Overhead+size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					p := s.Seal(pkt, 6)
					if _, err := o.Open(p[6:]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func sizeName(n int) string {
	return map[int]string{64: "64B", 1400: "1400B", 65000: "65000B"}[n]
}
