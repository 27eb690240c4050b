package router

import (
	"errors"
	"net"
	"net/netip"

	"github.com/weaveworks/mesh"

	"weavenet/crypto"
	"weavenet/tun"
)

// The network → device direction.
//
//  1. Read one datagram. Its first bytes name the peer that sent it, which
//     must be at the other end of one of our confirmed connections; anything
//     else is dropped and counted.
//  2. For each frame in it, bring it into device form (virtio header first),
//     in place: a frame from a peer without virtio headers gets a blank one
//     written over its already-decoded frame header.
//  3. The peer's control frames (heartbeats, tests) go to its forwarder.
//  4. A frame addressed to another peer is relayed towards it.
//  5. A frame for us teaches us where its source MAC lives, goes to the
//     device, and, unless its destination is a MAC known to be here, is
//     flooded on along the source's broadcast tree.
//
// One goroutine runs this loop. Relaying reuses the bytes in front of a frame
// (the headers and frames already consumed) as headroom, so nothing is copied.

// rxHeadroom leaves room for a virtio header in front of the first frame of a
// datagram from a peer that sends none, so that it can be relayed in place.
const rxHeadroom = tun.VirtioNetHdrLen

func (r *Router) receiveLoop() {
	buf := make([]byte, rxHeadroom+maxUDPPayload+1)
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf[rxHeadroom:])
		if err != nil {
			if r.isClosing() || errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Warn("sleeve: read from UDP", "err", err)
			r.pause()
			continue
		}
		r.receivePacket(buf, n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	}
}

// receivePacket handles the datagram at buf[rxHeadroom:rxHeadroom+n].
func (r *Router) receivePacket(buf []byte, n int, from netip.AddrPort) {
	pkt := buf[rxHeadroom : rxHeadroom+n]
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
		r.receiveFrame(f, from, buf, rxHeadroom+h.Off, len(h.Payload), h.Src, h.Dst)
	}
}

// receiveFrame handles one frame at buf[off:off+n] that arrived from the peer
// of f. The bytes in front of off are free for reuse.
func (r *Router) receiveFrame(f *forwarder, from netip.AddrPort, buf []byte, off, n int, src, dst mesh.PeerName) {
	if !f.vnetHdr {
		off -= tun.VirtioNetHdrLen
		n += tun.VirtioNetHdrLen
		clear(buf[off : off+tun.VirtioNetHdrLen])
	}
	if n < tun.VirtioNetHdrLen+ethHdrLen {
		r.stats.drop(DropMalformed)
		return
	}
	frame := buf[off : off+n]
	eth := frame[tun.VirtioNetHdrLen:]
	if isSpecial(eth) {
		if src == f.remoteName && dst == r.name {
			f.onSpecial(from, eth)
		}
		return
	}
	r.stats.framesIn.Add(1)
	r.stats.bytesIn.Add(uint64(n))
	if src == r.name {
		r.stats.drop(DropMalformed) // our own frame came back: a peer is confused
		return
	}
	if dst != r.name {
		r.relay(buf, off, n, src, dst)
		return
	}
	var dmac, smac mac
	copy(dmac[:], eth[0:6])
	copy(smac[:], eth[6:12])
	r.learn(smac, src)
	r.deliver(frame)
	if dmac.isUnicast() {
		if owner, ok := r.macs.lookup(dmac); ok && owner == r.name {
			return
		}
	}
	r.flood(buf, off, n, src)
}

// deliver writes frame, in device form, to the device. A device that takes
// only plain frames gets offloaded ones segmented and checksummed; the frame
// itself is left as it was, since flooding may send it on.
func (r *Router) deliver(frame []byte) {
	if r.plainDev {
		var h tun.VirtioNetHdr
		_ = h.Decode(frame) // frame holds at least a virtio header
		if h.GSOType != tun.VirtioNetHdrGSONone || h.Flags&tun.VirtioNetHdrFNeedsCsum != 0 {
			r.deliverPlain(frame, h)
			return
		}
	}
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
	write := func(n int) {
		if _, err := r.dev.Write(b[:n]); err != nil {
			r.stats.drop(DropDevice)
		}
	}
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
