// Package meshgate owns what a TCP connection to the mesh port may do
// before mesh has authenticated it: how long it may stay silent, how many
// such connections one address and everyone together may hold, and which
// frame lengths may reach mesh's handshake, which allocates whatever length
// it reads (up to 10 MB a frame) before it knows who is talking.
//
// A Gate accepts from a listener without delay, waits a few seconds for the
// protocol header, then hands mesh one end of a socket pair (see pairConn)
// and copies between it and the real connection: through a Scanner until
// mesh calls the overlay's PrepareConnection (the caller then says
// Authenticated), straight through after. Rejections are counted in Stats
// and logged at most once per logEvery, never once per connection.
package meshgate

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Config bounds the connections a Gate admits. The zero value of each
// field is the default beside it.
type Config struct {
	// MinVersion and MaxVersion are mesh's protocol versions (1 and 2).
	MinVersion, MaxVersion byte
	// MaxFrame bounds each handshake frame (64 KiB; a real handshake's
	// features frame is a few hundred bytes).
	MaxFrame int
	// MaxBytes bounds all bytes a connection passes to mesh before it is
	// authenticated (256 KiB).
	MaxBytes int
	// HeaderTimeout is how long a new connection may take to send the
	// protocol header (2.5 s): peers send it at once.
	HeaderTimeout time.Duration
	// HandshakeTimeout is how long a connection may take from accept to
	// authentication (10 s, mesh's own header timeout).
	HandshakeTimeout time.Duration
	// MaxPending caps the connections not yet authenticated (256), and
	// MaxPendingPerSource those from one IP address (16). Over a cap, the
	// oldest of them is closed, one still silent first, so that a flood
	// cannot keep a real peer out.
	MaxPending, MaxPendingPerSource int
	// Logger receives the rate-limited summaries; nil discards them.
	Logger *slog.Logger
}

const (
	defaultMaxFrame         = 64 << 10
	defaultMaxBytes         = 256 << 10
	defaultHeaderTimeout    = 2500 * time.Millisecond
	defaultHandshakeTimeout = 10 * time.Second
	defaultMaxPending       = 256
	defaultMaxPerSource     = 16

	// logEvery spaces the summaries of rejected connections.
	logEvery = 10 * time.Second
	// bufSize is the copy buffer of a connection handed to mesh.
	bufSize = 16 << 10
	// closeWait bounds how long Close waits for connections' goroutines.
	closeWait = 5 * time.Second
)

func (c *Config) fill() {
	if c.MinVersion == 0 {
		c.MinVersion = 1
	}
	if c.MaxVersion == 0 {
		c.MaxVersion = 2
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = defaultMaxFrame
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = defaultMaxBytes
	}
	c.MaxBytes = max(c.MaxBytes, c.MaxFrame+64)
	if c.HeaderTimeout <= 0 {
		c.HeaderTimeout = defaultHeaderTimeout
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = defaultHandshakeTimeout
	}
	if c.MaxPending <= 0 {
		c.MaxPending = defaultMaxPending
	}
	if c.MaxPendingPerSource <= 0 {
		c.MaxPendingPerSource = defaultMaxPerSource
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Stats counts what a Gate did with the connections it accepted.
type Stats struct {
	Accepted      uint64 // accepted from the listener
	Authenticated uint64 // reached the overlay: mesh finished its handshake
	Silent        uint64 // no protocol header within HeaderTimeout
	NotMesh       uint64 // the header or encryption flag is not mesh's
	Oversize      uint64 // a handshake frame above MaxFrame or MaxBytes
	Timeout       uint64 // not authenticated within HandshakeTimeout
	Evicted       uint64 // closed to make room, over MaxPending(PerSource)
}

// Gate admits connections to mesh. Build it with New; all methods are safe
// for concurrent use.
type Gate struct {
	cfg  Config
	hand func(*net.TCPConn)

	mu       sync.Mutex
	closed   bool
	pending  map[*conn]struct{}
	bySource map[netip.Addr]int
	byAddr   map[string]*conn // remote HOST:PORT of those handed to mesh
	closing  chan struct{}
	wg       sync.WaitGroup

	accepted, authenticated, silent, notMesh, oversize, timeout, evicted atomic.Uint64
	lastLog                                                              atomic.Int64 // unix nanoseconds
	logMu                                                                sync.Mutex   // reject runs under mu too
	logged                                                               Stats        // under logMu: totals at the last summary
}

// conn is one accepted connection until it is authenticated or closed.
type conn struct {
	real   *net.TCPConn
	src    netip.Addr
	key    string
	at     time.Time
	talked atomic.Bool // sent its header
	gone   atomic.Bool // evicted or closed by the Gate: not counted again
	authed chan struct{}
}

// New returns a Gate that hands each admitted connection to hand, which
// must return promptly (mesh's accept step starts a goroutine and does).
func New(cfg Config, hand func(*net.TCPConn)) *Gate {
	cfg.fill()
	return &Gate{
		cfg:      cfg,
		hand:     hand,
		pending:  map[*conn]struct{}{},
		bySource: map[netip.Addr]int{},
		byAddr:   map[string]*conn{},
		closing:  make(chan struct{}),
	}
}

// Check reports whether this build can hand connections to mesh through a
// socket pair (see pairConn); a Gate that cannot refuses every connection.
func Check() error {
	a, b, err := pairConn(&net.TCPAddr{}, &net.TCPAddr{})
	if err != nil {
		return err
	}
	a.Close()
	b.Close()
	return nil
}

// Serve accepts connections from ln until ln is closed, then returns nil.
// Accept errors (out of file descriptors, say) are waited out, not spun on.
func (g *Gate) Serve(ln *net.TCPListener) error {
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			g.cfg.Logger.Warn("mesh port: accept", "err", err)
			select {
			case <-time.After(backoff):
			case <-g.closing:
				return nil
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		g.accepted.Add(1)
		g.admit(c)
	}
}

// admit adds c to the pending connections, making room if a cap is reached,
// and starts its goroutine.
func (g *Gate) admit(real *net.TCPConn) {
	ap := real.RemoteAddr().(*net.TCPAddr).AddrPort()
	c := &conn{real: real, src: ap.Addr().Unmap(), key: real.RemoteAddr().String(), at: time.Now(), authed: make(chan struct{})}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		real.Close()
		return
	}
	if g.bySource[c.src] >= g.cfg.MaxPendingPerSource {
		g.evictLocked(c.src, true)
	}
	if len(g.pending) >= g.cfg.MaxPending {
		g.evictLocked(netip.Addr{}, false)
	}
	g.pending[c] = struct{}{}
	g.bySource[c.src]++
	g.wg.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.wg.Done()
		g.run(c)
	}()
}

