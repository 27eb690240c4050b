package router

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"weavenet/internal/wallclock"
	"weavenet/mesh"
)

// EventKind says what an Event reports.
type EventKind int

// The events a Node reports to its subscribers.
const (
	// PeerUp: a peer became reachable over established connections,
	// directly or through other peers.
	PeerUp EventKind = iota + 1
	// PeerDown: a peer that was reachable no longer is.
	PeerDown
	// ConnectionEstablished: a direct connection to a peer passed its
	// handshake and its UDP path answers; traffic flows.
	ConnectionEstablished
	// ConnectionFailed: a connection attempt, ours or a peer's, ended
	// before it was established (unreachable address, refused handshake
	// such as another password, no UDP path). Err says why.
	ConnectionFailed
	// ConnectionLost: an established connection ended. Err says why when
	// this end knows (nil when the peer closed it).
	ConnectionLost
)

var eventNames = map[EventKind]string{
	PeerUp: "peer-up", PeerDown: "peer-down",
	ConnectionEstablished: "connection-established", ConnectionFailed: "connection-failed", ConnectionLost: "connection-lost",
}

func (k EventKind) String() string {
	if s, ok := eventNames[k]; ok {
		return s
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is a change in the node's mesh.
type Event struct {
	Kind EventKind
	// Peer and NickName name the peer, when known (a connection that
	// failed before its handshake has only an address).
	Peer, NickName string
	// Addr is the remote HOST:PORT of a connection event.
	Addr string
	// Err is why a connection failed or was lost.
	Err error
	// Missed counts the events this subscriber lost just before this one
	// because its channel was full.
	Missed int
}

func (e Event) String() string {
	s := e.Kind.String()
	if e.Peer != "" {
		s += " " + e.Peer + "(" + e.NickName + ")"
	}
	if e.Addr != "" {
		s += " " + e.Addr
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// subscriberBuffer is how many events a subscriber's channel holds.
const subscriberBuffer = 64

// peerPoll is how often the event loop looks at the peers even without a
// signal from mesh: a backstop, in case a change reaches no mesh hook.
const peerPoll = time.Second

type subscriber struct {
	ch     chan Event
	missed int
	stop   func() bool // releases the context.AfterFunc
}

// Subscribe returns a channel of the node's events from now on. The channel
// is closed when ctx is done or the node is closed; nothing else is needed
// to release it. It holds 64 events: a subscriber that falls further behind
// loses events (counted in the next one's Missed) rather than slowing the
// mesh. Events say what changed; Status says how things are.
//
// Peer events come from mesh's route and garbage-collection hooks, checked
// every second as well; connection events from the node's own hooks on
// each connection and on mesh's hook for failed attempts.
func (n *Node) Subscribe(ctx context.Context) <-chan Event {
	s := &subscriber{ch: make(chan Event, subscriberBuffer)}
	n.subMu.Lock()
	defer n.subMu.Unlock()
	if n.subsClosed {
		close(s.ch)
		return s.ch
	}
	n.subs[s] = struct{}{}
	// Runs f on a goroutine of its own when ctx is done, so taking subMu
	// there is fine.
	s.stop = context.AfterFunc(ctx, func() { n.unsubscribe(s) })
	return s.ch
}

func (n *Node) unsubscribe(s *subscriber) {
	n.subMu.Lock()
	defer n.subMu.Unlock()
	if _, ok := n.subs[s]; ok {
		delete(n.subs, s)
		close(s.ch)
	}
}

func (n *Node) closeSubscribers() {
	n.subMu.Lock()
	defer n.subMu.Unlock()
	n.subsClosed = true
	for s := range n.subs {
		s.stop()
		close(s.ch)
		delete(n.subs, s)
	}
}

func (n *Node) publish(e Event) {
	n.subMu.Lock()
	defer n.subMu.Unlock()
	for s := range n.subs {
		e := e
		e.Missed = s.missed
		select {
		case s.ch <- e:
			s.missed = 0
		default:
			s.missed++
		}
	}
}

// note queues an event for the event loop. It never blocks: it is called on
// mesh's goroutines, which must not wait for subscribers.
func (n *Node) note(e Event) {
	select {
	case n.notes <- e:
	default:
	}
}

// connectionError is gossip's hook for connections that failed before the
// overlay saw them.
func (n *Node) connectionError(addr string, err error) {
	n.note(Event{Kind: ConnectionFailed, Addr: addr, Err: err})
}

// signalPeers tells the event loop to look at the peers again. It runs on
// mesh's goroutine: it must not block.
func (n *Node) signalPeers() {
	select {
	case n.peersChanged <- struct{}{}:
	default:
	}
}

func (n *Node) eventLoop() {
	up := map[mesh.PeerName]string{} // reachable peers and their nicknames
	tick := wallclock.NewTicker(peerPoll)
	defer tick.Stop()
	for {
		select {
		case <-n.closing:
			return
		case e := <-n.notes:
			n.publish(e)
		case <-n.peersChanged:
			n.diffPeers(up)
		case <-tick.C:
			n.diffPeers(up)
		}
	}
}

// diffPeers publishes PeerUp and PeerDown for the changes since up, and
// updates up.
func (n *Node) diffPeers(up map[mesh.PeerName]string) {
	m := n.gossip.Mesh
	now := map[mesh.PeerName]string{}
	for _, d := range m.Peers.Descriptions() {
		if d.Self {
			continue
		}
		if _, ok := m.Routes.Unicast(d.Name); ok {
			now[d.Name] = d.NickName
		}
	}
	var events []Event
	for name, nick := range now {
		if _, ok := up[name]; !ok {
			events = append(events, Event{Kind: PeerUp, Peer: name.String(), NickName: nick})
		}
	}
	for name, nick := range up {
		if _, ok := now[name]; !ok {
			events = append(events, Event{Kind: PeerDown, Peer: name.String(), NickName: nick})
			delete(up, name)
		}
	}
	for name, nick := range now {
		up[name] = nick
	}
	slices.SortFunc(events, func(a, b Event) int {
		if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return cmp.Compare(a.Peer, b.Peer)
	})
	for _, e := range events {
		n.publish(e)
	}
}

// relayDevice is the Device of a Node without one: it has no frames of its
// own and drops what it is given.
type relayDevice struct {
	done chan struct{}
	once sync.Once
}

func newRelayDevice() *relayDevice { return &relayDevice{done: make(chan struct{})} }

func (d *relayDevice) Read([]byte) (int, error) {
	<-d.done
	return 0, net.ErrClosed
}

func (d *relayDevice) Write(b []byte) (int, error) { return len(b), nil }

func (d *relayDevice) Close() error {
	d.once.Do(func() { close(d.done) })
	return nil
}
