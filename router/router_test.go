package router_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"weavenet/gossip"
	"weavenet/internal/syncbuf"
	"weavenet/router"
	"weavenet/tun"
)

// fakeDevice stands in for the TAP: frames put on in are "captured", frames
// the router delivers come out on out.
type fakeDevice struct {
	in   chan []byte
	out  chan []byte
	done chan struct{}
	once sync.Once
}

func newFakeDevice() *fakeDevice {
	return &fakeDevice{in: make(chan []byte, 64), out: make(chan []byte, 1024), done: make(chan struct{})}
}

func (d *fakeDevice) Read(b []byte) (int, error) {
	select {
	case f := <-d.in:
		return copy(b, f), nil
	case <-d.done:
		return 0, net.ErrClosed
	}
}

func (d *fakeDevice) Write(b []byte) (int, error) {
	select {
	case d.out <- bytes.Clone(b):
	default:
	}
	return len(b), nil
}

func (d *fakeDevice) Close() error {
	d.once.Do(func() { close(d.done) })
	return nil
}

// frame builds a device-form frame: blank virtio header, Ethernet header, payload.
func frame(dst, src net.HardwareAddr, payload string) []byte {
	b := make([]byte, tun.VirtioNetHdrLen, tun.VirtioNetHdrLen+14+len(payload))
	b = append(append(append(b, dst...), src...), 0x08, 0x00)
	return append(b, payload...)
}

type testPeer struct {
	name string
	addr string
	dev  *fakeDevice
	r    *router.Router
	node *gossip.Node
}

func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

func startPeer(t *testing.T, name string, peers ...string) *testPeer {
	t.Helper()
	return startPeerWith(t, name, func(*gossip.Config) {}, peers...)
}

func startPeerWith(t *testing.T, name string, configure func(*gossip.Config), peers ...string) *testPeer {
	t.Helper()
	return startPeerFull(t, name, func(*router.Config) {}, configure, peers...)
}

func startPeerFull(t *testing.T, name string, configureRouter func(*router.Config), configure func(*gossip.Config), peers ...string) *testPeer {
	t.Helper()
	port := freePort(t)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p := &testPeer{name: name, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dev: newFakeDevice()}
	rcfg := router.Config{Device: p.dev, Host: "127.0.0.1", Port: port, Logger: log}
	configureRouter(&rcfg)
	r, err := router.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := gossip.Config{Name: name, NickName: name, Host: "127.0.0.1", Port: port, Logger: log}
	configure(&cfg)
	node, err := gossip.New(cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	r.Start(node.Mesh)
	if err := node.Start(peers); err != nil {
		t.Fatal(err)
	}
	p.r, p.node = r, node
	t.Cleanup(func() { r.Close() })
	return p
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

func waitFor(t *testing.T, what string, cond func() bool, explain ...func() string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	for _, e := range explain {
		t.Log(e())
	}
	t.Fatalf("timed out waiting for %s", what)
}

// expect waits for a frame with the given payload on p's device.
func (p *testPeer) expect(t *testing.T, payload string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case f := <-p.dev.out:
			if bytes.HasSuffix(f, []byte(payload)) {
				return
			}
		case <-timeout:
			t.Fatalf("%s: frame %q never arrived", p.name, payload)
		}
	}
}

// expectNone checks that no frame with the payload arrives within a short while.
func (p *testPeer) expectNone(t *testing.T, payload string) {
	t.Helper()
	timeout := time.After(300 * time.Millisecond)
	for {
		select {
		case f := <-p.dev.out:
			if bytes.HasSuffix(f, []byte(payload)) {
				t.Fatalf("%s: unexpected (duplicate) frame %q", p.name, payload)
			}
		case <-timeout:
			return
		}
	}
}

