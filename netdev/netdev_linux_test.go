//go:build linux

package netdev

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"weavenet/internal/nstest"
)

// TestBridgeAndContainers plays the daemon in a private "host" namespace
// with two named "container" namespaces, all created for this run and
// removed afterwards. No traffic leaves them.
func TestBridgeAndContainers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	const bridge, mtu = "wnbr0", 1400
	var (
		a1  = netip.MustParsePrefix("10.99.0.1/24")
		a11 = netip.MustParsePrefix("10.99.0.11/24")
		b2  = netip.MustParsePrefix("10.99.0.2/24")
	)
	host := nstest.New(t)
	hostH, err := netlink.NewHandleAt(host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hostH.Close)
	sfx := randSuffix(t)
	nameA, nsA := newNamedNetNS(t, "wnt"+sfx+"a")
	nameB, nsB := newNamedNetNS(t, "wnt"+sfx+"b")

	// All host-side calls run as the daemon would: from its own namespace.
	onHost := func(fn func()) { nstest.In(t, host, fn) }

	// Bridge: created once, adopted after.
	for i, want := range []bool{true, false} {
		var created bool
		onHost(func() { created, err = EnsureBridge(bridge, mtu) })
		if err != nil || created != want {
			t.Fatalf("EnsureBridge call %d: created %v, err %v; want %v, nil", i+1, created, err, want)
		}
	}
	br, err := hostH.LinkByName(bridge)
	if err != nil {
		t.Fatalf("bridge missing after EnsureBridge: %v", err)
	}
	if br.Type() != "bridge" || br.Attrs().MTU != mtu || br.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("bridge is %s MTU %d flags %v; want an up bridge with MTU %d", br.Type(), br.Attrs().MTU, br.Attrs().Flags, mtu)
	}
	var acceptRA []byte
	onHost(func() { acceptRA, err = os.ReadFile("/proc/sys/net/ipv6/conf/" + bridge + "/accept_ra") })
	if err != nil || string(acceptRA) != "0\n" {
		t.Errorf("bridge accept_ra %q (%v), want 0: it would solicit routers over the overlay", acceptRA, err)
	}
	onHost(func() { _, err = EnsureBridge("lo", 0) })
	if err == nil || !strings.Contains(err.Error(), "not a bridge") {
		t.Errorf("EnsureBridge on lo: %v, want a not-a-bridge error", err)
	}

	// Name resolution.
	pathA, err := ContainerNetNSPath(nameA)
	if err != nil || pathA != filepath.Join(netnsRunDir, nameA) {
		t.Fatalf("ContainerNetNSPath(%q) = %q, %v", nameA, pathA, err)
	}
	pathB, err := ContainerNetNSPath(nameB)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := ContainerNetNSPath(pathA); err != nil || p != pathA {
		t.Errorf("ContainerNetNSPath(%q) = %q, %v", pathA, p, err)
	}
	pid := strconv.Itoa(os.Getpid())
	if p, err := ContainerNetNSPath(pid); err != nil || p != "/proc/"+pid+"/ns/net" {
		t.Errorf("ContainerNetNSPath(own PID) = %q, %v", p, err)
	}
	missing := "wnt" + sfx + "missing"
	if _, err := ContainerNetNSPath(missing); err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "no network namespace") {
		t.Errorf("ContainerNetNSPath(missing name): %v, want a clear no-such-namespace error", err)
	}
	for _, bad := range []string{"", "a/b", "/proc/self/ns/uts", os.Args[0]} {
		if p, err := ContainerNetNSPath(bad); err == nil {
			t.Errorf("ContainerNetNSPath(%q) = %q, want error", bad, p)
		}
	}

	// Attach both containers.
	attach := func(path string, addrs ...netip.Prefix) (mac net.HardwareAddr, got []netip.Prefix) {
		t.Helper()
		onHost(func() {
			mac, got, err = Attach(AttachConfig{Bridge: bridge, NetNS: path, MTU: mtu, Addrs: addrs})
		})
		if err != nil {
			t.Fatalf("Attach(%s, %v): %v", path, addrs, err)
		}
		return mac, got
	}
	macA, got := attach(pathA, a1)
	if !slices.Equal(got, []netip.Prefix{a1}) {
		t.Fatalf("Attach A returned %v, want [%v]", got, a1)
	}
	macB, got := attach(pathB, b2)
	if !slices.Equal(got, []netip.Prefix{b2}) {
		t.Fatalf("Attach B returned %v, want [%v]", got, b2)
	}
	hA, hB := handleAt(t, nsA), handleAt(t, nsB)
	ethA := checkContainerEnd(t, hA, macA, mtu)
	checkContainerEnd(t, hB, macB, mtu)
	hostA := checkHostEnd(t, hostH, nsA, br, mtu)
	checkHostEnd(t, hostH, nsB, br, mtu)
	for _, ns := range []netns.NsHandle{nsA, nsB} {
		var acceptRA []byte
		nstest.In(t, ns, func() { acceptRA, err = os.ReadFile("/proc/sys/net/ipv6/conf/" + DefaultIfName + "/accept_ra") })
		if err != nil || string(acceptRA) != "0\n" {
			t.Errorf("container end accept_ra %q (%v), want 0: it would solicit routers over the overlay", acceptRA, err)
		}
	}

	ping(t, nsA, b2.Addr())
	ping(t, nsB, a1.Addr())

	// Attaching again adds only the new address and keeps the pair.
	mac, got := attach(pathA, a1, a11)
	if !slices.Equal(got, []netip.Prefix{a1, a11}) || !slices.Equal(mac, macA) {
		t.Fatalf("re-Attach A returned %v %v, want %v [%v %v]", mac, got, macA, a1, a11)
	}
	if _, got = attach(pathA, a11); !slices.Equal(got, []netip.Prefix{a1, a11}) {
		t.Fatalf("third Attach A returned %v", got)
	}
	if l := checkContainerEnd(t, hA, macA, mtu); l.Attrs().Index != ethA.Attrs().Index {
		t.Fatal("re-Attach recreated the container interface")
	}
	if l := checkHostEnd(t, hostH, nsA, br, mtu); l.Attrs().Index != hostA.Attrs().Index {
		t.Fatal("re-Attach recreated the host interface")
	}
	ping(t, nsB, a11.Addr())

	// A foreign interface in the way is refused, not adopted.
	foreign := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "wntforeign"}}
	if err := hA.LinkAdd(foreign); err != nil {
		t.Fatal(err)
	}
	onHost(func() { _, _, err = Attach(AttachConfig{Bridge: bridge, NetNS: pathA, IfName: "wntforeign"}) })
	if err == nil {
		t.Error("Attach adopted a foreign interface in the container")
	}
	if _, err := Detach(pathA, "wntforeign", nil); err == nil {
		t.Error("Detach deleted a foreign interface")
	}
	if _, err := hA.LinkByName("wntforeign"); err != nil {
		t.Errorf("foreign interface gone: %v", err)
	}

	// Detach one address, then the last one, which removes the pair.
	left, err := Detach(pathA, "", []netip.Prefix{a11})
	if err != nil || !slices.Equal(left, []netip.Prefix{a1}) {
		t.Fatalf("Detach(%v) = %v, %v; want [%v]", a11, left, err, a1)
	}
	if _, err := hA.LinkByName(DefaultIfName); err != nil {
		t.Fatalf("container interface gone while an address remains: %v", err)
	}
	left, err = Detach(pathA, "", []netip.Prefix{a1})
	if err != nil || len(left) != 0 {
		t.Fatalf("Detach(last address) = %v, %v; want none", left, err)
	}
	expectGone(t, hA, DefaultIfName)
	expectGone(t, hostH, hostA.Attrs().Name)
	if left, err := Detach(pathA, "", []netip.Prefix{a1}); err != nil || len(left) != 0 {
		t.Fatalf("Detach of a detached container = %v, %v; want none, nil", left, err)
	}

	// Detach without addresses removes the pair whatever it holds.
	if left, err := Detach(pathB, "", nil); err != nil || len(left) != 0 {
		t.Fatalf("Detach(B, no addrs) = %v, %v", left, err)
	}
	expectGone(t, hB, DefaultIfName)

	// A failed Attach removes the pair it created: the kernel refuses a
	// multicast address, after the veth was made.
	onHost(func() {
		_, _, err = Attach(AttachConfig{Bridge: bridge, NetNS: pathB, Addrs: []netip.Prefix{netip.MustParsePrefix("ff02::1/128")}})
	})
	if err == nil {
		t.Fatal("Attach with a multicast address succeeded")
	}
	expectGone(t, hB, DefaultIfName)
	hostB, _ := hostIfName(nsB)
	expectGone(t, hostH, hostB)

	// DeleteLink is idempotent.
	for range 2 {
		onHost(func() { err = DeleteLink(bridge) })
		if err != nil {
			t.Fatalf("DeleteLink(%s): %v", bridge, err)
		}
	}
	expectGone(t, hostH, bridge)
}

