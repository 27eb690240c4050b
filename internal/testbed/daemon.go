package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StopTimeout is how long Daemon.Stop waits after SIGTERM before it kills
// the daemon and fails the test.
const StopTimeout = 15 * time.Second

// Daemon is a weaved process started by Host.StartWeaved.
type Daemon struct {
	Host    *Host
	Args    []string // full weaved argument list
	LogPath string   // stdout and stderr of the daemon, appended

	t       testing.TB
	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{}
	err     error // valid after done is closed
}

// LogFile is the file in the data dir that StartWeaved appends the daemon's
// output to.
const LogFile = "weaved.log"

// StartWeaved starts weaved inside the host namespace with --data-dir
// h.DataDir and --nickname h.Name followed by args. Output is appended to
// DataDir/weaved.log, which the bed prints when the test fails. The daemon is
// stopped at cleanup if still running.
func (h *Host) StartWeaved(t testing.TB, args ...string) *Daemon {
	t.Helper()
	bin := BinDir(t)
	full := append([]string{"--data-dir", h.DataDir, "--nickname", h.Name}, args...)
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--dns-resolv-conf") }) {
		// weaveDNS forwards names outside its domain upstream: never to the
		// machine's resolvers from a test, only where a test says.
		conf := filepath.Join(h.DataDir, "upstream-resolv.conf")
		if err := os.WriteFile(conf, []byte("# no upstream in tests\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		full = append(full, "--dns-resolv-conf", conf)
	}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--proxy-socket") || a == "--no-proxy" }) {
		// The Docker API proxy of each host in its data dir, not at the
		// machine's default path.
		full = append(full, "--proxy-socket", filepath.Join(h.DataDir, "weave.sock"))
	}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--plugin-name") || a == "--no-plugin" }) {
		// The Docker network plugin's socket is machine-wide: only tests
		// that name a plugin of their own serve one.
		full = append(full, "--no-plugin")
	}
	logPath := filepath.Join(h.DataDir, LogFile)
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "==== testbed %s: weaved %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(full, " "))
	d := &Daemon{Host: h, Args: full, LogPath: logPath, t: t, logFile: f, done: make(chan struct{})}
	d.cmd = h.command(context.Background(), append([]string{filepath.Join(bin, "weaved")}, full...))
	d.cmd.WaitDelay = 0
	d.cmd.Stdout, d.cmd.Stderr = f, f
	if err := d.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("[%s] start weaved: %v", h.Name, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		fmt.Fprintf(f, "==== testbed %s: weaved exited: %v\n", time.Now().Format(time.RFC3339Nano), exitDesc(d.err))
		f.Close()
		close(d.done)
	}()
	h.Bed.mu.Lock()
	h.Bed.daemons = append(h.Bed.daemons, d)
	h.daemon = d
	h.Bed.mu.Unlock()
	return d
}

func exitDesc(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// Pid returns the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Done is closed when the daemon has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Exited reports whether the daemon has exited and, if so, its wait error.
func (d *Daemon) Exited() (bool, error) {
	select {
	case <-d.done:
		return true, d.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM and waits for the daemon to exit. If it is still running
// after StopTimeout it is killed and the test fails.
func (d *Daemon) Stop() {
	d.t.Helper()
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(StopTimeout):
		d.Kill()
		d.t.Errorf("[%s] weaved did not exit within %v of SIGTERM; killed", d.Host.Name, StopTimeout)
	}
}

// Kill sends SIGKILL and waits for the daemon to exit.
func (d *Daemon) Kill() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Kill()
	<-d.done
}

// stopQuietly is used at cleanup: SIGTERM, then SIGKILL after 5s.
func (d *Daemon) stopQuietly() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		d.Kill()
	}
}

// Logs returns the daemon log file's content.
func (d *Daemon) Logs() string {
	data, _ := os.ReadFile(d.LogPath)
	return string(data)
}

// Weave runs the weave CLI inside the host namespace and returns its stdout.
// On failure the error is an *ExecError including stderr and the exit code.
func (h *Host) Weave(t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin := BinDir(t)
	// weave launch starts weaved: no Docker network plugin on the
	// machine-wide socket unless the test names one (--plugin-name).
	return h.Exec(t, append([]string{"env", "WEAVE_NO_PLUGIN=1", filepath.Join(bin, "weave")}, args...)...)
}

