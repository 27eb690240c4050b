package integration

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// Broadcast (ARP) and IPv4 multicast reach every other host, once.
func TestBroadcastAndMulticast(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.FullMesh})
	h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
	launch(t, h1)
	launch(t, h2, peerArg(t, h2, h1)...)
	launch(t, h3, peerArg(t, h3, h1)...)
	for _, h := range b.Hosts {
		waitMesh(t, h, 2, 3)
	}
	c1 := attach(t, h1, "c1", "10.32.0.1/12")
	c2 := attach(t, h2, "c2", "10.32.0.2/12")
	c3 := attach(t, h3, "c3", "10.32.0.3/12")
	c1.WaitPing(t, "10.32.0.2", pingTimeout)
	c1.WaitPing(t, "10.32.0.3", pingTimeout)

	t.Run("arp", func(t *testing.T) {
		for _, c := range []*testbed.Container{c1, c2, c3} {
			c.MustExec(t, "ip", "neigh", "flush", "all")
		}
		if out := c1.MustExec(t, "ip", "neigh", "show", "nud", "reachable"); strings.TrimSpace(out) != "" {
			t.Fatalf("c1 neighbours after flush: %s", out)
		}
		pingAll(t, c1, "10.32.0.2", 2)
		pingAll(t, c1, "10.32.0.3", 2)
		if _, err := exec.LookPath("arping"); err == nil {
			iface := c1.Iface(t)
			for _, addr := range []string{"10.32.0.2", "10.32.0.3"} {
				if out, err := c1.Exec(t, "arping", "-c", "2", "-w", "5", "-I", iface, addr); err != nil {
					t.Errorf("arping %s: %v\n%s", addr, err, out)
				}
			}
		}
	})

	t.Run("multicast", func(t *testing.T) {
		const group = "239.10.20.30:6000"
		var recvs []*testbed.Proc
		for _, c := range []*testbed.Container{c2, c3} {
			p := c.StartTool(t, "mcast-recv", group, "auto", "5s")
			p.WaitStderr(t, "listening", 10*time.Second)
			recvs = append(recvs, p)
		}
		if _, err := c1.Tool(t, 10*time.Second, "mcast-send", group, "auto"); err != nil {
			t.Fatal(err)
		}
		for i, p := range recvs {
			out, err := p.Wait(20 * time.Second)
			if err != nil {
				t.Fatalf("c%d mcast-recv: %v", i+2, err)
			}
			if got := strings.TrimSpace(out); got != "1" {
				t.Errorf("c%d received %s copies of one multicast datagram, want 1 (stderr: %s)", i+2, got, p.Stderr())
			}
		}
	})
}
