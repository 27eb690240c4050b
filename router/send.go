package router

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"weavenet/mesh"

	"weavenet/crypto"
	"weavenet/tun"
)

// The device → network direction, and the sending half shared with relaying.
//
//  1. Read one frame (virtio-net header + Ethernet) from the device into a
//     buffer that leaves txHeadroom free in front of it.
//  2. Learn the source MAC as living here.
//  3. Pick next hops: towards the peer that owns the destination MAC along
//     the unicast route; for broadcast, multicast and unknown destinations,
//     the first hops of our broadcast tree.
//  4. For each next hop: a plain frame gets the sleeve headers written in
//     place in front of it and leaves as one datagram, no copy; a TCP
//     super-frame is cut into MSS-sized segments, one datagram each, built
//     back to back in a pooled batch and sent with one sendmmsg of UDP GSO
//     runs (sendSuperFrame). No allocation either way.
//
// One goroutine runs this loop, so the buffer is reused for every frame.

const (
	// txHeadroom holds the datagram and frame headers written in front of a
	// frame read from the device, with room for sealing.
	txHeadroom = packetHdrLen + crypto.MaxHeadroom + frameHdrLen
	// txTailroom is where sealing may append an authentication tag.
	txTailroom = crypto.MaxTailroom
	// maxDeviceFrame is the largest frame the device hands over: a 64 KiB
	// TSO super-frame plus its Ethernet and virtio headers.
	maxDeviceFrame = tun.VirtioNetHdrLen + ethHdrLen + 65535
)

func (r *Router) sendLoop() {
	buf := make([]byte, txHeadroom+maxDeviceFrame+txTailroom)
	var failingSince time.Time // of the reads failing now, the first
	for {
		n, err := r.dev.Read(buf[txHeadroom : txHeadroom+maxDeviceFrame])
		if err != nil {
			if r.isClosing() || errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
				return
			}
			switch {
			case failingSince.IsZero():
				failingSince = time.Now()
				r.log.Warn("sleeve: read from device failed; retrying", "err", err)
			case time.Since(failingSince) > DeviceGiveUp:
				r.log.Error("sleeve: giving up on the device", "err", err, "failing_for", DeviceGiveUp)
				r.fail(fmt.Errorf("router: device reads failing for %v: %w", DeviceGiveUp, err))
				return
			}
			r.pause() // a device gone bad must not spin this loop
			continue
		}
		failingSince = time.Time{}
		if n < tun.VirtioNetHdrLen+ethHdrLen {
			r.stats.drop(DropMalformed)
			continue
		}
		eth := buf[txHeadroom+tun.VirtioNetHdrLen : txHeadroom+n]
		var dst, src mac
		copy(dst[:], eth[0:6])
		copy(src[:], eth[6:12])
		r.learn(src, r.name)
		if len(r.hostLocal) > 0 && arpsFor(eth, r.hostLocal) {
			continue
		}
		if dst.isUnicast() {
			if owner, ok := r.macs.lookup(dst); ok {
				if owner != r.name { // a frame for a local MAC has no business here
					r.relay(buf, txHeadroom, n, r.name, owner, nil)
				}
				continue
			}
		}
		r.flood(buf, txHeadroom, n, r.name)
	}
}

// relay sends the frame at buf[off:off+n] towards peer dst, through the next
// hop of the unicast route; via q if not nil (see sendFrame).
func (r *Router) relay(buf []byte, off, n int, src, dst mesh.PeerName, q *relayQueue) {
	rt := r.routes.Load()
	hop, ok := rt.Unicast(dst)
	if !ok {
		// Routes lag a moment behind a new connection; a direct
		// neighbour needs none.
		hop = dst
	}
	f := r.forwarder(hop)
	if f == nil {
		if rt.Known(dst) {
			r.stats.drop(DropNoRoute)
		} else {
			r.stats.drop(DropUnknownPeer)
		}
		return
	}
	r.sendFrame(f, buf, off, n, src, dst, q)
}

