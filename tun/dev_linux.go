//go:build linux

package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// What TAP and TUN share: both are a file descriptor of /dev/net/tun bound to
// one interface, differing only in the flag that picks L2 or L3 and in what
// each read and write carries.

const cloneDevice = "/dev/net/tun"

// openConfig is TAPConfig or TUNConfig, with what tells the two apart.
type openConfig struct {
	kind    string // "TAP" or "TUN", for messages
	flag    uint16 // unix.IFF_TAP or unix.IFF_TUN
	name    string
	mtu     int
	bridge  string
	vnetHdr bool
	offload bool
}

// device is an open /dev/net/tun file bound to one interface. The interface
// exists only as long as the file is open: it is not persistent, so a
// crashed daemon leaves nothing behind.
//
// Read, Write, SetReadDeadline and Close may be called concurrently.
type device struct {
	f       *rawFile
	name    string
	vnetHdr bool
}

// open creates the interface c describes, in the caller's current network
// namespace, and brings it up (enslaved to c.bridge if set).
func open(c openConfig) (device, error) {
	if c.name == "" {
		return device{}, fmt.Errorf("tun: open %s: %sConfig.Name is required", c.kind, c.kind)
	}
	if len(c.name) >= unix.IFNAMSIZ {
		return device{}, fmt.Errorf("tun: open %s %q: name is longer than %d bytes", c.kind, c.name, unix.IFNAMSIZ-1)
	}
	if c.offload && !c.vnetHdr {
		// Without the header the kernel has nowhere to say a frame is a
		// TSO super-frame or carries a partial checksum.
		return device{}, fmt.Errorf("tun: open %s %q: Offload requires VnetHdr", c.kind, c.name)
	}
	if c.mtu < 0 {
		return device{}, fmt.Errorf("tun: open %s %q: negative MTU %d", c.kind, c.name, c.mtu)
	}

	// O_NONBLOCK makes os.NewFile register the fd with Go's poller, so a
	// blocked Read parks a goroutine rather than a thread, and Close (or a
	// read deadline) can wake it.
	fd, err := unix.Open(cloneDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return device{}, fmt.Errorf("tun: open %s %q: open %s (is the tun module loaded, and are we root or CAP_NET_ADMIN?): %w", c.kind, c.name, cloneDevice, err)
	}
	name, err := setupFD(fd, c)
	if err != nil {
		unix.Close(fd)
		return device{}, err
	}
	f, err := newRawFile(fd, cloneDevice)
	if err != nil {
		unix.Close(fd) // removes the device again
		return device{}, fmt.Errorf("tun: open %s %q: %w", c.kind, name, err)
	}
	d := device{f: f, name: name, vnetHdr: c.vnetHdr}
	if err := configureLink(name, c); err != nil {
		d.f.Close() // removes the device again
		return device{}, err
	}
	return d, nil
}

// setupFD binds the fresh /dev/net/tun fd to a new interface and returns
// the interface's name as the kernel chose it.
func setupFD(fd int, c openConfig) (string, error) {
	ifr, err := unix.NewIfreq(c.name)
	if err != nil {
		return "", fmt.Errorf("tun: open %s %q: %w", c.kind, c.name, err)
	}
	flags := c.flag | unix.IFF_NO_PI
	if c.vnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return "", fmt.Errorf("tun: open %s %q: device exists and is held by another process (stop it or pick another name): %w", c.kind, c.name, err)
		}
		if errors.Is(err, unix.EINVAL) {
			return "", fmt.Errorf("tun: open %s %q: TUNSETIFF: %w (does an interface of another kind have this name?)", c.kind, c.name, err)
		}
		return "", fmt.Errorf("tun: open %s %q: TUNSETIFF: %w", c.kind, c.name, err)
	}
	name := ifr.Name()
	if !c.vnetHdr {
		return name, nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VirtioNetHdrLen); err != nil {
		return "", fmt.Errorf("tun: open %s %q: TUNSETVNETHDRSZ: %w", c.kind, name, err)
	}
	// The kernel writes this legacy header in host order; VirtioNetHdr
	// speaks little-endian, so only a big-endian host needs to ask for it.
	if binary.NativeEndian.Uint16([]byte{0, 1}) == 1 {
		if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETLE, 1); err != nil {
			return "", fmt.Errorf("tun: open %s %q: TUNSETVNETLE: %w", c.kind, name, err)
		}
	}
	if c.offload {
		const offloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloads); err != nil {
			return "", fmt.Errorf("tun: open %s %q: TUNSETOFFLOAD: %w", c.kind, name, err)
		}
	}
	return name, nil
}

