package mesh

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"
)

// Gossip sends on one channel (what Router.NewGossip returns).
type Gossip interface {
	// GossipUnicast sends msg to the peer dst, relayed hop by hop.
	GossipUnicast(dst PeerName, msg []byte) error
	// GossipBroadcast sends update to every peer, over the spanning tree.
	GossipBroadcast(update GossipData)
	// GossipNeighbourSubset sends update to a few neighbours, who pass on
	// what is new to them.
	GossipNeighbourSubset(update GossipData)
}

// Gossiper receives on one channel. Its methods are called one at a time,
// on a goroutine of the channel's own, never on a connection's: a slow
// gossiper delays only its own channel.
type Gossiper interface {
	OnGossipUnicast(src PeerName, msg []byte) error
	// OnGossipBroadcast merges update and returns what to relay on.
	OnGossipBroadcast(src PeerName, update []byte) (received GossipData, err error)
	// Gossip is everything we know, sent periodically.
	Gossip() (complete GossipData)
	// OnGossip merges msg and returns what was new, or nil.
	OnGossip(msg []byte) (delta GossipData, err error)
}

// GossipData is a mergeable piece of state.
type GossipData interface {
	Encode() [][]byte
	Merge(GossipData) GossipData
}

// Gossip messages, after the tag byte, are gob values in sequence: the
// channel name, the source peer, for unicast the destination peer, and
// the payload bytes.

type gossipMsg struct {
	channel string
	src     PeerName
	dst     PeerName
	payload []byte
}

const maxChannelName = 256

var errGossipMsg = errors.New("malformed gossip message")

func decodeGossip(tag byte, b []byte) (gossipMsg, error) {
	var m gossipMsg
	i := 0
	want := 3
	if tag == ProtocolGossipUnicast {
		want = 4
	}
	err := gobValues(b, func(body []byte) (bool, error) {
		delta, v, err := gobUint(body)
		if err != nil || delta != 0 {
			return false, errGossipMsg
		}
		field := i
		if want == 3 && i == 2 {
			field = 3
		}
		switch field {
		case 0:
			s, _, err := gobBytes(v)
			if err != nil || len(s) > maxChannelName {
				return false, errGossipMsg
			}
			m.channel = string(s)
		case 1, 2:
			n, _, err := gobUint(v)
			if err != nil {
				return false, errGossipMsg
			}
			if field == 1 {
				m.src = PeerName(n)
			} else {
				m.dst = PeerName(n)
			}
		case 3:
			if m.payload, _, err = gobBytes(v); err != nil {
				return false, errGossipMsg
			}
		}
		i++
		return i < want, nil
	})
	if err != nil {
		return m, err
	}
	if i < want {
		return m, errGossipMsg
	}
	return m, nil
}

// gossipChannel is one named channel.
type gossipChannel struct {
	name     string
	router   *Router
	gossiper Gossiper
	// inbox feeds the channel's goroutine, which makes every call to a
	// gossiper of the application's in turn; nil for the topology and
	// surrogates, which only compute, and are called at once. A
	// connection's reader must not wait on an application: IPAM syncs
	// its state to disk under its lock, and while 50 peers formed a
	// mesh the readers delivering its gossip queued behind each other
	// for up to a second, with the overlay's messages behind them, so
	// links were established seconds late.
	inbox *inbox
}

// An inbox is a queue of calls bounded in number and in the bytes of the
// frames they hold: past either bound, readers wait as they did for the
// gossiper itself.
type inbox struct {
	mu    sync.Mutex
	jobs  []inboxJob
	bytes int
	added chan struct{} // signalled when a job is added
	taken chan struct{} // made by a waiting put, closed when a job is taken
}

type inboxJob struct {
	f    func()
	size int
}

const (
	inboxJobs  = 1024
	inboxBytes = 4 << 20 // a larger frame waits for an empty inbox
)

func newInbox() *inbox {
	return &inbox{added: make(chan struct{}, 1)}
}

// put queues f, which holds size bytes, waiting for room unless stop
// (nil: never) or closing comes first; it says whether f was queued.
func (in *inbox) put(f func(), size int, stop, closing <-chan struct{}) bool {
	for {
		in.mu.Lock()
		if n := len(in.jobs); n == 0 || n < inboxJobs && in.bytes+size <= inboxBytes {
			in.jobs = append(in.jobs, inboxJob{f, size})
			in.bytes += size
			in.mu.Unlock()
			signal(in.added)
			return true
		}
		if in.taken == nil {
			in.taken = make(chan struct{})
		}
		taken := in.taken
		in.mu.Unlock()
		select {
		case <-taken:
		case <-stop:
			return false
		case <-closing:
			return false
		}
	}
}

// serve runs the queued calls in order until closing.
func (in *inbox) serve(closing <-chan struct{}) {
	for {
		in.mu.Lock()
		if len(in.jobs) == 0 {
			in.mu.Unlock()
			select {
			case <-in.added:
				continue
			case <-closing:
				return
			}
		}
		j := in.jobs[0]
		in.jobs[0] = inboxJob{}
		in.jobs = in.jobs[1:]
		in.bytes -= j.size
		if in.taken != nil {
			close(in.taken)
			in.taken = nil
		}
		in.mu.Unlock()
		select {
		case <-closing:
			return
		default:
		}
		j.f()
	}
}

// do runs f, which holds size bytes of a frame, on the channel's
// goroutine, or at once if it has none. It waits for room in the inbox
// unless stop (nil: never) or the router closes first, and then drops f.
func (c *gossipChannel) do(stop <-chan struct{}, size int, f func()) {
	if c.inbox == nil {
		f()
		return
	}
	c.inbox.put(f, size, stop, c.router.closing)
}

