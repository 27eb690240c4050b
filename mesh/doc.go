// Package mesh is weavenet's implementation of the Weave mesh protocol,
// wire-compatible with github.com/weaveworks/mesh and so with Weave Net
// 2.x routers. It owns the peer's side of the mesh: the TCP handshake
// (protocol versions 1 and 2, NaCl key exchange and secretbox sessions
// with a password), the topology of peers and their connections, unicast
// and broadcast routes, gossip channels, and the connection maker.
//
// Its exported API has the shape of the parts of weaveworks/mesh that
// weavenet uses, with these differences: the caller owns the listener
// (Router.Serve) and Router.Close ends every goroutine; inbound handshakes
// are bounded in time, size and number (HandshakeStats counts what was
// refused); Config.SessionPassword chooses the session secret per
// connection; Peer values are snapshots that never change.
//
// Where things are:
//
//	handshake.go      header, version negotiation, key exchange, fields
//	transport.go      framing (v1 gob, v2 length prefix) and sealing
//	gobwire.go        bounded readers for gob from the network
//	serve.go          accepting, handshake admission, HandshakeStats
//	connection.go     one connection: run, reader, writer goroutines
//	peers.go          the topology and our connections in it
//	topology_codec.go the topology gossip payload
//	routes.go         unicast and broadcast routes
//	gossip.go         gossip channels, messages, the surrogate gossiper
//	connmaker.go      targets, dialling, backoff, discovery
//	router.go         the Router, its loop, topology gossip
//	status.go         Status snapshots
package mesh
