//go:build linux

package netdev

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"weavenet/internal/nstest"
)

// A bridge as Weave Net leaves it: its pcap pair on the bridge, a
// container plugged in under a name of Weave Net's choosing. Taking it over
// removes Weave Net's pair, finds the container by its veth, and keeps it
// plugged in.
func TestTakeOverForeignBridge(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	const bridge = "wnbrx"
	addr := netip.MustParsePrefix("10.98.0.5/24")
	host := nstest.New(t)
	hostH, err := netlink.NewHandleAt(host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hostH.Close)
	name, cns := newNamedNetNS(t, "wnt"+randSuffix(t)+"m")
	contH, err := netlink.NewHandleAt(cns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(contH.Close)

	nstest.In(t, host, func() {
		if _, err := EnsureBridge(bridge, 1376); err != nil {
			t.Fatal(err)
		}
		br, _ := netlink.LinkByName(bridge)
		pcap := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vethwe-bridge", MasterIndex: br.Attrs().Index}, PeerName: "vethwe-pcap"}
		if err := netlink.LinkAdd(pcap); err != nil {
			t.Fatal(err)
		}
		// Not on the bridge: must stay.
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vethwe-datapath"}, PeerName: "wnother"}); err != nil {
			t.Fatal(err)
		}
		cv := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vethwepl1234", MasterIndex: br.Attrs().Index}, PeerName: "ethwe", PeerNamespace: netlink.NsFd(cns)}
		if err := netlink.LinkAdd(cv); err != nil {
			t.Fatal(err)
		}
	})
	eth, err := contH.LinkByName("ethwe")
	if err != nil {
		t.Fatal(err)
	}
	if err := contH.AddrAdd(eth, toNetlinkAddr(addr)); err != nil {
		t.Fatal(err)
	}

	var gone []string
	nstest.In(t, host, func() { gone, err = RemoveBridgePorts(bridge, "vethwe-bridge", "vethwe-pcap", "vethwe-datapath") })
	if err != nil || !slices.Equal(gone, []string{"vethwe-bridge"}) {
		t.Fatalf("RemoveBridgePorts = %v, %v; want [vethwe-bridge]", gone, err)
	}
	for n, want := range map[string]bool{"vethwe-bridge": false, "vethwe-pcap": false, "vethwe-datapath": true, "vethwepl1234": true} {
		if _, err := hostH.LinkByName(n); (err == nil) != want {
			t.Errorf("%s present = %v after taking over, want %v", n, err == nil, want)
		}
	}

	var found []Plugged
	paths := []string{filepath.Join(netnsRunDir, name), "/nonexistent/ns", filepath.Join(netnsRunDir, name)}
	nstest.In(t, host, func() { found, err = FindPlugged(bridge, paths) })
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].HostIf != "vethwepl1234" || found[0].IfName != "ethwe" ||
		found[0].MAC != eth.Attrs().HardwareAddr.String() || !slices.Equal(found[0].Addrs, []netip.Prefix{addr}) {
		t.Fatalf("FindPlugged = %+v; want the container once, with ethwe, vethwepl1234 and %v", found, addr)
	}
	// A second Attach with the foreign host end named keeps the pair.
	nstest.In(t, host, func() {
		_, _, err = Attach(AttachConfig{Bridge: bridge, NetNS: found[0].NetNS, HostIfName: found[0].HostIf, MTU: 1376, Addrs: []netip.Prefix{addr}, Existing: true})
	})
	if err != nil {
		t.Fatalf("plugging the found container in again: %v", err)
	}
}
