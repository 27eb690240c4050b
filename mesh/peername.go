package mesh

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// PeerName identifies a peer: 48 bits, written like a MAC address. It is a
// map key, hence an integer rather than a byte slice.
type PeerName uint64

const (
	// PeerNameFlavour is what the handshake's PeerNameFlavour field says;
	// a peer of another flavour is refused.
	PeerNameFlavour = "mac"
	// NameSize is the length of a PeerName on the wire.
	NameSize = 6
	// UnknownPeerName is no peer: the zero value, used as a sentinel.
	UnknownPeerName = PeerName(0)
)

// PeerNameFromUserInput parses a name given by a user (the same syntax as
// PeerNameFromString).
func PeerNameFromUserInput(s string) (PeerName, error) { return PeerNameFromString(s) }

// PeerNameFromString parses six colon-separated hex octets, where one run
// of zero octets may be written "::" as in IPv6 (so "::1" is
// 00:00:00:00:00:01).
func PeerNameFromString(s string) (PeerName, error) {
	bad := func() (PeerName, error) { return UnknownPeerName, fmt.Errorf("invalid peer name format: %q", s) }
	head, tail, elided := strings.Cut(s, "::")
	if elided && strings.Contains(tail, "::") {
		return bad()
	}
	split := func(part string) ([]byte, bool) {
		if part == "" {
			return nil, true
		}
		var out []byte
		for _, f := range strings.Split(part, ":") {
			if len(f) < 1 || len(f) > 2 {
				return nil, false
			}
			v, err := strconv.ParseUint(f, 16, 8)
			if err != nil {
				return nil, false
			}
			out = append(out, byte(v))
		}
		return out, true
	}
	hi, ok1 := split(head)
	lo, ok2 := split(tail)
	if !ok1 || !ok2 {
		return bad()
	}
	var octets []byte
	switch {
	case !elided && len(hi) == NameSize:
		octets = hi
	case elided && len(hi)+len(lo) >= 1 && len(hi)+len(lo) < NameSize:
		octets = append(append(hi, make([]byte, NameSize-len(hi)-len(lo))...), lo...)
	default:
		return bad()
	}
	return PeerNameFromBin(octets), nil
}

// PeerNameFromBin reads a name from its wire form, big-endian octets.
func PeerNameFromBin(b []byte) PeerName {
	var n uint64
	for _, c := range b {
		n = n<<8 | uint64(c)
	}
	return PeerName(n)
}

// bytes is the wire form of name: NameSize big-endian octets.
func (name PeerName) bytes() []byte {
	b := make([]byte, NameSize)
	for i := NameSize - 1; i >= 0; i-- {
		b[i] = byte(name)
		name >>= 8
	}
	return b
}

// String writes name as six colon-separated hex octets.
func (name PeerName) String() string {
	b := name.bytes()
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}

// PeerUID tells incarnations of a peer apart: a new one is drawn at each
// start. Zero marks a peer known only by name (a placeholder).
type PeerUID uint64

func parsePeerUID(s string) (PeerUID, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	return PeerUID(v), err
}

// PeerShortID is a 12-bit alias of a peer, drawn at random, for data planes
// that carry it in place of the name. Collisions are resolved in favour of
// the lower name.
type PeerShortID uint16

const peerShortIDBits = 12

func randomUint64() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms.
		panic(fmt.Sprintf("mesh: crypto/rand: %v", err))
	}
	return binary.LittleEndian.Uint64(b[:])
}

func randomPeerUID() PeerUID {
	for {
		if u := randomUint64(); u != 0 {
			return PeerUID(u)
		}
	}
}

func randomShortID() PeerShortID {
	return PeerShortID(randomUint64() & (1<<peerShortIDBits - 1))
}
