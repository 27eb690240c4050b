package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// The Docker tests use the machine's one Engine. Every container they make
// carries the label dockerTestLabel=RUN, so cleanup finds it, and the image
// is imported from Debian's busybox-static under a tag unique to the test
// process, removed when no test uses it any more.

const dockerTestLabel = "weavenet.test"

// dockerCmd runs the docker CLI (in the test's own namespace: the Engine is
// reached through its socket) and returns its trimmed stdout.
func engineCmd(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

func mustEngine(t testing.TB, args ...string) string {
	t.Helper()
	out, err := engineCmd(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dockerRun is what a Docker test needs: the image, and the label and
// name prefix of its containers.
type dockerRun struct {
	Image  string
	Label  string // --label value for weave run / docker run
	Prefix string // of container names, unique to the run
}

// Name is a container name unique to this run.
func (r *dockerRun) Name(short string) string { return r.Prefix + short }

var (
	imageMu    sync.Mutex
	imageUsers int
	imageTag   string
)

// needDocker skips the test unless a Docker Engine answers and busybox is
// at hand, then returns the run's image and names; containers labelled for
// the run and the image are removed at cleanup, also on failure.
func needDocker(t *testing.T) *dockerRun {
	t.Helper()
	testbed.RequireRoot(t)
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker CLI: the Docker tests need a Docker Engine")
	}
	if _, err := engineCmd(t, "version", "--format", "{{.Server.APIVersion}}"); err != nil {
		t.Skipf("no Docker Engine answers: %v", err)
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no /bin/busybox: apt-get install --no-install-recommends busybox-static (make deps)")
	}
	var id [3]byte
	_, _ = rand.Read(id[:])
	run := &dockerRun{Label: dockerTestLabel + "=" + hex.EncodeToString(id[:]), Prefix: "wnd" + hex.EncodeToString(id[:]) + "-"}
	run.Image = acquireImage(t)
	t.Cleanup(func() {
		ids, _ := engineCmd(t, "ps", "-aq", "--filter", "label="+run.Label)
		if f := strings.Fields(ids); len(f) > 0 {
			if _, err := engineCmd(t, append([]string{"rm", "-f"}, f...)...); err != nil {
				t.Logf("cleanup: %v", err)
			}
		}
		releaseImage(t)
	})
	return run
}

// acquireImage imports the busybox image once for all the tests that use
// it at a time.
func acquireImage(t *testing.T) string {
	t.Helper()
	imageMu.Lock()
	defer imageMu.Unlock()
	if imageUsers == 0 {
		var id [4]byte
		_, _ = rand.Read(id[:])
		tag := "weavenet-test-busybox:" + hex.EncodeToString(id[:])
		if err := importBusybox(t, tag); err != nil {
			t.Fatal(err)
		}
		imageTag = tag
	}
	imageUsers++
	return imageTag
}

func releaseImage(t testing.TB) {
	imageMu.Lock()
	defer imageMu.Unlock()
	if imageUsers--; imageUsers == 0 {
		if _, err := engineCmd(t, "rmi", "-f", imageTag); err != nil {
			t.Logf("cleanup: %v", err)
		}
	}
}

// importBusybox makes an image of a root file system holding only
// /bin/busybox and links to the applets the tests run.
func importBusybox(t testing.TB, tag string) error {
	root := t.TempDir()
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	b, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), b, 0o755); err != nil {
		return err
	}
	for _, a := range []string{"sh", "top", "sleep", "ping", "ip", "nslookup", "cat", "hostname", "wget", "nc", "ifconfig", "ls"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			return err
		}
	}
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", tarPath, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("tar: %v: %s", err, out)
	}
	_, err = engineCmd(t, "import", "--change", "ENV PATH=/bin", tarPath, tag)
	return err
}

// ethweAddrs lists the IPv4 addresses of a container's weave interface.
func ethweAddrs(t testing.TB, id string) []string {
	t.Helper()
	out, err := engineCmd(t, "exec", id, "ip", "-4", "-o", "addr", "show", "dev", "ethwe")
	if err != nil {
		return nil
	}
	var addrs []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				addrs = append(addrs, f[i+1])
			}
		}
	}
	return addrs
}

// weaveRunDocker runs weave run's Docker form on h with the run's label,
// and returns the container ID.
func weaveRunDocker(t *testing.T, h *testbed.Host, run *dockerRun, addrs []string, args ...string) string {
	t.Helper()
	full := append(append(append([]string{"run"}, addrs...), "--label", run.Label), args...)
	out := h.MustWeave(t, full...)
	f := strings.Fields(out)
	if len(f) == 0 || len(f[len(f)-1]) != 64 {
		t.Fatalf("weave run printed %q, want a container ID", out)
	}
	return f[len(f)-1]
}

// psLine is the weave ps line of the container with this ID, or "".
func psLine(t testing.TB, h *testbed.Host, id string) string {
	t.Helper()
	out, err := h.Weave(t, "ps")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, id[:12]+" ") {
			return line
		}
	}
	return ""
}
