package dns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
	"unicode/utf8"

	"weavenet/mesh"
)

// Gossip wire format, version 1. One message is one self-contained chunk of
// a table; Encode splits a large table into chunks of about maxChunk bytes.
//
//	u8       format version (1)
//	uvarint  P, number of peer names
//	P times  uvarint length (1-64), peer name as mesh.PeerName.String()
//	uvarint  R, number of retired watermarks
//	R times  uvarint peer index (< P), uvarint version (>= 1)
//	uvarint  E, number of entries
//	E times  uvarint origin peer index (< P)
//	         uvarint length (1-255), container identifier (UTF-8)
//	         uvarint length (2-254), hostname (canonical FQDN)
//	         u8 address length (4 or 16), address bytes (16 never 4in6)
//	         uvarint version (>= 1)
//	         u8 flags: bit 0 tombstone, other bits zero
//	         tombstones only: uvarint remaining lifetime in seconds (1-86400)
//
// Nothing may follow the last entry. Decoding checks every bound before it
// allocates, so a hostile message costs at most its own size.

const (
	formatV1 = 1
	// maxChunk is the soft size limit of one encoded message.
	maxChunk = 64 << 10
	// maxPeerNameLen bounds a peer name's text form.
	maxPeerNameLen = 64
	// maxTombstoneLifetime bounds a tombstone lifetime on the wire and
	// in Config.
	maxTombstoneLifetime = 24 * time.Hour
	flagTombstone        = 1
)

var (
	// errMalformed is wrapped by every decoding error of a bad message.
	errMalformed = errors.New("malformed dns gossip")
	// errUnknownFormat marks a message of a format version we do not
	// speak (a newer peer); it is ignored, not treated as an attack.
	errUnknownFormat = errors.New("unknown dns gossip format version")
)

// Encode implements mesh.GossipData. Each returned slice is a complete
// message; mesh owns them. Tombstones with less than a second to live are
// left out (they are about to be collected everywhere).
func (t *table) Encode() [][]byte {
	var out [][]byte
	e := chunkEncoder{}
	e.reset()
	retired := make([]mesh.PeerName, 0, len(t.retired))
	for p := range t.retired {
		retired = append(retired, p)
	}
	slices.Sort(retired)
	for _, p := range retired {
		e.retired = binary.AppendUvarint(e.retired, uint64(e.peer(p)))
		e.retired = binary.AppendUvarint(e.retired, t.retired[p])
		e.nRetired++
	}
	for _, k := range t.sortedKeys() {
		r := t.entries[k]
		var life uint64
		if r.Tombstone {
			left := r.Expires.Sub(t.now)
			if left < time.Second {
				continue
			}
			life = uint64(min(left, maxTombstoneLifetime) / time.Second)
		}
		if len(e.body) >= maxChunk {
			out = append(out, e.finish())
			e.reset()
		}
		b := e.body
		b = binary.AppendUvarint(b, uint64(e.peer(k.Origin)))
		b = appendString(b, k.Container)
		b = appendString(b, k.Hostname)
		a := k.Addr.AsSlice()
		b = append(b, byte(len(a)))
		b = append(b, a...)
		b = binary.AppendUvarint(b, r.Version)
		if r.Tombstone {
			b = append(b, flagTombstone)
			b = binary.AppendUvarint(b, life)
		} else {
			b = append(b, 0)
		}
		e.body = b
		e.nEntries++
	}
	if e.nEntries > 0 || e.nRetired > 0 || len(out) == 0 {
		out = append(out, e.finish())
	}
	return out
}

// chunkEncoder accumulates one message: the peer table is only known once
// the entries are written, so the parts are assembled in finish.
type chunkEncoder struct {
	peers    []mesh.PeerName
	index    map[mesh.PeerName]int
	retired  []byte
	nRetired int
	body     []byte
	nEntries int
}

func (e *chunkEncoder) reset() {
	e.peers, e.index = e.peers[:0], map[mesh.PeerName]int{}
	e.retired, e.nRetired = nil, 0
	e.body, e.nEntries = nil, 0
}

func (e *chunkEncoder) peer(p mesh.PeerName) int {
	if i, ok := e.index[p]; ok {
		return i
	}
	e.index[p] = len(e.peers)
	e.peers = append(e.peers, p)
	return len(e.peers) - 1
}

