package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"weavenet/internal/syncbuf"
)

// DefaultExecTimeout bounds every command run with NS.Exec.
const DefaultExecTimeout = 2 * time.Minute

// ExecError is returned by NS.Exec when a command fails. Stderr holds what the
// command printed on stderr.
type ExecError struct {
	NS       string
	Args     []string
	ExitCode int // -1 when the command did not exit normally
	Stderr   string
	Err      error
}

func (e *ExecError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = "(no stderr)"
	}
	return fmt.Sprintf("[%s] %s: %v: %s", e.NS, strings.Join(e.Args, " "), e.Err, msg)
}

func (e *ExecError) Unwrap() error { return e.Err }

// ExitCode returns the exit code carried by err (an *ExecError), 0 for a nil
// error and -1 when err says nothing about an exit code.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *ExecError
	if errors.As(err, &ee) {
		return ee.ExitCode
	}
	return -1
}

// Stderr returns the stderr carried by err (an *ExecError), or "".
func Stderr(err error) string {
	var ee *ExecError
	if errors.As(err, &ee) {
		return ee.Stderr
	}
	return ""
}

// NS is a network namespace of a bed: a host, a container or the underlay.
type NS struct {
	Name string // name under /var/run/netns
	// keepMounts runs commands with nsenter --net instead of ip netns exec,
	// in the test's own mount namespace. Hosts need it: weave run creates
	// named namespaces (bind mounts), which must be visible to everyone, as
	// they are when a user runs it on a real host; ip netns exec would
	// confine them to a private mount namespace.
	keepMounts bool
	env        []string // added to the environment of every command
}

func (n *NS) String() string { return n.Name }

// Path returns the namespace's bind-mount path.
func (n *NS) Path() string { return netnsDir + "/" + n.Name }

func (n *NS) command(ctx context.Context, args []string) *exec.Cmd {
	var cmd *exec.Cmd
	if n.keepMounts {
		cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + n.Path(), "--"}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, args...)...)
	}
	if len(n.env) > 0 {
		cmd.Env = append(os.Environ(), n.env...)
	}
	// A command may leave children holding our pipes (weave launch does):
	// stop waiting for them shortly after the command itself has exited.
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// Exec runs args inside the namespace with DefaultExecTimeout and returns its
// stdout. On failure the error is an *ExecError that includes stderr.
func (n *NS) Exec(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return n.ExecTimeout(t, DefaultExecTimeout, args...)
}

// ExecTimeout is Exec with an explicit time limit; the command is killed when
// it runs out.
func (n *NS) ExecTimeout(t testing.TB, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := n.command(ctx, args)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w after %v", ctx.Err(), timeout)
		}
		return stdout.String(), &ExecError{NS: n.Name, Args: args, ExitCode: exitCode(cmd, err), Stderr: stderr.String(), Err: err}
	}
	return stdout.String(), nil
}

// MustExec is Exec that fails the test on error.
func (n *NS) MustExec(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.Exec(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func exitCode(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState != nil && cmd.ProcessState.Exited() {
		return cmd.ProcessState.ExitCode()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return ee.ExitCode()
	}
	return -1
}

// Start runs args inside the namespace in the background. The process is
// killed at the end of the test if still running.
func (n *NS) Start(t testing.TB, args ...string) *Proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proc{ns: n.Name, args: args, done: make(chan struct{}), cancel: cancel}
	p.cmd = n.command(ctx, args)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("[%s] start %s: %v", n.Name, strings.Join(args, " "), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.Kill)
	return p
}

// Proc is a background process started with NS.Start.
type Proc struct {
	ns     string
	args   []string
	cmd    *exec.Cmd
	cancel context.CancelFunc
	stdout syncbuf.Buffer
	stderr syncbuf.Buffer
	done   chan struct{}
	err    error // valid after done is closed
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stdout returns what the process printed on stdout so far.
func (p *Proc) Stdout() string { return p.stdout.String() }

// Stderr returns what the process printed on stderr so far.
func (p *Proc) Stderr() string { return p.stderr.String() }

// Signal sends sig to the process; it is a no-op once the process exited.
func (p *Proc) Signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// Kill kills the process and waits for it.
func (p *Proc) Kill() {
	p.cancel()
	<-p.done
}

// Wait waits up to timeout for the process to exit and returns its stdout.
// On failure or timeout (the process is then killed) the error is an
// *ExecError including stderr.
func (p *Proc) Wait(timeout time.Duration) (string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	select {
	case <-p.done:
		err = p.err
	case <-timer.C:
		p.Kill()
		err = fmt.Errorf("still running after %v, killed", timeout)
	}
	if err != nil {
		return p.Stdout(), &ExecError{NS: p.ns, Args: p.args, ExitCode: exitCode(p.cmd, err), Stderr: p.Stderr(), Err: err}
	}
	return p.Stdout(), nil
}

// WaitStderr waits until the process has printed substr on stderr. It fails
// the test if the process exits first or timeout passes.
func (p *Proc) WaitStderr(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Stderr(), substr) {
		select {
		case <-p.done:
			if strings.Contains(p.Stderr(), substr) {
				return
			}
			t.Fatalf("[%s] %s exited (%v) before printing %q; stdout=%q stderr=%q",
				p.ns, strings.Join(p.args, " "), p.err, substr, p.Stdout(), p.Stderr())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("[%s] %s did not print %q within %v; stderr=%q",
				p.ns, strings.Join(p.args, " "), substr, timeout, p.Stderr())
		}
	}
}

// Ping sends count pings (one per 0.2s, 2s wait each) to addr from inside
// the namespace; extra arguments go before the address (e.g. "-s", "10000").
func (n *NS) Ping(t testing.TB, addr string, count int, extra ...string) error {
	t.Helper()
	args := append([]string{"ping", "-n", "-q", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "2"}, extra...)
	_, err := n.ExecTimeout(t, time.Duration(count)*3*time.Second+5*time.Second, append(args, addr)...)
	return err
}

// WaitPing polls single pings to addr until one is answered, failing the
// test after timeout.
func (n *NS) WaitPing(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	var last error
	ok := Poll(timeout, func() bool {
		_, last = n.ExecTimeout(t, 5*time.Second, "ping", "-n", "-q", "-c", "1", "-W", "1", addr)
		return last == nil
	})
	if !ok {
		t.Fatalf("[%s] no ping answer from %s within %v: %v", n.Name, addr, timeout, last)
	}
}
