package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"weavenet/api"
	"weavenet/internal/testbed"
)

// weaved serves its API on a Unix socket only root can use; a second
// daemon on the same socket is refused while the first answers; a socket
// a killed daemon left is taken over; stop removes it. With an explicit
// TCP --http-addr the CLI follows, and the guard refuses rebinding Host
// names and web pages there.
func TestAPISocket(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	sock, err := api.ParseAddr(h1.APIAddr)
	if err != nil || !sock.IsUnix() {
		t.Fatalf("the testbed's API address %q: %v", h1.APIAddr, err)
	}
	// nobody may walk to the socket: only the socket's own mode stops it.
	if err := os.Chmod(b.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := launch(t, h1)

	fi, err := os.Lstat(sock.Address)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("API socket %s: mode %v, owner %d; want a root-owned socket with mode 0600", sock.Address, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid)
	}
	curl := []string{"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--unix-socket", sock.Address, "http://localhost/report"}
	if out, err := h1.Exec(t, curl...); err != nil || out != "200" {
		t.Errorf("root's curl over the socket: %q, %v", out, err)
	}
	asNobody := append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}, curl...)
	if out, err := h1.Exec(t, asNobody...); testbed.ExitCode(err) != 7 || out != "000" {
		t.Errorf("nobody's curl over the socket: %q, exit %d (%v); want exit 7, cannot connect", out, testbed.ExitCode(err), err)
	}

	// A second daemon is refused and the first keeps its socket.
	out, err := h1.Weaved(t, "--data-dir", filepath.Join(h1.DataDir, "second"), "--bridge", "weave2", "--metrics-addr", "", "--no-dns")
	if err == nil || !strings.Contains(out+testbed.Stderr(err), "is weave already running?") {
		t.Errorf("a second weaved on the same socket: %q, %v", out, err)
	}
	h1.Report(t)

	// Killed, it leaves its socket; the next daemon takes it over, here
	// with a group (nogroup) that may use it too.
	d.Kill()
	if _, err := os.Lstat(sock.Address); err != nil {
		t.Fatalf("after kill -9 the socket is gone already (%v): the stale case is not tested", err)
	}
	launch(t, h1, "--api-group", "65534")
	if !strings.Contains(d.Logs(), "removed the API socket a stopped daemon left") {
		t.Error("the restarted daemon did not say it removed the stale socket")
	}
	if out, err := h1.Exec(t, asNobody...); err != nil || out != "200" {
		t.Errorf("nobody's curl, in the --api-group group: %q, %v; want 200", out, err)
	}
	outsider := append([]string{"setpriv", "--reuid=65534", "--regid=54321", "--clear-groups"}, curl...)
	if out, err := h1.Exec(t, outsider...); testbed.ExitCode(err) != 7 || out != "000" {
		t.Errorf("nobody's curl outside the --api-group group: %q, exit %d (%v); want exit 7", out, testbed.ExitCode(err), err)
	}
	h1.MustWeave(t, "stop")
	if _, err := os.Lstat(sock.Address); !os.IsNotExist(err) {
		t.Errorf("after weave stop the socket is still there: %v", err)
	}

	// TCP when asked: the CLI follows --http-addr over WEAVE_HTTP_ADDR.
	const tcp = "127.0.0.1:6784"
	h2.StartWeaved(t, "--http-addr", tcp)
	var last error
	if !testbed.Poll(testbed.ReadyTimeout, func() bool {
		_, last = h2.ExecTimeout(t, 10*time.Second, filepath.Join(testbed.BinDir(t), "weave"), "--http-addr", tcp, "status")
		return last == nil
	}) {
		t.Fatalf("weave --http-addr %s status: %v", tcp, last)
	}
	if _, err := h2.Weave(t, "status"); err == nil || !strings.Contains(testbed.Stderr(err), "not running") {
		t.Errorf("weave status on the host's socket while weaved listens on TCP: %v", err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"http://" + tcp + "/report"}, "200"},
		{[]string{"-H", "Host: rebind.example:6784", "http://" + tcp + "/report"}, "403"},
		{[]string{"-H", "Origin: http://evil.example", "http://" + tcp + "/report"}, "403"},
		{[]string{"-X", "POST", "-H", "Content-Type: text/plain", "--data", "{}", "http://" + tcp + "/stop"}, "415"},
	} {
		out, _ := h2.Exec(t, append([]string{"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"}, c.args...)...)
		if out != c.want {
			t.Errorf("curl %v over TCP: status %q, want %s", c.args, out, c.want)
		}
	}
}
