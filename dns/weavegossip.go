package dns

import (
	"net/netip"
	"time"

	"weavenet/mesh"
)

// Interoperating with Weave Net 2.x peers on the "nameserver" channel.
//
// The Server keeps two replicated states. Its own table (the "dns"
// channel, our codec) holds the entries of weavenet peers. Next to it,
// s.wtab holds what Weave Net's channel says about every other origin,
// entry by entry as Weave Net keys them (hostname case kept), merged by
// Weave Net's rules; we gossip it on as any Weave Net peer would, so Weave
// Net peers connected only through weavenet peers still hear each other.
//
// Which is authoritative:
//   - Our own entries: our table. Weave Net's channel carries them
//     translated (below); what comes back about them goes through the same
//     authority check as the "dns" channel (receive), so a stale or
//     unknown entry of ours is re-issued or retracted with a higher
//     version on both channels. s.wtab never holds our entries.
//   - Another weavenet peer's entries arrive on both channels, translated
//     by that peer with the same mapping, so both say the same. Where our
//     table has the entry (any state), it decides; s.wtab only fills in
//     what the "dns" channel has not brought yet. Nothing flaps: neither
//     side ever re-versions the other's entries.
//   - Weave Net peers' entries exist only in s.wtab; they never enter our
//     table or the "dns" channel, because our table's rules (Lamport
//     versions per origin, retired watermarks) do not hold for Weave Net's
//     per-entry counters, which start again at 0 after a restart.
//
// Mapping between the models (entries are keyed alike: origin, hostname,
// address, container):
//   - Version: ours = theirs + 1 (ours start at 1, theirs at 0), the same
//     both ways, so an entry survives a round trip unchanged.
//   - Tombstone: Weave Net sends the deletion time; ours is derived from
//     the tombstone's expiry minus Config.TombstoneLifetime. A tombstone of
//     ours is remembered for that lifetime, theirs for 30 minutes.
//   - Hostname: ours are lower case FQDNs; theirs are kept as registered
//     and lower-cased for answering (DNS ignores case). Two Weave Net
//     entries that differ only by case answer as one.
//   - Address: Weave Net carries IPv4 only; our IPv6 entries stay on the
//     "dns" channel.
//   - Container: the same string both ways.
//
// A peer mesh garbage-collects loses its Weave Net entries here as on Weave
// Net (PeerGone). Entries of peers mesh does not know yet are not merged,
// as Weave Net does not merge them, but they wait (see weaveWaitLife) for
// the peer's topology record.

// weaveGossiper is the mesh.Gossiper of the "nameserver" channel.
type weaveGossiper struct{ s *Server }

var _ mesh.Gossiper = weaveGossiper{}

// WeaveGossiper returns the gossiper for Weave Net's "nameserver" channel:
// meshRouter.NewGossip("nameserver", s.WeaveGossiper()), before the router
// starts, then SetWeaveGossip with the result.
func (s *Server) WeaveGossiper() mesh.Gossiper { return weaveGossiper{s} }

// SetWeaveGossip gives the server the "nameserver" channel, on which it
// then broadcasts every change of its own entries besides the "dns"
// channel. Entries added before are broadcast now.
func (s *Server) SetWeaveGossip(g mesh.Gossip) {
	now := s.now()
	s.mu.Lock()
	s.wgossip = g
	d := s.ownWeaveLocked(nil, now)
	s.mu.Unlock()
	if g != nil && len(d.entries) > 0 {
		g.GossipBroadcast(d)
	}
}

// weaveAnnounce broadcasts the own entries of delta on the "nameserver"
// channel. Called outside s.mu, before delta is handed to mesh.
func (s *Server) weaveAnnounce(delta *table) {
	now := s.now()
	s.mu.Lock()
	g := s.wgossip
	var d *weaveData
	if g != nil {
		d = s.ownWeaveLocked(delta, now)
	}
	s.mu.Unlock()
	if g != nil && len(d.entries) > 0 {
		g.GossipBroadcast(d)
	}
}

// ownWeaveLocked translates the own entries of from (our table when nil)
// for Weave Net, under s.mu.
func (s *Server) ownWeaveLocked(from *table, now time.Time) *weaveData {
	if from == nil {
		from = s.tab
	}
	d := &weaveData{timestamp: now.Unix(), entries: weaveTable{}}
	for k, r := range from.entries {
		if k.Origin != s.ourself {
			continue
		}
		if wk, wr, ok := s.toWeave(k, r); ok {
			d.entries[wk] = wr
		}
	}
	return d
}

// toWeave translates one of our entries; IPv6 ones have no Weave Net form.
func (s *Server) toWeave(k key, r record) (weaveKey, weaveRec, bool) {
	if !k.Addr.Is4() || r.Version == 0 || r.Version > maxWeaveVersion {
		return weaveKey{}, weaveRec{}, false
	}
	a := k.Addr.As4()
	wk := weaveKey{Origin: k.Origin, Hostname: k.Hostname, Container: k.Container,
		Addr: uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])}
	wr := weaveRec{Version: int64(r.Version - 1)}
	if r.Tombstone {
		wr.Tombstone = max(1, r.Expires.Add(-s.tombLife).Unix())
	}
	return wk, wr, true
}

