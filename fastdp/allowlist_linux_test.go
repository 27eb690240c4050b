//go:build linux

package fastdp

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"weavenet/internal/nstest"
)

// The allow-list, in a namespace of the test's own, judged by datagrams on
// the loopback (which cross the input hook too): refused while the sender
// is not listed, counted; accepted once listed; refused again once
// unlisted; another port untouched; a second list for the same bridge
// replaces the first; Close and RemoveAllowList leave no table.
func TestAllowList(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN)")
	}
	ns := nstest.New(t)
	nstest.In(t, ns, func() {
		const port = 4789
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
		rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			t.Fatal(err)
		}
		defer rx.Close()
		other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1})
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		send := func(c *net.UDPConn, payload string) bool {
			t.Helper()
			s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.WriteToUDP([]byte(payload), c.LocalAddr().(*net.UDPAddr)); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 64)
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, _, err := c.ReadFromUDP(b)
			return err == nil && string(b[:n]) == payload
		}
		if !send(rx, "before") {
			t.Fatal("a datagram does not arrive even without a list")
		}

		// A stale list, as a daemon that died would leave it: listing
		// the sender, so that the replacement can be seen to be fresh.
		stale, err := OpenAllowList("br0", port)
		if err != nil {
			t.Fatal(err)
		}
		if err := stale.Set([]netip.Addr{netip.MustParseAddr("127.0.0.2")}); err != nil {
			t.Fatal(err)
		}
		_ = stale.conn.CloseLasting() // dies without removing it
		a, err := OpenAllowList("br0", port)
		if err != nil {
			t.Fatalf("replacing a stale list: %v", err)
		}
		if a.Table() != "weavenet-fastdp-br0" {
			t.Errorf("table %q", a.Table())
		}
		if send(rx, "unlisted") {
			t.Error("a datagram from an unlisted source arrived")
		}
		if !send(other, "other port") {
			t.Error("a datagram to another port was refused")
		}
		if p, _, err := a.Dropped(); err != nil || p != 1 {
			t.Errorf("dropped %d, %v; want 1", p, err)
		}
		if err := a.Set([]netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:127.0.0.2"), netip.MustParseAddr("2001:db8::1")}); err != nil {
			t.Fatal(err)
		}
		if got := a.Peers(); len(got) != 2 {
			t.Errorf("peers %v; want the two IPv4 addresses", got)
		}
		if !send(rx, "listed") {
			t.Error("a datagram from a listed source was refused")
		}
		if err := a.Set([]netip.Addr{netip.MustParseAddr("192.0.2.1")}); err != nil {
			t.Fatal(err)
		}
		if send(rx, "unlisted again") {
			t.Error("a datagram from a source no longer listed arrived")
		}
		if p, _, _ := a.Dropped(); p != 2 {
			t.Errorf("dropped %d; want 2", p)
		}

		// A second daemon's bridge: a table of its own.
		b, err := OpenAllowList("br1", port)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if !send(rx, "after close") {
			t.Error("a datagram is still refused after Close")
		}
		if err := RemoveAllowList("br0"); err != nil {
			t.Errorf("RemoveAllowList with no table: %v", err)
		}
		c, _ := nftables.New()
		tables, err := c.ListTables()
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range tables {
			t.Errorf("table %s left behind", tb.Name)
		}
	})
}
