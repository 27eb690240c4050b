package ipdev

import (
	"encoding/binary"

	"weavenet/tun"
)

// The overlay → TUN direction: the router's Write.
//
//  1. Keep only frames for us: our MAC, broadcast, or IPv4 multicast.
//  2. IPv4: trim the Ethernet padding (the IP total length says how much
//     is packet) and write the packet to the TUN:
//     - TUNDevice: from the router's buffer, with the virtio header (its
//     offsets shrunk by the Ethernet header, offload.go) written over the
//     end of the Ethernet header for the write and put back after it. A
//     coalesced super-frame goes to the kernel in one write.
//     - Device: copied into the Device's write buffer, since the wireguard
//     TUN writes in front of the packet.
//  3. ARP: answer a request for one of our addresses (and learn the
//     asker, who is about to talk to us), learn from replies, and keep
//     entries we already have up to date from any ARP packet we see.
//  4. Anything else is counted and dropped.
//
// Bad frames are never an error: Write returns len(b) for them, as a NIC
// silently drops what it cannot parse. Only a failing TUN is.

// accept returns the IPv4 packet in frame b (in the router's form) if it
// is one for us, cut to the length its header gives; nil if there is
// nothing to deliver, ARP having been handled and the rest counted.
func (s *station) accept(b []byte) []byte {
	if len(b) < frameHead {
		s.stats.malformed.Add(1)
		return nil
	}
	eth := b[vnetHdrLen:]
	dst := mac(eth[0:6])
	if dst != s.mac && dst != broadcastMAC && !(dst[0] == 0x01 && dst[1] == 0x00 && dst[2] == 0x5e) {
		return nil // someone else's unicast, or multicast that is not IPv4's
	}
	switch binary.BigEndian.Uint16(eth[12:14]) {
	case etherTypeIP4:
		pkt := eth[ethHdrLen:]
		if len(pkt) < 20 || pkt[0]>>4 != 4 {
			s.stats.malformed.Add(1)
			return nil
		}
		total := int(binary.BigEndian.Uint16(pkt[2:4]))
		if total < 20 || total > len(pkt) {
			s.stats.malformed.Add(1)
			return nil
		}
		return pkt[:total]
	case etherTypeARP:
		s.handleARP(mac(eth[6:12]), dst, eth[ethHdrLen:])
	default:
		s.stats.unsupported.Add(1)
	}
	return nil
}

// handleARP acts on the ARP packet in b, which came in a frame from src to
// dst.
func (s *station) handleARP(src, dst mac, b []byte) {
	p, ok := parseARP(b)
	if !ok {
		s.stats.malformed.Add(1)
		return
	}
	if p.senderMAC == s.mac {
		return // our own broadcast, come back
	}
	addrs := *s.addrs.Load()
	if containsAddr(addrs, p.senderIP) {
		s.log.Warn("ipdev: another station claims our address", "addr", p.senderIP.String(), "mac", p.senderMAC.String())
		return
	}
	valid := p.senderIP.IsValid() && !p.senderIP.IsUnspecified() && !p.senderMAC.isMulticast() && p.senderMAC != (mac{})
	forUs := containsAddr(addrs, p.targetIP)
	if valid {
		// Learn the asker of a request for us, the answerer of a reply to
		// us; anyone else only refreshes an entry we already have.
		create := forUs && p.op == arpRequest || p.op == arpReply && dst == s.mac
		now := s.clock.Load()
		s.mu.Lock()
		if s.neigh.learn(p.senderIP, p.senderMAC, now, create) {
			s.release(p.senderIP, p.senderMAC)
		}
		s.mu.Unlock()
	}
	if p.op == arpRequest && forUs && !p.senderMAC.isMulticast() {
		s.queueARP(src, arpPacket{op: arpReply, senderMAC: s.mac, senderIP: p.targetIP, targetMAC: p.senderMAC, targetIP: p.senderIP})
	}
}

// Write takes one frame from the router: a virtio header (a TCP
// super-frame's GSO header, or a partial checksum's) and an Ethernet frame.
// The TUNDevice writes the bytes in front of the IP packet during the call
// and puts them back before it returns: on return b is as it was, and the
// TUNDevice keeps no reference to it, but b must not be read concurrently.
func (d *TUNDevice) Write(b []byte) (int, error) {
	pkt := d.accept(b)
	if pkt == nil {
		return len(b), nil
	}
	var h tun.VirtioNetHdr
	_ = h.Decode(b) // accept saw a whole Ethernet header behind it
	th, ok := toTUN(h, pkt)
	if !ok {
		d.stats.malformed.Add(1)
		return len(b), nil
	}
	hdr := b[frameHead-vnetHdrLen : frameHead]
	var saved [vnetHdrLen]byte
	copy(saved[:], hdr)
	th.Encode(hdr)
	_, err := d.tun.Write(b[frameHead-vnetHdrLen : frameHead+len(pkt)])
	copy(hdr, saved[:])
	if err != nil {
		return 0, err
	}
	d.stats.in.Add(1)
	return len(b), nil
}

// Write takes one frame from the router: a virtio header (ignored; the
// router sends plain frames to a PlainDevice) and an Ethernet frame. The
// Device keeps no reference to b and does not modify it.
func (d *Device) Write(b []byte) (int, error) {
	pkt := d.accept(b)
	if pkt == nil {
		return len(b), nil
	}
	if len(pkt) > d.mtu {
		d.stats.malformed.Add(1)
		return len(b), nil
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	n := copy(d.wbuf[frameHead:], pkt)
	d.wbufs[0] = d.wbuf[:frameHead+n]
	if _, err := d.dev.Write(d.wbufs[:], frameHead); err != nil {
		return 0, err
	}
	d.stats.in.Add(1)
	return len(b), nil
}
