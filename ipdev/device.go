package ipdev

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	wgtun "golang.zx2c4.com/wireguard/tun"

	"weavenet/tun"
)

const (
	vnetHdrLen = tun.VirtioNetHdrLen
	ethHdrLen  = 14
	// frameHead is what goes in front of an IP packet to make it a frame
	// in the router's form: a blank virtio header and the Ethernet header.
	frameHead = vnetHdrLen + ethHdrLen
	// tickEvery paces retransmissions and expiry in the neighbour table,
	// and is the resolution of its clock.
	tickEvery = 250 * time.Millisecond
	// ctrlQueue bounds the ARP frames waiting to go out; beyond it they
	// are dropped, as a busy NIC would (ARP retries).
	ctrlQueue = 64
)

// Config describes the station a Device presents on the overlay.
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
	// MTU is the largest IP packet either way; 0 means the tun.Device's
	// MTU. Use the router's MTU, so that every frame fits its contract.
	MTU int
	// Logger gets the rare events worth a line (an address conflict);
	// nil discards them.
	Logger *slog.Logger
}

// Stats are a Device's counters since New.
type Stats struct {
	// PacketsOut and PacketsIn count IP packets the TUN sent to the
	// overlay and the overlay delivered to the TUN.
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

// Device is a router.PlainDevice made of a tun.Device: the router reads
// Ethernet frames (blank virtio header first) from it and writes frames
// into it. Read must be called from one goroutine at a time (the router's
// send loop); Write, SetAddrs, Stats and Close are safe from any.
type Device struct {
	dev wgtun.Device
	mac mac
	mtu int
	log *slog.Logger

	addrs atomic.Pointer[[]netip.Prefix]
	// clock is the coarse time the neighbour table runs on: monotonic
	// nanoseconds since start, advanced by the ticker, so the data path
	// reads no clock.
	start time.Time
	clock atomic.Int64

	// Send side (send.go). The pump goroutine fills batches from the TUN;
	// Read drains them one packet per call, owned by Read until it hands
	// the batch back on free.
	full, free chan *batch
	cur        *batch
	curIdx     int
	readErr    error
	ctrl       chan ctrlFrame
	wake       chan struct{}

	// mu guards the neighbour table and the hold slots.
	mu      sync.Mutex
	neigh   neighbors
	holds   [holdSlots]held
	holdSeq uint64
	// ready counts held packets whose MAC is now known.
	ready atomic.Int32

	// Receive side (receive.go): one write buffer, since tun.Device.Write
	// may write in front of the packet (its virtio header).
	wmu   sync.Mutex
	wbuf  []byte
	wbufs [1][]byte

	stats struct {
		out, in, arpReq, arpRep, unresolved, unsupported, malformed atomic.Uint64
	}

	closing chan struct{}
	closed  sync.Once
	wg      sync.WaitGroup
}

// batch is one Read of the TUN: up to BatchSize packets, each at
// bufs[i][frameHead:frameHead+sizes[i]], with room for the frame headers in
// front.
type batch struct {
	bufs  [][]byte
	sizes []int
	n     int
	err   error
}

// held is a packet waiting for its destination's MAC.
type held struct {
	buf   []byte // frameHead + mtu bytes, the packet at frameHead
	n     int    // packet length; 0 means the slot is free
	dst   netip.Addr
	seq   uint64
	ready bool
	mac   mac
}

type ctrlFrame struct {
	b [vnetHdrLen + minEthFrame]byte
	n int
}

// New makes dev a station on the overlay. The Device owns dev from now on
// and closes it in Close. It starts reading dev at once; packets that
// arrive before the router reads are held in the Device's batches.
func New(dev wgtun.Device, cfg Config) (*Device, error) {
	if dev == nil {
		return nil, errors.New("ipdev: the tun.Device is nil")
	}
	if len(cfg.MAC) != 6 || cfg.MAC[0]&1 != 0 || [6]byte(cfg.MAC) == [6]byte{} {
		return nil, fmt.Errorf("ipdev: Config.MAC %q: want a 6-byte unicast MAC", cfg.MAC.String())
	}
	if cfg.MTU == 0 {
		m, err := dev.MTU()
		if err != nil {
			return nil, fmt.Errorf("ipdev: Config.MTU is 0 and the device's MTU is unknown: %w", err)
		}
		cfg.MTU = m
	}
	if cfg.MTU < 576 || cfg.MTU > 65535 {
		return nil, fmt.Errorf("ipdev: Config.MTU %d: want 576-65535", cfg.MTU)
	}
	if err := checkAddrs(cfg.Addrs); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Device{
		dev:     dev,
		mac:     mac(cfg.MAC),
		mtu:     cfg.MTU,
		log:     cfg.Logger,
		full:    make(chan *batch, 1),
		free:    make(chan *batch, 2),
		ctrl:    make(chan ctrlFrame, ctrlQueue),
		wake:    make(chan struct{}, 1),
		wbuf:    make([]byte, frameHead+cfg.MTU),
		closing: make(chan struct{}),
	}
	d.neigh = newNeighbors(d.dropHeld)
	for i := range d.holds {
		d.holds[i].buf = make([]byte, frameHead+cfg.MTU)
	}
	// Two batches: the pump fills one while Read drains the other.
	bs := max(dev.BatchSize(), 1)
	for range 2 {
		b := &batch{bufs: make([][]byte, bs), sizes: make([]int, bs)}
		for i := range b.bufs {
			b.bufs[i] = make([]byte, frameHead+cfg.MTU)
		}
		d.free <- b
	}
	d.start = time.Now()
	d.SetAddrs(cfg.Addrs) //nolint:errcheck // checked above

	d.wg.Add(2)
	go func() { defer d.wg.Done(); d.pump() }()
	go func() { defer d.wg.Done(); d.tickLoop() }()
	// Nobody needs the TUN's up/down/MTU events, but unread they would
	// block its status goroutines. The channel closes with the device.
	go func() {
		for range dev.Events() {
		}
	}()
	return d, nil
}

func checkAddrs(addrs []netip.Prefix) error {
	for _, p := range addrs {
		if !p.IsValid() || !p.Addr().Is4() || p.Bits() == 0 {
			return fmt.Errorf("ipdev: Config.Addrs: %v is not an IPv4 address with its subnet, such as 10.32.0.1/12", p)
		}
	}
	return nil
}

// PlainFrames tells the router to hand this device only plain, complete
// frames (see router.PlainDevice): a TUN takes no virtio offloads from us.
func (d *Device) PlainFrames() bool { return true }

// MAC is the device's Ethernet address.
func (d *Device) MAC() net.HardwareAddr { return net.HardwareAddr(d.mac[:]) }

// MTU is the largest IP packet the device carries.
func (d *Device) MTU() int { return d.mtu }

// Addrs returns the device's addresses.
func (d *Device) Addrs() []netip.Prefix { return append([]netip.Prefix(nil), *d.addrs.Load()...) }

// SetAddrs replaces the device's addresses (IPv4 with their subnets) and
// announces the new ones with gratuitous ARP, so that stations that knew
// another MAC for them learn ours. It does not touch the kernel's view of
// a TUN: giving the interface its addresses and routes is the caller's job.
func (d *Device) SetAddrs(addrs []netip.Prefix) error {
	if err := checkAddrs(addrs); err != nil {
		return err
	}
	own := append([]netip.Prefix(nil), addrs...)
	old := d.addrs.Swap(&own)
	for _, p := range own {
		if old != nil && containsAddr(*old, p.Addr()) {
			continue
		}
		d.queueARP(broadcastMAC, arpPacket{op: arpRequest, senderMAC: d.mac, senderIP: p.Addr(), targetIP: p.Addr()})
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
func (d *Device) Stats() Stats {
	s := &d.stats
	return Stats{
		PacketsOut: s.out.Load(), PacketsIn: s.in.Load(),
		ARPRequests: s.arpReq.Load(), ARPReplies: s.arpRep.Load(),
		Unresolved: s.unresolved.Load(), Unsupported: s.unsupported.Load(), Malformed: s.malformed.Load(),
	}
}

// Close closes the tun.Device and waits for the Device's goroutines. A Read
// blocked or called after it returns net.ErrClosed.
func (d *Device) Close() error {
	var err error
	d.closed.Do(func() {
		close(d.closing)
		err = d.dev.Close()
		d.wg.Wait()
	})
	return err
}

// tickLoop advances the coarse clock and drives the neighbour table's
// retransmissions and expiry.
func (d *Device) tickLoop() {
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-d.closing:
			return
		case <-t.C:
			d.tick(int64(time.Since(d.start)))
		}
	}
}

func (d *Device) tick(now int64) {
	d.mu.Lock()
	if c := d.clock.Load(); now < c {
		now = c // never backwards
	}
	d.clock.Store(now)
	defer d.mu.Unlock()
	d.neigh.sweep(now, func(ip netip.Addr) {
		d.queueARP(broadcastMAC, d.request(ip))
	}, d.dropHeld)
}

// request is an ARP request for ip, from the address of ours that shares
// its subnet (or our first one).
func (d *Device) request(ip netip.Addr) arpPacket {
	return arpPacket{op: arpRequest, senderMAC: d.mac, senderIP: d.sourceFor(ip), targetIP: ip}
}

func (d *Device) sourceFor(ip netip.Addr) netip.Addr {
	addrs := *d.addrs.Load()
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
func (d *Device) queueARP(dst mac, p arpPacket) {
	var f ctrlFrame
	f.n = putARPFrame(f.b[:], dst, d.mac, p)
	select {
	case d.ctrl <- f:
		if p.op == arpRequest {
			d.stats.arpReq.Add(1)
		} else {
			d.stats.arpRep.Add(1)
		}
	default:
	}
}

// hold keeps a copy of pkt until dst is resolved, replacing the oldest
// packet for dst if it has heldPerAddr already. d.mu is held.
func (d *Device) hold(dst netip.Addr, pkt []byte) {
	free, oldest, count := -1, -1, 0
	for i := range d.holds {
		h := &d.holds[i]
		switch {
		case h.n == 0:
			if free < 0 {
				free = i
			}
		case h.dst == dst && !h.ready:
			count++
			if oldest < 0 || h.seq < d.holds[oldest].seq {
				oldest = i
			}
		}
	}
	slot := free
	if count >= heldPerAddr || slot < 0 {
		if oldest < 0 {
			d.stats.unresolved.Add(1) // every slot waits for others
			return
		}
		slot = oldest
		d.stats.unresolved.Add(1)
	}
	h := &d.holds[slot]
	h.n = copy(h.buf[frameHead:], pkt)
	h.dst, h.ready = dst, false
	d.holdSeq++
	h.seq = d.holdSeq
}

// release marks dst's held packets as ready to go to m. d.mu is held.
func (d *Device) release(dst netip.Addr, m mac) {
	n := int32(0)
	for i := range d.holds {
		h := &d.holds[i]
		if h.n != 0 && h.dst == dst && !h.ready {
			h.ready, h.mac = true, m
			n++
		}
	}
	if n > 0 {
		d.ready.Add(n)
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// dropHeld drops the packets waiting for dst. d.mu is held.
func (d *Device) dropHeld(dst netip.Addr) {
	for i := range d.holds {
		h := &d.holds[i]
		if h.n != 0 && h.dst == dst && !h.ready {
			h.n = 0
			d.stats.unresolved.Add(1)
		}
	}
}
