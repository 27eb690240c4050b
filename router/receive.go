package router

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"

	"weavenet/mesh"

	"weavenet/crypto"
	"weavenet/tun"
)

// The network → device direction.
//
//  1. Read one datagram, or with UDP GRO a run of them from one sender, and
//     take each in turn. Its first bytes name the peer that sent it (the
//     previous hop, also for a relayed frame), which must be at the other
//     end of one of our confirmed connections, and the datagram must come
//     from that connection's UDP address; anything else is dropped and
//     counted. Only a heartbeat bearing the connection's ID may come from
//     elsewhere: that is how a peer's new address is learned.
//  2. For each frame in it, bring it into device form (virtio header first),
//     in place: the header is written over the already-decoded frame
//     header, marking a TCP checksum partial if the link is fast.
//  3. The peer's control frames (heartbeats, tests) go to its forwarder.
//  4. A frame naming as its source or destination a peer outside the
//     topology is dropped and counted (routes.go: no waiting on mesh to
//     find out).
//  5. A frame addressed to another peer is relayed towards it.
//  6. A frame for us teaches us where its source MAC lives, goes to the
//     device, and, unless its destination is a MAC known to be here, is
//     flooded on along the source's broadcast tree. TCP segments of one flow
//     are coalesced into super-frames on the way to the device (coalesce.go);
//     the run is flushed when the socket has nothing more to read for now.
//
// One goroutine runs this loop. Relaying reuses the bytes in front of a frame
// (the headers and frames already consumed, or the datagrams before it in a
// run) as headroom, so nothing is copied.

// rxHeadroom leaves room in front of the first datagram for relaying its
// first frame in place on a link that needs more headers than it came with.
const rxHeadroom = txHeadroom

func (r *Router) receiveLoop() {
	buf := make([]byte, rxHeadroom+groBufLen+txTailroom)
	rd := r.sock.reader(func() { r.rx.flush(r.writeDevice) })
	for {
		n, seg, from, err := rd.next(buf[rxHeadroom : rxHeadroom+groBufLen])
		if err != nil {
			if r.isClosing() || errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Warn("sleeve: read from UDP", "err", err)
			r.pause()
			continue
		}
		for off := 0; off < n; off += seg {
			r.receivePacket(buf, rxHeadroom+off, min(seg, n-off), from)
		}
		r.flushRelays(&r.relays)
	}
}

// receivePacket handles the datagram at buf[start:start+n]; the bytes in
// front of start are free for reuse, and so are those after it up to the
// next datagram.
func (r *Router) receivePacket(buf []byte, start, n int, from netip.AddrPort) {
	pkt := buf[start : start+n]
	sender, err := senderOf(pkt)
	if err != nil {
		r.stats.drop(DropMalformed)
		return
	}
	f := r.forwarder(sender)
	if f == nil {
		r.stats.drop(DropUnknownPeer)
		return
	}
	// On an unencrypted link the address is the only thing that tells the
	// peer's datagrams from anyone else's naming it; on an encrypted one
	// the seal already does, but a sealed frame has no business coming
	// from elsewhere either.
	fromPeer := f.isFrom(from)
	off := packetHdrLen
	if f.opener != nil {
		plain, err := f.opener.Open(pkt[packetHdrLen:])
		if err != nil {
			r.stats.drop(openDropReason(err))
			return
		}
		off += f.suite.Headroom()
		pkt = pkt[:off+len(plain)]
	}
	for {
		h, next, ok, err := nextFrame(pkt, off)
		if err != nil {
			r.stats.drop(DropMalformed)
			return
		}
		if !ok {
			return
		}
		off = next
		r.receiveFrame(f, from, fromPeer, buf, start+h.Off, len(h.Payload), h.Src, h.Dst)
	}
}

