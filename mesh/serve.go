package mesh

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// Inbound connections. The caller owns the listener; Serve accepts until
// it is closed. Accepting never waits on anything but the listener: a
// connection in its handshake counts against a total and a per-address
// cap, and over a cap the oldest connection that has not even sent its
// protocol header (else the oldest) is closed to make room, so silent
// connections cannot keep a real peer out.

type pendingConn struct {
	conn    net.Conn
	src     netip.Addr
	heard   atomic.Bool // its protocol header arrived
	evicted atomic.Bool
}

// HandshakeStats count inbound connections by how their handshake ended,
// and outbound handshakes that failed.
type HandshakeStats struct {
	Accepted       uint64 // accepted from a listener
	Authenticated  uint64 // completed the handshake and joined
	Silent         uint64 // no protocol header in time
	NotMesh        uint64 // header, encryption flag or fields not mesh's
	Oversize       uint64 // a frame announced above the bound
	Timeout        uint64 // the handshake took too long
	Evicted        uint64 // closed to make room over a cap
	Refused        uint64 // password mismatch, refused by SessionPassword, name collision...
	Failed         uint64 // other errors (the remote hung up...)
	OutboundFailed uint64 // dials and handshakes we started that failed
	// OutboundHandshakeFailed are the handshakes among OutboundFailed.
	OutboundHandshakeFailed uint64
	// UnknownTags are messages with a tag we do not know (ignored);
	// DroppedGossip are messages on channels beyond the surrogate cap;
	// LoopedBroadcasts are broadcasts that came back round a loop
	// (Router.handleGossip), dropped.
	UnknownTags, DroppedGossip, LoopedBroadcasts uint64
}

// HandshakeStats returns the counters.
func (r *Router) HandshakeStats() HandshakeStats {
	s := &r.stats
	return HandshakeStats{
		Accepted: s.accepted.Load(), Authenticated: s.authenticated.Load(), Silent: s.silent.Load(),
		NotMesh: s.notMesh.Load(), Oversize: s.oversize.Load(), Timeout: s.timeout.Load(),
		Evicted: s.evicted.Load(), Refused: s.refused.Load(), Failed: s.failed.Load(),
		OutboundFailed: s.outboundFailed.Load(), OutboundHandshakeFailed: s.outboundHandshakeFailed.Load(), UnknownTags: s.unknownTags.Load(), DroppedGossip: s.droppedGossip.Load(),
		LoopedBroadcasts: s.loopedBroadcasts.Load(),
	}
}

// Serve accepts connections from ln until ln is closed (or the router is:
// Close closes ln), backing off on accept errors. It returns nil once the
// router is closed, else the error that ended it.
func (r *Router) Serve(ln net.Listener) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return net.ErrClosed
	}
	r.listeners[ln] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.listeners, ln)
		r.mu.Unlock()
	}()
	backoff := time.Duration(0)
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-r.closing:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t := time.NewTimer(backoff)
			select {
			case <-r.closing:
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		backoff = 0
		r.stats.accepted.Add(1)
		r.admit(c)
	}
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

func (r *Router) admit(tcp net.Conn) {
	p := &pendingConn{conn: tcp, src: addrOf(tcp.RemoteAddr())}
	r.mu.Lock()
	if n := r.countFrom(p.src); n >= r.MaxPendingPerSource {
		r.evictLocked(func(q *pendingConn) bool { return q.src == p.src })
	}
	if len(r.pending) >= r.MaxPendingHandshakes {
		r.evictLocked(func(*pendingConn) bool { return true })
	}
	r.pending = append(r.pending, p)
	r.mu.Unlock()
	c := newLocalConnection(r, tcp, false)
	deadline := time.Now().Add(handshakeTimeout)
	ok := r.goConn(c, func() {
		c.run(true, deadline, func() { p.heard.Store(true) }, func(err error) {
			r.mu.Lock()
			for i, q := range r.pending {
				if q == p {
					r.pending = append(r.pending[:i], r.pending[i+1:]...)
					break
				}
			}
			r.mu.Unlock()
			r.countInbound(p, err)
			if f := r.OnConnectionError; f != nil && err != nil {
				f(c.remoteAddr, false, err)
			}
		})
	})
	if !ok {
		r.mu.Lock()
		if n := len(r.pending); n > 0 && r.pending[n-1] == p {
			r.pending = r.pending[:n-1]
		}
		r.mu.Unlock()
	}
}

func (r *Router) countFrom(src netip.Addr) int {
	n := 0
	for _, q := range r.pending {
		if q.src == src {
			n++
		}
	}
	return n
}

// evictLocked closes the oldest pending connection in scope that has not
// sent its header, else the oldest in scope.
func (r *Router) evictLocked(in func(*pendingConn) bool) {
	var victim *pendingConn
	for _, q := range r.pending {
		if q.evicted.Load() || !in(q) {
			continue
		}
		if !q.heard.Load() {
			victim = q
			break
		}
		if victim == nil {
			victim = q
		}
	}
	if victim == nil {
		return
	}
	victim.evicted.Store(true)
	victim.conn.Close()
	// It leaves the list when its handshake notices; until then it must
	// not count, or one caller could evict many.
	for i, q := range r.pending {
		if q == victim {
			r.pending = append(r.pending[:i], r.pending[i+1:]...)
			break
		}
	}
}

func (r *Router) countInbound(p *pendingConn, err error) {
	s := &r.stats
	var he *handshakeError
	switch {
	case err == nil:
		s.authenticated.Add(1)
	case p.evicted.Load():
		s.evicted.Add(1)
	case errors.As(err, &he):
		switch he.kind {
		case failSilent:
			s.silent.Add(1)
		case failNotMesh:
			s.notMesh.Add(1)
		case failOversize:
			s.oversize.Add(1)
		case failTimeout:
			s.timeout.Add(1)
		case failRefused:
			s.refused.Add(1)
		default:
			s.failed.Add(1)
		}
	default:
		var pe *peerNameCollisionError
		if errors.As(err, &pe) || errors.Is(err, errConnectToSelf) {
			s.refused.Add(1)
		} else {
			s.failed.Add(1)
		}
	}
}
