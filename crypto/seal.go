package crypto

import (
	"encoding/binary"
	"errors"
	"sync/atomic"

	// Sealing in place needs the primitives under NaCl secretbox; these
	// packages are frozen, not broken, and secretbox itself is built on them.
	//lint:ignore SA1019 see above
	"golang.org/x/crypto/poly1305"
	//lint:ignore SA1019 see above
	"golang.org/x/crypto/salsa20/salsa"
)

// Overhead is what sealing adds to a datagram, in front of the plaintext:
// the sequence number and the authenticator.
const Overhead = seqLen + tagLen

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
	outbound bool
	seq      atomic.Uint64
}

// NewSealer returns the sealer for the end of a connection that dialled it
// (outbound) or accepted it.
func NewSealer(key *Key, outbound bool) *Sealer {
	return &Sealer{key: key, outbound: outbound}
}

// Seal seals pkt in place. pkt[:prefix] stays in the clear (the sender's
// name); the Overhead bytes after it are overwritten with the sequence
// number and authenticator; the rest, the plaintext, is encrypted where it
// lies. No allocation, no copy. The caller keeps ownership of pkt.
func (s *Sealer) Seal(pkt []byte, prefix int) {
	seq := s.seq.Add(1) - 1
	if seq >= dfBit {
		// 2^63 datagrams: unreachable in practice; refusing beats reusing a nonce.
		panic("crypto: sequence space exhausted")
	}
	binary.BigEndian.PutUint64(pkt[prefix:], seq)
	box := pkt[prefix+seqLen:]
	polyKey := xsalsa20(box[tagLen:], s.key, nonce(s.outbound, seq))
	var tag [tagLen]byte
	poly1305.Sum(&tag, box[tagLen:], &polyKey)
	copy(box, tag[:])
}

// Opener opens the datagrams one end of a connection receives. It is not
// safe for concurrent use: one goroutine receives a connection's datagrams.
type Opener struct {
	key      *Key
	outbound bool
	windows  [2]ReplayWindow // plain and don't-fragment counters
}

// NewOpener returns the opener for the end of a connection that dialled it
// (outbound) or accepted it.
func NewOpener(key *Key, outbound bool) *Opener {
	return &Opener{key: key, outbound: outbound}
}

// Open authenticates and decrypts box, a sealed datagram without its sender
// prefix (seq, authenticator, ciphertext), in place. The plaintext it
// returns is box[Overhead:].
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
