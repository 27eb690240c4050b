//go:build linux

package fastdp

import (
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"weavenet/internal/nstest"
)

// The kernel objects as the package doc describes them, in a namespace of
// the test's own: the port flags, the two entries per MAC (the bridge's
// sticky and static), their removal, and the device gone on Close.
func TestDeviceEntries(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN)")
	}
	ns := nstest.New(t)
	nstest.In(t, ns, func() {
		brl, tapl := bridgeAndTAP(t)
		d, err := Open(Config{Name: "vx0", Bridge: "br0", TAP: "tap0", MTU: 1376})
		if err != nil {
			t.Fatal(err)
		}
		if table, n, _, off := d.AllowList(); table != "weavenet-fastdp-br0" || n != 0 {
			t.Errorf("allow-list %q with %d peers (%s); want weavenet-fastdp-br0, empty", table, n, off)
		}
		vx, _ := netlink.LinkByName("vx0")
		p := vx.(*netlink.Vxlan)
		if p.Learning || p.Port != DefaultPort || p.VxlanId != DefaultVNI || p.MasterIndex != brl.Attrs().Index {
			t.Errorf("device: learning %v port %d VNI %d master %d", p.Learning, p.Port, p.VxlanId, p.MasterIndex)
		}
		if pi, err := netlink.LinkGetProtinfo(vx); err != nil || pi.Learning || pi.Flood || !pi.Isolated {
			t.Errorf("VXLAN port flags: %+v, %v", pi, err)
		}
		if pi, err := netlink.LinkGetProtinfo(tapl); err != nil || !pi.Isolated {
			t.Errorf("TAP not isolated: %+v, %v", pi, err)
		}
		m := [6]byte{0x02, 1, 2, 3, 4, 5}
		if err := d.Install(m, netip.MustParseAddr("192.0.2.7")); err != nil {
			t.Fatal(err)
		}
		var self, master *netlink.Neigh
		entries, err := netlink.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range entries {
			if [6]byte(n.HardwareAddr) != m {
				continue
			}
			if n.Flags&netlink.NTF_SELF != 0 {
				self = &entries[i]
			}
			if n.MasterIndex != 0 { // the dump flags it by its master, not NTF_MASTER
				master = &entries[i]
			}
		}
		if self == nil || !self.IP.Equal(net.IPv4(192, 0, 2, 7)) {
			t.Errorf("VXLAN entry: %+v", self)
		}
		if master == nil || master.Flags&netlink.NTF_STICKY == 0 || master.State&netlink.NUD_PERMANENT != 0 {
			t.Errorf("bridge entry (want sticky, not local): %+v", master)
		}
		if idle, err := d.Idle(); err != nil || len(idle) != 1 {
			t.Errorf("Idle: %v, %v; want the one entry", idle, err)
		}
		if err := d.Remove(m, netip.MustParseAddr("192.0.2.7")); err != nil {
			t.Fatal(err)
		}
		if err := d.Remove(m, netip.MustParseAddr("192.0.2.7")); err != nil {
			t.Errorf("removing a removed MAC: %v", err)
		}
		if idle, _ := d.Idle(); len(idle) != 0 {
			t.Errorf("after Remove: %v", idle)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := netlink.LinkByName("vx0"); err == nil {
			t.Error("the VXLAN device outlives Close")
		}
		if c, err := nftables.New(); err == nil {
			if tables, _ := c.ListTables(); len(tables) != 0 {
				t.Errorf("the allow-list outlives Close: %d tables", len(tables))
			}
		}
	})
}

// bridgeAndTAP makes, in the current namespace, the bridge br0 and the
// router's port on it, tap0 (a veth), as the daemon would.
func bridgeAndTAP(t *testing.T) (br, tap netlink.Link) {
	t.Helper()
	for _, l := range []netlink.Link{
		&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0", MTU: 1376}},
		&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tap0", MTU: 1376}, PeerName: "tap0p"},
	} {
		if err := netlink.LinkAdd(l); err != nil {
			t.Fatal(err)
		}
	}
	br, _ = netlink.LinkByName("br0")
	tap, _ = netlink.LinkByName("tap0")
	if err := netlink.LinkSetMaster(tap, br); err != nil {
		t.Fatal(err)
	}
	return br, tap
}
