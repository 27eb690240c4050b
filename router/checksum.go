package router

import "encoding/binary"

// completeChecksum finishes an offloaded (CHECKSUM_PARTIAL) checksum: the
// field at csumAt holds the pseudo-header sum, and the one's complement sum
// of everything from start to the end of the frame goes there.
func completeChecksum(frame []byte, start, csumAt int) {
	var sum uint64
	b := frame[start:]
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		sum += v >> 32
		sum += v & 0xffffffff
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	for sum > 0xffff {
		sum = (sum >> 16) + (sum & 0xffff)
	}
	binary.BigEndian.PutUint16(frame[csumAt:], ^uint16(sum))
}
