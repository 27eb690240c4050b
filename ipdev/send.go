package ipdev

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// The TUN → overlay direction: the router's Read.
//
//  1. The pump goroutine reads a batch of IP packets from the TUN into
//     buffers that leave frameHead bytes free in front of each packet, and
//     passes the batch to Read.
//  2. Read hands out one frame per call, in this order: ARP frames the
//     device wants to send (replies, requests), held packets whose
//     destination was just resolved, then the next packet of the batch.
//  3. For a packet, the destination MAC comes from the IPv4 destination:
//     broadcast and multicast map directly; unicast goes through the
//     neighbour table. An unknown destination's packet is held, and Read
//     returns the ARP request for it instead.
//  4. The Ethernet header and a blank virtio header are written in front
//     of the packet and the frame is copied into the router's buffer.
//
// The batches are the Device's; the only copy is into the caller's buffer.

// pump reads the TUN until it is closed.
func (d *Device) pump() {
	for {
		var b *batch
		select {
		case <-d.closing:
			return
		case b = <-d.free:
		}
		b.n, b.err = d.dev.Read(b.bufs, b.sizes, frameHead)
		if errors.Is(b.err, wgtun.ErrTooManySegments) {
			b.err = nil // the segments that fitted are good; the rest are lost
		}
		select {
		case <-d.closing:
			return
		case d.full <- b:
		}
		if b.err != nil && isClosed(b.err) {
			return
		}
	}
}

func isClosed(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}

// Read writes the next frame for the overlay into b: a blank virtio
// header, then an Ethernet frame of at most MTU+14 bytes. b must hold
// 10+14+MTU bytes (a shorter b gets io.ErrShortBuffer and the frame is
// dropped); the Device keeps no reference to b. After Close, or once the
// TUN is gone, Read returns net.ErrClosed.
func (d *Device) Read(b []byte) (int, error) {
	for {
		select {
		case f := <-d.ctrl:
			return copyFrame(b, f.b[:f.n])
		default:
		}
		if d.ready.Load() > 0 {
			if n, err, ok := d.readHeld(b); ok {
				return n, err
			}
		}
		if d.cur != nil {
			if d.curIdx < d.cur.n {
				i := d.curIdx
				d.curIdx++
				if n, err, ok := d.frame(b, d.cur.bufs[i], d.cur.sizes[i]); ok {
					return n, err
				}
				continue
			}
			err := d.cur.err
			d.free <- d.cur
			d.cur = nil
			if err != nil {
				if isClosed(err) {
					d.readErr = net.ErrClosed
				} else {
					return 0, err
				}
			}
		}
		if d.readErr != nil {
			return 0, d.readErr
		}
		select {
		case f := <-d.ctrl:
			return copyFrame(b, f.b[:f.n])
		case <-d.wake:
		case d.cur = <-d.full:
			d.curIdx = 0
		case <-d.closing:
			return 0, net.ErrClosed
		}
	}
}

func copyFrame(b, frame []byte) (int, error) {
	if len(b) < len(frame) {
		return 0, io.ErrShortBuffer
	}
	return copy(b, frame), nil
}

// frame turns the packet at buf[frameHead:frameHead+size] into a frame in b,
// or an ARP request in b if the packet must wait. ok false means nothing
// was written (the packet was dropped or held quietly).
func (d *Device) frame(b, buf []byte, size int) (n int, err error, ok bool) {
	pkt := buf[frameHead : frameHead+size]
	if len(pkt) < 20 {
		d.stats.malformed.Add(1)
		return 0, nil, false
	}
	if pkt[0]>>4 != 4 {
		d.stats.unsupported.Add(1)
		return 0, nil, false
	}
	dst := netip.AddrFrom4([4]byte(pkt[16:20]))
	var to mac
	switch {
	case pkt[16]&0xf0 == 0xe0: // 224.0.0.0/4 → 01:00:5e + the low 23 bits
		to = mac{0x01, 0x00, 0x5e, pkt[17] & 0x7f, pkt[18], pkt[19]}
	case d.isBroadcast(dst):
		to = broadcastMAC
	default:
		var v verdict
		d.mu.Lock()
		to, v = d.neigh.resolve(dst, d.clock.Load())
		if v == holdProbe || v == holdOnly {
			d.hold(dst, pkt)
		}
		d.mu.Unlock()
		switch v {
		case sendRefresh:
			d.queueARP(to, arpPacket{op: arpRequest, senderMAC: d.mac, senderIP: d.sourceFor(dst), targetMAC: to, targetIP: dst})
		case holdProbe:
			var f ctrlFrame
			f.n = putARPFrame(f.b[:], broadcastMAC, d.mac, d.request(dst))
			d.stats.arpReq.Add(1)
			n, err := copyFrame(b, f.b[:f.n])
			return n, err, true
		case holdOnly:
			return 0, nil, false
		}
	}
	putEthHeader(buf, to, d.mac)
	d.stats.out.Add(1)
	n, err = copyFrame(b, buf[:frameHead+size])
	return n, err, true
}

// readHeld writes the oldest held packet whose MAC is now known into b.
func (d *Device) readHeld(b []byte) (n int, err error, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	pick := -1
	for i := range d.holds {
		h := &d.holds[i]
		if h.n != 0 && h.ready && (pick < 0 || h.seq < d.holds[pick].seq) {
			pick = i
		}
	}
	if pick < 0 {
		return 0, nil, false
	}
	h := &d.holds[pick]
	putEthHeader(h.buf, h.mac, d.mac)
	n, err = copyFrame(b, h.buf[:frameHead+h.n])
	h.n, h.ready = 0, false
	d.ready.Add(-1)
	d.stats.out.Add(1)
	return n, err, true
}

// putEthHeader writes a blank virtio header and an IPv4 Ethernet header
// into buf[:frameHead].
func putEthHeader(buf []byte, dst, src mac) {
	clear(buf[:vnetHdrLen])
	eth := buf[vnetHdrLen:frameHead]
	copy(eth[0:6], dst[:])
	copy(eth[6:12], src[:])
	eth[12], eth[13] = etherTypeIP4>>8, etherTypeIP4&0xff
}

// isBroadcast: 255.255.255.255, or the broadcast address of one of our
// subnets.
func (d *Device) isBroadcast(ip netip.Addr) bool {
	a := ip.As4()
	if a == [4]byte{255, 255, 255, 255} {
		return true
	}
	for _, p := range *d.addrs.Load() {
		if p.Bits() < 31 && p.Contains(ip) {
			v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
			host := uint32(1)<<(32-p.Bits()) - 1
			if v&host == host {
				return true
			}
		}
	}
	return false
}
