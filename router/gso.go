package router

import (
	"encoding/binary"
	"errors"

	"weavenet/tun"
)

// Software segmentation of offloaded TCP super-frames, for links that cannot
// carry them whole: a peer that does not speak virtio headers (Weave Net), or
// an underlay that drops IP fragments. It is the slow path; the fast path
// sends super-frames as they are.

var errNotSegmentable = errors.New("super-frame is not TCP over IPv4 or IPv6 without extension headers")

// segmentTCP splits eth, an Ethernet frame holding a TCP super-frame, into
// frames carrying at most mss payload bytes each, with IP and TCP checksums
// complete. For each it writes a device-form frame (a blank virtio header,
// then Ethernet) at buf[off:] and calls emit with its length; buf[:off] is
// left for the caller's headers.
func segmentTCP(eth []byte, mss int, buf []byte, off int, emit func(n int)) error {
	if len(eth) < ethHdrLen+20 || mss <= 0 {
		return errNotSegmentable
	}
	ip := eth[ethHdrLen:]
	var ipHdrLen int
	v4 := ip[0]>>4 == 4
	switch {
	case v4 && eth[12] == 0x08 && eth[13] == 0x00:
		ipHdrLen = int(ip[0]&0xf) * 4
		if ipHdrLen < 20 || ip[9] != 6 {
			return errNotSegmentable
		}
	case ip[0]>>4 == 6 && eth[12] == 0x86 && eth[13] == 0xdd:
		ipHdrLen = 40
		if ip[6] != 6 {
			return errNotSegmentable
		}
	default:
		return errNotSegmentable
	}
	if len(ip) < ipHdrLen+20 {
		return errNotSegmentable
	}
	tcp := ip[ipHdrLen:]
	tcpHdrLen := int(tcp[12]>>4) * 4
	if tcpHdrLen < 20 || len(tcp) < tcpHdrLen {
		return errNotSegmentable
	}
	hdrLen := ethHdrLen + ipHdrLen + tcpHdrLen
	payload := eth[hdrLen:]
	seq := binary.BigEndian.Uint32(tcp[4:8])
	flags := tcp[13]
	var ipID uint16
	if v4 {
		ipID = binary.BigEndian.Uint16(ip[4:6])
	}
	const fin, psh, cwr = 0x01, 0x08, 0x80
	for i, start := 0, 0; start < len(payload) || (i == 0 && len(payload) == 0); i++ {
		end := min(start+mss, len(payload))
		out := buf[off:]
		clear(out[:tun.VirtioNetHdrLen])
		seg := out[tun.VirtioNetHdrLen:]
		copy(seg, eth[:hdrLen])
		n := copy(seg[hdrLen:], payload[start:end])
		segIP := seg[ethHdrLen:]
		segTCP := segIP[ipHdrLen:]
		binary.BigEndian.PutUint32(segTCP[4:8], seq+uint32(start))
		f := flags
		if end < len(payload) {
			f &^= fin | psh
		}
		if i > 0 {
			f &^= cwr
		}
		segTCP[13] = f
		tcpLen := tcpHdrLen + n
		var sum uint64
		if v4 {
			binary.BigEndian.PutUint16(segIP[2:4], uint16(ipHdrLen+tcpLen))
			binary.BigEndian.PutUint16(segIP[4:6], ipID+uint16(i))
			segIP[10], segIP[11] = 0, 0
			binary.BigEndian.PutUint16(segIP[10:12], ^fold(addBytes(0, segIP[:ipHdrLen])))
			sum = addBytes(0, segIP[12:20])
		} else {
			binary.BigEndian.PutUint16(segIP[4:6], uint16(tcpLen))
			sum = addBytes(0, segIP[8:40])
		}
		sum += 6 + uint64(tcpLen)
		segTCP[16], segTCP[17] = 0, 0
		sum = addBytes(sum, segTCP[:tcpLen])
		binary.BigEndian.PutUint16(segTCP[16:18], ^fold(sum))
		emit(tun.VirtioNetHdrLen + hdrLen + n)
		start = end
		if len(payload) == 0 {
			break
		}
	}
	return nil
}
