package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// startServer runs a Server on 127.0.0.1 with a random port; it is closed
// and checked for leftover goroutines when the test ends.
func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Ourself == 0 {
		cfg.Ourself = peerName(t, 1)
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if cfg.Upstream == nil {
		cfg.Upstream = StaticUpstreams(nil)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		checkNoServerGoroutines(t, s)
	})
	return s
}

func query(t *testing.T, s *Server, network, name string, qtype uint16, edns uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg).SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := mdns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, s.Addr().String())
	if err != nil && !(r != nil && r.Truncated) {
		t.Fatalf("%s %s %s: %v", network, name, mdns.TypeToString[qtype], err)
	}
	return r
}

func answerAddrs(r *mdns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *mdns.A:
			out = append(out, rr.A.String())
		case *mdns.AAAA:
			out = append(out, rr.AAAA.String())
		case *mdns.PTR:
			out = append(out, rr.Ptr)
		}
	}
	return out
}

func TestServeA(t *testing.T) {
	s := startServer(t, Config{TTL: 7})
	mustAdd(t, s, "c1", "c1", "10.32.0.1")
	mustAdd(t, s, "c1", "c1", "fd00::1")
	r := query(t, s, "udp", "c1.weave.local.", mdns.TypeA, 0)
	if r.Rcode != mdns.RcodeSuccess || !r.Authoritative || !r.RecursionAvailable {
		t.Fatalf("flags: %v", r)
	}
	if got := answerAddrs(r); !slices.Equal(got, []string{"10.32.0.1"}) {
		t.Fatalf("A = %v", got)
	}
	if ttl := r.Answer[0].Header().Ttl; ttl != 7 {
		t.Fatalf("TTL %d", ttl)
	}
	r = query(t, s, "tcp", "c1.weave.local.", mdns.TypeAAAA, 0)
	if got := answerAddrs(r); !slices.Equal(got, []string{"fd00::1"}) {
		t.Fatalf("AAAA = %v", got)
	}
	r = query(t, s, "udp", "c1.weave.local.", mdns.TypeANY, 0)
	if len(r.Answer) != 2 {
		t.Fatalf("ANY = %v", r.Answer)
	}
}

func TestServeCaseInsensitive(t *testing.T) {
	s := startServer(t, Config{})
	mustAdd(t, s, "c1", "MyHost", "10.32.0.1")
	r := query(t, s, "udp", "mYhOsT.WEAVE.local.", mdns.TypeA, 0)
	if got := answerAddrs(r); !slices.Equal(got, []string{"10.32.0.1"}) {
		t.Fatalf("A = %v (%v)", got, r)
	}
	// The question comes back as asked (0x20 randomisation relies on it).
	if r.Question[0].Name != "mYhOsT.WEAVE.local." || r.Answer[0].Header().Name != "mYhOsT.WEAVE.local." {
		t.Fatalf("names rewritten: %v", r)
	}
}

func TestServeSingleLabelSearch(t *testing.T) {
	s := startServer(t, Config{})
	mustAdd(t, s, "c1", "c1", "10.32.0.1")
	r := query(t, s, "udp", "C1.", mdns.TypeA, 0)
	if got := answerAddrs(r); !slices.Equal(got, []string{"10.32.0.1"}) {
		t.Fatalf("A = %v", got)
	}
	if got := s.Lookup("C1"); len(got) != 1 {
		t.Fatalf("Lookup(C1) = %v", got)
	}
}

func TestServePTR(t *testing.T) {
	s := startServer(t, Config{})
	mustAdd(t, s, "c1", "c1", "10.32.0.1")
	mustAdd(t, s, "c6", "c6", "fd00::6")
	r := query(t, s, "udp", "1.0.32.10.in-addr.arpa.", mdns.TypePTR, 0)
	if got := answerAddrs(r); !slices.Equal(got, []string{"c1.weave.local."}) || r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("PTR = %v (%v)", got, r)
	}
	rev, _ := mdns.ReverseAddr("fd00::6")
	r = query(t, s, "udp", strings.ToUpper(rev), mdns.TypePTR, 0)
	if got := answerAddrs(r); !slices.Equal(got, []string{"c6.weave.local."}) {
		t.Fatalf("PTR6 = %v", got)
	}
}

