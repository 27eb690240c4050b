package mesh

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Reading gob from the network.
//
// mesh's wire format is encoding/gob. We encode with encoding/gob (our own
// values), but decode the two shapes that arrive before and around the
// handshake (a map[string]string of handshake fields, and a []byte per
// message in protocol version 1) by hand: encoding/gob sizes a map from the
// count the sender claims before reading any entry, and a stream decoder
// believes each message's length. Here every length and count is checked
// against the bytes actually present before anything is allocated.
//
// A gob stream is a run of messages, each an unsigned length and then that
// many bytes: a signed type id, then the value. Negative ids carry type
// definitions, which we skip. A top-level value that is not a struct starts
// with a zero field delta.

var errGobShort = errors.New("gob: truncated")

// gobUint reads gob's unsigned integer: one byte below 128, else a byte
// holding minus the count of big-endian bytes that follow.
func gobUint(b []byte) (uint64, []byte, error) {
	if len(b) == 0 {
		return 0, nil, errGobShort
	}
	c := b[0]
	if c < 0x80 {
		return uint64(c), b[1:], nil
	}
	n := int(-int8(c))
	if n < 1 || n > 8 {
		return 0, nil, fmt.Errorf("gob: bad integer length %d", n)
	}
	if len(b) < 1+n {
		return 0, nil, errGobShort
	}
	var v uint64
	for _, x := range b[1 : 1+n] {
		v = v<<8 | uint64(x)
	}
	return v, b[1+n:], nil
}

// gobInt reads gob's signed integer: the sign is the low bit.
func gobInt(b []byte) (int64, []byte, error) {
	u, rest, err := gobUint(b)
	if err != nil {
		return 0, nil, err
	}
	if u&1 != 0 {
		return ^int64(u >> 1), rest, nil
	}
	return int64(u >> 1), rest, nil
}

// gobBytes reads a length-prefixed byte string. The result aliases b.
func gobBytes(b []byte) ([]byte, []byte, error) {
	n, rest, err := gobUint(b)
	if err != nil {
		return nil, nil, err
	}
	if n > uint64(len(rest)) {
		return nil, nil, errGobShort
	}
	return rest[:n], rest[n:], nil
}

// gobValues calls fn with the body (after the type id) of each value
// message in a buffer of whole messages, skipping type definitions, until
// fn returns false or the buffer ends.
func gobValues(buf []byte, fn func(body []byte) (more bool, err error)) error {
	for len(buf) > 0 {
		msg, rest, err := gobBytes(buf)
		if err != nil {
			return err
		}
		buf = rest
		id, body, err := gobInt(msg)
		if err != nil {
			return err
		}
		if id < 0 {
			continue
		}
		more, err := fn(body)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// decodeStringMap reads the first map[string]string value in buf, a buffer
// of whole gob messages, refusing more than maxEntries entries.
func decodeStringMap(buf []byte, maxEntries int) (map[string]string, error) {
	var out map[string]string
	err := gobValues(buf, func(body []byte) (bool, error) {
		m, err := decodeStringMapBody(body, maxEntries)
		out = m
		return false, err
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, errors.New("gob: no handshake fields")
	}
	return out, nil
}

// decodeStringMapBody reads a map[string]string value message body.
func decodeStringMapBody(body []byte, maxEntries int) (map[string]string, error) {
	delta, b, err := gobUint(body)
	if err != nil {
		return nil, err
	}
	if delta != 0 {
		return nil, errors.New("gob: handshake fields are not a map")
	}
	n, b, err := gobUint(b)
	if err != nil {
		return nil, err
	}
	// Each entry takes at least two bytes, so a count the buffer cannot
	// hold is a lie.
	if n > uint64(maxEntries) || n > uint64(len(b)/2) {
		return nil, fmt.Errorf("gob: %d handshake fields", n)
	}
	out := make(map[string]string, n)
	for i := uint64(0); i < n; i++ {
		var k, v []byte
		if k, b, err = gobBytes(b); err != nil {
			return nil, err
		}
		if v, b, err = gobBytes(b); err != nil {
			return nil, err
		}
		out[string(k)] = string(v)
	}
	return out, nil
}

// decodeByteSlice reads a []byte value message body (protocol version 1
// carries each message so). The result aliases body.
func decodeByteSlice(body []byte) ([]byte, error) {
	delta, b, err := gobUint(body)
	if err != nil {
		return nil, err
	}
	if delta != 0 {
		return nil, errors.New("gob: message is not a byte string")
	}
	v, _, err := gobBytes(b)
	return v, err
}

// gobStream reads whole gob messages from a stream, refusing any longer
// than max before reading it.
type gobStream struct {
	r   *bufio.Reader
	max int
}

// next returns the next message with its type id; it is valid until the
// following call.
func (s *gobStream) next() (int64, []byte, error) {
	var hdr [9]byte
	c, err := s.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	hdr[0] = c
	n := 1
	if c >= 0x80 {
		k := int(-int8(c))
		if k < 1 || k > 8 {
			return 0, nil, fmt.Errorf("gob: bad length prefix %#x", c)
		}
		if _, err := io.ReadFull(s.r, hdr[1:1+k]); err != nil {
			return 0, nil, err
		}
		n += k
	}
	size, _, err := gobUint(hdr[:n])
	if err != nil {
		return 0, nil, err
	}
	if size > uint64(s.max) {
		return 0, nil, &oversizeError{size: size, max: s.max}
	}
	msg := make([]byte, size)
	if _, err := io.ReadFull(s.r, msg); err != nil {
		return 0, nil, err
	}
	id, body, err := gobInt(msg)
	return id, body, err
}

// nextValue skips type definitions and returns the next value's body.
func (s *gobStream) nextValue() ([]byte, error) {
	for {
		id, body, err := s.next()
		if err != nil {
			return nil, err
		}
		if id >= 0 {
			return body, nil
		}
	}
}

// oversizeError is a frame announced above the bound in force.
type oversizeError struct {
	size uint64
	max  int
}

func (e *oversizeError) Error() string {
	return fmt.Sprintf("frame of %d bytes exceeds the limit of %d", e.size, e.max)
}
