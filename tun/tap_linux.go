//go:build linux

package tun

import "golang.org/x/sys/unix"

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

// TAP is an open TAP (L2) device: each Read and Write moves one Ethernet
// frame. The device exists only as long as the TAP is open.
//
// Read, Write, SetReadDeadline and Close may be called concurrently.
type TAP struct{ device }

// OpenTAP creates the TAP device cfg describes, in the caller's current
// network namespace, and brings it up (enslaved to cfg.Bridge if set).
func OpenTAP(cfg TAPConfig) (*TAP, error) {
	d, err := open(openConfig{
		kind: "TAP", flag: unix.IFF_TAP,
		name: cfg.Name, mtu: cfg.MTU, bridge: cfg.Bridge, vnetHdr: cfg.VnetHdr, offload: cfg.Offload,
	})
	if err != nil {
		return nil, err
	}
	return &TAP{d}, nil
}
