package integration

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weavenet/api"
	"weavenet/internal/testbed"
)

// The Docker network plugin on two hosts sharing the machine's one Engine:
// each host's weaved serves a plugin of its own name (the socket dir is
// machine-wide), and a network is created per host with its driver.
// Containers on them ping each other by name across hosts and on the same
// host; their addresses are unique and from the ring; docker rm -f gives
// the address and the name back; docker network rm works.
func TestDockerPlugin(t *testing.T) {
	run := needDocker(t)
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	p1, p2 := run.Name("h1"), run.Name("h2") // plugin and network names
	_, gwAbsent := engineCmd(t, "network", "inspect", "docker_gwbridge")
	t.Cleanup(func() {
		// Containers first (the label's cleanup comes too late for
		// network rm), then the networks, then the sockets a killed
		// weaved would leave.
		ids, _ := engineCmd(t, "ps", "-aq", "--filter", "label="+run.Label)
		if f := strings.Fields(ids); len(f) > 0 {
			_, _ = engineCmd(t, append([]string{"rm", "-f"}, f...)...)
		}
		for _, n := range []string{p1, p2} {
			if _, err := engineCmd(t, "network", "inspect", n); err == nil {
				if _, err := engineCmd(t, "network", "rm", n); err != nil {
					t.Logf("cleanup: %v", err)
				}
			}
			_ = os.Remove(filepath.Join("/run/docker/plugins", n+".sock"))
		}
		// The Engine makes its gateway bridge for the first container
		// on a network without a gateway; ours to remove if it was not
		// there before (refused while someone else uses it).
		if gwAbsent != nil {
			_, _ = engineCmd(t, "network", "rm", "docker_gwbridge")
		}
	})
	args1 := append([]string{"--plugin-name", p1}, peerArg(t, h1, h2)...)
	d1 := launch(t, h1, args1...)
	launch(t, h2, append([]string{"--plugin-name", p2}, peerArg(t, h2, h1)...)...)
	waitMesh(t, h1, 1, 2)
	waitMesh(t, h2, 1, 2)

	status := h1.MustWeave(t, "status")
	if !strings.Contains(status, "Service: plugin") || !strings.Contains(status, "DriverName: "+p1) {
		t.Fatalf("weave status on h1 has no plugin section naming %s:\n%s", p1, status)
	}
	mustEngine(t, "network", "create", "--driver", p1, "--ipam-driver", p1, p1)
	mustEngine(t, "network", "create", "--driver", p2, "--ipam-driver", p2, p2)

	start := func(net, short string) (string, netip.Prefix) {
		t.Helper()
		id := mustEngine(t, "run", "-d", "--label", run.Label, "--name", run.Name(short), "--net", net,
			"--dns", "169.254.53.53", "--dns-search", "weave.local", run.Image, "top")
		addrs := weaveAddrs(t, id)
		if len(addrs) != 1 {
			t.Fatalf("%s: its weave interface has %v, want one address", short, addrs)
		}
		return id, addrs[0]
	}
	id1, a1 := start(p1, "c1")
	_, a2 := start(p2, "c2")
	_, a3 := start(p1, "c3")
	whole := netip.MustParsePrefix("10.32.0.0/12")
	for _, a := range []netip.Prefix{a1, a2, a3} {
		if !whole.Contains(a.Addr()) || a.Bits() != whole.Bits() {
			t.Errorf("address %v is not from the ring %v", a, whole)
		}
	}
	if a1.Addr() == a2.Addr() || a1.Addr() == a3.Addr() || a2.Addr() == a3.Addr() {
		t.Fatalf("addresses not unique: %v %v %v", a1, a2, a3)
	}
	if n := pluginAllocs(t, h1); n != 2 {
		t.Errorf("h1 holds %d addresses, want 2 (c1, c3)", n)
	}
	// weave ps: short ID, the MAC of its interface, its address.
	mac := mustEngine(t, "exec", id1, "cat", "/sys/class/net/ethwe0/address")
	testbed.WaitFor(t, 10*time.Second, func() bool {
		f := strings.Fields(psLine(t, h1, id1))
		return len(f) == 3 && f[1] == mac && f[2] == a1.String()
	}, "weave ps on h1 lists c1 with its MAC and address")

	ping := func(from, to string, want netip.Addr) {
		t.Helper()
		var out string
		var err error
		ok := testbed.Poll(20*time.Second, func() bool {
			out, err = engineCmd(t, "exec", run.Name(from), "ping", "-c", "3", "-W", "2", run.Name(to))
			return err == nil
		})
		if !ok {
			t.Fatalf("docker exec %s ping %s: %v\n%s", from, to, err, out)
		}
		if !strings.Contains(out, want.String()) {
			t.Errorf("%s pinged %s elsewhere than %v:\n%s", from, to, want, out)
		}
	}
	ping("c2", "c1", a1.Addr()) // h2 → h1, by name through weaveDNS
	ping("c1", "c2", a2.Addr()) // h1 → h2
	ping("c3", "c1", a1.Addr()) // same host

	// A weaved restart: the pairs stay on the kept bridge, the endpoints
	// are taken up again and the names announced again.
	d1.Stop()
	d1 = launch(t, h1, args1...)
	waitMesh(t, h1, 1, 2)
	testbed.WaitFor(t, 10*time.Second, func() bool {
		logs := d1.Logs()
		return strings.Count(logs[strings.LastIndex(logs, "==== testbed"):], "plugin container named") == 2
	}, "the restarted weaved names c1 and c3 again")
	testbed.WaitFor(t, 10*time.Second, func() bool {
		out, err := h2.Weave(t, "dns-lookup", run.Name("c1"))
		return err == nil && strings.TrimSpace(out) == a1.Addr().String()
	}, "c1 named again after h1's weaved restarted")
	if f := strings.Fields(psLine(t, h1, id1)); len(f) != 3 || f[1] != mac || f[2] != a1.String() {
		t.Errorf("after the restart weave ps lists c1 as %v, want its MAC %s and %v", f, mac, a1)
	}
	ping("c2", "c1", a1.Addr())
	ping("c3", "c1", a1.Addr())
	if out := h1.MustWeave(t, "report"); !strings.Contains(out, `"Endpoints": 2`) {
		t.Errorf("after the restart the plugin does not report 2 endpoints:\n%s", out)
	}

	// docker network disconnect and connect of a running container: the
	// address and name go, and come back (a new address) with the
	// interface.
	c3 := run.Name("c3")
	mustEngine(t, "network", "disconnect", p1, c3)
	testbed.WaitFor(t, 5*time.Second, func() bool { return pluginAllocs(t, h1) == 1 && pluginPorts(t, h1) == 1 }, "c3's address and port gone")
	testbed.WaitFor(t, 5*time.Second, func() bool {
		_, err := h2.Weave(t, "dns-lookup", c3)
		return err != nil
	}, "c3's name gone on h2")
	mustEngine(t, "network", "connect", p1, c3)
	if got := weaveAddrs(t, c3); len(got) != 1 || !whole.Contains(got[0].Addr()) {
		t.Fatalf("after connect c3's weave interface has %v", got)
	} else {
		a3 = got[0]
	}
	ping("c2", "c3", a3.Addr())
	ping("c3", "c1", a1.Addr())

	// A second network of the same driver with its own subnet: --ip
	// claims exactly that address, others come from --ip-range.
	sub := run.Name("sub")
	mustEngine(t, "network", "create", "--driver", p1, "--ipam-driver", p1, "--subnet", "10.32.5.0/24", "--ip-range", "10.32.5.128/25", sub)
	t.Cleanup(func() { _, _ = engineCmd(t, "network", "rm", sub) })
	for _, c := range []struct{ short, ip string }{{"s1", "10.32.5.5"}, {"s2", ""}} {
		args := []string{"run", "-d", "--label", run.Label, "--name", run.Name(c.short), "--net", sub}
		if c.ip != "" {
			args = append(args, "--ip", c.ip)
		}
		id := mustEngine(t, append(args, run.Image, "top")...)
		got := weaveAddrs(t, id)
		want := netip.MustParsePrefix("10.32.5.128/25")
		if c.ip != "" {
			want = netip.MustParsePrefix(c.ip + "/32")
		}
		if len(got) != 1 || got[0].Bits() != 24 || !want.Contains(got[0].Addr()) {
			t.Errorf("%s on %s: weave addresses %v, want one /24 in %v", c.short, sub, got, want)
		}
	}
	if out, err := engineCmd(t, "exec", run.Name("s2"), "ping", "-c", "1", "-W", "5", "10.32.5.5"); err != nil {
		t.Errorf("s2 ping s1 on their subnet: %v\n%s", err, out)
	}
	mustEngine(t, "rm", "-f", run.Name("s1"), run.Name("s2"))
	mustEngine(t, "network", "rm", sub)

	// docker rm -f: address, name and veth go.
	if n := pluginPorts(t, h1); n != 2 {
		t.Errorf("h1's bridge has %d plugin ports, want 2", n)
	}
	mustEngine(t, "rm", "-f", id1)
	testbed.WaitFor(t, 5*time.Second, func() bool { return pluginAllocs(t, h1) == 1 }, "c1's address released on h1")
	testbed.WaitFor(t, 5*time.Second, func() bool {
		_, err := h2.Weave(t, "dns-lookup", run.Name("c1"))
		return err != nil
	}, "c1's name gone on h2")
	if n := pluginPorts(t, h1); n != 1 {
		t.Errorf("after docker rm -f c1, h1's bridge has %d plugin ports, want 1", n)
	}

	// The rest, then the networks.
	ids := strings.Fields(mustEngine(t, "ps", "-aq", "--filter", "label="+run.Label))
	mustEngine(t, append([]string{"rm", "-f"}, ids...)...)
	testbed.WaitFor(t, 5*time.Second, func() bool { return pluginAllocs(t, h1) == 0 && pluginAllocs(t, h2) == 0 }, "every address released")
	mustEngine(t, "network", "rm", p1)
	mustEngine(t, "network", "rm", p2)
}

