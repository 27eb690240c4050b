// Package router carries Ethernet frames between weavenet peers over UDP:
// the "sleeve" overlay.
//
// A Router sits between a frame Device (a TAP port on the host's bridge) and
// one UDP socket. It is also the mesh.Overlay of the control plane: mesh hands
// it one connection per directly connected peer, and the Router turns each
// into a forwarder that proves the UDP path with heartbeats before mesh calls
// the connection established.
//
// The two directions each live in one file and read top to bottom:
// send.go (device → network) and receive.go (network → device or next hop).
// wire.go is the datagram format, forwarder.go the per-connection life cycle,
// maccache.go the learned MAC → peer table.
package router
