//go:build linux

package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"weavenet/internal/nstest"
)

// TestTUNKernelPath proves, in a private network namespace, that packets
// written to a TUN with virtio headers reach the kernel's stack, that its
// replies come back with the header in front, that offloaded checksums
// count from the IP header, and that a past read deadline interrupts Read.
func TestTUNKernelPath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and TUN devices")
	}
	ns := nstest.New(t)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in test netns: %v", err)
	}
	t.Cleanup(h.Close)
	cfg := TUNConfig{Name: "wntun0", MTU: 1400, VnetHdr: true, Offload: true}
	var tn *TUN
	nstest.In(t, ns, func() { tn, err = OpenTUN(cfg) })
	if err != nil {
		t.Fatalf("OpenTUN(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { tn.Close() })
	if tn.Name() != cfg.Name || !tn.VnetHdr() || tn.MTU() != cfg.MTU {
		t.Fatalf("Name, VnetHdr, MTU = %q, %v, %d", tn.Name(), tn.VnetHdr(), tn.MTU())
	}
	link, err := h.LinkByName(cfg.Name)
	if err != nil {
		t.Fatalf("TUN not visible in netns: %v", err)
	}
	if a := link.Attrs(); a.MTU != cfg.MTU || a.Flags&net.FlagUp == 0 || link.Type() != "tuntap" {
		t.Fatalf("TUN %s MTU %d flags %v; want a tuntap, MTU %d and up", link.Type(), a.MTU, a.Flags, cfg.MTU)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: kernelIP.AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrAdd(link, addr); err != nil {
		t.Fatalf("add address: %v", err)
	}
	buf := make([]byte, VirtioNetHdrLen+65535)

	// 1. ICMP echo to the kernel's address comes back as an echo reply: a
	// bare IP packet after the header, no Ethernet, no packet information.
	payload := []byte("weavenet tun test")
	echo := icmpEcho(nil, 0x7777, 1, payload)[14:]
	pkt := make([]byte, VirtioNetHdrLen+len(echo))
	copy(pkt[VirtioNetHdrLen:], echo)
	if n, err := tn.Write(pkt); err != nil || n != len(pkt) {
		t.Fatalf("Write: %d, %v", n, err)
	}
	readPacketUntil(t, tn, buf, "ICMP echo reply", func(_ VirtioNetHdr, p []byte) bool {
		icmp, ok := ipv4Payload(asFrame(p), unix.IPPROTO_ICMP, kernelIP, peerIP)
		return ok && len(icmp) >= 8 && icmp[0] == 0 && binary.BigEndian.Uint16(icmp[4:]) == 0x7777 && bytes.Equal(icmp[8:], payload)
	})

	// 2. A datagram the kernel sends: its checksum is left to us, and the
	// offset counts from the IP header.
	nstest.In(t, ns, func() { sendUDP(t, peerIP, udpTestPort, payload) })
	readPacketUntil(t, tn, buf, "UDP datagram", func(hdr VirtioNetHdr, p []byte) bool {
		udp, ok := ipv4Payload(asFrame(p), unix.IPPROTO_UDP, kernelIP, peerIP)
		if !ok || len(udp) < 8 || binary.BigEndian.Uint16(udp[2:]) != udpTestPort {
			return false
		}
		if hdr.Flags&VirtioNetHdrFNeedsCsum == 0 || hdr.CsumStart != 20 || hdr.CsumOffset != 6 {
			t.Errorf("offloaded UDP packet has header %+v, want NeedsCsum at 20+6", hdr)
		}
		return true
	})

	// 3. A deadline in the past wakes a blocked Read, and clearing it lets
	// Read block again.
	if err := tn.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	err = wakeBlockedRead(t, tn, buf, func() error { return tn.SetReadDeadline(time.Unix(1, 0)) })
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after a past deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	if err := tn.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}

	// 4. Close wakes a blocked Read and the kernel deletes the device.
	if err := wakeBlockedRead(t, tn, buf, tn.Close); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
	}
	waitLinkGone(t, h, cfg.Name)
}

func TestOpenTUNRejectsBadConfig(t *testing.T) {
	for _, cfg := range []TUNConfig{
		{},
		{Name: "wntun-name-too-long"},
		{Name: "wntun0", Offload: true},
		{Name: "wntun0", MTU: -1},
	} {
		if tn, err := OpenTUN(cfg); err == nil {
			tn.Close()
			t.Errorf("OpenTUN(%+v) succeeded", cfg)
		}
	}
}

// readPacketUntil reads packets until match accepts one, skipping the IPv6
// chatter a fresh interface emits.
func readPacketUntil(t *testing.T, tn *TUN, buf []byte, what string, match func(VirtioNetHdr, []byte) bool) {
	t.Helper()
	if err := tn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := tn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		var hdr VirtioNetHdr
		if err := hdr.Decode(buf[:n]); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(hdr, buf[VirtioNetHdrLen:n]) {
			return
		}
	}
}

// asFrame puts an IPv4 packet behind a blank Ethernet header, for
// ipv4Payload.
func asFrame(p []byte) []byte {
	f := make([]byte, 14+len(p))
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_IP)
	copy(f[14:], p)
	return f
}
