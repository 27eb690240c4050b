package ipdev

import (
	"encoding/binary"
)

// The overlay → TUN direction: the router's Write.
//
//  1. Keep only frames for us: our MAC, broadcast, or IPv4 multicast.
//  2. IPv4: trim the Ethernet padding (the IP total length says how much
//     is packet), copy the packet into the write buffer and write it to
//     the TUN.
//  3. ARP: answer a request for one of our addresses (and learn the
//     asker, who is about to talk to us), learn from replies, and keep
//     entries we already have up to date from any ARP packet we see.
//  4. Anything else is counted and dropped.
//
// Bad frames are never an error: Write returns len(b) for them, as a NIC
// silently drops what it cannot parse. Only a failing TUN is.

// Write takes one frame from the router: a virtio header (ignored; the
// router sends plain frames to a PlainDevice) and an Ethernet frame. The
// Device keeps no reference to b and does not modify it.
func (d *Device) Write(b []byte) (int, error) {
	if len(b) < frameHead {
		d.stats.malformed.Add(1)
		return len(b), nil
	}
	eth := b[vnetHdrLen:]
	dst := mac(eth[0:6])
	if dst != d.mac && dst != broadcastMAC && !(dst[0] == 0x01 && dst[1] == 0x00 && dst[2] == 0x5e) {
		return len(b), nil // someone else's unicast, or multicast that is not IPv4's
	}
	switch binary.BigEndian.Uint16(eth[12:14]) {
	case etherTypeIP4:
		if err := d.deliver(eth[ethHdrLen:]); err != nil {
			return 0, err
		}
	case etherTypeARP:
		d.handleARP(mac(eth[6:12]), dst, eth[ethHdrLen:])
	default:
		d.stats.unsupported.Add(1)
	}
	return len(b), nil
}

// deliver writes the IPv4 packet that pkt starts with to the TUN.
func (d *Device) deliver(pkt []byte) error {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		d.stats.malformed.Add(1)
		return nil
	}
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	if total < 20 || total > len(pkt) || total > d.mtu {
		d.stats.malformed.Add(1)
		return nil
	}
	pkt = pkt[:total]
	d.wmu.Lock()
	defer d.wmu.Unlock()
	// The TUN may write its own header in front of the packet, so the
	// packet goes into our buffer, not the router's.
	n := copy(d.wbuf[frameHead:], pkt)
	d.wbufs[0] = d.wbuf[:frameHead+n]
	if _, err := d.dev.Write(d.wbufs[:], frameHead); err != nil {
		return err
	}
	d.stats.in.Add(1)
	return nil
}

// handleARP acts on the ARP packet in b, which came in a frame from src to
// dst.
func (d *Device) handleARP(src, dst mac, b []byte) {
	p, ok := parseARP(b)
	if !ok {
		d.stats.malformed.Add(1)
		return
	}
	if p.senderMAC == d.mac {
		return // our own broadcast, come back
	}
	addrs := *d.addrs.Load()
	if containsAddr(addrs, p.senderIP) {
		d.log.Warn("ipdev: another station claims our address", "addr", p.senderIP.String(), "mac", p.senderMAC.String())
		return
	}
	valid := p.senderIP.IsValid() && !p.senderIP.IsUnspecified() && !p.senderMAC.isMulticast() && p.senderMAC != (mac{})
	forUs := containsAddr(addrs, p.targetIP)
	if valid {
		// Learn the asker of a request for us, the answerer of a reply to
		// us; anyone else only refreshes an entry we already have.
		create := forUs && p.op == arpRequest || p.op == arpReply && dst == d.mac
		now := d.clock.Load()
		d.mu.Lock()
		if d.neigh.learn(p.senderIP, p.senderMAC, now, create) {
			d.release(p.senderIP, p.senderMAC)
		}
		d.mu.Unlock()
	}
	if p.op == arpRequest && forUs && !p.senderMAC.isMulticast() {
		d.queueARP(src, arpPacket{op: arpReply, senderMAC: d.mac, senderIP: p.targetIP, targetMAC: p.senderMAC, targetIP: p.senderIP})
	}
}
