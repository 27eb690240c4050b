package ipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"weavenet/mesh"
)

// DefaultRange is the --ipalloc-range default.
var DefaultRange = netip.MustParsePrefix("10.32.0.0/12")

// PeerSource tells the allocator who is in the mesh. The daemon adapts its
// mesh.Router to it. Both methods must be cheap and must not call back into
// the Allocator.
type PeerSource interface {
	// Reachable returns the peers we currently have a route to. Ourself
	// may be included or not.
	Reachable() []mesh.PeerName
	// NickName returns a known peer's nickname, or "".
	NickName(mesh.PeerName) string
}

// Config configures an Allocator.
type Config struct {
	Ourself  mesh.PeerName
	NickName string
	// Range is --ipalloc-range; zero means DefaultRange.
	Range netip.Prefix
	// DefaultSubnet is --ipalloc-default-subnet, inside Range; zero means Range.
	DefaultSubnet netip.Prefix
	// Init is the parsed --ipalloc-init.
	Init Init
	// InitialPeers is the number of peers this daemon was started with,
	// counting itself (targets given + 1). It is N for a plain
	// "consensus"; zero counts as 1.
	InitialPeers int
	// Store persists ring and allocations; nil keeps them in memory only.
	// The Allocator does not close it.
	Store *Store
	// Peers is required: who is reachable, and nicknames for Status.
	Peers  PeerSource
	Logger *slog.Logger

	clock        func() time.Time // tests: fake time
	tickInterval time.Duration    // 0: default; < 0: no ticker (tests call tick)
}

const (
	defaultTick  = time.Second
	retryAfter   = 5 * time.Second // re-propose, re-ask a silent peer
	quorumGrace  = 2 * time.Second // a proposer waits this long for all N before settling for a quorum
	handoverWait = 2 * time.Second // resend a handover not acknowledged
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrNoFreeAddresses: every address of the subnet is in use on the
	// reachable peers. Release some, or rmpeer dead peers that own space.
	ErrNoFreeAddresses = errors.New("no free address")
	// ErrAddressInUse: a claimed address is held by another container.
	ErrAddressInUse = errors.New("address already in use")
	// ErrOutsideRange: a subnet to allocate from is not inside the Range.
	ErrOutsideRange = errors.New("subnet outside the allocation range")
	// ErrOwnerUnreachable: a claimed address belongs to a peer we can't
	// reach. Wait for it, or rmpeer it if it is gone for good.
	ErrOwnerUnreachable = errors.New("address owned by an unreachable peer")
	// ErrPeerReachable: RemovePeer of a peer that is alive.
	ErrPeerReachable = errors.New("peer is reachable")
	// ErrNotFound: Release of an address the owner doesn't hold.
	ErrNotFound = errors.New("no such allocation")
)

// Allocator hands out addresses from the ring. It is safe for concurrent
// use. See the package documentation for its life cycle.
type Allocator struct {
	cfg    Config
	log    *slog.Logger
	geo    geometry
	quorum int
	now    func() time.Time

	mu        sync.Mutex
	gossip    mesh.Gossip
	ring      *ring
	paxos     *paxos // nil unless Init.Mode is Consensus
	space     *space
	changed   chan struct{} // closed and replaced whenever waiters should look again
	closed    bool
	wantRing  bool // a local request waits for the ring
	proposed  time.Time
	moved     time.Time // gossip last changed the consensus state: a proposal progresses
	askedRing time.Time
	spaceReqs map[netip.Prefix]*spaceRequest
	claimReqs map[netip.Addr]*claimRequest
	handover  *handover
	outbox    []outMsg
	bcast     bool // broadcast our state after unlocking

	// ringUnsaved: the ring differs from the stored one only in other
	// peers' entries (see adoptRing); tick and Close store it.
	ringUnsaved bool

	// The Weave Net channel (weavegossip.go).
	weaveGossip mesh.Gossip
	weaveWhen   func() bool // see SendWeaveWhen
	kinds       map[mesh.PeerName]peerKind
	weaveUIDs   map[mesh.PeerName]mesh.PeerUID // consensus UIDs of Weave Net peers
	weaveErrs   map[mesh.PeerName]error        // why we can't agree with a Weave Net peer
	weaveSeen   bool                           // a Weave Net peer has spoken
	weaveDrops  uint64                         // messages dropped on the Weave Net channel

	done chan struct{}
	wg   sync.WaitGroup
}

// spaceRequest tracks asking peers in turn for space in one subnet.
type spaceRequest struct {
	asked   mesh.PeerName // unanswered request, or UnknownPeerName
	sentAt  time.Time
	refused map[mesh.PeerName]bool
}

