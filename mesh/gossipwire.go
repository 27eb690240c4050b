package mesh

import (
	"math/bits"
)

// Writing gossip messages. Each is a tag byte, then gob values of basic
// types: the channel's name, one or two peer names and the payload, as a
// fresh encoding/gob Encoder writes them (TestGossipFrameMatchesGob). Such
// a stream has no type definitions; each value is a message of its own:
// its length, the type's id, a zero field delta, the value. Written here,
// the payload (a topology is 84 KB at 50 peers, gossiped to about 11
// neighbours every 30 s) is copied once into a frame of the exact size,
// instead of through gob's growing buffer and again at each layer: those
// copies were most of what an idle daemon allocated, and so of its garbage
// collections.

// Ids of the predeclared gob types gossip carries.
const (
	gobIDUint   = 3
	gobIDBytes  = 5
	gobIDString = 6
)

// gobUintLen is the length of v in gob's unsigned encoding.
func gobUintLen(v uint64) int {
	if v < 0x80 {
		return 1
	}
	return 1 + (bits.Len64(v)+7)/8
}

func appendGobUint(b []byte, v uint64) []byte {
	if v < 0x80 {
		return append(b, byte(v))
	}
	n := (bits.Len64(v) + 7) / 8
	b = append(b, byte(-n))
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// gobValueLen is the length of a top-level value whose own encoding is
// body bytes long: its message length, then the type id (one byte for the
// predeclared ids) and the zero field delta.
func gobValueLen(body int) int {
	inner := 2 + body
	return gobUintLen(uint64(inner)) + inner
}

func appendGobValueHeader(b []byte, id byte, body int) []byte {
	b = appendGobUint(b, uint64(2+body))
	return append(b, id<<1, 0) // the id is signed: zig-zag
}

func appendGobBytes[T string | []byte](b []byte, id byte, p T) []byte {
	b = appendGobValueHeader(b, id, gobUintLen(uint64(len(p)))+len(p))
	b = appendGobUint(b, uint64(len(p)))
	return append(b, p...)
}

func appendGobName(b []byte, n PeerName) []byte {
	b = appendGobValueHeader(b, gobIDUint, gobUintLen(uint64(n)))
	return appendGobUint(b, uint64(n))
}

// gossipFrame returns tag and then the gob values of channel, names and
// payload (gossipBody), in one allocation of the exact size.
func gossipFrame(tag byte, channel string, payload []byte, names ...PeerName) []byte {
	b := make([]byte, 1, 1+gossipBodyLen(channel, payload, names))
	b[0] = tag
	return appendGossipBody(b, channel, payload, names)
}

// gossipBody returns the gob values of channel, names and payload.
func gossipBody(channel string, payload []byte, names ...PeerName) []byte {
	return appendGossipBody(make([]byte, 0, gossipBodyLen(channel, payload, names)), channel, payload, names)
}

func gossipBodyLen(channel string, payload []byte, names []PeerName) int {
	n := gobValueLen(gobUintLen(uint64(len(channel)))+len(channel)) +
		gobValueLen(gobUintLen(uint64(len(payload)))+len(payload))
	for _, name := range names {
		n += gobValueLen(gobUintLen(uint64(name)))
	}
	return n
}

func appendGossipBody(b []byte, channel string, payload []byte, names []PeerName) []byte {
	b = appendGobBytes(b, gobIDString, channel)
	for _, n := range names {
		b = appendGobName(b, n)
	}
	return appendGobBytes(b, gobIDBytes, payload)
}
