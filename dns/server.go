package dns

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"weavenet/mesh"
)

// Defaults for Config.
const (
	DefaultDomain            = "weave.local."
	DefaultTTL               = 1
	DefaultResolvConf        = "/etc/resolv.conf"
	DefaultForwardTimeout    = 2 * time.Second
	DefaultTombstoneLifetime = 10 * time.Minute
)

// Config configures a Server. Only Ourself is required.
type Config struct {
	// Ourself is this peer's mesh name: the origin of the entries added
	// here. Required.
	Ourself mesh.PeerName
	// Domain is the zone answered locally; default DefaultDomain.
	Domain string
	// TTL of every answer record, in seconds; 0 means DefaultTTL.
	TTL uint32
	// Upstream lists the resolvers for names outside the domain; nil
	// means NewResolvConf(DefaultResolvConf). The server's own listening
	// address is always filtered out of the list.
	Upstream UpstreamSource
	// ForwardTimeout bounds the whole forwarding of one query over all
	// upstreams, after which the client gets SERVFAIL; 0 means
	// DefaultForwardTimeout.
	ForwardTimeout time.Duration
	// TombstoneLifetime is how long a deletion is remembered and gossiped
	// before garbage collection; 0 means DefaultTombstoneLifetime. At
	// most 24h.
	TombstoneLifetime time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for tombstone expiry (never for merging); nil
	// means time.Now. For tests.
	Now func() time.Time
	// KnownPeer reports whether mesh knows a peer; entries of unknown
	// origins on Weave Net's "nameserver" channel are not merged, as
	// Weave Net does not merge them, until PeersChanged finds their peer
	// known. nil means every peer is known.
	KnownPeer func(mesh.PeerName) bool
}

// Entry is one row of the name table as Entries reports it. Deleted rows
// (Tombstone) are listed until collected; `weave status dns` shows the
// others.
type Entry struct {
	Hostname  string        // canonical FQDN, e.g. "c1.weave.local."
	Addr      netip.Addr    // IPv4 or IPv6
	Container string        // the container (netns name or ID) it belongs to
	Origin    mesh.PeerName // the peer that registered it and owns it
	Version   uint64        // the origin's Lamport version of the last write
	Tombstone bool          // deleted; kept until garbage-collected
}

// Registration names one address of one container on this peer, for
// Reconcile.
type Registration struct {
	Container string
	Hostname  string // FQDN in the domain, or relative to it
	Addr      netip.Addr
}

// Status summarises the server for `weave status dns`.
type Status struct {
	Domain     string
	Upstream   []netip.AddrPort // after removing our own address
	TTL        uint32
	Entries    int            // live entries, all origins
	Tombstones int            // deletions still remembered
	Address    netip.AddrPort // where DNS is served; zero when not serving
	Counters   Counters
}

// Counters are cumulative event counts since New.
type Counters struct {
	Queries         uint64 // DNS messages received
	Local           uint64 // answered from the table (incl. NXDOMAIN)
	NXDomain        uint64 // NXDOMAIN answers for the domain
	Forwarded       uint64 // answered by an upstream
	ForwardFailures uint64 // SERVFAIL because no upstream answered
	Truncated       uint64 // responses truncated to fit (TC set)
	Malformed       uint64 // unparseable or invalid queries
	Dropped         uint64 // UDP queries dropped for lack of workers
	GossipMalformed uint64 // gossip messages that failed to decode
	Retractions     uint64 // own stale entries re-versioned after a restart
	// Weave Net's "nameserver" channel: messages dropped (undecodable,
	// oversized, clock too far off) and entries left out as invalid.
	NameserverMalformed uint64
	NameserverSkipped   uint64
}

type counters struct {
	queries, local, nxdomain, forwarded, forwardFailures, truncated,
	malformed, dropped, gossipMalformed, retractions atomic.Uint64
	weaveMalformed, weaveSkipped atomic.Uint64
}

