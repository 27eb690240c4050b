package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvWeaverXZ names the xz-compressed Weave Net 2.8.1 router binary the
// interoperability tests run. Unset, the testbed looks for
// <module root>/../shared/weave-2.8.1/weaver.xz.
const EnvWeaverXZ = "WEAVER_XZ"

// WeaverLogFile is the file in the data dir that StartWeaver appends the
// router's output to; the bed prints it when the test fails.
const WeaverLogFile = "weaver.log"

// weaverPort and weaverHTTP are what StartWeaver passes: the sleeve port
// weaved also uses, and the loopback HTTP address weave's own script expects.
const (
	weaverPort = "6783"
	weaverHTTP = "127.0.0.1:6784"
)

// WeaverMTU is the MTU Weave Net's own attach gives both ends of a
// container's veth in sleeve mode.
const WeaverMTU = 1376

// Weaver is a Weave Net 2.8.1 router started by Host.StartWeaver: a real
// peer of the other kind for interoperability tests.
type Weaver struct {
	Host    *Host
	Args    []string // full weaver argument list
	LogPath string

	name    string
	t       testing.TB
	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{}
	err     error // valid after done is closed
}

var weaverBin struct {
	once sync.Once
	path string
	skip string // why the tests cannot run weaver, if they cannot
	err  error
}

// weaverBinary decompresses weaver.xz once per test process into the
// process's build dir and returns the binary's path. It skips the test when
// the archive or what the router needs at runtime is missing.
func weaverBinary(t testing.TB) string {
	t.Helper()
	weaverBin.once.Do(func() {
		weaverBin.path, weaverBin.skip, weaverBin.err = unpackWeaver()
	})
	if weaverBin.skip != "" {
		t.Skip("testbed: " + weaverBin.skip)
	}
	if weaverBin.err != nil {
		t.Fatalf("testbed: %v", weaverBin.err)
	}
	return weaverBin.path
}

func unpackWeaver() (path, skip string, err error) {
	xzPath := os.Getenv(EnvWeaverXZ)
	if xzPath == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", "", err
		}
		xzPath = filepath.Join(filepath.Dir(root), "shared", "weave-2.8.1", "weaver.xz")
	}
	if _, err := os.Stat(xzPath); err != nil {
		return "", fmt.Sprintf("no Weave Net 2.8.1 router to test against (%v); set $%s to its weaver.xz", err, EnvWeaverXZ), nil
	}
	if _, err := exec.LookPath("xz"); err != nil {
		return "", "unpacking weaver.xz needs the xz command; run make deps (xz-utils)", nil
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return "", "the Weave Net router needs iptables; run make deps", nil
	}
	if _, err := exec.LookPath("ethtool"); err != nil {
		return "", "plugging containers into the Weave Net router's bridge needs ethtool; run make deps", nil
	}
	if _, err := exec.LookPath("curl"); err != nil {
		return "", "talking to the Weave Net router's HTTP API needs curl; run make deps", nil
	}
	dir, err := buildDir()
	if err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, "weaver")
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return "", "", err
	}
	var stderr strings.Builder
	cmd := exec.Command("xz", "-dc", xzPath)
	cmd.Stdout, cmd.Stderr = out, &stderr
	err = cmd.Run()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", "", fmt.Errorf("xz -dc %s: %v %s", xzPath, err, stderr.String())
	}
	// A missing shared library (libpcap) shows here rather than as a
	// router that dies at every start.
	if msg, err := exec.Command(path, "--help").CombinedOutput(); err != nil && strings.Contains(string(msg), "shared librar") {
		return "", fmt.Sprintf("the Weave Net router cannot run here (%s); run make deps (libpcap0.8)", strings.TrimSpace(string(msg))), nil
	}
	return path, "", nil
}

