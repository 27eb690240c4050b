package ipdev

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"weavenet/tun"
)

// What both flavours of device share: the station's identity (MAC and
// addresses), its neighbour table and the packets held while resolving, the
// queue of ARP frames to send, the counters and the coarse clock.

const (
	vnetHdrLen = tun.VirtioNetHdrLen
	ethHdrLen  = 14
	// frameHead is what goes in front of an IP packet to make it a frame
	// in the router's form: a virtio header and the Ethernet header.
	frameHead = vnetHdrLen + ethHdrLen
	// maxPacket is the largest IP packet: what the IPv4 length field holds,
	// and the size of a TSO super-packet.
	maxPacket = 65535
	// tickEvery paces retransmissions and expiry in the neighbour table,
	// and is the resolution of its clock.
	tickEvery = 250 * time.Millisecond
	// ctrlQueue bounds the ARP frames waiting to go out; beyond it they
	// are dropped, as a busy NIC would (ARP retries).
	ctrlQueue = 64
)

// Config describes the station a Device or TUNDevice presents on the
// overlay.
type Config struct {
	// MAC is the device's Ethernet address: unicast and unique in the
	// overlay (weaved derives it from the peer name). Required.
	MAC net.HardwareAddr
	// Addrs are the device's IPv4 addresses with their subnets, e.g.
	// 10.32.0.1/12: the device answers ARP for these addresses, and the
	// subnets' broadcast addresses map to the Ethernet broadcast. May be
	// empty and set later with SetAddrs (an address from IPAM arrives
	// after the router has started).
	Addrs []netip.Prefix
	// MTU is the largest IP packet either way but for offloaded TCP
	// super-packets; 0 means the TUN's MTU. Use the router's MTU, so that
	// every frame fits its contract.
	MTU int
	// Logger gets the rare events worth a line (an address conflict);
	// nil discards them.
	Logger *slog.Logger
}

// Stats are a device's counters since it was made.
type Stats struct {
	// PacketsOut and PacketsIn count IP packets (a TSO super-packet is
	// one) the TUN sent to the overlay and the overlay delivered to the
	// TUN.
	PacketsOut, PacketsIn uint64
	// ARPRequests and ARPReplies count ARP packets the device sent.
	ARPRequests, ARPReplies uint64
	// Unresolved counts outgoing packets dropped because their
	// destination's MAC could not be found in time (or too many waited).
	Unresolved uint64
	// Unsupported counts packets dropped for being other than IPv4 (or, in
	// frames, other than IPv4 and ARP).
	Unsupported uint64
	// Malformed counts frames and packets too short or broken to handle.
	Malformed uint64
}

// station is the Ethernet station both devices present: everything but
// moving packets to and from the TUN.
type station struct {
	mac mac
	mtu int
	log *slog.Logger
	// wake tells the device's reader that an ARP frame was queued or a
	// held packet released, so that a Read blocked on the TUN returns them.
	wake func()

	addrs atomic.Pointer[[]netip.Prefix]
	// clock is the coarse time the neighbour table runs on: monotonic
	// nanoseconds since start, advanced by the ticker, so the data path
	// reads no clock.
	start time.Time
	clock atomic.Int64

	ctrl chan ctrlFrame

	// mu guards the neighbour table and the hold slots.
	mu      sync.Mutex
	neigh   neighbors
	holds   [holdSlots]held
	holdSeq uint64
	// ready counts held packets whose MAC is now known.
	ready atomic.Int32

	stats struct {
		out, in, arpReq, arpRep, unresolved, unsupported, malformed atomic.Uint64
	}

	closing chan struct{}
	closed  sync.Once
	wg      sync.WaitGroup
}

// held is a packet waiting for its destination's MAC.
type held struct {
	buf   []byte // the frame in the router's form, Ethernet header to fill
	n     int    // frame length; 0 means the slot is free
	dst   netip.Addr
	seq   uint64
	ready bool
	mac   mac
}

type ctrlFrame struct {
	b [vnetHdrLen + minEthFrame]byte
	n int
}

// init checks cfg (whose MTU the caller has settled) and readies s; start
// begins its clock.
func (s *station) init(cfg Config, wake func()) error {
	if len(cfg.MAC) != 6 || cfg.MAC[0]&1 != 0 || [6]byte(cfg.MAC) == [6]byte{} {
		return fmt.Errorf("ipdev: Config.MAC %q: want a 6-byte unicast MAC", cfg.MAC.String())
	}
	if cfg.MTU < 576 || cfg.MTU > maxPacket {
		return fmt.Errorf("ipdev: Config.MTU %d: want 576-%d", cfg.MTU, maxPacket)
	}
	if err := checkAddrs(cfg.Addrs); err != nil {
		return err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s.mac, s.mtu, s.log, s.wake = mac(cfg.MAC), cfg.MTU, cfg.Logger, wake
	s.ctrl = make(chan ctrlFrame, ctrlQueue)
	s.closing = make(chan struct{})
	s.neigh = newNeighbors(s.dropHeld)
	s.start = time.Now()
	s.SetAddrs(cfg.Addrs) //nolint:errcheck // checked above
	return nil
}

// run starts the station's goroutines.
func (s *station) run() {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.tickLoop() }()
}

// close ends the station and its device: closeDev closes the TUN, which
// wakes its reader; then close waits for the goroutines.
func (s *station) close(closeDev func() error) error {
	var err error
	s.closed.Do(func() {
		close(s.closing)
		err = closeDev()
		s.wg.Wait()
	})
	return err
}

