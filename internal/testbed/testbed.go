package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"weavenet/api"
)

// Topology says how the hosts of a bed are joined.
type Topology int

const (
	// FullMesh puts every host on one bridged segment, 192.168.200.0/24.
	FullMesh Topology = iota
	// Line joins hN and hN+1 by a segment of their own; hosts do not
	// forward, so only neighbours reach each other.
	Line
)

func (tp Topology) String() string {
	switch tp {
	case FullMesh:
		return "FullMesh"
	case Line:
		return "Line"
	}
	return fmt.Sprintf("Topology(%d)", int(tp))
}

// Options describe a bed.
type Options struct {
	Hosts    int      // number of hosts, at least 1
	Topology Topology // how they are joined
}

// Bed is a set of hosts and containers built for one test.
type Bed struct {
	Prefix string  // unique per bed, starts every namespace name
	Hosts  []*Host // h1..hN
	Dir    string  // temp dir holding the hosts' data dirs

	t        testing.TB
	underlay *NS // FullMesh only: the namespace holding the bridge

	mu         sync.Mutex
	namespaces []string // every namespace created, in creation order
	daemons    []*Daemon
	weavers    []*Weaver
}

// Host is one simulated machine: a network namespace with underlay links.
type Host struct {
	Name    string       // "h1", "h2", ...: also the weaved nickname
	NS                   // the host's network namespace
	Addr    netip.Addr   // first underlay address
	Addrs   []netip.Addr // every underlay address (two for a middle host of a Line)
	Nets    []netip.Prefix
	DataDir string // passed to weaved as --data-dir
	// APIAddr is where this host's weaved serves its API: a socket in
	// DataDir. Hosts share the filesystem, so the machine's default socket
	// would be everyone's. Every command run on the host has it as
	// WEAVE_HTTP_ADDR, which weaved, weave and the CNI plugins follow.
	APIAddr string
	Bed     *Bed

	daemon *Daemon // the last one StartWeaved started
}

// Container is a network namespace standing for a container.
type Container struct {
	Name string // short name given to AddContainer, e.g. "c1"
	NS
	Host *Host
}

const netnsDir = "/var/run/netns"

// New builds a bed with opts.Hosts hosts joined as opts.Topology. It skips the
// test when not running as root. Everything is torn down by t.Cleanup.
func New(t testing.TB, opts Options) *Bed {
	t.Helper()
	RequireRoot(t)
	if opts.Hosts < 1 || opts.Hosts > 50 {
		t.Fatalf("testbed: Options.Hosts = %d, want 1..50", opts.Hosts)
	}
	sweepStale(t)
	b := &Bed{Prefix: newPrefix(), t: t}
	dir, err := os.MkdirTemp("", "weavenet-"+b.Prefix+"-")
	if err != nil {
		t.Fatal(err)
	}
	b.Dir = dir
	if err := writeMarker(b.Prefix); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	t.Cleanup(b.cleanup)

	for i := 1; i <= opts.Hosts; i++ {
		h := &Host{Name: fmt.Sprintf("h%d", i), Bed: b}
		h.DataDir = filepath.Join(dir, h.Name)
		h.APIAddr = "unix://" + filepath.Join(h.DataDir, "weaved.sock")
		h.NS = NS{Name: b.Prefix + h.Name, keepMounts: true, env: []string{api.AddrEnv + "=" + h.APIAddr}}
		if err := os.MkdirAll(h.DataDir, 0o755); err != nil {
			t.Fatal(err)
		}
		b.addNS(t, h.Name)
		// Hosts never route between their links.
		b.ip(t, "netns", "exec", h.NS.Name, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward")
		b.Hosts = append(b.Hosts, h)
	}
	switch opts.Topology {
	case FullMesh:
		b.buildFullMesh(t)
	case Line:
		b.buildLine(t)
	default:
		t.Fatalf("testbed: unknown topology %v", opts.Topology)
	}
	return b
}

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("testbed: needs root (network namespaces); run with sudo")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("testbed: needs the ip command (iproute2); run make deps")
	}
}

func newPrefix() string {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return "wn" + hex.EncodeToString(b[:])
}