// evictLocked closes the oldest pending connection (from src if bySrc),
// preferring one that has not sent its header: a real peer sends it at
// once, so a flood of silent connections pushes out only its own kind.
func (g *Gate) evictLocked(src netip.Addr, bySrc bool) {
	var oldest, oldestSilent *conn
	for c := range g.pending {
		if bySrc && c.src != src {
			continue
		}
		if oldest == nil || c.at.Before(oldest.at) {
			oldest = c
		}
		if !c.talked.Load() && (oldestSilent == nil || c.at.Before(oldestSilent.at)) {
			oldestSilent = c
		}
	}
	victim := oldestSilent
	if victim == nil {
		victim = oldest
	}
	if victim == nil {
		return
	}
	victim.gone.Store(true)
	g.forgetLocked(victim)
	victim.real.Close()
	g.reject(&g.evicted)
}

func (g *Gate) forgetLocked(c *conn) {
	if _, ok := g.pending[c]; !ok {
		return
	}
	delete(g.pending, c)
	if g.bySource[c.src]--; g.bySource[c.src] <= 0 {
		delete(g.bySource, c.src)
	}
	if g.byAddr[c.key] == c {
		delete(g.byAddr, c.key)
	}
}

func (g *Gate) forget(c *conn) {
	g.mu.Lock()
	g.forgetLocked(c)
	g.mu.Unlock()
}

// Authenticated tells the Gate that mesh finished the handshake of the
// inbound connection from remote: its bytes now go to mesh unchecked. Call
// it from the overlay's PrepareConnection; other addresses are ignored.
func (g *Gate) Authenticated(remote net.Addr) {
	if remote == nil {
		return
	}
	g.mu.Lock()
	c := g.byAddr[remote.String()]
	if c != nil {
		g.forgetLocked(c)
	}
	g.mu.Unlock()
	if c == nil {
		return
	}
	g.authenticated.Add(1)
	close(c.authed)
	_ = c.real.SetReadDeadline(time.Time{}) // wakes a read waiting on it
}

