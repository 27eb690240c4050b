package integration

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// The fast datapath (issue 16): known unicast between weavenet peers goes
// through the kernel's VXLAN, everything else over the sleeve.

// datapaths is each of h's connections' datapath and reason, as
// "fastdp" or "sleeve(reason)", separated by ";".
func datapaths(t *testing.T, h *testbed.Host) string {
	t.Helper()
	out := h.MustWeave(t, "report", "-f", `{{range .Router.Connections}}{{if .Datapath}}{{.Datapath}}{{if .DatapathReason}}({{.DatapathReason}}){{end}};{{end}}{{end}}`)
	return strings.TrimSpace(out)
}

// waitDatapath waits until every connection of h reports want (fastdp or
// sleeve), and returns how long that took.
func waitDatapath(t *testing.T, h *testbed.Host, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var got string
	for time.Since(start) < within {
		got = datapaths(t, h)
		ok := got != ""
		for _, p := range strings.Split(strings.TrimSuffix(got, ";"), ";") {
			if p != want && !strings.HasPrefix(p, want+"(") {
				ok = false
			}
		}
		if ok {
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: datapaths %q after %v, want all %s", h.Name, got, within, want)
	return 0
}

// fastPair is two hosts with a container each (c1 10.32.0.1 on h1, c2
// 10.32.0.2 on h2) that ping each other, their link on the fast datapath.
func fastPair(t *testing.T) (h1, h2 *testbed.Host, c1, c2 *testbed.Container) {
	t.Helper()
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 = b.Hosts[0], b.Hosts[1]
	launch(t, h1)
	launch(t, h2, peerArg(t, h2, h1)...)
	waitMesh(t, h1, 1, 2)
	c1 = attach(t, h1, "c1", "10.32.0.1/12")
	c2 = attach(t, h2, "c2", "10.32.0.2/12")
	c1.WaitPing(t, "10.32.0.2", pingTimeout)
	t.Logf("fastdp after %v", waitDatapath(t, h1, "fastdp", 15*time.Second))
	waitDatapath(t, h2, "fastdp", 5*time.Second)
	return h1, h2, c1, c2
}

// fastCounters are h's router counters (bytes through weaved) and its
// VXLAN device's (bytes through the kernel only).
func fastCounters(t *testing.T, h *testbed.Host) (routerIn, routerOut, vxRx, vxTx uint64) {
	t.Helper()
	out := h.MustWeave(t, "report", "-f", `{{.Router.Stats.BytesIn}} {{.Router.Stats.BytesOut}} {{with .Router.FastDatapath}}{{.RxBytes}} {{.TxBytes}}{{else}}0 0{{end}}`)
	f := strings.Fields(out)
	if len(f) != 4 {
		t.Fatalf("%s: counters %q", h.Name, out)
	}
	var v [4]uint64
	for i := range f {
		v[i], _ = strconv.ParseUint(f[i], 10, 64)
	}
	return v[0], v[1], v[2], v[3]
}

// Two hosts, no password: the link uses the fast datapath, 200 MB arrive
// intact, and weaved's own counters show the bytes went through the VXLAN
// device, not through weaved.
func TestFastdpTwoHosts(t *testing.T) {
	h1, h2, c1, c2 := fastPair(t)
	pingAll(t, c1, "10.32.0.2", 3) // the entries are in place after a round of probes
	// The probes now stand in for heartbeats, and status says so.
	beats := func() string {
		return strings.TrimSpace(h1.MustWeave(t, "report", "-f", "{{range .Router.Connections}}{{.Heartbeat}}/{{.HeartbeatTimeout}}{{end}}"))
	}
	testbed.WaitFor(t, 5*time.Second, func() bool { return beats() == "10s/30s" },
		"h1's link on the fast datapath reported with heartbeats every 10s, 30s allowed")

	in1, out1, rx1, tx1 := fastCounters(t, h1)
	in2, out2, rx2, tx2 := fastCounters(t, h2)
	transfer(t, c1, c2, "10.32.0.2", "200M", 5101)
	in1b, out1b, rx1b, tx1b := fastCounters(t, h1)
	in2b, out2b, rx2b, tx2b := fastCounters(t, h2)
	t.Logf("h1 router in/out +%d/+%d bytes, VXLAN rx/tx +%d/+%d", in1b-in1, out1b-out1, rx1b-rx1, tx1b-tx1)
	t.Logf("h2 router in/out +%d/+%d bytes, VXLAN rx/tx +%d/+%d", in2b-in2, out2b-out2, rx2b-rx2, tx2b-tx2)
	const mb200 = 200 << 20
	if tx1b-tx1 < mb200 || rx2b-rx2 < mb200 {
		t.Errorf("VXLAN devices carried h1 tx %d, h2 rx %d bytes; want at least the 200 MB", tx1b-tx1, rx2b-rx2)
	}
	// Heartbeats, probes' acknowledgements and the odd ARP still pass
	// through weaved: a little, nothing like the transfer.
	for _, d := range []uint64{in1b - in1, out1b - out1, in2b - in2, out2b - out2} {
		if d > 1<<20 {
			t.Errorf("weaved carried %d bytes of the transfer; want under 1 MiB", d)
		}
	}

}

// The sleeve's port blocked on one host while the VXLAN port stays open:
// the probes keep the link on the fast datapath, but broadcasts (ARP among
// them) travel on the sleeve, so a link whose sleeve is shut must not look
// healthy. The blocked host hears no heartbeat and gives the connection up
// within sleeveSilence (30 s) of the last, saying why; unblocked, the
// hosts connect again.
func TestFastdpSleeveBlocked(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed: cannot block the sleeve's port")
	}
	t.Parallel() // mostly waiting
	_, h2, c1, _ := fastPair(t)

	h2.MustExec(t, "nft", "add", "table", "inet", "wnsleevetest")
	h2.MustExec(t, "nft", "add", "chain", "inet", "wnsleevetest", "in", "{ type filter hook input priority 0 ; }")
	h2.MustExec(t, "nft", "add", "rule", "inet", "wnsleevetest", "in", "udp", "dport", "6783", "drop")
	blocked := time.Now()
	// Heartbeats go every 10 s on such a link, so the last one before the
	// block is at most 10 s old; then 30 s, rounded up to a whole second.
	established := func(h *testbed.Host) int {
		r, err := h.TryReport(t)
		if err != nil {
			return -1
		}
		return r.Router.Established()
	}
	if !testbed.Poll(50*time.Second, func() bool { return established(h2) == 0 }) {
		t.Fatalf("h2 still has an established connection %v after its sleeve port was blocked: %s",
			time.Since(blocked).Round(time.Second), datapaths(t, h2))
	}
	t.Logf("h2 gave the connection up %v after the block", time.Since(blocked).Round(100*time.Millisecond))
	if log, err := os.ReadFile(filepath.Join(h2.DataDir, testbed.LogFile)); err != nil || !strings.Contains(string(log), "no UDP heartbeat") {
		t.Errorf("h2's log does not say no heartbeat arrived (%v):\n%s", err, lastLines(string(log), 20))
	}

	h2.MustExec(t, "nft", "delete", "table", "inet", "wnsleevetest")
	waitMesh(t, h2, 1, 2)
	c1.WaitPing(t, "10.32.0.2", pingTimeout)
}

// The VXLAN port blocked on one host (nftables, in the host's namespace):
// within seconds both ends fall back to the sleeve, with the reason, while
// a TCP transfer runs on and arrives intact; unblocked, the link returns to
// the fast datapath.
func TestFastdpFallback(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed: cannot block the VXLAN port")
	}
	h1, h2, c1, c2 := fastPair(t)

	// Slow the underlay so that the transfer outlasts both switches.
	h1.MustExec(t, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "100mbit", "burst", "256kb", "latency", "50ms")
	recv := c2.StartTool(t, "recv", "-timeout", "3m", "5111")
	recv.WaitStderr(t, "listening", 10*time.Second)
	send := c1.StartTool(t, "send", "-timeout", "3m", "10.32.0.2:5111", "250M")
	time.Sleep(2 * time.Second)

	h2.MustExec(t, "nft", "add", "table", "inet", "wnfdptest")
	h2.MustExec(t, "nft", "add", "chain", "inet", "wnfdptest", "in", "{ type filter hook input priority 0 ; }")
	h2.MustExec(t, "nft", "add", "rule", "inet", "wnfdptest", "in", "udp", "dport", "4789", "drop")
	t.Logf("h1 on the sleeve %v after the block: %s", waitDatapath(t, h1, "sleeve", 15*time.Second), datapaths(t, h1))
	waitDatapath(t, h2, "sleeve", 5*time.Second)
	t.Logf("h2: %s", datapaths(t, h2))
	if p := datapaths(t, h1); !strings.Contains(p, "no answer") {
		t.Errorf("h1's reason %q does not say its probes go unanswered", p)
	}
	// h2 hears of its own probes only inside h1's, which stop arriving
	// first: it falls back as soon as its acknowledgements are too old
	// ("no answer"), and says why once h1's probes are too old as well.
	var why string
	if !testbed.Poll(10*time.Second, func() bool {
		why = datapaths(t, h2)
		return strings.Contains(why, "blocked on this host")
	}) {
		t.Errorf("h2's reason %q does not say the peer's probes do not arrive", why)
	}
	status := h1.MustWeave(t, "status", "connections")
	if !strings.Contains(status, "datapath=sleeve (") {
		t.Errorf("weave status connections does not show the sleeve and why:\n%s", status)
	}
	time.Sleep(2 * time.Second) // some of the transfer on the sleeve

	h2.MustExec(t, "nft", "delete", "table", "inet", "wnfdptest")
	t.Logf("h1 back on fastdp %v after the unblock", waitDatapath(t, h1, "fastdp", 10*time.Second))
	waitDatapath(t, h2, "fastdp", 5*time.Second)

	sent, err := send.Wait(3 * time.Minute)
	if err != nil {
		t.Fatalf("send: %v\n%s", err, send.Stderr())
	}
	got, err := recv.Wait(time.Minute)
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	if strings.TrimSpace(sent) != strings.TrimSpace(got) || strings.TrimSpace(sent) == "" {
		t.Fatalf("transfer across both switches: sender %q, receiver %q", sent, got)
	}
	t.Logf("250 MB intact across fastdp → sleeve → fastdp: %s", strings.TrimSpace(got))
}