// claimRequest tracks asking an address's owner for it.
type claimRequest struct {
	to     mesh.PeerName
	sentAt time.Time
	owner  string // container that claims it
	bits   int
	err    error // final failure, reported to the claimer
}

type handover struct {
	to     mesh.PeerName
	sentAt time.Time
	acked  bool
}

type outMsg struct {
	dst    mesh.PeerName
	msg    []byte
	onFail func() // called under the lock when GossipUnicast fails
	weave  bool   // in Weave Net's format, for "IPallocation"
}

// New makes an Allocator and loads its Store. It does not talk to the
// network before SetGossip; start the mesh after SetGossip.
func New(cfg Config) (*Allocator, error) {
	if cfg.Ourself == mesh.UnknownPeerName {
		return nil, errors.New("ipam: Config.Ourself is required")
	}
	if cfg.Peers == nil {
		return nil, errors.New("ipam: Config.Peers is required")
	}
	if !cfg.Range.IsValid() {
		cfg.Range = DefaultRange
	}
	geo, err := newGeometry(cfg.Range)
	if err != nil {
		return nil, fmt.Errorf("%w (--ipalloc-range)", err)
	}
	if !cfg.DefaultSubnet.IsValid() {
		cfg.DefaultSubnet = cfg.Range
	}
	if cfg.DefaultSubnet.Masked() != cfg.DefaultSubnet || !geo.inside(cfg.DefaultSubnet) || cfg.DefaultSubnet.Bits() > 30 {
		return nil, fmt.Errorf("ipam: --ipalloc-default-subnet %v must be a subnet (/30 or larger, no host bits) inside --ipalloc-range %v", cfg.DefaultSubnet, cfg.Range)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.clock == nil {
		cfg.clock = time.Now
	}
	a := &Allocator{
		cfg:       cfg,
		log:       cfg.Logger,
		geo:       geo,
		now:       cfg.clock,
		ring:      &ring{Range: cfg.Range},
		space:     newSpace(geo),
		changed:   make(chan struct{}),
		spaceReqs: map[netip.Prefix]*spaceRequest{},
		claimReqs: map[netip.Addr]*claimRequest{},
		kinds:     map[mesh.PeerName]peerKind{},
		weaveUIDs: map[mesh.PeerName]mesh.PeerUID{},
		weaveErrs: map[mesh.PeerName]error{},
		done:      make(chan struct{}),
	}
	switch cfg.Init.Mode {
	case Consensus:
		n := cfg.Init.Peers
		if n == 0 {
			n = max(cfg.InitialPeers, 1)
		}
		a.paxos = newPaxos(cfg.Ourself, n)
		a.quorum = a.paxos.quorum
	case Seed:
		if len(cfg.Init.Seeds) == 0 {
			return nil, errors.New("ipam: --ipalloc-init seed= needs at least one peer name")
		}
	case Observer:
	default:
		return nil, fmt.Errorf("ipam: unknown init mode %v", cfg.Init.Mode)
	}
	if err := a.load(); err != nil {
		return nil, err
	}
	if !a.ring.ready() && cfg.Init.Mode == Seed {
		a.ring.claim(cfg.Init.Seeds)
		if err := a.adoptRing(a.ring); err != nil {
			return nil, err
		}
	}
	tick := cfg.tickInterval
	if tick == 0 {
		tick = defaultTick
	}
	if tick > 0 {
		a.wg.Add(1)
		go a.ticker(tick)
	}
	return a, nil
}

// SetGossip gives the Allocator its mesh channel: call it with the result
// of meshRouter.NewGossip("ipam", allocator), before the mesh starts.
func (a *Allocator) SetGossip(g mesh.Gossip) {
	a.mu.Lock()
	a.gossip = g
	a.mu.Unlock()
}

// Allocate returns an address for owner (a container id) in subnet, which
// must lie inside the Range; the zero Prefix means DefaultSubnet. The
// address is the lowest free one in our pieces of the subnet, and carries
// the subnet's prefix length. Allocating again for the same owner and
// subnet returns the same address. Allocate blocks until ctx is done
// while the ring awaits consensus or another peer donates space. It
// returns ErrNoFreeAddresses when no reachable peer has space left in the
// subnet. The allocation is durable in the Store when Allocate returns.
func (a *Allocator) Allocate(ctx context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error) {
	if owner == "" {
		return netip.Prefix{}, errors.New("ipam: allocate: empty owner")
	}
	if !subnet.IsValid() {
		subnet = a.cfg.DefaultSubnet
	}
	subnet = subnet.Masked()
	sub, ok := a.geo.subnetSpan(subnet)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("ipam: allocate in %v: %w %v; use a subnet inside it or a specific address", subnet, ErrOutsideRange, a.cfg.Range)
	}
	if subnet.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("ipam: allocate in %v: the subnet has no usable addresses; use /30 or larger", subnet)
	}
	for {
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			return netip.Prefix{}, net.ErrClosed
		}
		wait := a.changed
		p, err := a.tryAllocate(owner, subnet, sub)
		a.unlock()
		if p.IsValid() || err != nil {
			return p, err
		}
		select {
		case <-ctx.Done():
			return netip.Prefix{}, fmt.Errorf("ipam: allocate in %v: %w (%s)", subnet, ctx.Err(), a.Status().Status)
		case <-wait:
		}
	}
}

