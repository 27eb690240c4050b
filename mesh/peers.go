package mesh

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"
)

// Peers is the topology: every peer we know of and the connections each
// reports, ours included. One mutex guards it all; readers get Peer
// values, which are never modified once published, so they may be kept
// and read without locks (a new value replaces the old on each change).
type Peers struct {
	mu      sync.RWMutex
	ourName PeerName
	byName  map[PeerName]*peerState
	// conns are our own connections that completed their handshake and
	// were added, by remote name (the links of our own peerState mirror
	// them).
	conns map[PeerName]*LocalConnection
	// gen counts changes to the graph, so Routes knows when to recompute;
	// ownGen changes to our own links (Routes.recent).
	gen, ownGen uint64

	cbMu                 sync.Mutex
	onGC                 []func(*Peer)
	onInvalidateShortIDs []func()
}

// maxKnownPeers bounds the topology (short IDs have 12 bits: a real mesh
// is far smaller).
const maxKnownPeers = 16384

// Peer is one peer as the topology knew it at one moment. It is never
// modified: fetch again for news.
type Peer struct {
	Name       PeerName
	NickName   string
	UID        PeerUID
	ShortID    PeerShortID
	HasShortID bool
	Version    uint64
}

// String is the name and nickname, as in logs.
func (p *Peer) String() string { return fmt.Sprint(p.Name, "(", p.NickName, ")") }

// PeerDescription is a summary of a known peer.
type PeerDescription struct {
	Name           PeerName
	NickName       string
	UID            PeerUID
	Self           bool
	NumConnections int
}

// link is a connection a peer reports, to the peer it is keyed by.
type link struct {
	addr        string
	outbound    bool
	established bool
}

type peerState struct {
	p     *Peer
	links map[PeerName]link
	// refs counts our connections (in or past their handshake) to this
	// peer; a referenced peer is never collected.
	refs int
	// learnt is when its record last taught us something (see collect).
	learnt time.Time
}

// collectGrace is how long a peer whose record just arrived is kept while
// nothing reaches it but its own links reach us: a joining peer's record
// can come before any record of a link to it, and collected then it was
// known only as a placeholder until its record changed again.
const collectGrace = 5 * time.Second

func newPeers(ourself *Peer) *Peers {
	ps := &Peers{
		ourName: ourself.Name,
		byName:  map[PeerName]*peerState{},
		conns:   map[PeerName]*LocalConnection{},
	}
	ps.byName[ourself.Name] = &peerState{p: ourself, links: map[PeerName]link{}, refs: 1}
	return ps
}

// OnGC registers f to hear of each peer dropped from the topology because
// nothing reaches it any more. f runs on the router's goroutine.
func (ps *Peers) OnGC(f func(*Peer)) {
	ps.cbMu.Lock()
	defer ps.cbMu.Unlock()
	ps.onGC = append(ps.onGC, f)
}

// OnInvalidateShortIDs registers f to hear that short IDs may map to other
// peers than before.
func (ps *Peers) OnInvalidateShortIDs(f func()) {
	ps.cbMu.Lock()
	defer ps.cbMu.Unlock()
	ps.onInvalidateShortIDs = append(ps.onInvalidateShortIDs, f)
}

// Fetch returns the peer named name, or nil.
func (ps *Peers) Fetch(name PeerName) *Peer {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	if s := ps.byName[name]; s != nil {
		return s.p
	}
	return nil
}

// gossiped says whether a record of name has reached us (a peer only
// known from a handshake, or as the far end of a link, has version 0).
func (ps *Peers) gossiped(name PeerName) bool {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	s := ps.byName[name]
	return s != nil && s.p.Version > 0
}

// FetchByShortID returns the peer holding id (the lowest name among those
// claiming it), or nil.
func (ps *Peers) FetchByShortID(id PeerShortID) *Peer {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	var best *Peer
	for _, s := range ps.byName {
		if s.p.HasShortID && s.p.ShortID == id && (best == nil || s.p.Name < best.Name) {
			best = s.p
		}
	}
	return best
}

// Descriptions summarises every known peer.
func (ps *Peers) Descriptions() []PeerDescription {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	out := make([]PeerDescription, 0, len(ps.byName))
	for _, s := range ps.byName {
		out = append(out, PeerDescription{Name: s.p.Name, NickName: s.p.NickName, UID: s.p.UID,
			Self: s.p.Name == ps.ourName, NumConnections: len(s.links)})
	}
	return out
}

func (ps *Peers) names() map[PeerName]struct{} {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	out := make(map[PeerName]struct{}, len(ps.byName))
	for n := range ps.byName {
		out[n] = struct{}{}
	}
	return out
}

