package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/cpu"

	// Sealing in place needs the primitives under NaCl secretbox; these
	// packages are frozen, not broken, and secretbox itself is built on them.
	//lint:ignore SA1019 see above
	"golang.org/x/crypto/poly1305"
	//lint:ignore SA1019 see above
	"golang.org/x/crypto/salsa20/salsa"
)

// Suite is a way of sealing datagrams. Both ends of a connection must use
// the same one; they agree on it in the mesh handshake.
type Suite uint8

const (
	// NaCl is Weave Net 2.x's: XSalsa20 and Poly1305 (NaCl secretbox)
	// under the session key, the authenticator in front of the ciphertext.
	NaCl Suite = iota
	// AESGCM is for weavenet peers whose CPUs have AES instructions, where
	// it is several times faster: AES-256-GCM under a key derived from the
	// session key, the tag after the ciphertext.
	AESGCM
)

func (s Suite) String() string {
	if s == AESGCM {
		return "aes-256-gcm"
	}
	return "nacl"
}

// Headroom is what sealing adds in front of the plaintext (after the
// sender's clear prefix), Tailroom what it adds after it.
func (s Suite) Headroom() int {
	if s == AESGCM {
		return seqLen
	}
	return seqLen + tagLen
}

// Tailroom: see Headroom.
func (s Suite) Tailroom() int {
	if s == AESGCM {
		return tagLen
	}
	return 0
}

// MaxHeadroom and MaxTailroom bound Headroom and Tailroom over all suites,
// for sizing buffers.
const (
	MaxHeadroom = seqLen + tagLen
	MaxTailroom = tagLen
)

// HardwareAES reports whether this CPU runs AES-GCM in hardware, which is
// when a peer should offer AESGCM.
func HardwareAES() bool {
	return cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ || cpu.ARM64.HasAES && cpu.ARM64.HasPMULL
}

const (
	seqLen = 8
	tagLen = poly1305.TagSize
	dfBit  = 1 << 63
)

// Errors of Open. Each is a reason to drop the datagram and count it.
var (
	ErrShort  = errors.New("crypto: sealed datagram too short")
	ErrAuth   = errors.New("crypto: datagram failed authentication")
	ErrReplay = errors.New("crypto: datagram replayed or too old")
)

// Key is a connection's 32-byte session key.
type Key = [32]byte

// Sealer seals the datagrams one end of a connection sends. It is safe for
// concurrent use: each call takes its own sequence number.
type Sealer struct {
	key      *Key
	gcm      cipher.AEAD // nil for NaCl
	outbound bool
	seq      atomic.Uint64
}

// NewSealer returns the sealer for the end of a connection that dialled it
// (outbound) or accepted it.
func NewSealer(key *Key, outbound bool, suite Suite) *Sealer {
	return &Sealer{key: key, gcm: newGCM(key, suite), outbound: outbound}
}

// Seal seals pkt in place and returns it. pkt[:prefix] stays in the clear
// (the sender's name); the suite's Headroom bytes after it are overwritten;
// the rest, the plaintext, is encrypted where it lies. The result is
// Tailroom bytes longer than pkt, so pkt must have that much spare
// capacity. No allocation, no copy. The caller keeps ownership of pkt.
func (s *Sealer) Seal(pkt []byte, prefix int) []byte {
	seq := s.seq.Add(1) - 1
	if seq >= dfBit {
		// 2^63 datagrams: unreachable in practice; refusing beats reusing a nonce.
		panic("crypto: sequence space exhausted")
	}
	binary.BigEndian.PutUint64(pkt[prefix:], seq)
	if s.gcm != nil {
		// The nonce escapes through the AEAD interface; a pooled array
		// keeps Seal free of allocations while staying safe for concurrent
		// callers.
		n := gcmNonces.Get().(*[12]byte)
		putGCMNonce(n, s.outbound, seq)
		plain := pkt[prefix+seqLen:]
		sealed := s.gcm.Seal(plain[:0], n[:], plain, nil)
		gcmNonces.Put(n)
		return pkt[:prefix+seqLen+len(sealed)]
	}
	box := pkt[prefix+seqLen:]
	polyKey := xsalsa20(box[tagLen:], s.key, nonce(s.outbound, seq))
	var tag [tagLen]byte
	poly1305.Sum(&tag, box[tagLen:], &polyKey)
	copy(box, tag[:])
	return pkt
}

// Opener opens the datagrams one end of a connection receives. It is not
// safe for concurrent use: one goroutine receives a connection's datagrams.
type Opener struct {
	key      *Key
	gcm      cipher.AEAD // nil for NaCl
	outbound bool
	windows  [2]ReplayWindow // plain and don't-fragment counters
	gcmNonce [12]byte
}

