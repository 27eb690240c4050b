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

// resolve runs getent hosts NAME in c and returns the addresses.
func resolve(t *testing.T, c *testbed.Container, name string) []string {
	t.Helper()
	out, err := c.ExecTimeout(t, 10*time.Second, "getent", "hosts", name)
	if err != nil {
		return nil
	}
	var addrs []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			addrs = append(addrs, f[0])
		}
	}
	return addrs
}

// Containers on three hosts find each other by name; names go when the
// container goes and come back after a daemon restart.
func TestDNSAcrossHosts(t *testing.T) {
	b, hosts := launchTrio(t)
	var cs []*testbed.Container
	for i, h := range hosts {
		c, _ := h.MustRun(t, fmt.Sprintf("n%d", i+1))
		cs = append(cs, c)
	}
	for _, from := range cs {
		for _, to := range cs {
			if from == to {
				continue
			}
			testbed.WaitFor(t, 10*time.Second, func() bool {
				return len(resolve(t, from, to.Name+".weave.local")) == 1
			}, from.Name+" resolves "+to.Name+".weave.local")
			from.WaitPing(t, to.Name, pingTimeout)
		}
	}

	// Two containers named web: the name has both addresses, in varying order.
	_, w1 := hosts[0].MustRun(t, "web")
	_, w2 := hosts[1].MustRun(t, "web2")
	hosts[1].MustWeave(t, "dns-add", b.Prefix+"web2", "-h", "web.weave.local")
	orders := map[string]bool{}
	testbed.WaitFor(t, 10*time.Second, func() bool {
		got := resolve(t, cs[2], "web.weave.local")
		if len(got) == 2 {
			orders[strings.Join(got, ",")] = true
		}
		return len(orders) == 2
	}, fmt.Sprintf("web resolves to both %s and %s, in both orders", w1, w2))

	// weave rm: gone from every host within 2 s; a new one resolves anew.
	old := resolve(t, cs[1], "n1.weave.local")
	hosts[0].MustWeave(t, "rm", b.Prefix+"n1")
	for _, c := range cs[1:] {
		testbed.WaitFor(t, 2*time.Second, func() bool { return len(resolve(t, c, "n1.weave.local")) == 0 },
			c.Name+" stops resolving n1 within 2s")
	}
	_, newN1 := hosts[2].MustRun(t, "n1b")
	hosts[2].MustWeave(t, "dns-add", b.Prefix+"n1b", "-h", "n1.weave.local")
	want := addrOf(t, newN1).Addr().String()
	var got []string
	if !testbed.Poll(5*time.Second, func() bool {
		got = resolve(t, cs[1], "n1.weave.local")
		return len(got) == 1 && got[0] == want
	}) {
		q, qerr := cs[1].Tool(t, 10*time.Second, "dns-query", "169.254.53.53:53", "n1.weave.local", "A")
		neigh, _ := cs[1].Exec(t, "ip", "neigh")
		t.Fatalf("the new n1 resolves to %v, want %s; direct query: %q %v; neighbours:\n%s\nh2's table:\n%s\nh3's:\n%s", got, want, q, qerr, neigh,
			hosts[1].MustWeave(t, "status", "dns"), hosts[2].MustWeave(t, "status", "dns"))
	}
	_ = old

	// Restart h2's daemon: its names are back everywhere within 5 s.
	hosts[1].MustWeave(t, "stop")
	launch(t, hosts[1], peerArg(t, hosts[1], hosts[0])[1], peerArg(t, hosts[1], hosts[2])[1])
	testbed.WaitFor(t, 5*time.Second+meshTimeout, func() bool {
		return len(resolve(t, cs[2], "n2.weave.local")) == 1
	}, "n2 resolves on h3 after h2 restarted")
	lookup := hosts[0].MustWeave(t, "dns-lookup", "n2")
	if strings.TrimSpace(lookup) == "" {
		t.Errorf("weave dns-lookup n2 on h1 found nothing")
	}
}

// Names outside the domain go to the upstream resolvers of the host's
// resolv.conf: here a stub inside the test topology. With no upstream
// answering, the query fails fast (SERVFAIL), it does not hang.
func TestDNSForwardsUpstream(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	conf := filepath.Join(h1.DataDir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver "+h2.Addr.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stub := h2.StartTool(t, "dns-stub", h2.Addr.String()+":53", "10.1.2.3", "60s")
	stub.WaitStderr(t, "listening", 10*time.Second)
	launch(t, h1, "--dns-resolv-conf", conf)
	c, _ := h1.MustRun(t, "asker")
	if got := resolve(t, c, "www.example.test"); len(got) != 1 || got[0] != "10.1.2.3" {
		t.Fatalf("www.example.test via the stub upstream: %v", got)
	}
	st := h1.MustWeave(t, "status")
	if !strings.Contains(st, "Upstream: "+h2.Addr.String()) {
		t.Errorf("weave status does not show the upstream:\n%s", st)
	}
	stub.Kill()
	start := time.Now()
	if got := resolve(t, c, "gone.example.test"); len(got) != 0 {
		t.Fatalf("resolved %v with no upstream", got)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("a query with no upstream took %v", d)
	}
}

// weave expose -h gives the host a name: containers on other hosts resolve
// and reach it, the name survives a restart of the daemon, and weave hide
// takes it away with the last address.
func TestDNSExposedHostName(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	launch(t, h1, peerArg(t, h1, h2)[1])
	launch(t, h2, peerArg(t, h2, h1)[1])
	waitMesh(t, h1, 1, 2)
	c, _ := h2.MustRun(t, "c")

	if _, err := h1.Weave(t, "expose", "-h", "bad name!"); err == nil {
		t.Errorf("weave expose -h with a name DNS cannot hold succeeded")
	}
	addr := strings.Fields(h1.MustWeave(t, "expose", "-h", "gateway.weave.local"))[0]
	want := strings.Split(addr, "/")[0]
	resolves := func(what string) {
		t.Helper()
		testbed.WaitFor(t, 10*time.Second, func() bool {
			got := resolve(t, c, "gateway.weave.local")
			return len(got) == 1 && got[0] == want
		}, "c on h2 resolves gateway.weave.local to h1's "+want+" "+what)
	}
	resolves("after weave expose -h")
	c.WaitPing(t, "gateway", pingTimeout)
	if ps := h1.MustWeave(t, "ps"); strings.Count(ps, "weave:expose") != 1 {
		t.Errorf("weave ps lists the host's addresses %d times, want once:\n%s", strings.Count(ps, "weave:expose"), ps)
	}

	h1.MustWeave(t, "hide")
	testbed.WaitFor(t, 5*time.Second, func() bool { return len(resolve(t, c, "gateway.weave.local")) == 0 },
		"gateway.weave.local gone from h2 after weave hide")
	if ps := h1.MustWeave(t, "ps"); strings.Contains(ps, "weave:expose") {
		t.Errorf("after weave hide, weave ps still lists the host:\n%s", ps)
	}

	// The name is h1's own: with h2 gone, a restarted h1 announces it again.
	h1.MustWeave(t, "expose", "-h", "gateway.weave.local")
	h2.MustWeave(t, "stop")
	h1.MustWeave(t, "stop")
	launch(t, h1, peerArg(t, h1, h2)[1])
	testbed.WaitFor(t, 5*time.Second, func() bool {
		out, err := h1.Weave(t, "dns-lookup", "gateway")
		return err == nil && strings.TrimSpace(out) == want
	}, "h1 resolves its own name after a restart")
}