// MustWeave is Weave that fails the test on error.
func (h *Host) MustWeave(t testing.TB, args ...string) string {
	t.Helper()
	out, err := h.Weave(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Weaved runs the weaved binary in the foreground inside the host namespace
// (for testing flag errors) with a 30s limit.
func (h *Host) Weaved(t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin := BinDir(t)
	return h.ExecTimeout(t, 30*time.Second, append([]string{filepath.Join(bin, "weaved")}, args...)...)
}

// Tool runs wntool inside the namespace with the given time limit and
// returns its stdout.
func (n *NS) Tool(t testing.TB, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	return n.ExecTimeout(t, timeout, append([]string{filepath.Join(ToolDir(t), "wntool")}, args...)...)
}

// StartTool starts wntool inside the namespace in the background.
func (n *NS) StartTool(t testing.TB, args ...string) *Proc {
	t.Helper()
	return n.Start(t, append([]string{filepath.Join(ToolDir(t), "wntool")}, args...)...)
}

// Report is the subset of `weave report` that the tests read.
type Report struct {
	Version string
	Router  RouterReport
}

// RouterReport is the router section of a report.
type RouterReport struct {
	Name          string
	NickName      string
	Port          int
	PeerDiscovery bool
	Targets       []string
	Connections   []ConnReport
	Peers         []PeerReport
	Stats         StatsReport
}

// ConnReport is one local connection.
type ConnReport struct {
	Address   string
	Outbound  bool
	State     string
	Info      string
	Transport string
	MTU       int
	Encrypted bool
}

// PeerReport is one peer of the topology.
type PeerReport struct {
	Name        string
	NickName    string
	Connections []PeerConnReport
}

// PeerConnReport is a connection of a peer as seen in gossip.
type PeerConnReport struct {
	Name        string
	Address     string
	Outbound    bool
	Established bool
}

// StatsReport holds the router's counters.
type StatsReport struct {
	Drops     map[string]uint64
	FramesIn  uint64
	FramesOut uint64
}

// Established returns the number of local connections in state
// "established".
func (r *RouterReport) Established() int {
	n := 0
	for _, c := range r.Connections {
		if c.State == "established" {
			n++
		}
	}
	return n
}

// EstablishedTo reports whether a local established connection goes to addr
// (an IP, matched against the host part of Address).
func (r *RouterReport) EstablishedTo(addr string) bool {
	for _, c := range r.Connections {
		if c.State == "established" && hostPart(c.Address) == addr {
			return true
		}
	}
	return false
}

// Peer returns the peer with the given nickname, or nil.
func (r *RouterReport) Peer(nick string) *PeerReport {
	for i := range r.Peers {
		if r.Peers[i].NickName == nick {
			return &r.Peers[i]
		}
	}
	return nil
}

func hostPart(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}

// TryReport runs `weave report` and decodes it.
func (h *Host) TryReport(t testing.TB) (*Report, error) {
	t.Helper()
	out, err := h.ExecTimeout(t, 10*time.Second, filepath.Join(BinDir(t), "weave"), "report")
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return nil, fmt.Errorf("[%s] weave report: %v\n%s", h.Name, err, out)
	}
	return &r, nil
}

// Report runs `weave report` and fails the test if it does not answer.
func (h *Host) Report(t testing.TB) *Report {
	t.Helper()
	r, err := h.TryReport(t)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ReadyTimeout bounds WaitReady.
const ReadyTimeout = 30 * time.Second

// WaitReady polls `weave report` until the daemon answers. It fails at once
// if the daemon last started by StartWeaved has exited.
func (h *Host) WaitReady(t testing.TB) *Report {
	t.Helper()
	h.Bed.mu.Lock()
	d := h.daemon
	h.Bed.mu.Unlock()
	var r *Report
	var last error
	var exited bool
	ok := Poll(ReadyTimeout, func() bool {
		r, last = h.TryReport(t)
		if last != nil && d != nil {
			exited, _ = d.Exited()
		}
		return last == nil || exited
	})
	if exited {
		_, err := d.Exited()
		t.Fatalf("[%s] weaved exited before answering (%s); log tail:\n%s", h.Name, exitDesc(err), tail(d.Logs(), 20))
	}
	if !ok {
		t.Fatalf("[%s] weave report did not answer within %v: %v", h.Name, ReadyTimeout, last)
	}
	return r
}

// Attach runs `weave attach CIDR... CONTAINER` on the host and returns its
// output, failing the test on error.
func (h *Host) Attach(t testing.TB, c *Container, cidrs ...string) string {
	t.Helper()
	args := append(append([]string{"attach"}, cidrs...), c.NS.Name)
	out, err := h.Weave(t, args...)
	// Right after consensus a claimed address may lie in a range whose
	// new owner has not heard yet; weave says to retry, as a user would.
	for deadline := time.Now().Add(10 * time.Second); err != nil && strings.Contains(err.Error(), "retry in a moment") && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		out, err = h.Weave(t, args...)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}
