package integration

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// Interoperability with a real Weave Net 2.8.1 router (weaver): a weavenet
// peer and a Weave Net peer in one network. Containers get static addresses
// (weave attach ADDR on weavenet, a veth into Weave Net's bridge on the
// other side), so these tests show the router and its data path, not IPAM.

// interopStable is how long a mixed connection must stay established: longer
// than Weave Net's 60 s heartbeat limit, so that a cadence the two sides
// disagree on would show.
const interopStable = 75 * time.Second

// weaverConn is one line of Weave Net's /status/connections.
type weaverConn struct {
	Outbound bool
	Address  string
	State    string
	Line     string
}

// weaverConns reads Weave Net's connections: "-> ADDR STATE INFO...".
func weaverConns(t *testing.T, w *testbed.Weaver) ([]weaverConn, error) {
	out, err := w.HTTP(t, "GET", "/status/connections")
	if err != nil {
		return nil, err
	}
	var conns []weaverConn
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || (f[0] != "->" && f[0] != "<-") {
			continue
		}
		conns = append(conns, weaverConn{Outbound: f[0] == "->", Address: f[1], State: f[2], Line: strings.TrimSpace(line)})
	}
	return conns, nil
}

// weaverEstablished counts Weave Net's established connections.
func weaverEstablished(conns []weaverConn) int {
	n := 0
	for _, c := range conns {
		if c.State == "established" {
			n++
		}
	}
	return n
}

