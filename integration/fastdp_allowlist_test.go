package integration

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// TestFastdpAllowList: the VXLAN port takes datagrams only from peers. h3,
// on the same underlay but no peer, sends h1's VXLAN port well-formed VXLAN
// datagrams holding a frame for c1's MAC: none reaches c1, and h1 counts
// them (report and vxlan_not_peer). The same datagrams with h2's address
// forged as their source do reach c1: the list checks addresses, nothing
// more (what the README says it cannot stop). Meanwhile h2's own traffic
// still crosses by VXLAN. On a clean stop the table is gone.
func TestFastdpAllowList(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.FullMesh})
	h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
	d1 := launch(t, h1)
	launch(t, h2, peerArg(t, h2, h1)...)
	waitMesh(t, h1, 1, 2)
	c1 := attach(t, h1, "c1", "10.32.0.1/12")
	c2 := attach(t, h2, "c2", "10.32.0.2/12")
	c1.WaitPing(t, "10.32.0.2", pingTimeout)
	waitDatapath(t, h1, "fastdp", 15*time.Second)
	waitDatapath(t, h2, "fastdp", 5*time.Second)

	table, before, _ := allowList(t, h1)
	if table == "" {
		t.Fatalf("h1 has no allow-list: %s", h1.MustWeave(t, "report", "-f", "{{json .Router.FastDatapath}}"))
	}
	peer2 := h2.AddrTowards(t, h1).String()
	if set := h1.MustExec(t, "nft", "list", "set", "inet", table, "peers"); !strings.Contains(set, peer2) || strings.Contains(set, h3.AddrTowards(t, h1).String()) {
		t.Errorf("h1's allow-list does not hold exactly h2 (%s):\n%s", peer2, set)
	}
	if st := h1.MustWeave(t, "status"); !strings.Contains(st, "from 1 peer(s) only") {
		t.Errorf("weave status does not show the allow-list:\n%s", st)
	}

	// inject sends count VXLAN datagrams from h3 to h1's VXLAN port, with
	// src as their source address, holding a frame for c1 marked with
	// marker, and returns how many frames with the marker c1 saw.
	c1MAC := containerMAC(t, c1)
	to := netip.AddrPortFrom(h1.AddrTowards(t, h3), 4789).String()
	inject := func(src netip.Addr, marker string, count int) int {
		t.Helper()
		frame := ethFrame(c1MAC, net.HardwareAddr{0x02, 0xba, 0xd0, 0, 0, 1}, 0x88b5, []byte(marker))
		vx := binary.BigEndian.AppendUint32(nil, 0x08000000)
		vx = binary.BigEndian.AppendUint32(vx, 0x576e<<8) // weaved's VNI
		datagram := hex.EncodeToString(append(vx, frame...))
		capture := c1.StartTool(t, "capture", c1.Iface(t), marker, "6s")
		capture.WaitStderr(t, "capturing", 10*time.Second)
		from := netip.AddrPortFrom(src, 40000).String()
		if out, err := h3.Tool(t, 30*time.Second, "udp-send-raw", "-count", fmt.Sprint(count), "-interval", "50ms", from, to, datagram); err != nil {
			t.Fatalf("sender on h3: %v %s", err, out)
		}
		out, err := capture.Wait(20 * time.Second)
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		f := strings.Fields(out)
		if len(f) != 2 {
			t.Fatalf("capture printed %q", out)
		}
		var n int
		fmt.Sscan(f[1], &n)
		return n
	}

	const count = 40
	if n := inject(h3.AddrTowards(t, h1), "notapeer-"+b.Prefix, count); n != 0 {
		t.Errorf("c1 got %d frames sent by h3, no peer, to the VXLAN port", n)
	}
	var dropped, drops uint64
	testbed.WaitFor(t, 10*time.Second, func() bool {
		_, dropped, drops = allowList(t, h1)
		return dropped-before >= count
	}, "h1 counts the datagrams from h3")
	if drops != dropped {
		t.Errorf("drops vxlan_not_peer %d, FastDatapath.Dropped %d", drops, dropped)
	}
	t.Logf("h1 dropped %d datagrams from h3", dropped-before)

	// A forged peer address gets through: the frames reach c1. This is
	// the limit of an address list, and shows the frames above were
	// stopped by the list, not by their form.
	if n := inject(h2.AddrTowards(t, h1), "forged-"+b.Prefix, 5); n == 0 {
		t.Errorf("frames forged with h2's address did not reach c1: the negative check above proves nothing")
	} else {
		t.Logf("c1 got %d of 5 frames forged with h2's address (as the README says)", n)
	}

	// h2's own traffic still goes by VXLAN.
	waitDatapath(t, h1, "fastdp", 5*time.Second)
	_, _, rx1, _ := fastCounters(t, h1)
	transfer(t, c2, c1, "10.32.0.1", "20M", 5121)
	_, _, rx1b, _ := fastCounters(t, h1)
	if rx1b-rx1 < 20<<20 {
		t.Errorf("h1's VXLAN device received %d bytes of the 20 MB from c2", rx1b-rx1)
	}

	d1.Stop()
	if out := h1.MustExec(t, "nft", "list", "tables"); strings.Contains(out, table) {
		t.Errorf("the allow-list outlives the daemon:\n%s", out)
	}
}

// allowList is h's allow-list table, its dropped count, and the same count
// in the report's drops.
func allowList(t *testing.T, h *testbed.Host) (table string, dropped, drops uint64) {
	t.Helper()
	out := h.MustWeave(t, "report", "-f", `{{with .Router.FastDatapath}}{{.AllowList}} {{.Dropped}}{{end}} {{index .Router.Stats.Drops "vxlan_not_peer"}}`)
	f := strings.Fields(out)
	if len(f) != 3 {
		return "", 0, 0
	}
	fmt.Sscan(f[1], &dropped)
	fmt.Sscan(f[2], &drops)
	return f[0], dropped, drops
}
