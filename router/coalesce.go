package router

import (
	"bytes"
	"encoding/binary"

	"weavenet/tun"
)

// Coalescing on receive: consecutive TCP segments of one flow, as a sender's
// super-frame arrives cut into datagrams, are glued back into one super-frame
// and handed to the device with a virtio GSO header, so the kernel takes
// 64 KiB per write instead of 1.4 KB. The rules are those of the kernel's own
// GRO: same addresses, ports, ack, window and options, sequence numbers that
// follow on, every segment but the last exactly one MSS, no flags but ACK
// (PSH may end a run). Whatever does not fit is written as it came.
//
// A super-frame goes to the device marked for checksum offload, so the
// kernel writes its checksum instead of checking one: a segment merged
// unchecked would have a corrupt payload made good. So, as the kernel's GRO
// does, a segment whose checksum is complete (the classic format) is
// verified before it joins or starts a run; one that fails is passed on
// alone and unmarked, for the kernel to drop, and counted. A segment from a
// fast-format link carries only the pseudo-header sum: nothing in it can be
// verified, with or without coalescing, since its sender never summed the
// payload. There the underlay's UDP checksum guards against corruption in
// transit and, on an encrypted link, the AEAD against forgery; on an
// unencrypted one, whoever can send datagrams from a peer's address can
// deliver any payload with any checksum.
//
// The receive loop owns its coalescer; it adds each frame for the device and
// flushes after each read from the socket, so nothing waits for a next
// datagram that may never come.

// maxCoalesced bounds a run: the IP length fields must hold it.
const maxCoalesced = 65535

type coalescer struct {
	buf      []byte // device form: virtio header, then the super-frame
	n        int    // bytes of buf in use; 0 when empty
	segs     int
	hdrLen   int // Ethernet + IP + TCP headers
	ipHdrLen int
	v4       bool
	mss      int
	nextSeq  uint32
	closed   bool      // the last segment was short or had PSH, or a bad checksum: nothing may follow
	stats    *counters // where bad checksums are counted; nil in tests
}

func newCoalescer() *coalescer {
	return &coalescer{buf: make([]byte, tun.VirtioNetHdrLen+ethHdrLen+maxCoalesced)}
}

// tcpSegment describes a frame that may be coalesced.
type tcpSegment struct {
	hdrLen, ipHdrLen int
	v4               bool
	seq              uint32
	payload          int
	psh              bool
	// partial: the checksum field holds only the pseudo-header sum (the
	// fast format), so the segment cannot be verified.
	partial bool
}

// parseTCPSegment reports whether frame, in device form, is a plain TCP
// segment with data that coalescing may take, and describes it.
func parseTCPSegment(frame []byte) (s tcpSegment, ok bool) {
	if len(frame) < tun.VirtioNetHdrLen || frame[1] != tun.VirtioNetHdrGSONone {
		return s, false
	}
	eth := frame[tun.VirtioNetHdrLen:]
	at, _, isTCP := tcpChecksumAt(eth) // a whole TCP segment over IPv4 or IPv6
	if !isTCP {
		return s, false
	}
	ip := eth[ethHdrLen:]
	s.v4 = ip[0]>>4 == 4
	s.ipHdrLen = at - 16 - ethHdrLen
	// No IPv4 options, and no padding behind the packet.
	if s.v4 && (s.ipHdrLen != 20 || int(binary.BigEndian.Uint16(ip[2:4])) != len(ip)) ||
		!s.v4 && int(binary.BigEndian.Uint16(ip[4:6]))+40 != len(ip) {
		return s, false
	}
	tcp := ip[s.ipHdrLen:]
	tcpHdrLen := int(tcp[12]>>4) * 4
	const ack, psh = 0x10, 0x08
	if tcpHdrLen < 20 || len(tcp) <= tcpHdrLen || tcp[13]&^psh != ack {
		return s, false
	}
	s.hdrLen = ethHdrLen + s.ipHdrLen + tcpHdrLen
	s.seq = binary.BigEndian.Uint32(tcp[4:8])
	s.payload = len(tcp) - tcpHdrLen
	s.psh = tcp[13]&psh != 0
	s.partial = frame[0]&tun.VirtioNetHdrFNeedsCsum != 0
	return s, true
}