func (c *counters) snapshot() Counters {
	return Counters{
		Queries: c.queries.Load(), Local: c.local.Load(), NXDomain: c.nxdomain.Load(),
		Forwarded: c.forwarded.Load(), ForwardFailures: c.forwardFailures.Load(),
		Truncated: c.truncated.Load(), Malformed: c.malformed.Load(), Dropped: c.dropped.Load(),
		GossipMalformed: c.gossipMalformed.Load(), Retractions: c.retractions.Load(),
		NameserverMalformed: c.weaveMalformed.Load(), NameserverSkipped: c.weaveSkipped.Load(),
	}
}

// Server is weaveDNS on one peer: the replicated name table (a
// mesh.Gossiper) and the DNS server that answers from it. All methods are
// safe for concurrent use.
type Server struct {
	ourself  mesh.PeerName
	domain   string
	ttl      uint32
	tombLife time.Duration
	upstream UpstreamSource
	log      *slog.Logger
	now      func() time.Time
	stats    counters

	mu     sync.Mutex
	tab    *table
	clock  uint64 // our Lamport counter: highest version of ours seen
	gossip mesh.Gossip
	// wtab and wgossip are Weave Net's "nameserver" channel, see
	// weavegossip.go.
	wtab      weaveTable
	wgossip   mesh.Gossip
	knownPeer func(mesh.PeerName) bool
	// wwait holds entries of peers mesh did not know (weaveWaitLife);
	// wwaitN is its size for PeersChanged, which must not take mu, and
	// wwaitBusy, wwaitAgain run one merge of them at a time.
	wwait                 map[weaveKey]weaveWaiting
	wwaitN                atomic.Int32
	wwaitBusy, wwaitAgain atomic.Bool

	idx   atomic.Pointer[index] // immutable; rebuilt under mu
	chain []handler             // zone, then forwarder

	srvMu   sync.Mutex
	srv     *serving
	srvDone bool
	addr    atomic.Pointer[netip.AddrPort]
}

// New validates cfg and returns a Server with an empty table, not yet
// serving DNS (see Start) and not yet gossiping (see SetGossip).
func New(cfg Config) (*Server, error) {
	if cfg.Ourself == mesh.UnknownPeerName {
		return nil, errors.New("dns: Config.Ourself is required: pass the mesh peer name")
	}
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	domain, err := canonicalDomain(cfg.Domain)
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = DefaultForwardTimeout
	}
	if cfg.TombstoneLifetime <= 0 {
		cfg.TombstoneLifetime = DefaultTombstoneLifetime
	}
	if cfg.TombstoneLifetime > maxTombstoneLifetime || cfg.TombstoneLifetime < time.Second {
		return nil, fmt.Errorf("dns: tombstone lifetime %v out of range 1s-%v", cfg.TombstoneLifetime, maxTombstoneLifetime)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Upstream == nil {
		cfg.Upstream = NewResolvConf(DefaultResolvConf, cfg.Logger)
	}
	s := &Server{
		ourself:   cfg.Ourself,
		domain:    domain,
		ttl:       cfg.TTL,
		tombLife:  cfg.TombstoneLifetime,
		upstream:  cfg.Upstream,
		log:       cfg.Logger.With("component", "dns"),
		now:       cfg.Now,
		tab:       newTable(cfg.Now()),
		wtab:      weaveTable{},
		wwait:     map[weaveKey]weaveWaiting{},
		knownPeer: cfg.KnownPeer,
	}
	s.idx.Store(buildIndex(s.tab, domain, 0))
	s.chain = []handler{
		&zone{domain: domain, ttl: cfg.TTL, idx: &s.idx, stats: &s.stats},
		&forwarder{upstreams: s.upstreams, timeout: cfg.ForwardTimeout, stats: &s.stats, log: s.log},
	}
	return s, nil
}

// Domain returns the canonical domain served, e.g. "weave.local.".
func (s *Server) Domain() string { return s.domain }

