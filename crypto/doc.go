// Package crypto owns the keys and nonces of weavenet's data plane: it seals
// and opens sleeve datagrams with NaCl secretbox under the per-connection
// session key that the mesh handshake agreed, and rejects replays.
//
// The sealed format is Weave Net 2.x's:
//
//	datagram := sender-name(6) seq(8, big endian) secretbox(frames)
//
// The 24-byte nonce is all zeros except its first bit, which says which end
// of the connection sealed it (the side that dialled sets it), and its last
// eight bytes, which are seq. The top bit of seq marks datagrams sent with
// the IP don't-fragment bit (Weave Net keeps two counters, one per kind), so
// a key never sees the same nonce twice as long as each counter only grows.
// Opening checks seq against a sliding window per kind, after the
// authenticator, so that neither a replayed nor a forged datagram is ever
// delivered, and a forged one cannot move the window.
//
// No other package sees a key or builds a nonce.
package crypto