func TestHostIfNameFits(t *testing.T) {
	ns, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		t.Skip(err)
	}
	defer ns.Close()
	name, err := hostIfName(ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkIfName(name); err != nil || !strings.HasPrefix(name, hostIfPrefix) {
		t.Fatalf("derived name %q: %v", name, err)
	}
}

func TestAttachRejectsBadConfig(t *testing.T) {
	// The namespace path does not exist, so even a validation bug cannot
	// reach a real namespace; the error must come from validation, before
	// the namespace is opened.
	const nowhere = "/nonexistent/wnt-netns"
	for _, cfg := range []AttachConfig{
		{},
		{NetNS: nowhere},
		{Bridge: "wnbr0"},
		{Bridge: "wnbr0", NetNS: nowhere, IfName: "name-much-too-long"},
		{Bridge: "wnbr0", NetNS: nowhere, HostIfName: "bad/name"},
		{Bridge: "wnbr0", NetNS: nowhere, MTU: -1},
		{Bridge: "wnbr0", NetNS: nowhere, Addrs: []netip.Prefix{{}}},
	} {
		_, _, err := Attach(cfg)
		if err == nil || strings.Contains(err.Error(), "open network namespace") {
			t.Errorf("Attach(%+v): %v, want a validation error", cfg, err)
		}
	}
}

