package router

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"weavenet/mesh"
)

// How a Node sits between the mesh and its Router.
//
// The listener. The Node owns it, and its gossip node serves it with the
// mesh's Router.Serve, which bounds connections in their handshake (silent
// ones, floods, oversized frames) before anything is believed; Close
// closes it, so a Node gives its port back.
//
// The connections. The Router is the mesh's Overlay through nodeOverlay,
// which wraps each connection so that the Node can tell its subscribers
// when it is established or ends, and fail it with a reason of its own.

// nodeOverlay is the mesh.Overlay of a Node: its Router, with each
// connection wrapped in a nodeConn.
type nodeOverlay struct{ n *Node }

func (o nodeOverlay) AddFeaturesTo(f map[string]string) { o.n.router.AddFeaturesTo(f) }
func (o nodeOverlay) Diagnostics() interface{}          { return o.n.router.Diagnostics() }
func (o nodeOverlay) Stop()                             {}

func (o nodeOverlay) PrepareConnection(p mesh.OverlayConnectionParams) (mesh.OverlayConnection, error) {
	n := o.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, net.ErrClosed // mesh drops the connection
	}
	addr := ""
	if p.RemoteAddr != nil {
		addr = p.RemoteAddr.String()
	}
	inner, err := n.router.PrepareConnection(p)
	if err != nil {
		n.note(Event{Kind: ConnectionFailed, Peer: p.RemotePeer.Name.String(), NickName: p.RemotePeer.NickName, Addr: addr, Err: err})
		return nil, err
	}
	c := &nodeConn{
		OverlayConnection: inner,
		n:                 n,
		peer:              p.RemotePeer.Name.String(),
		nick:              p.RemotePeer.NickName,
		addr:              addr,
		errs:              make(chan error, 1),
		done:              make(chan struct{}),
	}
	n.wg.Add(1)
	go func() { defer n.wg.Done(); c.watch() }()
	return c, nil
}

// nodeConn is one connection as mesh sees it: the Router's forwarder, with
// errors passed through a channel of the Node's so that the Node can add
// its own, and Stop reported to subscribers.
type nodeConn struct {
	mesh.OverlayConnection
	n          *Node
	peer, nick string
	addr       string
	errs       chan error // what mesh reads; one error ends the connection
	done       chan struct{}
	stopOnce   sync.Once

	established atomic.Bool
	mu          sync.Mutex
	cause       error // the first error handed to mesh
}

func (c *nodeConn) ErrorChannel() <-chan error { return c.errs }

// fail hands err to mesh, which tears the connection down.
func (c *nodeConn) fail(err error) {
	c.mu.Lock()
	if c.cause == nil {
		c.cause = err
	}
	c.mu.Unlock()
	select {
	case c.errs <- err:
	default: // mesh already has one
	}
}

// watch follows the forwarder until mesh stops the connection, or fails it
// when the Node closes; it returns then, and the mesh's Close stops the
// connection.
func (c *nodeConn) watch() {
	established := c.OverlayConnection.EstablishedChannel()
	inner := c.OverlayConnection.ErrorChannel()
	for {
		select {
		case <-established:
			established = nil
			c.established.Store(true)
			c.n.note(Event{Kind: ConnectionEstablished, Peer: c.peer, NickName: c.nick, Addr: c.addr})
		case err := <-inner:
			inner = nil
			c.fail(err)
		case <-c.n.closing:
			c.fail(errNodeClosed)
			return
		case <-c.done:
			return
		}
	}
}

var errNodeClosed = errors.New("node closed")

func (c *nodeConn) Stop() {
	c.stopOnce.Do(func() {
		close(c.done)
		c.OverlayConnection.Stop()
		c.mu.Lock()
		cause := c.cause
		c.mu.Unlock()
		kind := ConnectionFailed
		if c.established.Load() {
			kind = ConnectionLost
		}
		c.n.note(Event{Kind: kind, Peer: c.peer, NickName: c.nick, Addr: c.addr, Err: cause})
	})
}
