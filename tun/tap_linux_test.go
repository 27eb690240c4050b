//go:build linux

package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"weavenet/internal/nstest"
)

// The test namespaces are unnamed: nothing but our fds keeps them alive, so
// they vanish with the test process even if it is killed mid-run.
var (
	kernelIP = netip.MustParseAddr("10.201.0.1")
	peerIP   = netip.MustParseAddr("10.201.0.2")
	peerMAC  = net.HardwareAddr{0x02, 0x77, 0x6e, 0x74, 0x00, 0x02}
)

const udpTestPort = 9999

// TestTAPKernelPath proves, in a private network namespace, that frames
// written to a TAP reach the kernel's stack and its replies come back out.
func TestTAPKernelPath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and TAP devices")
	}
	for _, tc := range []struct {
		name string
		cfg  TAPConfig
	}{
		{"plain", TAPConfig{Name: "wntap0", MTU: 1400}},
		{"vnethdr-offload-bridged", TAPConfig{Name: "wntap0", MTU: 1400, VnetHdr: true, Offload: true, Bridge: "wnbr0"}},
	} {
		t.Run(tc.name, func(t *testing.T) { testTAPKernelPath(t, tc.cfg) })
	}
}

func testTAPKernelPath(t *testing.T, cfg TAPConfig) {
	ns := nstest.New(t)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in test netns: %v", err)
	}
	t.Cleanup(h.Close)

	if cfg.Bridge != "" {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: cfg.Bridge}}
		if err := h.LinkAdd(br); err != nil {
			t.Fatalf("add bridge: %v", err)
		}
		if err := h.LinkSetUp(br); err != nil {
			t.Fatalf("bridge up: %v", err)
		}
	}

	var tap *TAP
	nstest.In(t, ns, func() {
		tap, err = OpenTAP(cfg)
	})
	if err != nil {
		t.Fatalf("OpenTAP(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { tap.Close() })
	if tap.Name() != cfg.Name || tap.VnetHdr() != cfg.VnetHdr {
		t.Fatalf("Name, VnetHdr = %q, %v; want %q, %v", tap.Name(), tap.VnetHdr(), cfg.Name, cfg.VnetHdr)
	}

	link, err := h.LinkByName(cfg.Name)
	if err != nil {
		t.Fatalf("TAP not visible in netns: %v", err)
	}
	if a := link.Attrs(); a.MTU != cfg.MTU || a.Flags&net.FlagUp == 0 {
		t.Fatalf("TAP MTU %d flags %v; want MTU %d and up", a.MTU, a.Flags, cfg.MTU)
	}
	l3 := link // the interface that holds the kernel's address
	if cfg.Bridge != "" {
		if l3, err = h.LinkByName(cfg.Bridge); err != nil {
			t.Fatal(err)
		}
		if link.Attrs().MasterIndex != l3.Attrs().Index {
			t.Fatalf("TAP master index %d, want bridge %d", link.Attrs().MasterIndex, l3.Attrs().Index)
		}
		// A bridged TAP with an IPv6 address would solicit routers, which
		// the router would flood to every peer.
		if v6, err := h.AddrList(link, netlink.FAMILY_V6); err != nil || len(v6) != 0 {
			t.Errorf("bridged TAP has IPv6 addresses %v (%v), want none", v6, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: kernelIP.AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrAdd(l3, addr); err != nil {
		t.Fatalf("add address: %v", err)
	}
	// A permanent neighbour entry spares the test from answering the
	// kernel's own ARP requests before it replies to us.
	if err := h.NeighAdd(&netlink.Neigh{
		LinkIndex: l3.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
		IP: peerIP.AsSlice(), HardwareAddr: peerMAC,
	}); err != nil {
		t.Fatalf("add neighbour: %v", err)
	}

	hdrLen := 0
	if cfg.VnetHdr {
		hdrLen = VirtioNetHdrLen
	}
	buf := make([]byte, 65536+VirtioNetHdrLen)

	// 1. ARP: who has kernelIP? The reply also tells us the kernel's MAC.
	writeFrame(t, tap, hdrLen, arpRequest())
	var kernelMAC net.HardwareAddr
	readUntil(t, tap, buf, hdrLen, "ARP reply", func(_ VirtioNetHdr, f []byte) bool {
		if len(f) < 42 || binary.BigEndian.Uint16(f[12:]) != unix.ETH_P_ARP || binary.BigEndian.Uint16(f[20:]) != 2 ||
			!bytes.Equal(f[28:32], kernelIP.AsSlice()) || !bytes.Equal(f[32:38], peerMAC) {
			return false
		}
		kernelMAC = append(net.HardwareAddr(nil), f[22:28]...)
		return true
	})
	if !bytes.Equal(kernelMAC, l3.Attrs().HardwareAddr) {
		t.Fatalf("ARP reply names MAC %v, want %s's %v", kernelMAC, l3.Attrs().Name, l3.Attrs().HardwareAddr)
	}

	// 2. ICMP echo to the kernel's address comes back as an echo reply.
	payload := []byte("weavenet tun test")
	writeFrame(t, tap, hdrLen, icmpEcho(kernelMAC, 0x7777, 1, payload))
	readUntil(t, tap, buf, hdrLen, "ICMP echo reply", func(_ VirtioNetHdr, f []byte) bool {
		ip, ok := ipv4Payload(f, unix.IPPROTO_ICMP, kernelIP, peerIP)
		return ok && len(ip) >= 8 && ip[0] == 0 && binary.BigEndian.Uint16(ip[4:]) == 0x7777 &&
			binary.BigEndian.Uint16(ip[6:]) == 1 && bytes.Equal(ip[8:], payload)
	})

	// 3. A datagram the kernel sends out of the device. With Offload the
	// kernel leaves the UDP checksum to us and says so in the header, which
	// proves TUNSETOFFLOAD took effect.
	nstest.In(t, ns, func() { sendUDP(t, peerIP, udpTestPort, payload) })
	readUntil(t, tap, buf, hdrLen, "UDP datagram", func(hdr VirtioNetHdr, f []byte) bool {
		udp, ok := ipv4Payload(f, unix.IPPROTO_UDP, kernelIP, peerIP)
		if !ok || len(udp) < 8 || binary.BigEndian.Uint16(udp[2:]) != udpTestPort {
			return false
		}
		if cfg.Offload {
			if hdr.Flags&VirtioNetHdrFNeedsCsum == 0 || hdr.CsumStart != 14+20 || hdr.CsumOffset != 6 {
				t.Errorf("offloaded UDP frame has header %+v, want NeedsCsum at 34+6", hdr)
			}
		}
		return true
	})

	// 4. Close wakes a blocked Read with an error callers can recognise,
	// and the kernel deletes the device.
	if err := tap.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := wakeBlockedRead(t, tap, buf, tap.Close); !errors.Is(err, net.ErrClosed) || !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read after Close: %v, want net.ErrClosed and os.ErrClosed", err)
	}
	if _, err := tap.Write(buf[:60]); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
	if err := tap.Close(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("second Close: %v, want os.ErrClosed", err)
	}
	waitLinkGone(t, h, cfg.Name)
}

func TestOpenTAPRejectsBadConfig(t *testing.T) {
	for _, cfg := range []TAPConfig{
		{},
		{Name: "wntap-name-too-long"},
		{Name: "wntap0", Offload: true},
		{Name: "wntap0", MTU: -1},
	} {
		if tap, err := OpenTAP(cfg); err == nil {
			tap.Close()
			t.Errorf("OpenTAP(%+v) succeeded", cfg)
		}
	}
}

func writeFrame(t *testing.T, tap *TAP, hdrLen int, frame []byte) {
	t.Helper()
	b := make([]byte, hdrLen+len(frame)) // zero virtio header: a plain, fully checksummed frame
	copy(b[hdrLen:], frame)
	if n, err := tap.Write(b); err != nil || n != len(b) {
		t.Fatalf("Write: %d, %v; want %d", n, err, len(b))
	}
}

// readUntil reads frames until match accepts one, skipping the IPv6 and
// other chatter a fresh interface emits.
func readUntil(t *testing.T, tap *TAP, buf []byte, hdrLen int, what string, match func(VirtioNetHdr, []byte) bool) {
	t.Helper()
	if err := tap.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := tap.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		var hdr VirtioNetHdr
		if hdrLen > 0 {
			if err := hdr.Decode(buf[:n]); err != nil {
				t.Fatalf("waiting for %s: %v", what, err)
			}
		}
		if match(hdr, buf[hdrLen:n]) {
			return
		}
	}
}

func arpRequest() []byte {
	f := make([]byte, 60) // minimum Ethernet frame, zero padded
	copy(f[0:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:], peerMAC)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_ARP)
	binary.BigEndian.PutUint16(f[14:], 1) // Ethernet
	binary.BigEndian.PutUint16(f[16:], unix.ETH_P_IP)
	f[18], f[19] = 6, 4
	binary.BigEndian.PutUint16(f[20:], 1) // request
	copy(f[22:], peerMAC)
	copy(f[28:], peerIP.AsSlice())
	copy(f[38:], kernelIP.AsSlice())
	return f
}

func icmpEcho(dst net.HardwareAddr, id, seq uint16, payload []byte) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f[0:], dst)
	copy(f[6:], peerMAC)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_IP)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[8] = 64
	ip[9] = unix.IPPROTO_ICMP
	copy(ip[12:], peerIP.AsSlice())
	copy(ip[16:], kernelIP.AsSlice())
	binary.BigEndian.PutUint16(ip[10:], checksum(ip[:20]))
	icmp := ip[20:]
	icmp[0] = 8 // echo request
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	copy(icmp[8:], payload)
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return f
}

// ipv4Payload returns the L4 payload of f if it is an unfragmented IPv4
// packet of protocol proto from src to dst.
func ipv4Payload(f []byte, proto byte, src, dst netip.Addr) ([]byte, bool) {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:]) != unix.ETH_P_IP {
		return nil, false
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ip[0]>>4 != 4 || ihl < 20 || total < ihl || total > len(ip) || ip[9] != proto ||
		!bytes.Equal(ip[12:16], src.AsSlice()) || !bytes.Equal(ip[16:20], dst.AsSlice()) {
		return nil, false
	}
	return ip[ihl:total], true
}

func checksum(b []byte) uint16 {
	var sum uint32
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// sendUDP sends one datagram from the calling thread's network namespace.
func sendUDP(t *testing.T, dst netip.Addr, port int, payload []byte) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("udp socket: %v", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Addr: dst.As4(), Port: port}); err != nil {
		t.Fatalf("udp send: %v", err)
	}
}

// waitLinkGone waits until the link called name is gone from h's namespace,
// as a device must be once it is closed.
func waitLinkGone(t *testing.T, h *netlink.Handle, name string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := h.LinkByName(name)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still present after Close (lookup err %v)", name, err)
		}
	}
}
