// Package ipdev presents IP devices — a kernel TUN or a userspace gVisor
// netstack — to the router as stations on the overlay's Ethernet.
//
// The router moves Ethernet frames; a TUN device (golang.zx2c4.com/wireguard/tun,
// kernel or netstack) moves IP packets. A Device sits between the two and
// behaves like one host NIC plugged into the overlay: it has its own MAC
// address and one or more IPv4 addresses, answers ARP requests for those
// addresses, resolves the MAC of every destination by broadcasting ARP
// requests over the overlay and caching the replies (a bounded table whose
// entries expire, packets held while a resolution is under way, as a kernel
// does), wraps outgoing packets in Ethernet frames and unwraps incoming
// frames addressed to it. Since it speaks ARP on the same Ethernet, an IP
// device reaches bridged containers of the same subnet, and they reach it;
// relaying through other peers and encryption are the router's, unchanged.
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