func TestServeNoDataAndNXDomain(t *testing.T) {
	s := startServer(t, Config{})
	mustAdd(t, s, "c1", "c1", "10.32.0.1")
	mustAdd(t, s, "deep", "a.b", "10.32.0.2")
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
	}{
		{"c1.weave.local.", mdns.TypeMX, mdns.RcodeSuccess},
		{"c1.weave.local.", mdns.TypeAAAA, mdns.RcodeSuccess},
		{"weave.local.", mdns.TypeA, mdns.RcodeSuccess},
		{"b.weave.local.", mdns.TypeA, mdns.RcodeSuccess}, // empty non-terminal
		{"unknown.weave.local.", mdns.TypeA, mdns.RcodeNameError},
		{"unknown.weave.local.", mdns.TypeMX, mdns.RcodeNameError},
		{"x.c1.weave.local.", mdns.TypeA, mdns.RcodeNameError},
	} {
		r := query(t, s, "udp", tc.name, tc.qtype, 0)
		if r.Rcode != tc.rcode || len(r.Answer) != 0 {
			t.Errorf("%s %s: rcode %s, %d answers", tc.name, mdns.TypeToString[tc.qtype], mdns.RcodeToString[r.Rcode], len(r.Answer))
		}
		if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != mdns.TypeSOA || !r.Authoritative {
			t.Errorf("%s: want authoritative answer with SOA, got %v", tc.name, r)
		}
	}
	r := query(t, s, "udp", "weave.local.", mdns.TypeSOA, 0)
	if len(r.Answer) != 1 {
		t.Fatalf("SOA: %v", r)
	}
	if st := s.Counters(); st.NXDomain != 3 {
		t.Fatalf("NXDomain = %d", st.NXDomain)
	}
}

func TestServeRoundRobin(t *testing.T) {
	s := startServer(t, Config{})
	for i := 1; i <= 5; i++ {
		mustAdd(t, s, fmt.Sprintf("web%d", i), "web", fmt.Sprintf("10.32.0.%d", i))
	}
	orders := map[string]bool{}
	for range 20 {
		got := answerAddrs(query(t, s, "udp", "web.weave.local.", mdns.TypeA, 0))
		if len(got) != 5 {
			t.Fatalf("got %v", got)
		}
		orders[strings.Join(got, ",")] = true
	}
	// 20 uniform shuffles of 5 give one order with probability 120^-19.
	if len(orders) < 2 {
		t.Fatalf("the order never varies: %v", orders)
	}
}

func TestServeLargeAnswerTruncatesOverUDP(t *testing.T) {
	s := startServer(t, Config{})
	for i := 1; i <= 50; i++ {
		mustAdd(t, s, fmt.Sprintf("big%d", i), "big", fmt.Sprintf("10.32.1.%d", i))
	}
	r := query(t, s, "udp", "big.weave.local.", mdns.TypeA, 0)
	if !r.Truncated || len(r.Answer) >= 50 {
		t.Fatalf("UDP: TC=%v with %d answers", r.Truncated, len(r.Answer))
	}
	r = query(t, s, "tcp", "big.weave.local.", mdns.TypeA, 0)
	if r.Truncated || len(r.Answer) != 50 {
		t.Fatalf("TCP: TC=%v with %d answers", r.Truncated, len(r.Answer))
	}
	got := answerAddrs(r)
	slices.Sort(got)
	if len(slices.Compact(got)) != 50 {
		t.Fatalf("TCP answers not distinct: %v", got)
	}
	// EDNS0 with room for it: complete over UDP.
	r = query(t, s, "udp", "big.weave.local.", mdns.TypeA, 4096)
	if r.Truncated || len(r.Answer) != 50 || r.IsEdns0() == nil {
		t.Fatalf("EDNS0 UDP: TC=%v with %d answers, opt %v", r.Truncated, len(r.Answer), r.IsEdns0())
	}
	if s.Counters().Truncated != 1 {
		t.Fatalf("Truncated = %d", s.Counters().Truncated)
	}
}

