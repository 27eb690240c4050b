package integration

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"weavenet/internal/testbed"
)

var peerNameRE = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)

// parseStatus reads "Label: value" lines up to the first blank line and
// checks that the colons line up (labels are right-aligned).
func parseStatus(t *testing.T, out string) map[string]string {
	t.Helper()
	fields := map[string]string{}
	col := -1
	for _, line := range strings.Split(strings.TrimLeft(out, "\n"), "\n") {
		if strings.TrimSpace(line) == "" {
			break
		}
		i := strings.Index(line, ": ")
		if i < 0 {
			t.Fatalf("status line without \"Label: value\": %q\n%s", line, out)
		}
		if col >= 0 && i != col {
			t.Errorf("status labels not right-aligned at line %q\n%s", line, out)
		}
		col = i
		fields[strings.TrimSpace(line[:i])] = strings.TrimSpace(line[i+2:])
	}
	return fields
}

func TestStatusRouterSection(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	launch(t, h1)
	launch(t, h2, peerArg(t, h2, h1)...)
	waitMesh(t, h1, 1, 2)
	waitMesh(t, h2, 1, 2)
	waitTopology(t, h1, 2)
	waitTopology(t, h2, 2)
	r2 := h2.Report(t)

	out, err := h2.Weave(t, "status")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("weave status on h2:\n%s", out)
	got := parseStatus(t, out)
	want := map[string]string{
		"Service":        "router",
		"Name":           fmt.Sprintf("%s(h2)", r2.Router.Name),
		"Encryption":     "disabled",
		"PeerDiscovery":  "enabled",
		"Targets":        "1",
		"Connections":    "1 (1 established)",
		"Peers":          "2 (with 2 established connections)",
		"TrustedSubnets": "none",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("status %s: got %q, want %q", k, got[k], v)
		}
	}
	if got["Version"] == "" || got["Version"] != r2.Version {
		t.Errorf("status Version %q, report Version %q", got["Version"], r2.Version)
	}
	if !strings.HasPrefix(got["Protocol"], "weave ") {
		t.Errorf("status Protocol %q, want \"weave MIN..MAX\"", got["Protocol"])
	}
	if !peerNameRE.MatchString(r2.Router.Name) {
		t.Errorf("peer name %q is not MAC-like", r2.Router.Name)
	}

	// h1 named nobody: no targets.
	if g := parseStatus(t, h1.MustWeave(t, "status")); g["Targets"] != "0" || g["Connections"] != "1 (1 established)" {
		t.Errorf("h1 status Targets=%q Connections=%q, want 0 and 1 (1 established)", g["Targets"], g["Connections"])
	}

	// The sub-views list their items.
	h1addr := h1.Addr.String()
	if out := h2.MustWeave(t, "status", "targets"); !strings.Contains(out, h1addr) {
		t.Errorf("weave status targets on h2 lacks %s:\n%s", h1addr, out)
	}
	if out := h2.MustWeave(t, "status", "connections"); !strings.Contains(out, h1addr) || !strings.Contains(out, "established") {
		t.Errorf("weave status connections on h2 lacks an established connection to %s:\n%s", h1addr, out)
	}
	r1 := h1.Report(t)
	if out := h2.MustWeave(t, "status", "peers"); !strings.Contains(out, r1.Router.Name) || !strings.Contains(out, r2.Router.Name) {
		t.Errorf("weave status peers on h2 lacks %s or %s:\n%s", r1.Router.Name, r2.Router.Name, out)
	}
}

// checkOneLineError checks that err is an exit status 1 with a single,
// non-empty line on stderr.
func checkOneLineError(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s succeeded, want an error", what)
		return
	}
	if code := testbed.ExitCode(err); code != 1 {
		t.Errorf("%s: exit code %d, want 1 (%v)", what, code, err)
	}
	stderr := strings.TrimRight(testbed.Stderr(err), "\n")
	if stderr == "" || strings.Contains(stderr, "\n") {
		t.Errorf("%s: stderr should be one line, got %q", what, stderr)
	}
	t.Logf("%s: %s", what, stderr)
}

func TestLaunchTwice(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 1})
	h := b.Hosts[0]
	// weave launch logs to DATA-DIR/weaved.log, which the bed prints on
	// failure.
	args := []string{"launch", "--data-dir", h.DataDir, "--nickname", h.Name}
	t.Cleanup(func() { h.Weave(t, "stop") })
	out, err := h.Weave(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimSpace(out)
	if !peerNameRE.MatchString(name) {
		t.Errorf("weave launch printed %q, want the peer name", out)
	}
	if r := h.WaitReady(t); r.Router.Name != name {
		t.Errorf("launch printed %q, report says %q", name, r.Router.Name)
	}
	_, err = h.Weave(t, args...)
	checkOneLineError(t, "second weave launch", err)
	if r := h.Report(t); r.Router.Name != name {
		t.Errorf("after the second launch the daemon is %q, want %q still", r.Router.Name, name)
	}
	if _, err := h.Weave(t, "stop"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.TryReport(t); err == nil {
		t.Error("weave report still answers after weave stop")
	}
}

func TestUsageErrors(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 1})
	h := b.Hosts[0]

	_, err := h.Weaved(t, "--data-dir", filepath.Join(h.DataDir, "bad"), "--port", "notaport")
	checkOneLineError(t, "weaved --port notaport", err)
	if msg := testbed.Stderr(err); !strings.Contains(msg, "weaved --help") {
		t.Errorf("weaved --port notaport: %q does not point at weaved --help", msg)
	}
	_, err = h.Weaved(t, "--data-dir", filepath.Join(h.DataDir, "bad"), "--password", "pw", "--password-kdf", "md5")
	checkOneLineError(t, "weaved --password-kdf md5", err)
	if msg := testbed.Stderr(err); !strings.Contains(msg, "--password-kdf") {
		t.Errorf("weaved --password-kdf md5: %q does not name the flag", msg)
	}

	launch(t, h)
	c := h.AddContainer(t, "c1")
	_, err = h.Weave(t, "attach", "10.32.0.1/99", c.NS.Name)
	checkOneLineError(t, "weave attach 10.32.0.1/99", err)
	if r := h.Report(t); r.Router.Name == "" {
		t.Error("daemon unhealthy after a bad attach")
	}
}