// With a password (no trusted subnets) every link is encrypted: the
// sleeve, and status says why; with trusted subnets on both ends the link
// needs no encryption and uses the fast datapath.
func TestFastdpPassword(t *testing.T) {
	t.Run("password", func(t *testing.T) {
		b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
		h1, h2 := b.Hosts[0], b.Hosts[1]
		launch(t, h1, "--password", "s3cret")
		launch(t, h2, "--password", "s3cret", peerArg(t, h2, h1)[1])
		waitMesh(t, h1, 1, 2)
		c1 := attach(t, h1, "c1", "10.32.0.1/12")
		attach(t, h2, "c2", "10.32.0.2/12")
		c1.WaitPing(t, "10.32.0.2", pingTimeout)
		time.Sleep(fastdpSettle)
		for _, h := range []*testbed.Host{h1, h2} {
			p := datapaths(t, h)
			if !strings.HasPrefix(p, "sleeve(") || !strings.Contains(p, "encrypted") {
				t.Errorf("%s: datapath %q, want the sleeve because the link is encrypted", h.Name, p)
			}
		}
		status := h1.MustWeave(t, "status", "connections")
		t.Logf("h1 status connections: %s", status)
		if !strings.Contains(status, "datapath=sleeve (") || !strings.HasSuffix(strings.TrimSpace(status), " encrypted") {
			t.Errorf("status connections should say sleeve, why, and end in encrypted:\n%s", status)
		}
		esp := h1.MustWeave(t, "report", "-f", "{{.Router.FastDatapath.Encrypted}}")
		t.Logf("encrypted links: %s", esp)
		if !strings.Contains(esp, "IPsec ESP") {
			t.Errorf("report does not say what the ESP probe found: %q", esp)
		}
	})
	t.Run("trusted-subnets", func(t *testing.T) {
		b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
		h1, h2 := b.Hosts[0], b.Hosts[1]
		launch(t, h1, "--password", "s3cret", "--trusted-subnets", "192.168.200.0/24")
		launch(t, h2, "--password", "s3cret", "--trusted-subnets", "192.168.200.0/24", peerArg(t, h2, h1)[1])
		waitMesh(t, h1, 1, 2)
		c1 := attach(t, h1, "c1", "10.32.0.1/12")
		c2 := attach(t, h2, "c2", "10.32.0.2/12")
		c1.WaitPing(t, "10.32.0.2", pingTimeout)
		waitDatapath(t, h1, "fastdp", 15*time.Second)
		waitDatapath(t, h2, "fastdp", 5*time.Second)
		transfer(t, c1, c2, "10.32.0.2", "50M", 5121)
	})
}

