package ipdev

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// The TUN → overlay direction: the router's Read.
//
//  1. Before anything from the TUN, Read hands out what the station itself
//     has to send: ARP frames (replies, requests), then held packets whose
//     destination was just resolved.
//  2. The next IP packet from the TUN lands in the router's buffer with
//     frameHead bytes free in front of it:
//     - TUNDevice: the kernel's read goes straight there, its virtio header
//     in the last 10 bytes of that room; the header is moved to the front,
//     its offsets grown by the Ethernet header (offload.go). A TSO
//     super-packet stays one frame.
//     - Device: a pump goroutine reads batches of packets from the
//     wireguard tun.Device into the Device's buffers; Read copies the next
//     one into the router's buffer behind a blank virtio header.
//  3. The destination MAC comes from the IPv4 destination: broadcast and
//     multicast map directly; unicast goes through the neighbour table. An
//     unknown destination's packet is held (copied), and Read returns the
//     ARP request for it instead.
//  4. The Ethernet header is written in front of the packet.

// pending writes into b the next frame the station itself has to send, if
// any.
func (s *station) pending(b []byte) (int, bool) {
	select {
	case f := <-s.ctrl:
		return copy(b, f.b[:f.n]), true
	default:
	}
	if s.ready.Load() > 0 {
		return s.readHeld(b)
	}
	return 0, false
}

// readHeld writes the oldest held packet whose MAC is now known into b.
func (s *station) readHeld(b []byte) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pick := -1
	for i := range s.holds {
		h := &s.holds[i]
		if h.n != 0 && h.ready && (pick < 0 || h.seq < s.holds[pick].seq) {
			pick = i
		}
	}
	if pick < 0 {
		return 0, false
	}
	h := &s.holds[pick]
	putEthHeader(h.buf, h.mac, s.mac)
	n := copy(b, h.buf[:h.n])
	h.n, h.ready = 0, false
	s.ready.Add(-1)
	s.stats.out.Add(1)
	return n, true
}

// route finishes the frame in b[:n], an IP packet at b[frameHead:n] behind
// its virtio header and room for the Ethernet header, by writing that
// header. If the packet must wait for ARP it is held, and b gets the ARP
// request instead, if one is due. route returns the length of the frame now
// in b, 0 for none. b must hold at least vnetHdrLen+minEthFrame bytes.
func (s *station) route(b []byte, n int) int {
	pkt := b[frameHead:n]
	if len(pkt) < 20 {
		s.stats.malformed.Add(1)
		return 0
	}
	if pkt[0]>>4 != 4 {
		s.stats.unsupported.Add(1)
		return 0
	}
	dst := netip.AddrFrom4([4]byte(pkt[16:20]))
	var to mac
	switch {
	case pkt[16]&0xf0 == 0xe0: // 224.0.0.0/4 → 01:00:5e + the low 23 bits
		to = mac{0x01, 0x00, 0x5e, pkt[17] & 0x7f, pkt[18], pkt[19]}
	case s.isBroadcast(dst):
		to = broadcastMAC
	default:
		var v verdict
		s.mu.Lock()
		to, v = s.neigh.resolve(dst, s.clock.Load())
		if v == holdProbe || v == holdOnly {
			s.hold(dst, b[:n])
		}
		s.mu.Unlock()
		switch v {
		case sendRefresh:
			s.queueARP(to, arpPacket{op: arpRequest, senderMAC: s.mac, senderIP: s.sourceFor(dst), targetMAC: to, targetIP: dst})
		case holdProbe:
			s.stats.arpReq.Add(1)
			return putARPFrame(b, broadcastMAC, s.mac, s.request(dst))
		case holdOnly:
			return 0
		}
	}
	putEthHeader(b, to, s.mac)
	s.stats.out.Add(1)
	return n
}

// putEthHeader writes an IPv4 Ethernet header into buf[vnetHdrLen:frameHead].
func putEthHeader(buf []byte, dst, src mac) {
	eth := buf[vnetHdrLen:frameHead]
	copy(eth[0:6], dst[:])
	copy(eth[6:12], src[:])
	eth[12], eth[13] = etherTypeIP4>>8, etherTypeIP4&0xff
}

