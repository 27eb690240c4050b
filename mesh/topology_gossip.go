package mesh

import (
	"errors"
	"hash/maphash"
	"sync"
	"time"
)

// The "topology" channel: how peers learn each other's records (the
// connections each reports), which routes and discovery are computed from.

// topologyGossiper is the "topology" channel's end.
type topologyGossiper struct {
	r       *Router
	repeats *repeatFilter
}

func (t *topologyGossiper) OnGossipUnicast(PeerName, []byte) error {
	return errors.New("unexpected topology gossip unicast")
}

func (t *topologyGossiper) OnGossipBroadcast(_ PeerName, update []byte) (GossipData, error) {
	received, _, err := t.apply(update)
	if err != nil || len(received) == 0 {
		return nil, err
	}
	return &topologyData{peers: t.r.Peers, names: received}, nil
}

func (t *topologyGossiper) Gossip() GossipData {
	return &topologyData{peers: t.r.Peers, names: t.r.Peers.names()}
}

func (t *topologyGossiper) OnGossip(update []byte) (GossipData, error) {
	// Peers that agree encode the same records to the same bytes (encode
	// sorts them): a settled mesh's periodic gossip brings the same table
	// back from every neighbour, and while a mesh forms each update comes
	// relayed by several. Applying a payload again teaches nothing, so a
	// repeat within the gossip interval is not decoded. At 50 peers those
	// decodes were a tenth of an idle daemon's CPU.
	if t.repeats.seen(update, time.Now()) {
		return nil, nil
	}
	_, learnt, err := t.apply(update)
	if err != nil || len(learnt) == 0 {
		return nil, err
	}
	return &topologyData{peers: t.r.Peers, names: learnt}, nil
}

// strangerFanout is how many random neighbours get the record of a peer
// we have no connection to (see relayPlan).
const strangerFanout = 3

// relayCopies is how many of the peers connected to both the subject of
// a record and a neighbour of ours relay the record to that neighbour.
const relayCopies = 2

// relayPlan passes on the records an update taught us. A peer of this
// release sends every version of its own record to each of its neighbours
// (Router.loop) and says so in its handshake (fieldTellsNeighbours), so
// the record of such a neighbour of ours has news only for the neighbours
// of ours it shows no connection to, and each of those hears it from
// relayCopies relays, not from everyone connected to both. Other records
// of our neighbours, Weave Net routers' and older releases' (which tell a
// few random neighbours), go there too, and to random neighbours as mesh
// gossip always went: random relays alone left a Weave Net router behind
// a hub of ours without the other spokes' records for the 30 s of a
// gossip round. At 50 peers forming a mesh, random relays brought each
// daemon every update about seven times, most of its work. Records of
// peers we have no connection to, which we cannot tell apart, go to
// strangerFanout random neighbours: the designated relays bring a peer of
// this release's record to everyone who needs it, and for a Weave Net
// router's record a smaller fan-out still spreads (each that learns it
// passes it on). They were half of a forming mesh's topology messages,
// most of them a newcomer's record spreading among the peers it had not
// yet dialled.
func (t *topologyGossiper) relayPlan(src PeerName, delta GossipData) map[*LocalConnection]GossipData {
	d, ok := delta.(*topologyData)
	if !ok {
		return nil
	}
	us := t.r.Ourself.Name
	conns := map[PeerName]*LocalConnection{}
	for _, c := range t.r.Peers.allConns() {
		conns[c.remote.Name] = c
	}
	g, _, _ := t.r.Peers.snapshot()
	plan := map[*LocalConnection]map[PeerName]struct{}{}
	add := func(c *LocalConnection, subject PeerName) {
		if plan[c] == nil {
			plan[c] = map[PeerName]struct{}{}
		}
		plan[c][subject] = struct{}{}
	}
	var others, strangers []PeerName
	for subject := range d.names {
		c := conns[subject]
		if c == nil {
			strangers = append(strangers, subject)
			continue
		}
		if !c.tellsNeighbours {
			others = append(others, subject)
		}
		for n, c := range conns {
			if _, told := g[subject][n]; told || n == src || n == subject {
				continue
			}
			if g.relays(subject, n, us) {
				// With our own record, whose link to subject makes
				// subject reachable at n at once: a peer nothing
				// reaches is dropped as gone, and subject's record
				// would not come again until it changed.
				add(c, subject)
				add(c, us)
			}
		}
	}
	for _, relay := range []struct {
		subjects []PeerName
		fanout   int
		withOurs bool
	}{{others, 0, true}, {strangers, strangerFanout, false}} {
		if len(relay.subjects) == 0 {
			continue
		}
		for _, c := range t.r.Ourself.connectionsTo(t.r.Routes.randomNeighbours(src, relay.fanout)) {
			for _, subject := range relay.subjects {
				add(c, subject)
			}
			if relay.withOurs {
				// Our link to a neighbour's record is what reaches it,
				// as above. Without it, a Weave Net router that had not
				// yet heard our record naming the link dropped the peer
				// as gone, and with it the DNS names the peer broadcast
				// before our record came (TestInteropDNSLine).
				add(c, us)
			}
		}
	}
	out := make(map[*LocalConnection]GossipData, len(plan))
	for c, names := range plan {
		out[c] = &topologyData{peers: t.r.Peers, names: names}
	}
	return out
}