// flood sends the frame at buf[off:off+n] to the next hops of src's
// broadcast tree. Every receiver floods it on along the same tree, so each
// peer gets it exactly once, whether or not it is directly connected to src.
func (r *Router) flood(buf []byte, off, n int, src mesh.PeerName) {
	r.floodTo(buf, off, n, src, r.routes.Load().Broadcast(src))
}

// floodTo is flood with src's next hops already looked up.
func (r *Router) floodTo(buf []byte, off, n int, src mesh.PeerName, hops []mesh.PeerName) {
	if len(hops) == 0 && src == r.name {
		// Right after a connection comes up, mesh has not yet computed the
		// broadcast tree: send our own frame to every neighbour rather than
		// lose it (a container's first ARP request, which it would only
		// repeat a second later).
		fwds := *r.fwds.Load()
		hops = make([]mesh.PeerName, 0, len(fwds)) // never append to mesh's cached slice
		for name := range fwds {
			hops = append(hops, name)
		}
	}
	for _, hop := range hops {
		f := r.forwarder(hop)
		switch {
		case f == nil:
		case f.sealer != nil:
			// Sealing encrypts in place and may append a tag, while the
			// frame is wanted again, or (in a GRO run) the next
			// datagram follows right behind it.
			r.sendFrameCopy(f, buf[off:off+n], src, hop)
		default:
			r.sendFrame(f, buf, off, n, src, hop, nil)
		}
	}
}

// sendFrame sends buf[off:off+n], a frame in device form (virtio header +
// Ethernet), to the peer at the other end of f, labelled as going from src to
// dst. The txHeadroom bytes in front of off are overwritten. On an encrypted
// link the frame is encrypted in place; otherwise buf[off:off+n] is
// unchanged on return, so the caller may send it again. With a queue q, a
// plain frame's datagram is queued there instead of sent at once.
func (r *Router) sendFrame(f *forwarder, buf []byte, off, n int, src, dst mesh.PeerName, q *relayQueue) {
	addr := f.addr.Load()
	if addr == nil {
		r.stats.drop(DropNoContact)
		return
	}
	frame := buf[off : off+n]
	var h tun.VirtioNetHdr
	if err := h.Decode(frame); err != nil {
		r.stats.drop(DropMalformed)
		return
	}
	if h.GSOType != tun.VirtioNetHdrGSONone {
		r.sendSuperFrame(f, *addr, frame, h, src, dst)
		return
	}
	// Both formats carry plain Ethernet frames: the headers are written
	// over the virtio header. A checksum the kernel left to offload is
	// finished here, except, on a fast link, a TCP checksum: every TCP
	// checksum crosses a fast link partial (a complete one is turned back
	// into the pseudo-header sum) and the receiving device finishes it.
	// The bytes changed are put back afterwards, for a flood's next hop.
	var saved [tun.VirtioNetHdrLen]byte
	copy(saved[:], frame)
	eth := frame[tun.VirtioNetHdrLen:]
	csumAt := -1
	var savedCsum [2]byte
	partial := h.Flags&tun.VirtioNetHdrFNeedsCsum != 0
	at, pseudo, isTCP := tcpChecksumAt(eth)
	switch offloaded := int(h.CsumStart) + int(h.CsumOffset); {
	case f.partialCsum && isTCP:
		if !partial && h.Flags&tun.VirtioNetHdrFDataValid == 0 && !(r.plainDev && src == r.name) &&
			!tcpChecksumValid(eth, at) {
			// The receiving kernel takes a partial checksum on trust:
			// turning this bad one into the pseudo-header sum would make
			// a corrupt segment good. Drop it, as a kernel would. (Our
			// own plain device's stack is in this process: no need.)
			r.stats.drop(DropBadChecksum)
			return
		}
		if !partial || offloaded != at {
			csumAt = at
			copy(savedCsum[:], eth[at:])
			binary.BigEndian.PutUint16(eth[at:], pseudo)
		}
	case partial && offloaded+2 <= len(eth):
		csumAt = offloaded
		copy(savedCsum[:], eth[offloaded:])
		completeChecksum(eth, int(h.CsumStart), offloaded)
	}
	if q != nil {
		r.queue(q, f, eth, src, dst, *addr)
	} else {
		r.send(r.encode(f, buf, off+tun.VirtioNetHdrLen, len(eth), src, dst), *addr)
	}
	copy(frame, saved[:])
	if csumAt >= 0 {
		copy(eth[csumAt:], savedCsum[:])
	}
}