// run is one connection's life: the header, then mesh, then the copying.
func (g *Gate) run(c *conn) {
	defer g.forget(c)
	real := c.real
	_ = real.SetLinger(0) // as mesh does: reset, do not linger, on close
	var hdr [HeaderLen]byte
	_ = real.SetReadDeadline(c.at.Add(g.cfg.HeaderTimeout))
	if _, err := io.ReadFull(real, hdr[:]); err != nil {
		real.Close()
		if !c.gone.Load() {
			g.reject(&g.silent)
		}
		return
	}
	c.talked.Store(true)
	s := &Scanner{MinVersion: g.cfg.MinVersion, MaxVersion: g.cfg.MaxVersion, MaxFrame: g.cfg.MaxFrame, MaxBytes: g.cfg.MaxBytes}
	if _, err := s.Scan(hdr[:]); err != nil {
		real.Close()
		g.reject(&g.notMesh)
		return
	}
	meshSide, ours, err := pairConn(real.LocalAddr().(*net.TCPAddr), real.RemoteAddr().(*net.TCPAddr))
	if err != nil {
		real.Close()
		g.cfg.Logger.Error("mesh port: cannot hand a connection to mesh", "err", err)
		return
	}
	_ = real.SetReadDeadline(c.at.Add(g.cfg.HandshakeTimeout))
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		real.Close()
		meshSide.Close()
		ours.Close()
		return
	}
	if _, ok := g.pending[c]; !ok { // evicted meanwhile
		g.mu.Unlock()
		real.Close()
		meshSide.Close()
		ours.Close()
		return
	}
	g.byAddr[c.key] = c
	g.mu.Unlock()

	if _, err := ours.Write(hdr[:]); err != nil {
		real.Close()
		meshSide.Close()
		ours.Close()
		return
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		// What mesh sends needs no checking; its end closing ends both.
		_, _ = io.Copy(real, ours)
		real.Close()
		ours.Close()
	}()
	g.hand(meshSide)
	g.pumpIn(c, s, ours)
	real.Close()
	ours.Close()
}

// pumpIn copies from the real connection to mesh's end, through s until c
// is authenticated.
func (g *Gate) pumpIn(c *conn, s *Scanner, ours *net.UnixConn) {
	buf := make([]byte, bufSize)
	have := 0
	for {
		select {
		case <-c.authed:
			if have > 0 {
				if _, err := ours.Write(buf[:have]); err != nil {
					return
				}
			}
			_, _ = io.Copy(ours, c.real)
			return
		default:
		}
		n, err := s.Scan(buf[:have])
		if n > 0 {
			if _, werr := ours.Write(buf[:n]); werr != nil {
				return
			}
			have = copy(buf, buf[n:have])
		}
		switch {
		case errors.Is(err, ErrHold):
			if !g.hold(c) {
				return
			}
			continue
		case errors.Is(err, ErrOversize):
			g.reject(&g.oversize)
			return
		case err != nil:
			g.reject(&g.notMesh)
			return
		}
		m, err := c.real.Read(buf[have:])
		have += m
		if err != nil && m == 0 {
			select {
			case <-c.authed: // the deadline was lifted under the read
				continue
			default:
			}
			if errors.Is(err, os.ErrDeadlineExceeded) && !c.gone.Load() {
				g.reject(&g.timeout)
			}
			return
		}
	}
}

// hold waits for c's authentication, or its handshake deadline, which it
// reports as false.
func (g *Gate) hold(c *conn) bool {
	t := time.NewTimer(time.Until(c.at.Add(g.cfg.HandshakeTimeout)))
	defer t.Stop()
	select {
	case <-c.authed:
		return true
	case <-t.C:
		g.reject(&g.timeout)
		return false
	case <-g.closing:
		return false
	}
}

// reject counts one rejection and logs a summary if none was logged for
// logEvery.
func (g *Gate) reject(counter *atomic.Uint64) {
	counter.Add(1)
	now := time.Now().UnixNano()
	last := g.lastLog.Load()
	if now-last < int64(logEvery) || !g.lastLog.CompareAndSwap(last, now) {
		return
	}
	st := g.Stats()
	g.logMu.Lock()
	prev := g.logged
	g.logged = st
	g.logMu.Unlock()
	g.cfg.Logger.Warn("mesh port: connections refused before their handshake (since the last such line; see the report's handshake_* drops)",
		"silent", st.Silent-prev.Silent, "not_mesh", st.NotMesh-prev.NotMesh, "oversize", st.Oversize-prev.Oversize,
		"timeout", st.Timeout-prev.Timeout, "evicted", st.Evicted-prev.Evicted)
}

// Stats returns the Gate's counters.
func (g *Gate) Stats() Stats {
	return Stats{
		Accepted:      g.accepted.Load(),
		Authenticated: g.authenticated.Load(),
		Silent:        g.silent.Load(),
		NotMesh:       g.notMesh.Load(),
		Oversize:      g.oversize.Load(),
		Timeout:       g.timeout.Load(),
		Evicted:       g.evicted.Load(),
	}
}

// Pending is the number of connections not yet authenticated.
func (g *Gate) Pending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.pending)
}

// Close closes the connections still pending and waits (up to closeWait)
// for every connection's goroutines, those of authenticated connections
// included: they end when mesh closes its end. The listener is the
// caller's to close.
func (g *Gate) Close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	close(g.closing)
	for c := range g.pending {
		c.gone.Store(true)
		c.real.Close()
	}
	g.mu.Unlock()
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
		g.cfg.Logger.Warn("mesh port: connections still open after close")
	}
}