func (e *chunkEncoder) finish() []byte {
	b := make([]byte, 0, 16+len(e.peers)*20+len(e.retired)+len(e.body))
	b = append(b, formatV1)
	b = binary.AppendUvarint(b, uint64(len(e.peers)))
	for _, p := range e.peers {
		b = appendString(b, p.String())
	}
	b = binary.AppendUvarint(b, uint64(e.nRetired))
	b = append(b, e.retired...)
	b = binary.AppendUvarint(b, uint64(e.nEntries))
	return append(b, e.body...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeTable parses one message. Tombstone expiries are set relative to
// now. msg is only read during the call.
func decodeTable(msg []byte, now time.Time) (*table, error) {
	d := decoder{b: msg}
	if len(msg) == 0 {
		return nil, fmt.Errorf("%w: empty message", errMalformed)
	}
	if v := d.byte(); v != formatV1 {
		return nil, fmt.Errorf("%w %d (we speak %d)", errUnknownFormat, v, formatV1)
	}
	t := newTable(now)
	// Peer names: at least 2 bytes each on the wire.
	np := d.count(2)
	peers := make([]mesh.PeerName, 0, np)
	seen := make(map[mesh.PeerName]bool, np)
	for range np {
		s := d.string(1, maxPeerNameLen)
		if d.err != nil {
			break
		}
		p, err := mesh.PeerNameFromString(s)
		if err != nil || p.String() != s || p == mesh.UnknownPeerName {
			d.fail("peer name %q is not canonical", s)
			break
		}
		if seen[p] {
			d.fail("peer name %q repeated", s)
			break
		}
		seen[p] = true
		peers = append(peers, p)
	}
	nr := d.count(2)
	for range nr {
		p := d.peer(peers)
		v := d.version()
		if d.err != nil {
			break
		}
		if v > t.retired[p] {
			t.retired[p] = v
		}
	}
	// Entries: at least 1+2+3+5+1+1 bytes each.
	ne := d.count(13)
	for range ne {
		var k key
		k.Origin = d.peer(peers)
		k.Container = d.string(1, maxContainerLen)
		k.Hostname = d.string(2, 254)
		k.Addr = d.addr()
		r := record{Version: d.version()}
		switch f := d.byte(); f {
		case 0:
		case flagTombstone:
			r.Tombstone = true
			life := d.uvarint()
			if life < 1 || life > uint64(maxTombstoneLifetime/time.Second) {
				d.fail("tombstone lifetime %d s out of range", life)
			}
			r.Expires = now.Add(time.Duration(life) * time.Second)
		default:
			d.fail("unknown flags %#x", f)
		}
		if d.err != nil {
			break
		}
		if !utf8.ValidString(k.Container) {
			d.fail("container identifier is not UTF-8")
			break
		}
		if err := checkCanonical(k.Hostname); err != nil {
			d.fail("%v", err)
			break
		}
		if r.Version <= t.retired[k.Origin] {
			continue
		}
		if cur, ok := t.entries[k]; ok && !r.newer(cur) {
			continue
		}
		t.entries[k] = r
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return t, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{errMalformed}, args...)...)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count and checks it against the bytes left, given
// the minimum encoded size of one element.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.fail("count %d exceeds message size", n)
		return 0
	}
	return int(n)
}

func (d *decoder) string(minLen, maxLen int) string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n < uint64(minLen) || n > uint64(maxLen) || n > uint64(len(d.b)) {
		d.fail("string length %d out of range %d-%d", n, minLen, maxLen)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) peer(peers []mesh.PeerName) mesh.PeerName {
	i := d.uvarint()
	if d.err != nil {
		return mesh.UnknownPeerName
	}
	if i >= uint64(len(peers)) {
		d.fail("peer index %d out of range", i)
		return mesh.UnknownPeerName
	}
	return peers[i]
}

func (d *decoder) version() uint64 {
	v := d.uvarint()
	if d.err == nil && (v == 0 || v == math.MaxUint64) {
		d.fail("version %d out of range", v)
	}
	return v
}

func (d *decoder) addr() netip.Addr {
	n := int(d.byte())
	if d.err != nil {
		return netip.Addr{}
	}
	if (n != 4 && n != 16) || len(d.b) < n {
		d.fail("address length %d", n)
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(d.b[:n])
	d.b = d.b[n:]
	if n == 16 && a.Is4In6() {
		d.fail("IPv4-mapped address %v must be sent as 4 bytes", a)
		return netip.Addr{}
	}
	if a.IsUnspecified() {
		d.fail("unspecified address")
		return netip.Addr{}
	}
	return a
}
