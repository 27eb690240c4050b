package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"weavenet/api"
	"weavenet/internal/syncbuf"
)

// serveAPI serves the guard in front of a /report and /reset on ln, as
// weaved does, until the test ends; the guard logs to what it returns.
func serveAPI(t *testing.T, a api.Addr, ln net.Listener) *syncbuf.Buffer {
	t.Helper()
	h, _ := guardedMux("127.0.0.1:0")
	logs := &syncbuf.Buffer{}
	g := h.(*apiGuard)
	g.listenHost = newAPIGuard(a, nil, nil).listenHost
	g.log = slog.New(slog.NewTextHandler(logs, nil))
	srv := newAPIServer(g)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return logs
}

func socketAddr(t *testing.T, dir string) api.Addr {
	a, err := api.ParseAddr("unix://" + filepath.Join(dir, "run", "weave", "weaved.sock"))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The socket is born 0600 in a directory weaved makes, owned by the
// daemon's user, answers the api client, and is gone once closed.
func TestAPISocketMode(t *testing.T) {
	a := socketAddr(t, t.TempDir())
	ln, stale, err := listenAPI(a, noGroup)
	if err != nil || stale {
		t.Fatalf("listenAPI: stale %v, %v", stale, err)
	}
	fi, err := os.Lstat(a.Address)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; int(uid) != os.Geteuid() {
		t.Errorf("socket owned by %d, want %d", uid, os.Geteuid())
	}
	serveAPI(t, a, ln)
	if _, err := api.NewClient(a.String()).Report(context.Background()); err != nil {
		t.Errorf("Report over the socket: %v", err)
	}
	ln.Close()
	if _, err := os.Lstat(a.Address); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after close: %v", err)
	}
}

