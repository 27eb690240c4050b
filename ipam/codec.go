package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"weavenet/mesh"
)

// Wire format of every IPAM gossip message (broadcast, gossip and unicast
// alike), big-endian:
//
//	message  = version:u8 kind:u8 body
//	version  = 1 (formatVersion); anything else is rejected
//	kind     = see the kind* constants; body depends on it:
//	  kindState         state
//	  kindSpaceRequest  prefix                 "give me space in this subnet"
//	  kindSpaceGrant    prefix state           "done: here is the ring"
//	  kindSpaceRefused  prefix                 "I have no free space there"
//	  kindClaimRequest  addr4                  "give me this address"
//	  kindClaimGrant    addr4 state
//	  kindClaimRefused  addr4 reason:u8
//	  kindHandover      state                  "I leave: my pieces are yours"
//	  kindHandoverAck   (empty)
//	  kindWantRing      (empty)                "someone here needs a ring"
//	state    = ring paxos
//	ring     = prefix seeds:list(peer) entries:list(entry)
//	entry    = token:u32 peer version:u32 free:u32
//	paxos    = list(node)
//	node     = peer version:u32 promised:ballot accepted:ballot value:list(peer)
//	ballot   = round:u32 peer
//	prefix   = addr4 bits:u8
//	addr4    = 4 bytes
//	peer     = u64 (mesh.PeerName)
//	list(x)  = count:uvarint x*count
//
// Decoders check everything a peer could get wrong or forge: sorted,
// unique tokens, seeds and nodes, tokens inside the Range, a ready ring
// starting at token 0, and counts bounded by the bytes left.
const formatVersion = 1

const (
	kindState byte = 1 + iota
	kindSpaceRequest
	kindSpaceGrant
	kindSpaceRefused
	kindClaimRequest
	kindClaimGrant
	kindClaimRefused
	kindHandover
	kindHandoverAck
	kindWantRing
	kindLast = kindWantRing
)

// Reasons in kindClaimRefused.
const (
	reasonInUse    byte = 1
	reasonNotOwner byte = 2
	reasonNotReady byte = 3
)

// ErrUnknownVersion is returned for a message in a format we don't know,
// from a newer (or much older) weavenet: upgrade the peers to one version.
var ErrUnknownVersion = errors.New("ipam: gossip message in an unknown format version: run the same weavenet version on all peers")

var errShort = errors.New("ipam: truncated message")

// message is any decoded IPAM message.
type message struct {
	kind   byte
	subnet netip.Prefix // space messages
	addr   netip.Addr   // claim messages
	reason byte
	state  *gossipState // kindState, grants, handover
}

func hasState(kind byte) bool {
	return kind == kindState || kind == kindSpaceGrant || kind == kindClaimGrant || kind == kindHandover
}

func encodeMessage(m *message) []byte {
	b := []byte{formatVersion, m.kind}
	switch m.kind {
	case kindSpaceRequest, kindSpaceGrant, kindSpaceRefused:
		b = appendPrefix(b, m.subnet)
	case kindClaimRequest, kindClaimGrant, kindClaimRefused:
		a := m.addr.As4()
		b = append(b, a[:]...)
		if m.kind == kindClaimRefused {
			b = append(b, m.reason)
		}
	}
	if hasState(m.kind) {
		b = appendRing(b, m.state.ring)
		b = appendPaxos(b, m.state.paxos)
	}
	return b
}

