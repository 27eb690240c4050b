// Package nstest gives tests of kernel objects (TAP, TUN, veth, bridges) a
// network namespace of their own, created and entered from Go, so that
// what they make never touches the host's namespace.
package nstest

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// New creates an unnamed network namespace: nothing but the returned handle
// keeps it alive, and it is closed when the test ends.
func New(t testing.TB) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	var err error
	In(t, netns.None(), func() { ns, err = netns.New() })
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// In runs fn on a thread switched into ns (netns.None: stay put), and
// restores the thread's namespace afterwards, whatever fn switched to.
func In(t testing.TB, ns netns.NsHandle, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get current netns: %v", err)
	}
	defer orig.Close()
	if ns != netns.None() {
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			t.Fatalf("enter netns: %v", err)
		}
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked so the runtime retires it with
			// this goroutine instead of reusing it in the wrong netns.
			t.Errorf("restore netns: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
}