var (
	macA      = net.HardwareAddr{2, 0, 0, 0, 0, 0xa}
	macB      = net.HardwareAddr{2, 0, 0, 0, 0, 0xb}
	macC      = net.HardwareAddr{2, 0, 0, 0, 0, 0xc}
	broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

func TestTwoRoutersForwardFrames(t *testing.T) {
	a := startPeer(t, "02:00:00:00:01:0a")
	b := startPeer(t, "02:00:00:00:01:0b", a.addr)
	routed(t, a, b)

	a.dev.in <- frame(broadcast, macA, "who-has-b")
	b.expect(t, "who-has-b")
	b.dev.in <- frame(macA, macB, "b-is-here")
	a.expect(t, "b-is-here")
	a.dev.in <- frame(macB, macA, "unicast-to-b")
	b.expect(t, "unicast-to-b")

	st := b.r.Stats()
	if st.FramesIn == 0 || st.FramesOut == 0 {
		t.Errorf("counters did not move: %+v", st)
	}
}

func TestGarbageIsDroppedAndCounted(t *testing.T) {
	a := startPeer(t, "02:00:00:00:02:0a")
	b := startPeer(t, "02:00:00:00:02:0b", a.addr)
	routed(t, a, b)

	conn, err := net.Dial("udp4", a.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 100 {
		conn.Write(bytes.Repeat([]byte{byte(i)}, i))
	}
	// A datagram claiming to come from b, but with a truncated frame.
	conn.Write(append([]byte{2, 0, 0, 0, 2, 0xb}, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0xff, 0xff, 1))
	waitFor(t, "drops counted", func() bool {
		d := a.r.Stats().Drops
		return d["malformed"] > 0 && d["unknown_peer"] > 0
	})
	a.dev.in <- frame(broadcast, macA, "still-alive")
	b.expect(t, "still-alive")
}

// TestLineRelaysAndFloodsOnce: a — b — c with no connection between a and c.
// A broadcast from a reaches b and c exactly once; unicast crosses b.
func TestLineRelaysAndFloodsOnce(t *testing.T) {
	a := startPeer(t, "02:00:00:00:03:0a")
	b := startPeer(t, "02:00:00:00:03:0b", a.addr)
	c := startPeer(t, "02:00:00:00:03:0c", b.addr)
	routed(t, a, b, c)

	a.dev.in <- frame(broadcast, macA, "hello-all")
	b.expect(t, "hello-all")
	c.expect(t, "hello-all")
	b.expectNone(t, "hello-all")
	c.expectNone(t, "hello-all")

	c.dev.in <- frame(macA, macC, "c-to-a")
	a.expect(t, "c-to-a")
	a.dev.in <- frame(macC, macA, "a-to-c")
	c.expect(t, "a-to-c")
	b.expectNone(t, "a-to-c") // relayed, not delivered, at b
}

// routed waits until every peer's data path has unicast and broadcast
// routes to all others.
func routed(t *testing.T, peers ...*testPeer) {
	t.Helper()
	waitFor(t, "routes", func() bool {
		for _, p := range peers {
			if _, bc, _ := p.r.RouteTo(p.node.Name); len(bc) == 0 {
				return false
			}
			for _, q := range peers {
				if _, _, ok := p.r.RouteTo(q.node.Name); !ok && p != q {
					return false
				}
			}
		}
		return true
	})
}

func withPassword(pw string) func(*gossip.Config) {
	return func(c *gossip.Config) { c.Password = []byte(pw) }
}

func TestEncryptedRoutersForwardFrames(t *testing.T) {
	for _, nacl := range []bool{false, true} {
		t.Run(map[bool]string{false: "negotiated", true: "weave-compat"}[nacl], func(t *testing.T) {
			onlyNaCl := func(c *router.Config) { c.WeaveCompat = nacl }
			a := startPeerFull(t, "02:00:00:00:04:0a", onlyNaCl, withPassword("s3cret"))
			// One end offering NaCl only is enough to fall back to it.
			b := startPeerFull(t, "02:00:00:00:04:0b", func(*router.Config) {}, withPassword("s3cret"), a.addr)
			routed(t, a, b)
			a.dev.in <- frame(broadcast, macA, "sealed-broadcast")
			b.expect(t, "sealed-broadcast")
			b.dev.in <- frame(macA, macB, "sealed-reply")
			a.expect(t, "sealed-reply")
			big := string(bytes.Repeat([]byte("x"), 9000))
			a.dev.in <- frame(macB, macA, big)
			b.expect(t, big)
		})
	}
}

func TestWrongPasswordIsRefused(t *testing.T) {
	var logs syncbuf.Buffer
	a := startPeerWith(t, "02:00:00:00:05:0a", func(c *gossip.Config) {
		c.Password = []byte("right")
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	b := startPeerWith(t, "02:00:00:00:05:0b", withPassword("wrong"), a.addr)
	c := startPeerWith(t, "02:00:00:00:05:0c", func(c *gossip.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	}, a.addr)
	// Whichever end notices the mismatch first says why and resets.
	waitFor(t, "refused handshakes", func() bool {
		l := logs.String()
		return a.node.HandshakeFailures() >= 2 &&
			strings.Contains(l, "password mismatch: the peer's messages do not decrypt") &&
			(strings.Contains(l, "password mismatch: we have a password") || strings.Contains(l, "password mismatch: the peer has a password")) // a and c
	}, func() string {
		return fmt.Sprintf("handshake failures at a: %d; logs of a and c:\n%s", a.node.HandshakeFailures(), logs.String())
	})
	for _, p := range []*testPeer{a, b, c} {
		if n := len(p.node.Mesh.Routes.Broadcast(p.node.Name)); n != 0 {
			t.Fatalf("%s has routes to %d peers without the password", p.name, n)
		}
	}
}
