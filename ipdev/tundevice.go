package ipdev

import (
	"errors"
	"time"

	"weavenet/tun"
)

// TUNDevice is a router.Device made of a kernel TUN opened with virtio
// headers and offloads (tun.OpenTUN with VnetHdr and Offload): the kernel
// hands it TCP super-packets of up to 64 KiB with partial checksums, and it
// hands them to the router as super-frames, which the router cuts into
// datagrams sent in one go; the router hands it coalesced super-frames,
// which the kernel takes in one write. It is not a router.PlainDevice.
//
// Frames are made in the router's buffer around the packet the TUN read
// into it, and packets written from the router's buffer around the frame:
// no copy either way. Read must be called from one goroutine at a time
// (the router's send loop); Write, SetAddrs, Stats and Close are safe from
// any.
type TUNDevice struct {
	station
	tun tunFile
	// interrupted: the reader's last TUN read was woken by a past
	// deadline, which must be cleared before it blocks again. Read's.
	interrupted bool
}

// tunFile is what a TUNDevice needs of a *tun.TUN; tests fake it.
type tunFile interface {
	Read(b []byte) (int, error)
	Write(b []byte) (int, error)
	SetReadDeadline(t time.Time) error
	Close() error
}

// NewTUN makes t a station on the overlay. t must have been opened with
// VnetHdr (and Offload, for the speed). The TUNDevice owns t from now on and
// closes it in Close. Config.MTU 0 means t's MTU.
func NewTUN(t *tun.TUN, cfg Config) (*TUNDevice, error) {
	if t == nil {
		return nil, errors.New("ipdev: the TUN is nil")
	}
	if !t.VnetHdr() {
		return nil, errors.New("ipdev: TUN " + t.Name() + " was opened without VnetHdr; use New with a plain TUN")
	}
	if cfg.MTU == 0 {
		cfg.MTU = t.MTU()
	}
	return newTUNDevice(t, cfg)
}

func newTUNDevice(t tunFile, cfg Config) (*TUNDevice, error) {
	d := &TUNDevice{tun: t}
	if err := d.init(cfg, d.wake); err != nil {
		return nil, err
	}
	d.run()
	return d, nil
}

// wake interrupts a Read blocked on the TUN, so that it sends what the
// station queued: a read deadline long past. An error here means the TUN
// is closed, which wakes the Read anyway.
func (d *TUNDevice) wake() { _ = d.tun.SetReadDeadline(time.Unix(1, 0)) }

// Close closes the TUN and waits for the TUNDevice's goroutines. A Read
// blocked or called after it returns net.ErrClosed.
func (d *TUNDevice) Close() error { return d.close(d.tun.Close) }