// fastdpSettle is long enough for a link that could use the fast datapath
// to have proven it (a few probe rounds).
const fastdpSettle = 3 * time.Second

// Three hosts in a line (h1 cannot reach h3), every link on the fast
// datapath: c1 reaches c3 through h2's router; broadcast and multicast
// arrive once at every container, unicast once.
func TestFastdpLine(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.Line})
	h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
	launch(t, h1)
	launch(t, h2, peerArg(t, h2, h1)...)
	launch(t, h3, peerArg(t, h3, h2)...)
	waitMesh(t, h2, 2, 3)
	waitMesh(t, h1, 1, 3)
	waitMesh(t, h3, 1, 3)
	cs := fastdpContainers(t, b)
	for _, h := range b.Hosts {
		waitDatapath(t, h, "fastdp", 15*time.Second)
	}
	allReachAll(t, cs)
	transfer(t, cs[0], cs[2], "10.99.0.3", "50M", 5131)
	broadcastOnce(t, b.Prefix, cs)
	multicastOnce(t, cs)
	unicastOnce(t, b.Prefix, cs)
}

// Mixed: one peer started with --datapath sleeve among fastdp peers. Its
// links use the sleeve (and say why), the others the fast datapath, and
// everything reaches everything, once.
func TestFastdpMixed(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.FullMesh})
	h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
	launch(t, h1)
	launch(t, h2, peerArg(t, h2, h1)...)
	launch(t, h3, append([]string{"--datapath", "sleeve"}, peerArg(t, h3, h1)...)...)
	for _, h := range b.Hosts {
		waitMesh(t, h, 2, 3)
	}
	cs := fastdpContainers(t, b)
	waitDatapath(t, h3, "sleeve", 5*time.Second)
	testbed.WaitFor(t, 15*time.Second, func() bool {
		p := datapaths(t, h1)
		return strings.Contains(p, "fastdp;") && strings.Contains(p, "sleeve(the peer does not offer")
	}, "h1 has one fastdp link (to h2) and one sleeve link (to h3, which does not offer it)")
	t.Logf("h1: %s", datapaths(t, h1))
	t.Logf("h3: %s", datapaths(t, h3))
	allReachAll(t, cs)
	transfer(t, cs[0], cs[1], "10.99.0.2", "50M", 5141)
	transfer(t, cs[2], cs[0], "10.99.0.1", "50M", 5142)
	broadcastOnce(t, b.Prefix, cs)
	multicastOnce(t, cs)
	unicastOnce(t, b.Prefix, cs)
}

