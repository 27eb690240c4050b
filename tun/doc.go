// Package tun owns the kernel side of the data path: it creates and drives
// TAP (L2, Ethernet frames) and TUN (L3, IP packets) devices through
// /dev/net/tun.
//
// It also holds the virtio_net_hdr codec. A device opened with VnetHdr
// carries that 10-byte header in front of every frame (or packet), which is
// what lets the kernel hand the router 64 KiB TSO super-frames with partial
// checksums instead of one MTU-sized frame per read: per-packet cost in
// userspace is dominated by syscalls, so fewer, larger reads are the main
// lever on throughput.
//
// The package does no logging and keeps no global state; every resource
// belongs to the *TAP or *TUN that opened it.
package tun
