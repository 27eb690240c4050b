package netstack_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"weavenet/internal/leakcheck"
	"weavenet/netstack"
	"weavenet/router"
)

var localhost = netip.MustParseAddr("127.0.0.1")

type lateSafeWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *lateSafeWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(b)))
	}
	return len(b), nil
}

// testLog logs warnings to the test, and nothing once it has ended (mesh's
// leftover goroutines may still write).
func testLog(t *testing.T) *slog.Logger {
	w := &lateSafeWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// overlayNode is a node on 127.0.0.1 whose device is a Stack at addr.
func overlayNode(t *testing.T, addr string, password string, peers ...string) (*router.Node, *netstack.Stack) {
	t.Helper()
	st, err := netstack.New(netstack.Config{Addr: netip.MustParsePrefix(addr)})
	if err != nil {
		t.Fatal(err)
	}
	n, err := router.NewNode(router.NodeConfig{
		Device:   st,
		Host:     localhost,
		Port:     router.AnyPort,
		Password: []byte(password),
		Peers:    peers,
		Logger:   testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, st
}

func waitEvent(t *testing.T, events <-chan router.Event, kind router.EventKind) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e := <-events:
			if e.Kind == kind {
				return
			}
		case <-timeout:
			t.Fatalf("no %v event", kind)
		}
	}
}

// TestTwoStacksCarry50MB: two unprivileged programs (here two nodes in one
// process) on 127.0.0.1, with a password, talk TCP over the overlay through
// their userspace stacks; 50 MB cross intact.
func TestTwoStacksCarry50MB(t *testing.T) {
	const size = 50 << 20
	before := leakcheck.Snapshot()
	a, sa := overlayNode(t, "10.40.0.1/16", "s3cret")
	b, sb := overlayNode(t, "10.40.0.2/16", "s3cret", a.Addr().String())
	events := b.Subscribe(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, router.ConnectionEstablished)

	ln, err := sa.Listen("tcp", ":5000")
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		n    int64
		sum  []byte
		err  error
		from string
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		h := sha256.New()
		n, err := io.Copy(h, c)
		got <- result{n: n, sum: h.Sum(nil), err: err, from: c.RemoteAddr().String()}
	}()

	c, err := sb.DialContext(ctx, "tcp", "10.40.0.1:5000")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	start := time.Now()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1, 2, 3}), size), h)
	if _, err := io.Copy(c, src); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-got:
	case <-ctx.Done():
		t.Fatal("the receiver never finished")
	}
	elapsed := time.Since(start)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.n != size || !bytes.Equal(r.sum, h.Sum(nil)) {
		t.Fatalf("received %d bytes with sha256 %x, sent %d with %x", r.n, r.sum, size, h.Sum(nil))
	}
	if !strings.HasPrefix(r.from, "10.40.0.2:") {
		t.Errorf("connection came from %s, want 10.40.0.2", r.from)
	}
	t.Logf("50 MB in %v (%.0f Mbit/s), encrypted", elapsed.Round(time.Millisecond), size*8/elapsed.Seconds()/1e6)
	st := a.Status()
	if len(st.Router.Connections) != 1 || !st.Router.Connections[0].Encrypted {
		t.Errorf("connection not encrypted: %+v", st.Router.Connections)
	}

	ln.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sa.Listen("tcp", ":5001"); err == nil {
		t.Error("Listen works on a closed stack")
	}
	before.Check(t, 15*time.Second, nil)
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		cfg  netstack.Config
		want string
	}{
		{netstack.Config{}, "Config.Addr invalid Prefix"},
		{netstack.Config{Addr: netip.MustParsePrefix("10.40.0.0/16")}, "Config.Addr 10.40.0.0/16 is the subnet's network address"},
		{netstack.Config{Addr: netip.MustParsePrefix("fd00::1/64")}, "Config.Addr fd00::1/64: only IPv4"},
		{netstack.Config{Addr: netip.MustParsePrefix("10.40.0.1/0")}, "Config.Addr 10.40.0.1/0"},
		{netstack.Config{Addr: netip.MustParsePrefix("10.40.0.1/16"), MTU: -1}, "Config.MTU -1"},
		{netstack.Config{Addr: netip.MustParsePrefix("10.40.0.1/16"), MAC: []byte{1, 0, 0, 0, 0, 1}}, "Config.MAC"},
	} {
		st, err := netstack.New(tc.cfg)
		if err == nil {
			st.Close()
			t.Errorf("New(%+v) accepted", tc.cfg)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want it to mention %q", tc.cfg, err, tc.want)
		}
	}
}

func TestListenAddresses(t *testing.T) {
	before := leakcheck.Snapshot()
	st, err := netstack.New(netstack.Config{Addr: netip.MustParsePrefix("10.40.0.1/16")})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"10.40.0.2:80", "80", ":http", "[::1]:80"} {
		if l, err := st.Listen("tcp", bad); err == nil {
			l.Close()
			t.Errorf("Listen(%q) accepted", bad)
		}
	}
	if _, err := st.Listen("unix", ":80"); err == nil {
		t.Error("Listen(unix) accepted")
	}
	l, err := st.Listen("tcp", "10.40.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	if l.Addr().String() != "10.40.0.1:80" {
		t.Errorf("listening on %v", l.Addr())
	}
	l.Close()
	pc, err := st.ListenPacket("udp", ":53")
	if err != nil {
		t.Fatal(err)
	}
	pc.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	before.Check(t, 10*time.Second, nil)
}

// TestCloseWithOpenConnections: closing nodes whose stacks still have busy
// TCP connections returns (the stack's resets on the way out must not
// block it), and leaves no goroutine behind.
func TestCloseWithOpenConnections(t *testing.T) {
	before := leakcheck.Snapshot()
	a, sa := overlayNode(t, "10.40.0.1/16", "")
	b, sb := overlayNode(t, "10.40.0.2/16", "", a.Addr().String())
	events := b.Subscribe(context.Background())
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, router.ConnectionEstablished)
	ln, err := sa.Listen("tcp", ":5000")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 5 {
		c, err := sb.DialContext(context.Background(), "tcp", "10.40.0.1:5000")
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() { defer wg.Done(); io.Copy(io.Discard, s) }()                                         //nolint:errcheck
		go func() { defer wg.Done(); io.Copy(c, io.LimitReader(rand.NewChaCha8([32]byte{}), 1<<40)) }() //nolint:errcheck
	}
	time.Sleep(300 * time.Millisecond) // let them get busy
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait() // every connection failed with its stack
	before.Check(t, 15*time.Second, nil)
}