// encode turns buf[off:off+n] into a datagram for f's peer holding one frame
// labelled src→dst: it writes the frame and datagram headers into the bytes
// in front of off and seals the datagram if the link is encrypted. It
// returns the datagram, which lies in buf.
func (r *Router) encode(f *forwarder, buf []byte, off, n int, src, dst mesh.PeerName) []byte {
	putFrameHeader(buf[off-frameHdrLen:], src, dst, n)
	start := off - frameHdrLen - packetHdrLen
	if f.sealer != nil {
		start -= f.suite.Headroom()
	}
	putPeerName(buf[start:], r.name)
	pkt := buf[start : off+n]
	if f.sealer != nil {
		pkt = f.sealer.Seal(pkt, packetHdrLen) // grows into the tailroom
	}
	return pkt
}

// sendSuperFrame sends a TCP super-frame as MSS-sized frames, one per
// datagram, built back to back in a batch so that they leave with one
// sendmmsg of UDP GSO runs. On a fast link the segments' TCP checksums stay
// partial (no pass over the payload here); Weave Net gets complete ones.
func (r *Router) sendSuperFrame(f *forwarder, addr netip.AddrPort, frame []byte, h tun.VirtioNetHdr, src, dst mesh.PeerName) {
	seg, err := newTCPSegmenter(frame[tun.VirtioNetHdrLen:], int(h.GSOSize))
	if err != nil {
		r.stats.drop(DropUnsegmentable)
		return
	}
	batch := runBatches.Get().(*runBatch)
	defer runBatches.Put(batch)
	batch.reset(addr)
	maxDatagram := txHeadroom + seg.maxLen() + txTailroom
	for {
		at, ok := batch.slot(0, maxDatagram)
		if !ok {
			r.sendBatch(f, batch)
			at, _ = batch.slot(0, maxDatagram)
		}
		n := seg.next(batch.buf[at+txHeadroom:], f.partialCsum)
		if n == 0 {
			break
		}
		r.encodeInto(batch, at, f, n, src, dst)
	}
	r.sendBatch(f, batch)
}

// sendBatch sends and empties batch, a super-frame's datagrams for f's
// peer. If the route's MTU is too small for them to go as GSO runs, f sends
// without GSO from then on and the kernel fragments each datagram.
func (r *Router) sendBatch(f *forwarder, batch *runBatch) {
	count, bytes := batch.datagrams(), batch.bytes()
	sent, err := r.sock.sendBatch(batch, !f.noGSO.Load())
	if errors.Is(err, errGSORefused) {
		if !f.noGSO.Swap(true) {
			r.log.Info("sleeve: datagrams exceed the underlay's MTU; the kernel fragments them", "peer", f.remoteName.String())
		}
		err = nil
	}
	if err != nil {
		r.stats.dropN(DropSend, count-sent)
	}
	r.stats.framesOut.Add(uint64(sent))
	r.stats.bytesOut.Add(uint64(bytes * sent / max(count, 1)))
}

// A relayQueue gathers the datagrams the receive loop relays during one
// read, so that a GRO run passing through this peer leaves again as one
// sendmmsg of GSO runs, as it came, instead of one send per datagram. The
// receive loop owns it and flushes it after each read.
type relayQueue struct {
	batch *runBatch
	f     *forwarder // where the batch goes; nil when empty
}