// A Weave Net 2.8.1 peer beside two weavenet peers on the fast datapath:
// its links use the sleeve, and it reaches both.
func TestFastdpWithWeaveNet(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.FullMesh})
	cs := mixedHosts(t, b, []bool{false, false, true}, []int{2, 2, 2})
	h1 := b.Hosts[0]
	testbed.WaitFor(t, 15*time.Second, func() bool {
		p := datapaths(t, h1)
		return strings.Contains(p, "fastdp;") && strings.Contains(p, "sleeve(the peer is Weave Net")
	}, "h1: fastdp to h2, the sleeve to Weave Net")
	t.Logf("h1: %s", datapaths(t, h1))
	allReachAll(t, cs)
	transfer(t, cs[0], cs[1], "10.99.0.2", "50M", 5151)
	transfer(t, cs[2], cs[0], "10.99.0.1", "20M", 5152)
	broadcastOnce(t, b.Prefix, cs)
}

// fastdpContainers attaches container cN with 10.99.0.N/24 to each host.
func fastdpContainers(t *testing.T, b *testbed.Bed) []*testbed.Container {
	t.Helper()
	var cs []*testbed.Container
	for i, h := range b.Hosts {
		cs = append(cs, attach(t, h, fmt.Sprintf("c%d", i+1), fmt.Sprintf("10.99.0.%d/24", i+1)))
	}
	return cs
}

