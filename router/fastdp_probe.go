package router

import (
	"encoding/binary"
	"errors"

	"weavenet/mesh"
)

// Probe frames of the fast datapath (see package fastdp): Ethernet frames
// sent VXLAN-encapsulated to a peer's VXLAN port, read by the peer's router
// from its VXLAN device and acknowledged over the mesh connection.
//
//	Ethernet header (dst fastdp.ProbeDst, src probeSrc, type 0x88b5)
//	magic "wnfp", version 1, size class (probeSmall, probeFull)
//	sender peer name (8), receiver peer name (8), connection UID (8), seq (4)
//	acks: the highest seq of the receiver's probes that reached the sender,
//	  small class (4), full class (4); zero: none, or a sender that
//	  acknowledges over the mesh connection instead (featureProbeAcks)
//	zero padding up to the size class's length
//
// The acks came later within version 1: a release before them sends zeros
// there (padding) and ignores what we put there.

const (
	probeEtherType = 0x88b5
	probeVersion   = 1
	probeBodyLen   = 4 + 1 + 1 + 8 + 8 + 8 + 4 + 4*numProbeClasses
	probeMinLen    = ethHdrLen + probeBodyLen
	// probeSmallLen is a minimum Ethernet frame: it gets through any
	// underlay that passes VXLAN at all.
	probeSmallLen = 60
)

// Size classes: a small probe tells whether the port is open, a full one
// (the overlay MTU) whether the underlay's MTU fits VXLAN frames.
const (
	probeSmall = iota
	probeFull
	numProbeClasses
)

var (
	probeMagic = [4]byte{'w', 'n', 'f', 'p'}
	probeDst   = [6]byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}
	probeSrc   = [6]byte{0x02, 'w', 'n', 'f', 'd', 'p'}
)

type probe struct {
	class    byte
	from, to mesh.PeerName
	connUID  uint64
	seq      uint32
	acks     [numProbeClasses]uint32
}

var errNotProbe = errors.New("not a fast datapath probe")

// putProbe writes p as a frame of n bytes (at least probeMinLen) into b.
func putProbe(b []byte, n int, p probe) []byte {
	b = b[:n]
	clear(b)
	copy(b[0:], probeDst[:])
	copy(b[6:], probeSrc[:])
	binary.BigEndian.PutUint16(b[12:], probeEtherType)
	body := b[ethHdrLen:]
	copy(body, probeMagic[:])
	body[4] = probeVersion
	body[5] = p.class
	binary.BigEndian.PutUint64(body[6:], uint64(p.from))
	binary.BigEndian.PutUint64(body[14:], uint64(p.to))
	binary.BigEndian.PutUint64(body[22:], p.connUID)
	binary.BigEndian.PutUint32(body[30:], p.seq)
	for c, a := range p.acks {
		binary.BigEndian.PutUint32(body[34+4*c:], a)
	}
	return b
}

// decodeProbe parses a frame read from the VXLAN device. Anyone who can
// reach the VXLAN port can send one, so the caller still checks that it
// names a connection we have.
func decodeProbe(eth []byte) (probe, error) {
	if len(eth) < probeMinLen || binary.BigEndian.Uint16(eth[12:]) != probeEtherType {
		return probe{}, errNotProbe
	}
	body := eth[ethHdrLen:]
	if [4]byte(body[0:4]) != probeMagic || body[4] != probeVersion || body[5] >= numProbeClasses {
		return probe{}, errNotProbe
	}
	p := probe{
		class:   body[5],
		from:    mesh.PeerName(binary.BigEndian.Uint64(body[6:])),
		to:      mesh.PeerName(binary.BigEndian.Uint64(body[14:])),
		connUID: binary.BigEndian.Uint64(body[22:]),
		seq:     binary.BigEndian.Uint32(body[30:]),
	}
	for c := range p.acks {
		p.acks[c] = binary.BigEndian.Uint32(body[34+4*c:])
	}
	return p, nil
}

// Toward a peer that does not offer featureProbeAcks, an acknowledgement
// travels in a control message: the class and sequence number of the probe
// that arrived.
const probeAckLen = 5

func putProbeAck(class byte, seq uint32) []byte {
	b := make([]byte, probeAckLen)
	b[0] = class
	binary.BigEndian.PutUint32(b[1:], seq)
	return b
}

func decodeProbeAck(msg []byte) (class byte, seq uint32, err error) {
	if len(msg) != probeAckLen || msg[0] >= numProbeClasses {
		return 0, 0, errNotProbe
	}
	return msg[0], binary.BigEndian.Uint32(msg[1:]), nil
}