// weaveAddrs lists the IPv4 addresses of a container's weave interfaces
// (ethweN: the Engine numbers them as they come).
func weaveAddrs(t testing.TB, id string) []netip.Prefix {
	t.Helper()
	out, err := engineCmd(t, "exec", id, "ip", "-4", "-o", "addr", "show")
	if err != nil {
		t.Fatal(err)
	}
	var addrs []netip.Prefix
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[1], "ethwe") {
			continue
		}
		for i := 2; i+1 < len(f); i++ {
			if f[i] == "inet" {
				if p, err := netip.ParsePrefix(f[i+1]); err == nil {
					addrs = append(addrs, p)
				}
			}
		}
	}
	return addrs
}

// pluginAllocs is how many addresses the host's weaved holds (on these
// hosts, only the plugin's containers hold any).
func pluginAllocs(t testing.TB, h *testbed.Host) int {
	t.Helper()
	out, err := h.Weave(t, "report")
	if err != nil {
		return -1
	}
	var rep api.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.IPAM == nil {
		return -1
	}
	return rep.IPAM.Allocations
}

// pluginPorts counts the plugin's veths on h's bridge.
func pluginPorts(t testing.TB, h *testbed.Host) int {
	t.Helper()
	out, _ := h.Exec(t, "ip", "-o", "link", "show", "master", "weave")
	return strings.Count(out, ": vethwpl")
}

