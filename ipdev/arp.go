package ipdev

import (
	"encoding/binary"
	"net/netip"
)

// The ARP packet for IPv4 over Ethernet (RFC 826): 28 bytes after the
// Ethernet header.
const (
	arpLen       = 28
	arpRequest   = 1
	arpReply     = 2
	etherTypeIP4 = 0x0800
	etherTypeARP = 0x0806
	// minEthFrame is the shortest Ethernet frame without its FCS; shorter
	// ARP frames are padded to it, as a NIC would.
	minEthFrame = 60
)

type mac [6]byte

var broadcastMAC = mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func (m mac) isMulticast() bool { return m[0]&1 != 0 }

// arpPacket is a decoded IPv4-over-Ethernet ARP packet.
type arpPacket struct {
	op        uint16
	senderMAC mac
	senderIP  netip.Addr
	targetMAC mac
	targetIP  netip.Addr
}

// parseARP decodes b, the bytes after an Ethernet header. It reports false
// for anything but a well-formed IPv4-over-Ethernet request or reply.
func parseARP(b []byte) (arpPacket, bool) {
	if len(b) < arpLen {
		return arpPacket{}, false
	}
	if binary.BigEndian.Uint16(b[0:2]) != 1 || binary.BigEndian.Uint16(b[2:4]) != etherTypeIP4 || b[4] != 6 || b[5] != 4 {
		return arpPacket{}, false
	}
	p := arpPacket{op: binary.BigEndian.Uint16(b[6:8])}
	if p.op != arpRequest && p.op != arpReply {
		return arpPacket{}, false
	}
	copy(p.senderMAC[:], b[8:14])
	p.senderIP = netip.AddrFrom4([4]byte(b[14:18]))
	copy(p.targetMAC[:], b[18:24])
	p.targetIP = netip.AddrFrom4([4]byte(b[24:28]))
	return p, true
}

// putARPFrame writes an Ethernet frame carrying p from src to dst into b,
// after a blank virtio header, padded to the minimum Ethernet size, and
// returns its length. b must hold vnetHdrLen+minEthFrame bytes.
func putARPFrame(b []byte, dst, src mac, p arpPacket) int {
	n := vnetHdrLen + minEthFrame
	clear(b[:n])
	eth := b[vnetHdrLen:n]
	copy(eth[0:6], dst[:])
	copy(eth[6:12], src[:])
	binary.BigEndian.PutUint16(eth[12:14], etherTypeARP)
	a := eth[ethHdrLen:]
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], etherTypeIP4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], p.op)
	copy(a[8:14], p.senderMAC[:])
	s4, t4 := as4(p.senderIP), as4(p.targetIP)
	copy(a[14:18], s4[:])
	copy(a[18:24], p.targetMAC[:])
	copy(a[24:28], t4[:])
	return n
}

// as4 is a.As4(), with 0.0.0.0 for anything but an IPv4 address (As4
// panics on those).
func as4(a netip.Addr) [4]byte {
	if !a.Is4() {
		return [4]byte{}
	}
	return a.As4()
}

func (m mac) String() string {
	const hex = "0123456789abcdef"
	var b [17]byte
	for i, x := range m {
		if i > 0 {
			b[3*i-1] = ':'
		}
		b[3*i], b[3*i+1] = hex[x>>4], hex[x&15]
	}
	return string(b[:])
}