// stubUpstream runs a resolver on 127.0.0.1 answering every A question
// with 192.0.2.1; with truncateUDP its UDP answers are empty and truncated
// so that only TCP gives the answer.
func stubUpstream(t *testing.T, truncateUDP bool) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	h := func(tcp bool) mdns.HandlerFunc {
		return func(w mdns.ResponseWriter, req *mdns.Msg) {
			m := new(mdns.Msg).SetReply(req)
			if truncateUDP && !tcp {
				m.Truncated = true
			} else if req.Question[0].Name == "nx.example.com." {
				m.Rcode = mdns.RcodeNameError
			} else {
				m.Answer = append(m.Answer, &mdns.A{
					Hdr: mdns.RR_Header{Name: req.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60},
					A:   net.IPv4(192, 0, 2, 1)})
			}
			w.WriteMsg(m)
		}
	}
	us := &mdns.Server{PacketConn: pc, Handler: h(false)}
	ts := &mdns.Server{Listener: ln, Handler: h(true)}
	for _, srv := range []*mdns.Server{us, ts} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
	}
	t.Cleanup(func() { us.Shutdown(); ts.Shutdown() })
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func TestServeForwards(t *testing.T) {
	up := stubUpstream(t, false)
	s := startServer(t, Config{Upstream: StaticUpstreams{up}})
	r := query(t, s, "udp", "www.Example.com.", mdns.TypeA, 0)
	if got := answerAddrs(r); !slices.Equal(got, []string{"192.0.2.1"}) || r.Authoritative {
		t.Fatalf("forwarded: %v", r)
	}
	r = query(t, s, "tcp", "nx.example.com.", mdns.TypeA, 0)
	if r.Rcode != mdns.RcodeNameError {
		t.Fatalf("upstream NXDOMAIN not passed on: %v", r)
	}
	// A reverse name not in the table is forwarded too.
	r = query(t, s, "udp", "9.9.9.10.in-addr.arpa.", mdns.TypeA, 0)
	if len(r.Answer) != 1 {
		t.Fatalf("reverse not forwarded: %v", r)
	}
	if n := s.Counters().Forwarded; n != 3 {
		t.Fatalf("Forwarded = %d", n)
	}
}

func TestServeForwardRetriesTCPOnTruncation(t *testing.T) {
	up := stubUpstream(t, true)
	s := startServer(t, Config{Upstream: StaticUpstreams{up}})
	r := query(t, s, "udp", "www.example.com.", mdns.TypeA, 0)
	if got := answerAddrs(r); !slices.Equal(got, []string{"192.0.2.1"}) || r.Truncated {
		t.Fatalf("forwarded: %v", r)
	}
}

func TestServeForwardSkipsDeadUpstream(t *testing.T) {
	dead := blackhole(t)
	up := stubUpstream(t, false)
	s := startServer(t, Config{Upstream: StaticUpstreams{dead, up}, ForwardTimeout: time.Second})
	r := query(t, s, "udp", "www.example.com.", mdns.TypeA, 0)
	if got := answerAddrs(r); !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Fatalf("forwarded: %v", r)
	}
}