// tryAllocate allocates, or arranges to be woken when it may succeed.
func (a *Allocator) tryAllocate(owner string, subnet netip.Prefix, sub span) (netip.Prefix, error) {
	if addr, ok := a.space.ownerIn(owner, sub, subnet.Bits()); ok {
		return netip.PrefixFrom(addr, subnet.Bits()), nil
	}
	if err := a.weaveRefusal(); err != nil {
		return netip.Prefix{}, err
	}
	if !a.ring.ready() {
		a.needRing()
		return netip.Prefix{}, nil
	}
	if o, ok := a.space.lowestFree(usable(sub)); ok {
		addr := a.geo.addr(o)
		if err := a.record(addr, allocation{Owner: owner, Bits: subnet.Bits()}); err != nil {
			return netip.Prefix{}, err
		}
		delete(a.spaceReqs, subnet)
		return netip.PrefixFrom(addr, subnet.Bits()), nil
	}
	return netip.Prefix{}, a.requestSpace(subnet, usable(sub))
}

// record adds an allocation and makes it durable.
func (a *Allocator) record(addr netip.Addr, al allocation) error {
	if err := a.cfg.Store.putAlloc(addr, al); err != nil {
		return fmt.Errorf("ipam: persist allocation of %v: %w", addr, err)
	}
	a.space.add(addr, al)
	return nil
}