// configureLink sets the MTU and master of the new device and brings it up.
// It uses netlink in the calling thread's network namespace, the one the
// device was just created in.
func configureLink(name string, c openConfig) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tun: open %s %q: look up new link: %w", c.kind, name, err)
	}
	if c.mtu != 0 {
		if err := netlink.LinkSetMTU(link, c.mtu); err != nil {
			return fmt.Errorf("tun: open %s %q: set MTU %d: %w", c.kind, name, c.mtu, err)
		}
	}
	if c.bridge != "" {
		// A TAP in the bridge needs no IPv6 address of its own. With one,
		// the kernel sends router solicitations out of it for as long as
		// no router answers, 4 s apart at first and backing off to an
		// hour, and the router floods each to every peer: at 50 peers a
		// minute after they start, with the bridges' own, about five
		// frames a second to inject on every host.
		if err := netlink.LinkSetIP6AddrGenMode(link, nl.IN6_ADDR_GEN_MODE_NONE); err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
			return fmt.Errorf("tun: open %s %q: no IPv6 link-local address: %w", c.kind, name, err)
		}
		br, err := netlink.LinkByName(c.bridge)
		if err != nil {
			return fmt.Errorf("tun: open %s %q: look up bridge %q (create it first): %w", c.kind, name, c.bridge, err)
		}
		if err := netlink.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("tun: open %s %q: enslave to bridge %q: %w", c.kind, name, c.bridge, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("tun: open %s %q: set up: %w", c.kind, name, err)
	}
	return nil
}

// Name returns the interface name of the device.
func (d *device) Name() string { return d.name }

// VnetHdr reports whether every frame or packet read or written carries a
// virtio_net_hdr in front.
func (d *device) VnetHdr() bool { return d.vnetHdr }

// Read blocks until the kernel sends a frame (TAP) or packet (TUN) out of
// the device, copies it into b and returns its length. With VnetHdr, b
// starts with the VirtioNetHdrLen-byte header and the frame or packet
// follows it.
//
// The caller owns b; Read does not keep it past return. b must hold the
// largest frame or packet the device can emit: the MTU (plus 14 for a TAP's
// Ethernet header), plus VirtioNetHdrLen with VnetHdr, and 64 KiB plus the
// header with Offload; the kernel fails or truncates reads into a shorter
// buffer.
//
// After Close, Read returns an error matching both net.ErrClosed and
// os.ErrClosed; once a deadline set with SetReadDeadline has passed, one
// matching os.ErrDeadlineExceeded.
func (d *device) Read(b []byte) (int, error) {
	n, err := d.f.Read(b)
	if err != nil {
		return n, d.wrapErr("read", err)
	}
	return n, nil
}

// Write injects one frame (TAP) or packet (TUN) into the kernel as if it
// had arrived on the device. With VnetHdr, b must start with the
// VirtioNetHdrLen-byte header. The caller owns b; Write does not keep it
// past return.
//
// After Close, Write returns an error matching both net.ErrClosed and
// os.ErrClosed.
func (d *device) Write(b []byte) (int, error) {
	n, err := d.f.Write(b)
	if err != nil {
		return n, d.wrapErr("write", err)
	}
	return n, nil
}

// SetReadDeadline makes a blocked Read, and every later one, return an
// error matching os.ErrDeadlineExceeded once t has passed; the zero t
// removes the deadline. A deadline in the past is how another goroutine
// interrupts a Read without closing the device.
func (d *device) SetReadDeadline(t time.Time) error {
	if err := d.f.SetReadDeadline(t); err != nil {
		return d.wrapErr("set read deadline", err)
	}
	return nil
}

// Close closes the device, which makes the kernel delete the interface,
// and wakes any blocked Read.
func (d *device) Close() error {
	if err := d.f.Close(); err != nil {
		return d.wrapErr("close", err)
	}
	return nil
}

func (d *device) wrapErr(op string, err error) error {
	if errors.Is(err, os.ErrClosed) {
		return &closedError{op: op, name: d.name}
	}
	return fmt.Errorf("tun: %s %s: %w", op, d.name, err)
}

// closedError reports use of a device after Close. It matches both
// net.ErrClosed and os.ErrClosed so that callers written against either
// idiom can tell a clean shutdown from a failure.
type closedError struct{ op, name string }

func (e *closedError) Error() string { return "tun: " + e.op + " " + e.name + ": device closed" }

func (e *closedError) Is(target error) bool {
	return target == net.ErrClosed || target == os.ErrClosed
}
