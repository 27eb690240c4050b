//go:build linux

package ipdev

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"weavenet/internal/nstest"
	"weavenet/tun"
)

// TestTUNDeviceKernelTCP joins two kernel TUNs, each in a namespace of its
// own, through two TUNDevices wired back to back as the overlay would join
// them: a TCP stream between the two kernels arrives intact, and crosses
// as super-frames (one Read of 64 KiB, not one per segment) both ways.
func TestTUNDeviceKernelTCP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and TUN devices")
	}
	addrA, addrB := netip.MustParsePrefix("10.98.0.1/24"), netip.MustParsePrefix("10.98.0.2/24")
	nsA, devA := kernelStation(t, addrA, ourMAC)
	nsB, devB := kernelStation(t, addrB, peerMAC)
	var aToB, bToA atomic.Int64 // super-frames each way
	wireTUN(devA, devB, &aToB)
	wireTUN(devB, devA, &bToA)

	var ln net.Listener
	var err error
	nstest.In(t, nsB, func() { ln, err = net.Listen("tcp4", netip.AddrPortFrom(addrB.Addr(), 5201).String()) })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	data := make([]byte, 32<<20)
	_, _ = rand.NewChaCha8([32]byte{2}).Read(data)
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- [32]byte{}
			return
		}
		defer c.Close()
		h := sha256.New()
		_, _ = io.Copy(h, c)
		got <- [32]byte(h.Sum(nil))
		_, _ = c.Write(data[:4<<20]) // and some back
	}()
	var c net.Conn
	nstest.In(t, nsA, func() { c, err = net.DialTimeout("tcp4", ln.Addr().String(), 10*time.Second) })
	if err != nil {
		t.Fatalf("dial across the TUNs: %v", err)
	}
	defer c.Close()
	if _, err := io.Copy(c, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case h := <-got:
		if h != sha256.Sum256(data) {
			t.Fatal("the stream arrived damaged")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the stream did not arrive")
	}
	back, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(back, data[:4<<20]) {
		t.Fatalf("the stream back: %d bytes, %v", len(back), err)
	}
	t.Logf("super-frames A→B %d, B→A %d; A %+v; B %+v", aToB.Load(), bToA.Load(), devA.Stats(), devB.Stats())
	if aToB.Load() == 0 || bToA.Load() == 0 {
		t.Error("no super-frames crossed: the TUNs' offloads are off")
	}
}

// kernelStation is a TUNDevice on a TUN with addr, in a new namespace.
func kernelStation(t *testing.T, addr netip.Prefix, m mac) (netns.NsHandle, *TUNDevice) {
	t.Helper()
	var ns netns.NsHandle
	var err error
	nstest.In(t, netns.None(), func() { ns, err = netns.New() })
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	var tn *tun.TUN
	nstest.In(t, ns, func() { tn, err = tun.OpenTUN(tun.TUNConfig{Name: "wntun0", MTU: 1376, VnetHdr: true, Offload: true}) })
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewTUN(tn, Config{MAC: net.HardwareAddr(m[:]), Addrs: []netip.Prefix{addr}})
	if err != nil {
		tn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	link, err := h.LinkByName("wntun0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}); err != nil {
		t.Fatal(err)
	}
	return ns, d
}

// wireTUN writes every frame from reads into to, as the overlay would,
// counting super-frames. It ends when either device closes.
func wireTUN(from, to *TUNDevice, super *atomic.Int64) {
	go func() {
		b := make([]byte, frameHead+maxPacket)
		for {
			n, err := from.Read(b)
			if err != nil {
				return
			}
			if b[1] != tun.VirtioNetHdrGSONone {
				super.Add(1)
			}
			if _, err := to.Write(b[:n]); err != nil {
				return
			}
		}
	}()
}
