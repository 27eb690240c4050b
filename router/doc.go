// Package router is weavenet's data plane, and the way into weavenet for a
// Go program that embeds it: a Node joins the program to an overlay network
// of peers on other machines, encrypted with a shared password, with no
// daemon and no central store.
//
// # Start with a Node
//
// A Node is one peer: the data plane (a Router), the gossip mesh that finds
// the other peers and keeps connections to them, its TCP and UDP port,
// status and events. Fill in a NodeConfig (every field has a documented
// default), build the Node with NewNode, Start it, Close it when done:
//
//	node, err := router.NewNode(router.NodeConfig{
//		Device:   dev,                      // where this program's traffic enters the overlay
//		Password: []byte("s3cret"),         // encrypt, and admit only peers that know it
//		Peers:    []string{"192.168.1.10"}, // any member; the rest are discovered
//	})
//	if err != nil { ... }                   // errors name the NodeConfig field at fault
//	if err := node.Start(ctx); err != nil { ... }
//	defer node.Close()
//
// NewNode validates the whole config and binds the port (6783 unless told
// otherwise; AnyPort lets the system choose), so a bad CIDR, a port in use
// or a missing password file shows up there, as an error naming the field;
// the package never exits or panics on bad input. Nothing in the package is
// global: several Nodes live side by side in one process, each with its own
// port, logger and state. Connect and Forget change the peers at run time,
// Status reports what `weave report` shows, and Subscribe delivers events:
// peers coming and going, connections established, failed and lost.
//
// # Two flavours: a bridge, or a userspace stack
//
// The Device decides what the overlay carries for this program.
//
// Bridge (layer 2): a TAP port on a Linux bridge (tun.OpenTAP). Everything
// plugged into the bridge, containers' veths above all, is on one Ethernet
// with every other peer's bridge. This is what the weaved daemon does; it
// needs root (CAP_NET_ADMIN). See Example_bridge.
//
// Userspace (layer 3): package netstack gives a Go program a TCP/IP stack of
// its own with an overlay address; its Dial and Listen are the program's
// network on the overlay, as net.Conn and net.Listener. No kernel device,
// no root: two unprivileged programs on two machines talk through it. See
// netstack's Example and examples/embed. Underneath, package ipdev makes an
// IP device (this stack, or a kernel TUN) a station on the overlay's
// Ethernet, so the two flavours meet in one network.
//
// With no Device at all, a Node is a relay: it carries other peers' traffic
// and gossip but has none of its own.
//
// # Below the Node
//
// The Node is a convenience over two lower-level pieces that remain usable on
// their own (weaved wires them itself, with IPAM and DNS gossiping on the
// same mesh): a Router, built by New from a Config, is the mesh.Overlay of a
// gossip.Node; Router.Start then begins forwarding. See Example_router.
//
// A Router sits between a frame Device and one UDP socket. mesh hands it one
// connection per directly connected peer, and the Router turns each into a
// forwarder that proves the UDP path with heartbeats before mesh calls the
// connection established. The two directions each live in one file and read
// top to bottom: send.go (device → network) and receive.go (network → device
// or next hop). gso.go cuts TCP super-frames into segments, udp.go sends
// them as UDP GSO runs and reads GRO runs, coalesce.go glues segments back
// into super-frames for the device. wire.go is the datagram format,
// forwarder.go the per-connection life cycle, maccache.go the learned MAC →
// peer table, node*.go the Node. fastdp.go decides, per connection, when
// known unicast may bypass the router altogether through the kernel's VXLAN
// (the fast datapath, whose kernel side and design are package fastdp's),
// and keeps the kernel's forwarding entries in line with what the router
// has learned.
package router
