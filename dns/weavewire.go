package dns

import (
	"bytes"
	"cmp"
	"encoding/gob"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"weavenet/mesh"
)

// Weave Net 2.x's weaveDNS gossip, channel "nameserver".
//
// Each message is one gob value: a struct with a Timestamp (the sender's
// clock, Unix seconds) and a slice Entries, each entry with ContainerID,
// Origin (mesh peer name), Addr (IPv4 as a uint32), Hostname (as registered,
// case kept, normally fully qualified), Version (a per-entry counter from 0)
// and Tombstone (Unix seconds of the deletion, 0 while live). gob matches
// struct fields by name, so the field names below are the protocol; the Go
// type names are not sent in a way that matters to the receiver.
//
// Weave Net's rules, which our copy of that state (weaveTable) follows:
// per entry (ContainerID, Origin, Addr, Hostname compared exactly) the
// higher Version wins, at equal versions the later Tombstone; a receiver
// refuses a message whose Timestamp is more than 15 minutes off its clock,
// ignores entries of peers mesh does not know, forgets every entry of a
// peer mesh garbage-collects, and drops tombstones 30 minutes after their
// timestamp. A Weave Net peer panics on a message holding the same entry
// twice, so an encoded message never does.

// weaveWireEntry is one entry as gob carries it.
type weaveWireEntry struct {
	ContainerID string
	Origin      uint64 // mesh.PeerName
	Addr        uint32 // IPv4, most significant byte first
	Hostname    string
	Version     int64 // Weave Net's int
	Tombstone   int64
}

// weaveWireMessage is one gossip message as gob carries it.
type weaveWireMessage struct {
	Timestamp int64
	Entries   []weaveWireEntry
}

// weaveWireProbe decodes only the entry count: gob accepts an element
// struct without fields (it skips every field), and such elements take no
// memory, so the count is checked before the entries are allocated.
type weaveWireProbe struct {
	Entries []struct{}
}

const (
	// maxWeaveMessage bounds one message. Weave Net sends its whole table
	// in one message (about 120 bytes an entry with Docker IDs), so this
	// allows some 35,000 entries.
	maxWeaveMessage = 4 << 20
	// maxWeaveEntries bounds the entries of one message.
	maxWeaveEntries = 100_000
	// minWeaveEntrySize is the least a valid entry takes in gob: origin
	// and address (field delta and value, 2 bytes each), hostname (delta,
	// length, at least 2 bytes), the end of the struct.
	minWeaveEntrySize = 9
	// maxWeaveVersion keeps versions far from overflow in either model.
	maxWeaveVersion = 1 << 53
	// weaveTombstoneLifetime and weaveClockSkew are Weave Net's.
	weaveTombstoneLifetime = 30 * time.Minute
	weaveClockSkew         = weaveTombstoneLifetime / 2
)

// errWeaveMalformed is wrapped by every decoding error of a bad message.
var errWeaveMalformed = errors.New("malformed nameserver (Weave Net) gossip")

// weaveKey identifies an entry as Weave Net does: hostname as registered,
// case included.
type weaveKey struct {
	Origin    mesh.PeerName
	Hostname  string
	Addr      uint32
	Container string
}

// weaveRec is the replicated value of a weaveKey.
type weaveRec struct {
	Version   int64
	Tombstone int64 // Unix seconds of the deletion; 0 while live
}

// newer reports whether r beats o in Weave Net's merge order.
func (r weaveRec) newer(o weaveRec) bool {
	if r.Version != o.Version {
		return r.Version > o.Version
	}
	return r.Tombstone > o.Tombstone
}

// weaveTable holds Weave Net entries keyed as Weave Net keys them.
type weaveTable map[weaveKey]weaveRec

// merge joins o into t and returns the entries of o that changed t.
func (t weaveTable) merge(o weaveTable) weaveTable {
	delta := weaveTable{}
	for k, r := range o {
		if cur, ok := t[k]; ok && !r.newer(cur) {
			continue
		}
		t[k] = r
		delta[k] = r
	}
	return delta
}

// gc drops tombstones older than Weave Net's tombstone lifetime.
func (t weaveTable) gc(now time.Time) {
	limit := now.Add(-weaveTombstoneLifetime).Unix()
	for k, r := range t {
		if r.Tombstone != 0 && r.Tombstone < limit {
			delete(t, k)
		}
	}
}

// weaveData is a message for the "nameserver" channel; it implements
// mesh.GossipData. mesh owns it once handed over.
type weaveData struct {
	timestamp int64
	entries   weaveTable
}

var _ mesh.GossipData = (*weaveData)(nil)

// Merge implements mesh.GossipData, coalescing pending outbound gossip.
func (d *weaveData) Merge(other mesh.GossipData) mesh.GossipData {
	if o, ok := other.(*weaveData); ok {
		d.entries.merge(o.entries)
		d.timestamp = max(d.timestamp, o.timestamp)
	}
	return d
}

