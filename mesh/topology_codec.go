package mesh

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
)

// The topology gossip payload: for each peer, a gob peer summary followed
// by a gob slice of its connections, in one gob stream. Field names are
// the wire format (gob matches fields by name). We decode by hand in the
// field order mesh's encoder declares, with every count checked against the
// bytes present, so a payload cannot make us allocate more than a small
// multiple of its own size.

type wirePeer struct {
	NameByte   []byte
	NickName   string
	UID        PeerUID
	Version    uint64
	ShortID    PeerShortID
	HasShortID bool
}

type wireConn struct {
	NameByte      []byte
	RemoteTCPAddr string
	Outbound      bool
	Established   bool
}

// peerRecord is one peer as the topology carries it.
type peerRecord struct {
	peer  wirePeer
	conns []wireConn
	// skipped: the decoder was told the record is no news and left its
	// connections undecoded (conns is nil).
	skipped bool
}

const (
	// maxTopologyPeers bounds the peers of one update; short IDs have 12
	// bits, so a mesh is smaller than this anyway.
	maxTopologyPeers = 8192
	// maxTopologyConns bounds the connections of one peer.
	maxTopologyConns = 4096
	// maxUpdateConns bounds the connections of all peers of one update.
	maxUpdateConns = 1 << 16
	maxAddrLen     = 256
)

func encodeTopology(recs []peerRecord) []byte {
	var buf bytes.Buffer
	enc := gob.NewEncoder(&buf)
	for i := range recs {
		conns := recs[i].conns
		if conns == nil {
			conns = []wireConn{}
		}
		// Encoding our own plain values into memory cannot fail.
		if err := enc.Encode(&recs[i].peer); err != nil {
			panic(err)
		}
		if err := enc.Encode(conns); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

var errTopology = errors.New("malformed topology update")

// decodeTopology decodes a payload. If news is not nil, it is asked about
// each peer's summary, and the connections of a peer it says are no news
// are stepped over undecoded: a peer joining a mesh of 50 is sent the whole
// topology by every peer it connects to, about 80 KB each time, and almost
// all of it is what the first one sent.
func decodeTopology(buf []byte, news func(*wirePeer) bool) ([]peerRecord, error) {
	var recs []peerRecord
	var pending *wirePeer
	total := 0
	err := gobValues(buf, func(body []byte) (bool, error) {
		if pending == nil {
			p, rest, err := decodeWirePeer(body)
			if err != nil {
				return false, err
			}
			if len(rest) != 0 {
				return false, errTopology
			}
			if len(recs) >= maxTopologyPeers {
				return false, fmt.Errorf("topology update names over %d peers", maxTopologyPeers)
			}
			pending = &p
			return true, nil
		}
		if news != nil && !news(pending) {
			recs = append(recs, peerRecord{peer: *pending, skipped: true})
			pending = nil
			return true, nil
		}
		conns, err := decodeWireConns(body)
		if err != nil {
			return false, err
		}
		if total += len(conns); total > maxUpdateConns {
			return false, fmt.Errorf("topology update names over %d connections", maxUpdateConns)
		}
		recs = append(recs, peerRecord{peer: *pending, conns: conns})
		pending = nil
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errTopology, err)
	}
	if pending != nil {
		return nil, fmt.Errorf("%w: a peer without its connections", errTopology)
	}
	return recs, nil
}

// structFields walks the fields of a gob struct: each is a field number
// delta and a value, and a zero delta ends the struct.
func structFields(b []byte, field func(n int, b []byte) ([]byte, error)) ([]byte, error) {
	n := -1
	for {
		d, rest, err := gobUint(b)
		if err != nil {
			return nil, err
		}
		b = rest
		if d == 0 {
			return b, nil
		}
		if d > 16 {
			return nil, errTopology
		}
		n += int(d)
		if b, err = field(n, b); err != nil {
			return nil, err
		}
	}
}

func decodeWirePeer(b []byte) (p wirePeer, rest []byte, err error) {
	rest, err = structFields(b, func(n int, b []byte) ([]byte, error) {
		var v uint64
		var s []byte
		var err error
		switch n {
		case 0:
			s, b, err = gobBytes(b)
			p.NameByte = append([]byte(nil), s...)
		case 1:
			s, b, err = gobBytes(b)
			if len(s) > maxNickName {
				return nil, errTopology
			}
			p.NickName = string(s)
		case 2:
			v, b, err = gobUint(b)
			p.UID = PeerUID(v)
		case 3:
			v, b, err = gobUint(b)
			p.Version = v
		case 4:
			v, b, err = gobUint(b)
			if v >= 1<<16 {
				return nil, errTopology
			}
			p.ShortID = PeerShortID(v)
		case 5:
			v, b, err = gobUint(b)
			p.HasShortID = v != 0
		default:
			return nil, errTopology
		}
		return b, err
	})
	if err == nil && len(p.NameByte) != NameSize {
		err = errTopology
	}
	return p, rest, err
}

func decodeWireConns(body []byte) ([]wireConn, error) {
	d, b, err := gobUint(body)
	if err != nil || d != 0 {
		return nil, errTopology
	}
	n, b, err := gobUint(b)
	if err != nil {
		return nil, err
	}
	// An element takes at least a byte, the zero that ends it.
	if n > maxTopologyConns || n > uint64(len(b)) {
		return nil, fmt.Errorf("%d connections", n)
	}
	conns := make([]wireConn, 0, n)
	for i := uint64(0); i < n; i++ {
		var c wireConn
		b, err = structFields(b, func(f int, b []byte) ([]byte, error) {
			var v uint64
			var s []byte
			var err error
			switch f {
			case 0:
				s, b, err = gobBytes(b)
				c.NameByte = append([]byte(nil), s...)
			case 1:
				s, b, err = gobBytes(b)
				if len(s) > maxAddrLen {
					return nil, errTopology
				}
				c.RemoteTCPAddr = string(s)
			case 2:
				v, b, err = gobUint(b)
				c.Outbound = v != 0
			case 3:
				v, b, err = gobUint(b)
				c.Established = v != 0
			default:
				return nil, errTopology
			}
			return b, err
		})
		if err != nil {
			return nil, err
		}
		if len(c.NameByte) != NameSize {
			return nil, errTopology
		}
		conns = append(conns, c)
	}
	if len(b) != 0 {
		return nil, errTopology
	}
	return conns, nil
}
