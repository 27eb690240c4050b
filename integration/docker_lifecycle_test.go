package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// Docker's lifecycle as weaved follows it: docker restart, and a stop
// then a start, keep the addresses and the name; a weaved restart (with the container restarted
// while it was down) plugs it in again; docker rm -f releases addresses and
// names within 2 s and leaves no veth behind.
func TestDockerLifecycle(t *testing.T) {
	run := needDocker(t)
	b := testbed.New(t, testbed.Options{Hosts: 1, Topology: testbed.FullMesh})
	h := b.Hosts[0]
	d := launch(t, h)
	// The bridge's ports by name (the router's TAP is made anew by a restart).
	ports := func() string {
		var names []string
		for _, line := range strings.Split(h.MustExec(t, "ip", "-o", "link", "show", "master", "weave"), "\n") {
			if f := strings.Fields(line); len(f) > 1 {
				names = append(names, f[1])
			}
		}
		return strings.Join(names, " ")
	}
	portsBefore := ports()

	c1 := run.Name("c1")
	id := weaveRunDocker(t, h, run, []string{"net:default", "net:10.40.3.0/24"}, "--name", c1, run.Image, "top")
	want := ethweAddrs(t, id)
	if len(want) != 2 {
		t.Fatalf("c1 has %v, want two addresses", want)
	}
	slices.Sort(want)
	sameAddrs := func(what string) {
		t.Helper()
		var got []string
		if !testbed.Poll(10*time.Second, func() bool {
			got = ethweAddrs(t, id)
			slices.Sort(got)
			return slices.Equal(got, want)
		}) {
			t.Fatalf("%s: c1 has %v, want %v\n%s", what, got, want, d.Logs())
		}
		testbed.WaitFor(t, 5*time.Second, func() bool {
			out, err := h.Weave(t, "dns-lookup", c1)
			return err == nil && len(strings.Fields(out)) == 2
		}, what+": c1's name resolves to both addresses")
	}

	mustEngine(t, "restart", "-t", "1", c1)
	sameAddrs("after docker restart")

	// Stopped, it keeps its addresses; started again, it has them back.
	mustEngine(t, "stop", "-t", "1", c1)
	testbed.WaitFor(t, 5*time.Second, func() bool {
		_, err := h.Weave(t, "dns-lookup", c1)
		return err != nil
	}, "a stopped container's name leaves weaveDNS")
	if f := strings.Fields(psLine(t, h, id)); len(f) != 4 {
		t.Fatalf("stopped, c1 is listed as %v: want its two addresses kept", f)
	}
	mustEngine(t, "start", c1)
	sameAddrs("after docker stop and start")

	d.Stop()
	mustEngine(t, "restart", "-t", "1", c1)
	if got := ethweAddrs(t, id); len(got) != 0 {
		t.Fatalf("restarted with weaved down, c1 already has %v", got)
	}
	d = launch(t, h)
	sameAddrs("after a weaved restart")

	mustEngine(t, "rm", "-f", c1)
	start := time.Now()
	testbed.WaitFor(t, 2*time.Second, func() bool {
		_, err := h.Weave(t, "dns-lookup", c1)
		return psLine(t, h, id) == "" && err != nil
	}, "docker rm -f releases c1's addresses and name")
	t.Logf("released %v after docker rm -f", time.Since(start).Round(time.Millisecond))
	if n := strings.TrimSpace(h.MustWeave(t, "report", "-f", "{{.IPAM.Allocations}}")); n != "0" {
		t.Errorf("IPAM still holds %s addresses after docker rm -f", n)
	}
	if got := ports(); got != portsBefore {
		t.Errorf("bridge ports after docker rm -f:\n%s\nbefore the container:\n%s", got, portsBefore)
	}
	if _, err := os.Stat(filepath.Join("/etc/netns", id)); err == nil {
		t.Errorf("/etc/netns/%s left", id)
	}
}