// Claim records a specific address for owner; addr's prefix length is the
// subnet it lives in. Inside the Range the address is obtained from the
// peer owning it (blocking until ctx is done while the ring awaits
// consensus or the owner answers); outside the Range it is just recorded.
// Claiming an address owner already holds succeeds. It fails with
// ErrAddressInUse if another container holds it, ErrOwnerUnreachable if
// its owner can't be reached.
func (a *Allocator) Claim(ctx context.Context, owner string, addr netip.Prefix) error {
	if owner == "" {
		return errors.New("ipam: claim: empty owner")
	}
	if !addr.IsValid() {
		return fmt.Errorf("ipam: claim: invalid address %v", addr)
	}
	addr = netip.PrefixFrom(addr.Addr().Unmap(), addr.Bits())
	ip := addr.Addr()
	if ip.Is4() && addr.Bits() <= 30 {
		subnet := addr.Masked()
		if ip == subnet.Addr() || ip == lastAddr(subnet) {
			return fmt.Errorf("ipam: claim %v: that is the network or broadcast address of %v; pick another", addr, subnet)
		}
	}
	for {
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			return net.ErrClosed
		}
		wait := a.changed
		done, err := a.tryClaim(owner, addr)
		a.unlock()
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			a.mu.Lock()
			if req := a.claimReqs[ip]; req != nil && req.owner == owner {
				delete(a.claimReqs, ip)
			}
			a.mu.Unlock()
			return fmt.Errorf("ipam: claim %v: %w (%s)", addr, ctx.Err(), a.Status().Status)
		case <-wait:
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	v := v4(p.Addr()) | (uint32(1)<<(32-p.Bits()) - 1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (a *Allocator) tryClaim(owner string, p netip.Prefix) (bool, error) {
	ip := p.Addr()
	if al, ok := a.space.allocs[ip]; ok {
		if req := a.claimReqs[ip]; req != nil && req.owner == al.Owner {
			delete(a.claimReqs, ip)
		}
		if al.Owner == owner {
			return true, nil
		}
		return false, fmt.Errorf("ipam: claim %v: %w by %s", p, ErrAddressInUse, al.Owner)
	}
	o, inRange := a.geo.offset(ip)
	if !inRange {
		return true, a.record(ip, allocation{Owner: owner, Bits: p.Bits()})
	}
	if err := a.weaveRefusal(); err != nil {
		return false, err
	}
	if !a.ring.ready() {
		a.needRing()
		return false, nil
	}
	holder := a.ring.owner(o)
	if holder == a.cfg.Ourself {
		delete(a.claimReqs, ip)
		return true, a.record(ip, allocation{Owner: owner, Bits: p.Bits()})
	}
	now := a.now()
	if req := a.claimReqs[ip]; req != nil {
		if req.owner != owner {
			return false, fmt.Errorf("ipam: claim %v: %w: being claimed by %s", p, ErrAddressInUse, req.owner)
		}
		if req.err != nil {
			delete(a.claimReqs, ip)
			return false, req.err
		}
		if req.to == holder && now.Sub(req.sentAt) < retryAfter && a.reachable(holder) {
			return false, nil // wait for the answer
		}
	}
	if !a.reachable(holder) {
		delete(a.claimReqs, ip)
		return false, fmt.Errorf("ipam: claim %v: %w %s: wait for it to come back, or `weave rmpeer` it if it is gone", p, ErrOwnerUnreachable, a.peerString(holder))
	}
	a.claimReqs[ip] = &claimRequest{to: holder, sentAt: now, owner: owner, bits: p.Bits()}
	a.send(holder, &message{kind: kindClaimRequest, addr: ip}, func() {
		if req := a.claimReqs[ip]; req != nil && req.to == holder {
			req.err = fmt.Errorf("ipam: claim %v: %w %s", p, ErrOwnerUnreachable, a.peerString(holder))
			a.signal()
		}
	})
	return false, nil
}

// Release frees addr held by owner.
func (a *Allocator) Release(owner string, addr netip.Prefix) error {
	a.mu.Lock()
	defer a.unlock()
	ip := addr.Addr().Unmap()
	if al, ok := a.space.allocs[ip]; !ok || al.Owner != owner {
		return fmt.Errorf("ipam: release %v of %s: %w", addr, owner, ErrNotFound)
	}
	return a.forget(ip)
}

// ReleaseAll frees every address owner holds.
func (a *Allocator) ReleaseAll(owner string) error {
	a.mu.Lock()
	defer a.unlock()
	for _, p := range a.space.lookup(owner) {
		if err := a.forget(p.Addr()); err != nil {
			return err
		}
	}
	return nil
}

func (a *Allocator) forget(ip netip.Addr) error {
	if err := a.cfg.Store.deleteAlloc(ip); err != nil {
		return fmt.Errorf("ipam: persist release of %v: %w", ip, err)
	}
	a.space.remove(ip)
	a.signal()
	return nil
}

// Lookup returns the addresses owner holds, sorted.
func (a *Allocator) Lookup(owner string) []netip.Prefix {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.space.lookup(owner)
}

// Owners returns every owner (container id) holding an address here.
func (a *Allocator) Owners() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.space.owners))
	for o := range a.space.owners {
		out = append(out, o)
	}
	return out
}

// signal wakes everything waiting on a.changed. Lock held.
func (a *Allocator) signal() {
	close(a.changed)
	a.changed = make(chan struct{})
}

func (a *Allocator) reachable(p mesh.PeerName) bool {
	if p == a.cfg.Ourself {
		return true
	}
	for _, r := range a.cfg.Peers.Reachable() {
		if r == p {
			return true
		}
	}
	return false
}

func (a *Allocator) peerString(p mesh.PeerName) string {
	if nick := a.cfg.Peers.NickName(p); nick != "" {
		return p.String() + "(" + nick + ")"
	}
	return p.String()
}

// needRing starts what gets us a ring: a consensus proposal, or asking
// the consensus peers to run one. Lock held.
func (a *Allocator) needRing() {
	now := a.now()
	a.wantRing = true
	switch {
	case a.paxos != nil:
		// A ballot already under way is left to run: a proposal of
		// ours would outbid it, and when 50 peers were asked for
		// addresses one after another, each outbid the last, about
		// 47,000 consensus broadcasts before any got its promises.
		// tick proposes if the one under way stalls.
		if a.paxos.proposal.zero() && a.proposed.IsZero() && !a.paxos.underway() {
			a.propose(now)
		}
	case a.askedRing.IsZero() || now.Sub(a.askedRing) >= retryAfter:
		a.askedRing = now
		for _, p := range a.cfg.Peers.Reachable() {
			if p != a.cfg.Ourself {
				a.send(p, &message{kind: kindWantRing}, nil)
			}
		}
	}
}

func (a *Allocator) propose(now time.Time) {
	a.proposed = now
	a.paxos.propose(false)
	a.paxosChanged()
}

// quorumOK tells paxos whether a quorum of promises is enough by now.
func (a *Allocator) quorumOK() bool { return a.now().Sub(a.proposed) >= quorumGrace }