// waitWeaver waits until Weave Net reports want established connections.
func waitWeaver(t *testing.T, w *testbed.Weaver, want int) []weaverConn {
	t.Helper()
	var conns []weaverConn
	var err error
	ok := testbed.Poll(meshTimeout, func() bool {
		conns, err = weaverConns(t, w)
		return err == nil && weaverEstablished(conns) == want
	})
	if !ok {
		t.Fatalf("%s (Weave Net): want %d established connections within %v; last: %v %+v\nlog:\n%s",
			w.Host.Name, want, meshTimeout, err, conns, lastLines(w.Logs(), 30))
	}
	return conns
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// linkWatch polls both ends of one mixed connection until stopped and
// records the first moment either end does not report it established, or
// Weave Net sees it come from another address (a reconnection between
// two polls).
type linkWatch struct {
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	mu       sync.Mutex
	polls    int
	problem  string
	weaveKey string // Weave Net's view: direction and remote address
}

func watchLink(t *testing.T, net *testbed.Host, peerAddr string, w *testbed.Weaver) *linkWatch {
	lw := &linkWatch{stop: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(lw.halt) // before the bed's cleanup, which was registered earlier
	go func() {
		defer close(lw.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			lw.pollOnce(t, net, peerAddr, w)
			select {
			case <-lw.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return lw
}

func (lw *linkWatch) pollOnce(t *testing.T, net *testbed.Host, peerAddr string, w *testbed.Weaver) {
	var problem string
	r, err := net.TryReport(t)
	switch {
	case err != nil:
		problem = fmt.Sprintf("%s: weave report: %v", net.Name, err)
	case r.Router.Established() != 1 || !r.Router.EstablishedTo(peerAddr):
		problem = fmt.Sprintf("%s (weavenet): not established to %s: %s", net.Name, peerAddr, describe(&r.Router))
	}
	conns, err := weaverConns(t, w)
	key := ""
	switch {
	case problem != "":
	case err != nil:
		problem = fmt.Sprintf("%s (Weave Net): %v", w.Host.Name, err)
	case weaverEstablished(conns) != 1:
		problem = fmt.Sprintf("%s (Weave Net): connections %+v", w.Host.Name, conns)
	default:
		key = fmt.Sprint(conns[0].Outbound, conns[0].Address)
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.polls++
	if problem == "" && lw.weaveKey != "" && key != lw.weaveKey {
		problem = fmt.Sprintf("%s (Weave Net): the connection was replaced: %s, before %s", w.Host.Name, key, lw.weaveKey)
	}
	if lw.weaveKey == "" {
		lw.weaveKey = key
	}
	if problem != "" && lw.problem == "" {
		lw.problem = time.Now().Format("15:04:05.000 ") + problem
	}
}

// check fails the test at once if the link has dropped: data steps over a
// flapping link would only take long.
func (lw *linkWatch) check(t *testing.T) {
	t.Helper()
	lw.mu.Lock()
	problem := lw.problem
	lw.mu.Unlock()
	if problem != "" {
		t.Fatalf("the mixed connection did not stay established: %s", problem)
	}
}

// halt stops the watch and waits for its last poll.
func (lw *linkWatch) halt() {
	lw.stopOnce.Do(func() { close(lw.stop) })
	<-lw.done
}

// finish stops the watch and fails the test if the link ever dropped.
func (lw *linkWatch) finish(t *testing.T) {
	t.Helper()
	lw.halt()
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.problem != "" {
		t.Errorf("the mixed connection did not stay established: %s", lw.problem)
	}
	t.Logf("connection established on both sides in all of %d polls", lw.polls)
}

// TestInteropTwoHosts: one weavenet host and one Weave Net host, plain and
// with a password. The connection stays established on both sides for
// longer than Weave Net's heartbeat limit while containers ping each other
// and 200 MB cross intact each way.
func TestInteropTwoHosts(t *testing.T) {
	for _, tc := range []struct{ name, password string }{
		{"plain", ""},
		{"password", "interop-secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
			hw, hn := b.Hosts[0], b.Hosts[1] // Weave Net, weavenet
			var wargs, nargs []string
			if tc.password != "" {
				wargs = append(wargs, "--password", tc.password)
				nargs = append(nargs, "--password", tc.password, "--password-kdf", "weave")
			}
			w := hw.StartWeaver(t, wargs...)
			d := launch(t, hn, append(nargs, peerArg(t, hn, hw)...)...)
			waitMesh(t, hn, 1, 2)
			conns := waitWeaver(t, w, 1)
			start := time.Now()
			t.Logf("Weave Net sees: %s", conns[0].Line)
			lw := watchLink(t, hn, hw.Addr.String(), w)

			// Our side knows what it talks to, and at what cadence.
			link := strings.TrimSpace(hn.MustWeave(t, "report", "-f",
				"{{range .Router.Connections}}{{.PeerKind}} {{.Format}} {{.Encrypted}} {{.Heartbeat}}/{{.HeartbeatTimeout}}{{end}}"))
			want := fmt.Sprintf("weave classic %v 10s/60s", tc.password != "")
			if link != want {
				t.Errorf("weave report: connection %q, want %q", link, want)
			}
			t.Logf("weave status connections: %s", strings.TrimSpace(hn.MustWeave(t, "status", "connections")))
			if peers := hn.MustWeave(t, "status", "peers"); !strings.Contains(peers, w.Name()+"(h1) weave\n") {
				t.Errorf("weave status peers does not show h1 as Weave Net:\n%s", peers)
			}

			cw := hw.AddContainer(t, "cw")
			w.Attach(t, cw, "10.99.0.1/24")
			cn := attach(t, hn, "cn", "10.99.0.2/24")
			cn.WaitPing(t, "10.99.0.1", pingTimeout)
			pingAll(t, cn, "10.99.0.1", 5)
			pingAll(t, cw, "10.99.0.2", 5)
			pingAll(t, cw, "10.99.0.2", 3, "-s", "1300")
			lw.check(t)
			transfer(t, cn, cw, "10.99.0.1", "200M", 5001)
			lw.check(t)
			transfer(t, cw, cn, "10.99.0.2", "200M", 5002)
			lw.check(t)

			if left := interopStable - time.Since(start); left > 0 {
				t.Logf("data checked after %v; watching the connection for %v more", time.Since(start).Round(time.Second), left.Round(time.Second))
				time.Sleep(left)
			}
			pingAll(t, cn, "10.99.0.1", 3)
			lw.finish(t)
			for _, bad := range []string{"connection shutting down", "timed out waiting for UDP heartbeat"} {
				if strings.Contains(w.Logs(), bad) {
					t.Errorf("Weave Net's log shows %q:\n%s", bad, lastLines(w.Logs(), 30))
				}
			}
			if logs := d.Logs(); strings.Contains(logs, "connection shutting down") || strings.Contains(logs, "no UDP heartbeat") {
				t.Errorf("weavenet's log shows a lost connection:\n%s", lastLines(logs, 30))
			}
		})
	}
}

// mixedHosts starts, on each host of b, Weave Net where weave[i] is set and
// weavenet elsewhere, each host i > 0 connecting to host i-1, waits until
// every host has want[i] established connections, and plugs a container
// c<i+1> with address 10.99.0.<i+1>/24 into each.
func mixedHosts(t *testing.T, b *testbed.Bed, weave []bool, want []int) []*testbed.Container {
	t.Helper()
	weavers := make([]*testbed.Weaver, len(b.Hosts))
	for i, h := range b.Hosts {
		var peer []string
		if i > 0 {
			peer = []string{b.Hosts[i-1].AddrTowards(t, h).String()}
		}
		if weave[i] {
			weavers[i] = h.StartWeaver(t, peer...)
		} else if len(peer) > 0 {
			launch(t, h, "--peer", peer[0])
		} else {
			launch(t, h)
		}
	}
	for i, h := range b.Hosts {
		if weave[i] {
			waitWeaver(t, weavers[i], want[i])
		} else {
			waitMesh(t, h, want[i], len(b.Hosts))
		}
	}
	cs := make([]*testbed.Container, len(b.Hosts))
	for i, h := range b.Hosts {
		name, addr := fmt.Sprintf("c%d", i+1), fmt.Sprintf("10.99.0.%d/24", i+1)
		if weave[i] {
			cs[i] = h.AddContainer(t, name)
			weavers[i].Attach(t, cs[i], addr)
		} else {
			cs[i] = attach(t, h, name, addr)
		}
	}
	return cs
}

// waitTopologyAgrees waits until the weavenet hosts among the containers'
// hosts see the same topology, every established connection reported by
// both of its ends: until then a relay computes its broadcast tree from a
// view in which a link the source uses is missing, and forwards a copy
// down it too, which is mesh's design, not a fault (Weave Net's routers
// behave the same way). Weave Net routers' views cannot be read here; they
// get the same gossip.
func waitTopologyAgrees(t *testing.T, cs []*testbed.Container) {
	t.Helper()
	// view is a host's topology, "" and false while it is not symmetric;
	// a host whose weaved API does not answer (a Weave Net host) has none.
	view := func(h *testbed.Host) (v string, ok, weavenet bool) {
		r, err := h.TryReport(t)
		if err != nil {
			return "", true, false
		}
		links := map[string]bool{}
		var lines []string
		for _, p := range r.Router.Peers {
			for _, c := range p.Connections {
				if c.Established {
					links[p.Name+">"+c.Name] = true
					lines = append(lines, p.Name+">"+c.Name)
				}
			}
		}
		for l := range links {
			ends := strings.SplitN(l, ">", 2)
			if !links[ends[1]+">"+ends[0]] {
				return "", false, true
			}
		}
		sort.Strings(lines)
		return strings.Join(lines, " "), true, true
	}
	testbed.WaitFor(t, 20*time.Second, func() bool {
		first := ""
		for _, c := range cs {
			v, ok, weavenet := view(c.Host)
			if !weavenet {
				continue
			}
			if !ok || (first != "" && v != first) {
				return false
			}
			first = v
		}
		return true
	}, "the weavenet hosts see one symmetric topology")
}

// kindsName names a mix of kinds, e.g. "weave-weavenet-weavenet".
func kindsName(weave []bool) string {
	var parts []string
	for _, w := range weave {
		parts = append(parts, map[bool]string{true: "weave", false: "weavenet"}[w])
	}
	return strings.Join(parts, "-")
}

// broadcastOnce sends a UDP broadcast (10.99.0.255) from each container and
// checks that each arrives exactly once at every other container, counted
// on its interface with a marker of the sender.
func broadcastOnce(t *testing.T, prefix string, cs []*testbed.Container) {
	t.Helper()
	type capture struct {
		from, at int
		p        *testbed.Proc
	}
	waitTopologyAgrees(t, cs)
	// The data path takes mesh's routes, broadcast trees included, within
	// mesh's 100 ms between computations and the router's 250 ms between
	// snapshots (routeRebuildGap) of the topology agreeing: a frame
	// flooded sooner may still follow a tree of the topology before.
	time.Sleep(500 * time.Millisecond)
	marker := func(from int) string { return fmt.Sprintf("interop-bcast-%s-from-c%d", prefix, from+1) }
	var caps []capture
	for from := range cs {
		for at, c := range cs {
			if at != from {
				p := c.StartTool(t, "capture", "ethwe", marker(from), "5s")
				caps = append(caps, capture{from, at, p})
			}
		}
	}
	for _, c := range caps {
		c.p.WaitStderr(t, "capturing", 10*time.Second)
	}
	for from, c := range cs {
		if _, err := c.Tool(t, 10*time.Second, "udp-send-hex", "10.99.0.255:7777", hex.EncodeToString([]byte(marker(from)))); err != nil {
			t.Fatalf("broadcast from c%d: %v", from+1, err)
		}
	}
	for _, c := range caps {
		out, err := c.p.Wait(20 * time.Second)
		if err != nil {
			t.Fatalf("capture on c%d: %v", c.at+1, err)
		}
		var frames, matches int
		fmt.Sscan(out, &frames, &matches)
		if matches != 1 {
			t.Errorf("a broadcast from c%d arrived %d times at c%d, want once", c.from+1, matches, c.at+1)
		}
	}
}

// TestInteropLine: h1 - h2 - h3 in a line (h1 and h3 cannot reach each
// other) with the middle host of either kind, and ends of the other kind or
// of both. The ends' containers reach each other through the middle router
// (ping, 20 MB of TCP each way), and a broadcast from any container arrives
// exactly once at each of the others.
func TestInteropLine(t *testing.T) {
	for _, weave := range [][]bool{
		{false, true, false}, // Weave Net relays between weavenet peers
		{true, false, true},  // weavenet relays between Weave Net peers
		{true, false, false}, // weavenet relays between a classic and a fast link
	} {
		t.Run(kindsName(weave), func(t *testing.T) {
			t.Parallel()
			b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.Line})
			cs := mixedHosts(t, b, weave, []int{1, 2, 1})
			c1, c3 := cs[0], cs[2]
			c1.WaitPing(t, "10.99.0.3", pingTimeout)
			pingAll(t, c1, "10.99.0.3", 5)
			pingAll(t, c3, "10.99.0.1", 5)
			pingAll(t, c1, "10.99.0.2", 3)
			pingAll(t, c3, "10.99.0.2", 3)
			transfer(t, c1, c3, "10.99.0.3", "20M", 5003)
			transfer(t, c3, c1, "10.99.0.1", "20M", 5004)
			broadcastOnce(t, b.Prefix, cs)
		})
	}
}

// TestInteropFullMesh: three hosts that all reach each other, one Weave Net
// and two weavenet: every container reaches every other, and a broadcast
// from any of them arrives exactly once at each of the others.
func TestInteropFullMesh(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.FullMesh})
	weave := []bool{true, false, false}
	cs := mixedHosts(t, b, weave, []int{2, 2, 2})
	for i, c := range cs {
		for j := range cs {
			if i != j {
				c.WaitPing(t, fmt.Sprintf("10.99.0.%d", j+1), pingTimeout)
			}
		}
	}
	// The two weavenet peers use the fast format between them and the
	// classic one towards Weave Net, each at its cadence (between weavenet
	// peers every 10 s, 30 s allowed, once their link is on the fast
	// datapath, whose probes then stand in for heartbeats).
	h2 := b.Hosts[1]
	links := strings.TrimSpace(h2.MustWeave(t, "report", "-f",
		"{{range .Router.Connections}}{{.PeerKind}}/{{.Format}}/{{.Heartbeat}}/{{.HeartbeatTimeout}} {{end}}"))
	if !strings.Contains(links, "weave/classic/10s/60s") {
		t.Errorf("h2's connections %q lack %q", links, "weave/classic/10s/60s")
	}
	if !strings.Contains(links, "weavenet/fast/1s/5s") && !strings.Contains(links, "weavenet/fast/10s/30s") {
		t.Errorf("h2's connections %q lack weavenet/fast/1s/5s (or 10s/30s on the fast datapath)", links)
	}
	broadcastOnce(t, b.Prefix, cs)
}

// TestInteropWeaveCompatIsWeavenet: --weave-compat restricts the data format
// and cipher, not the kind: two weavenet peers, one of them in that mode,
// still know each other as weavenet and keep weavenet's fast failure
// detection on a classic link.
func TestInteropWeaveCompatIsWeavenet(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	launch(t, h1, "--weave-compat")
	launch(t, h2, peerArg(t, h2, h1)...)
	waitMesh(t, h1, 1, 2)
	waitMesh(t, h2, 1, 2)
	for _, h := range b.Hosts {
		got := strings.TrimSpace(h.MustWeave(t, "report", "-f",
			"{{range .Router.Connections}}{{.PeerKind}} {{.PeerVersion}} {{.Format}} {{.Heartbeat}}/{{.HeartbeatTimeout}}{{end}}"))
		want := "weavenet " + strings.TrimSpace(h.MustWeave(t, "report", "-f", "{{.Version}}")) + " classic 1s/5s"
		if got != want {
			t.Errorf("%s: connection %q, want %q", h.Name, got, want)
		}
	}
}
