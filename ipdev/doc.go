// Package ipdev presents IP devices — a kernel TUN or a userspace gVisor
// netstack — to the router as stations on the overlay's Ethernet.
//
// The router moves Ethernet frames; a TUN moves IP packets. A device of
// this package sits between the two and behaves like one host NIC plugged
// into the overlay: it has its own MAC address and one or more IPv4
// addresses, answers ARP requests for those addresses, resolves the MAC of
// every destination by broadcasting ARP requests over the overlay and
// caching the replies (a bounded table whose entries expire, packets held
// while a resolution is under way, as a kernel does), wraps outgoing
// packets in Ethernet frames and unwraps incoming frames addressed to it.
// Since it speaks ARP on the same Ethernet, an IP device reaches bridged
// containers of the same subnet, and they reach it; relaying through other
// peers and encryption are the router's, unchanged.
//
// Two flavours share that station (station.go):
//
//   - TUNDevice, on a kernel TUN opened by tun.OpenTUN with virtio headers
//     and offloads. The kernel hands over TCP super-packets of up to 64 KiB
//     and takes them back, so the router moves a host's TCP stream 64 KiB
//     per read and write, as it does a bridge's through a TAP. Frames are
//     made in place in the router's buffers; only the virtio header's
//     offsets change between packet and frame (offload.go). This is what
//     weaved's L3 mode uses.
//   - Device, on any golang.zx2c4.com/wireguard/tun Device, such as a
//     userspace netstack for programs without the privileges for a kernel
//     device. It is a router.PlainDevice: one MTU-sized packet per frame,
//     copied once each way.
//
// The two directions each live in one file: send.go (TUN → overlay, the
// router's Read) and receive.go (overlay → TUN, the router's Write).
// neigh.go is the neighbour (ARP) table, arp.go the ARP wire format.
//
// Supported: IPv4 unicast (with ARP), IPv4 broadcast (255.255.255.255 and
// the subnet broadcast of each address) and IPv4 multicast (mapped to
// 01:00:5e MACs). Not supported: IPv6 (packets are dropped and counted;
// there is no neighbour discovery), VLAN tags, and gateways: every
// destination the TUN hands over is resolved directly on the overlay, as a
// kernel does for a route through a device with no next hop.
package ipdev