func (ps *Peers) ourself() *Peer {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	return ps.byName[ps.ourName].p
}

// bumpOurs replaces our Peer with one of the next version. Callers hold mu.
func (ps *Peers) bumpOursLocked(edit func(p *Peer)) {
	s := ps.byName[ps.ourName]
	np := *s.p
	np.Version++
	if edit != nil {
		edit(&np)
	}
	s.p = &np
	ps.gen++
}

// encode is the topology payload for the named peers that we know.
func (ps *Peers) encode(names map[PeerName]struct{}) []byte {
	// Under the lock only what the records are made of is gathered: a
	// Peer and a peer's links map are never written once published.
	type source struct {
		p     *Peer
		links map[PeerName]link
	}
	ps.mu.RLock()
	srcs := make([]source, 0, len(names))
	for n := range names {
		if s := ps.byName[n]; s != nil {
			srcs = append(srcs, source{s.p, s.links})
		}
	}
	ps.mu.RUnlock()
	recs := make([]peerRecord, 0, len(srcs))
	for _, s := range srcs {
		r := peerRecord{peer: wirePeer{NameByte: s.p.Name.bytes(), NickName: s.p.NickName, UID: s.p.UID,
			Version: s.p.Version, ShortID: s.p.ShortID, HasShortID: s.p.HasShortID}}
		for to, l := range s.links {
			r.conns = append(r.conns, wireConn{NameByte: to.bytes(), RemoteTCPAddr: l.addr, Outbound: l.outbound, Established: l.established})
		}
		// In name order, so that equal tables encode to equal bytes (see
		// topologyGossiper.OnGossip).
		slices.SortFunc(r.conns, func(a, b wireConn) int { return bytes.Compare(a.NameByte, b.NameByte) })
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b peerRecord) int { return bytes.Compare(a.peer.NameByte, b.peer.NameByte) })
	return encodeTopology(recs)
}

// applyUpdate merges a topology payload: peers new to us are added and
// known ones replaced by newer versions. It returns the names the update
// carried, the names it taught us something about, and whether our own
// peer changed (we saw an older incarnation of ourselves).
func (ps *Peers) applyUpdate(payload []byte) (received, learnt map[PeerName]struct{}, oursChanged bool, err error) {
	// Decoded under the lock that merges it, not under a read lock for
	// each record's isNews: while 47 dials registered a newcomer's peers,
	// the 50 read locks of one update each queued behind them all, and
	// one update took 0.7 s to apply.
	ps.mu.Lock()
	defer ps.mu.Unlock()
	recs, err := decodeTopology(payload, ps.isNewsLocked)
	if err != nil {
		return nil, nil, false, err
	}
	now := time.Now()
	// The table stays bounded whatever authenticated peers send: an
	// update that would grow it past maxKnownPeers is refused whole.
	adds := map[PeerName]bool{}
	for _, r := range recs {
		if n := PeerNameFromBin(r.peer.NameByte); ps.byName[n] == nil && !r.skipped {
			adds[n] = true
		}
		for _, c := range r.conns {
			if n := PeerNameFromBin(c.NameByte); ps.byName[n] == nil {
				adds[n] = true
			}
		}
	}
	if len(ps.byName)+len(adds) > maxKnownPeers {
		return nil, nil, false, fmt.Errorf("topology update would make %d peers, over %d", len(ps.byName)+len(adds), maxKnownPeers)
	}
	received = make(map[PeerName]struct{}, len(recs))
	learnt = map[PeerName]struct{}{}
	fresh := map[PeerName]bool{}
	for _, r := range recs {
		n := PeerNameFromBin(r.peer.NameByte)
		received[n] = struct{}{}
		if _, ok := ps.byName[n]; !ok && !r.skipped {
			ps.byName[n] = &peerState{p: &Peer{Name: n}, links: map[PeerName]link{}}
			fresh[n] = true
		}
	}
	// Names only mentioned as the far end of a connection get a
	// placeholder (UID 0, version 0), so routes can pass through them.
	for _, r := range recs {
		for _, c := range r.conns {
			n := PeerNameFromBin(c.NameByte)
			if _, ok := ps.byName[n]; !ok {
				ps.byName[n] = &peerState{p: &Peer{Name: n}, links: map[PeerName]link{}}
			}
		}
	}
	for _, r := range recs {
		n := PeerNameFromBin(r.peer.NameByte)
		if r.skipped && n != ps.ourName {
			// No news when decoded; versions only grow, so none now
			// (or the peer was collected since, and a record without
			// its connections must not bring it back).
			continue
		}
		s := ps.byName[n]
		w := r.peer
		if n == ps.ourName {
			cur := s.p
			if w.UID != cur.UID && w.Version >= cur.Version {
				// An old incarnation of us is still gossiped: outrun it.
				ps.bumpOursLocked(func(p *Peer) { p.Version = w.Version + 1 })
				oursChanged = true
			}
			continue
		}
		if !fresh[n] && older(&w, s.p) {
			continue
		}
		fresh[n] = false // a second record for n in one update must be newer
		s.p = &Peer{Name: n, NickName: w.NickName, UID: w.UID, ShortID: w.ShortID, HasShortID: w.HasShortID, Version: w.Version}
		s.learnt = now
		s.links = make(map[PeerName]link, len(r.conns))
		for _, c := range r.conns {
			s.links[PeerNameFromBin(c.NameByte)] = link{addr: c.RemoteTCPAddr, outbound: c.Outbound, established: c.Established}
		}
		learnt[n] = struct{}{}
	}
	if len(learnt) > 0 {
		ps.gen++
	}
	if ps.fixShortIDLocked() {
		oursChanged = true
	}
	return received, learnt, oursChanged, nil
}

