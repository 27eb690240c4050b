package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

func TestMain(m *testing.M) { testbed.Main(m) }

// How long the tests wait for the mesh to form and for data to flow.
const (
	meshTimeout = 30 * time.Second
	pingTimeout = 30 * time.Second
)

// launch starts weaved on h with args and waits until its API answers.
func launch(t *testing.T, h *testbed.Host, args ...string) *testbed.Daemon {
	t.Helper()
	d := h.StartWeaved(t, args...)
	h.WaitReady(t)
	return d
}

// peerArg returns a --peer flag naming to's address as seen from from.
func peerArg(t *testing.T, from, to *testbed.Host) []string {
	t.Helper()
	return []string{"--peer", to.AddrTowards(t, from).String()}
}

// waitMesh waits until h reports want established connections and knows
// peers peers.
func waitMesh(t *testing.T, h *testbed.Host, established, peers int) {
	t.Helper()
	var last string
	start := time.Now()
	ok := testbed.Poll(meshTimeout, func() bool {
		r, err := h.TryReport(t)
		if err != nil {
			last = err.Error()
			return false
		}
		last = describe(&r.Router)
		return r.Router.Established() == established && len(r.Router.Peers) == peers
	})
	if !ok {
		t.Fatalf("%s: want %d established connections and %d peers within %v; last seen: %s", h.Name, established, peers, meshTimeout, last)
	}
	t.Logf("%s: %d established, %d peers after %v", h.Name, established, peers, time.Since(start).Round(time.Millisecond))
}

// gossipedEstablished counts the established connections that the peers
// of a report gossip (each link counts once per end, as in weave status).
func gossipedEstablished(r *testbed.RouterReport) int {
	n := 0
	for _, p := range r.Peers {
		for _, c := range p.Connections {
			if c.Established {
				n++
			}
		}
	}
	return n
}

// waitTopology waits until h's view of the topology holds want established
// connections (counted at both ends).
func waitTopology(t *testing.T, h *testbed.Host, want int) {
	t.Helper()
	var last string
	ok := testbed.Poll(meshTimeout, func() bool {
		r, err := h.TryReport(t)
		if err != nil {
			last = err.Error()
			return false
		}
		last = describe(&r.Router)
		return gossipedEstablished(&r.Router) == want
	})
	if !ok {
		t.Fatalf("%s: want %d established connections gossiped within %v; last seen: %s", h.Name, want, meshTimeout, last)
	}
}

// describe summarises a router report for failure messages.
func describe(r *testbed.RouterReport) string {
	var conns []string
	for _, c := range r.Connections {
		conns = append(conns, fmt.Sprintf("%s %s %s", c.Address, c.State, c.Info))
	}
	var peers []string
	for _, p := range r.Peers {
		var pc []string
		for _, c := range p.Connections {
			pc = append(pc, fmt.Sprintf("%s@%s established=%v", c.Name, c.Address, c.Established))
		}
		peers = append(peers, fmt.Sprintf("%s(%s) -> {%s}", p.Name, p.NickName, strings.Join(pc, ", ")))
	}
	return fmt.Sprintf("connections=[%s] peers=[%s]", strings.Join(conns, "; "), strings.Join(peers, "; "))
}

// attach creates container name on h and attaches it with cidr.
func attach(t *testing.T, h *testbed.Host, name, cidr string) *testbed.Container {
	t.Helper()
	c := h.AddContainer(t, name)
	out := h.Attach(t, c, cidr)
	addr, _, _ := strings.Cut(cidr, "/")
	if !strings.Contains(out, addr) {
		t.Errorf("weave attach %s %s printed %q, want the address", cidr, name, out)
	}
	return c
}

// pingAll sends count pings and fails the test unless every one is answered.
func pingAll(t *testing.T, from *testbed.Container, addr string, count int, extra ...string) {
	t.Helper()
	pingNS(t, &from.NS, addr, count, extra...)
}

// pingNS is pingAll from any namespace: a host or a container.
func pingNS(t *testing.T, from *testbed.NS, addr string, count int, extra ...string) {
	t.Helper()
	args := append([]string{"ping", "-n", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "2"}, extra...)
	out, err := from.ExecTimeout(t, time.Duration(count)*3*time.Second+5*time.Second, append(args, addr)...)
	if err != nil {
		t.Fatalf("%s: ping %s %v: %v\n%s", from.Name, addr, extra, err, out)
	}
	want := fmt.Sprintf("%d packets transmitted, %d received", count, count)
	if !strings.Contains(out, want) {
		t.Fatalf("%s: ping %s %v lost packets:\n%s", from.Name, addr, extra, out)
	}
}

// transfer sends nbytes (e.g. "200M") over TCP from one container to
// another's addr and fails the test unless the receiver's count and sha256
// equal the sender's.
func transfer(t *testing.T, from, to *testbed.Container, toAddr, nbytes string, port int) {
	t.Helper()
	transferNS(t, &from.NS, &to.NS, toAddr, nbytes, port)
}

// transferNS is transfer between any namespaces: hosts or containers.
func transferNS(t *testing.T, from, to *testbed.NS, toAddr, nbytes string, port int) {
	t.Helper()
	recv := to.StartTool(t, "recv", "-timeout", "5m", fmt.Sprint(port))
	recv.WaitStderr(t, "listening", 10*time.Second)
	start := time.Now()
	sent, err := from.Tool(t, 6*time.Minute, "send", "-timeout", "5m", fmt.Sprintf("%s:%d", toAddr, port), nbytes)
	if err != nil {
		t.Fatalf("send %s to %s: %v", nbytes, toAddr, err)
	}
	got, err := recv.Wait(time.Minute)
	if err != nil {
		t.Fatalf("recv on %s: %v", to.Name, err)
	}
	if strings.TrimSpace(sent) != strings.TrimSpace(got) {
		t.Fatalf("transfer corrupted: sender %q, receiver %q", strings.TrimSpace(sent), strings.TrimSpace(got))
	}
	var n int64
	fmt.Sscan(sent, &n)
	secs := time.Since(start).Seconds()
	t.Logf("%s -> %s: %d bytes intact in %.1fs (%.0f Mbit/s)", from.Name, to.Name, n, secs, float64(n)*8/secs/1e6)
}

// wantLinks checks that each host's one connection shows want as
// FORMAT/CIPHER in weave report.
func wantLinks(t *testing.T, want string, hosts ...*testbed.Host) {
	t.Helper()
	for _, h := range hosts {
		got := strings.TrimSpace(h.MustWeave(t, "report", "-f", "{{range .Router.Connections}}{{.Format}}/{{.Cipher}} {{end}}"))
		if got != want {
			t.Errorf("%s: link format/cipher %q, want %q", h.Name, got, want)
		}
	}
}