func checkContainerEnd(t *testing.T, h *netlink.Handle, mac net.HardwareAddr, mtu int) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(DefaultIfName)
	if err != nil {
		t.Fatalf("container interface: %v", err)
	}
	if a := l.Attrs(); !slices.Equal(a.HardwareAddr, mac) || a.MTU != mtu || a.Flags&net.FlagUp == 0 {
		t.Fatalf("container interface MAC %v MTU %d flags %v; want %v, %d, up", a.HardwareAddr, a.MTU, a.Flags, mac, mtu)
	}
	// The container's own IPv6 is its business: its link-local stays.
	if v6, err := h.AddrList(l, netlink.FAMILY_V6); err != nil || len(v6) == 0 {
		t.Errorf("container interface has no IPv6 link-local address (%v)", err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("container lo not up (%v)", err)
	}
	return l
}

func checkHostEnd(t *testing.T, h *netlink.Handle, ns netns.NsHandle, br netlink.Link, mtu int) netlink.Link {
	t.Helper()
	name, err := hostIfName(ns)
	if err != nil {
		t.Fatal(err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("host end %s: %v", name, err)
	}
	if a := l.Attrs(); a.MasterIndex != br.Attrs().Index || a.MTU != mtu || a.Flags&net.FlagUp == 0 {
		t.Fatalf("host end %s master %d MTU %d flags %v; want bridge %d, %d, up", name, a.MasterIndex, a.MTU, a.Flags, br.Attrs().Index, mtu)
	}
	// A bridge port with an IPv6 address would solicit routers.
	if v6, err := h.AddrList(l, netlink.FAMILY_V6); err != nil || len(v6) != 0 {
		t.Errorf("host end %s has IPv6 addresses %v (%v), want none", name, v6, err)
	}
	return l
}

func expectGone(t *testing.T, h *netlink.Handle, name string) {
	t.Helper()
	if _, err := h.LinkByName(name); !isLinkNotFound(err) {
		t.Fatalf("%s still present (lookup: %v)", name, err)
	}
}

func handleAt(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func randSuffix(t *testing.T) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// newNamedNetNS creates /var/run/netns/NAME, as `ip netns add` would, and
// removes it when the test ends, passed or not.
func newNamedNetNS(t *testing.T, name string) (string, netns.NsHandle) {
	t.Helper()
	var ns netns.NsHandle
	var err error
	nstest.In(t, netns.None(), func() { ns, err = netns.NewNamed(name) })
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("remove netns %s: %v", name, err)
		}
	})
	return name, ns
}

