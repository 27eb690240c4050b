package integration

import (
	"encoding/hex"
	"fmt"
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
				nargs = append(nargs, "--password", tc.password)
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
			if logs := d.Logs(); strings.Contains(logs, "connection-lost") || strings.Contains(logs, "no UDP heartbeat") {
				t.Errorf("weavenet's log shows a lost connection:\n%s", lastLines(logs, 30))
			}
		})
	}
}

// TestInteropLine: h1 - h2 - h3 in a line (h1 and h3 cannot reach each
// other), the middle host of one kind and the ends of the other. The ends'
// containers reach each other through the middle router, and a broadcast
// from one end arrives exactly once at each other host.
func TestInteropLine(t *testing.T) {
	for _, tc := range []struct {
		name           string
		middleWeaveNet bool
	}{
		{"middle-weave", false},
		{"middle-weavenet", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.Line})
			h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
			var cs [3]*testbed.Container
			addrs := [3]string{"10.99.0.1", "10.99.0.2", "10.99.0.3"}
			if tc.middleWeaveNet {
				w1 := h1.StartWeaver(t)
				w3 := h3.StartWeaver(t)
				launch(t, h2, "--peer", h1.AddrTowards(t, h2).String(), "--peer", h3.AddrTowards(t, h2).String())
				waitMesh(t, h2, 2, 3)
				waitWeaver(t, w1, 1)
				waitWeaver(t, w3, 1)
				cs[0], cs[2] = h1.AddContainer(t, "c1"), h3.AddContainer(t, "c3")
				w1.Attach(t, cs[0], addrs[0]+"/24")
				w3.Attach(t, cs[2], addrs[2]+"/24")
				cs[1] = attach(t, h2, "c2", addrs[1]+"/24")
			} else {
				w2 := h2.StartWeaver(t)
				launch(t, h1, peerArg(t, h1, h2)...)
				launch(t, h3, peerArg(t, h3, h2)...)
				waitWeaver(t, w2, 2)
				waitMesh(t, h1, 1, 3)
				waitMesh(t, h3, 1, 3)
				cs[0] = attach(t, h1, "c1", addrs[0]+"/24")
				cs[2] = attach(t, h3, "c3", addrs[2]+"/24")
				cs[1] = h2.AddContainer(t, "c2")
				w2.Attach(t, cs[1], addrs[1]+"/24")
			}
			c1, c3 := cs[0], cs[2]
			c1.WaitPing(t, addrs[2], pingTimeout)
			pingAll(t, c1, addrs[2], 5)
			pingAll(t, c3, addrs[0], 5)
			pingAll(t, c1, addrs[1], 3)
			pingAll(t, c3, addrs[1], 3)
			transfer(t, c1, c3, addrs[2], "20M", 5003)

			// A broadcast from each end: counted where it lands.
			for from := 0; from < 3; from += 2 {
				marker := fmt.Sprintf("interop-bcast-%s-from-c%d", b.Prefix, from+1)
				var caps []*testbed.Proc
				var at []int
				for i, c := range cs {
					if i == from {
						continue
					}
					p := c.StartTool(t, "capture", "ethwe", marker, "6s")
					p.WaitStderr(t, "capturing", 10*time.Second)
					caps = append(caps, p)
					at = append(at, i)
				}
				if _, err := cs[from].Tool(t, 10*time.Second, "udp-send-hex", "10.99.0.255:7777", hex.EncodeToString([]byte(marker))); err != nil {
					t.Fatalf("broadcast from c%d: %v", from+1, err)
				}
				for j, p := range caps {
					out, err := p.Wait(20 * time.Second)
					if err != nil {
						t.Fatalf("capture on c%d: %v", at[j]+1, err)
					}
					var frames, matches int
					fmt.Sscan(out, &frames, &matches)
					if matches != 1 {
						t.Errorf("a broadcast from c%d arrived %d times at c%d, want once", from+1, matches, at[j]+1)
					}
				}
			}
		})
	}
}
