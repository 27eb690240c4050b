package router

import (
	"encoding/binary"
	"math/bits"
)

// completeChecksum finishes an offloaded (CHECKSUM_PARTIAL) checksum: the
// field at csumAt holds the pseudo-header sum, and the one's complement sum
// of everything from start to the end of the frame goes there.
func completeChecksum(frame []byte, start, csumAt int) {
	binary.BigEndian.PutUint16(frame[csumAt:], ^fold(addBytes(0, frame[start:])))
}

// tcpChecksumAt finds the TCP checksum of eth, an Ethernet frame holding an
// unfragmented TCP segment over IPv4 or IPv6 (no extension headers): its
// offset in eth, and the pseudo-header sum that the field holds while the
// checksum is partial. ok is false for any other frame.
func tcpChecksumAt(eth []byte) (at int, pseudo uint16, ok bool) {
	if len(eth) < ethHdrLen+40 {
		return 0, 0, false
	}
	ip := eth[ethHdrLen:]
	var ipHdrLen, tcpLen int
	v4 := false
	switch {
	case eth[12] == 0x08 && eth[13] == 0x00 && ip[0]>>4 == 4:
		ipHdrLen = int(ip[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		// Not a fragment: no more-fragments bit, offset 0.
		if ipHdrLen < 20 || ip[9] != 6 || binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 ||
			total > len(ip) || total < ipHdrLen+20 {
			return 0, 0, false
		}
		tcpLen, v4 = total-ipHdrLen, true
	case eth[12] == 0x86 && eth[13] == 0xdd && ip[0]>>4 == 6:
		ipHdrLen = 40
		tcpLen = int(binary.BigEndian.Uint16(ip[4:6]))
		if ip[6] != 6 || tcpLen < 20 || 40+tcpLen > len(ip) {
			return 0, 0, false
		}
	default:
		return 0, 0, false
	}
	return ethHdrLen + ipHdrLen + 16, fold(pseudoHeaderSum(ip, v4, tcpLen)), true
}

// tcpChecksumValid reports whether the complete TCP checksum of eth, a frame
// that tcpChecksumAt accepted, its checksum at at, is right: the one's
// complement sum of the pseudo header and the segment is all ones.
func tcpChecksumValid(eth []byte, at int) bool {
	ip := eth[ethHdrLen:]
	v4 := ip[0]>>4 == 4
	end := ethHdrLen + 40 + int(binary.BigEndian.Uint16(ip[4:6]))
	if v4 {
		end = ethHdrLen + int(binary.BigEndian.Uint16(ip[2:4]))
	}
	tcp := eth[at-16 : end]
	return fold(addBytes(pseudoHeaderSum(ip, v4, len(tcp)), tcp)) == 0xffff
}

// addBytes adds b, as big-endian 16-bit words, to a one's complement sum
// kept unfolded in 64 bits. The bulk is summed 64 bits at a time with
// end-around carry, the same sum modulo 0xffff, at about three times the
// speed of summing halves: verifying every received segment's checksum
// (coalesce.go) passes over all the payload.
func addBytes(sum uint64, b []byte) uint64 {
	var acc, c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[8:]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[16:]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	acc, c = bits.Add64(acc, 0, c)
	acc += c // cannot carry again: acc is 0 if the line above carried
	sum += acc>>32 + acc&0xffffffff
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