// A socket a killed daemon left is removed; one a live daemon answers on
// makes a second daemon fail and stays; a file that is not a socket is
// left alone.
func TestAPISocketStale(t *testing.T) {
	a := socketAddr(t, t.TempDir())
	if err := os.MkdirAll(filepath.Dir(a.Address), 0o755); err != nil {
		t.Fatal(err)
	}
	dead, err := net.ListenUnix("unix", &net.UnixAddr{Name: a.Address, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	dead.SetUnlinkOnClose(false)
	dead.Close()

	ln, stale, err := listenAPI(a, noGroup)
	if err != nil || !stale {
		t.Fatalf("over a stale socket: stale %v, %v", stale, err)
	}
	serveAPI(t, a, ln)
	if _, _, err := listenAPI(a, noGroup); err == nil || !strings.Contains(err.Error(), "is weave already running?") {
		t.Errorf("second daemon: %v, want 'is weave already running?'", err)
	}
	if _, err := api.NewClient(a.String()).Report(context.Background()); err != nil {
		t.Errorf("the first daemon no longer answers after a second tried: %v", err)
	}
	ln.Close()

	if err := os.WriteFile(a.Address, []byte("not a socket"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := listenAPI(a, noGroup); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(a.Address); string(b) != "not a socket" {
		t.Error("the regular file was touched")
	}
}

// envDialAs makes the test binary, run again as another user, reset the
// API at the address it names and print what happened.
const envDialAs = "WEAVED_TEST_API_CLIENT"

func TestMain(m *testing.M) {
	if addr := os.Getenv(envDialAs); addr != "" {
		err := api.NewClient(addr).Reset(context.Background())
		switch {
		case err == nil:
			fmt.Println("answered")
		case errors.Is(err, api.ErrNoAccess):
			fmt.Println("no access:", err)
		default:
			fmt.Println("error:", err)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Another local user (nobody) cannot use the socket; the same user can
// once the socket is opened to everyone, which shows the refusal is the
// socket's mode.
func TestAPISocketRefusesOtherUsers(t *testing.T) {
	bin, dir := clientBinary(t)
	a := socketAddr(t, dir)
	ln, _, err := listenAPI(a, noGroup)
	if err != nil {
		t.Fatal(err)
	}
	serveAPI(t, a, ln)

	if out := dialAs(t, bin, a, 65534, 65534); !strings.HasPrefix(out, "no access:") || !strings.Contains(out, "root") {
		t.Errorf("nobody on the 0600 socket: %q, want no access that says to run as root", out)
	}
	if err := os.Chmod(a.Address, 0o666); err != nil {
		t.Fatal(err)
	}
	if out := dialAs(t, bin, a, 65534, 65534); out != "answered" {
		t.Errorf("nobody on a 0666 socket: %q, want answered (the check above proves nothing otherwise)", out)
	}
}

// With --api-group the socket is 0660 and the group's: a user in it gets
// answers, the same user outside it does not.
func TestAPISocketGroup(t *testing.T) {
	bin, dir := clientBinary(t)
	a := socketAddr(t, dir)
	const gid = 65534 // nogroup on Debian: a group that exists, held by nobody we run
	if _, err := apiGroup(strconv.Itoa(gid), a); err != nil {
		t.Skipf("no group %d here: %v", gid, err)
	}
	ln, _, err := listenAPI(a, gid)
	if err != nil {
		t.Fatal(err)
	}
	logs := serveAPI(t, a, ln)
	fi, err := os.Lstat(a.Address)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != gid {
		t.Errorf("socket mode %v group %d, want 0660 and group %d", fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Gid, gid)
	}
	const uid = 54321 // no user of the system: only the group can let it in
	if out := dialAs(t, bin, a, uid, gid); out != "answered" {
		t.Errorf("a member of the API group: %q, want answered", out)
	}
	// The change is logged with who made it, as the kernel tells.
	if l := logs.String(); !strings.Contains(l, `msg="api: POST /reset" uid=54321 gid=65534 pid=`) {
		t.Errorf("the member's reset is not logged with its uid and gid: %q", l)
	}
	if out := dialAs(t, bin, a, uid, uid); !strings.HasPrefix(out, "no access:") || !strings.Contains(out, "--api-group") {
		t.Errorf("the same user outside the group: %q, want no access that names --api-group", out)
	}
	if n := strings.Count(logs.String(), "api: "); n != 1 {
		t.Errorf("%d API requests logged, want only the member's", n)
	}
}

// --api-group takes a group's name or number that the system knows, and
// only with a socket.
func TestAPIGroupFlag(t *testing.T) {
	sock := socketAddr(t, t.TempDir())
	tcp := api.Addr{Network: "tcp", Address: "127.0.0.1:6784"}
	for _, c := range []struct {
		v    string
		a    api.Addr
		gid  int
		want string // in the error; "" for none
	}{
		{"", sock, noGroup, ""},
		{"", tcp, noGroup, ""},
		{"root", sock, 0, ""},
		{"0", sock, 0, ""},
		{"root", tcp, noGroup, "only a Unix socket has a group"},
		{"weavenet-no-such-group", sock, noGroup, "groupadd weavenet-no-such-group"},
		{"4000000000", sock, noGroup, "no such group"},
	} {
		gid, err := apiGroup(c.v, c.a)
		if gid != c.gid || (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("apiGroup(%q, %s) = %d, %v; want %d and an error with %q", c.v, c.a, gid, err, c.gid, c.want)
		}
	}
}

// clientBinary copies the test binary where any user can run it, in a
// directory any user can enter (everything another user needs is
// readable; only the socket may not be), or skips without root.
func clientBinary(t *testing.T) (bin, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	dir, err := os.MkdirTemp("", "weaved-apisock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "client")
	if err := copyExecutable(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	return bin, dir
}

// dialAs runs the client binary as uid and gid (no supplementary groups)
// against a and says what it got.
func dialAs(t *testing.T, bin string, a api.Addr, uid, gid uint32) string {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = []string{envDialAs + "=" + a.String()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as %d:%d: %v: %s", uid, gid, err, out)
	}
	return strings.TrimSpace(string(out))
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Over TCP the guard refuses a rebinding Host; over the socket any Host
// passes (curl sends localhost, other clients the socket's path), while
// web pages' Origin is refused on both.
func TestAPIGuardByTransport(t *testing.T) {
	sock := socketAddr(t, t.TempDir())
	sln, _, err := listenAPI(sock, noGroup)
	if err != nil {
		t.Fatal(err)
	}
	serveAPI(t, sock, sln)
	tcp := api.Addr{Network: "tcp", Address: "127.0.0.1:0"}
	tln, _, err := listenAPI(tcp, noGroup)
	if err != nil {
		t.Fatal(err)
	}
	tcp.Address = tln.Addr().String()
	serveAPI(t, tcp, tln)

	status := func(a api.Addr, host, extra string) int {
		t.Helper()
		conn, err := net.Dial(a.Network, a.Address)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /report HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", host, extra)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	origin := "Origin: http://evil.example\r\n"
	for _, c := range []struct {
		a         api.Addr
		host, hdr string
		want      int
		transport string
		doesWhat  string
	}{
		{tcp, "rebind.example:6784", "", http.StatusForbidden, "TCP", "rebinding Host"},
		{tcp, tcp.Address, "", http.StatusOK, "TCP", "its own address"},
		{tcp, tcp.Address, origin, http.StatusForbidden, "TCP", "an Origin"},
		{sock, "rebind.example", "", http.StatusOK, "socket", "any Host"},
		{sock, "%2Frun%2Fweave%2Fweaved.sock", "", http.StatusOK, "socket", "the path as Host"},
		{sock, "localhost", origin, http.StatusForbidden, "socket", "an Origin"},
	} {
		if got := status(c.a, c.host, c.hdr); got != c.want {
			t.Errorf("%s, %s: status %d, want %d", c.transport, c.doesWhat, got, c.want)
		}
	}
	if _, err := api.NewClient(tcp.String()).Report(context.Background()); err != nil {
		t.Errorf("client over an explicit TCP address: %v", err)
	}
}