// fromWeave translates a Weave Net entry into our model; the expiry of a
// tombstone is its deletion time plus lifetime.
func fromWeave(k weaveKey, r weaveRec, lifetime time.Duration) (key, record) {
	a := [4]byte{byte(k.Addr >> 24), byte(k.Addr >> 16), byte(k.Addr >> 8), byte(k.Addr)}
	ok := key{Origin: k.Origin, Hostname: lower(k.Hostname), Addr: netip.AddrFrom4(a), Container: k.Container}
	or := record{Version: uint64(r.Version) + 1, Tombstone: r.Tombstone != 0}
	if or.Tombstone {
		or.Expires = time.Unix(r.Tombstone, 0).Add(lifetime)
	}
	return ok, or
}

// unionLocked is what answers and Entries see: our table, plus every entry
// of s.wtab it does not have (see the rules above). It returns s.tab itself
// when there is nothing to add; the caller must not modify the result.
func (s *Server) unionLocked() *table {
	if len(s.wtab) == 0 {
		return s.tab
	}
	u := s.tab.clone()
	for wk, wr := range s.wtab {
		k, r := fromWeave(wk, wr, weaveTombstoneLifetime)
		if _, ok := s.tab.entries[k]; ok || r.Version <= s.tab.retired[k.Origin] {
			continue
		}
		// Entries differing only by hostname case meet here: keep the
		// newer, a live one at equal versions.
		if cur, ok := u.entries[k]; ok && (cur.Version > r.Version || cur.Version == r.Version && !cur.Tombstone) {
			continue
		}
		u.entries[k] = r
	}
	return u
}

// dropWeavePeerLocked forgets the Weave Net channel's entries of peer, as
// Weave Net does when mesh garbage-collects a peer; under s.mu.
func (s *Server) dropWeavePeerLocked(peer mesh.PeerName) bool {
	n := 0
	for k := range s.wtab {
		if k.Origin == peer {
			delete(s.wtab, k)
			n++
		}
	}
	for k := range s.wwait {
		if k.Origin == peer {
			delete(s.wwait, k)
		}
	}
	s.wwaitN.Store(int32(len(s.wwait)))
	return n > 0
}

// Entries from a peer mesh does not know yet wait up to weaveWaitLife, and
// at most weaveWaitMax of them, for its topology record, and are merged
// once it is known (PeersChanged). Weave Net drops them, and so did we:
// a Weave Net router sends a new neighbour its "nameserver" table and its
// topology in no set order, so a weavenet peer joining a Weave Net network
// lacked every name but its neighbour's until the next gossip round, 30 s
// later.
const (
	weaveWaitLife = 30 * time.Second
	weaveWaitMax  = 4096
)

type weaveWaiting struct {
	rec weaveRec
	at  time.Time
}

// waitLocked keeps entries of unknown peers; under s.mu. Past weaveWaitMax
// they are counted as skipped.
func (s *Server) waitLocked(entries weaveTable, now time.Time) {
	for k, w := range s.wwait {
		if now.Sub(w.at) >= weaveWaitLife {
			delete(s.wwait, k)
		}
	}
	for k, r := range entries {
		cur, ok := s.wwait[k]
		switch {
		case ok && !r.newer(cur.rec):
		case !ok && len(s.wwait) >= weaveWaitMax:
			s.stats.weaveSkipped.Add(1)
		default:
			s.wwait[k] = weaveWaiting{r, now}
		}
	}
	s.wwaitN.Store(int32(len(s.wwait)))
}

// PeersChanged tells the server that mesh's topology changed, so that the
// entries waiting for a peer now known are merged. It does not block: mesh
// calls it on its router's goroutine (Routes.OnChange).
func (s *Server) PeersChanged() {
	if s.wwaitN.Load() == 0 {
		return
	}
	s.wwaitAgain.Store(true)
	if s.wwaitBusy.CompareAndSwap(false, true) {
		go s.mergeWaitingLoop()
	}
}

func (s *Server) mergeWaitingLoop() {
	for {
		for s.wwaitAgain.Swap(false) {
			s.mergeWaiting()
		}
		s.wwaitBusy.Store(false)
		// A call between the last Swap and the Store found us busy.
		if !s.wwaitAgain.Load() || !s.wwaitBusy.CompareAndSwap(false, true) {
			return
		}
	}
}

