// Package fastdp owns the kernel side of weavenet's fast datapath: a VXLAN
// device on the weave bridge, its forwarding entries, and the probes that
// prove the VXLAN path between two hosts. The router (package router) stays
// the one place that decides where a frame goes; this package only carries
// out what it decides, through netlink.
//
// # The design: the router decides, the kernel carries known unicast
//
// The weave bridge has three kinds of ports: containers' veths, the
// router's TAP (the sleeve) and the VXLAN device. A frame must cross to a
// peer by one of the two paths, never both, or floods loop and frames
// arrive twice. So:
//
//   - Broadcast, multicast and unknown unicast always go to the TAP, and the
//     router floods them along the mesh's broadcast tree over the sleeve, as
//     without a fast datapath. The VXLAN port has learning, unicast flood,
//     multicast flood and broadcast flood off, so the bridge never sends it
//     a frame it has not been told to.
//   - Known unicast to a MAC behind a directly connected peer whose link is
//     on the fast datapath is offloaded: the router installs two entries
//     per MAC, a bridge entry (MAC → VXLAN port; static and sticky, so that
//     the bridge does not move it back to the TAP when a frame from that MAC
//     arrives through the sleeve) and a VXLAN entry (MAC → the peer's
//     underlay address). The VXLAN entry goes in first and out last, so the
//     bridge never hands the VXLAN device a frame it has no address for.
//   - The TAP and the VXLAN port are both isolated (a bridge port flag):
//     isolated ports forward only to non-isolated ones. A frame that arrived
//     by VXLAN reaches local containers (and the host) but never the TAP,
//     so the router never floods it again; a frame the router writes to the
//     TAP never leaves by VXLAN. Every frame crosses between two hosts once,
//     by one path.
//   - Relaying is the router's: a peer that is not directly connected is
//     reached over the sleeve through the next hop, as before.
//
// Removing a peer's entries sends its frames back through the TAP and the
// sleeve: that is the fallback, and it loses nothing, because the sleeve
// carried the same frames before the entries existed.
//
// # Probes
//
// Before a link uses the VXLAN path, and every second after, each router
// sends the peer VXLAN-encapsulated probe frames (SendProbes) from a UDP
// socket of its own to the peer's VXLAN port, one small and one of the
// full overlay MTU with the don't-fragment bit set. The peer's kernel
// decapsulates them like any VXLAN frame; their destination is a
// link-local group address (01:80:c2:00:00:0e) that a bridge never forwards
// but passes up on the port it arrived on, where this package's packet
// socket (bound to the VXLAN device and to the probes' EtherType only, so
// it costs nothing for other frames) keeps them until the router takes
// them (ReadProbes). The router acknowledges them in its own next probes.
// A blocked port or an underlay MTU too small for VXLAN frames thus shows
// up as missing acknowledgements, within seconds.
//
// A round's probes to every peer go in one system call, and the router
// reads them once a round, with neither socket in the Go runtime's poller:
// at 50 peers, a system call and a wake-up per probe were most of an idle
// daemon's work (probes_linux.go).
//
// # Security
//
// VXLAN carries no authentication: the kernel decapsulates any UDP datagram
// that reaches the VXLAN port and puts its frame on the bridge (the port
// being isolated, not into the mesh). So the device comes with an
// allow-list (AllowList): an nftables table of its own, made before the
// port opens, that drops datagrams to the port unless their source address
// is one of the peers the router lists (those whose links may use VXLAN),
// and counts them. That stops hosts that are not peers; it does not stop
// one that forges a peer's address on the underlay, and nothing is
// encrypted. That is why only links that need no encryption use VXLAN, and
// why weaved creates no VXLAN device at all when a password is set without
// trusted subnets. Without nftables the port stays open, with a warning.
package fastdp