// allReachAll pings every container from every other.
func allReachAll(t *testing.T, cs []*testbed.Container) {
	t.Helper()
	for i, c := range cs {
		for j := range cs {
			if i != j {
				c.WaitPing(t, fmt.Sprintf("10.99.0.%d", j+1), pingTimeout)
				pingAll(t, c, fmt.Sprintf("10.99.0.%d", j+1), 2)
			}
		}
	}
}

// multicastOnce sends one multicast datagram from each container; every
// other container receives exactly one copy.
func multicastOnce(t *testing.T, cs []*testbed.Container) {
	t.Helper()
	for from, c := range cs {
		group := fmt.Sprintf("239.10.20.%d:%d", 30+from, 6000+from)
		var recvs []*testbed.Proc
		var at []int
		for i, o := range cs {
			if i != from {
				p := o.StartTool(t, "mcast-recv", group, "auto", "5s")
				p.WaitStderr(t, "listening", 10*time.Second)
				recvs, at = append(recvs, p), append(at, i)
			}
		}
		if _, err := c.Tool(t, 10*time.Second, "mcast-send", group, "auto"); err != nil {
			t.Fatal(err)
		}
		for k, p := range recvs {
			out, err := p.Wait(20 * time.Second)
			if err != nil {
				t.Fatalf("c%d mcast-recv: %v", at[k]+1, err)
			}
			if got := strings.TrimSpace(out); got != "1" {
				t.Errorf("c%d received %s copies of c%d's multicast datagram, want 1", at[k]+1, got, from+1)
			}
		}
	}
}

// unicastOnce sends one UDP datagram from each container to each other one
// and captures it at the receiver: it arrives once, by one path.
func unicastOnce(t *testing.T, prefix string, cs []*testbed.Container) {
	t.Helper()
	for from, c := range cs {
		for to, o := range cs {
			if from == to {
				continue
			}
			marker := fmt.Sprintf("fastdp-ucast-%s-c%d-c%d", prefix, from+1, to+1)
			// A listener, so that no ICMP error quoting the datagram
			// shows up in the capture as a second copy.
			recv := o.StartTool(t, "udp-recv", "-timeout", "10s", "7778")
			recv.WaitStderr(t, "listening", 10*time.Second)
			p := o.StartTool(t, "capture", "ethwe", marker, "3s")
			p.WaitStderr(t, "capturing", 10*time.Second)
			if _, err := c.Tool(t, 10*time.Second, "udp-send-hex", fmt.Sprintf("10.99.0.%d:7778", to+1), hex.EncodeToString([]byte(marker))); err != nil {
				t.Fatalf("unicast c%d → c%d: %v", from+1, to+1, err)
			}
			out, err := p.Wait(20 * time.Second)
			if err != nil {
				t.Fatalf("capture on c%d: %v", to+1, err)
			}
			if _, err := recv.Wait(20 * time.Second); err != nil {
				t.Errorf("c%d → c%d: udp-recv: %v", from+1, to+1, err)
			}
			var frames, matches int
			fmt.Sscan(out, &frames, &matches)
			if matches != 1 {
				t.Errorf("c%d → c%d: the datagram arrived %d times, want once", from+1, to+1, matches)
			}
		}
	}
}

// An underlay whose MTU is too small for VXLAN frames of the overlay MTU
// (1400 < 1376 + 50): the full-sized probes do not get through, so the
// link stays on the sleeve (which fragments) and says why.
func TestFastdpSmallMTU(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	b.SetUnderlayMTU(t, 1400)
	h1, h2 := b.Hosts[0], b.Hosts[1]
	launch(t, h1)
	launch(t, h2, peerArg(t, h2, h1)...)
	waitMesh(t, h1, 1, 2)
	c1 := attach(t, h1, "c1", "10.32.0.1/12")
	c2 := attach(t, h2, "c2", "10.32.0.2/12")
	c1.WaitPing(t, "10.32.0.2", pingTimeout)
	testbed.WaitFor(t, 10*time.Second, func() bool {
		return strings.Contains(datapaths(t, h1), "MTU") && strings.Contains(datapaths(t, h2), "MTU")
	}, "both ends on the sleeve because of the MTU")
	t.Logf("h1: %s", datapaths(t, h1))
	transfer(t, c1, c2, "10.32.0.2", "20M", 5161)
}
