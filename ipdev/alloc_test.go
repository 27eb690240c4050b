package ipdev

import (
	"net"
	"net/netip"
	"os"
	"testing"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// loopTUN hands out the same packet forever and swallows writes, so the
// data path can be measured alone.
type loopTUN struct {
	fakeTUN
	pkt []byte
}

func (l *loopTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-l.done:
		return 0, os.ErrClosed
	default:
	}
	for i := range bufs {
		sizes[i] = copy(bufs[i][offset:], l.pkt)
	}
	return len(bufs), nil
}

func (l *loopTUN) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }

var _ wgtun.Device = (*loopTUN)(nil)

func TestDataPathAllocatesNothing(t *testing.T) {
	lt := &loopTUN{fakeTUN: *newFakeTUN(16), pkt: ipPacket(ourAddr.Addr(), peerAddr, 1300)}
	d, err := New(lt, Config{MAC: net.HardwareAddr(ourMAC[:]), Addrs: []netip.Prefix{ourAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	write(t, d, arpFrame(ourMAC, arpPacket{op: arpReply, senderMAC: peerMAC, senderIP: peerAddr, targetMAC: ourMAC, targetIP: ourAddr.Addr()}))
	b := make([]byte, frameHead+d.mtu)
	for range 4 { // the gratuitous ARP, then packets
		if _, err := d.Read(b); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := d.Read(b); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Read: %v allocations per frame", n)
	}
	in := ethFrame(ourMAC, peerMAC, etherTypeIP4, ipPacket(peerAddr, ourAddr.Addr(), 1300))
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := d.Write(in); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Write: %v allocations per frame", n)
	}
}