// Encode implements mesh.GossipData: one gob message, as Weave Net sends
// (its decoder expects exactly one value per message), entries in its
// order (hostname as bytes, origin, container, address).
func (d *weaveData) Encode() [][]byte {
	keys := make([]weaveKey, 0, len(d.entries))
	for k := range d.entries {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b weaveKey) int {
		if c := cmp.Compare(a.Hostname, b.Hostname); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Origin, b.Origin); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Container, b.Container); c != 0 {
			return c
		}
		return cmp.Compare(a.Addr, b.Addr)
	})
	m := weaveWireMessage{Timestamp: d.timestamp, Entries: make([]weaveWireEntry, 0, len(keys))}
	for _, k := range keys {
		r := d.entries[k]
		m.Entries = append(m.Entries, weaveWireEntry{ContainerID: k.Container, Origin: uint64(k.Origin),
			Addr: k.Addr, Hostname: k.Hostname, Version: r.Version, Tombstone: r.Tombstone})
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&m); err != nil {
		// Only a programming error (an unencodable type) gets here.
		panic(fmt.Sprintf("dns: encoding nameserver gossip: %v", err))
	}
	return [][]byte{buf.Bytes()}
}

// decodeWeave parses one "nameserver" message. A message that does not
// decode, is too large or too far off our clock is an error; entries that
// decode but cannot be valid (no origin or address, a hostname that is not
// a DNS name, an oversized or non-UTF-8 container, negative numbers) are
// left out and counted in skipped. The same entry twice keeps the newer.
func decodeWeave(msg []byte, now time.Time) (d *weaveData, skipped int, err error) {
	if len(msg) == 0 || len(msg) > maxWeaveMessage {
		return nil, 0, fmt.Errorf("%w: message of %d bytes (limit %d)", errWeaveMalformed, len(msg), maxWeaveMessage)
	}
	// gob allocates a buffer of each declared message length (up to
	// 10 MiB at once) before reading it, so the lengths are checked
	// against what is there first.
	if err := checkGobFraming(msg); err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errWeaveMalformed, err)
	}
	// The probe counts the entries without allocating them (about 80
	// bytes each plus their strings).
	var probe weaveWireProbe
	if err := gob.NewDecoder(bytes.NewReader(msg)).Decode(&probe); err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errWeaveMalformed, err)
	}
	if n := len(probe.Entries); n > maxWeaveEntries || n > len(msg)/minWeaveEntrySize {
		return nil, 0, fmt.Errorf("%w: %d entries in %d bytes (limit %d, at least %d bytes each)",
			errWeaveMalformed, n, len(msg), maxWeaveEntries, minWeaveEntrySize)
	}
	// With the capacity there, gob decodes in place instead of growing.
	m := weaveWireMessage{Entries: make([]weaveWireEntry, 0, len(probe.Entries))}
	probe.Entries = nil
	if err := gob.NewDecoder(bytes.NewReader(msg)).Decode(&m); err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errWeaveMalformed, err)
	}
	if skew := time.Duration(m.Timestamp-now.Unix()) * time.Second; m.Timestamp <= 0 ||
		skew > weaveClockSkew || skew < -weaveClockSkew {
		return nil, 0, fmt.Errorf("%w: timestamp %d is more than %v off our clock (%d)",
			errWeaveMalformed, m.Timestamp, weaveClockSkew, now.Unix())
	}
	d = &weaveData{timestamp: m.Timestamp, entries: make(weaveTable, len(m.Entries))}
	for _, e := range m.Entries {
		if !validWeaveEntry(e) {
			skipped++
			continue
		}
		k := weaveKey{Origin: mesh.PeerName(e.Origin), Hostname: e.Hostname, Addr: e.Addr, Container: e.ContainerID}
		r := weaveRec{Version: e.Version, Tombstone: e.Tombstone}
		if cur, ok := d.entries[k]; ok && !r.newer(cur) {
			continue
		}
		d.entries[k] = r
	}
	return d, skipped, nil
}

func validWeaveEntry(e weaveWireEntry) bool {
	return e.Origin != 0 && e.Addr != 0 &&
		e.Version >= 0 && e.Version < maxWeaveVersion && e.Tombstone >= 0 &&
		len(e.ContainerID) <= maxContainerLen && utf8.ValidString(e.ContainerID) &&
		checkCanonical(lower(e.Hostname)) == nil
}

// checkGobFraming walks the gob stream's length-prefixed messages (type
// definitions, then the value) and fails if a declared length exceeds the
// bytes that follow. A gob unsigned integer is one byte below 0x80, or a
// byte holding the negated count (1-8) of big-endian bytes that follow.
func checkGobFraming(b []byte) error {
	for len(b) > 0 {
		c := b[0]
		b = b[1:]
		n := uint64(c)
		if c >= 0x80 {
			k := int(-int8(c))
			if k < 1 || k > 8 || k > len(b) {
				return fmt.Errorf("bad gob length prefix %#x", c)
			}
			n = 0
			for _, x := range b[:k] {
				n = n<<8 | uint64(x)
			}
			b = b[k:]
		}
		if n == 0 || n > uint64(len(b)) {
			return fmt.Errorf("gob message of %d bytes declared, %d left", n, len(b))
		}
		b = b[n:]
	}
	return nil
}
