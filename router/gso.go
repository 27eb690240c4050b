package router

import (
	"encoding/binary"
	"errors"

	"weavenet/tun"
)

// Segmentation of offloaded TCP super-frames. The kernel hands the TAP up to
// 64 KiB of one TCP flow as a single frame (TSO); the underlay carries
// datagrams of about 1.5 KB. Cutting the super-frame into MSS-sized frames
// here, instead of sending it as one datagram the kernel must fragment and
// reassemble, keeps every datagram whole, so a lost datagram costs one TCP
// segment, not 45, and the receiver's coalescer (coalesce.go) can glue the
// segments back together for its device.

var errNotSegmentable = errors.New("super-frame is not TCP over IPv4 or IPv6 without extension headers")

// tcpSegmenter cuts one TCP super-frame into frames of at most mss payload
// bytes each, in order. It reads the super-frame and never changes it.
type tcpSegmenter struct {
	eth      []byte // the super-frame, from its Ethernet header
	hdrLen   int    // Ethernet + IP + TCP headers
	ipHdrLen int
	v4       bool
	mss      int
	seq      uint32
	flags    byte
	ipID     uint16
	start    int // offset in the payload of the next segment
	i        int // index of the next segment
}

func newTCPSegmenter(eth []byte, mss int) (tcpSegmenter, error) {
	s := tcpSegmenter{eth: eth, mss: mss}
	if len(eth) < ethHdrLen+20 || mss <= 0 {
		return s, errNotSegmentable
	}
	ip := eth[ethHdrLen:]
	s.v4 = ip[0]>>4 == 4
	switch {
	case s.v4 && eth[12] == 0x08 && eth[13] == 0x00:
		s.ipHdrLen = int(ip[0]&0xf) * 4
		if s.ipHdrLen < 20 || ip[9] != 6 {
			return s, errNotSegmentable
		}
		s.ipID = binary.BigEndian.Uint16(ip[4:6])
	case ip[0]>>4 == 6 && eth[12] == 0x86 && eth[13] == 0xdd:
		s.ipHdrLen = 40
		if ip[6] != 6 {
			return s, errNotSegmentable
		}
	default:
		return s, errNotSegmentable
	}
	if len(ip) < s.ipHdrLen+20 {
		return s, errNotSegmentable
	}
	tcp := ip[s.ipHdrLen:]
	tcpHdrLen := int(tcp[12]>>4) * 4
	if tcpHdrLen < 20 || len(tcp) < tcpHdrLen {
		return s, errNotSegmentable
	}
	s.hdrLen = ethHdrLen + s.ipHdrLen + tcpHdrLen
	s.seq = binary.BigEndian.Uint32(tcp[4:8])
	s.flags = tcp[13]
	return s, nil
}

// csumStart is where the TCP checksum's coverage starts in each segment, for
// a virtio header that leaves the checksum to the receiving device.
func (s *tcpSegmenter) csumStart() int { return ethHdrLen + s.ipHdrLen }

// maxLen is the length of the longest segment.
func (s *tcpSegmenter) maxLen() int { return s.hdrLen + s.mss }

// next writes the next segment, an Ethernet frame, at the start of dst and
// returns its length, or 0 when every segment has been written. dst must
// hold maxLen bytes. With partial, the TCP checksum field holds only the
// pseudo-header sum, for a receiver told so by VirtioNetHdrFNeedsCsum; the
// payload is then never summed. Otherwise the checksum is complete.
func (s *tcpSegmenter) next(dst []byte, partial bool) int {
	payload := s.eth[s.hdrLen:]
	if s.start >= len(payload) && (s.i > 0 || len(payload) > 0) {
		return 0
	}
	end := min(s.start+s.mss, len(payload))
	copy(dst, s.eth[:s.hdrLen])
	n := copy(dst[s.hdrLen:], payload[s.start:end])
	ip := dst[ethHdrLen:]
	tcp := ip[s.ipHdrLen:]
	binary.BigEndian.PutUint32(tcp[4:8], s.seq+uint32(s.start))
	const fin, psh, cwr = 0x01, 0x08, 0x80
	f := s.flags
	if end < len(payload) {
		f &^= fin | psh
	}
	if s.i > 0 {
		f &^= cwr
	}
	tcp[13] = f
	tcpLen := s.hdrLen - ethHdrLen - s.ipHdrLen + n
	setIPLengths(ip, s.v4, s.ipHdrLen, tcpLen, s.ipID+uint16(s.i))
	sum := pseudoHeaderSum(ip, s.v4, tcpLen)
	if partial {
		binary.BigEndian.PutUint16(tcp[16:18], fold(sum))
	} else {
		tcp[16], tcp[17] = 0, 0
		binary.BigEndian.PutUint16(tcp[16:18], ^fold(addBytes(sum, tcp[:tcpLen])))
	}
	s.start = end
	s.i++
	return s.hdrLen + n
}

// setIPLengths rewrites an IP header for a TCP segment of tcpLen bytes:
// length fields, and for IPv4 the identification and header checksum.
func setIPLengths(ip []byte, v4 bool, ipHdrLen, tcpLen int, id uint16) {
	if !v4 {
		binary.BigEndian.PutUint16(ip[4:6], uint16(tcpLen))
		return
	}
	binary.BigEndian.PutUint16(ip[2:4], uint16(ipHdrLen+tcpLen))
	binary.BigEndian.PutUint16(ip[4:6], id)
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:12], ^fold(addBytes(0, ip[:ipHdrLen])))
}

// pseudoHeaderSum is the unfolded one's complement sum of the TCP
// pseudo-header of a segment of tcpLen bytes.
func pseudoHeaderSum(ip []byte, v4 bool, tcpLen int) uint64 {
	var sum uint64
	if v4 {
		sum = addBytes(0, ip[12:20])
	} else {
		sum = addBytes(0, ip[8:40])
	}
	return sum + 6 + uint64(tcpLen)
}

// segmentTCP writes each segment of eth, in device form (a blank virtio
// header, then a frame with complete checksums), at buf[off:] and calls emit
// with its length before writing the next over it.
func segmentTCP(eth []byte, mss int, buf []byte, off int, emit func(n int)) error {
	s, err := newTCPSegmenter(eth, mss)
	if err != nil {
		return err
	}
	out := buf[off:]
	for {
		clear(out[:tun.VirtioNetHdrLen])
		n := s.next(out[tun.VirtioNetHdrLen:], false)
		if n == 0 {
			return nil
		}
		emit(tun.VirtioNetHdrLen + n)
	}
}