// receiveFrame handles one frame at buf[off:off+n] that arrived in a datagram
// naming f's peer as its sender, from the peer's UDP address if fromPeer. The
// bytes in front of off are free for reuse.
func (r *Router) receiveFrame(f *forwarder, from netip.AddrPort, fromPeer bool, buf []byte, off, n int, src, dst mesh.PeerName) {
	// Into device form: a virtio header over the decoded frame header. On
	// a fast link every TCP checksum is partial, which the header tells.
	off -= tun.VirtioNetHdrLen
	n += tun.VirtioNetHdrLen
	var h tun.VirtioNetHdr
	if at, _, ok := tcpChecksumAt(buf[off+tun.VirtioNetHdrLen : off+n]); ok && f.partialCsum {
		h = tun.VirtioNetHdr{Flags: tun.VirtioNetHdrFNeedsCsum, CsumStart: uint16(at - 16), CsumOffset: 16}
	}
	h.Encode(buf[off:])
	if n < tun.VirtioNetHdrLen+ethHdrLen {
		r.stats.drop(DropMalformed)
		return
	}
	frame := buf[off : off+n]
	eth := frame[tun.VirtioNetHdrLen:]
	if isSpecial(eth) {
		if src == f.remoteName && dst == r.name && (fromPeer || f.isHeartbeat(eth)) {
			f.onSpecial(from, eth)
		} else if !fromPeer {
			r.stats.drop(DropSpoofed)
		}
		return
	}
	if !fromPeer {
		r.stats.drop(DropSpoofed)
		return
	}
	if !r.knownPeer(src) {
		r.stats.drop(DropUnknownPeer)
		return
	}
	r.stats.framesIn.Add(1)
	r.stats.bytesIn.Add(uint64(n))
	if src == r.name {
		r.stats.drop(DropMalformed) // our own frame came back: a peer is confused
		return
	}
	if dst != r.name {
		r.relay(buf, off, n, src, dst, &r.relays)
		return
	}
	var dmac, smac mac
	copy(dmac[:], eth[0:6])
	copy(smac[:], eth[6:12])
	local := false
	if dmac.isUnicast() {
		owner, ok := r.macs.lookup(dmac)
		local = ok && owner == r.name
	}
	// A flooded frame comes to us from src or from a peer before us in
	// src's broadcast tree, never from one we pass it on to: from there
	// it has come round a loop. While a mesh forms, two peers' views of
	// the topology can each put the other after itself, and then every
	// flooded frame between them went back and forth until the views
	// agreed: at 20 peers, one IPv6 neighbour solicitation reached a host
	// 2,800 times in a second.
	var hops []mesh.PeerName
	if !local {
		hops = r.routes.Load().Broadcast(src)
		if f.remoteName != src && slices.Contains(hops, f.remoteName) {
			r.stats.drop(DropLoop)
			return
		}
	}
	r.learn(smac, src)
	r.deliver(frame)
	if !local {
		r.floodTo(buf, off, n, src, hops)
	}
}

// deliver writes frame, in device form, to the device, or adds it to the
// coalescer's run. A device that takes only plain frames gets offloaded ones
// segmented and checksummed. The frame itself is left as it was, since
// flooding may send it on.
func (r *Router) deliver(frame []byte) {
	if !r.plainDev {
		if r.rx.add(frame) {
			return
		}
		// Not part of the run: the run goes first, then this frame
		// may begin the next.
		r.rx.flush(r.writeDevice)
		if r.rx.add(frame) {
			return
		}
	}
	if r.plainDev {
		var h tun.VirtioNetHdr
		_ = h.Decode(frame) // frame holds at least a virtio header
		if h.GSOType != tun.VirtioNetHdrGSONone || h.Flags&tun.VirtioNetHdrFNeedsCsum != 0 {
			r.deliverPlain(frame, h)
			return
		}
	}
	r.writeDevice(frame)
}

func (r *Router) writeDevice(frame []byte) {
	if _, err := r.dev.Write(frame); err != nil {
		r.stats.drop(DropDevice)
	}
}

// deliverPlain writes an offloaded frame to a plain device: as MSS-sized
// segments, or with its checksum finished, in a scratch buffer.
func (r *Router) deliverPlain(frame []byte, h tun.VirtioNetHdr) {
	bp := frameBufs.Get().(*[]byte)
	defer frameBufs.Put(bp)
	b := *bp
	write := func(n int) { r.writeDevice(b[:n]) }
	if h.GSOType != tun.VirtioNetHdrGSONone {
		if err := segmentTCP(frame[tun.VirtioNetHdrLen:], int(h.GSOSize), b, 0, write); err != nil {
			r.stats.drop(DropUnsegmentable)
		}
		return
	}
	n := copy(b, frame)
	clear(b[:tun.VirtioNetHdrLen])
	eth := b[tun.VirtioNetHdrLen:n]
	if csumAt := int(h.CsumStart) + int(h.CsumOffset); csumAt+2 <= len(eth) {
		completeChecksum(eth, int(h.CsumStart), csumAt)
	}
	write(n)
}

func openDropReason(err error) DropReason {
	if errors.Is(err, crypto.ErrReplay) {
		return DropReplay
	}
	return DropDecrypt
}

// isFrom reports whether a datagram from a came from f's peer: from the UDP
// address its heartbeats come from (or, until one has, the one we dialled).
func (f *forwarder) isFrom(a netip.AddrPort) bool {
	p := f.addr.Load()
	return p != nil && *p == a
}

// isHeartbeat reports whether eth, a control frame, is a heartbeat of f's
// connection. Checked here, before it is queued for f's goroutine, so that
// a flood of heartbeats with made-up IDs cannot crowd out the peer's own.
// The ID is random per connection and travels only in the mesh handshake;
// on an unencrypted network whoever sees that handshake can forge it.
func (f *forwarder) isHeartbeat(eth []byte) bool {
	return len(eth) == heartbeatLen && binary.BigEndian.Uint64(eth[ethHdrLen:]) == f.connUID
}