// SetGossip gives the server the mesh channel to broadcast its changes on,
// normally the value returned by meshRouter.NewGossip("dns", s). Entries
// added before are broadcast now (mesh also sends the complete table to
// every new connection by calling Gossip).
func (s *Server) SetGossip(g mesh.Gossip) {
	s.mu.Lock()
	s.gossip = g
	own := newTable(s.now())
	for k, r := range s.tab.entries {
		if k.Origin == s.ourself {
			own.entries[k] = r
		}
	}
	s.mu.Unlock()
	s.broadcast(g, own)
}

// broadcast sends delta on g, outside s.mu. delta is owned by mesh after.
func (s *Server) broadcast(g mesh.Gossip, delta *table) {
	if delta == nil || delta.empty() {
		return
	}
	s.weaveAnnounce(delta)
	if g != nil {
		g.GossipBroadcast(delta)
	}
}

// write records an own write of k under s.mu and returns the record.
func (s *Server) write(k key, tombstone bool, now time.Time) record {
	s.clock++
	r := record{Version: s.clock, Tombstone: tombstone}
	if tombstone {
		r.Expires = now.Add(s.tombLife)
	}
	s.tab.entries[k] = r
	return r
}

// changed must be called under s.mu after the live set changed.
func (s *Server) changed() {
	old := s.idx.Load()
	s.idx.Store(buildIndex(s.unionLocked(), s.domain, old.serial+1))
}

// AddEntry registers hostname → addr for container, owned by this peer, and
// broadcasts it. hostname is an FQDN in the domain ("c1.weave.local.") or
// relative to it ("c1", "c1.weave.local"). Adding an entry that exists is a
// no-op. Errors wrap ErrBadName or ErrNotInDomain, or describe a bad
// container or address.
func (s *Server) AddEntry(container, hostname string, addr netip.Addr) error {
	k, err := s.ownKey(container, hostname, addr)
	if err != nil {
		return err
	}
	now := s.now()
	s.mu.Lock()
	s.tab.gc(now)
	delta := newTable(now)
	if cur, ok := s.tab.entries[k]; !ok || cur.Tombstone {
		delta.entries[k] = s.write(k, false, now)
		s.changed()
	}
	g := s.gossip
	s.mu.Unlock()
	s.broadcast(g, delta)
	return nil
}

func (s *Server) ownKey(container, hostname string, addr netip.Addr) (key, error) {
	if err := checkContainer(container); err != nil {
		return key{}, err
	}
	h, err := qualify(hostname, s.domain)
	if err != nil {
		return key{}, fmt.Errorf("dns: hostname: %w", err)
	}
	if !strictlyInDomain(h, s.domain) {
		return key{}, fmt.Errorf("dns: %w: %q is not below %q; pass a name under it or a relative name", ErrNotInDomain, h, s.domain)
	}
	a, err := checkAddr(addr)
	if err != nil {
		return key{}, err
	}
	return key{Origin: s.ourself, Hostname: h, Addr: a, Container: container}, nil
}

// RemoveEntries deletes this peer's live entries that match container,
// hostname and addr, where "" and the zero Addr match anything (but at
// least one of container and hostname must be given), and broadcasts the
// tombstones. It returns how many entries it deleted. Entries owned by
// other peers are never touched.
func (s *Server) RemoveEntries(container, hostname string, addr netip.Addr) (int, error) {
	if container == "" && hostname == "" {
		return 0, errors.New("dns: RemoveEntries needs a container or a hostname")
	}
	var h string
	if hostname != "" {
		var err error
		if h, err = qualify(hostname, s.domain); err != nil {
			return 0, fmt.Errorf("dns: hostname: %w", err)
		}
	}
	addr = addr.Unmap()
	now := s.now()
	s.mu.Lock()
	s.tab.gc(now)
	delta := newTable(now)
	for k, r := range s.tab.entries {
		if k.Origin != s.ourself || r.Tombstone ||
			(container != "" && k.Container != container) ||
			(h != "" && k.Hostname != h) ||
			(addr.IsValid() && k.Addr != addr) {
			continue
		}
		delta.entries[k] = s.write(k, true, now)
	}
	if len(delta.entries) > 0 {
		s.changed()
	}
	g := s.gossip
	s.mu.Unlock()
	s.broadcast(g, delta)
	return len(delta.entries), nil
}