func decodeMessage(b []byte) (*message, error) {
	if len(b) < 2 {
		return nil, errShort
	}
	if b[0] != formatVersion {
		return nil, fmt.Errorf("%w (got version %d, we speak %d)", ErrUnknownVersion, b[0], formatVersion)
	}
	m := &message{kind: b[1]}
	if m.kind < kindState || m.kind > kindLast {
		return nil, fmt.Errorf("ipam: unknown message kind %d", m.kind)
	}
	d := &decoder{b: b[2:]}
	switch m.kind {
	case kindSpaceRequest, kindSpaceGrant, kindSpaceRefused:
		m.subnet = d.prefix()
	case kindClaimRequest, kindClaimGrant, kindClaimRefused:
		m.addr = d.addr4()
		if m.kind == kindClaimRefused {
			m.reason = d.u8()
			if d.err == nil && (m.reason < reasonInUse || m.reason > reasonNotReady) {
				d.fail("unknown claim refusal reason %d", m.reason)
			}
		}
	}
	if hasState(m.kind) {
		r := d.ring()
		p := d.paxos()
		if d.err == nil {
			m.state = &gossipState{ring: r, paxos: p}
		}
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return m, nil
}

func appendPrefix(b []byte, p netip.Prefix) []byte {
	a := p.Addr().As4()
	return append(append(b, a[:]...), byte(p.Bits()))
}

func appendRing(b []byte, r *ring) []byte {
	b = appendPrefix(b, r.Range)
	b = binary.AppendUvarint(b, uint64(len(r.Seeds)))
	for _, s := range r.Seeds {
		b = binary.BigEndian.AppendUint64(b, uint64(s))
	}
	b = binary.AppendUvarint(b, uint64(len(r.Entries)))
	for _, e := range r.Entries {
		b = binary.BigEndian.AppendUint32(b, e.Token)
		b = binary.BigEndian.AppendUint64(b, uint64(e.Peer))
		b = binary.BigEndian.AppendUint32(b, e.Version)
		b = binary.BigEndian.AppendUint32(b, e.Free)
	}
	return b
}

func appendBallot(b []byte, x ballot) []byte {
	b = binary.BigEndian.AppendUint32(b, x.Round)
	return binary.BigEndian.AppendUint64(b, uint64(x.Proposer))
}

func appendPaxos(b []byte, s paxosState) []byte {
	names := s.participants()
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, n := range names {
		rec := s[n]
		b = binary.BigEndian.AppendUint64(b, uint64(n))
		b = binary.BigEndian.AppendUint32(b, rec.Version)
		b = appendBallot(b, rec.Promised)
		b = appendBallot(b, rec.Accepted)
		b = binary.AppendUvarint(b, uint64(len(rec.Value)))
		for _, v := range rec.Value {
			b = binary.BigEndian.AppendUint64(b, uint64(v))
		}
	}
	return b
}

// decoder reads big-endian fields; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("ipam: bad message: "+format, args...)
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = errShort
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// count reads a list length whose items take at least size bytes each.
func (d *decoder) count(size int) int {
	if d.err != nil {
		return 0
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || k != uvarintLen(n) {
		d.fail("bad count")
		return 0
	}
	d.b = d.b[k:]
	if n > uint64(len(d.b)/size) {
		d.err = errShort
		return 0
	}
	return int(n)
}

// uvarintLen is the length of n's minimal uvarint encoding: longer ones
// are rejected so that every message has one encoding.
func uvarintLen(n uint64) int {
	k := 1
	for ; n >= 0x80; n >>= 7 {
		k++
	}
	return k
}

func (d *decoder) addr4() netip.Addr {
	if v := d.take(4); v != nil {
		return netip.AddrFrom4([4]byte(v))
	}
	return netip.Addr{}
}

func (d *decoder) prefix() netip.Prefix {
	a := d.addr4()
	bits := int(d.u8())
	if d.err != nil {
		return netip.Prefix{}
	}
	p := netip.PrefixFrom(a, bits)
	if !p.IsValid() || p.Masked() != p {
		d.fail("bad prefix %v/%d", a, bits)
	}
	return p
}

func (d *decoder) peers() []mesh.PeerName {
	n := d.count(8)
	var out []mesh.PeerName
	for i := 0; i < n && d.err == nil; i++ {
		p := mesh.PeerName(d.u64())
		if p == mesh.UnknownPeerName || (i > 0 && p <= out[i-1]) {
			d.fail("peer list not sorted, unique and non-zero")
		}
		out = append(out, p)
	}
	return out
}

func (d *decoder) ring() *ring {
	r := &ring{Range: d.prefix()}
	if d.err == nil {
		if err := checkRange(r.Range); err != nil {
			d.fail("%v", err)
		}
	}
	r.Seeds = d.peers()
	n := d.count(20)
	if n > 0 {
		r.Entries = make([]entry, 0, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		e := entry{Token: d.u32(), Peer: mesh.PeerName(d.u64()), Version: d.u32(), Free: d.u32()}
		switch {
		case d.err != nil:
		case i == 0 && e.Token != 0:
			d.fail("ring does not start at token 0")
		case i > 0 && e.Token <= r.Entries[i-1].Token:
			d.fail("ring tokens not sorted")
		case e.Token >= r.size():
			d.fail("token %d outside range %v", e.Token, r.Range)
		case e.Peer == mesh.UnknownPeerName:
			d.fail("ring entry without a peer")
		}
		r.Entries = append(r.Entries, e)
	}
	if d.err == nil && (len(r.Seeds) == 0) != (len(r.Entries) == 0) {
		d.fail("ring seeds and entries disagree")
	}
	return r
}

func (d *decoder) ballot() ballot {
	return ballot{Round: d.u32(), Proposer: mesh.PeerName(d.u64())}
}

func (d *decoder) paxos() paxosState {
	n := d.count(8 + 4 + 12 + 12 + 1)
	s := make(paxosState, n)
	var last mesh.PeerName
	for i := 0; i < n && d.err == nil; i++ {
		name := mesh.PeerName(d.u64())
		rec := paxosNode{Version: d.u32(), Promised: d.ballot(), Accepted: d.ballot()}
		rec.Value = d.peers()
		switch {
		case d.err != nil:
		case name == mesh.UnknownPeerName || (i > 0 && name <= last):
			d.fail("paxos nodes not sorted, unique and non-zero")
		case rec.Promised.less(rec.Accepted):
			d.fail("paxos node accepted above its promise")
		case rec.Accepted.zero() != (len(rec.Value) == 0):
			d.fail("paxos value without ballot or ballot without value")
		}
		last = name
		s[name] = rec
	}
	return s
}
