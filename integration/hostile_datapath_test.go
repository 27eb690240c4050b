package integration

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// Hostile datagrams on the sleeve port, from a host that is no peer.

// TestHostileSpoofedDatagrams: h4, no peer, sends h1 datagrams naming h3 as
// their sender, holding a broadcast frame from c2's MAC (c2 lives on h2),
// 20 a second; and datagrams naming a peer that does not exist. Nothing of
// them reaches c1, c1 pings c2 without loss during and after (c2's MAC is
// not moved to h3), and h1 counts them as spoofed and unknown_peer.
func TestHostileSpoofedDatagrams(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 4, Topology: testbed.FullMesh})
	h1, h2, h3, h4 := b.Hosts[0], b.Hosts[1], b.Hosts[2], b.Hosts[3]
	launch(t, h1)
	launch(t, h2, peerArg(t, h2, h1)...)
	launch(t, h3, peerArg(t, h3, h1)...)
	for _, h := range []*testbed.Host{h1, h2, h3} {
		waitMesh(t, h, 2, 3)
	}
	c1 := attach(t, h1, "c1", "10.32.0.1/12")
	c2 := attach(t, h2, "c2", "10.32.0.2/12")
	c1.WaitPing(t, "10.32.0.2", pingTimeout)

	r1, r3 := h1.Report(t), h3.Report(t)
	marker := "hostile-" + b.Prefix
	frame := sleeveFrame{
		src: peerNameBytes(t, r3.Router.Name), dst: peerNameBytes(t, r1.Router.Name),
		eth: ethFrame(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, containerMAC(t, c2), 0x88b5, []byte(marker)),
	}
	spoofed := hex.EncodeToString(sleeveDatagram(frame.src, frame))
	unknownPeer := []byte{0x7a, 0, 0, 0, 0, 0x17}
	unknown := hex.EncodeToString(sleeveDatagram(unknownPeer, sleeveFrame{unknownPeer, frame.dst, frame.eth}))
	before := h1.Report(t).Router.Stats.Drops

	capture := c1.StartTool(t, "capture", c1.Iface(t), marker, "9s")
	capture.WaitStderr(t, "capturing", 10*time.Second)
	from := netip.AddrPortFrom(h4.AddrTowards(t, h1), 6783).String()
	to := netip.AddrPortFrom(h1.AddrTowards(t, h4), 6783).String()
	const count = 120 // 6 s at 20 a second
	attack := h4.StartTool(t, "udp-send-raw", "-count", fmt.Sprint(count), "-interval", "50ms", from, to, spoofed)
	pingAll(t, c1, "10.32.0.2", 30) // 6 s, during the attack
	if out, err := attack.Wait(30 * time.Second); err != nil {
		t.Fatalf("spoofing sender: %v %s", err, out)
	}
	if out, err := h4.Tool(t, 30*time.Second, "udp-send-raw", "-count", "50", "-interval", "10ms", from, to, unknown); err != nil {
		t.Fatalf("unknown-peer sender: %v %s", err, out)
	}
	pingAll(t, c1, "10.32.0.2", 10) // and after

	out, err := capture.Wait(20 * time.Second)
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	if f := strings.Fields(out); len(f) != 2 || f[1] != "0" {
		t.Errorf("c1 saw the hostile frames: capture printed %q (frames, matches)", out)
	}
	var drops map[string]uint64
	testbed.WaitFor(t, 10*time.Second, func() bool {
		drops = h1.Report(t).Router.Stats.Drops
		return drops["spoofed"]-before["spoofed"] >= count && drops["unknown_peer"]-before["unknown_peer"] >= 50
	}, "h1 counts every spoofed and unknown-peer datagram")
	t.Logf("h1 drops: %v", drops)
	if r := h1.Report(t); !r.Router.EstablishedTo(h3.AddrTowards(t, h1).String()) {
		t.Errorf("h1 lost its connection to h3: %s", describe(&r.Router))
	}
}

