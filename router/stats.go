package router

import "sync/atomic"

// DropReason says why a frame or datagram was not forwarded.
type DropReason int

// The reasons a frame is dropped. Each is counted; none is logged per frame,
// so garbage from the network cannot flood the log.
const (
	DropMalformed     DropReason = iota // datagram or frame does not parse
	DropUnknownPeer                     // datagram from a peer we have no connection with
	DropNoRoute                         // no route to the destination peer
	DropNoContact                       // connection has not yet learned the peer's UDP address
	DropTooBig                          // frame does not fit in one datagram
	DropUnsegmentable                   // offloaded super-frame that is not TCP, for a link that cannot take it whole
	DropDevice                          // the device refused the frame
	DropSend                            // the UDP send failed
	DropDecrypt                         // sealed datagram failed authentication
	DropReplay                          // sealed datagram seen before, or too old
	// DropSpoofed: a datagram naming as its sender a peer we are connected
	// to, but not from that connection's UDP address.
	DropSpoofed
	// DropMACTableFull counts MACs evicted from the full MAC table to make
	// room for another; the frame itself is still forwarded.
	DropMACTableFull
	// DropBadChecksum counts TCP segments with a wrong complete checksum:
	// received ones (classic format) are not coalesced but passed on as
	// they came, for the receiving kernel to drop; ones to send on a fast
	// link, where the checksum would go partial, are dropped.
	DropBadChecksum
	// DropLoop: a flooded frame from a peer we would flood it to (see
	// Router.receiveFrame).
	DropLoop
	numDropReasons
)

var dropNames = [numDropReasons]string{
	"malformed", "unknown_peer", "no_route", "no_contact", "too_big", "unsegmentable", "device", "send", "decrypt", "replay",
	"spoofed", "mac_table_full", "bad_checksum", "loop",
}

func (d DropReason) String() string { return dropNames[d] }

// Stats is a snapshot of the router's counters since it was built.
type Stats struct {
	// FramesOut and BytesOut count datagrams sent to peers (one per next hop),
	// FramesIn and BytesIn the frames received from peers.
	FramesIn, FramesOut, BytesIn, BytesOut uint64
	// Drops is keyed by DropReason.String().
	Drops map[string]uint64
}

type counters struct {
	framesIn, bytesIn   atomic.Uint64
	framesOut, bytesOut atomic.Uint64
	drops               [numDropReasons]atomic.Uint64
}

func (c *counters) drop(reason DropReason) { c.drops[reason].Add(1) }

func (c *counters) dropN(reason DropReason, n int) { c.drops[reason].Add(uint64(n)) }

// Stats returns a snapshot of the counters.
func (r *Router) Stats() Stats {
	s := Stats{
		FramesIn:  r.stats.framesIn.Load(),
		FramesOut: r.stats.framesOut.Load(),
		BytesIn:   r.stats.bytesIn.Load(),
		BytesOut:  r.stats.bytesOut.Load(),
		Drops:     make(map[string]uint64, numDropReasons),
	}
	for i := range r.stats.drops {
		s.Drops[dropNames[i]] = r.stats.drops[i].Load()
	}
	return s
}
