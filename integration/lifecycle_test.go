package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
	"weavenet/router"
)

// weave stop then launch keeps state (peer name, addresses); weave reset
// leaves no bridge, TAP, container link, socket or state behind.
func TestLaunchStopReset(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 1, Topology: testbed.FullMesh})
	h := b.Hosts[0]
	resolv := filepath.Join(h.DataDir, "none-resolv.conf")
	os.WriteFile(resolv, nil, 0o644)
	args := []string{"launch", "--data-dir", h.DataDir, "--dns-resolv-conf", resolv}
	name := strings.TrimSpace(h.MustWeave(t, args...))
	_, addr := h.MustRun(t, "keep")

	h.MustWeave(t, "stop")
	if name2 := strings.TrimSpace(h.MustWeave(t, args...)); name2 != name {
		t.Errorf("peer name changed across stop/launch: %s then %s", name, name2)
	}
	if ps := h.MustWeave(t, "ps"); !strings.Contains(ps, addr) {
		t.Errorf("after stop and launch, weave ps lacks %s:\n%s", addr, ps)
	}

	h.MustWeave(t, "reset", "--data-dir", h.DataDir) // named: never the machine's own state
	links := h.MustExec(t, "ip", "-o", "link", "show")
	for _, l := range []string{"weave", "vwtap", "vethwe"} {
		if strings.Contains(links, l) {
			t.Errorf("after reset a %s link is left:\n%s", l, links)
		}
	}
	socks := h.MustExec(t, "ss", "-Htuanl")
	for _, port := range []string{":6783", ":6784", ":6782", ":53"} {
		if strings.Contains(socks, port+" ") {
			t.Errorf("after reset something still listens on %s:\n%s", port, socks)
		}
	}
	for _, f := range []string{"ipam.db", "containers.json", "peer-name", "weaved.sock"} {
		if _, err := os.Stat(filepath.Join(h.DataDir, f)); err == nil {
			t.Errorf("after reset %s is left in the data dir", f)
		}
	}
	if _, err := os.Stat("/var/run/netns/" + b.Prefix + "keep"); err != nil {
		t.Logf("container namespace removed by reset too")
	}
	// And a fresh launch gets a new identity.
	if name3 := strings.TrimSpace(h.MustWeave(t, args...)); name3 == name {
		t.Errorf("reset kept the peer name %s", name)
	}
	h.MustWeave(t, "stop")

	// stop keeps the bridge and the state for the next launch; reset with
	// no daemon running removes them all the same.
	if links := h.MustExec(t, "ip", "-o", "link", "show"); !strings.Contains(links, "weave:") {
		t.Errorf("weave stop removed the bridge:\n%s", links)
	}
	h.MustWeave(t, "reset", "--data-dir", h.DataDir)
	if links := h.MustExec(t, "ip", "-o", "link", "show"); strings.Contains(links, "weave:") {
		t.Errorf("weave reset with no daemon left the bridge:\n%s", links)
	}
	for _, f := range []string{"ipam.db", "containers.json", "peer-name"} {
		if _, err := os.Stat(filepath.Join(h.DataDir, f)); err == nil {
			t.Errorf("weave reset with no daemon left %s", f)
		}
	}
}

// Where the sleeve carries the peer's unicast (here --datapath sleeve),
// weaved re-executes itself once so that the Go runtime's monitor never
// sleeps deep (cmd/weaved/runtime.go): the running daemon must keep its
// name for ps and pgrep, and carry the setting. With the fast datapath it
// runs as started, unless --low-latency asks.
func TestDaemonKeepsRuntimeMonitorAwake(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		awake bool
	}{
		{[]string{"--datapath", "sleeve"}, true},
		{nil, false},
		{[]string{"--low-latency"}, true},
		{[]string{"--datapath", "sleeve", "--low-latency=false"}, false},
	} {
		t.Run(strings.Join(append([]string{"args"}, tc.args...), " "), func(t *testing.T) {
			b := testbed.New(t, testbed.Options{Hosts: 1, Topology: testbed.FullMesh})
			h := b.Hosts[0]
			d := h.StartWeaved(t, tc.args...)
			h.WaitReady(t)
			environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", d.Pid()))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(environ), "GODEBUG=schedtrace=2147483647\x00"); got != tc.awake {
				t.Errorf("monitor kept awake: %v, want %v; weaved's environment:\n%s", got, tc.awake, strings.ReplaceAll(string(environ), "\x00", "\n"))
			}
			comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", d.Pid()))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(comm)); got != "weaved" {
				t.Errorf("the daemon is named %q, want weaved", got)
			}
		})
	}
}