// buildDir returns the temp dir holding this process's binaries, creating it
// on first use; Main removes it.
func buildDir() (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildRoot == "" {
		dir, err := os.MkdirTemp("", "weavenet-bin-")
		if err != nil {
			return "", err
		}
		buildRoot = dir
	}
	return buildRoot, nil
}

// WeaverName returns the peer name StartWeaver gives the router on h: a
// locally administered MAC made of the bed prefix and the host's number, so
// it is unique among beds and the same on every restart of h.
func (h *Host) WeaverName() string {
	var p [2]byte
	if hexPart := strings.TrimPrefix(h.Bed.Prefix, "wn"); len(hexPart) == 4 {
		v, _ := strconv.ParseUint(hexPart, 16, 16)
		p = [2]byte{byte(v >> 8), byte(v)}
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(h.Name, "h"))
	return fmt.Sprintf("02:57:%02x:%02x:%02x:%02x", p[0], p[1], byte(n>>8), byte(n))
}

// StartWeaver starts the Weave Net 2.8.1 router in h's namespace, sleeve only:
// --port 6783 --name <a unique MAC peer name> --nickname h.Name --no-fastdp --docker-api ""
// --http-addr 127.0.0.1:6784 --db-prefix <h.DataDir>/weave/ then args (e.g. --password,
// --ipalloc-range, --ipalloc-init, peer addresses). Skips the test if weaver.xz is absent.
//
// It returns once the router's HTTP API answers (its bridge "weave" exists
// by then) and fails the test if the router exits first. Output is appended
// to DataDir/weaver.log. The bed stops the router at cleanup. A restart on
// the same data: call StartWeaver again with the same args.
func (h *Host) StartWeaver(t testing.TB, args ...string) *Weaver {
	t.Helper()
	bin := weaverBinary(t)
	dbDir := filepath.Join(h.DataDir, "weave")
	if err := os.MkdirAll(dbDir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := h.WeaverName()
	full := append([]string{
		"--port", weaverPort, "--name", name, "--nickname", h.Name,
		"--no-fastdp", "--docker-api", "", "--http-addr", weaverHTTP,
		"--db-prefix", dbDir + "/",
	}, args...)
	logPath := filepath.Join(h.DataDir, WeaverLogFile)
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "==== testbed %s: weaver %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(full, " "))
	w := &Weaver{Host: h, Args: full, LogPath: logPath, name: name, t: t, logFile: f, done: make(chan struct{})}
	w.cmd = h.command(context.Background(), append([]string{bin}, full...))
	w.cmd.WaitDelay = 0
	// It drops restart.sentinel in its working directory and, finding it
	// there at the next start, resumes with its persisted peer list: one
	// per host, beside its data.
	w.cmd.Dir = dbDir
	w.cmd.Stdout, w.cmd.Stderr = f, f
	// Its version check would call out of the bed.
	w.cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1")
	if err := w.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("[%s] start weaver: %v", h.Name, err)
	}
	go func() {
		w.err = w.cmd.Wait()
		fmt.Fprintf(f, "==== testbed %s: weaver exited: %v\n", time.Now().Format(time.RFC3339Nano), exitDesc(w.err))
		f.Close()
		close(w.done)
	}()
	h.Bed.mu.Lock()
	h.Bed.weavers = append(h.Bed.weavers, w)
	h.Bed.mu.Unlock()

	var last error
	var exited bool
	ok := Poll(ReadyTimeout, func() bool {
		_, last = w.HTTP(t, "GET", "/status")
		exited, _ = w.Exited()
		return last == nil || exited
	})
	if exited {
		_, err := w.Exited()
		t.Fatalf("[%s] weaver exited before answering (%s); log tail:\n%s", h.Name, exitDesc(err), tail(w.Logs(), 20))
	}
	if !ok {
		t.Fatalf("[%s] weaver's HTTP API did not answer within %v: %v", h.Name, ReadyTimeout, last)
	}
	return w
}

// Name returns the router's peer name (MAC form).
func (w *Weaver) Name() string { return w.name }

