package mesh

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
)

// Framing of protocol messages on a connection, and their encryption.
//
// Version 2 frames each message with a 4-byte big-endian length; version 1
// gob-encodes each message as a []byte. With a password, each message is
// sealed with secretbox under the session key before framing. A frame
// writer is used by one goroutine at a time (the handshake, then the
// connection's writer); so is a frame reader.

// maxFrame bounds a protocol message after the handshake, as mesh does.
const maxFrame = 10 << 20

type frameWriter interface {
	// writeFrame queues msg behind those before it, writing them out
	// when they fill the buffer.
	writeFrame(msg []byte) error
	// flush writes out what is queued.
	flush() error
}

type frameReader interface {
	// readFrame returns the next message, which the caller then owns.
	readFrame() ([]byte, error)
	// setLimit bounds the frames read from now on.
	setLimit(n int)
}

// lengthWriter frames by a 4-byte length prefix (version 2). Frames are
// gathered in buf and written together: while a mesh forms, a connection
// carries bursts of small gossip messages, and a write each (a system
// call, and on a virtual machine a costly one) was a tenth of a daemon's
// work.
type lengthWriter struct {
	w   io.Writer
	buf []byte
}

// batchedBytes is how much lengthWriter gathers before writing it out;
// larger frames go out from where they are.
const batchedBytes = 16 << 10

func (lw *lengthWriter) writeFrame(msg []byte) error {
	if len(msg) > maxFrame {
		return fmt.Errorf("outgoing message of %d bytes exceeds %d", len(msg), maxFrame)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(msg)))
	if len(msg) > batchedBytes {
		// A large frame (a topology) goes out behind what is queued
		// and its length, in one writev, rather than copied into a
		// buffer that would be garbage or held for good.
		bufs := net.Buffers{lw.buf, hdr[:], msg}
		lw.buf = lw.buf[:0]
		_, err := bufs.WriteTo(lw.w)
		return err
	}
	if len(lw.buf)+len(hdr)+len(msg) > batchedBytes {
		if err := lw.flush(); err != nil {
			return err
		}
	}
	lw.buf = append(append(lw.buf, hdr[:]...), msg...)
	return nil
}

func (lw *lengthWriter) flush() error {
	if len(lw.buf) == 0 {
		return nil
	}
	_, err := lw.w.Write(lw.buf)
	lw.buf = lw.buf[:0]
	return err
}

// lengthReader reads frames with a 4-byte length prefix (version 2),
// through a buffer: a header and a small body in one read, and a burst of
// small frames too. The handshake hands on the reader it used, so
// nothing buffered during it is lost.
type lengthReader struct {
	r     *bufio.Reader
	limit int
}

func newLengthReader(r io.Reader, limit int) *lengthReader {
	return &lengthReader{r: bufio.NewReaderSize(r, readBuffer), limit: limit}
}

// readBuffer is lengthReader's buffer; a larger body is read directly
// into its own slice.
const readBuffer = 4 << 10

func (lr *lengthReader) setLimit(n int) { lr.limit = n }

func (lr *lengthReader) readFrame() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(lr.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(lr.limit) {
		return nil, &oversizeError{size: uint64(n), max: lr.limit}
	}
	// A fresh buffer each time: gossipers may keep what they are given.
	buf := make([]byte, n)
	if _, err := io.ReadFull(lr.r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// gobWriter frames each message as a gob []byte (version 1).
type gobWriter struct{ enc *gob.Encoder }

func (gw *gobWriter) writeFrame(msg []byte) error { return gw.enc.Encode(msg) }

// flush has nothing to do: a gob encoder writes each message as it goes.
func (gw *gobWriter) flush() error { return nil }

// gobReader reads gob []byte messages (version 1).
type gobReader struct{ s *gobStream }

func newGobReader(r io.Reader, limit int) *gobReader {
	return &gobReader{&gobStream{r: bufio.NewReader(r), max: limit}}
}

func (gr *gobReader) setLimit(n int) { gr.s.max = n }

func (gr *gobReader) readFrame() ([]byte, error) {
	body, err := gr.s.nextValue()
	if err != nil {
		return nil, err
	}
	return decodeByteSlice(body)
}

// The session key. Both ends hash the NaCl shared secret of their key
// exchange with the password; a peer without the password cannot open
// anything sealed with it.
func sessionKey(theirPublic, ourPrivate *[32]byte, password []byte) *[32]byte {
	var shared [32]byte
	box.Precompute(&shared, theirPublic, ourPrivate)
	h := sha256.New()
	h.Write(shared[:])
	h.Write(password)
	var key [32]byte
	h.Sum(key[:0])
	return &key
}

func newKeyPair() (public, private *[32]byte, err error) {
	return box.GenerateKey(rand.Reader)
}

// nonceSeq is one direction's nonces: the first byte's top bit says the
// sender dialled the connection, the next bit marks the TCP stream (the
// overlay's nonces leave it clear), and the last 8 bytes count messages.
// So the two directions, and the overlay, never share a nonce.
type nonceSeq struct {
	nonce [24]byte
	seq   uint64
}

func newNonceSeq(senderDialled bool) *nonceSeq {
	s := &nonceSeq{}
	if senderDialled {
		s.nonce[0] |= 0x80
	}
	s.nonce[0] |= 0x40
	return s
}

func (s *nonceSeq) next() {
	s.seq++
	binary.BigEndian.PutUint64(s.nonce[16:], s.seq)
}

// sealWriter seals each message before framing it.
type sealWriter struct {
	inner frameWriter
	key   *[32]byte
	n     *nonceSeq
	buf   []byte
}

func (sw *sealWriter) writeFrame(msg []byte) error {
	sw.buf = secretbox.Seal(sw.buf[:0], msg, &sw.n.nonce, sw.key)
	sw.n.next()
	err := sw.inner.writeFrame(sw.buf)
	if cap(sw.buf) > 64<<10 {
		sw.buf = nil
	}
	return err
}

func (sw *sealWriter) flush() error { return sw.inner.flush() }

// openReader opens each frame; one that does not open ends the connection.
type openReader struct {
	inner frameReader
	key   *[32]byte
	n     *nonceSeq
}

// ErrPasswordMismatch: a message did not decrypt; in the handshake, the
// peer has another password (or, with SessionPassword, derives another
// secret).
var ErrPasswordMismatch = errors.New("password mismatch: the peer's messages do not decrypt with our password")

func (or *openReader) setLimit(n int) { or.inner.setLimit(n) }

func (or *openReader) readFrame() ([]byte, error) {
	box, err := or.inner.readFrame()
	if err != nil {
		return nil, err
	}
	out, ok := secretbox.Open(nil, box, &or.n.nonce, or.key)
	if !ok {
		return nil, ErrPasswordMismatch
	}
	or.n.next()
	return out, nil
}