func (c *gossipChannel) GossipUnicast(dst PeerName, msg []byte) error {
	return c.relayUnicast(dst, gossipBody(c.name, msg, c.router.Ourself.Name, dst))
}

func (c *gossipChannel) GossipBroadcast(update GossipData) {
	c.relayBroadcast(c.router.Ourself.Name, update)
}

func (c *gossipChannel) GossipNeighbourSubset(update GossipData) {
	c.relay(c.router.Ourself.Name, update, 0)
}

// periodicFanout is how many neighbours get each channel's periodic
// gossip (sendAllGossip), where relay's fanout 0 means about 2·log2(peers)
// neighbours. Changes are gossiped when they happen, to about
// 2·log2(peers) neighbours (relay); the periodic round only repairs what a
// peer missed, and a peer misses a round of fanout f from every neighbour
// with a chance of about e^-f, so three is enough. At 50 peers the 84 KB
// topology went to 11 neighbours every 30 s, and each daemon read as
// many: a quarter of an idle daemon's CPU, in one burst.
const periodicFanout = 3

func (c *gossipChannel) relayUnicast(dst PeerName, msg []byte) error {
	hop, ok := c.router.Routes.UnicastAll(dst)
	if !ok {
		return fmt.Errorf("unknown relay destination: %s", dst)
	}
	conn := c.router.Ourself.connectionTo(hop)
	if conn == nil {
		return fmt.Errorf("unable to find connection to relay peer %s", hop)
	}
	return conn.send(ProtocolGossipUnicast, msg)
}

func (c *gossipChannel) relayBroadcast(src PeerName, update GossipData) {
	hops := c.router.Routes.relayHops
	if src == c.router.Ourself.Name {
		hops = c.router.Routes.BroadcastAll
	}
	for _, conn := range c.router.Ourself.connectionsTo(hops(src)) {
		conn.queueGossip(c, src, update, true)
	}
}

// relay sends update from src to up to fanout random neighbours (0: about
// 2·log2(peers), see randomNeighbours).
func (c *gossipChannel) relay(src PeerName, update GossipData, fanout int) {
	for _, conn := range c.router.Ourself.connectionsTo(c.router.Routes.randomNeighbours(src, fanout)) {
		conn.queueGossip(c, src, update, false)
	}
}

func (c *gossipChannel) deliver(m gossipMsg, tag byte, raw []byte) error {
	switch tag {
	case ProtocolGossipUnicast:
		if m.dst != c.router.Ourself.Name {
			// Not ours: pass it on unchanged. A relay failure is the
			// route's, not this connection's.
			_ = c.relayUnicast(m.dst, raw)
			return nil
		}
		return c.gossiper.OnGossipUnicast(m.src, m.payload)
	case ProtocolGossipBroadcast:
		data, err := c.gossiper.OnGossipBroadcast(m.src, m.payload)
		if err != nil || data == nil {
			return err
		}
		c.relayBroadcast(m.src, data)
	case ProtocolGossip:
		data, err := c.gossiper.OnGossip(m.payload)
		if err != nil || data == nil {
			return err
		}
		if p, ok := c.gossiper.(relayPlanner); ok {
			for conn, d := range p.relayPlan(m.src, data) {
				conn.queueGossip(c, m.src, d, false)
			}
			return nil
		}
		c.relay(m.src, data, 0)
	}
	return nil
}

// A relayPlanner knows better than random neighbours where the news in a
// piece of gossip (what OnGossip returned) has to go: it says what each
// connection gets.
type relayPlanner interface {
	relayPlan(src PeerName, delta GossipData) map[*LocalConnection]GossipData
}

// tellNeighbours sends update to every neighbour.
func (c *gossipChannel) tellNeighbours(update GossipData) {
	for _, conn := range c.router.Peers.allConns() {
		conn.queueGossip(c, c.router.Ourself.Name, update, false)
	}
}

// surrogateGossiper stands in for a channel we have no gossiper for: it
// relays broadcasts and gossip (dropping repeats of gossip seen within a
// gossip interval) and ignores unicasts.
type surrogateGossiper struct {
	window time.Duration
	mu     sync.Mutex
	seen   []seenUpdate
}

type seenUpdate struct {
	hash uint64
	data []byte
	at   time.Time
}

const maxSurrogateSeen = 1024

func (*surrogateGossiper) OnGossipUnicast(PeerName, []byte) error { return nil }

func (*surrogateGossiper) OnGossipBroadcast(_ PeerName, update []byte) (GossipData, error) {
	return &opaqueData{[][]byte{update}}, nil
}

func (*surrogateGossiper) Gossip() GossipData { return nil }

func (s *surrogateGossiper) OnGossip(update []byte) (GossipData, error) {
	h := fnv.New64a()
	h.Write(update)
	sum := h.Sum64()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.seen {
		if p.hash == sum && bytes.Equal(p.data, update) {
			return nil, nil
		}
	}
	keep := 0
	for keep < len(s.seen) && (now.Sub(s.seen[keep].at) > s.window || len(s.seen)-keep >= maxSurrogateSeen) {
		keep++
	}
	s.seen = append(s.seen[keep:], seenUpdate{sum, update, now})
	return &opaqueData{[][]byte{update}}, nil
}

// opaqueData is gossip we relay without understanding it.
type opaqueData struct{ msgs [][]byte }

func (d *opaqueData) Encode() [][]byte { return d.msgs }

func (d *opaqueData) Merge(o GossipData) GossipData {
	other, ok := o.(*opaqueData)
	if !ok {
		return d
	}
	msgs := make([][]byte, 0, len(d.msgs)+len(other.msgs))
	return &opaqueData{append(append(msgs, d.msgs...), other.msgs...)}
}