// blackhole is a UDP socket that reads queries and never answers.
func blackhole(t *testing.T) netip.AddrPort {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func TestServeServfailWhenUpstreamsDead(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := netip.MustParseAddrPort(pc.LocalAddr().String()) // ICMP port unreachable
	pc.Close()
	for _, cfg := range []Config{
		{Upstream: StaticUpstreams{blackhole(t), blackhole(t)}}, // the default 2s timeout
		{Upstream: StaticUpstreams{closed}},
		{Upstream: StaticUpstreams(nil)},
	} {
		s := startServer(t, cfg)
		for _, network := range []string{"udp", "tcp"} {
			start := time.Now()
			r := query(t, s, network, "www.example.com.", mdns.TypeA, 0)
			if el := time.Since(start); el > 2500*time.Millisecond {
				t.Fatalf("SERVFAIL took %v", el)
			}
			if r.Rcode != mdns.RcodeServerFailure {
				t.Fatalf("rcode %s", mdns.RcodeToString[r.Rcode])
			}
		}
	}
}

func TestServeMalformedQueries(t *testing.T) {
	s := startServer(t, Config{})
	mustAdd(t, s, "c1", "c1", "10.32.0.1")
	conn, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	garbage := [][]byte{
		{},
		{1},
		{0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f}, // truncated question
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{0xab, 0xcd, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0}, // a response
	}
	for _, g := range garbage {
		conn.Write(g)
	}
	// FORMERR comes back for the truncated question and for the HTTP
	// request (its first 12 bytes pass for a header); nothing else.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	ids := map[uint16]bool{}
	for range 2 {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		var m mdns.Msg
		if err := m.Unpack(buf[:n]); err != nil || m.Rcode != mdns.RcodeFormatError {
			t.Fatalf("reply %v, %v", &m, err)
		}
		ids[m.Id] = true
	}
	if !ids[0xabcd] || !ids[0x4745] {
		t.Fatalf("FORMERR for ids %v", ids)
	}
	// Garbage over TCP: the connection is answered or dropped, never hung.
	tc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc.Write([]byte{0, 3, 1, 2, 3, 0, 0})
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := tc.Read(buf); err != nil {
			break
		}
	}
	tc.Close()
	// Multiple questions: FORMERR.
	mq := new(mdns.Msg).SetQuestion("c1.weave.local.", mdns.TypeA)
	mq.Question = append(mq.Question, mq.Question[0])
	r, err := mdns.Exchange(mq, s.Addr().String())
	if err != nil || r.Rcode != mdns.RcodeFormatError {
		t.Fatalf("two questions: %v, %v", r, err)
	}
	// And the server still works.
	if got := answerAddrs(query(t, s, "udp", "c1.weave.local.", mdns.TypeA, 0)); len(got) != 1 {
		t.Fatalf("after garbage: %v", got)
	}
	// Each datagram is served on a goroutine of its own: a dropped one may
	// be counted a moment after later replies went out.
	got := s.Counters().Malformed
	for deadline := time.Now().Add(2 * time.Second); got < 6 && time.Now().Before(deadline); got = s.Counters().Malformed {
		time.Sleep(10 * time.Millisecond)
	}
	if got < 6 {
		t.Fatalf("Malformed = %d, want >= 6", got)
	}
}