// isBroadcast: 255.255.255.255, or the broadcast address of one of our
// subnets.
func (s *station) isBroadcast(ip netip.Addr) bool {
	a := ip.As4()
	if a == [4]byte{255, 255, 255, 255} {
		return true
	}
	for _, p := range *s.addrs.Load() {
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

func isClosed(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}

// Read writes the next frame for the overlay into b: a virtio header, then
// an Ethernet frame, at most 14+65535 bytes (a TCP super-frame, with a GSO
// header). b must hold 10+14+65535 bytes, or Read returns
// io.ErrShortBuffer; the TUNDevice keeps no reference to b. After Close,
// or once the TUN is gone, Read returns net.ErrClosed.
func (d *TUNDevice) Read(b []byte) (int, error) {
	if len(b) < frameHead+maxPacket {
		return 0, io.ErrShortBuffer
	}
	for {
		if d.interrupted {
			// Cleared before looking at the queues: a wake from now on
			// sets the deadline again, so none is lost.
			d.interrupted = false
			if err := d.tun.SetReadDeadline(time.Time{}); err != nil {
				return 0, closedOr(err)
			}
		}
		if n, ok := d.pending(b); ok {
			return n, nil
		}
		n, err := d.tun.Read(b[ethHdrLen:])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				d.interrupted = true
				continue
			}
			return 0, closedOr(err)
		}
		end := ethHdrLen + n
		if n < vnetHdrLen+20 {
			d.stats.malformed.Add(1)
			continue
		}
		if b[frameHead]>>4 != 4 {
			d.stats.unsupported.Add(1) // IPv6 chatter of the kernel's
			continue
		}
		if !fromTUN(b, end) {
			d.stats.malformed.Add(1)
			continue
		}
		if n := d.route(b, end); n > 0 {
			return n, nil
		}
	}
}

// closedOr is net.ErrClosed for an error that means the TUN is closed, and
// err otherwise.
func closedOr(err error) error {
	if isClosed(err) {
		return net.ErrClosed
	}
	return err
}

// pump reads the wireguard TUN until it is closed.
func (d *Device) pump() {
	for {
		var b *batch
		select {
		case <-d.closing:
			d.drain(nil)
			return
		case b = <-d.free:
		}
		b.n, b.err = d.dev.Read(b.bufs, b.sizes, frameHead)
		if errors.Is(b.err, wgtun.ErrTooManySegments) {
			b.err = nil // the segments that fitted are good; the rest are lost
		}
		if b.err != nil && isClosed(b.err) {
			select {
			case <-d.closing:
			case d.full <- b:
			}
			return
		}
		select {
		case <-d.closing:
			d.drain(b)
			return
		case d.full <- b:
		}
	}
}

// drain reads and drops packets until the TUN says it is closed. Closing
// a netstack waits for its connections, and one may be blocked handing a
// packet to the TUN: someone must take it. b may be nil.
func (d *Device) drain(b *batch) {
	if b == nil {
		b = &batch{bufs: [][]byte{make([]byte, frameHead+d.mtu)}, sizes: make([]int, 1)}
	}
	for {
		if _, err := d.dev.Read(b.bufs, b.sizes, frameHead); err != nil && !errors.Is(err, wgtun.ErrTooManySegments) {
			return
		}
	}
}

// Read writes the next frame for the overlay into b: a blank virtio
// header, then an Ethernet frame of at most MTU+14 bytes. b must hold
// 10+14+MTU bytes, or Read returns io.ErrShortBuffer; the Device keeps no
// reference to b. After Close, or once the TUN is gone, Read returns
// net.ErrClosed.
func (d *Device) Read(b []byte) (int, error) {
	if len(b) < frameHead+d.mtu {
		return 0, io.ErrShortBuffer
	}
	for {
		if n, ok := d.pending(b); ok {
			return n, nil
		}
		if d.cur != nil {
			if d.curIdx < d.cur.n {
				i := d.curIdx
				d.curIdx++
				clear(b[:vnetHdrLen])
				n := frameHead + copy(b[frameHead:], d.cur.bufs[i][frameHead:frameHead+d.cur.sizes[i]])
				if n := d.route(b, n); n > 0 {
					return n, nil
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
			return copy(b, f.b[:f.n]), nil
		case <-d.woken:
		case d.cur = <-d.full:
			d.curIdx = 0
		case <-d.closing:
			return 0, net.ErrClosed
		}
	}
}
