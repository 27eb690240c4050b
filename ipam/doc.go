// Package ipam allocates container addresses with no central store: the
// allocation range (--ipalloc-range, default 10.32.0.0/12) is a ring of
// pieces, each owned by one peer, replicated by gossip over weavenet/mesh
// (the Weave mesh protocol). A peer hands out addresses only from its own
// pieces, so an address is never given twice, even across a partition.
//
// # Design
//
//   - ring.go: the ring, a state-based CRDT. Tokens only accumulate; each
//     entry (token, peer, version, free hint) is changed only by its owner
//     and merge keeps the greater version. Merge is commutative,
//     associative and idempotent (property-tested and fuzzed).
//   - paxos.go: bootstrap for --ipalloc-init consensus[=N]: single-decree
//     Paxos over gossip decides the list of initial owners, so two sides
//     of a partition can't both claim the Range. seed=NAME,... splits the
//     Range among named peers with no agreement needed; observer never
//     owns space at start.
//   - space.go: our allocations and free offsets; lowest free first.
//   - donate.go: a peer out of space asks (unicast) a peer with free space,
//     which donates half of its largest free run; claims of a specific
//     address go to the address's owner the same way.
//   - codec.go: the versioned binary wire format (first byte 1; anything
//     else is rejected with ErrUnknownVersion), fuzzed.
//   - store.go: bbolt persistence of ring, consensus record and our
//     allocations; every allocation is durable before it is returned.
//   - weavewire.go, weavegossip.go: Weave Net 2.x's IPAM protocol (gob on
//     the channel "IPallocation"), translated to and from ours, so that
//     Weave Net and weavenet peers share one ring, one consensus and
//     donate space to each other; a disagreement with a Weave Net peer
//     makes Allocate and Claim fail with ErrWeaveNetDisagreement.
//
// # API
//
//	func ParseInit(s string) (Init, error)
//	func OpenStore(path string) (*Store, error)
//	func New(cfg Config) (*Allocator, error)
//	func (a *Allocator) SetGossip(g mesh.Gossip)
//	func (a *Allocator) SendWeaveWhen(weaveNet func() bool)
//	func (a *Allocator) Allocate(ctx context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error)
//	func (a *Allocator) Claim(ctx context.Context, owner string, addr netip.Prefix) error
//	func (a *Allocator) Release(owner string, addr netip.Prefix) error
//	func (a *Allocator) ReleaseAll(owner string) error
//	func (a *Allocator) Lookup(owner string) []netip.Prefix
//	func (a *Allocator) Owners() []string
//	func (a *Allocator) RemovePeer(name mesh.PeerName) (uint64, error)
//	func (a *Allocator) Shutdown(ctx context.Context) error
//	func (a *Allocator) Status() Status
//	func (a *Allocator) PeersChanged()
//	func (a *Allocator) Close() error
//
// plus the mesh.Gossiper methods (OnGossipUnicast, OnGossipBroadcast,
// Gossip, OnGossip), which only mesh should call.
//
// # Wiring it into a daemon
//
//	store, err := ipam.OpenStore(filepath.Join(dataDir, "ipam.db")) // fails with ErrStoreLocked if another daemon has it
//	init, err := ipam.ParseInit(ipallocInit)
//	alloc, err := ipam.New(ipam.Config{
//		Ourself: node.Name, NickName: nick,
//		Range: rng, DefaultSubnet: subnet, Init: init,
//		InitialPeers: len(peerTargets) + 1,
//		Store: store, Peers: peerSource{router}, Logger: log,
//	})
//	g, err := router.NewGossip("ipam", alloc) // after mesh.NewRouter, before router.Start
//	alloc.SetGossip(g)
//	wg, err := router.NewGossip("IPallocation", alloc.WeaveGossiper()) // optional: Weave Net peers
//	alloc.SetWeaveGossip(wg)
//	router.Routes.OnChange(alloc.PeersChanged) // optional: react to topology changes at once
//	router.Start()
//	...
//	// weave stop:  alloc.Close(); router.Stop(); store.Close()
//	// weave reset: alloc.Shutdown(ctx with a timeout); alloc.Close(); router.Stop(); store.Close(); remove the data dir
//
// The PeerSource adapter over a *mesh.Router can be:
//
//	func (s peerSource) Reachable() (out []mesh.PeerName) {
//		for _, d := range s.r.Peers.Descriptions() {
//			if _, ok := s.r.Routes.Unicast(d.Name); ok && !d.Self {
//				out = append(out, d.Name)
//			}
//		}
//		return out
//	}
//	func (s peerSource) NickName(n mesh.PeerName) string {
//		if p := s.r.Peers.Fetch(n); p != nil {
//			return p.NickName
//		}
//		return ""
//	}
//
// The Allocator never calls mesh with its lock held and PeersChanged only
// signals, so neither can deadlock against mesh's goroutines. New starts
// one goroutine (a 1s ticker for retries); Close ends it.
//
// # Semantics worth knowing
//
//   - Allocate(ctx, owner, subnet) returns the lowest free address of our
//     pieces of subnet (inside the Range; zero Prefix = DefaultSubnet),
//     never the subnet's network or broadcast address, with the subnet's
//     prefix length. Again for the same owner and subnet: the same address.
//     It blocks while consensus is pending or a donation is awaited, and
//     returns ErrNoFreeAddresses when every reachable owner refused.
//   - Claim inside the Range asks the address's owner; outside the Range the
//     address is only recorded locally (there is nobody to coordinate with).
//   - Consensus with N peers (consensus=N, or InitialPeers for plain
//     "consensus") needs N/2+1 of them; the proposer waits up to 2s for all
//     N so every initial peer gets a share. All initial peers must agree
//     on N. Peers joining later get the ring by gossip and space by donation.
//   - Rings bootstrapped separately (different seeds, or separate
//     consensus) refuse to merge: mesh drops the connection and the error
//     says to reset one side. Peers with different Ranges refuse likewise.
//   - RemovePeer breaks the owner-only rule on purpose: run it on one peer,
//     for a peer that is gone for good. The Allocator logs an error if it
//     ever finds its own allocations in space the ring gives to another.
//   - On restart the ring, consensus record and allocations come back from
//     the Store. A changed Range discards the old ring and the allocations
//     inside the new Range (with a warning); a changed peer name discards
//     everything.
//
// Only IPv4 Ranges are supported (prefix /1 to /30).
package ipam
