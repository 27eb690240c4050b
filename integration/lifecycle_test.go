package integration

import (
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
