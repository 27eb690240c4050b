package testbed

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func TestPollAndWaitFor(t *testing.T) {
	var n atomic.Int32
	if !Poll(2*time.Second, func() bool { return n.Add(1) >= 3 }) {
		t.Fatal("Poll gave up on a condition that becomes true")
	}
	if Poll(150*time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll reported true for a false condition")
	}
	WaitFor(t, time.Second, func() bool { return true }, "trivially true")
	Consistently(t, 250*time.Millisecond, func() bool { return true }, "trivially true")
}

func TestExitCodeAndStderr(t *testing.T) {
	if ExitCode(nil) != 0 || ExitCode(errors.New("x")) != -1 {
		t.Fatal("ExitCode of nil / plain error")
	}
	e := fmt.Errorf("wrapped: %w", &ExecError{ExitCode: 3, Stderr: "boom"})
	if ExitCode(e) != 3 || Stderr(e) != "boom" {
		t.Fatalf("ExitCode=%d Stderr=%q", ExitCode(e), Stderr(e))
	}
}

func TestRouterReportHelpers(t *testing.T) {
	r := RouterReport{
		Connections: []ConnReport{
			{Address: "192.168.200.1:6783", State: "established"},
			{Address: "192.168.200.3:6783", State: "failed"},
			{Address: "[fd00::1]:6783", State: "established"},
		},
		Peers: []PeerReport{{Name: "aa:bb:cc:dd:ee:01", NickName: "h1"}},
	}
	if r.Established() != 2 {
		t.Errorf("Established() = %d", r.Established())
	}
	if !r.EstablishedTo("192.168.200.1") || r.EstablishedTo("192.168.200.3") || !r.EstablishedTo("fd00::1") {
		t.Error("EstablishedTo")
	}
	if r.Peer("h1") == nil || r.Peer("h2") != nil {
		t.Error("Peer")
	}
}

func TestFullMesh(t *testing.T) {
	b := New(t, Options{Hosts: 3, Topology: FullMesh})
	for _, h := range b.Hosts {
		for _, o := range b.Hosts {
			if h != o {
				h.WaitPing(t, o.Addr.String(), 10*time.Second)
			}
		}
	}
	if got, want := b.Hosts[2].Addr.String(), "192.168.200.3"; got != want {
		t.Errorf("h3.Addr = %s, want %s", got, want)
	}
	if a := b.Hosts[0].AddrTowards(t, b.Hosts[2]); a != b.Hosts[0].Addr {
		t.Errorf("AddrTowards = %s", a)
	}

	// wntool over the underlay: a TCP stream h1 -> h3 arrives intact.
	h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
	recv := h3.StartTool(t, "recv", "-timeout", "60s", "5001")
	recv.WaitStderr(t, "listening", 10*time.Second)
	sent, err := h1.Tool(t, time.Minute, "send", h3.Addr.String()+":5001", "20M")
	if err != nil {
		t.Fatal(err)
	}
	got, err := recv.Wait(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if sent != got || !strings.HasPrefix(got, strconv.Itoa(20<<20)+" ") {
		t.Fatalf("sent %q, received %q", sent, got)
	}

	// Multicast on the underlay bridge reaches each other host once.
	var rs []*Proc
	for _, h := range []*Host{h2, h3} {
		p := h.StartTool(t, "mcast-recv", "239.7.7.7:5007", "eth0", "2s")
		p.WaitStderr(t, "listening", 10*time.Second)
		rs = append(rs, p)
	}
	if _, err := h1.Tool(t, 10*time.Second, "mcast-send", "239.7.7.7:5007", "auto"); err != nil {
		t.Fatal(err)
	}
	for i, p := range rs {
		out, err := p.Wait(10 * time.Second)
		if err != nil || strings.TrimSpace(out) != "1" {
			t.Errorf("h%d mcast-recv: %q %v", i+2, out, err)
		}
	}
}

func TestLine(t *testing.T) {
	b := New(t, Options{Hosts: 3, Topology: Line})
	h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
	if len(h2.Addrs) != 2 || len(h1.Addrs) != 1 || len(h3.Addrs) != 1 {
		t.Fatalf("addresses: h1 %v h2 %v h3 %v", h1.Addrs, h2.Addrs, h3.Addrs)
	}
	h1.WaitPing(t, h2.AddrTowards(t, h1).String(), 10*time.Second)
	h2.WaitPing(t, h1.Addr.String(), 10*time.Second)
	h3.WaitPing(t, h2.AddrTowards(t, h3).String(), 10*time.Second)
	h2.WaitPing(t, h3.Addr.String(), 10*time.Second)
	if h2.AddrTowards(t, h1) == h2.AddrTowards(t, h3) {
		t.Fatal("h2 uses one address towards both neighbours")
	}
	// h1 and h3 share no segment and h2 does not forward: h3 is unreachable
	// from h1 even with a route through h2.
	h1.MustExec(t, "ip", "route", "add", h3.Nets[0].String(), "via", h2.AddrTowards(t, h1).String())
	h3.MustExec(t, "ip", "route", "add", h1.Nets[0].String(), "via", h2.AddrTowards(t, h3).String())
	if err := h1.Ping(t, h3.Addr.String(), 2); err == nil {
		t.Fatal("h1 reached h3 in a Line topology")
	}
	fwd := strings.TrimSpace(h2.MustExec(t, "cat", "/proc/sys/net/ipv4/ip_forward"))
	if fwd != "0" {
		t.Fatalf("h2 ip_forward = %s", fwd)
	}
}

func TestContainers(t *testing.T) {
	b := New(t, Options{Hosts: 1})
	c := b.Hosts[0].AddContainer(t, "c1")
	if c.NS.Name != b.Prefix+"c1" {
		t.Fatalf("container namespace %q", c.NS.Name)
	}
	out := c.MustExec(t, "ip", "-o", "link", "show", "lo")
	if !strings.Contains(out, "UP") {
		t.Fatalf("lo not up in container: %s", out)
	}
	// A veth from the host into the container is its only interface.
	b.ip(t, "link", "add", "vh", "netns", b.Hosts[0].NS.Name, "type", "veth", "peer", "name", "ethx", "netns", c.NS.Name)
	if got := c.Iface(t); got != "ethx" {
		t.Fatalf("Iface = %q", got)
	}
	_, err := c.Exec(t, "sh", "-c", "echo oops >&2; exit 3")
	if ExitCode(err) != 3 || !strings.Contains(err.Error(), "oops") {
		t.Fatalf("Exec error %v (exit %d)", err, ExitCode(err))
	}
	if _, err := c.ExecTimeout(t, 200*time.Millisecond, "sleep", "10"); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("ExecTimeout error %v", err)
	}
}