// ping sends ICMP echo requests from inside ns to dst until one is
// answered, failing after a few seconds. It uses a raw socket opened in ns
// rather than the ping binary, which need not be installed.
func ping(t *testing.T, ns netns.NsHandle, dst netip.Addr) {
	t.Helper()
	var fd int
	var err error
	nstest.In(t, ns, func() {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	})
	if err != nil {
		t.Fatalf("raw ICMP socket: %v", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	id := uint16(os.Getpid())
	buf := make([]byte, 1500)
	deadline := time.Now().Add(5 * time.Second)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		req := make([]byte, 8+16)
		req[0] = 8 // echo request
		binary.BigEndian.PutUint16(req[4:], id)
		binary.BigEndian.PutUint16(req[6:], seq)
		copy(req[8:], "weavenet netdev")
		binary.BigEndian.PutUint16(req[2:], checksum(req))
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrInet4{Addr: dst.As4()}); err != nil {
			t.Fatalf("send echo to %v: %v", dst, err)
		}
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				break // resend
			}
			if err != nil {
				t.Fatalf("receive echo reply from %v: %v", dst, err)
			}
			// A raw IPv4 socket delivers the IP header too.
			pkt := buf[:n]
			if len(pkt) < 20 {
				continue
			}
			ihl := int(pkt[0]&0x0f) * 4
			if len(pkt) < ihl+8 || netip.AddrFrom4([4]byte(pkt[12:16])) != dst {
				continue
			}
			icmp := pkt[ihl:]
			if icmp[0] == 0 && binary.BigEndian.Uint16(icmp[4:]) == id {
				return
			}
		}
	}
	t.Fatalf("no echo reply from %v", dst)
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

// Attach refuses the caller's own namespace: both veth ends, the address
// and the route would land on the host.
func TestAttachRefusesOwnNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	host := nstest.New(t)
	var err error
	nstest.In(t, host, func() {
		if _, err = EnsureBridge("wnbr0", 0); err == nil {
			_, _, err = Attach(AttachConfig{Bridge: "wnbr0", NetNS: "/proc/thread-self/ns/net"})
		}
	})
	if !errors.Is(err, ErrHostNamespace) {
		t.Fatalf("Attach of the caller's own namespace: %v, want ErrHostNamespace", err)
	}
}

// inNetNS runs fn in the namespace given and leaves no thread of the
// process there, however many times it is called; fn's error comes back.
func TestInNetNSLeavesNoThreadBehind(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	other := nstest.New(t)
	own, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	for i := range 50 {
		var inside netns.NsHandle
		want := errors.New("fn's error")
		err := inNetNS(other, func() error {
			inside, err = netns.Get()
			return want
		})
		if !errors.Is(err, want) {
			t.Fatalf("call %d: %v, want fn's error", i, err)
		}
		if !inside.Equal(other) {
			t.Fatalf("call %d: fn did not run in the namespace given", i)
		}
		inside.Close()
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(own), &st); err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		link, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err != nil {
			continue // the thread ended meanwhile
		}
		if want := fmt.Sprintf("net:[%d]", st.Ino); link != want {
			t.Errorf("thread %s is in %s, want %s", task.Name(), link, want)
		}
	}
}
