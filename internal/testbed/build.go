package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Environment variables read by the testbed.
const (
	// EnvBin names a directory holding prebuilt weaved, weave and wntool
	// binaries (and embed, for the tests that run it). When set, nothing is
	// built.
	EnvBin = "WEAVENET_BIN"
	// EnvBuildFlags holds extra space-separated flags for go build, for
	// example "-race".
	EnvBuildFlags = "WEAVENET_BUILDFLAGS"
)

type buildResult struct {
	once sync.Once
	dir  string
	err  error
}

var (
	buildRoot string // temp dir holding every build of this process
	buildMu   sync.Mutex

	toolBuild   buildResult // wntool
	daemonBuild buildResult // weaved and weave
	embedBuild  buildResult // examples/embed
)

// Main runs the tests and then removes the binaries built by this process.
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { testbed.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	buildMu.Lock()
	if buildRoot != "" {
		os.RemoveAll(buildRoot)
	}
	buildMu.Unlock()
	os.Exit(code)
}

// ToolDir returns a directory containing the wntool binary, building it once
// per test process. It fails the test if the build fails.
func ToolDir(t testing.TB) string {
	t.Helper()
	return binDir(t, &toolBuild, "./internal/testbed/wntool")
}

// BinDir returns a directory containing the weaved, weave and wntool binaries,
// building them once per test process (or taking them from $WEAVENET_BIN).
// It fails the test if the build fails.
func BinDir(t testing.TB) string {
	t.Helper()
	ToolDir(t)
	return binDir(t, &daemonBuild, "./cmd/weaved", "./cmd/weave", "./cmd/weavewait")
}

// EmbedDir returns a directory containing the embed binary of
// examples/embed, built once per test process (or taken from
// $WEAVENET_BIN). It fails the test if the build fails.
func EmbedDir(t testing.TB) string {
	t.Helper()
	return binDir(t, &embedBuild, "./examples/embed")
}

func binDir(t testing.TB, b *buildResult, pkgs ...string) string {
	t.Helper()
	b.once.Do(func() { b.dir, b.err = build(pkgs...) })
	if b.err != nil {
		t.Fatalf("testbed: %v", b.err)
	}
	return b.dir
}

func build(pkgs ...string) (string, error) {
	if dir := os.Getenv(EnvBin); dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", err
		}
		for _, p := range pkgs {
			bin := filepath.Join(abs, filepath.Base(p))
			if _, err := os.Stat(bin); err != nil {
				return "", fmt.Errorf("$%s=%s: %v (build it or unset %s)", EnvBin, dir, err, EnvBin)
			}
		}
		return abs, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	buildMu.Lock()
	if buildRoot == "" {
		buildRoot, err = os.MkdirTemp("", "weavenet-bin-")
	}
	dir := buildRoot
	buildMu.Unlock()
	if err != nil {
		return "", err
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	args = append(args, strings.Fields(os.Getenv(EnvBuildFlags))...)
	args = append(args, pkgs...)
	cmd := exec.Command(goTool(), args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build %s failed: %v\n%s", strings.Join(pkgs, " "), err, out)
	}
	return dir, nil
}

// moduleRoot finds the weavenet module root from the working directory.
func moduleRoot() (string, error) {
	out, err := exec.Command(goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the weavenet module (go env GOMOD is empty)")
	}
	return filepath.Dir(gomod), nil
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if goroot := os.Getenv("GOROOT"); goroot != "" {
		return filepath.Join(goroot, "bin", "go")
	}
	return "/usr/local/go/bin/go"
}
