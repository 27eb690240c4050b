package mesh

import (
	"fmt"
	"net"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	ref "github.com/weaveworks/mesh"
)

// Test gossipers: a set of strings, with an implementation for each
// router. Messages are the strings joined by newlines.

type received struct {
	mu        sync.Mutex
	unicasts  []string // "src:msg"
	broadcast map[string]int
	gossip    map[string]int
	set       map[string]bool
	gone      []PeerName // peers a reference peer garbage-collected
}

func newReceived() *received {
	return &received{broadcast: map[string]int{}, gossip: map[string]int{}, set: map[string]bool{}}
}

// merge adds the elements of msg, returning those that were new.
func (r *received) merge(msg []byte, counts map[string]int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var fresh []string
	for _, s := range strings.Split(string(msg), "\n") {
		if s == "" {
			continue
		}
		counts[s]++
		if !r.set[s] {
			r.set[s] = true
			fresh = append(fresh, s)
		}
	}
	return fresh
}

func (r *received) addGone(n PeerName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gone = append(r.gone, n)
}

func (r *received) goneList() []PeerName {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]PeerName(nil), r.gone...)
}

func (r *received) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for s := range r.set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func (r *received) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.set[s]
}

func (r *received) hasUnicast(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range r.unicasts {
		if u == s {
			return true
		}
	}
	return false
}

func (r *received) count(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.broadcast[s]
}

type setData []string

func (d setData) Encode() [][]byte { return [][]byte{[]byte(strings.Join(d, "\n"))} }
func (d setData) Merge(o GossipData) GossipData {
	return append(append(setData{}, d...), o.(setData)...)
}

type ourGossiper struct{ *received }

func (g ourGossiper) OnGossipUnicast(src PeerName, msg []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.unicasts = append(g.unicasts, src.String()+":"+string(msg))
	return nil
}
func (g ourGossiper) OnGossipBroadcast(_ PeerName, update []byte) (GossipData, error) {
	if f := g.merge(update, g.broadcast); len(f) > 0 {
		return setData(f), nil
	}
	return nil, nil
}
func (g ourGossiper) Gossip() GossipData { return setData(g.all()) }
func (g ourGossiper) OnGossip(msg []byte) (GossipData, error) {
	if f := g.merge(msg, g.gossip); len(f) > 0 {
		return setData(f), nil
	}
	return nil, nil
}

type refData []string

func (d refData) Encode() [][]byte { return [][]byte{[]byte(strings.Join(d, "\n"))} }
func (d refData) Merge(o ref.GossipData) ref.GossipData {
	return append(append(refData{}, d...), o.(refData)...)
}

type refGossiper struct{ *received }

func (g refGossiper) OnGossipUnicast(src ref.PeerName, msg []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.unicasts = append(g.unicasts, src.String()+":"+string(msg))
	return nil
}
func (g refGossiper) OnGossipBroadcast(_ ref.PeerName, update []byte) (ref.GossipData, error) {
	if f := g.merge(update, g.broadcast); len(f) > 0 {
		return refData(f), nil
	}
	return nil, nil
}
func (g refGossiper) Gossip() ref.GossipData { return refData(g.all()) }
func (g refGossiper) OnGossip(msg []byte) (ref.GossipData, error) {
	if f := g.merge(msg, g.gossip); len(f) > 0 {
		return refData(f), nil
	}
	return nil, nil
}

type quietLog struct{}

func (quietLog) Printf(string, ...interface{}) {}

// ourPeer is one of our routers serving on 127.0.0.1.
type ourPeer struct {
	r    *Router
	addr string
	g    Gossip
	rx   *received
}

func startOursCfg(t *testing.T, name PeerName, cfg Config, tweaks ...func(*Router)) *ourPeer {
	t.Helper()
	r, err := NewRouter(cfg, name, "ours-"+name.String(), nil, quietLog{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range tweaks {
		f(r)
	}
	rx := newReceived()
	g, err := r.NewGossip("test", ourGossiper{rx})
	if err != nil {
		t.Fatal(err)
	}
	return &ourPeer{r: r, addr: serveLocal(t, r), g: g, rx: rx}
}

// serveLocal serves r on a free port of 127.0.0.1 until the test ends and
// returns the address.
func serveLocal(t *testing.T, r *Router) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.Serve(ln) }()
	t.Cleanup(func() { r.Close() })
	return ln.Addr().String()
}

// refPeer is a reference mesh router; it cannot be stopped, so each
// test's reference routers stay until the test binary exits.
type refPeer struct {
	r    *ref.Router
	addr string
	g    ref.Gossip
	rx   *received
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startRefNode starts a reference peer: in this process, or under the race
// detector in a child process (refproc_test.go).
func startRefNode(t *testing.T, name PeerName, password []byte, discovery bool) node {
	t.Helper()
	if raceEnabled {
		return startRefProc(t, name, password, discovery)
	}
	rx := newReceived()
	p := startRefIn(t, name, password, discovery, refGossiper{rx})
	p.r.Peers.OnGC(func(peer *ref.Peer) { rx.addGone(PeerName(peer.Name)) })
	p.rx = rx
	return p
}

func startRefIn(t *testing.T, name PeerName, password []byte, discovery bool, g ref.Gossiper) *refPeer {
	t.Helper()
	port := freePort(t)
	r, err := ref.NewRouter(ref.Config{Host: "127.0.0.1", Port: port, Password: password, ConnLimit: 64,
		ProtocolMinVersion: ref.ProtocolMinVersion, PeerDiscovery: discovery}, ref.PeerName(name), "ref-"+name.String(), nil, quietLog{})
	if err != nil {
		t.Fatal(err)
	}
	gs, err := r.NewGossip("test", g)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	return &refPeer{r: r, addr: fmt.Sprintf("127.0.0.1:%d", port), g: gs}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ourGoroutines lists goroutines running this package's code, other than
// tests'.
func ourGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "weavenet/mesh.") && !strings.Contains(g, "testing.tRunner") && !strings.Contains(g, "testing.(*F)") &&
			!strings.Contains(g, "weavenet/mesh.startRefProc") {
			out = append(out, g)
		}
	}
	return out
}

func checkNoLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := ourGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *ourPeer) sees(name PeerName) bool {
	_, ok := p.r.Routes.Unicast(name)
	return ok
}

func (p *refPeer) sees(name PeerName) bool {
	_, ok := p.r.Routes.Unicast(ref.PeerName(name))
	return ok
}