func rootLinks(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	links := map[string]bool{}
	for _, line := range strings.Split(out2s(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			links[name] = true
		}
	}
	return links
}

func out2s(b []byte) string { return string(b) }

// processGone reports whether pid has exited (a zombie waiting for its
// parent counts as exited).
func processGone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

func TestCleanupLeavesNothing(t *testing.T) {
	RequireRoot(t)
	before := rootLinks(t)
	var prefix, dataDir string
	var orphan int
	for _, tp := range []Topology{Line, FullMesh} {
		t.Run(tp.String(), func(t *testing.T) {
			b := New(t, Options{Hosts: 3, Topology: tp})
			prefix, dataDir = b.Prefix, b.Dir
			b.Hosts[0].AddContainer(t, "c1")
			// A process that escapes the test's bookkeeping is still killed.
			out := b.Hosts[1].MustExec(t, "sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!")
			var err error
			if orphan, err = strconv.Atoi(strings.TrimSpace(out)); err != nil {
				t.Fatal(err)
			}
		})
		nss, _ := os.ReadDir(netnsDir)
		for _, ns := range nss {
			if strings.HasPrefix(ns.Name(), prefix) {
				t.Errorf("%s: namespace %s left behind", tp, ns.Name())
			}
		}
		if !Poll(5*time.Second, func() bool { return processGone(orphan) }) {
			t.Errorf("%s: process %d in a host namespace survived cleanup", tp, orphan)
		}
		if _, err := os.Stat(dataDir); err == nil {
			t.Errorf("%s: data dir %s left behind", tp, dataDir)
		}
		if _, err := os.Stat(filepath.Join(markerDir, prefix)); err == nil {
			t.Errorf("%s: marker left behind", tp)
		}
	}
	for name := range rootLinks(t) {
		if !before[name] && (strings.HasPrefix(name, "wn") || strings.HasPrefix(name, "eth") || strings.HasPrefix(name, "p") || name == "br0") {
			t.Errorf("link %s appeared in the root namespace", name)
		}
	}
}

func TestSweepStale(t *testing.T) {
	RequireRoot(t)
	// A bed whose test process is dead: a namespace and a marker naming a
	// pid that has exited.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	prefix := newPrefix()
	name := prefix + "h1"
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() { destroy(prefix, []string{name}); removeMarker(prefix) })
	if err := os.MkdirAll(markerDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(markerDir, prefix), []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	New(t, Options{Hosts: 1})
	if _, err := os.Stat(filepath.Join(netnsDir, name)); err == nil {
		t.Fatalf("stale namespace %s not swept", name)
	}
	if _, err := os.Stat(filepath.Join(markerDir, prefix)); err == nil {
		t.Fatal("stale marker not removed")
	}
}
