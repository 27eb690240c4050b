package dns

import (
	"errors"

	"weavenet/mesh"
)

// Receiving gossip.
//
//  1. Decode the message into a table (a malformed one is counted, logged
//     and dropped; an error would make mesh close the whole connection,
//     which also carries topology and IPAM).
//  2. Our own watermark: if someone retired us (PeerGone while we were
//     away), move our clock past it and re-issue our live entries above it.
//  3. Our own entries: we are the authority for them. A version of ours we
//     do not hold as it is said is stale (typically from before a restart
//     of this process): move our clock past it and re-issue our truth with
//     a higher version, a tombstone if we no longer have the entry.
//  4. Everyone else's entries and watermarks: join.
//  5. Broadcast the re-issued records; return what was new for mesh to
//     relay.

var _ mesh.Gossiper = (*Server)(nil)

// OnGossipUnicast implements mesh.Gossiper. weaveDNS sends no unicasts; one
// that arrives is merged like gossip.
func (s *Server) OnGossipUnicast(_ mesh.PeerName, msg []byte) error {
	if t := s.decode(msg); t != nil {
		s.receive(t)
	}
	return nil
}

// OnGossipBroadcast implements mesh.Gossiper: it merges update and returns
// it whole for mesh to relay further down the broadcast tree. msg is only
// read during the call.
func (s *Server) OnGossipBroadcast(_ mesh.PeerName, update []byte) (mesh.GossipData, error) {
	t := s.decode(update)
	if t == nil {
		return nil, nil
	}
	s.receive(t)
	return t, nil
}

// OnGossip implements mesh.Gossiper: it merges msg and returns what was new
// to us, or nil.
func (s *Server) OnGossip(msg []byte) (mesh.GossipData, error) {
	t := s.decode(msg)
	if t == nil {
		return nil, nil
	}
	if delta := s.receive(t); !delta.empty() {
		return delta, nil
	}
	return nil, nil
}

// Gossip implements mesh.Gossiper: a copy of the whole table, or nil when
// there is nothing to say. It also garbage-collects expired tombstones.
func (s *Server) Gossip() mesh.GossipData {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tab.gc(now)
	if s.tab.empty() {
		return nil
	}
	c := s.tab.clone()
	c.now = now
	return c
}

func (s *Server) decode(msg []byte) *table {
	t, err := decodeTable(msg, s.now())
	if err != nil {
		if !errors.Is(err, errUnknownFormat) {
			s.stats.gossipMalformed.Add(1)
		}
		s.log.Warn("dropping dns gossip message", "err", err, "bytes", len(msg))
		return nil
	}
	return t
}

// receive merges t (which it does not modify or keep) and returns the
// delta: what changed our table, including re-issued own records.
func (s *Server) receive(t *table) *table {
	now := s.now()
	s.mu.Lock()
	s.tab.now = now
	s.tab.gc(now)
	corr := newTable(now)
	delta := newTable(now)
	self := s.ourself

	// Our clock first moves past every version of ours in the message, so
	// that every record re-issued below outranks all of them.
	s.bump(t.retired[self])
	for k, r := range t.entries {
		if k.Origin == self {
			s.bump(r.Version)
		}
	}

	// 2. Retired while we were away or cut off.
	if rv := t.retired[self]; rv > s.tab.retired[self] {
		s.tab.retired[self] = rv
		delta.retired[self] = rv
		for k, r := range s.tab.entries {
			if k.Origin != self || r.Version > rv {
				continue
			}
			if r.Tombstone {
				delete(s.tab.entries, k) // subsumed by the watermark
				continue
			}
			corr.entries[k] = s.write(k, false, now)
		}
	}

	// 3. Our own entries as others remember them.
	for k, r := range t.entries {
		if k.Origin != self {
			continue
		}
		if r.Version <= s.tab.retired[self] {
			continue
		}
		cur, ok := s.tab.entries[k]
		switch {
		case !ok && r.Tombstone:
			s.tab.entries[k] = r // agrees with us: gone
		case !ok:
			corr.entries[k] = s.write(k, true, now) // stale: retract
		case r.Version < cur.Version || r.same(cur):
		case r.Tombstone == cur.Tombstone:
			cur.Version = r.Version // same truth, later number: adopt
			s.tab.entries[k] = cur
		default:
			corr.entries[k] = s.write(k, cur.Tombstone, now) // we know better
		}
	}

	// 4. Everyone else.
	d := s.tab.mergeDeltaExcept(t, self)
	for k, r := range d.entries {
		delta.entries[k] = r
	}
	for p, v := range d.retired {
		delta.retired[p] = v
	}
	for k, r := range corr.entries {
		delta.entries[k] = r
	}
	if !delta.empty() {
		s.changed()
	}
	s.stats.retractions.Add(uint64(len(corr.entries)))
	g := s.gossip
	s.mu.Unlock()

	if !corr.empty() {
		s.log.Info("re-announcing own entries that peers remembered differently", "count", len(corr.entries))
		s.broadcast(g, corr)
	}
	return delta
}

// bump moves our Lamport clock up to v, under s.mu.
func (s *Server) bump(v uint64) {
	if v > s.clock {
		s.clock = v
	}
}