// TestHostileCorruptSegment: on a classic-format link (Weave Net's, which
// carries complete TCP checksums), a datagram holding two consecutive
// segments of one flow, the second with a wrong checksum, reaches h1 from
// h2's address (forged by h3, a host on the same segment that is no
// peer: what the address check cannot stop). The coalescer must not merge
// the bad segment into a super-frame whose checksum the kernel would
// trust: c1's kernel gets it as it came and drops it as a checksum error,
// and h1 counts it.
func TestHostileCorruptSegment(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.FullMesh})
	h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
	launch(t, h1, "--weave-compat")
	launch(t, h2, peerArg(t, h2, h1)...)
	waitMesh(t, h1, 1, 2)
	c1 := attach(t, h1, "c1", "10.32.0.1/12")
	c2 := attach(t, h2, "c2", "10.32.0.2/12")
	c1.WaitPing(t, "10.32.0.2", pingTimeout)

	r1, r2 := h1.Report(t), h2.Report(t)
	src, dst := peerNameBytes(t, r2.Router.Name), peerNameBytes(t, r1.Router.Name)
	c1MAC, c2MAC := containerMAC(t, c1), containerMAC(t, c2)
	seg := func(seq uint32, payload string, corrupt bool) sleeveFrame {
		eth := tcpFrame(c1MAC, c2MAC, [4]byte{10, 32, 0, 2}, [4]byte{10, 32, 0, 1}, 40000, 5555, seq, []byte(payload))
		if corrupt {
			eth[len(eth)-1] ^= 0x20 // after the checksum was computed
		}
		return sleeveFrame{src, dst, eth}
	}
	good := strings.Repeat("GOOD", 100)
	datagram := hex.EncodeToString(sleeveDatagram(src, seg(1000, good, false), seg(1000+uint32(len(good)), strings.Repeat("EVIL", 100), true)))

	csumBefore := tcpCsumErrors(t, c1)
	before := h1.Report(t).Router.Stats.Drops["bad_checksum"]
	const count = 5
	from := netip.AddrPortFrom(h2.AddrTowards(t, h1), 6783).String()
	to := netip.AddrPortFrom(h1.AddrTowards(t, h2), 6783).String()
	if out, err := h3.Tool(t, 30*time.Second, "udp-send-raw", "-count", fmt.Sprint(count), "-interval", "100ms", from, to, datagram); err != nil {
		t.Fatalf("forging sender: %v %s", err, out)
	}
	testbed.WaitFor(t, 10*time.Second, func() bool {
		return h1.Report(t).Router.Stats.Drops["bad_checksum"]-before >= count
	}, "h1 counts the bad segments")
	if got := tcpCsumErrors(t, c1) - csumBefore; got < count {
		t.Errorf("c1's kernel saw %d TCP checksum errors, want %d: a bad segment was made good", got, count)
	}
	pingAll(t, c1, "10.32.0.2", 3)
}

// sleeveFrame is one frame of a sleeve datagram: source and destination
// peer names and an Ethernet frame.
type sleeveFrame struct{ src, dst, eth []byte }

// sleeveDatagram encodes Weave Net's unencrypted sleeve format: the
// sender's name, then each frame as src, dst, length and the frame.
func sleeveDatagram(sender []byte, frames ...sleeveFrame) []byte {
	d := append([]byte(nil), sender...)
	for _, f := range frames {
		d = append(append(append(d, f.src...), f.dst...), byte(len(f.eth)>>8), byte(len(f.eth)))
		d = append(d, f.eth...)
	}
	return d
}

func ethFrame(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	eth := append(append([]byte(nil), dst...), src...)
	return append(binary.BigEndian.AppendUint16(eth, typ), payload...)
}

// tcpFrame is an Ethernet frame holding an IPv4 TCP segment (ACK only) with
// complete checksums.
func tcpFrame(dmac, smac net.HardwareAddr, sip, dip [4]byte, sport, dport uint16, seq uint32, payload []byte) []byte {
	ip := make([]byte, 40+len(payload))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(len(ip)))
	ip[6] = 0x40 // don't fragment
	ip[8], ip[9] = 64, 6
	copy(ip[12:16], sip[:])
	copy(ip[16:20], dip[:])
	binary.BigEndian.PutUint16(ip[10:12], ^csum(0, ip[:20]))
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:2], sport)
	binary.BigEndian.PutUint16(tcp[2:4], dport)
	binary.BigEndian.PutUint32(tcp[4:8], seq)
	binary.BigEndian.PutUint32(tcp[8:12], 1)
	tcp[12], tcp[13] = 5<<4, 0x10
	binary.BigEndian.PutUint16(tcp[14:16], 512)
	copy(tcp[20:], payload)
	pseudo := uint32(csum(0, ip[12:20])) + 6 + uint32(len(tcp))
	binary.BigEndian.PutUint16(tcp[16:18], ^csum(pseudo, tcp))
	return ethFrame(dmac, smac, 0x0800, ip)
}

func csum(sum uint32, b []byte) uint16 {
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// peerNameBytes is a peer name as `weave report` prints it (MAC form), as
// the 6 bytes of the wire.
func peerNameBytes(t *testing.T, name string) []byte {
	t.Helper()
	hw, err := net.ParseMAC(name)
	if err != nil || len(hw) != 6 {
		t.Fatalf("peer name %q is not a MAC: %v", name, err)
	}
	return hw
}

// containerMAC is the MAC of c's weave interface.
func containerMAC(t *testing.T, c *testbed.Container) net.HardwareAddr {
	t.Helper()
	out := c.MustExec(t, "ip", "-o", "link", "show", c.Iface(t))
	_, rest, ok := strings.Cut(out, "link/ether ")
	if !ok {
		t.Fatalf("%s: no MAC in %q", c.Name, out)
	}
	hw, err := net.ParseMAC(strings.Fields(rest)[0])
	if err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	return hw
}

// tcpCsumErrors is the count of TCP segments c's kernel dropped for a bad
// checksum (Tcp InCsumErrors in /proc/net/snmp, per namespace).
func tcpCsumErrors(t *testing.T, c *testbed.Container) uint64 {
	t.Helper()
	out := c.MustExec(t, "cat", "/proc/net/snmp")
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "InCsumErrors" && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					t.Fatalf("%s: InCsumErrors %q", c.Name, f[i])
				}
				return v
			}
		}
	}
	t.Fatalf("%s: no Tcp InCsumErrors in /proc/net/snmp:\n%s", c.Name, out)
	return 0
}
