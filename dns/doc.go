// Package dns is weaveDNS: every peer runs a DNS server that answers for the
// container names of the whole cluster, from a name table replicated over
// the mesh by gossip, and forwards every other name to the host's resolvers.
//
// # Use
//
//	s, err := dns.New(dns.Config{Ourself: router.Ourself.Name, Logger: log})
//	s.Reconcile(running)                    // this host's containers, see below
//	s.SetGossip(meshRouter.NewGossip("dns", s))
//	meshRouter.Start()
//	err = s.Start(netip.MustParseAddrPort("172.17.0.1:53"))
//	...
//	s.AddEntry("c1", "c1", addr)            // weave run / attach / dns-add
//	s.RemoveEntries("c1", "", netip.Addr{}) // weave rm / detach / dns-remove
//	s.PeerGone(name)                        // weave rmpeer
//	s.Close()                               // stops DNS serving; gossip goes on
//
// Server implements mesh.Gossiper. Its Status, Entries and Counters feed
// `weave status dns` and `weave report`; metrics are the caller's to export.
//
// # Daemon wiring
//
//  1. New(cfg) with the mesh peer name (cfg.Ourself), --dns-domain and
//     --dns-ttl. With cfg.Upstream nil the upstreams come from
//     /etc/resolv.conf, re-read when it changes; use NewResolvConf for
//     another path or StaticUpstreams for a fixed list.
//  2. Before the mesh router starts (so before any gossip arrives), tell
//     the server what this host runs: Reconcile with one Registration per
//     container address and hostname (or AddEntry for each).
//  3. s.SetGossip(meshRouter.NewGossip("dns", s)), and for Weave Net 2.x
//     peers s.SetWeaveGossip(meshRouter.NewGossip("nameserver",
//     s.WeaveGossiper())) with cfg.KnownPeer asking mesh's Peers and
//     router.Routes.OnChange(s.PeersChanged); then start the router.
//     NewGossip must come before router.Start, as for every mesh channel.
//  4. s.Start(addr) on the address containers use as nameserver (UDP and
//     TCP; port 0 picks one), or s.Serve with sockets made elsewhere.
//  5. Container made or attached: AddEntry(container, hostname, addr) for
//     each address; hostname defaults to the container name, "-h FQDN"
//     overrides. Detached from an address: RemoveEntries(container, "",
//     addr). Removed: RemoveEntries(container, "", netip.Addr{}).
//  6. weave rmpeer NAME: PeerGone(NAME). It is gossiped, so calling it on
//     one peer is enough. To drop the names of a host that crashed, as
//     Weave Net does, also call it when mesh forgets an unreachable peer:
//     router.Peers.OnGC(func(p *mesh.Peer) { go s.PeerGone(p.Name) }) (in
//     a goroutine: PeerGone broadcasts, and the callback runs inside
//     mesh). A peer removed while alive, or cut off and back, re-announces
//     its entries as soon as it hears of it.
//  7. Shutdown: s.Close() ends every serving goroutine before it returns.
//
// A daemon restart needs nothing persisted. The restarted process starts
// with an empty table and its Lamport clock at zero, registers what runs
// (step 2), and learns from the first gossip of its neighbours what the
// cluster still remembers of it. It is the authority on its own entries: a
// remembered entry it no longer has is retracted with a tombstone, and one
// remembered as live while deleted here, or the other way round, is
// re-issued, each with a version above anything the cluster saw from it
// (Counters.Retractions counts these); one remembered in the same state only
// lends it its higher version. Registering after gossip started also
// converges, but the names then vanish for a moment in between. (NewGossip
// after router.Start fails in mesh if a "dns" message arrived first.)
//
// # Replicated state
//
// An entry is (origin peer, hostname, address, container) with the origin's
// Lamport version and a tombstone flag; only the origin writes its entries.
// Merging keeps, per entry, the higher version, a tombstone winning a tie;
// per origin a retired watermark (raised by PeerGone) drops every entry at
// or below it. No wall clock decides anything in a merge; the merge is a
// join (commutative, associative, idempotent: property- and fuzz-tested).
//
// Tombstones are garbage-collected after Config.TombstoneLifetime (10 min).
// They travel with their remaining lifetime, so collection happens at about
// the same time everywhere. If a peer was cut off for longer and brings
// back an entry whose tombstone is already collected, its origin (if alive)
// retracts it again on sight; an entry of an origin that is gone for good
// can only be removed with PeerGone.
//
// Gossip uses an explicit binary encoding, version 1 (see codec.go), with
// large tables split into self-contained messages of about 64 KiB. A
// message that does not decode is counted and dropped, never returned as an
// error: mesh would close the whole connection, which carries topology and
// IPAM as well. Messages of an unknown (newer) version are ignored.
//
// # Weave Net peers
//
// Weave Net 2.x gossips its names on the channel "nameserver", gob-encoded
// (weavewire.go), with its own rules: per-entry versions from 0, tombstones
// carrying their deletion time and kept 30 minutes, hostnames compared with
// their case, a peer's names dropped when mesh forgets the peer. The Server
// speaks that channel too (weavegossip.go): it keeps the channel's entries
// of other origins as Weave Net keys them and gossips them on unchanged, so
// Weave Net peers behind weavenet peers hear each other, and answers for
// them in lower case; it announces its own entries there translated (our
// version minus one, the deletion time of a tombstone, IPv4 only). Our
// table stays authoritative for weavenet entries: those arrive on both
// channels with the same versions, the "dns" channel wins where it has the
// entry, and own entries heard back on either channel go through the same
// authority check, so the two channels never make each other flap. A
// message that does not decode, exceeds 4 MiB or 100,000 entries, or whose
// timestamp is more than 15 minutes off is dropped and counted
// (Counters.NameserverMalformed); invalid entries in a good message are
// left out and counted (Counters.NameserverSkipped).
//
// # Answers
//
// Names in the domain are answered authoritatively from the table: A and
// AAAA records for every live address of the name in a new random order for
// every query; NOERROR with no answer for a name that exists without a
// record of the asked type (and for empty non-terminals); NXDOMAIN for a
// name that does not exist; the SOA of the domain in the authority section
// of negative answers. Matching ignores case and echoes the question as
// asked. A single-label question ("c1.") is answered from the domain when
// the name exists there (a client that skipped its search list). PTR
// questions for addresses in the table are answered with their hostnames.
// Everything else, including reverse names of other addresses, is forwarded.
//
// Forwarding asks the upstream resolvers in order, over UDP and again over
// TCP if the answer was truncated, all within Config.ForwardTimeout (2s); if
// none answers usefully the client gets SERVFAIL. Our own listening address
// is never used as an upstream.
//
// Answers too large for the client's transport (512 bytes over UDP, or its
// EDNS0 size up to 1232) are truncated with TC set; TCP carries up to 65535
// bytes. Messages that do not parse get FORMERR when they have a header and
// are dropped otherwise; either way they are counted (Counters.Malformed).
package dns
