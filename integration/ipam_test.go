package integration

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// addrOf parses the first address weave run/attach printed.
func addrOf(t *testing.T, printed string) netip.Prefix {
	t.Helper()
	f := strings.Fields(printed)
	if len(f) == 0 {
		t.Fatalf("no address printed")
	}
	p, err := netip.ParsePrefix(f[0])
	if err != nil {
		t.Fatalf("printed %q: %v", printed, err)
	}
	return p
}

// launchTrio starts three fully meshed hosts (consensus among three) and
// waits for the mesh.
func launchTrio(t *testing.T, extra ...string) (*testbed.Bed, []*testbed.Host) {
	t.Helper()
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.FullMesh})
	h := b.Hosts
	launch(t, h[0], append(extra, peerArg(t, h[0], h[1])[1], peerArg(t, h[0], h[2])[1])...)
	launch(t, h[1], append(extra, peerArg(t, h[1], h[0])[1], peerArg(t, h[1], h[2])[1])...)
	launch(t, h[2], append(extra, peerArg(t, h[2], h[0])[1], peerArg(t, h[2], h[1])[1])...)
	for _, host := range h {
		waitMesh(t, host, 2, 3)
	}
	return b, h
}

// Three hosts agree on the range by consensus; 20 containers spread over
// them get distinct addresses in 10.32.0.0/12 and reach each other.
func TestIPAMConsensusUniqueAddresses(t *testing.T) {
	_, hosts := launchTrio(t)
	rng := netip.MustParsePrefix("10.32.0.0/12")
	seen := map[netip.Addr]string{}
	var cs []*testbed.Container
	var addrs []netip.Addr
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("c%d", i)
		c, out := hosts[i%3].MustRun(t, name)
		p := addrOf(t, out)
		if !rng.Contains(p.Addr()) || p.Bits() != 12 {
			t.Errorf("%s got %v, outside 10.32.0.0/12", name, p)
		}
		if other, dup := seen[p.Addr()]; dup {
			t.Fatalf("%s and %s both got %v", name, other, p.Addr())
		}
		seen[p.Addr()] = name
		cs = append(cs, c)
		addrs = append(addrs, p.Addr())
	}
	// Each container reaches the next one, which lives on another host.
	for i, c := range cs {
		c.WaitPing(t, addrs[(i+1)%len(cs)].String(), pingTimeout)
	}
	st := hosts[0].MustWeave(t, "status", "ipam")
	if strings.Count(st, "IPs") != 3 {
		t.Errorf("weave status ipam does not list three owners:\n%s", st)
	}
}

// Specific addresses, subnets, isolation, several subnets, detach of one,
// none then attach.
func TestIPAMSubnetsAndIsolation(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	ipam := []string{"--ipalloc-range", "10.2.0.0/16", "--ipalloc-default-subnet", "10.2.1.0/24", "--ipalloc-init", "consensus=2"}
	launch(t, h1, append(ipam, peerArg(t, h1, h2)[1])...)
	launch(t, h2, append(ipam, peerArg(t, h2, h1)[1])...)
	waitMesh(t, h1, 1, 2)

	_, out := h1.MustRun(t, "a", "10.2.1.200/24")
	if out != "10.2.1.200/24" {
		t.Fatalf("weave run 10.2.1.200/24 gave %q", out)
	}
	if _, _, err := h2.Run(t, "a2", "10.2.1.200/24"); err == nil {
		t.Fatal("a second container got 10.2.1.200, already taken")
	}
	x, outX := h1.MustRun(t, "x", "net:10.2.2.0/24")
	_, outY := h2.MustRun(t, "y", "net:10.2.2.0/24")
	d, outD := h2.MustRun(t, "d") // net:default
	both, outBoth := h2.MustRun(t, "both", "net:default", "net:10.2.2.0/24")
	ax, ay, ad := addrOf(t, outX).Addr().String(), addrOf(t, outY).Addr().String(), addrOf(t, outD).Addr().String()
	if !strings.HasPrefix(ax, "10.2.2.") || !strings.HasPrefix(ay, "10.2.2.") || ax == ay {
		t.Fatalf("net:10.2.2.0/24 gave %s and %s", ax, ay)
	}
	if len(strings.Fields(outBoth)) != 2 {
		t.Fatalf("a container in two subnets got %q", outBoth)
	}
	x.WaitPing(t, ay, pingTimeout)
	if err := x.Ping(t, ad, 2); err == nil {
		t.Errorf("x (10.2.2.0/24) reached d (default subnet)")
	}
	both.WaitPing(t, ax, pingTimeout)
	both.WaitPing(t, ad, pingTimeout)
	_ = d

	// Detach just the 10.2.2.0/24 address of "both".
	left := h2.MustWeave(t, "detach", "net:10.2.2.0/24", b.Prefix+"both")
	if strings.Contains(left, "10.2.2.") || !strings.Contains(left, "10.2.1.") {
		t.Errorf("after detach net:10.2.2.0/24, both has %q", left)
	}
	// none, then attach.
	n, outN := h1.MustRun(t, "n", "none")
	if outN != "" {
		t.Errorf("weave run none printed %q", outN)
	}
	got := h1.MustWeave(t, "attach", b.Prefix+"n")
	n.WaitPing(t, addrOf(t, got).Addr().String(), pingTimeout) // its own address, at least
	n.WaitPing(t, ad, pingTimeout)
}