// A daemon restart leaves the containers plugged in: weave stop keeps the
// bridge, and a start plugs the containers in again if it was deleted
// meanwhile. A TAP deleted under a running daemon makes it exit with an
// error (for systemd to restart it) instead of logging forever; the next
// start makes a new one.
func TestRestartKeepsContainersPlugged(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	start := func() *testbed.Daemon { return launch(t, h1, peerArg(t, h1, h2)[1]) }
	start()
	launch(t, h2, peerArg(t, h2, h1)[1])
	c1, _ := h1.MustRun(t, "c1")
	_, a2 := h2.MustRun(t, "c2")
	to := addrOf(t, a2).Addr().String()
	c1.WaitPing(t, to, pingTimeout)

	h1.MustWeave(t, "stop")
	if links := h1.MustExec(t, "ip", "-o", "link", "show", "master", "weave"); !strings.Contains(links, "vethwe") {
		t.Errorf("after weave stop the container's veth is off the bridge:\n%s", links)
	}
	start()
	c1.WaitPing(t, to, pingTimeout)

	h1.MustWeave(t, "stop")
	h1.MustExec(t, "ip", "link", "del", "weave")
	d := start()
	c1.WaitPing(t, to, pingTimeout)

	h1.MustExec(t, "ip", "link", "del", "vwtap-weave")
	select {
	case <-d.Done():
	case <-time.After(router.DeviceGiveUp + 10*time.Second):
		t.Fatalf("weaved still runs with its TAP deleted; log:\n%s", d.Logs())
	}
	var exit *exec.ExitError
	if _, err := d.Exited(); !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(d.Logs(), "restart weaved") {
		t.Errorf("weaved with its TAP deleted: %v, want exit code 1 and a message; log:\n%s", err, d.Logs())
	}
	start()
	c1.WaitPing(t, to, pingTimeout)
}

// A container whose namespace goes away (its processes end and its name is
// deleted) gives back its address and name by itself, whether the daemon
// runs at the time or is stopped.
func TestGoneContainersGiveBackAddresses(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 1, Topology: testbed.FullMesh})
	h := b.Hosts[0]
	launch(t, h)
	// From the test's own mount namespace: under ip netns exec, deleting a
	// namespace's name would unmount only a private copy of it.
	// weave run returns once its command runs in the namespace; kill it
	// and wait for it to be gone before deleting the namespace's name.
	pids := func(c *testbed.Container) []string {
		out, _ := exec.Command("ip", "netns", "pids", c.NS.Name).Output()
		return strings.Fields(string(out))
	}
	kill := func(c *testbed.Container) {
		t.Helper()
		if len(pids(c)) == 0 {
			t.Fatalf("weave run returned before %s's command ran in its namespace", c.Name)
		}
		testbed.WaitFor(t, 5*time.Second, func() bool {
			for _, pid := range pids(c) {
				exec.Command("kill", "-9", pid).Run()
			}
			return len(pids(c)) == 0
		}, c.Name+"'s processes end")
		if out, err := exec.Command("ip", "netns", "del", c.NS.Name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns del %s: %v %s", c.NS.Name, err, out)
		}
	}
	gone := func(name, why string) {
		t.Helper()
		testbed.WaitFor(t, 10*time.Second, func() bool {
			ps := h.MustWeave(t, "ps")
			_, err := h.Weave(t, "dns-lookup", name)
			return !strings.Contains(ps, b.Prefix+name) && err != nil
		}, name+" left weave ps and DNS "+why)
	}

	doomed, first := h.MustRun(t, "doomed")
	kill(doomed)
	gone("doomed", "while the daemon ran")
	if _, again := h.MustRun(t, "next"); addrOf(t, again) != addrOf(t, first) {
		t.Errorf("the next container got %s, not the address %s the gone one gave back", again, first)
	}

	late, _ := h.MustRun(t, "late")
	h.MustWeave(t, "stop")
	kill(late)
	launch(t, h)
	gone("late", "while the daemon was stopped")
}