// Pid returns the router's process id.
func (w *Weaver) Pid() int { return w.cmd.Process.Pid }

// Done is closed when the router has exited.
func (w *Weaver) Done() <-chan struct{} { return w.done }

// Exited reports whether the router has exited and, if so, its wait error.
func (w *Weaver) Exited() (bool, error) {
	select {
	case <-w.done:
		return true, w.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM and waits for the router to exit; after StopTimeout it
// is killed and the test fails.
func (w *Weaver) Stop() {
	w.t.Helper()
	select {
	case <-w.done:
		return
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(StopTimeout):
		w.Kill()
		w.t.Errorf("[%s] weaver did not exit within %v of SIGTERM; killed", w.Host.Name, StopTimeout)
	}
}

// Kill sends SIGKILL and waits for the router to exit.
func (w *Weaver) Kill() {
	select {
	case <-w.done:
		return
	default:
	}
	_ = w.cmd.Process.Kill()
	<-w.done
}

// stopQuietly is used at cleanup: SIGTERM, then SIGKILL after 5s.
func (w *Weaver) stopQuietly() {
	select {
	case <-w.done:
		return
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		w.Kill()
	}
}

// Logs returns the router's log file (every start on this host).
func (w *Weaver) Logs() string {
	data, _ := os.ReadFile(w.LogPath)
	return string(data)
}

// HTTP calls the router's HTTP API on 127.0.0.1:6784 from inside its host
// namespace and returns the body. path may carry a query (form values go
// there: Weave Net reads them from either). A GET of /report asks for JSON,
// the only form of it that needs no template. An answer other than 2xx is
// an error that includes the body.
func (w *Weaver) HTTP(t testing.TB, method, path string) (string, error) {
	t.Helper()
	args := []string{"curl", "-sS", "--fail-with-body", "--max-time", "10", "-X", method}
	if strings.HasPrefix(path, "/report") {
		args = append(args, "-H", "Accept: application/json")
	}
	args = append(args, "http://"+weaverHTTP+path)
	out, err := w.Host.ExecTimeout(t, 15*time.Second, args...)
	if err != nil {
		return out, fmt.Errorf("weaver %s %s: %w (body %q)", method, path, err, strings.TrimSpace(out))
	}
	return out, nil
}

// Attach plugs container c into the router's bridge "weave" as Weave Net's
// own attach does: a veth (ethwe in the container), MTU 1376 on both ends,
// transmit checksum offload off in the container (the router reads frames
// from the bridge with pcap and would forward them with unfilled
// checksums), address cidr, link up. A second Attach of the same container
// only adds the address.
func (w *Weaver) Attach(t testing.TB, c *Container, cidr string) {
	t.Helper()
	h := w.Host
	if _, err := c.Exec(t, "ip", "link", "show", "ethwe"); err != nil {
		hostIf := "vw" + strings.TrimPrefix(c.NS.Name, h.Bed.Prefix)
		if len(hostIf) > 15 {
			hostIf = hostIf[:15]
		}
		mtu := strconv.Itoa(WeaverMTU)
		h.Bed.ip(t, "link", "add", hostIf, "netns", h.NS.Name, "mtu", mtu, "type", "veth",
			"peer", "name", "ethwe", "netns", c.NS.Name, "mtu", mtu)
		h.Bed.ip(t, "-n", h.NS.Name, "link", "set", hostIf, "master", "weave")
		h.Bed.ip(t, "-n", h.NS.Name, "link", "set", hostIf, "up")
		if out, err := c.Exec(t, "ethtool", "-K", "ethwe", "tx", "off"); err != nil {
			t.Fatalf("testbed: ethtool in %s: %v\n%s", c.Name, err, out)
		}
		h.Bed.ip(t, "-n", c.NS.Name, "link", "set", "ethwe", "up")
	}
	h.Bed.ip(t, "-n", c.NS.Name, "addr", "add", cidr, "dev", "ethwe")
}