// older says whether w, a peer's record, is no newer than cur, the one we
// hold.
func older(w *wirePeer, cur *Peer) bool {
	return w.Version < cur.Version ||
		w.Version == cur.Version && (w.UID < cur.UID ||
			w.UID == cur.UID && (!w.HasShortID || cur.HasShortID))
}

// isNewsLocked says whether a record with summary w may teach us something: a
// peer we do not know, or a newer record of one we do. Of our own record
// only the summary matters.
func (ps *Peers) isNewsLocked(w *wirePeer) bool {
	if len(w.NameByte) != NameSize {
		return true // let the decoder's checks refuse it
	}
	n := PeerNameFromBin(w.NameByte)
	if n == ps.ourName {
		return false
	}
	s := ps.byName[n]
	return s == nil || !older(w, s.p)
}

// fixShortIDLocked gives us another short ID when a peer with a lower name
// claims ours, as every mesh peer resolves collisions so.
func (ps *Peers) fixShortIDLocked() bool {
	us := ps.byName[ps.ourName].p
	used := map[PeerShortID]bool{}
	clash := false
	for _, s := range ps.byName {
		if s.p.Name == ps.ourName || !s.p.HasShortID {
			continue
		}
		used[s.p.ShortID] = true
		if s.p.ShortID == us.ShortID && s.p.Name < us.Name {
			clash = true
		}
	}
	if !clash || len(used) >= 1<<peerShortIDBits {
		return false
	}
	id := randomShortID()
	for used[id] {
		id = (id + 1) & (1<<peerShortIDBits - 1)
	}
	ps.bumpOursLocked(func(p *Peer) { p.ShortID = id })
	return true
}

// collect drops the peers that nothing reaches from us (over any
// connection, established or not) and that no connection of ours holds,
// except those whose record came within collectGrace and links to a peer
// we reach, other than us; it says whether it kept any such, to be looked
// at again.
func (ps *Peers) collect() (gone []*Peer, again bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	reached := map[PeerName]bool{ps.ourName: true}
	work := []PeerName{ps.ourName}
	for len(work) > 0 {
		n := work[len(work)-1]
		work = work[:len(work)-1]
		for to := range ps.byName[n].links {
			if !reached[to] && ps.byName[to] != nil {
				reached[to] = true
				work = append(work, to)
			}
		}
	}
	// Of a link to us we know better: our own links say whether it is
	// there (a peer that just left is not kept for it).
	reaches := func(s *peerState) bool {
		for to := range s.links {
			if reached[to] && to != ps.ourName {
				return true
			}
		}
		return false
	}
	now := time.Now()
	for n, s := range ps.byName {
		if reached[n] || s.refs > 0 {
			continue
		}
		if now.Sub(s.learnt) < collectGrace && reaches(s) {
			again = true
			continue
		}
		delete(ps.byName, n)
		gone = append(gone, s.p)
	}
	if len(gone) > 0 {
		ps.gen++
		sort.Slice(gone, func(i, j int) bool { return gone[i].Name < gone[j].Name })
	}
	return gone, again
}

func (ps *Peers) notifyGC(gone []*Peer) {
	if len(gone) == 0 {
		return
	}
	ps.cbMu.Lock()
	fs := append([]func(*Peer){}, ps.onGC...)
	inv := append([]func(){}, ps.onInvalidateShortIDs...)
	ps.cbMu.Unlock()
	for _, p := range gone {
		for _, f := range fs {
			f(p)
		}
	}
	for _, f := range inv {
		f()
	}
}

