//go:build linux

package tun

import "golang.org/x/sys/unix"

// TUNConfig describes the TUN device OpenTUN creates.
type TUNConfig struct {
	Name    string // interface name, e.g. "weave"; required, at most 15 bytes
	MTU     int    // 0 = leave the kernel default (1500)
	VnetHdr bool   // each Read/Write carries a VirtioNetHdrLen-byte virtio_net_hdr before the packet
	// Offload, with VnetHdr, lets the kernel hand over up to 64 KiB TCP
	// super-packets (TSO) and packets with partial checksums
	// (TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6), and accept them on Write. The
	// header's CsumStart and HdrLen then count from the start of the IP
	// packet, there being no link-layer header.
	Offload bool
}

// TUN is an open TUN (L3) device: each Read and Write moves one IP packet,
// without a packet-information prefix. The device exists only as long as
// the TUN is open.
//
// Read, Write, SetReadDeadline and Close may be called concurrently.
type TUN struct {
	device
	mtu int
}

// OpenTUN creates the TUN device cfg describes, in the caller's current
// network namespace, and brings it up. Giving it addresses and routes is the
// caller's business.
func OpenTUN(cfg TUNConfig) (*TUN, error) {
	d, err := open(openConfig{
		kind: "TUN", flag: unix.IFF_TUN,
		name: cfg.Name, mtu: cfg.MTU, vnetHdr: cfg.VnetHdr, offload: cfg.Offload,
	})
	if err != nil {
		return nil, err
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = 1500
	}
	return &TUN{device: d, mtu: mtu}, nil
}

// MTU is the MTU the device was opened with: the largest packet the kernel
// sends out of it, but for TSO super-packets.
func (t *TUN) MTU() int { return t.mtu }
