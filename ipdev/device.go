package ipdev

import (
	"errors"
	"fmt"
	"sync"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// Device is a router.PlainDevice made of a golang.zx2c4.com/wireguard/tun
// Device, such as a userspace netstack (tun/netstack.CreateNetTUN): the
// router reads Ethernet frames (blank virtio header first) from it and
// writes frames into it, one MTU-sized packet each. Read must be called
// from one goroutine at a time (the router's send loop); Write, SetAddrs,
// Stats and Close are safe from any.
type Device struct {
	station
	dev wgtun.Device

	// Send side (send.go). The pump goroutine fills batches from the TUN;
	// Read drains them one packet per call, owned by Read until it hands
	// the batch back on free.
	full, free chan *batch
	cur        *batch
	curIdx     int
	readErr    error
	woken      chan struct{}

	// Receive side (receive.go): one write buffer, since tun.Device.Write
	// may write in front of the packet (its virtio header).
	wmu   sync.Mutex
	wbuf  []byte
	wbufs [1][]byte
}

// batch is one Read of the TUN: up to BatchSize packets, each at
// bufs[i][frameHead:frameHead+sizes[i]].
type batch struct {
	bufs  [][]byte
	sizes []int
	n     int
	err   error
}

// New makes dev a station on the overlay. The Device owns dev from now on
// and closes it in Close. It starts reading dev at once; packets that
// arrive before the router reads are held in the Device's batches.
func New(dev wgtun.Device, cfg Config) (*Device, error) {
	if dev == nil {
		return nil, errors.New("ipdev: the tun.Device is nil")
	}
	if cfg.MTU == 0 {
		m, err := dev.MTU()
		if err != nil {
			return nil, fmt.Errorf("ipdev: Config.MTU is 0 and the device's MTU is unknown: %w", err)
		}
		cfg.MTU = m
	}
	d := &Device{
		dev:   dev,
		full:  make(chan *batch, 1),
		free:  make(chan *batch, 2),
		woken: make(chan struct{}, 1),
	}
	if err := d.init(cfg, d.wake); err != nil {
		return nil, err
	}
	d.wbuf = make([]byte, frameHead+d.mtu)
	// Two batches: the pump fills one while Read drains the other. The
	// room in front of each packet is for the wireguard TUN's own header.
	bs := max(dev.BatchSize(), 1)
	for range 2 {
		b := &batch{bufs: make([][]byte, bs), sizes: make([]int, bs)}
		for i := range b.bufs {
			b.bufs[i] = make([]byte, frameHead+d.mtu)
		}
		d.free <- b
	}

	d.run()
	d.wg.Add(1)
	go func() { defer d.wg.Done(); d.pump() }()
	// Nobody needs the TUN's up/down/MTU events, but unread they would
	// block its status goroutines. The channel closes with the device.
	go func() {
		for range dev.Events() {
		}
	}()
	return d, nil
}

// wake ends a Read waiting in its select.
func (d *Device) wake() {
	select {
	case d.woken <- struct{}{}:
	default:
	}
}

// PlainFrames tells the router to hand this device only plain, complete
// frames (see router.PlainDevice): a wireguard tun.Device takes no virtio
// offloads from us.
func (d *Device) PlainFrames() bool { return true }

// Close closes the tun.Device and waits for the Device's goroutines. A Read
// blocked or called after it returns net.ErrClosed.
func (d *Device) Close() error { return d.close(d.dev.Close) }
