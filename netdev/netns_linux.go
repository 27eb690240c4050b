//go:build linux

package netdev

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsRunDir is where `ip netns add` (and `weave run`) bind-mount named
// network namespaces.
const netnsRunDir = "/var/run/netns"

// ContainerNetNSPath resolves a container, given as a network namespace
// name (looked up as /var/run/netns/NAME), an absolute path to a namespace
// file, or a PID (as /proc/PID/ns/net), to the path of its network
// namespace. It fails with an error naming what was looked for if the
// namespace does not exist or the path is not a network namespace.
func ContainerNetNSPath(container string) (string, error) {
	var path string
	switch {
	case container == "":
		return "", errors.New("netdev: no container given: name a network namespace, give its path, or a PID")
	case isPID(container):
		path = "/proc/" + container + "/ns/net"
	case strings.HasPrefix(container, "/"):
		path = filepath.Clean(container)
	case strings.Contains(container, "/") || container == "." || container == "..":
		return "", fmt.Errorf("netdev: %q is not a network namespace name (names cannot contain '/'); give an absolute path instead", container)
	default:
		path = filepath.Join(netnsRunDir, container)
	}
	if err := checkNetNSFile(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			switch {
			case isPID(container):
				return "", fmt.Errorf("netdev: container %s: no process with that PID (%s does not exist)", container, path)
			case strings.HasPrefix(container, "/"):
				return "", fmt.Errorf("netdev: container %s: no such file", path)
			default:
				return "", fmt.Errorf("netdev: container %q: no network namespace of that name (%s does not exist); create it with `weave run` or `ip netns add`", container, path)
			}
		}
		return "", fmt.Errorf("netdev: container %q: %w", container, err)
	}
	return path, nil
}

func isPID(s string) bool {
	n, err := strconv.ParseUint(s, 10, 31)
	return err == nil && n > 0
}

// checkNetNSFile verifies that path is a network namespace: a file on nsfs
// (a /proc/PID/ns/net link or a bind mount of one) of type CLONE_NEWNET.
// Without this a stale file left in /var/run/netns after its mount went
// away would surface much later as a confusing setns error.
func checkNetNSFile(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return &fs.PathError{Op: "statfs", Path: path, Err: err}
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("%s is not a namespace file (expected /proc/PID/ns/net or a bind mount of it)", path)
	}
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		// Kernels before 4.11 cannot tell; nsfs is the best we can check.
		if errors.Is(err, unix.ENOTTY) {
			return nil
		}
		return &fs.PathError{Op: "NS_GET_NSTYPE", Path: path, Err: err}
	}
	if typ != unix.CLONE_NEWNET {
		return fmt.Errorf("%s is a namespace but not a network namespace", path)
	}
	return nil
}

// inNetNS runs fn with the calling goroutine's view of /proc/sys/net being
// ns's. Netlink reaches a container through a handle opened in it, but a
// sysctl has no netlink: it is read and written by whichever namespace the
// thread is in. So fn runs on a goroutine of its own, locked to its thread
// for the while; if the thread cannot be moved back, it stays locked and
// the runtime ends it with the goroutine, so no other code ever runs in
// the container's namespace by mistake.
func inNetNS(ns netns.NsHandle, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("this thread's network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter the container's network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			done <- errors.Join(ferr, fmt.Errorf("back from the container's network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}