// A graph is the topology as routes see it: each peer's links, which may
// name peers outside the graph (traversals skip them). Its link maps are
// shared with Peers and never written after they are published.
type graph map[PeerName]map[PeerName]link

// snapshot shares every peer's links map rather than copying it: a remote
// peer's map is replaced whole by each update, and ours is copied on
// write (setOwnLinkLocked). A copy of the whole topology, 2,450 links at
// 50 peers, for every change while a mesh forms, was most of the work.
func (ps *Peers) snapshot() (g graph, gen, ownGen uint64) {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	g = make(graph, len(ps.byName))
	for n, s := range ps.byName {
		g[n] = s.links
	}
	return g, ps.gen, ps.ownGen
}

// setOwnLinkLocked sets (or, with !present, removes) our link to name in a
// new map, leaving the one snapshots may hold alone.
func (ps *Peers) setOwnLinkLocked(name PeerName, l link, present bool) {
	s := ps.byName[ps.ourName]
	m := maps.Clone(s.links)
	if m == nil {
		m = map[PeerName]link{}
	}
	if present {
		m[name] = l
	} else {
		delete(m, name)
	}
	s.links = m
	ps.ownGen++
}

func (ps *Peers) generation() (gen, ownGen uint64) {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	return ps.gen, ps.ownGen
}

// addRef finds the peer a handshake describes, adding it when it is new
// and acceptNew allows, and references it.
func (ps *Peers) addRef(id remoteIdentity, acceptNew bool) (*Peer, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if s := ps.byName[id.name]; s != nil {
		s.refs++
		return s.p, nil
	}
	if !acceptNew {
		return nil, fmt.Errorf("found unknown remote name: %s", id.name)
	}
	p := &Peer{Name: id.name, NickName: id.nickName, UID: id.uid, ShortID: id.shortID, HasShortID: id.hasShortID}
	ps.byName[id.name] = &peerState{p: p, links: map[PeerName]link{}, refs: 1}
	ps.gen++
	return p, nil
}

func (ps *Peers) unref(name PeerName) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if s := ps.byName[name]; s != nil && s.refs > 0 {
		s.refs--
	}
}

// addConn adds our connection c, settling a duplicate: of two connections
// to one peer, both ends keep the one with the lower uid. It returns the
// duplicate to shut down, if c replaced one.
func (ps *Peers) addConn(c *LocalConnection, limit int) (replaced *LocalConnection, err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	name := c.remote.Name
	if dup := ps.conns[name]; dup != nil && dup != c {
		dupErr := fmt.Errorf("multiple connections to %s added to %s", c.remote, ps.byName[ps.ourName].p)
		switch {
		case c.uid < dup.uid:
			ps.removeConnLocked(dup)
			replaced = dup
		case c.uid > dup.uid:
			return nil, dupErr
		default:
			ps.removeConnLocked(dup)
			return dup, dupErr
		}
	}
	if limit > 0 && len(ps.conns) >= limit {
		return replaced, fmt.Errorf("connection limit reached (%d)", limit)
	}
	ps.conns[name] = c
	ps.setOwnLinkLocked(name, link{addr: c.remoteAddr, outbound: c.outbound}, true)
	ps.bumpOursLocked(nil)
	return replaced, nil
}

func (ps *Peers) removeConnLocked(c *LocalConnection) bool {
	name := c.remote.Name
	if ps.conns[name] != c {
		return false
	}
	delete(ps.conns, name)
	ps.setOwnLinkLocked(name, link{}, false)
	ps.bumpOursLocked(nil)
	return true
}

func (ps *Peers) removeConn(c *LocalConnection) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.removeConnLocked(c)
}

func (ps *Peers) setEstablished(c *LocalConnection) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	name := c.remote.Name
	if ps.conns[name] != c {
		return false
	}
	l := ps.byName[ps.ourName].links[name]
	l.established = true
	ps.setOwnLinkLocked(name, l, true)
	ps.bumpOursLocked(nil)
	return true
}

func (ps *Peers) connTo(name PeerName) *LocalConnection {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	return ps.conns[name]
}

func (ps *Peers) connsTo(names []PeerName) []*LocalConnection {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	out := make([]*LocalConnection, 0, len(names))
	for _, n := range names {
		if c := ps.conns[n]; c != nil {
			out = append(out, c)
		}
	}
	return out
}

func (ps *Peers) numConns() int {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	return len(ps.conns)
}

func (ps *Peers) allConns() []*LocalConnection {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	out := make([]*LocalConnection, 0, len(ps.conns))
	for _, c := range ps.conns {
		out = append(out, c)
	}
	return out
}
