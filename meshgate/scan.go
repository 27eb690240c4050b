package meshgate

import (
	"encoding/binary"
	"errors"
)

// What an inbound connection sends before mesh has authenticated it, as the
// Scanner follows it (mesh's protocol.go, versions 1 and 2):
//
//	header   := "weave" minVersion(1) maxVersion(1)
//	v2       := flag(1: 0 plain, 1 encrypted) [publicKey(32) if flag is 1] frame*
//	frame    := length(4, big endian) body(length)
//	v1       := message*                        (an encoding/gob stream)
//	message  := count(gob uint) body(count)
//
// The first v2 frame holds the peer's features (encrypted under the session
// key when there is a password); in v1 the first two gob messages do (the
// map's type, then the map). mesh allocates each frame's or message's
// length as soon as it reads it, up to 10 MB (gob: gigabytes), before
// anything is authenticated: the Scanner lets a length through to mesh only
// once it is known to be small.

// Errors of a Scanner. ErrHold is not a rejection: the bytes it stops at may
// pass once the connection is authenticated.
var (
	ErrNotMesh  = errors.New("meshgate: not the mesh protocol")
	ErrVersion  = errors.New("meshgate: no protocol version in common")
	ErrOversize = errors.New("meshgate: handshake frame larger than the pre-authentication bound")
	ErrHold     = errors.New("meshgate: frame waits for authentication")
)

// HeaderLen is the length of the protocol header, the first thing a peer
// sends.
const HeaderLen = len(protocolName) + 2

const protocolName = "weave"

type scanState uint8

const (
	stHeader scanState = iota
	stFlag
	stKey
	stLength
	stBody
	stGobCount
	stGobBody
)

// A Scanner follows the bytes an inbound mesh connection receives before
// its handshake completes and says how many of them may reach mesh. It is
// pure: no I/O, no allocation. The zero value is not usable: set the
// fields, then call Scan.
type Scanner struct {
	// MinVersion and MaxVersion are our protocol versions (mesh's).
	MinVersion, MaxVersion byte
	// MaxFrame bounds a handshake frame or message; a later one above it
	// waits for authentication.
	MaxFrame int
	// MaxBytes bounds everything let through before authentication; what
	// would pass it waits for authentication.
	MaxBytes int

	state   scanState
	version byte
	need    int // bytes left of the key or body being passed
	frames  int // frames or messages whose length was read
	total   int // bytes accepted
}

// Version is the protocol version the header negotiated, 0 before.
func (s *Scanner) Version() byte { return s.version }

// Accepted is how many bytes Scan has accepted so far.
func (s *Scanner) Accepted() int { return s.total }

// handshakeFrames is how many leading frames (v2) or messages (v1) carry the
// handshake itself: one larger than MaxFrame is refused, not held.
func (s *Scanner) handshakeFrames() int {
	if s.version == 1 {
		return 2
	}
	return 1
}

// Scan takes p, the bytes received and not yet accepted, and returns how
// many of its leading bytes may go to mesh. The rest, p[n:], is not
// consumed: present it again, with what arrives next appended, on the next
// call (a length is only judged whole, so at most 9 bytes, a gob count, wait
// this way). err is nil when more input is needed, ErrHold when p[n:] must wait
// until the connection is authenticated (mesh has its features), and any
// other error rejects the connection. Scan does not keep p.
func (s *Scanner) Scan(p []byte) (n int, err error) {
	for n < len(p) {
		rest := p[n:]
		switch s.state {
		case stHeader:
			if len(rest) < HeaderLen {
				return n, nil
			}
			if string(rest[:len(protocolName)]) != protocolName {
				return n, ErrNotMesh
			}
			theirMin, theirMax := rest[len(protocolName)], rest[len(protocolName)+1]
			lo, hi := max(theirMin, s.MinVersion), min(theirMax, s.MaxVersion)
			if lo > hi || hi < 1 || hi > 2 {
				return n, ErrVersion
			}
			s.version = hi
			s.state = stFlag
			if hi == 1 {
				s.state = stGobCount
			}
			n += s.accept(HeaderLen)
		case stFlag:
			switch rest[0] {
			case 0:
				s.state = stLength
			case 1:
				s.state, s.need = stKey, 32
			default:
				// mesh refuses it too; the peer is no mesh peer.
				return n, ErrNotMesh
			}
			n += s.accept(1)
		case stKey, stBody, stGobBody:
			k := min(s.need, len(rest))
			s.need -= k
			n += s.accept(k)
			if s.need == 0 {
				s.state = stLength
				if s.version == 1 {
					s.state = stGobCount
				}
			}
		case stLength:
			if len(rest) < 4 {
				return n, nil
			}
			l := int(binary.BigEndian.Uint32(rest))
			if err := s.judge(4, l); err != nil {
				return n, err
			}
			s.state, s.need = stBody, l
			n += s.accept(4)
			if l == 0 {
				s.state = stLength
			}
		case stGobCount:
			w, l, ok := gobCount(rest)
			if w == 0 {
				return n, nil // incomplete
			}
			if !ok {
				return n, ErrNotMesh
			}
			if err := s.judge(w, l); err != nil {
				return n, err
			}
			s.state, s.need = stGobBody, l
			n += s.accept(w)
			if l == 0 {
				s.state = stGobCount
			}
		}
	}
	return n, nil
}

// judge decides on a frame of length l whose length field is w bytes long.
func (s *Scanner) judge(w, l int) error {
	s.frames++
	handshake := s.frames <= s.handshakeFrames()
	if l > s.MaxFrame {
		s.frames--
		if handshake {
			return ErrOversize
		}
		return ErrHold
	}
	if s.total+w+l > s.MaxBytes {
		s.frames--
		if handshake {
			return ErrOversize
		}
		return ErrHold
	}
	return nil
}

func (s *Scanner) accept(k int) int {
	s.total += k
	return k
}

// gobCount decodes encoding/gob's unsigned count at the start of p: one byte
// below 0x80 is the value; otherwise the byte is minus the number of
// big-endian bytes that follow (at most 8). w is the field's width, 0 when p
// holds only part of it; ok is false when the field is malformed or its
// value does not fit an int.
func gobCount(p []byte) (w, l int, ok bool) {
	if len(p) == 0 {
		return 0, 0, false
	}
	b := p[0]
	if b < 0x80 {
		return 1, int(b), true
	}
	k := 256 - int(b)
	if k > 8 {
		return 1, 0, false
	}
	if len(p) < 1+k {
		return 0, 0, false
	}
	var v uint64
	for _, c := range p[1 : 1+k] {
		v = v<<8 | uint64(c)
	}
	if v > 1<<31 {
		return 1 + k, 0, false
	}
	return 1 + k, int(v), true
}
