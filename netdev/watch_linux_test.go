//go:build linux

package netdev

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"weavenet/internal/nstest"
)

// When a container's namespace goes, the kernel deletes its veth, and the
// watch says so; the host end's name, known from before, no longer exists.
func TestWatchContainerLinksGone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	host := nstest.New(t)
	name := "wnw" + randSuffix(t)
	var ns netns.NsHandle
	var err error
	nstest.In(t, netns.None(), func() { ns, err = netns.NewNamed(name) })
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() { ns.Close(); _ = netns.DeleteNamed(name) })
	path := filepath.Join(netnsRunDir, name)

	var hostIf string
	var exists bool
	done := make(chan struct{})
	defer close(done)
	var gone <-chan struct{}
	nstest.In(t, host, func() {
		if _, err = EnsureBridge("wnbr0", 0); err != nil {
			return
		}
		if _, _, err = Attach(AttachConfig{Bridge: "wnbr0", NetNS: path, Addrs: []netip.Prefix{netip.MustParsePrefix("10.99.0.1/24")}}); err != nil {
			return
		}
		if hostIf, err = HostIfNameOf(path); err != nil {
			return
		}
		if exists, err = LinkExists(hostIf); err != nil {
			return
		}
		gone, err = WatchContainerLinksGone(done)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !exists {
		t.Fatalf("LinkExists(%q) = false right after Attach", hostIf)
	}

	ns.Close()
	if err := netns.DeleteNamed(name); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("no signal after the container's namespace went")
	}
	nstest.In(t, host, func() { exists, err = LinkExists(hostIf) })
	if err != nil || exists {
		t.Errorf("LinkExists(%q) = %v, %v after its namespace went; want false", hostIf, exists, err)
	}
}