// relays says whether us is among the relayCopies peers that relay
// subject's record to n: of us and the peers connected to both (as far
// as the topology shows), those ranked first by a hash of the three
// names, the same ranking at every peer.
func (g graph) relays(subject, n, us PeerName) bool {
	rank := func(x PeerName) uint64 {
		return mix64(uint64(subject)*0x9e3779b97f4a7c15 ^ uint64(n)*0xc2b2ae3d27d4eb4f ^ uint64(x))
	}
	ours := rank(us)
	ahead := 0
	for x := range g[subject] {
		if x == us || x == n {
			continue
		}
		if _, ok := g[x][n]; !ok {
			if _, ok := g[n][x]; !ok {
				continue
			}
		}
		if rank(x) < ours {
			if ahead++; ahead >= relayCopies {
				return false
			}
		}
	}
	return true
}

// mix64 is SplitMix64's finaliser: every input bit moves every output bit.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (t *topologyGossiper) apply(update []byte) (received, learnt map[PeerName]struct{}, err error) {
	received, learnt, oursChanged, err := t.r.Peers.applyUpdate(update)
	if err != nil {
		return nil, nil, err
	}
	if len(learnt) > 0 {
		t.r.connMaker.refresh()
		signal(t.r.changed)
		signal(t.r.gcSoon)
	}
	if oursChanged {
		t.r.topologyChanged()
	}
	return received, learnt, nil
}

// repeatFilter remembers the hashes of the last repeatFilterSize payloads
// for a window.
type repeatFilter struct {
	seed   maphash.Seed
	window time.Duration
	mu     sync.Mutex
	at     map[uint64]time.Time
	order  [repeatFilterSize]uint64 // a ring, oldest at next
	next   int
}

// repeatFilterSize: while a mesh forms, each peer's update reaches every
// other about 2·log2(n) times, relayed by different neighbours but in the
// same bytes; the copies of one update arrive within a second or two,
// among the updates of every other peer.
const repeatFilterSize = 512

func newRepeatFilter(window time.Duration) *repeatFilter {
	return &repeatFilter{seed: maphash.MakeSeed(), window: window, at: make(map[uint64]time.Time, repeatFilterSize)}
}

// seen says whether b came within the window, and remembers it.
func (f *repeatFilter) seen(b []byte, now time.Time) bool {
	h := maphash.Bytes(f.seed, b)
	f.mu.Lock()
	defer f.mu.Unlock()
	at, known := f.at[h]
	if known && now.Sub(at) < f.window {
		return true
	}
	if !known {
		if len(f.at) >= repeatFilterSize {
			delete(f.at, f.order[f.next])
		}
		f.order[f.next] = h
		f.next = (f.next + 1) % repeatFilterSize
	}
	f.at[h] = now
	return false
}

// topologyData is the topology of some peers, encoded when sent.
type topologyData struct {
	peers *Peers
	names map[PeerName]struct{}
	// One update is usually queued to many connections (a relay goes to
	// 2·log2(n) neighbours, and at 50 peers the whole topology is about
	// 100 KB): the first writer encodes it, the others send its bytes. They
	// may be a moment older than the table by then, which gossip allows:
	// a later change is gossiped in turn.
	once sync.Once
	enc  [][]byte
}

func (d *topologyData) Encode() [][]byte {
	d.once.Do(func() { d.enc = [][]byte{d.peers.encode(d.names)} })
	return d.enc
}

func (d *topologyData) Merge(o GossipData) GossipData {
	names := make(map[PeerName]struct{}, len(d.names))
	for n := range d.names {
		names[n] = struct{}{}
	}
	if od, ok := o.(*topologyData); ok {
		for n := range od.names {
			names[n] = struct{}{}
		}
	}
	return &topologyData{peers: d.peers, names: names}
}
