package router

import (
	"encoding/binary"
	"errors"

	"weavenet/mesh"
)

// The classic sleeve wire format, kept byte-compatible with Weave Net 2.x so
// that a weavenet peer can one day share a network with Weave Net routers:
//
//	UDP payload := sender-name(6) frame*
//	frame       := src-peer(6) dst-peer(6) length(2, big endian) payload(length)
//
// sender-name is the peer that sent this datagram (the previous hop), src-peer
// the peer whose bridge captured the frame, dst-peer the peer it is going to
// (for a flooded frame: the next hop). The payload is an Ethernet frame, of
// at most the overlay MTU plus its header: the router cuts TCP super-frames
// into segments before they reach the wire. On a link where both ends
// advertised featurePartialCsum (the fast format) TCP checksums are partial.
const (
	nameSize        = mesh.NameSize
	packetHdrLen    = nameSize
	frameHdrLen     = nameSize + nameSize + 2
	ethHdrLen       = 14
	maxUDPPayload   = 65535 - 20 - 8
	heartbeatLen    = ethHdrLen + 8
	fragTestLen     = 60001
	maxFramePayload = 0xffff
)

// What nextFrame and senderOf report for a datagram that does not parse; the
// router drops it and counts it as malformed.
var (
	errShortPacket = errors.New("sleeve packet shorter than its sender name")
	errShortFrame  = errors.New("sleeve frame longer than the datagram")
	errTrailing    = errors.New("trailing bytes after the last sleeve frame")
)

// frameHeader is one decoded frame header. Payload aliases the datagram.
type frameHeader struct {
	Src, Dst mesh.PeerName
	// Off is where the payload starts in the datagram, so that a caller can
	// reuse the bytes in front of it as headroom for in-place re-encoding.
	Off     int
	Payload []byte
}

// senderOf returns the name of the peer that sent the datagram.
func senderOf(pkt []byte) (mesh.PeerName, error) {
	if len(pkt) < packetHdrLen {
		return 0, errShortPacket
	}
	return peerNameFromBin(pkt[:nameSize]), nil
}

// nextFrame decodes the frame starting at off in pkt. It returns the offset of
// the following frame. When off == len(pkt) there are no more frames and ok is
// false with a nil error. It never allocates.
func nextFrame(pkt []byte, off int) (h frameHeader, next int, ok bool, err error) {
	rest := len(pkt) - off
	if rest == 0 {
		return h, off, false, nil
	}
	if rest < frameHdrLen {
		return h, off, false, errTrailing
	}
	b := pkt[off:]
	n := int(binary.BigEndian.Uint16(b[12:14]))
	if rest-frameHdrLen < n {
		return h, off, false, errShortFrame
	}
	h.Src = peerNameFromBin(b[0:6])
	h.Dst = peerNameFromBin(b[6:12])
	h.Off = off + frameHdrLen
	h.Payload = pkt[h.Off : h.Off+n]
	return h, h.Off + n, true, nil
}

// putFrameHeader writes a frame header into the frameHdrLen bytes of b in
// front of a payload of length n.
func putFrameHeader(b []byte, src, dst mesh.PeerName, n int) {
	putPeerName(b[0:6], src)
	putPeerName(b[6:12], dst)
	binary.BigEndian.PutUint16(b[12:14], uint16(n))
}

// isSpecial reports whether an Ethernet payload is one of the router's own
// control frames (heartbeat, fragmentation test, PMTU probe): Weave marks them
// with an all-zero Ethernet header, which no real frame has.
func isSpecial(eth []byte) bool {
	if len(eth) < ethHdrLen {
		return false
	}
	for _, c := range eth[:ethHdrLen] {
		if c != 0 {
			return false
		}
	}
	return true
}

// mesh.PeerName (MAC flavour) is a uint64 holding 48 bits, big endian on the
// wire. mesh's own encoder allocates a slice per call; these do not.
func peerNameFromBin(b []byte) mesh.PeerName {
	_ = b[5]
	return mesh.PeerName(uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 |
		uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5]))
}

func putPeerName(b []byte, n mesh.PeerName) {
	_ = b[5]
	b[0] = byte(n >> 40)
	b[1] = byte(n >> 32)
	b[2] = byte(n >> 24)
	b[3] = byte(n >> 16)
	b[4] = byte(n >> 8)
	b[5] = byte(n)
}
