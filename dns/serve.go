package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// Serving DNS.
//
//	UDP: one reader goroutine; each datagram is copied and handled in its
//	     own goroutine (at most maxUDPWorkers at once, further datagrams
//	     are dropped and counted), which writes the reply.
//	TCP: one acceptor goroutine; one goroutine per connection (at most
//	     maxTCPConns) reads length-prefixed queries and answers them in
//	     order until the client closes or is idle for tcpIdleTimeout.
//	Both call handle: unpack, validate, run the chain (zone, forwarder),
//	fit the answer to the transport (truncating with TC for UDP), pack.
//
// Close cancels in-flight forwarding, closes the sockets and every TCP
// connection, and waits for all of these goroutines.

const (
	maxUDPWorkers  = 256
	maxTCPConns    = 128
	tcpIdleTimeout = 10 * time.Second
	writeTimeout   = 5 * time.Second
	// ednsUDPSize is the UDP payload size we advertise and the most we
	// send over UDP even if a client offers more (DNS flag day 2020).
	ednsUDPSize = 1232
)

// serving is the state of one Serve call.
type serving struct {
	pc     net.PacketConn
	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{}

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Start listens on addr over UDP and TCP (port 0 picks a port free for
// both) and serves in the background until Close. Addr reports the
// address.
func (s *Server) Start(addr netip.AddrPort) error {
	if !addr.IsValid() {
		return errors.New("dns: Start needs an address such as 172.17.0.1:53")
	}
	pc, ln, err := listenPair(addr)
	if err != nil {
		return err
	}
	if err := s.Serve(pc, ln); err != nil {
		pc.Close()
		ln.Close()
		return err
	}
	return nil
}

func listenPair(addr netip.AddrPort) (net.PacketConn, net.Listener, error) {
	udp, tcp := "udp4", "tcp4"
	if !addr.Addr().Is4() {
		udp, tcp = "udp6", "tcp6"
	}
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenUDP(udp, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listen on udp %v: %w", addr, err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		ln, err := net.ListenTCP(tcp, net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr.Addr(), port)))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if addr.Port() != 0 || attempt == 20 {
			return nil, nil, fmt.Errorf("dns: listen on tcp %v: %w", netip.AddrPortFrom(addr.Addr(), port), err)
		}
	}
}

// Serve answers DNS on pc and ln (either may be nil) in the background
// until Close, and takes ownership of both. Addr then reports pc's (or
// ln's) local address. It fails if the server is already serving or was
// closed (net.ErrClosed).
func (s *Server) Serve(pc net.PacketConn, ln net.Listener) error {
	if pc == nil && ln == nil {
		return errors.New("dns: Serve needs a packet conn or a listener")
	}
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	switch {
	case s.srvDone:
		return fmt.Errorf("dns: serve: %w", net.ErrClosed)
	case s.srv != nil:
		return errors.New("dns: already serving; Close first")
	}
	var local netip.AddrPort
	if pc != nil {
		if a, ok := pc.LocalAddr().(*net.UDPAddr); ok {
			local = a.AddrPort()
		}
	} else if a, ok := ln.Addr().(*net.TCPAddr); ok {
		local = a.AddrPort()
	}
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	s.addr.Store(&local)
	srv := &serving{pc: pc, ln: ln, sem: make(chan struct{}, maxUDPWorkers), conns: map[net.Conn]struct{}{}}
	srv.ctx, srv.cancel = context.WithCancel(context.Background())
	s.srv = srv
	if pc != nil {
		srv.wg.Add(1)
		go s.serveUDP(srv)
	}
	if ln != nil {
		srv.wg.Add(1)
		go s.serveTCP(srv)
	}
	s.log.Info("serving DNS", "addr", local, "domain", s.domain)
	return nil
}

// Addr returns the address DNS is served on, or the zero AddrPort.
func (s *Server) Addr() netip.AddrPort {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return netip.AddrPort{}
}

// Close stops serving DNS and waits until every serving goroutine has
// ended. The table and gossip keep working. Close is idempotent; Serve and
// Start fail with net.ErrClosed afterwards.
func (s *Server) Close() error {
	s.srvMu.Lock()
	srv := s.srv
	s.srv, s.srvDone = nil, true
	s.srvMu.Unlock()
	if srv == nil {
		return nil
	}
	srv.cancel()
	if srv.pc != nil {
		srv.pc.Close()
	}
	if srv.ln != nil {
		srv.ln.Close()
	}
	srv.mu.Lock()
	srv.closed = true
	for c := range srv.conns {
		c.Close()
	}
	srv.mu.Unlock()
	srv.wg.Wait()
	s.addr.Store(nil)
	return nil
}

// ListenAndServe is Start, then Close when ctx is done. It returns nil
// after a clean shutdown.
func (s *Server) ListenAndServe(ctx context.Context, addr netip.AddrPort) error {
	if err := s.Start(addr); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Close()
}

func (s *Server) serveUDP(srv *serving) {
	defer srv.wg.Done()
	buf := make([]byte, mdns.MaxMsgSize)
	for {
		n, from, err := srv.pc.ReadFrom(buf)
		if err != nil {
			if !s.pause(srv, "udp", err) {
				return
			}
			continue
		}
		select {
		case srv.sem <- struct{}{}:
		default:
			s.stats.queries.Add(1)
			s.stats.dropped.Add(1)
			continue
		}
		pkt := make([]byte, n)
		copy(pkt, buf[:n])
		srv.wg.Add(1)
		go func() {
			defer srv.wg.Done()
			defer func() { <-srv.sem }()
			if resp := s.handle(srv.ctx, pkt, false); resp != nil {
				srv.pc.SetWriteDeadline(time.Now().Add(writeTimeout))
				srv.pc.WriteTo(resp, from)
			}
		}()
	}
}

// pause decides what a failed read or accept means: false when the socket
// is closed (the loop ends), otherwise it logs and backs off briefly.
func (s *Server) pause(srv *serving, what string, err error) bool {
	if errors.Is(err, net.ErrClosed) || srv.ctx.Err() != nil {
		return false
	}
	s.log.Warn("dns socket error", "proto", what, "err", err)
	select {
	case <-srv.ctx.Done():
		return false
	case <-time.After(50 * time.Millisecond):
		return true
	}
}

func (s *Server) serveTCP(srv *serving) {
	defer srv.wg.Done()
	for {
		c, err := srv.ln.Accept()
		if err != nil {
			if !s.pause(srv, "tcp", err) {
				return
			}
			continue
		}
		srv.mu.Lock()
		ok := !srv.closed && len(srv.conns) < maxTCPConns
		if ok {
			srv.conns[c] = struct{}{}
			srv.wg.Add(1)
		}
		srv.mu.Unlock()
		if !ok {
			c.Close()
			continue
		}
		go func() {
			defer srv.wg.Done()
			s.serveConn(srv, c)
			srv.mu.Lock()
			delete(srv.conns, c)
			srv.mu.Unlock()
			c.Close()
		}()
	}
}

// serveConn answers the queries of one TCP connection in order.
func (s *Server) serveConn(srv *serving, c net.Conn) {
	var lenBuf [2]byte
	for {
		c.SetReadDeadline(time.Now().Add(tcpIdleTimeout))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(lenBuf[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		resp := s.handle(srv.ctx, msg, true)
		if resp == nil {
			return // nothing sensible to say: hang up
		}
		out := make([]byte, 2+len(resp))
		binary.BigEndian.PutUint16(out, uint16(len(resp)))
		copy(out[2:], resp)
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// handle answers one raw DNS message; tcp says which transport it came
// over, which decides the size limit. It returns the packed reply, or nil
// when none must be sent (a response, or garbage without a header). raw is
// only read during the call; the result is the caller's.
func (s *Server) handle(ctx context.Context, raw []byte, tcp bool) []byte {
	s.stats.queries.Add(1)
	req := new(mdns.Msg)
	if err := req.Unpack(raw); err != nil {
		s.stats.malformed.Add(1)
		return formErr(raw)
	}
	if req.Response {
		s.stats.malformed.Add(1)
		return nil
	}
	var resp *mdns.Msg
	opt := req.IsEdns0()
	switch {
	case len(req.Question) != 1:
		s.stats.malformed.Add(1)
		resp = new(mdns.Msg).SetRcodeFormatError(req)
	case req.Opcode != mdns.OpcodeQuery:
		resp = reply(req, false)
		resp.Rcode = mdns.RcodeNotImplemented
	case opt != nil && opt.Version() != 0:
		resp = reply(req, false)
		resp.Rcode = mdns.RcodeBadVers
	default:
		for _, h := range s.chain {
			if resp = h.serveDNS(ctx, req); resp != nil {
				break
			}
		}
	}
	return s.fit(req, resp, tcp)
}

// fit adapts resp to the transport and packs it: EDNS0 is answered with
// EDNS0 and only then, and the message is truncated (TC set) to the size
// the client can take: 512 bytes or its EDNS0 size over UDP (at most
// ednsUDPSize), 65535 over TCP.
func (s *Server) fit(req, resp *mdns.Msg, tcp bool) []byte {
	limit := mdns.MinMsgSize
	opt := req.IsEdns0()
	for i := len(resp.Extra) - 1; i >= 0; i-- {
		if resp.Extra[i].Header().Rrtype == mdns.TypeOPT {
			resp.Extra = append(resp.Extra[:i], resp.Extra[i+1:]...)
		}
	}
	if opt != nil {
		resp.SetEdns0(ednsUDPSize, opt.Do())
		limit = max(limit, min(int(opt.UDPSize()), ednsUDPSize))
	}
	if tcp {
		limit = mdns.MaxMsgSize
	}
	resp.Truncate(limit)
	if resp.Truncated {
		s.stats.truncated.Add(1)
	}
	b, err := resp.Pack()
	if err != nil || len(b) > limit {
		s.log.Debug("cannot pack answer", "err", err, "len", len(b))
		fail := reply(req, false)
		fail.Rcode = mdns.RcodeServerFailure
		if opt != nil {
			fail.SetEdns0(ednsUDPSize, false)
		}
		if b, err = fail.Pack(); err != nil {
			return nil
		}
	}
	return b
}

// formErr answers a message that did not unpack with FORMERR, if at least
// its header is there and it is not itself a response.
func formErr(raw []byte) []byte {
	if len(raw) < 12 || raw[2]&0x80 != 0 {
		return nil
	}
	m := new(mdns.Msg)
	m.Id = binary.BigEndian.Uint16(raw)
	m.Response = true
	m.Opcode = int(raw[2]>>3) & 0xf
	m.Rcode = mdns.RcodeFormatError
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	return b
}