// Reconcile makes this peer's live entries exactly current: entries not in
// it are deleted, missing ones added, and the changes broadcast. It
// validates everything first and changes nothing on error. A daemon calls
// it on start with the containers it finds running (see the package doc).
func (s *Server) Reconcile(current []Registration) error {
	want := make(map[key]bool, len(current))
	for _, r := range current {
		k, err := s.ownKey(r.Container, r.Hostname, r.Addr)
		if err != nil {
			return err
		}
		want[k] = true
	}
	now := s.now()
	s.mu.Lock()
	s.tab.gc(now)
	delta := newTable(now)
	for k, r := range s.tab.entries {
		if k.Origin == s.ourself && !r.Tombstone && !want[k] {
			delta.entries[k] = s.write(k, true, now)
		}
	}
	for k := range want {
		if cur, ok := s.tab.entries[k]; !ok || cur.Tombstone {
			delta.entries[k] = s.write(k, false, now)
		}
	}
	if len(delta.entries) > 0 {
		s.changed()
	}
	g := s.gossip
	s.mu.Unlock()
	s.broadcast(g, delta)
	return nil
}

// PeerGone forgets every entry of peer, as `weave rmpeer` needs: it raises
// peer's retired watermark to the highest version of peer known here and
// broadcasts it, so every peer drops those entries. If peer is in fact
// alive it re-announces its entries with higher versions on hearing this.
// PeerGone of ourself is ignored.
func (s *Server) PeerGone(peer mesh.PeerName) {
	if peer == s.ourself {
		s.log.Warn("ignoring PeerGone for ourselves", "peer", peer)
		return
	}
	now := s.now()
	s.mu.Lock()
	delta := newTable(now)
	if v := s.tab.maxVersion(peer); v > s.tab.retired[peer] {
		delta.retired[peer] = v
		s.tab.mergeDelta(delta)
		s.changed()
	}
	if s.dropWeavePeerLocked(peer) {
		s.changed()
	}
	g := s.gossip
	s.mu.Unlock()
	s.broadcast(g, delta)
}

// Lookup returns the live addresses of name (relative names are in the
// domain; case does not matter), sorted. It returns nil for unknown names.
func (s *Server) Lookup(name string) []netip.Addr {
	h, err := qualify(name, s.domain)
	if err != nil {
		return nil
	}
	return slices.Clone(s.idx.Load().byName[h])
}

// Entries returns the whole table, tombstones included, sorted by hostname,
// address, origin and container. The slice is the caller's.
func (s *Server) Entries() []Entry {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tab.gc(now)
	s.wtab.gc(now)
	u := s.unionLocked()
	out := make([]Entry, 0, len(u.entries))
	for _, k := range u.sortedKeys() {
		r := u.entries[k]
		out = append(out, Entry{Hostname: k.Hostname, Addr: k.Addr, Container: k.Container,
			Origin: k.Origin, Version: r.Version, Tombstone: r.Tombstone})
	}
	return out
}

// Status reports configuration, table size and counters.
func (s *Server) Status() Status {
	now := s.now()
	s.mu.Lock()
	s.tab.gc(now)
	s.wtab.gc(now)
	tomb := 0
	for _, r := range s.unionLocked().entries {
		if r.Tombstone {
			tomb++
		}
	}
	s.mu.Unlock()
	return Status{
		Domain:     s.domain,
		Upstream:   s.upstreams(),
		TTL:        s.ttl,
		Entries:    s.idx.Load().live,
		Tombstones: tomb,
		Address:    s.Addr(),
		Counters:   s.stats.snapshot(),
	}
}

// Counters returns the event counters.
func (s *Server) Counters() Counters { return s.stats.snapshot() }
