package ipdev

import "weavenet/tun"

// Between a TUN's packets and the router's frames, the virtio header stays
// and only its offsets change. A TUN counts CsumStart and HdrLen from the
// IP header; a frame has the Ethernet header in front, so in the router's
// form they count 14 bytes more. HdrLen is not carried over but recomputed
// from the packet's headers: the kernel puts the length of its buffer's
// linear part there, which may be most of a 64 KiB packet and would not
// fit 16 bits once grown; the router and the kernel need only the headers'
// length. Without GSO, HdrLen and GSOSize mean nothing and are zeroed.
//
// Only what the TUN is set up for passes: a partial checksum anywhere in
// the packet, and TCP over IPv4 segmentation (with or without ECN), whose
// checksum is the TCP header's. Anything else does not describe an IPv4
// packet the way a TUN opened with tun.OpenTUN's offloads would, and is
// dropped.

// fromTUN turns b[ethHdrLen:end], a virtio header and an IPv4 packet as a
// TUN's read left them, into a frame in the router's form in b[:end]: the
// header, its offsets counted from the Ethernet header, in b[:vnetHdrLen];
// b[vnetHdrLen:frameHead] free for the Ethernet header; the packet where it
// lies. It reports false, with b[:vnetHdrLen] undefined, if the header does
// not describe the packet. end must be at least frameHead.
func fromTUN(b []byte, end int) bool {
	var h tun.VirtioNetHdr
	_ = h.Decode(b[ethHdrLen:frameHead]) // the slice holds a header
	fh, ok := rebase(h, b[frameHead:end], 0, ethHdrLen)
	if ok {
		fh.Encode(b)
	}
	return ok
}

// toTUN returns the virtio header for writing IPv4 packet pkt to a TUN,
// given h, the header of the frame that carried it, or reports that h does
// not describe pkt.
func toTUN(h tun.VirtioNetHdr, pkt []byte) (tun.VirtioNetHdr, bool) {
	return rebase(h, pkt, ethHdrLen, 0)
}

// rebase returns h, the virtio header of IPv4 packet pkt with offsets
// counted from the point from bytes before pkt, with offsets counted from
// the point to bytes before it; false if h does not describe pkt.
func rebase(h tun.VirtioNetHdr, pkt []byte, from, to int) (tun.VirtioNetHdr, bool) {
	out := tun.VirtioNetHdr{Flags: h.Flags}
	needsCsum := h.Flags&tun.VirtioNetHdrFNeedsCsum != 0
	start := int(h.CsumStart) - from
	if needsCsum {
		if start < 20 || start+int(h.CsumOffset)+2 > len(pkt) {
			return h, false
		}
		out.CsumStart, out.CsumOffset = uint16(start+to), h.CsumOffset
	}
	switch h.GSOType &^ tun.VirtioNetHdrGSOECN {
	case tun.VirtioNetHdrGSONone:
		return out, true
	case tun.VirtioNetHdrGSOTCPv4:
	default:
		return h, false
	}
	hdrs, ipHdrLen := tcp4Headers(pkt)
	if hdrs == 0 || h.GSOSize == 0 || !needsCsum || start != ipHdrLen || h.CsumOffset != 16 {
		return h, false
	}
	out.GSOType, out.GSOSize, out.HdrLen = h.GSOType, h.GSOSize, uint16(hdrs+to)
	return out, true
}

// tcp4Headers returns the length of the IPv4 and TCP headers of pkt and of
// the IPv4 header alone, or zeros if pkt is not TCP over IPv4 with both
// headers whole.
func tcp4Headers(pkt []byte) (hdrs, ipHdrLen int) {
	if len(pkt) < 40 || pkt[0]>>4 != 4 || pkt[9] != 6 {
		return 0, 0
	}
	ipHdrLen = int(pkt[0]&0xf) * 4
	if ipHdrLen < 20 || len(pkt) < ipHdrLen+20 {
		return 0, 0
	}
	tcpHdrLen := int(pkt[ipHdrLen+12]>>4) * 4
	if tcpHdrLen < 20 || len(pkt) < ipHdrLen+tcpHdrLen {
		return 0, 0
	}
	return ipHdrLen + tcpHdrLen, ipHdrLen
}
