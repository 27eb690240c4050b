package testbed

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// markerDir holds one file per live bed, named by its prefix and holding the
// pid of the test process, so that a later run can remove the namespaces of
// a test process that was killed before its cleanup ran.
const markerDir = "/run/weavenet-testbed"

func writeMarker(prefix string) error {
	if err := os.MkdirAll(markerDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(markerDir, prefix), []byte(strconv.Itoa(os.Getpid())), 0o644)
}

func removeMarker(prefix string) {
	os.Remove(filepath.Join(markerDir, prefix))
	os.Remove(markerDir) // only succeeds when empty
}

// sweepStale destroys the beds whose test process is gone.
func sweepStale(t testing.TB) {
	entries, err := os.ReadDir(markerDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		prefix := e.Name()
		data, err := os.ReadFile(filepath.Join(markerDir, prefix))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		var names []string
		nss, _ := os.ReadDir(netnsDir)
		for _, ns := range nss {
			if strings.HasPrefix(ns.Name(), prefix) {
				names = append(names, ns.Name())
			}
		}
		t.Logf("testbed: removing %d namespaces left by dead test process %d (prefix %s)", len(names), pid, prefix)
		for _, err := range destroy(prefix, names) {
			t.Logf("testbed: sweeping %s: %v", prefix, err)
		}
		removeMarker(prefix)
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// destroy kills every process living in the named namespaces, then deletes
// them. Namespaces are deleted in reverse creation order.
func destroy(prefix string, names []string) []error {
	var errs []error
	for _, name := range names {
		if !strings.HasPrefix(name, prefix) {
			errs = append(errs, fmt.Errorf("refusing to touch namespace %q outside prefix %q", name, prefix))
			continue
		}
		if err := killNetnsProcs(name); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(names) - 1; i >= 0; i-- {
		name := names[i]
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		if _, err := os.Stat(filepath.Join(netnsDir, name)); err != nil {
			continue // already gone
		}
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns delete %s: %v: %s", name, err, strings.TrimSpace(string(out))))
		}
	}
	// The resolv.conf weaved writes for each container by name, whether the
	// test made the container with weave run or attached it.
	dirs, _ := filepath.Glob(filepath.Join(etcNetnsDir, prefix+"*"))
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

const etcNetnsDir = "/etc/netns"

// nsID identifies a network namespace by the device and inode of its nsfs
// file.
type nsID struct{ dev, ino uint64 }

func statNS(path string) (nsID, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nsID{}, false
	}
	return nsID{uint64(st.Dev), st.Ino}, true
}

// netnsPids lists the processes whose network namespace is the named one.
func netnsPids(name string) []int {
	want, ok := statNS(filepath.Join(netnsDir, name))
	if !ok {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if id, ok := statNS(fmt.Sprintf("/proc/%d/ns/net", pid)); ok && id == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killNetnsProcs SIGKILLs every process in the namespace and waits up to 10s
// for them to be gone.
func killNetnsProcs(name string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := netnsPids(name)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still in namespace %s after SIGKILL", pids, name)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
