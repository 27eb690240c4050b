package router

import "encoding/binary"

// completeChecksum finishes an offloaded (CHECKSUM_PARTIAL) checksum: the
// field at csumAt holds the pseudo-header sum, and the one's complement sum
// of everything from start to the end of the frame goes there.
func completeChecksum(frame []byte, start, csumAt int) {
	binary.BigEndian.PutUint16(frame[csumAt:], ^fold(addBytes(0, frame[start:])))
}

// addBytes adds b, as big-endian 16-bit words, to a one's complement sum
// kept unfolded in 64 bits.
func addBytes(sum uint64, b []byte) uint64 {
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		sum += v>>32 + v&0xffffffff
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	return sum
}

func fold(sum uint64) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}