func checkAddrs(addrs []netip.Prefix) error {
	for _, p := range addrs {
		if !p.IsValid() || !p.Addr().Is4() || p.Bits() == 0 {
			return fmt.Errorf("ipdev: Config.Addrs: %v is not an IPv4 address with its subnet, such as 10.32.0.1/12", p)
		}
	}
	return nil
}

// MAC is the device's Ethernet address.
func (s *station) MAC() net.HardwareAddr { return net.HardwareAddr(s.mac[:]) }

// MTU is the largest IP packet the device carries, but for offloaded TCP
// super-packets.
func (s *station) MTU() int { return s.mtu }

// Addrs returns the device's addresses.
func (s *station) Addrs() []netip.Prefix { return append([]netip.Prefix(nil), *s.addrs.Load()...) }

// SetAddrs replaces the device's addresses (IPv4 with their subnets) and
// announces the new ones with gratuitous ARP, so that stations that knew
// another MAC for them learn ours. It does not touch the kernel's view of
// a TUN: giving the interface its addresses and routes is the caller's job.
func (s *station) SetAddrs(addrs []netip.Prefix) error {
	if err := checkAddrs(addrs); err != nil {
		return err
	}
	own := append([]netip.Prefix(nil), addrs...)
	old := s.addrs.Swap(&own)
	for _, p := range own {
		if old != nil && containsAddr(*old, p.Addr()) {
			continue
		}
		s.queueARP(broadcastMAC, arpPacket{op: arpRequest, senderMAC: s.mac, senderIP: p.Addr(), targetIP: p.Addr()})
	}
	return nil
}

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Addr() == a {
			return true
		}
	}
	return false
}

// Stats returns the device's counters.
func (s *station) Stats() Stats {
	c := &s.stats
	return Stats{
		PacketsOut: c.out.Load(), PacketsIn: c.in.Load(),
		ARPRequests: c.arpReq.Load(), ARPReplies: c.arpRep.Load(),
		Unresolved: c.unresolved.Load(), Unsupported: c.unsupported.Load(), Malformed: c.malformed.Load(),
	}
}

// tickLoop advances the coarse clock and drives the neighbour table's
// retransmissions and expiry.
func (s *station) tickLoop() {
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
			s.tick(int64(time.Since(s.start)))
		}
	}
}

func (s *station) tick(now int64) {
	s.mu.Lock()
	if c := s.clock.Load(); now < c {
		now = c // never backwards
	}
	s.clock.Store(now)
	defer s.mu.Unlock()
	s.neigh.sweep(now, func(ip netip.Addr) {
		s.queueARP(broadcastMAC, s.request(ip))
	}, s.dropHeld)
}

// request is an ARP request for ip, from the address of ours that shares
// its subnet (or our first one).
func (s *station) request(ip netip.Addr) arpPacket {
	return arpPacket{op: arpRequest, senderMAC: s.mac, senderIP: s.sourceFor(ip), targetIP: ip}
}

func (s *station) sourceFor(ip netip.Addr) netip.Addr {
	addrs := *s.addrs.Load()
	for _, p := range addrs {
		if p.Contains(ip) {
			return p.Addr()
		}
	}
	if len(addrs) > 0 {
		return addrs[0].Addr()
	}
	return netip.IPv4Unspecified()
}

// queueARP queues an ARP frame for Read to hand to the router; a full
// queue drops it.
func (s *station) queueARP(dst mac, p arpPacket) {
	var f ctrlFrame
	f.n = putARPFrame(f.b[:], dst, s.mac, p)
	select {
	case s.ctrl <- f:
		if p.op == arpRequest {
			s.stats.arpReq.Add(1)
		} else {
			s.stats.arpRep.Add(1)
		}
		s.wake()
	default:
	}
}

// hold keeps a copy of frame, a frame in the router's form whose Ethernet
// header is yet to be written, until dst is resolved, replacing the oldest
// packet for dst if it has heldPerAddr already. s.mu is held.
func (s *station) hold(dst netip.Addr, frame []byte) {
	free, oldest, count := -1, -1, 0
	for i := range s.holds {
		h := &s.holds[i]
		switch {
		case h.n == 0:
			if free < 0 {
				free = i
			}
		case h.dst == dst && !h.ready:
			count++
			if oldest < 0 || h.seq < s.holds[oldest].seq {
				oldest = i
			}
		}
	}
	slot := free
	if count >= heldPerAddr || slot < 0 {
		if oldest < 0 {
			s.stats.unresolved.Add(1) // every slot waits for others
			return
		}
		slot = oldest
		s.stats.unresolved.Add(1)
	}
	h := &s.holds[slot]
	if len(h.buf) < len(frame) {
		// Slots grow to the largest packet they have held, a TSO
		// super-packet at most: resolving is rare, and most packets
		// that wait for it are small.
		h.buf = make([]byte, max(len(frame), frameHead+s.mtu))
	}
	h.n = copy(h.buf, frame)
	h.dst, h.ready = dst, false
	s.holdSeq++
	h.seq = s.holdSeq
}

// release marks dst's held packets as ready to go to m. s.mu is held.
func (s *station) release(dst netip.Addr, m mac) {
	n := int32(0)
	for i := range s.holds {
		h := &s.holds[i]
		if h.n != 0 && h.dst == dst && !h.ready {
			h.ready, h.mac = true, m
			n++
		}
	}
	if n > 0 {
		s.ready.Add(n)
		s.wake()
	}
}

// dropHeld drops the packets waiting for dst. s.mu is held.
func (s *station) dropHeld(dst netip.Addr) {
	for i := range s.holds {
		h := &s.holds[i]
		if h.n != 0 && h.dst == dst && !h.ready {
			h.n = 0
			s.stats.unresolved.Add(1)
		}
	}
}
