package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
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

	h.MustWeave(t, "reset")
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
	for _, f := range []string{"ipam.db", "containers.json", "peer-name"} {
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
	_ = time.Second
}

// weaved re-executes itself once so that the Go runtime's monitor never
// sleeps deep (cmd/weaved/runtime.go): the running daemon must keep its
// name for ps and pgrep, and carry the setting.
func TestDaemonKeepsRuntimeMonitorAwake(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 1, Topology: testbed.FullMesh})
	h := b.Hosts[0]
	d := h.StartWeaved(t)
	h.WaitReady(t)
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", d.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(environ), "GODEBUG=schedtrace=2147483647\x00") {
		t.Errorf("weaved runs without GODEBUG=schedtrace; its environment:\n%s", strings.ReplaceAll(string(environ), "\x00", "\n"))
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", d.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(comm)); got != "weaved" {
		t.Errorf("after re-executing, the daemon is named %q, want weaved", got)
	}
}