// add takes frame (device form) into the run if it can, copying it; the
// caller keeps frame. When add returns false the caller must flush, then add
// again or write frame itself, to keep the flow in order.
func (c *coalescer) add(frame []byte) bool {
	s, ok := parseTCPSegment(frame)
	if !ok {
		return false
	}
	eth := frame[tun.VirtioNetHdrLen:]
	if c.n > 0 && c.follows(eth, s) {
		if !s.partial && !tcpChecksumOK(eth, s) {
			// The caller flushes the run and adds this again, which
			// counts it and passes it on alone.
			return false
		}
		copy(c.buf[c.n:], eth[s.hdrLen:])
		c.n += s.payload
		c.segs++
		c.nextSeq += uint32(s.payload)
		c.closed = s.psh || s.payload < c.mss
		if s.psh { // the run ends with this segment's PSH
			c.buf[tun.VirtioNetHdrLen+ethHdrLen+c.ipHdrLen+13] |= 0x08
		}
		return true
	}
	if c.n > 0 {
		return false
	}
	c.n = copy(c.buf, frame)
	c.segs = 1
	c.hdrLen, c.ipHdrLen, c.v4 = s.hdrLen, s.ipHdrLen, s.v4
	c.mss = s.payload
	c.nextSeq = s.seq + uint32(s.payload)
	c.closed = s.psh
	if !s.partial && !tcpChecksumOK(eth, s) {
		// A run of one is written as it came: unmarked, bad checksum
		// and all.
		c.closed = true
		if c.stats != nil {
			c.stats.drop(DropBadChecksum)
		}
	}
	return true
}

// tcpChecksumOK reports whether the complete TCP checksum of eth, the
// segment s describes, is right: the one's complement sum of the pseudo
// header and the whole segment, checksum included, is all ones.
func tcpChecksumOK(eth []byte, s tcpSegment) bool {
	ip := eth[ethHdrLen:]
	tcp := ip[s.ipHdrLen:]
	return fold(addBytes(pseudoHeaderSum(ip, s.v4, len(tcp)), tcp)) == 0xffff
}

// follows reports whether segment s (Ethernet frame eth) continues the run.
func (c *coalescer) follows(eth []byte, s tcpSegment) bool {
	if c.closed || s.hdrLen != c.hdrLen || s.v4 != c.v4 || s.seq != c.nextSeq ||
		s.payload > c.mss || c.n+s.payload > tun.VirtioNetHdrLen+ethHdrLen+maxCoalesced {
		return false
	}
	run := c.buf[tun.VirtioNetHdrLen:]
	if !bytes.Equal(run[:ethHdrLen], eth[:ethHdrLen]) {
		return false
	}
	rip, ip := run[ethHdrLen:], eth[ethHdrLen:]
	if c.v4 {
		// TOS, flags, TTL, protocol, addresses; not length, ID, checksum.
		if rip[1] != ip[1] || rip[6] != ip[6] || rip[8] != ip[8] || !bytes.Equal(rip[12:20], ip[12:20]) {
			return false
		}
	} else if !bytes.Equal(rip[:4], ip[:4]) || !bytes.Equal(rip[6:40], ip[6:40]) {
		return false
	}
	rtcp, tcp := rip[c.ipHdrLen:], ip[c.ipHdrLen:]
	tcpHdrLen := c.hdrLen - ethHdrLen - c.ipHdrLen
	// Ports; ack; offset, flags but PSH, window; options (timestamps too).
	return bytes.Equal(rtcp[0:4], tcp[0:4]) && bytes.Equal(rtcp[8:13], tcp[8:13]) &&
		rtcp[13]&^0x08 == tcp[13]&^0x08 && bytes.Equal(rtcp[14:16], tcp[14:16]) &&
		bytes.Equal(rtcp[20:tcpHdrLen], tcp[20:tcpHdrLen])
}

// flush hands the run, if any, to write: a lone segment as it came, several
// as one super-frame whose checksum and segmentation the kernel finishes.
func (c *coalescer) flush(write func(frame []byte)) {
	if c.n == 0 {
		return
	}
	frame := c.buf[:c.n]
	if c.segs > 1 {
		ip := frame[tun.VirtioNetHdrLen+ethHdrLen:]
		tcpLen := c.n - tun.VirtioNetHdrLen - ethHdrLen - c.ipHdrLen
		setIPLengths(ip, c.v4, c.ipHdrLen, tcpLen, binary.BigEndian.Uint16(ip[4:6]))
		binary.BigEndian.PutUint16(ip[c.ipHdrLen+16:], fold(pseudoHeaderSum(ip, c.v4, tcpLen)))
		gso := uint8(tun.VirtioNetHdrGSOTCPv4)
		if !c.v4 {
			gso = tun.VirtioNetHdrGSOTCPv6
		}
		tun.VirtioNetHdr{
			Flags:      tun.VirtioNetHdrFNeedsCsum,
			GSOType:    gso,
			HdrLen:     uint16(c.hdrLen),
			GSOSize:    uint16(c.mss),
			CsumStart:  uint16(ethHdrLen + c.ipHdrLen),
			CsumOffset: 16,
		}.Encode(frame)
	}
	write(frame)
	c.n = 0
}
