package integration

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// l3Device is the TUN weaved creates in L3 mode (its --l3-device default).
const l3Device = "weavetun"

// l3Addr waits until h's TUN holds an overlay address and returns it.
func l3Addr(t *testing.T, h *testbed.Host) string {
	t.Helper()
	re := regexp.MustCompile(`inet (10\.[0-9.]+)/`)
	var addr, last string
	if !testbed.Poll(30*time.Second, func() bool {
		out, err := h.Exec(t, "ip", "-o", "-4", "addr", "show", "dev", l3Device)
		last = fmt.Sprint(out, err)
		if m := re.FindStringSubmatch(out); m != nil {
			addr = m[1]
			return true
		}
		return false
	}) {
		t.Fatalf("%s: no overlay address on %s within 30s; last: %s", h.Name, l3Device, last)
	}
	return addr
}

// h1 - h2 - h3 in L3 mode with a password, h1 and h3 not on a common
// segment: h1's host reaches h3's overlay address through h2's router,
// sealed on both links. h1 and h2 get their addresses from IPAM, h3 has a
// fixed one.
func TestL3LineEncrypted(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.Line})
	h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
	l3 := []string{"--mode", "l3", "--password", "s3cret"}
	launch(t, h1, l3...)
	launch(t, h2, append(l3, peerArg(t, h2, h1)...)...)
	launch(t, h3, append(append(l3, "--l3-address", "10.32.200.3/12"), peerArg(t, h3, h2)...)...)
	waitMesh(t, h2, 2, 3)
	waitMesh(t, h1, 1, 3)
	waitMesh(t, h3, 1, 3)

	a1, a2, a3 := l3Addr(t, h1), l3Addr(t, h2), l3Addr(t, h3)
	if a3 != "10.32.200.3" {
		t.Fatalf("h3 got %s, want its --l3-address 10.32.200.3", a3)
	}
	if a1 == a2 {
		t.Fatalf("h1 and h2 both got %s from IPAM", a1)
	}
	for _, h := range []*testbed.Host{h1, h3} {
		if got := strings.TrimSpace(h.MustWeave(t, "report", "-f", "{{.Router.Mode}} {{.Router.Encryption}}")); got != "l3 true" {
			t.Errorf("%s: report says mode and encryption %q, want \"l3 true\"", h.Name, got)
		}
	}
	pingStart := time.Now()
	h1.WaitPing(t, a3, pingTimeout)
	t.Logf("h1 reached h3 after %v", time.Since(pingStart).Round(time.Millisecond))
	pingNS(t, &h1.NS, a3, 3)
	pingNS(t, &h3.NS, a1, 3)
	pingNS(t, &h2.NS, a1, 3)
	transferNS(t, &h1.NS, &h3.NS, a3, "50M", 5301)
	if s := h2.Report(t).Router.Stats; s.FramesIn == 0 || s.FramesOut == 0 {
		t.Errorf("h2 relayed nothing: %+v", s)
	}
}

// One cluster, two modes: a container on h1's bridge and h2's host on its
// TUN, in one subnet, reach each other (ARP crosses the overlay both ways).
func TestL3MixedWithBridge(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	launch(t, h1)
	launch(t, h2, append([]string{"--mode", "l3", "--l3-address", "10.32.0.2/12"}, peerArg(t, h2, h1)...)...)
	waitMesh(t, h1, 1, 2)
	c1 := attach(t, h1, "c1", "10.32.0.1/12")
	if got := l3Addr(t, h2); got != "10.32.0.2" {
		t.Fatalf("h2 got %s, want 10.32.0.2", got)
	}
	pingStart := time.Now()
	c1.WaitPing(t, "10.32.0.2", pingTimeout)
	t.Logf("c1 reached h2 after %v", time.Since(pingStart).Round(time.Millisecond))
	pingNS(t, &c1.NS, "10.32.0.2", 3)
	pingNS(t, &h2.NS, "10.32.0.1", 3)
	transferNS(t, &h2.NS, &c1.NS, "10.32.0.1", "10M", 5302)

	// weaveDNS serves the L3 host too, on the TUN: the container's name,
	// registered on h1, resolves on h2.
	h1.MustWeave(t, "dns-add", "10.32.0.1", b.Prefix+"c1", "-h", "c1.weave.local")
	testbed.WaitFor(t, 10*time.Second, func() bool {
		out, err := h2.Tool(t, 5*time.Second, "dns-query", "169.254.53.53:53", "c1.weave.local", "A")
		return err == nil && strings.Contains(out, "10.32.0.1")
	}, "h2 (L3) resolves c1.weave.local through weaveDNS")
}

// Bad L3 settings are refused with one line naming the flag, exit 1; and a
// daemon in L3 mode refuses containers with one line saying why.
func TestL3ConfigErrors(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 1})
	h := b.Hosts[0]
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--mode", "l4"}, "--mode"},
		{[]string{"--mode", "l3", "--l3-address", "bogus"}, "--l3-address"},
		{[]string{"--mode", "l3", "--l3-address", "10.32.0.0/12"}, "--l3-address"},
		{[]string{"--mode", "l3", "--l3-address", "net:10.99.0.0/16"}, "--ipalloc-range"},
		{[]string{"--mode", "l3", "--l3-device", "a-name-far-too-long"}, "--l3-device"},
	} {
		args := append([]string{"--data-dir", h.DataDir + "/bad", "--http-addr", "127.0.0.1:16784", "--metrics-addr", ""}, c.args...)
		out, err := h.Weaved(t, args...)
		msg := strings.TrimSpace(testbed.Stderr(err))
		switch {
		case err == nil:
			t.Errorf("weaved %v succeeded: %q", c.args, out)
		case testbed.ExitCode(err) != 1:
			t.Errorf("weaved %v: exit code %d, want 1", c.args, testbed.ExitCode(err))
		case strings.Count(msg, "\n") != 0:
			t.Errorf("weaved %v: want one line on stderr, got %q", c.args, msg)
		case !strings.Contains(msg, c.want):
			t.Errorf("weaved %v: %q does not name %q", c.args, msg, c.want)
		}
	}

	launch(t, h, "--mode", "l3")
	h.AddContainer(t, "c1")
	_, err := h.Weave(t, "attach", "10.32.0.9/12", "c1")
	if msg := strings.TrimSpace(testbed.Stderr(err)); err == nil || testbed.ExitCode(err) != 1 || strings.Contains(msg, "\n") || !strings.Contains(msg, "L3 mode") {
		t.Errorf("weave attach on an L3 daemon: %v, %q; want one line about L3 mode, exit 1", err, msg)
	}
}