func TestServeOtherOpcodesAndClasses(t *testing.T) {
	s := startServer(t, Config{})
	m := new(mdns.Msg).SetQuestion("c1.weave.local.", mdns.TypeA)
	m.Opcode = mdns.OpcodeStatus
	r, err := mdns.Exchange(m, s.Addr().String())
	if err != nil || r.Rcode != mdns.RcodeNotImplemented {
		t.Fatalf("STATUS: %v, %v", r, err)
	}
	m = new(mdns.Msg).SetQuestion("c1.weave.local.", mdns.TypeA)
	m.Question[0].Qclass = mdns.ClassCHAOS
	r, err = mdns.Exchange(m, s.Addr().String())
	if err != nil || r.Rcode != mdns.RcodeRefused {
		t.Fatalf("CHAOS: %v, %v", r, err)
	}
	m = new(mdns.Msg).SetQuestion("c1.weave.local.", mdns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	r, err = mdns.Exchange(m, s.Addr().String())
	if err != nil || r.Rcode != mdns.RcodeBadVers {
		t.Fatalf("EDNS1: %v, %v", r, err)
	}
}

func TestUpstreamExcludesOwnAddress(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	s, err := New(Config{Ourself: peerName(t, 1), Logger: quietLogger(), Upstream: NewResolvConf(path, quietLogger())})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	port := s.Addr().Port()
	conf := "nameserver 127.0.0.1\nnameserver 10.0.2.3\n"
	if port == 53 {
		t.Skip("random port is 53")
	}
	os.WriteFile(path, []byte(conf), 0o644)
	// Port 53 on 127.0.0.1 is not us (we are on another port).
	if got := s.Status().Upstream; len(got) != 2 {
		t.Fatalf("upstreams %v", got)
	}
	// Our own address, as a static list may name it, is dropped.
	self := s.Addr()
	s2, _ := New(Config{Ourself: peerName(t, 1), Logger: quietLogger(),
		Upstream: StaticUpstreams{self, netip.MustParseAddrPort("10.0.2.3:53")}})
	s.Close()
	if err := s2.Start(self); err != nil {
		t.Skipf("cannot rebind %v: %v", self, err)
	}
	defer s2.Close()
	if got := s2.Status().Upstream; !slices.Equal(got, []netip.AddrPort{netip.MustParseAddrPort("10.0.2.3:53")}) {
		t.Fatalf("upstreams %v", got)
	}
}

func TestResolvConfReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	r := NewResolvConf(path, quietLogger())
	if got := r.Upstreams(); got != nil {
		t.Fatalf("missing file: %v", got)
	}
	os.WriteFile(path, []byte("# comment\nsearch example.com\nnameserver 10.0.2.3 # inline\nnameserver fe80::1%eth0\nnameserver bogus\nnameserver 10.0.2.3\n"), 0o644)
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.2.3:53"), netip.MustParseAddrPort("[fe80::1%eth0]:53")}
	if got := r.Upstreams(); !slices.Equal(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	os.WriteFile(path, []byte("nameserver 192.0.2.53\n"), 0o644)
	later := time.Now().Add(time.Hour)
	os.Chtimes(path, later, later)
	if got := r.Upstreams(); !slices.Equal(got, []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")}) {
		t.Fatalf("after change: %v", got)
	}
	os.Remove(path)
	if got := r.Upstreams(); got != nil {
		t.Fatalf("after removal: %v", got)
	}
}

func TestServerLifecycle(t *testing.T) {
	s, err := New(Config{Ourself: peerName(t, 1), Logger: quietLogger(), Upstream: StaticUpstreams(nil)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.ListenAndServe(ctx, netip.MustParseAddrPort("127.0.0.1:0")) }()
	// Keep a TCP connection open over Close: Close must still return.
	var c net.Conn
	for c == nil {
		if a := s.Addr(); a.IsValid() {
			if c, err = net.Dial("tcp", a.String()); err != nil {
				t.Fatal(err)
			}
		} else {
			time.Sleep(time.Millisecond)
		}
	}
	defer c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkNoServerGoroutines(t, s)
	if err := s.Start(netip.MustParseAddrPort("127.0.0.1:0")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
	if s.Addr().IsValid() {
		t.Fatal("address after Close")
	}
	// The table outlives the listener.
	mustAdd(t, s, "c", "c", "10.0.0.1")
	wantLookup(t, s, "c.weave.local.", "10.0.0.1")
}

func TestConfigAndValidation(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without Ourself")
	}
	if _, err := New(Config{Ourself: peerName(t, 1), Domain: "bad..domain"}); !errors.Is(err, ErrBadName) {
		t.Fatalf("bad domain: %v", err)
	}
	s, err := New(Config{Ourself: peerName(t, 1), Domain: "Cluster.Example", Logger: quietLogger(), Upstream: StaticUpstreams(nil)})
	if err != nil {
		t.Fatal(err)
	}
	st := s.Status()
	if st.Domain != "cluster.example." || st.TTL != 1 || st.Entries != 0 {
		t.Fatalf("status %+v", st)
	}
	for _, tc := range []struct {
		container, host, addr string
		want                  error
	}{
		{"c", "x.weave.local.", "10.0.0.1", ErrNotInDomain},
		{"c", "cluster.example.", "10.0.0.1", ErrNotInDomain},
		{"c", "bad_name!", "10.0.0.1", ErrBadName},
		{"c", "", "10.0.0.1", ErrBadName},
		{"", "x", "10.0.0.1", nil},
		{"c", "x", "0.0.0.0", nil},
	} {
		var a netip.Addr
		if tc.addr != "" {
			a = ip(tc.addr)
		}
		err := s.AddEntry(tc.container, tc.host, a)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("AddEntry(%q, %q, %v) = %v, want %v", tc.container, tc.host, tc.addr, err, tc.want)
		}
	}
	if err := s.AddEntry("c", "x", netip.Addr{}); err == nil {
		t.Error("zero address accepted")
	}
	mustAdd(t, s, "c", "x.cluster.example", "::ffff:10.0.0.1") // 4in6 is unmapped
	mustAdd(t, s, "c", "x", "10.0.0.1")                        // the same entry: no-op
	if got := s.Entries(); len(got) != 1 || got[0].Addr != ip("10.0.0.1") || got[0].Version != 1 {
		t.Fatalf("entries %+v", got)
	}
	if _, err := s.RemoveEntries("", "", netip.Addr{}); err == nil {
		t.Error("RemoveEntries without criteria")
	}
}

// upstreamFunc adapts a function to UpstreamSource.
type upstreamFunc func() []netip.AddrPort

func (f upstreamFunc) Upstreams() []netip.AddrPort { return f() }

func TestUpstreamExcludesLoopbackWhenListeningOnAll(t *testing.T) {
	var s *Server
	src := upstreamFunc(func() []netip.AddrPort {
		p := s.Addr().Port()
		return []netip.AddrPort{
			netip.AddrPortFrom(ip("127.0.0.1"), p), // us, through the wildcard
			netip.AddrPortFrom(ip("127.0.0.1"), p+1),
			netip.MustParseAddrPort("10.0.2.3:53"),
		}
	})
	var err error
	s, err = New(Config{Ourself: peerName(t, 1), Logger: quietLogger(), Upstream: src})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(netip.MustParseAddrPort("0.0.0.0:0")); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := s.Status().Upstream
	if len(got) != 2 || got[0].Port() != s.Addr().Port()+1 {
		t.Fatalf("upstreams %v (we are %v)", got, s.Addr())
	}
}

// TestCloseInterruptsForwarding: Close does not wait for a forward to time
// out.
func TestCloseInterruptsForwarding(t *testing.T) {
	s, err := New(Config{Ourself: peerName(t, 1), Logger: quietLogger(),
		Upstream: StaticUpstreams{blackhole(t)}, ForwardTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := new(mdns.Msg).SetQuestion("www.example.com.", mdns.TypeA).Pack()
	c.Write(b)
	for s.Counters().Queries == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	s.Close()
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Close took %v", el)
	}
	checkNoServerGoroutines(t, s)
}

// TestEndToEnd: three peers gossiping over the fake mesh, each serving
// DNS; a name registered on one resolves through the others.
func TestEndToEnd(t *testing.T) {
	m := newFakeMesh(t)
	var srv []*Server
	for i := 1; i <= 3; i++ {
		s := m.add(i, nil)
		if err := s.Start(netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(); checkNoServerGoroutines(t, s) })
		srv = append(srv, s)
	}
	m.connect(1, 2)
	m.connect(2, 3)
	mustAdd(t, srv[0], "c1", "c1", "10.32.0.1")
	mustAdd(t, srv[1], "web-a", "web", "10.32.0.2")
	mustAdd(t, srv[2], "web-b", "web", "10.32.0.3")
	m.flush()
	r := query(t, srv[2], "udp", "c1.weave.local.", mdns.TypeA, 0)
	if got := answerAddrs(r); !slices.Equal(got, []string{"10.32.0.1"}) {
		t.Fatalf("c1 on peer 3: %v", got)
	}
	r = query(t, srv[0], "tcp", "web.weave.local.", mdns.TypeA, 0)
	if len(r.Answer) != 2 {
		t.Fatalf("web on peer 1: %v", r)
	}
	srv[0].RemoveEntries("c1", "", netip.Addr{})
	m.flush()
	if r := query(t, srv[2], "udp", "c1.weave.local.", mdns.TypeA, 0); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("c1 after removal: %v", r)
	}
}

func TestReconcileValidatesFirst(t *testing.T) {
	m := newFakeMesh(t)
	s := m.add(1, nil)
	mustAdd(t, s, "a", "a", "10.0.0.1")
	err := s.Reconcile([]Registration{
		{Container: "b", Hostname: "b", Addr: ip("10.0.0.2")},
		{Container: "c", Hostname: "bad name", Addr: ip("10.0.0.3")},
	})
	if !errors.Is(err, ErrBadName) {
		t.Fatalf("Reconcile: %v", err)
	}
	if got := liveView(s); got != "a.weave.local.=10.0.0.1" {
		t.Fatalf("changed on error: %q", got)
	}
	if err := s.Reconcile(nil); err != nil {
		t.Fatal(err)
	}
	if got := liveView(s); got != "" {
		t.Fatalf("after empty Reconcile: %q", got)
	}
}