// queue adds the frame eth, labelled src→dst, to q as a datagram for f's
// peer at addr. The frame is copied into q's batch and framed (and sealed)
// there: the receive buffer it came from is left as it was, since the next
// datagram of a GRO run lies right behind it.
func (r *Router) queue(q *relayQueue, f *forwarder, eth []byte, src, dst mesh.PeerName, addr netip.AddrPort) {
	if q.f != nil && (q.f != f || q.batch.to != addr) {
		r.flushRelays(q)
	}
	size := packetHdrLen + frameHdrLen + len(eth)
	if f.sealer != nil {
		size += f.suite.Headroom() + f.suite.Tailroom()
	}
	space := txHeadroom + len(eth) + txTailroom
	if q.f == nil {
		q.f = f
		q.batch.reset(addr)
	}
	at, ok := q.batch.slot(size, space)
	if !ok {
		r.flushRelays(q)
		q.f = f
		q.batch.reset(addr)
		at, _ = q.batch.slot(size, space)
	}
	copy(q.batch.buf[at+txHeadroom:], eth)
	r.encodeInto(q.batch, at, f, len(eth), src, dst)
}

// encodeInto turns the frame of n bytes at a txHeadroom past at in b into
// the batch's next datagram (see encode), moving it back to at so that the
// run stays contiguous.
func (r *Router) encodeInto(b *runBatch, at int, f *forwarder, n int, src, dst mesh.PeerName) {
	pkt := r.encode(f, b.buf, at+txHeadroom, n, src, dst)
	b.add(copy(b.buf[at:], pkt))
}

// flushRelays sends what q holds.
func (r *Router) flushRelays(q *relayQueue) {
	if q.f != nil {
		r.sendBatch(q.f, q.batch)
		q.f = nil
	}
}

// sendFrameCopy sends a copy of frame, leaving frame as it is.
func (r *Router) sendFrameCopy(f *forwarder, frame []byte, src, dst mesh.PeerName) {
	bp := frameBufs.Get().(*[]byte)
	defer frameBufs.Put(bp)
	b := *bp
	n := copy(b[txHeadroom:txHeadroom+maxDeviceFrame], frame)
	r.sendFrame(f, b, txHeadroom, n, src, dst, nil)
}

// runBatches are pooled because both forwarding loops send super-frames.
var runBatches = sync.Pool{New: func() any { return newRunBatch() }}

// frameBufs holds frames in device form with txHeadroom in front, for the
// rare sends that cannot work in the buffer the frame arrived in. Pooled
// because both forwarding loops may need one.
var frameBufs = sync.Pool{New: func() any {
	b := make([]byte, txHeadroom+maxDeviceFrame+txTailroom)
	return &b
}}

func (r *Router) send(pkt []byte, to netip.AddrPort) {
	if len(pkt) > maxUDPPayload {
		r.stats.drop(DropTooBig)
		return
	}
	if err := r.sock.send(pkt, to); err != nil {
		r.stats.drop(DropSend)
		return
	}
	r.stats.framesOut.Add(1)
	r.stats.bytesOut.Add(uint64(len(pkt)))
}

func (r *Router) learn(addr mac, peer mesh.PeerName) {
	moved, from, evicted := r.macs.learn(addr, peer)
	if evicted {
		r.stats.drop(DropMACTableFull)
	}
	if moved {
		r.log.Info("sleeve: MAC moved", "mac", net.HardwareAddr(addr[:]).String(), "from", from.String(), "to", peer.String())
	}
}

// pause waits a moment after an unexpected I/O error, or until Close.
func (r *Router) pause() {
	select {
	case <-r.closing:
	case <-time.After(10 * time.Millisecond):
	}
}

func (r *Router) isClosing() bool {
	select {
	case <-r.closing:
		return true
	default:
		return false
	}
}

// arpsFor reports whether eth is an ARP packet whose sender or target is one
// of addrs.
func arpsFor(eth []byte, addrs []netip.Addr) bool {
	const arpLen = 28
	if len(eth) < ethHdrLen+arpLen || eth[12] != 0x08 || eth[13] != 0x06 {
		return false
	}
	arp := eth[ethHdrLen:]
	if arp[4] != 6 || arp[5] != 4 { // Ethernet and IPv4 addresses
		return false
	}
	sender := netip.AddrFrom4([4]byte(arp[14:18]))
	target := netip.AddrFrom4([4]byte(arp[24:28]))
	for _, a := range addrs {
		if a == sender || a == target {
			return true
		}
	}
	return false
}
