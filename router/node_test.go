package router_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"weavenet/api"
	"weavenet/internal/leakcheck"
	"weavenet/router"
)

var localhost = netip.MustParseAddr("127.0.0.1")

// quietLog logs to the test at warning level, and drops lines that mesh's
// leftover goroutines write after the test has ended.
func quietLog(t *testing.T) *slog.Logger {
	w := &lateSafeWriter{t: t}
	t.Cleanup(w.stop) // registered first, so it runs last
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

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

func (w *lateSafeWriter) stop() { w.mu.Lock(); w.done = true; w.mu.Unlock() }

// startNode builds and starts a node on 127.0.0.1 and a free port, closed
// when the test ends.
func startNode(t *testing.T, cfg router.NodeConfig) *router.Node {
	t.Helper()
	if !cfg.Host.IsValid() {
		cfg.Host = localhost
	}
	if cfg.Port == 0 {
		cfg.Port = router.AnyPort
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLog(t)
	}
	n, err := router.NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitEvent reads events until one of kind about peer arrives.
func waitEvent(t *testing.T, events <-chan router.Event, kind router.EventKind, peer string) router.Event {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("event channel closed while waiting for %v %s", kind, peer)
			}
			t.Logf("event: %v", e)
			if e.Kind == kind && (peer == "" || e.Peer == peer) {
				return e
			}
		case <-timeout:
			t.Fatalf("no %v event for %s", kind, peer)
		}
	}
}

// waitEvents reads events until one of each kind about peer has arrived, in
// any order.
func waitEvents(t *testing.T, events <-chan router.Event, peer string, kinds ...router.EventKind) {
	t.Helper()
	var want []router.Event
	for _, k := range kinds {
		want = append(want, router.Event{Kind: k, Peer: peer})
	}
	waitAll(t, events, want...)
}

// waitAll reads events until one matching each of want (kind and peer) has
// arrived, in any order, and returns them in want's order.
func waitAll(t *testing.T, events <-chan router.Event, want ...router.Event) []router.Event {
	t.Helper()
	type key struct {
		kind router.EventKind
		peer string
	}
	missing := map[key]bool{}
	for _, w := range want {
		missing[key{w.Kind, w.Peer}] = true
	}
	got := make([]router.Event, len(want))
	timeout := time.After(15 * time.Second)
	for len(missing) > 0 {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("event channel closed while waiting for %v", missing)
			}
			t.Logf("event: %v", e)
			k := key{e.Kind, e.Peer}
			if missing[k] {
				for i, w := range want {
					if (key{w.Kind, w.Peer}) == k {
						got[i] = e
					}
				}
			}
			delete(missing, k)
		case <-timeout:
			t.Fatalf("still waiting for events %v", missing)
		}
	}
	return got
}

func addr(n *router.Node) string { return n.Addr().String() }

