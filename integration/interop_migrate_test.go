package integration

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// TestInteropMigration replaces a network of three Weave Net 2.8.1 hosts by
// weavenet, one host at a time, on the same data: Weave Net's data file
// (peer name, containers' addresses) and its report saved before it stops
// (names). After every step each container keeps its address and reaches
// every other one, every name resolves on every host, and fresh
// allocations on every host collide with nothing.
func TestInteropMigration(t *testing.T) {
	const (
		password = "migrate-secret"
		rng      = "10.32.0.0/12"
	)
	bed := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.FullMesh})
	hosts := bed.Hosts
	peersOf := func(i int) []string {
		var out []string
		for j, o := range hosts {
			if j != i {
				out = append(out, o.AddrTowards(t, hosts[i]).String())
			}
		}
		return out
	}
	weaverArgs := func(i int) []string {
		return append([]string{"--password", password, "--ipalloc-range", rng, "--ipalloc-init", "consensus=3"}, peersOf(i)...)
	}

	// A Weave Net network: three routers, a container on each with an
	// address from Weave Net's IPAM and a name in its DNS.
	weavers := make([]*testbed.Weaver, len(hosts))
	for i, h := range hosts {
		weavers[i] = h.StartWeaver(t, weaverArgs(i)...)
	}
	type ctr struct {
		c    *testbed.Container
		id   string
		name string // FQDN
		addr netip.Prefix
		host int
	}
	var ctrs []*ctr
	for i, h := range hosts {
		id := fmt.Sprintf("c%dcafe%d", i+1, i+1) // as Docker's, an opaque ID
		var out string
		var err error
		// The first allocation waits for the three routers' consensus.
		if !testbed.Poll(60*time.Second, func() bool {
			out, err = weavers[i].HTTP(t, "POST", "/ip/"+id)
			return err == nil
		}) {
			t.Fatalf("%s: Weave Net allocation for %s: %v", h.Name, id, err)
		}
		p, err := netip.ParsePrefix(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("%s: Weave Net gave %q: %v", h.Name, out, err)
		}
		c := h.AddContainer(t, fmt.Sprintf("c%d", i+1))
		weavers[i].Attach(t, c, p.String())
		name := fmt.Sprintf("c%d.weave.local.", i+1)
		if _, err := weavers[i].HTTP(t, "PUT", fmt.Sprintf("/name/%s/%v?fqdn=%s", id, p.Addr(), name)); err != nil {
			t.Fatal(err)
		}
		ctrs = append(ctrs, &ctr{c: c, id: id, name: name, addr: p, host: i})
	}
	for _, a := range ctrs {
		for _, b := range ctrs {
			if a != b && a.addr.Addr() == b.addr.Addr() {
				t.Fatalf("Weave Net gave %v twice", a.addr)
			}
		}
	}
	t.Logf("Weave Net network up: %v, %v, %v", ctrs[0].addr, ctrs[1].addr, ctrs[2].addr)

	// Containers attached under weavenet, by host: what a rollback must
	// tell Weave Net about.
	type attached struct {
		id   string
		addr netip.Prefix
	}
	sinceMigration := map[int][]attached{}
	migrated := make([]bool, len(hosts))
	daemons := make([]*testbed.Daemon, len(hosts))
	probes := map[netip.Addr]string{} // every address handed out, by whom
	for _, c := range ctrs {
		probes[c.addr.Addr()] = c.id
	}
	// h2 itself on the network, as Weave Net's `weave expose` does it: an
	// address for the ID weave:expose, on the bridge.
	out, err := weavers[1].HTTP(t, "POST", "/ip/weave:expose")
	if err != nil {
		t.Fatal(err)
	}
	exposed, err := netip.ParsePrefix(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("Weave Net exposed %q: %v", out, err)
	}
	hosts[1].MustExec(t, "ip", "addr", "add", exposed.String(), "dev", "weave")
	probes[exposed.Addr()] = "weave:expose on h2"

	check := func(step string) {
		t.Helper()
		// Addresses: unchanged in the containers, held by weaved's IPAM
		// on migrated hosts (the claims finish once the ring arrives).
		for _, c := range ctrs {
			if out := c.c.MustExec(t, "ip", "-o", "-4", "addr", "show", "dev", "ethwe"); !strings.Contains(out, c.addr.String()) {
				t.Fatalf("%s: %s lost its address %v: %s", step, c.c.Name, c.addr, out)
			}
			if !migrated[c.host] {
				continue
			}
			// Taken up as if weave attach had plugged it in: it reaches
			// weaveDNS on its host's bridge.
			if out, err := c.c.Exec(t, "ip", "route", "get", "169.254.53.53"); err != nil || !strings.Contains(out, "dev ethwe") {
				t.Errorf("%s: %s has no route to weaveDNS over ethwe: %q %v", step, c.c.Name, out, err)
			}
			h := hosts[c.host]
			var ps string
			if !testbed.Poll(60*time.Second, func() bool {
				ps, _ = h.Weave(t, "ps")
				return strings.Contains(ps, c.id) && strings.Contains(ps, c.addr.String())
			}) {
				t.Fatalf("%s: %s: weave ps does not show %s with %v after 60s:\n%s\nweaved log:\n%s", step, h.Name, c.id, c.addr, ps, migLogTail(daemons[c.host].Logs(), 40))
			}
		}
		// Reachability: every container pings every other.
		for _, a := range ctrs {
			for _, b := range ctrs {
				if a == b {
					continue
				}
				waitPing(t, a.c, b.addr.Addr().String())
			}
		}
		// The exposed host reaches every container, before and after
		// its migration.
		for _, c := range ctrs {
			waitPingNS(t, &hosts[1].NS, c.addr.Addr().String())
		}
		if migrated[1] {
			if ps := hosts[1].MustWeave(t, "ps"); !strings.Contains(ps, "weave:expose - "+exposed.String()) {
				t.Errorf("%s: h2's weave ps does not show weave:expose with %v:\n%s", step, exposed, ps)
			}
		}
		// Names: every name resolves on every host, either kind.
		for i, h := range hosts {
			for _, c := range ctrs {
				var got string
				ok := testbed.Poll(30*time.Second, func() bool {
					if migrated[i] {
						got, _ = h.Weave(t, "dns-lookup", strings.TrimSuffix(c.name, "."))
					} else {
						got = weaveNetLookup(t, weavers[i], c.name)
					}
					return strings.Contains(got, c.addr.Addr().String())
				})
				if !ok {
					t.Errorf("%s: on %s (migrated=%v) %s resolves to %q, want %v", step, h.Name, migrated[i], c.name, got, c.addr.Addr())
				}
			}
		}
		// No duplicates: a fresh allocation on every host is new.
		for i, h := range hosts {
			id := fmt.Sprintf("probe-%s-%s", strings.ReplaceAll(step, " ", "-"), h.Name)
			var addr netip.Addr
			if migrated[i] {
				c := h.AddContainer(t, fmt.Sprintf("p%d%d", len(probes), i))
				// A process in it, as in a real container: Weave Net
				// finds addresses in use through processes' namespaces
				// when it starts (which a rollback relies on).
				c.Start(t, "sleep", "3600")
				out := h.MustWeave(t, "attach", "net:default", c.NS.Name)
				p, err := netip.ParsePrefix(strings.TrimSpace(out))
				if err != nil {
					t.Fatalf("%s: %s: weave attach printed %q", step, h.Name, out)
				}
				addr, id = p.Addr(), c.NS.Name
				sinceMigration[i] = append(sinceMigration[i], attached{id, p})
			} else {
				out, err := weavers[i].HTTP(t, "POST", "/ip/"+id)
				if err != nil {
					t.Fatalf("%s: %s: Weave Net allocation: %v", step, h.Name, err)
				}
				p, err := netip.ParsePrefix(strings.TrimSpace(out))
				if err != nil {
					t.Fatalf("%s: %s: Weave Net gave %q", step, h.Name, out)
				}
				addr = p.Addr()
			}
			if prev, dup := probes[addr]; dup {
				t.Fatalf("%s: %s handed out %v for %s, already given to %s", step, h.Name, addr, id, prev)
			}
			probes[addr] = id
		}
		t.Logf("%s: addresses kept, all pings answered, every name resolves on every host, %d addresses distinct", step, len(probes))
	}
	check("before")

	for i, h := range hosts {
		step := fmt.Sprintf("%s migrated", h.Name)
		// What a user does on the host: save the report (names live
		// only in gossip), stop Weave Net, start weavenet on its data.
		report, err := weavers[i].HTTP(t, "GET", "/report")
		if err != nil {
			t.Fatal(err)
		}
		reportPath := filepath.Join(h.DataDir, "weave-report.json")
		if err := os.WriteFile(reportPath, []byte(report), 0o600); err != nil {
			t.Fatal(err)
		}
		weavers[i].Stop()
		dbPath := filepath.Join(h.DataDir, "weave", "data.db")
		args := append([]string{"--migrate-from", dbPath, "--migrate-names", reportPath,
			"--password", password, "--password-kdf", "weave", "--ipalloc-range", rng, "--ipalloc-init", "observer"}, peersOf(i)...)
		daemons[i] = launch(t, h, args...)
		migrated[i] = true
		if name := h.MustWeave(t, "report", "-f", "{{.Router.Name}}"); strings.TrimSpace(name) != weavers[i].Name() {
			t.Fatalf("%s: weaved runs as %q, want Weave Net's name %s", h.Name, strings.TrimSpace(name), weavers[i].Name())
		}
		if out, _ := h.Exec(t, "ip", "-o", "link", "show", "master", "weave"); strings.Contains(out, "vethwe-bridge") {
			t.Errorf("%s: Weave Net's port is still on the bridge:\n%s", h.Name, out)
		}
		check(step)
		if i == 0 { // what the README shows a user to check
			for _, args := range [][]string{{"ps"}, {"status", "ipam"}, {"status", "connections"}} {
				out, _ := h.Weave(t, args...)
				t.Logf("%s: weave %s:\n%s", h.Name, strings.Join(args, " "), out)
			}
		}
		if logs := daemons[i].Logs(); !strings.Contains(logs, "imported Weave Net's persisted ring") || !strings.Contains(logs, "took over Weave Net's containers") {
			t.Errorf("%s: weaved did not say it imported Weave Net's ring and containers:\n%s", h.Name, migLogTail(logs, 30))
		}
		if i == 0 {
			// Once taken over, the host needs neither flag nor Weave
			// Net's files: a restart without them keeps the name, the
			// containers, their addresses and names.
			daemons[i].Stop()
			if err := os.Rename(dbPath, dbPath+".moved"); err != nil {
				t.Fatal(err)
			}
			daemons[i] = launch(t, h, append([]string{"--password", password, "--password-kdf", "weave", "--ipalloc-range", rng, "--ipalloc-init", "observer"}, peersOf(i)...)...)
			if name := h.MustWeave(t, "report", "-f", "{{.Router.Name}}"); strings.TrimSpace(name) != weavers[i].Name() {
				t.Fatalf("%s: restarted without the flags, weaved runs as %q, want %s", h.Name, strings.TrimSpace(name), weavers[i].Name())
			}
			check(step + ", restarted without the flags")
			if err := os.Rename(dbPath+".moved", dbPath); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Rollback: Weave Net again on h3, on its own file, which weaved only
	// read. Its containers keep their addresses and reach everyone; its
	// ring takes the versions weavenet wrote under its name. What it does
	// not know: the addresses weavenet handed out since (it would give
	// them again; it finds addresses in use through Docker, or here, in
	// this sandbox, not at all), and the names (it keeps them only in
	// memory). The rollback tells it both, by its own API, before
	// anything else allocates there.
	{
		i, h := 2, hosts[2]
		daemons[i].Stop()
		weavers[i] = h.StartWeaver(t, weaverArgs(i)...)
		migrated[i] = false
		if logs := weavers[i].Logs(); !strings.Contains(logs, "Initialising with persisted data") {
			t.Errorf("rollback: Weave Net did not take its persisted data:\n%s", migLogTail(logs, 40))
		}
		c := ctrs[i]
		if out, err := weavers[i].HTTP(t, "GET", "/ip/"+c.id); err != nil || !strings.Contains(out, c.addr.Addr().String()) {
			t.Errorf("rollback: Weave Net does not hold %v for %s: %q %v", c.addr, c.id, out, err)
		}
		if _, err := weavers[i].HTTP(t, "PUT", fmt.Sprintf("/name/%s/%v?fqdn=%s", c.id, c.addr.Addr(), c.name)); err != nil {
			t.Fatal(err)
		}
		for _, a := range sinceMigration[i] {
			if _, err := weavers[i].HTTP(t, "PUT", fmt.Sprintf("/ip/%s/%v/%d", a.id, a.addr.Addr(), a.addr.Bits())); err != nil {
				t.Fatalf("rollback: claiming %v for %s in Weave Net: %v", a.addr, a.id, err)
			}
		}
		check("h3 rolled back")
	}
	// A container taken over is weavenet's like any other: weave detach
	// ID unplugs it and gives its address back.
	h1, c1 := hosts[0], ctrs[0]
	h1.MustWeave(t, "detach", c1.id)
	if out, err := c1.c.Exec(t, "ip", "link", "show", "ethwe"); err == nil {
		t.Errorf("weave detach %s left its interface: %s", c1.id, out)
	}
	if ps := h1.MustWeave(t, "ps"); strings.Contains(ps, c1.id) {
		t.Errorf("weave detach %s: weave ps still lists it:\n%s", c1.id, ps)
	}
	if got, _ := h1.Weave(t, "dns-lookup", strings.TrimSuffix(c1.name, ".")); strings.Contains(got, c1.addr.Addr().String()) {
		t.Errorf("weave detach %s: its name still resolves: %q", c1.id, got)
	}
	var got string
	if !testbed.Poll(10*time.Second, func() bool {
		got = weaveNetLookup(t, weavers[2], c1.name)
		return !strings.Contains(got, c1.addr.Addr().String())
	}) {
		t.Errorf("weave detach %s: its name still resolves on Weave Net (h3): %q", c1.id, got)
	}
	// And one whose namespace goes (its processes ended) is released by
	// itself: the host end of its veth goes with it.
	h2, c2 := hosts[1], ctrs[1]
	if out, err := exec.Command("ip", "netns", "delete", c2.c.NS.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns delete %s: %v: %s", c2.c.NS.Name, err, out)
	}
	var ps string
	if !testbed.Poll(40*time.Second, func() bool {
		ps, _ = h2.Weave(t, "ps")
		return !strings.Contains(ps, c2.id)
	}) {
		t.Errorf("%s's namespace deleted: weave ps still lists it after 40s:\n%s", c2.id, ps)
	}
}

// waitPing waits until one ping from c to addr is answered, then requires
// three more in a row: the first may wait for the mesh to reconverge after
// a host is replaced.
func waitPing(t *testing.T, c *testbed.Container, addr string) {
	t.Helper()
	waitPingNS(t, &c.NS, addr)
}

func waitPingNS(t *testing.T, ns *testbed.NS, addr string) {
	t.Helper()
	var out string
	if !testbed.Poll(pingTimeout, func() bool {
		var err error
		out, err = ns.ExecTimeout(t, 5*time.Second, "ping", "-n", "-c", "1", "-W", "1", addr)
		return err == nil
	}) {
		t.Fatalf("%s: no answer from %s within %v:\n%s", ns.Name, addr, pingTimeout, out)
	}
	// Right after a host is taken over, the peers' routes and MAC tables
	// settle for a moment (a reply, then a loss or two was seen under
	// load): what must hold is a run of three answered pings soon after.
	if !testbed.Poll(pingTimeout, func() bool {
		var err error
		out, err = ns.ExecTimeout(t, 15*time.Second, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", addr)
		return err == nil && strings.Contains(out, "3 packets transmitted, 3 received")
	}) {
		t.Fatalf("%s: no run of 3 answered pings to %s within %v:\n%s", ns.Name, addr, pingTimeout, out)
	}
}

// weaveNetLookup returns the live addresses Weave Net's DNS table on w has
// for name, space-separated.
func weaveNetLookup(t *testing.T, w *testbed.Weaver, name string) string {
	out, err := w.HTTP(t, "GET", "/report")
	if err != nil {
		return err.Error()
	}
	var r struct {
		DNS *struct {
			Entries []struct {
				Hostname  string
				Address   string
				Tombstone int64
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.DNS == nil {
		return fmt.Sprintf("bad report: %v", err)
	}
	var addrs []string
	for _, e := range r.DNS.Entries {
		if e.Tombstone == 0 && strings.EqualFold(e.Hostname, name) {
			addrs = append(addrs, e.Address)
		}
	}
	return strings.Join(addrs, " ")
}

func migLogTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestInteropMigrationDocker takes over a Weave Net host whose container is
// a Docker container, plugged in as Weave Net plugs one (a veth
// vethwepl<PID> into the bridge, ethwe inside), keyed by its full ID, named
// from its hostname. With Docker followed, weavenet makes it its own Docker
// container: named again from the hostname with no saved report, plugged in
// again with its address after docker restart, released by docker rm. The
// host is alone: the ring comes from Weave Net's file only.
func TestInteropMigrationDocker(t *testing.T) {
	run := needDocker(t)
	const rng = "10.32.0.0/12"
	bed := testbed.New(t, testbed.Options{Hosts: 1, Topology: testbed.FullMesh})
	h := bed.Hosts[0]
	w := h.StartWeaver(t, "--ipalloc-range", rng, "--ipalloc-init", "seed="+h.WeaverName())
	alloc := func(id string) netip.Prefix {
		t.Helper()
		out, err := w.HTTP(t, "POST", "/ip/"+id)
		if err != nil {
			t.Fatal(err)
		}
		p, err := netip.ParsePrefix(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("Weave Net gave %q: %v", out, err)
		}
		return p
	}

	// A plain container to ping from, and the Docker one.
	peer := h.AddContainer(t, "c0")
	peerAddr := alloc("c0")
	w.Attach(t, peer, peerAddr.String())
	id := mustEngine(t, "run", "-d", "--net=none", "--label", run.Label, "--name", run.Name("c1"),
		"--hostname", "c1.weave.local", run.Image, "sleep", "3600")
	pid := mustEngine(t, "inspect", "-f", "{{.State.Pid}}", id)
	addr := alloc(id)
	hostIf := "vethwepl" + pid
	if len(hostIf) > 15 {
		hostIf = hostIf[:15]
	}
	for _, args := range [][]string{
		{"ip", "link", "add", hostIf, "netns", h.NS.Name, "mtu", "1376", "type", "veth", "peer", "name", "ethwe", "netns", pid, "mtu", "1376"},
		{"ip", "-n", h.NS.Name, "link", "set", hostIf, "master", "weave", "up"},
		{"nsenter", "-t", pid, "-n", "ethtool", "-K", "ethwe", "tx", "off"},
		{"nsenter", "-t", pid, "-n", "ip", "addr", "add", addr.String(), "dev", "ethwe"},
		{"nsenter", "-t", pid, "-n", "ip", "link", "set", "ethwe", "up"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if _, err := w.HTTP(t, "PUT", fmt.Sprintf("/name/%s/%v?fqdn=c1.weave.local.", id, addr.Addr())); err != nil {
		t.Fatal(err)
	}
	waitPing(t, peer, addr.Addr().String())

	w.Stop()
	launch(t, h, "--migrate-from", filepath.Join(h.DataDir, "weave", "data.db"), "--ipalloc-range", rng, "--ipalloc-init", "observer")
	short := id[:12]
	var ps string
	if !testbed.Poll(30*time.Second, func() bool {
		ps, _ = h.Weave(t, "ps")
		return strings.Contains(ps, short) && strings.Contains(ps, addr.String())
	}) {
		t.Fatalf("weave ps does not show %s with %v:\n%s", short, addr, ps)
	}
	waitPing(t, peer, addr.Addr().String())
	if got, _ := h.Weave(t, "dns-lookup", "c1"); !strings.Contains(got, addr.Addr().String()) {
		t.Errorf("c1 resolves to %q, want %v (from the container's hostname)", got, addr.Addr())
	}

	// Docker's lifecycle, now followed by weaved.
	mustEngine(t, "restart", "-t", "0", id)
	var out string
	if !testbed.Poll(30*time.Second, func() bool {
		out, _ = engineCmd(t, "exec", id, "ip", "-4", "addr", "show", "ethwe")
		return strings.Contains(out, addr.String())
	}) {
		t.Fatalf("after docker restart the container has no ethwe with %v: %q", addr, out)
	}
	// The restarted container has a new interface, so a new MAC: the
	// peer's ARP entry for the old one stays "reachable" for up to 45 s.
	if !testbed.Poll(60*time.Second, func() bool {
		_, err := peer.ExecTimeout(t, 5*time.Second, "ping", "-n", "-c", "1", "-W", "1", addr.Addr().String())
		return err == nil
	}) {
		t.Fatalf("after docker restart, %v does not answer within 60s", addr)
	}
	pingAll(t, peer, addr.Addr().String(), 3)
	mustEngine(t, "rm", "-f", id)
	if !testbed.Poll(30*time.Second, func() bool {
		ps, _ = h.Weave(t, "ps")
		return !strings.Contains(ps, short)
	}) {
		t.Errorf("docker rm -f: weave ps still lists %s:\n%s", short, ps)
	}
	if got, _ := h.Weave(t, "dns-lookup", "c1"); strings.Contains(got, addr.Addr().String()) {
		t.Errorf("docker rm -f: c1 still resolves to %q", got)
	}
}
