//go:build linux

package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const cloneDevice = "/dev/net/tun"

// TAPConfig describes the TAP device OpenTAP creates.
type TAPConfig struct {
	Name    string // interface name, e.g. "vethwe-tap"; required, at most 15 bytes
	MTU     int    // 0 = leave kernel default
	Bridge  string // if non-empty, enslave to this bridge
	VnetHdr bool   // each Read/Write carries a VirtioNetHdrLen-byte virtio_net_hdr before the frame
	// Offload, with VnetHdr, lets the kernel hand over up to 64 KiB TSO
	// super-frames with partial checksums (TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6),
	// and accept them on Write.
	Offload bool
}

// TAP is an open TAP device. The device exists only as long as the TAP is
// open: it is not persistent, so a crashed daemon leaves nothing behind.
//
// Read and Write may be called concurrently with each other and with Close.
type TAP struct {
	f       *os.File
	name    string
	vnetHdr bool
}

// OpenTAP creates the TAP device cfg describes, in the caller's current
// network namespace, and brings it up (enslaved to cfg.Bridge if set).
func OpenTAP(cfg TAPConfig) (*TAP, error) {
	if cfg.Name == "" {
		return nil, errors.New("tun: open TAP: TAPConfig.Name is required")
	}
	if len(cfg.Name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tun: open TAP %q: name is longer than %d bytes", cfg.Name, unix.IFNAMSIZ-1)
	}
	if cfg.Offload && !cfg.VnetHdr {
		// Without the header the kernel has nowhere to say a frame is a
		// TSO super-frame or carries a partial checksum.
		return nil, fmt.Errorf("tun: open TAP %q: Offload requires VnetHdr", cfg.Name)
	}
	if cfg.MTU < 0 {
		return nil, fmt.Errorf("tun: open TAP %q: negative MTU %d", cfg.Name, cfg.MTU)
	}

	// O_NONBLOCK makes os.NewFile register the fd with Go's poller, so a
	// blocked Read parks a goroutine rather than a thread, and Close can
	// wake it.
	fd, err := unix.Open(cloneDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("tun: open TAP %q: open %s (is the tun module loaded, and are we root or CAP_NET_ADMIN?): %w", cfg.Name, cloneDevice, err)
	}
	name, err := setupFD(fd, cfg)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	t := &TAP{f: os.NewFile(uintptr(fd), cloneDevice), name: name, vnetHdr: cfg.VnetHdr}
	if err := configureLink(name, cfg); err != nil {
		t.f.Close() // removes the device again
		return nil, err
	}
	return t, nil
}

// setupFD turns the fresh /dev/net/tun fd into a TAP and returns the
// device's name as the kernel chose it.
func setupFD(fd int, cfg TAPConfig) (string, error) {
	ifr, err := unix.NewIfreq(cfg.Name)
	if err != nil {
		return "", fmt.Errorf("tun: open TAP %q: %w", cfg.Name, err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if cfg.VnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return "", fmt.Errorf("tun: open TAP %q: device exists and is held by another process (stop it or pick another name): %w", cfg.Name, err)
		}
		return "", fmt.Errorf("tun: open TAP %q: TUNSETIFF: %w", cfg.Name, err)
	}
	name := ifr.Name()
	if !cfg.VnetHdr {
		return name, nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VirtioNetHdrLen); err != nil {
		return "", fmt.Errorf("tun: open TAP %q: TUNSETVNETHDRSZ: %w", name, err)
	}
	// The kernel writes this legacy header in host order; VirtioNetHdr
	// speaks little-endian, so only a big-endian host needs to ask for it.
	if binary.NativeEndian.Uint16([]byte{0, 1}) == 1 {
		if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETLE, 1); err != nil {
			return "", fmt.Errorf("tun: open TAP %q: TUNSETVNETLE: %w", name, err)
		}
	}
	if cfg.Offload {
		const offloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloads); err != nil {
			return "", fmt.Errorf("tun: open TAP %q: TUNSETOFFLOAD: %w", name, err)
		}
	}
	return name, nil
}

// configureLink sets the MTU and master of the new device and brings it up.
// It uses netlink in the calling thread's network namespace, the one the
// device was just created in.
func configureLink(name string, cfg TAPConfig) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tun: open TAP %q: look up new link: %w", name, err)
	}
	if cfg.MTU != 0 {
		if err := netlink.LinkSetMTU(link, cfg.MTU); err != nil {
			return fmt.Errorf("tun: open TAP %q: set MTU %d: %w", name, cfg.MTU, err)
		}
	}
	if cfg.Bridge != "" {
		br, err := netlink.LinkByName(cfg.Bridge)
		if err != nil {
			return fmt.Errorf("tun: open TAP %q: look up bridge %q (create it first): %w", name, cfg.Bridge, err)
		}
		if err := netlink.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("tun: open TAP %q: enslave to bridge %q: %w", name, cfg.Bridge, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("tun: open TAP %q: set up: %w", name, err)
	}
	return nil
}

// Name returns the interface name of the device.
func (t *TAP) Name() string { return t.name }

// VnetHdr reports whether every frame read or written carries a
// virtio_net_hdr in front.
func (t *TAP) VnetHdr() bool { return t.vnetHdr }

// Read blocks until the kernel sends a frame out of the device, copies it
// into b and returns its length. With VnetHdr, b starts with the
// VirtioNetHdrLen-byte header and the frame follows it.
//
// The caller owns b; Read does not keep it past return. b must hold the
// largest frame the device can emit: MTU+14 bytes, plus VirtioNetHdrLen
// with VnetHdr, and 64 KiB plus the header with Offload; the kernel fails or
// truncates reads into a shorter buffer.
//
// After Close, Read returns an error matching both net.ErrClosed and
// os.ErrClosed.
func (t *TAP) Read(b []byte) (int, error) {
	n, err := t.f.Read(b)
	if err != nil {
		return n, t.wrapErr("read", err)
	}
	return n, nil
}

// Write injects one frame into the kernel as if it had arrived on the
// device. With VnetHdr, b must start with the VirtioNetHdrLen-byte header.
// The caller owns b; Write does not keep it past return.
//
// After Close, Write returns an error matching both net.ErrClosed and
// os.ErrClosed.
func (t *TAP) Write(b []byte) (int, error) {
	n, err := t.f.Write(b)
	if err != nil {
		return n, t.wrapErr("write", err)
	}
	return n, nil
}

// Close closes the device, which makes the kernel delete the interface,
// and wakes any blocked Read.
func (t *TAP) Close() error {
	if err := t.f.Close(); err != nil {
		return t.wrapErr("close", err)
	}
	return nil
}

func (t *TAP) wrapErr(op string, err error) error {
	if errors.Is(err, os.ErrClosed) {
		return &closedError{op: op, name: t.name}
	}
	return fmt.Errorf("tun: %s %s: %w", op, t.name, err)
}

// closedError reports use of a TAP after Close. It matches both net.ErrClosed
// and os.ErrClosed so that callers written against either idiom can tell a
// clean shutdown from a failure.
type closedError struct{ op, name string }

func (e *closedError) Error() string { return "tun: " + e.op + " " + e.name + ": device closed" }

func (e *closedError) Is(target error) bool {
	return target == net.ErrClosed || target == os.ErrClosed
}