func TestNodeConfigErrorsNameTheField(t *testing.T) {
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	busyUDP, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer busyUDP.Close()
	busyUDPPort := busyUDP.LocalAddr().(*net.UDPAddr).Port
	emptyFile := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		cfg  router.NodeConfig
		want string // regexp the error must match
	}{
		{"bad trusted CIDR", router.NodeConfig{TrustedSubnets: []netip.Prefix{netip.PrefixFrom(localhost, 40)}}, `NodeConfig\.TrustedSubnets\[0\]`},
		{"IPv6 trusted CIDR", router.NodeConfig{TrustedSubnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}, `NodeConfig\.TrustedSubnets\[1\] fd00::/8`},
		{"TCP port in use", router.NodeConfig{Port: busyPort}, fmt.Sprintf(`NodeConfig\.Port %d: TCP: .*address already in use`, busyPort)},
		{"UDP port in use", router.NodeConfig{Port: busyUDPPort}, fmt.Sprintf(`NodeConfig\.Port %d: UDP: .*address already in use`, busyUDPPort)},
		{"negative port", router.NodeConfig{Port: -5}, `NodeConfig\.Port -5`},
		{"port too big", router.NodeConfig{Port: 70000}, `NodeConfig\.Port 70000`},
		{"missing password file", router.NodeConfig{PasswordFile: "/nonexistent/weave-password"}, `NodeConfig\.PasswordFile: .*no such file`},
		{"empty password file", router.NodeConfig{PasswordFile: emptyFile}, `NodeConfig\.PasswordFile .*first line is empty`},
		{"password twice", router.NodeConfig{Password: []byte("a"), PasswordFile: emptyFile}, `NodeConfig\.Password and NodeConfig\.PasswordFile`},
		{"peer with bad port", router.NodeConfig{Peers: []string{"10.0.0.1", "10.0.0.2:http"}}, `NodeConfig\.Peers\[1\]: "10\.0\.0\.2:http"`},
		{"peer with port 0", router.NodeConfig{Peers: []string{"10.0.0.2:0"}}, `NodeConfig\.Peers\[0\]`},
		{"peer without host", router.NodeConfig{Peers: []string{":6783"}}, `NodeConfig\.Peers\[0\]: ":6783": empty host`},
		{"peer not a host", router.NodeConfig{Peers: []string{"10.0.0.0/8"}}, `NodeConfig\.Peers\[0\]`},
		{"negative MTU", router.NodeConfig{MTU: -5}, `NodeConfig\.MTU -5`},
		{"tiny MTU", router.NodeConfig{MTU: 100}, `NodeConfig\.MTU 100`},
		{"huge MTU", router.NodeConfig{MTU: 70000}, `NodeConfig\.MTU 70000`},
		{"negative conn limit", router.NodeConfig{ConnLimit: -1}, `NodeConfig\.ConnLimit -1`},
		{"bad name", router.NodeConfig{Name: "weave-1"}, `NodeConfig\.Name "weave-1"`},
		{"IPv6 host", router.NodeConfig{Host: netip.MustParseAddr("::1")}, `NodeConfig\.Host ::1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if !cfg.Host.IsValid() {
				cfg.Host = localhost
			}
			if cfg.Port == 0 {
				cfg.Port = router.AnyPort
			}
			dev := newFakeDevice()
			cfg.Device = dev
			n, err := router.NewNode(cfg)
			if err == nil {
				n.Close()
				t.Fatalf("NewNode accepted %+v", tc.cfg)
			}
			if !regexp.MustCompile(tc.want).MatchString(err.Error()) {
				t.Fatalf("error %q does not match %q", err, tc.want)
			}
			select {
			case <-dev.done:
			default:
				t.Error("a failed NewNode left the device open")
			}
		})
	}
}

func TestNodeDefaults(t *testing.T) {
	before := leakcheck.Snapshot()
	n, err := router.NewNode(router.NodeConfig{Host: localhost, Port: router.AnyPort, NickName: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	st := n.Status()
	if st.Router.MTU != router.DefaultMTU || !st.Router.PeerDiscovery || st.Router.Encryption || st.Router.NickName != "solo" {
		t.Errorf("defaults: %+v", st.Router)
	}
	if st.Router.Port != int(n.Addr().Port()) || n.Addr().Addr() != localhost || n.Addr().Port() == 0 {
		t.Errorf("status port %d, Addr %v", st.Router.Port, n.Addr())
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Start after Close: %v, want net.ErrClosed", err)
	}
	if err := n.Connect("127.0.0.1:1"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Connect after Close: %v, want net.ErrClosed", err)
	}
	before.Check(t, 15*time.Second, nil)
}

func TestNodeDataDirKeepsName(t *testing.T) {
	dir := t.TempDir()
	a, err := router.NewNode(router.NodeConfig{Host: localhost, Port: router.AnyPort, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	name := a.Name()
	a.Close()
	b, err := router.NewNode(router.NodeConfig{Host: localhost, Port: router.AnyPort, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Name() != name {
		t.Fatalf("name %s after restart, want %s", b.Name(), name)
	}
}

// TestNodeEvents: a peer that connects is announced up, and down when it
// closes; both connection events come too. The inbound side of the
// connection goes through the node's own listener.
func TestNodeEvents(t *testing.T) {
	before := leakcheck.Snapshot()
	a := startNode(t, router.NodeConfig{NickName: "a", Password: []byte("s3cret")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := a.Subscribe(ctx)

	b, err := router.NewNode(router.NodeConfig{Host: localhost, Port: router.AnyPort, NickName: "b", Password: []byte("s3cret"), Peers: []string{addr(a)}, Logger: quietLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	bEvents := b.Subscribe(context.Background())
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The connection and the route come up together: either event may be
	// first.
	up := waitAll(t, events, router.Event{Kind: router.ConnectionEstablished, Peer: b.Name()}, router.Event{Kind: router.PeerUp, Peer: b.Name()})[1]
	if up.NickName != "b" {
		t.Errorf("peer-up nickname %q", up.NickName)
	}
	waitEvent(t, bEvents, router.PeerUp, a.Name())

	st := a.Status()
	if len(st.Router.Connections) != 1 || st.Router.Connections[0].State != "established" || !st.Router.Connections[0].Encrypted {
		t.Errorf("a's connections: %+v", st.Router.Connections)
	} else if at := st.Router.Connections[0].EstablishedAt; at == nil || time.Since(*at) < 0 || time.Since(*at) > time.Minute {
		t.Errorf("a's connection established at %v", at)
	}
	if len(st.Router.Peers) != 2 {
		t.Errorf("a's peers: %+v", st.Router.Peers)
	}

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-bEvents; ok {
		// Drain: Close closes the channel after any queued events.
		for range bEvents {
		}
	}
	waitEvents(t, events, b.Name(), router.ConnectionLost, router.PeerDown)

	cancel()
	for range events { // closed once ctx is done
	}
	a.Close()
	before.Check(t, 15*time.Second, nil)
}

func TestNodeWrongPasswordFails(t *testing.T) {
	a := startNode(t, router.NodeConfig{Password: []byte("one")})
	b, err := router.NewNode(router.NodeConfig{Host: localhost, Port: router.AnyPort, Password: []byte("two"), Logger: quietLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	events := b.Subscribe(context.Background())
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Connect(addr(a)); err != nil {
		t.Fatal(err)
	}
	e := waitEvent(t, events, router.ConnectionFailed, "")
	if e.Err == nil || !strings.Contains(e.Err.Error(), "password") && !strings.Contains(e.Err.Error(), "refused") {
		t.Errorf("failure without a reason that mentions the password: %v", e)
	}
}

func TestNodeUnreachablePeerFails(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close() // nothing listens there now
	n := startNode(t, router.NodeConfig{})
	events := n.Subscribe(context.Background())
	if err := n.Connect(dead); err != nil {
		t.Fatal(err)
	}
	e := waitEvent(t, events, router.ConnectionFailed, "")
	if e.Addr != dead || e.Err == nil || !strings.Contains(e.Err.Error(), "refused") {
		t.Errorf("got %v, want a refused connection to %s", e, dead)
	}
	var c api.Connection
	waitFor(t, "the failed target in status", func() bool {
		cs := n.Status().Router.Connections
		if len(cs) == 1 {
			c = cs[0]
		}
		return c.State == "failed"
	})
	if c.Address != dead || !strings.Contains(c.Info, "refused") {
		t.Errorf("status shows %+v", c)
	}
}

// TestNodeCloseAndRestartOnSamePort: Close gives the port back at once, and
// the peer that kept the old node as a target connects to the new one.
func TestNodeCloseAndRestartOnSamePort(t *testing.T) {
	before := leakcheck.Snapshot()
	a1, err := router.NewNode(router.NodeConfig{Host: localhost, Port: router.AnyPort, Logger: quietLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	port := int(a1.Addr().Port())
	b := startNode(t, router.NodeConfig{Peers: []string{addr(a1)}})
	events := b.Subscribe(context.Background())
	waitEvent(t, events, router.PeerUp, a1.Name())

	if err := a1.Close(); err != nil {
		t.Fatal(err)
	}
	// At once, while b may still be reconnecting to the port.
	a2, err := router.NewNode(router.NodeConfig{Host: localhost, Port: port, Logger: quietLog(t)})
	if err != nil {
		t.Fatalf("a new node on the closed node's port %d: %v", port, err)
	}
	if err := a2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitAll(t, events, router.Event{Kind: router.PeerDown, Peer: a1.Name()}, router.Event{Kind: router.PeerUp, Peer: a2.Name()})
	a2.Close()
	b.Close()
	before.Check(t, 15*time.Second, nil)
}

func TestNodeForgetStopsReconnecting(t *testing.T) {
	a := startNode(t, router.NodeConfig{})
	b := startNode(t, router.NodeConfig{})
	events := b.Subscribe(context.Background())
	if err := b.Connect(addr(a)); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, router.PeerUp, a.Name())
	if got := b.Status().Router.Targets; len(got) != 1 || got[0] != addr(a) {
		t.Fatalf("targets %v, want [%s]", got, addr(a))
	}
	b.Forget(addr(a))
	waitFor(t, "target forgotten", func() bool { return len(b.Status().Router.Targets) == 0 })
	if err := b.Connect("no host"); err == nil {
		t.Error("Connect accepted a bad address")
	}
}