// A weaved in a network namespace of its own (one of several on the
// machine, as the test hosts are) does not take the machine-wide default
// plugin name; one given by hand it serves (TestDockerPlugin).
func TestDockerPluginDefaultOnlyBesideEngine(t *testing.T) {
	testbed.RequireRoot(t)
	if _, err := engineCmd(t, "version", "--format", "{{.Server.APIVersion}}"); err != nil {
		t.Skipf("no Docker Engine answers: %v", err)
	}
	b := testbed.New(t, testbed.Options{Hosts: 1})
	h := b.Hosts[0]
	resolv := filepath.Join(h.DataDir, "none-resolv.conf")
	if err := os.WriteFile(resolv, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := h.Start(t, filepath.Join(testbed.BinDir(t), "weaved"), "--data-dir", h.DataDir, "--nickname", h.Name,
		"--no-proxy", "--dns-resolv-conf", resolv)
	testbed.WaitFor(t, 20*time.Second, func() bool {
		_, err := h.TryReport(t)
		return err == nil
	}, "weaved answers")
	out := h.MustWeave(t, "report")
	if strings.Contains(out, `"Plugin"`) {
		t.Errorf("weaved in a namespace of its own serves the default plugin:\n%s", out)
	}
	testbed.WaitFor(t, 5*time.Second, func() bool {
		return strings.Contains(p.Stderr(), "not in the Docker Engine's network namespace")
	}, "weaved says why it serves no plugin")
}
