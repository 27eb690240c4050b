//go:build linux

package fastdp

import (
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ProbeESP finds out whether the kernel can carry IPsec ESP (xfrm), the
// kernel path Weave Net 2.x used for encrypted fast datapath links: it adds
// an ESP state with AES-GCM in a scratch network namespace, so the host's
// own xfrm state is never touched. It returns nil if the kernel took the
// state, or an error saying why not.
func ProbeESP() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current namespace: %w", err)
	}
	defer orig.Close()
	scratch, err := netns.New() // also moves this thread into it
	if err != nil {
		return fmt.Errorf("scratch namespace: %w", err)
	}
	defer scratch.Close()
	defer netns.Set(orig)
	h, err := netlink.NewHandleAt(scratch, unix.NETLINK_XFRM)
	if err != nil {
		return fmt.Errorf("no xfrm netlink (kernel without XFRM): %w", err)
	}
	defer h.Close()
	st := &netlink.XfrmState{
		Src: net.IPv4(127, 0, 0, 1), Dst: net.IPv4(127, 0, 0, 2),
		Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TRANSPORT, Spi: 0x100,
		Aead: &netlink.XfrmStateAlgo{Name: "rfc4106(gcm(aes))", Key: make([]byte, 36), ICVLen: 128},
	}
	if err := h.XfrmStateAdd(st); err != nil {
		return fmt.Errorf("the kernel refuses an ESP state (no esp4 or AES-GCM): %w", err)
	}
	return nil
}