// mergeWaiting merges the waiting entries whose peer mesh now knows, and
// gossips what they taught us: their broadcast was not relayed past us.
func (s *Server) mergeWaiting() {
	now := s.now()
	s.mu.Lock()
	origins := map[mesh.PeerName]bool{}
	for k := range s.wwait {
		origins[k.Origin] = false
	}
	s.mu.Unlock()
	// Outside s.mu: the callback asks mesh, which has its own locks.
	for o := range origins {
		origins[o] = s.knownPeer(o)
	}
	s.mu.Lock()
	ready := weaveTable{}
	for k, w := range s.wwait {
		if origins[k.Origin] {
			if now.Sub(w.at) < weaveWaitLife {
				ready[k] = w.rec
			}
			delete(s.wwait, k)
		}
	}
	s.wwaitN.Store(int32(len(s.wwait)))
	dl := s.mergeWeaveLocked(ready, now)
	g := s.wgossip
	s.mu.Unlock()
	if g != nil && len(dl) > 0 {
		g.GossipNeighbourSubset(&weaveData{timestamp: now.Unix(), entries: dl})
	}
}

// mergeWeaveLocked merges others' entries into the Weave Net table and
// returns what changed it; under s.mu.
func (s *Server) mergeWeaveLocked(entries weaveTable, now time.Time) weaveTable {
	s.wtab.gc(now)
	in := weaveTable{}
	for k, r := range entries {
		if k.Origin == s.ourself || uint64(r.Version)+1 <= s.tab.retired[k.Origin] {
			continue
		}
		in[k] = r
	}
	dl := s.wtab.merge(in)
	if len(dl) > 0 {
		s.changed()
	}
	return dl
}

// weaveReceive decodes and merges one message. It returns the message (for
// relaying a broadcast) and what was new to us, both nil if it was dropped.
func (s *Server) weaveReceive(msg []byte) (all, delta *weaveData) {
	now := s.now()
	d, skipped, err := decodeWeave(msg, now)
	if skipped > 0 {
		s.stats.weaveSkipped.Add(uint64(skipped))
	}
	if err != nil {
		s.stats.weaveMalformed.Add(1)
		s.log.Warn("dropping nameserver (Weave Net) gossip message", "err", err, "bytes", len(msg))
		return nil, nil
	}
	// Outside s.mu: the callback asks mesh, which has its own locks.
	var unknown weaveTable
	if s.knownPeer != nil {
		for k, r := range d.entries {
			if k.Origin != s.ourself && !s.knownPeer(k.Origin) {
				delete(d.entries, k)
				if unknown == nil {
					unknown = weaveTable{}
				}
				unknown[k] = r
			}
		}
	}
	// Our own entries go through the authority check of the "dns"
	// channel; forgotten tombstones teach nothing and are left out.
	own := newTable(now)
	for wk, wr := range d.entries {
		if wk.Origin != s.ourself {
			continue
		}
		k, r := fromWeave(wk, wr, s.tombLife)
		if r.Tombstone && !r.Expires.After(now) {
			continue
		}
		if cur, ok := own.entries[k]; !ok || r.newer(cur) {
			own.entries[k] = r
		}
	}
	if len(own.entries) > 0 {
		s.receive(own)
	}

	s.mu.Lock()
	if unknown != nil {
		s.waitLocked(unknown, now)
	}
	dl := s.mergeWeaveLocked(d.entries, now)
	s.mu.Unlock()
	return d, &weaveData{timestamp: now.Unix(), entries: dl}
}

// OnGossipUnicast implements mesh.Gossiper; Weave Net sends no unicasts on
// this channel and ignores them, so do we.
func (w weaveGossiper) OnGossipUnicast(mesh.PeerName, []byte) error { return nil }

// OnGossipBroadcast implements mesh.Gossiper: merge, and relay the message
// down the broadcast tree as received. A malformed message is dropped and
// counted, never an error (mesh would close the connection).
func (w weaveGossiper) OnGossipBroadcast(_ mesh.PeerName, msg []byte) (mesh.GossipData, error) {
	all, _ := w.s.weaveReceive(msg)
	if all == nil {
		return nil, nil
	}
	return all, nil
}

// OnGossip implements mesh.Gossiper: merge and return what was new.
func (w weaveGossiper) OnGossip(msg []byte) (mesh.GossipData, error) {
	_, delta := w.s.weaveReceive(msg)
	if delta == nil || len(delta.entries) == 0 {
		return nil, nil
	}
	return delta, nil
}

// Gossip implements mesh.Gossiper: the whole Weave Net view, our own
// entries translated and everyone else's as Weave Net keys them.
func (w weaveGossiper) Gossip() mesh.GossipData {
	s := w.s
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tab.gc(now)
	s.wtab.gc(now)
	d := s.ownWeaveLocked(nil, now)
	for k, r := range s.wtab {
		if uint64(r.Version)+1 <= s.tab.retired[k.Origin] {
			delete(s.wtab, k)
			continue
		}
		d.entries[k] = r
	}
	if len(d.entries) == 0 {
		return nil
	}
	return d
}
