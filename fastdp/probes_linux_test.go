//go:build linux

package fastdp

import (
	"encoding/binary"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"weavenet/internal/nstest"
)

// Probes sent in one call, more than a batch, come back through the VXLAN
// device (to ourselves, over the namespace's loopback) and are all read in
// one call; a refused one in the middle (too big for any path) does not
// keep the rest, and its error is returned.
func TestProbesBatched(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN)")
	}
	ns := nstest.New(t)
	nstest.In(t, ns, func() {
		lo, _ := netlink.LinkByName("lo")
		br, _ := bridgeAndTAP(t)
		for _, err := range []error{netlink.LinkSetUp(lo), netlink.LinkSetUp(br)} {
			if err != nil {
				t.Fatal(err)
			}
		}
		d, err := Open(Config{Name: "vx0", Bridge: "br0", TAP: "tap0", MTU: 1376, NoAllowList: true})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()

		const n = 2*probeBatch + 7
		const tooBig = probeBatch + 3
		self := netip.MustParseAddr("127.0.0.1")
		to := make([]netip.Addr, n)
		eth := make([][]byte, n)
		for i := range n {
			size := 60 + i*10
			if i == tooBig {
				size = 70000 // over loopback's MTU, and over UDP's limit with its headers
			}
			f := make([]byte, size)
			copy(f, ProbeDst[:])
			copy(f[6:], []byte{0x02, 0, 0, 0, 0, 1})
			binary.BigEndian.PutUint16(f[12:], ProbeEtherType)
			binary.BigEndian.PutUint16(f[14:], uint16(i))
			to[i], eth[i] = self, f
		}
		if err := d.SendProbes(to, eth); err == nil {
			t.Error("no error for a probe too big to send")
		}
		got := map[int]int{}
		deadline := time.Now().Add(5 * time.Second)
		for len(got) < n-1 && time.Now().Before(deadline) {
			if _, err := d.ReadProbes(func(f []byte) {
				got[int(binary.BigEndian.Uint16(f[14:]))] = len(f)
			}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		for i := range n {
			if want := 60 + i*10; i != tooBig && got[i] != want {
				t.Errorf("probe %d: read %d bytes, want %d", i, got[i], want)
			}
		}
		if _, ok := got[tooBig]; ok {
			t.Error("the probe too big to send arrived")
		}
		if c, _ := d.ReadProbes(func([]byte) {}); c != 0 {
			t.Errorf("%d more probes read than were sent", c)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := d.ReadProbes(func([]byte) {}); err == nil {
			t.Error("ReadProbes after Close: no error")
		}
	})
}
