package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// dockerCLI runs the docker CLI against host (a unix:// address; "" for
// the Engine itself) with stdin, and returns its combined output.
func dockerCLI(t *testing.T, host, stdin string, args ...string) (string, error) {
	t.Helper()
	if host != "" {
		args = append([]string{"-H", host}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// mustProxyDocker is dockerCLI that fails the test on error, with
// trimmed output.
func mustProxyDocker(t *testing.T, host string, args ...string) string {
	t.Helper()
	out, err := dockerCLI(t, host, "", args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

var inetRE = regexp.MustCompile(`inet (\d+\.\d+\.\d+\.\d+/\d+)`)

// TestDockerProxy runs plain docker commands through each host's proxy:
// WEAVE_CIDR's forms, isolation of subnets, none then weave attach and
// detach by container ID, the container's first command seeing its
// interface, and non-network calls (ps, logs, exec -t, run -i, attach)
// answering as the Engine does without the proxy.
func TestDockerProxy(t *testing.T) {
	dr := needDocker(t)
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	image, label, name := dr.Image, dr.Label, dr.Name
	sock := func(h *testbed.Host) string { return filepath.Join(h.DataDir, "weave.sock") }
	ipam := []string{"--ipalloc-range", "10.2.0.0/16", "--ipalloc-default-subnet", "10.2.1.0/24", "--ipalloc-init", "consensus=2"}
	launch(t, h1, append(ipam, "--proxy-socket", sock(h1), peerArg(t, h1, h2)[1])...)
	launch(t, h2, append(ipam, "--proxy-socket", sock(h2), peerArg(t, h2, h1)[1])...)
	waitMesh(t, h1, 1, 2)
	p1, p2 := "unix://"+sock(h1), "unix://"+sock(h2)

	status := h1.MustWeave(t, "status")
	if !regexp.MustCompile(`Service: proxy\n\s+Address: ` + regexp.QuoteMeta(p1) + `\n`).MatchString(status) {
		t.Errorf("weave status lacks the proxy:\n%s", status)
	}
	if got := strings.TrimSpace(h1.MustWeave(t, "config")); got != "-H "+p1 {
		t.Errorf("weave config = %q", got)
	}
	if got := strings.TrimSpace(h1.MustWeave(t, "env")); !strings.HasPrefix(got, "export DOCKER_HOST="+p1+" ORIG_DOCKER_HOST=") {
		t.Errorf("weave env = %q", got)
	}
	if fi, err := os.Stat(sock(h1)); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("proxy socket: %v %v", fi, err)
	}

	// WEAVE_CIDR=10.2.1.2/24 on Docker's default network: exactly that
	// address, already there for the container's first command.
	c1 := name("c1")
	mustProxyDocker(t, p1, "run", "-d", "--label", label, "--name", c1, "-e", "WEAVE_CIDR=10.2.1.2/24", image, "sh", "-c", "ip -4 addr show ethwe; exec sleep 600")
	var logs string
	testbed.WaitFor(t, 10*time.Second, func() bool {
		logs, _ = dockerCLI(t, p1, "", "logs", c1)
		return strings.Contains(logs, "inet ")
	}, "c1's first command printed no address")
	if got := inetRE.FindAllStringSubmatch(logs, -1); len(got) != 1 || got[0][1] != "10.2.1.2/24" {
		t.Fatalf("c1's first command saw %q, want exactly 10.2.1.2/24:\n%s", got, logs)
	}
	if got := ethweAddrs(t, c1); len(got) != 1 || got[0] != "10.2.1.2/24" {
		t.Fatalf("c1 has %q on ethwe", got)
	}
	if addrs := strings.TrimSpace(h1.MustWeave(t, "dns-lookup", c1)); addrs != "10.2.1.2" {
		t.Errorf("weaveDNS has %q for %s", addrs, c1)
	}

	// Subnets: --net=none so that an address not routed over weave goes
	// nowhere, not out of the machine.
	run := func(proxy, n string, env ...string) string {
		args := []string{"run", "-d", "--label", label, "--net=none", "--name", n}
		for _, e := range env {
			args = append(args, "-e", e)
		}
		return mustProxyDocker(t, proxy, append(args, image, "sleep", "600")...)
	}
	addrsOf := func(n string) []string { return ethweAddrs(t, n) }
	ping := func(from, addr string) error {
		_, err := dockerCLI(t, "", "", "exec", from, "ping", "-c", "1", "-W", "1", addr)
		return err
	}
	waitPing := func(from, addr string) {
		t.Helper()
		testbed.WaitFor(t, pingTimeout, func() bool { return ping(from, addr) == nil }, from+" cannot reach "+addr)
	}
	x, d, both := name("x"), name("d"), name("both")
	run(p1, x, "WEAVE_CIDR=net:10.2.2.0/24")
	run(p2, d) // no WEAVE_CIDR: net:default
	bothID := run(p2, both, "WEAVE_CIDR=net:default net:10.2.2.0/24")
	ax, ad, ab := addrsOf(x), addrsOf(d), addrsOf(both)
	if len(ax) != 1 || !strings.HasPrefix(ax[0], "10.2.2.") || len(ad) != 1 || !strings.HasPrefix(ad[0], "10.2.1.") || len(ab) != 2 {
		t.Fatalf("addresses: x %q, d %q, both %q", ax, ad, ab)
	}
	ipOf := func(cidr string) string { return strings.Split(cidr, "/")[0] }
	waitPing(both, ipOf(ax[0]))
	waitPing(both, ipOf(ad[0]))
	for _, a := range ab {
		if strings.HasPrefix(a, "10.2.2.") {
			waitPing(x, ipOf(a)) // both shares a subnet with each
		}
	}
	if err := ping(x, ipOf(ad[0])); err == nil {
		t.Errorf("x (10.2.2.0/24) reached d (default subnet)")
	}
	out := h2.MustWeave(t, "detach", "net:10.2.2.0/24", bothID)
	if strings.Contains(out, "10.2.2.") || !strings.Contains(out, "10.2.1.") {
		t.Errorf("after detach net:10.2.2.0/24, both has %q", out)
	}

	// none, then weave attach by ID.
	n := name("n")
	nID := run(p1, n, "WEAVE_CIDR=none")
	if _, err := dockerCLI(t, "", "", "exec", n, "ip", "link", "show", "ethwe"); err == nil {
		t.Fatal("WEAVE_CIDR=none got an interface")
	}
	got := strings.TrimSpace(h1.MustWeave(t, "attach", nID))
	if !strings.HasPrefix(got, "10.2.1.") {
		t.Fatalf("weave attach %s gave %q", nID, got)
	}
	waitPing(n, ipOf(ad[0]))

	// --net=host is left alone: no ethwe, command unchanged.
	hn := name("hostnet")
	mustProxyDocker(t, p1, "run", "-d", "--label", label, "--net=host", "--name", hn, image, "sleep", "600")
	if ep := mustProxyDocker(t, "", "inspect", "-f", "{{json .Config.Entrypoint}}", hn); ep != "null" {
		t.Errorf("--net=host container's entrypoint became %s", ep)
	}

	// Calls that have nothing to do with networking answer as without the
	// proxy.
	for _, args := range [][]string{
		// .State, not .Status: "Up 1 second" may turn "Up 2 seconds"
		// between the two calls.
		{"ps", "--filter", "label=" + label, "--format", "{{.ID}} {{.Names}} {{.State}}"},
		{"logs", c1},
		{"exec", "-t", c1, "sh", "-c", "echo via-tty; [ -t 1 ] && echo is-a-tty"},
		{"inspect", "-f", "{{.Name}} {{.State.Running}}", c1},
	} {
		direct, err1 := dockerCLI(t, "", "", args...)
		proxied, err2 := dockerCLI(t, p1, "", args...)
		if err1 != nil || err2 != nil || direct != proxied {
			t.Errorf("docker %s: without the proxy %q (%v), through it %q (%v)", strings.Join(args, " "), direct, err1, proxied, err2)
		}
	}
	// run -i and attach: stdin through a hijacked connection, its end
	// passed on, the output back.
	if out, err := dockerCLI(t, p1, "hello through the proxy\n", "run", "-i", "--rm", "--label", label, "--net=none", image, "cat"); err != nil || out != "hello through the proxy\n" {
		t.Errorf("docker run -i through the proxy: %q, %v", out, err)
	}
	cat := name("cat")
	// attach follows the output until the container ends (the CLI leaves
	// as soon as its own stdin ends, proxy or not, hence --no-stdin).
	mustProxyDocker(t, p1, "run", "-d", "--label", label, "--net=none", "--name", cat, image, "sh", "-c", "sleep 2; echo late; sleep 1; echo later")
	if out, err := dockerCLI(t, p1, "", "attach", "--no-stdin", cat); err != nil || out != "late\nlater\n" {
		t.Errorf("docker attach through the proxy: %q, %v", out, err)
	}
	// logs -f streams until the container ends.
	lf := name("logsf")
	mustProxyDocker(t, p1, "run", "-d", "--label", label, "--net=none", "--name", lf, image, "sh", "-c", "echo one; sleep 1; echo two")
	if out, err := dockerCLI(t, p1, "", "logs", "-f", lf); err != nil || out != "one\ntwo\n" {
		t.Errorf("docker logs -f through the proxy: %q, %v", out, err)
	}
}