// NewOpener returns the opener for the end of a connection that dialled it
// (outbound) or accepted it.
func NewOpener(key *Key, outbound bool, suite Suite) *Opener {
	return &Opener{key: key, gcm: newGCM(key, suite), outbound: outbound}
}

// Open authenticates and decrypts box, a sealed datagram without its sender
// prefix, in place, and returns the plaintext, which aliases box.
func (o *Opener) Open(box []byte) ([]byte, error) {
	if len(box) < Overhead {
		return nil, ErrShort
	}
	seq := binary.BigEndian.Uint64(box)
	w := &o.windows[seq>>63]
	counter := seq &^ dfBit
	if !w.Fresh(counter) {
		return nil, ErrReplay
	}
	// The other end sealed it, so its direction bit is the opposite of ours.
	if o.gcm != nil {
		ct := box[seqLen:]
		putGCMNonce(&o.gcmNonce, !o.outbound, seq)
		plain, err := o.gcm.Open(ct[:0], o.gcmNonce[:], ct, nil)
		if err != nil {
			return nil, ErrAuth
		}
		if !w.Accept(counter) {
			return nil, ErrReplay
		}
		return plain, nil
	}
	n := nonce(!o.outbound, seq)
	var subKey [32]byte
	var counterBlock [16]byte
	setup(&subKey, &counterBlock, n, o.key)
	var first [64]byte
	salsa.XORKeyStream(first[:], first[:], &counterBlock, &subKey)
	var polyKey [32]byte
	copy(polyKey[:], first[:32])
	var tag [tagLen]byte
	copy(tag[:], box[seqLen:])
	ct := box[Overhead:]
	if !poly1305.Verify(&tag, ct, &polyKey) {
		return nil, ErrAuth
	}
	if !w.Accept(counter) {
		return nil, ErrReplay
	}
	xorFrom(ct, &first, &counterBlock, &subKey)
	return ct, nil
}

// Overhead is the least a sealed datagram carries besides its prefix and
// plaintext, whatever the suite.
const Overhead = seqLen + tagLen

// newGCM derives the AES-256-GCM key from the session key, so that no key
// serves two ciphers (mesh seals its TCP messages with NaCl under the
// session key itself).
func newGCM(key *Key, suite Suite) cipher.AEAD {
	if suite != AESGCM {
		return nil
	}
	k, err := hkdf.Key(sha256.New, key[:], nil, "weavenet sleeve aes-256-gcm", 32)
	if err != nil {
		panic(err) // only for impossible lengths
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		panic(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return gcm
}

var gcmNonces = sync.Pool{New: func() any { return new([12]byte) }}

// putGCMNonce writes the AES-GCM nonce: the direction bit first, the
// sequence number last.
func putGCMNonce(n *[12]byte, outbound bool, seq uint64) {
	*n = [12]byte{}
	if outbound {
		n[0] = 0x80
	}
	binary.BigEndian.PutUint64(n[4:], seq)
}

// nonce is Weave Net's: the direction bit first, the sequence number last.
func nonce(outbound bool, seq uint64) *[24]byte {
	var n [24]byte
	if outbound {
		n[0] = 0x80
	}
	binary.BigEndian.PutUint64(n[16:], seq)
	return &n
}

// The NaCl secretbox construction (XSalsa20 and Poly1305), done in place:
// x/crypto's secretbox refuses overlapping buffers, and copying every
// 64 KiB datagram to seal it would cost more than the copy is worth.

func setup(subKey *[32]byte, counter *[16]byte, n *[24]byte, key *Key) {
	var hNonce [16]byte
	copy(hNonce[:], n[:16])
	salsa.HSalsa20(subKey, &hNonce, key, &salsa.Sigma)
	copy(counter[:], n[16:])
}

// xsalsa20 encrypts msg in place and returns the Poly1305 key for it.
func xsalsa20(msg []byte, key *Key, n *[24]byte) [32]byte {
	var subKey [32]byte
	var counter [16]byte
	setup(&subKey, &counter, n, key)
	var first [64]byte
	salsa.XORKeyStream(first[:], first[:], &counter, &subKey)
	var polyKey [32]byte
	copy(polyKey[:], first[:32])
	xorFrom(msg, &first, &counter, &subKey)
	return polyKey
}

// xorFrom XORs msg with the keystream: its first 32 bytes with the second
// half of the first block (whose first half keyed Poly1305), the rest from
// block 1 on.
func xorFrom(msg []byte, first *[64]byte, counter *[16]byte, subKey *[32]byte) {
	head := min(len(msg), 32)
	for i := range head {
		msg[i] ^= first[32+i]
	}
	if len(msg) > 32 {
		counter[8] = 1
		salsa.XORKeyStream(msg[32:], msg[32:], counter, subKey)
	}
}