// A daemon killed with -9 and launched again keeps every container's
// address; nothing is handed out twice, and freed addresses are reused.
func TestIPAMSurvivesRestart(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 1, Topology: testbed.FullMesh})
	h := b.Hosts[0]
	d := launch(t, h)
	_, out1 := h.MustRun(t, "r1")
	_, out2 := h.MustRun(t, "r2")
	d.Kill()
	launch(t, h)
	ps := h.MustWeave(t, "ps")
	for _, want := range []string{out1, out2} {
		if !strings.Contains(ps, want) {
			t.Errorf("after restart, weave ps lacks %s:\n%s", want, ps)
		}
	}
	_, out3 := h.MustRun(t, "r3")
	if out3 == out1 || out3 == out2 {
		t.Fatalf("restarted daemon handed out %s twice", out3)
	}
	h.MustWeave(t, "rm", b.Prefix+"r1")
	_, out4 := h.MustRun(t, "r4")
	if out4 != out1 {
		t.Errorf("freed %s was not reused: got %s", out1, out4)
	}
}

// The default range overlapping a host route fails launch with a clear
// error; an explicit --ipalloc-range fixes it.
func TestIPAMRangeOverlapsHostRoute(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 1, Topology: testbed.FullMesh})
	h := b.Hosts[0]
	h.MustExec(t, "ip", "link", "add", "clash0", "type", "bridge")
	h.MustExec(t, "ip", "addr", "add", "10.40.1.1/16", "dev", "clash0")
	h.MustExec(t, "ip", "link", "set", "clash0", "up")
	_, err := h.Weaved(t, "--data-dir", h.DataDir)
	if err == nil || !strings.Contains(testbed.Stderr(err), "--ipalloc-range") || testbed.ExitCode(err) != 1 {
		t.Fatalf("weaved with an overlapping default range: %v", err)
	}
	// Overlapping by hand: the user may mean it; the daemon runs and warns.
	d := launch(t, h, "--ipalloc-range", "10.40.0.0/16", "--data-dir", filepath.Join(h.DataDir, "by-hand"))
	if !strings.Contains(d.Logs(), "overlaps a route") {
		t.Errorf("no warning for an --ipalloc-range that overlaps a route; log:\n%s", d.Logs())
	}
	h.MustWeave(t, "stop")
	launch(t, h, "--ipalloc-range", "10.128.0.0/16")
	_, out := h.MustRun(t, "ok")
	if !strings.HasPrefix(out, "10.128.") {
		t.Fatalf("got %q from --ipalloc-range 10.128.0.0/16", out)
	}
	_ = time.Second
}

// rmpeer: refused for a live peer; for a dead one its space is taken over.
func TestIPAMRmpeer(t *testing.T) {
	_, hosts := launchTrio(t)
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	h3.MustRun(t, "doomed")
	if out, err := h1.Weave(t, "rmpeer", "h2"); err == nil || testbed.ExitCode(err) != 1 {
		t.Fatalf("rmpeer of live h2 was not refused: %q %v", out, err)
	}
	hosts[2].Report(t) // still answering
	for _, d := range []*testbed.Host{h3} {
		d.MustWeave(t, "stop")
	}
	var last string
	ok := testbed.Poll(20*time.Second, func() bool {
		out, err := h1.Weave(t, "status", "ipam")
		last = out
		return err == nil && strings.Contains(out, "(h3)") && strings.Contains(out, "unreachable")
	})
	if !ok {
		t.Fatalf("h1 does not see h3 unreachable:\n%s\n%s", last, describe(&h1.Report(t).Router))
	}
	out := h1.MustWeave(t, "rmpeer", "h3")
	var n int
	fmt.Sscan(out, &n)
	if n == 0 {
		t.Fatalf("rmpeer h3 took over nothing: %q", out)
	}
	st := h1.MustWeave(t, "status", "ipam")
	if strings.Contains(st, "(h3)") {
		t.Errorf("h3 still owns space after rmpeer:\n%s", st)
	}
	// Its space is usable: h2 can allocate as before.
	h2.MustRun(t, "after")
}