// ip runs the ip command in the root namespace's view (it only ever names
// the bed's own namespaces) and fails the test on error.
func (b *Bed) ip(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("testbed: ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// addNS creates namespace prefix+short with lo up and records it for cleanup.
func (b *Bed) addNS(t testing.TB, short string) *NS {
	t.Helper()
	name := b.Prefix + short
	b.ip(t, "netns", "add", name)
	b.mu.Lock()
	b.namespaces = append(b.namespaces, name)
	b.mu.Unlock()
	b.ip(t, "-n", name, "link", "set", "lo", "up")
	return &NS{Name: name}
}

func (b *Bed) buildFullMesh(t testing.TB) {
	t.Helper()
	b.underlay = b.addNS(t, "ul")
	ul := b.underlay.Name
	b.ip(t, "-n", ul, "link", "add", "br0", "type", "bridge")
	b.ip(t, "-n", ul, "link", "set", "br0", "up")
	net := netip.MustParsePrefix("192.168.200.0/24")
	for i, h := range b.Hosts {
		port := fmt.Sprintf("p%d", i+1)
		b.ip(t, "link", "add", "eth0", "netns", h.NS.Name, "type", "veth", "peer", "name", port, "netns", ul)
		b.ip(t, "-n", ul, "link", "set", port, "master", "br0")
		b.ip(t, "-n", ul, "link", "set", port, "up")
		addr := netip.AddrFrom4([4]byte{192, 168, 200, byte(i + 1)})
		h.addUnderlay(t, "eth0", addr, net)
	}
}

func (b *Bed) buildLine(t testing.TB) {
	t.Helper()
	links := make([]int, len(b.Hosts)) // links made so far per host
	for s := 1; s < len(b.Hosts); s++ {
		left, right := b.Hosts[s-1], b.Hosts[s]
		lname, rname := fmt.Sprintf("eth%d", links[s-1]), fmt.Sprintf("eth%d", links[s])
		links[s-1]++
		links[s]++
		b.ip(t, "link", "add", lname, "netns", left.NS.Name, "type", "veth", "peer", "name", rname, "netns", right.NS.Name)
		net := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(200 + s), 0}), 24)
		left.addUnderlay(t, lname, netip.AddrFrom4([4]byte{192, 168, byte(200 + s), byte(s)}), net)
		right.addUnderlay(t, rname, netip.AddrFrom4([4]byte{192, 168, byte(200 + s), byte(s + 1)}), net)
	}
}

func (h *Host) addUnderlay(t testing.TB, dev string, addr netip.Addr, net netip.Prefix) {
	t.Helper()
	h.Bed.ip(t, "-n", h.NS.Name, "addr", "add", netip.PrefixFrom(addr, net.Bits()).String(), "dev", dev)
	h.Bed.ip(t, "-n", h.NS.Name, "link", "set", dev, "up")
	if !h.Addr.IsValid() {
		h.Addr = addr
	}
	h.Addrs = append(h.Addrs, addr)
	h.Nets = append(h.Nets, net)
}

// AddrTowards returns h's underlay address on a segment it shares with other
// (the address other should dial). It fails the test if they share none.
func (h *Host) AddrTowards(t testing.TB, other *Host) netip.Addr {
	t.Helper()
	for i, n := range h.Nets {
		for _, on := range other.Nets {
			if n == on {
				return h.Addrs[i]
			}
		}
	}
	t.Fatalf("testbed: %s and %s share no underlay segment", h.Name, other.Name)
	return netip.Addr{}
}

// AddContainer creates a namespace named prefix+name with lo up. It is
// deleted with the bed. The host is only recorded; weave attach (see
// Host.Attach) plugs the container into the host's bridge.
func (h *Host) AddContainer(t testing.TB, name string) *Container {
	t.Helper()
	ns := h.Bed.addNS(t, name)
	return &Container{Name: name, NS: *ns, Host: h}
}

// Iface returns the name of the container's only non-loopback interface
// (the one weave attach created), failing the test if there is not exactly
// one.
func (c *Container) Iface(t testing.TB) string {
	t.Helper()
	out := c.MustExec(t, "ip", "-o", "link", "show")
	var names []string
	for _, line := range strings.Split(out, "\n") {
		// "2: ethwe@if7: <BROADCAST,...> ..."
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		if i := strings.IndexByte(name, '@'); i >= 0 {
			name = name[:i]
		}
		if name != "lo" {
			names = append(names, name)
		}
	}
	if len(names) != 1 {
		t.Fatalf("testbed: container %s has interfaces %v, want exactly one besides lo", c.Name, names)
	}
	return names[0]
}

// Container returns a handle on an existing container namespace of the bed by
// its short name; it does not create anything.
func (b *Bed) Container(h *Host, name string) *Container {
	return &Container{Name: name, NS: NS{Name: b.Prefix + name}, Host: h}
}

// Namespaces returns the names of every namespace the bed created.
func (b *Bed) Namespaces() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.namespaces...)
}

