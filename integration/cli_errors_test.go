package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"weavenet/internal/testbed"
)

// Every CLI command given a wrong argument, or with no daemon to talk to,
// prints one line that names the problem and exits 1.
func TestCLIErrorsAreOneLine(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, idle := b.Hosts[0], b.Hosts[1]
	daemon := launch(t, h1)
	// Executable, but not a program the kernel can run.
	notProgram := filepath.Join(b.Dir, "not-a-program")
	if err := os.WriteFile(notProgram, []byte("garbage\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A namespace weave never attached: weave rm must leave it, and no
	// address weave attach refuses may reach it.
	foreign := b.Prefix + "foreign"
	if out, err := exec.Command("ip", "netns", "add", foreign).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", foreign).Run() })
	cases := []struct {
		host *testbed.Host
		args []string
		want string // in the message
	}{
		{h1, []string{"attach", "10.32.0.1/99", "c1"}, "10.32.0.1/99"},
		{h1, []string{"attach", "net:nonsense", "c1"}, "net:nonsense"},
		{h1, []string{"attach", "10.32.0.9/12", "no-such-container"}, "no-such-container"},
		{h1, []string{"detach"}, "container"},
		{h1, []string{"run", "--name", "x"}, "--"},
		{h1, []string{"run", "--", "sleep", "1"}, "--name"},
		{h1, []string{"rm", "no-such-container"}, "no-such-container"},
		{h1, []string{"rm", foreign}, "never attached"},
		{h1, []string{"attach", "255.255.255.255/32", foreign}, "broadcast"},
		{h1, []string{"attach", "169.254.53.53/32", foreign}, "weaveDNS"},
		{h1, []string{"attach", "127.0.0.1/8", foreign}, "loopback"},
		{h1, []string{"attach", "1.2.3.4/0", foreign}, "/0"},
		{h1, []string{"attach", "224.0.0.1/24", foreign}, "multicast"},
		{h1, []string{"rmpeer", "no-such-peer"}, "no-such-peer"},
		{h1, []string{"connect", "1.2.3.4:notaport"}, "notaport"},
		{h1, []string{"status", "bogus"}, "bogus"},
		{h1, []string{"dns-lookup"}, "name"},
		{h1, []string{"dns-add", "not-an-ip", "c1"}, "not-an-ip"},
		{h1, []string{"report", "-f", "{{.Nope"}, "-f"},
		{h1, []string{"attach", "--bogus", "c1"}, "weave attach --help"},
		{h1, []string{"expose", "-h"}, "weave expose --help"},
		{h1, []string{"expose", "-h", "bad name!"}, "bad name!"},
		{h1, []string{"--bogus", "status"}, "weave --help"},
		{h1, []string{"run", "--name", b.Prefix + "bad", "--", notProgram}, "exec format error"},
		{h1, []string{"attach", strconv.Itoa(daemon.Pid())}, "weave expose"}, // the host's own namespace
		{idle, []string{"status"}, "not running"},
		{idle, []string{"ps"}, "not running"},
	}
	for _, c := range cases {
		out, err := c.host.Weave(t, c.args...)
		msg := strings.TrimSpace(testbed.Stderr(err))
		switch {
		case err == nil:
			t.Errorf("weave %v succeeded: %q", c.args, out)
		case testbed.ExitCode(err) != 1:
			t.Errorf("weave %v: exit code %d, want 1", c.args, testbed.ExitCode(err))
		case strings.Count(msg, "\n") != 0 || msg == "":
			t.Errorf("weave %v: want one line on stderr, got %q", c.args, msg)
		case !strings.Contains(msg, c.want):
			t.Errorf("weave %v: %q does not name %q", c.args, msg, c.want)
		}
	}
	if _, err := os.Stat("/var/run/netns/" + foreign); err != nil {
		t.Errorf("weave rm of a namespace weave never attached deleted it: %v", err)
	}
	if ps := h1.MustWeave(t, "ps"); strings.Contains(ps, foreign) {
		t.Errorf("a refused attach left the container in weave ps:\n%s", ps)
	}
	if links := h1.MustExec(t, "ip", "-o", "link", "show"); strings.Contains(links, "ethwe") {
		t.Errorf("attaching the host's own namespace left a container interface on the host:\n%s", links)
	}
	// A command that cannot start leaves no container behind.
	if _, err := os.Stat("/var/run/netns/" + b.Prefix + "bad"); err == nil {
		t.Errorf("weave run of a command that cannot start left its namespace")
	}
	if ps := h1.MustWeave(t, "ps"); strings.Contains(ps, b.Prefix+"bad") {
		t.Errorf("weave run of a command that cannot start left the container in weave ps:\n%s", ps)
	}
	// What a web page would send is refused on the socket too, and the
	// daemon stays up: a cross-site form posting /reset, a text/plain
	// /connect. (Rebinding Host names matter over TCP only:
	// TestAPISocket.)
	sock := strings.TrimPrefix(h1.APIAddr, "unix://")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-X", "POST", "-H", "Origin: http://evil.example", "--data", "a=b", "http://localhost/reset"}, "403"},
		{[]string{"-X", "POST", "-H", "Content-Type: text/plain", "--data", `{"Peers":["10.9.9.9"]}`, "http://localhost/connect"}, "415"},
		{[]string{"-H", "Host: rebind.example:6784", "http://localhost/report"}, "200"},
	} {
		out, _ := h1.Exec(t, append([]string{"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", sock}, c.args...)...)
		if strings.TrimSpace(out) != c.want {
			t.Errorf("curl %v: status %q, want %s", c.args, out, c.want)
		}
	}
	if got := strings.TrimSpace(h1.MustWeave(t, "report", "-f", "{{.Router.NickName}}")); got != "h1" {
		t.Errorf("weave report -f '{{.Router.NickName}}' = %q", got)
	}
}