// Partition: cut h3 off, allocate on both sides, heal: no address is
// handed out twice and every peer ends up with the same ring.
func TestIPAMPartition(t *testing.T) {
	_, hosts := launchTrio(t)
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	h1.MustRun(t, "before") // the ring exists on all three
	iface := underlayIface(t, h3)
	h3.MustExec(t, "ip", "link", "set", iface, "down")
	healed := false
	t.Cleanup(func() {
		if !healed {
			h3.Exec(t, "ip", "link", "set", iface, "up")
		}
	})
	testbed.WaitFor(t, 30*time.Second, func() bool {
		r, err := h1.TryReport(t)
		return err == nil && r.Router.Established() == 1
	}, "h1 notices h3 is gone")

	seen := map[string]string{}
	record := func(name, out string) {
		a := addrOf(t, out).Addr().String()
		if other, dup := seen[a]; dup {
			t.Fatalf("%s and %s both got %s", name, other, a)
		}
		seen[a] = name
	}
	for i := 0; i < 3; i++ {
		_, a := h1.MustRun(t, fmt.Sprintf("p1x%d", i))
		record(fmt.Sprintf("p1x%d", i), a)
		_, b := h2.MustRun(t, fmt.Sprintf("p2x%d", i))
		record(fmt.Sprintf("p2x%d", i), b)
		_, c := h3.MustRun(t, fmt.Sprintf("p3x%d", i))
		record(fmt.Sprintf("p3x%d", i), c)
	}

	h3.MustExec(t, "ip", "link", "set", iface, "up")
	healed = true
	ring := func(h *testbed.Host) string {
		out, err := h.Weave(t, "status", "ipam")
		if err != nil {
			return "error: " + err.Error()
		}
		// Each line: owner, size, share and ranges; only the ranges and
		// owners matter here.
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(l)
			if len(f) > 0 {
				lines = append(lines, f[0]+" "+strings.Join(f[6:], " "))
			}
		}
		return strings.Join(lines, "\n")
	}
	var r1, r2, r3 string
	if !testbed.Poll(90*time.Second, func() bool {
		r1, r2, r3 = ring(h1), ring(h2), ring(h3)
		return r1 == r2 && r2 == r3 && !strings.Contains(r1, "unreachable") && strings.Count(r1, "\n") == 2
	}) {
		t.Fatalf("rings did not converge after healing:\nh1:\n%s\nh2:\n%s\nh3:\n%s", r1, r2, r3)
	}
	// And every container keeps a distinct address that works.
	for _, h := range hosts {
		for _, c := range strings.Split(strings.TrimSpace(h.MustWeave(t, "ps")), "\n") {
			f := strings.Fields(c)
			if len(f) < 3 || f[0] == "weave:expose" {
				continue
			}
			a := strings.Split(f[2], "/")[0]
			if owner, ok := seen[a]; ok && !strings.HasSuffix(f[0], owner) {
				t.Errorf("%s on %s has %s, which %s got", f[0], h.Name, a, owner)
			}
		}
	}
}

// weave expose gives the host an address on the weave network, from which it
// reaches containers on other hosts; weave hide takes it away.
func TestExposeHide(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	launch(t, h1)
	launch(t, h2, peerArg(t, h2, h1)...)
	waitMesh(t, h1, 1, 2)
	_, out := h2.MustRun(t, "target")
	target := addrOf(t, out).Addr().String()
	exposed := strings.TrimSpace(h1.MustWeave(t, "expose"))
	if !strings.HasPrefix(exposed, "10.") {
		t.Fatalf("weave expose printed %q", exposed)
	}
	h1.WaitPing(t, target, pingTimeout)
	if ps := h1.MustWeave(t, "ps"); !strings.Contains(ps, "weave:expose") {
		t.Errorf("weave ps does not list weave:expose:\n%s", ps)
	}
	// The exposed address survives a restart of the daemon.
	h1.MustWeave(t, "stop")
	launch(t, h1)
	h1.WaitPing(t, target, pingTimeout)
	h1.MustWeave(t, "hide")
	if addrs := h1.MustExec(t, "ip", "-o", "-4", "addr", "show", "dev", "weave"); strings.Contains(addrs, exposed) {
		t.Errorf("after hide the bridge still has %s:\n%s", exposed, addrs)
	}
}