func (b *Bed) cleanup() {
	t := b.t
	b.mu.Lock()
	daemons := append([]*Daemon(nil), b.daemons...)
	weavers := append([]*Weaver(nil), b.weavers...)
	b.mu.Unlock()
	for _, d := range daemons {
		d.stopQuietly()
	}
	for _, w := range weavers {
		w.stopQuietly()
	}
	if t.Failed() {
		b.dumpLogs(t)
	}
	for _, err := range destroy(b.Prefix, b.Namespaces()) {
		t.Errorf("testbed cleanup: %v", err)
	}
	os.RemoveAll(b.Dir)
	removeMarker(b.Prefix)
}

// dumpLogs prints the tail of every *.log file under the hosts' data dirs.
func (b *Bed) dumpLogs(t testing.TB) {
	for _, h := range b.Hosts {
		logs, _ := filepath.Glob(filepath.Join(h.DataDir, "*.log"))
		for _, f := range logs {
			data, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			t.Logf("==== %s: %s (last %d lines) ====\n%s", h.Name, filepath.Base(f), dumpLines, tail(string(data), dumpLines))
		}
	}
}

const dumpLines = 200

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Run makes a container with weave run on h: namespace prefix+name, DNS name
// name.weave.local (the short name, so tests read naturally), running
// sleep, attached with addrs (none: net:default). It returns the container
// and the addresses weave run printed. The bed deletes the namespace and its
// /etc/netns directory at cleanup whatever happens to the daemon.
func (h *Host) Run(t testing.TB, name string, addrs ...string) (*Container, string, error) {
	t.Helper()
	full := h.Bed.Prefix + name
	h.Bed.mu.Lock()
	h.Bed.namespaces = append(h.Bed.namespaces, full)
	h.Bed.mu.Unlock()
	args := append([]string{"run"}, addrs...)
	args = append(args, "--name", full, "-h", name+".weave.local", "--", "sleep", "3600")
	out, err := h.Weave(t, args...)
	return &Container{Name: name, NS: NS{Name: full}, Host: h}, strings.TrimSpace(out), err
}

// MustRun is Run that fails the test on error.
func (h *Host) MustRun(t testing.TB, name string, addrs ...string) (*Container, string) {
	t.Helper()
	c, out, err := h.Run(t, name, addrs...)
	if err != nil {
		t.Fatalf("%s: weave run %s: %v", h.Name, name, err)
	}
	return c, out
}

// Impair makes the underlay of a two-host FullMesh bed lossy: the hosts'
// links no longer meet on the bridge but through wntool impair, which drops
// loss percent of the sleeve's datagrams (UDP 6783) and delays reorder
// percent behind the next three frames. The hosts stop offloading
// checksums and segmentation to their underlay links, as if a real NIC did
// that work before the wire: wntool then sees each datagram whole and
// complete, and loss strikes single datagrams. Signal the returned
// process with SIGTERM to end it; it then prints "FRAMES DROPPED REORDERED".
func (b *Bed) Impair(t testing.TB, loss, reorder float64) *Proc {
	t.Helper()
	if b.underlay == nil || len(b.Hosts) != 2 {
		t.Fatal("testbed: Impair needs a two-host FullMesh bed")
	}
	if _, err := exec.LookPath("ethtool"); err != nil {
		t.Fatal("testbed: Impair needs ethtool; run make deps")
	}
	for _, h := range b.Hosts {
		if out, err := h.Exec(t, "ethtool", "-K", "eth0", "tx", "off", "gso", "off"); err != nil {
			t.Fatalf("testbed: ethtool on %s: %v\n%s", h.Name, err, out)
		}
	}
	ul := b.underlay.Name
	for _, port := range []string{"p1", "p2"} {
		b.ip(t, "-n", ul, "link", "set", port, "nomaster")
	}
	p := b.underlay.StartTool(t, "impair", "p1", "p2", fmt.Sprint(loss), fmt.Sprint(reorder), "30m")
	p.WaitStderr(t, "impairing", 10*time.Second)
	return p
}

// SetUnderlayMTU sets the MTU of every underlay link of a FullMesh bed,
// both ends, and of its bridge.
func (b *Bed) SetUnderlayMTU(t testing.TB, mtu int) {
	t.Helper()
	if b.underlay == nil {
		t.Fatal("testbed: SetUnderlayMTU needs a FullMesh bed")
	}
	for i, h := range b.Hosts {
		b.ip(t, "-n", h.NS.Name, "link", "set", "eth0", "mtu", fmt.Sprint(mtu))
		b.ip(t, "-n", b.underlay.Name, "link", "set", fmt.Sprintf("p%d", i+1), "mtu", fmt.Sprint(mtu))
	}
	b.ip(t, "-n", b.underlay.Name, "link", "set", "br0", "mtu", fmt.Sprint(mtu))
}
