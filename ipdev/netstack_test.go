package ipdev

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/netstack"
)

// wire joins two Devices as if both were plugged into one Ethernet: every
// frame one reads is written into the other. It ends when either closes.
func wire(a, b *Device) {
	pipe := func(from, to *Device) {
		buf := make([]byte, frameHead+from.MTU())
		for {
			n, err := from.Read(buf)
			if err != nil {
				return
			}
			if _, err := to.Write(buf[:n]); err != nil {
				return
			}
		}
	}
	go pipe(a, b)
	go pipe(b, a)
}

// TestNetstackTCP runs TCP between two userspace network stacks over two
// Devices: ARP resolution, framing and delivery with a real IP stack on
// each side, no root needed.
func TestNetstackTCP(t *testing.T) {
	addrA, addrB := netip.MustParsePrefix("10.32.0.1/12"), netip.MustParsePrefix("10.32.0.2/12")
	mk := func(p netip.Prefix, m mac) (*Device, *netstack.Net) {
		tdev, tnet, err := netstack.CreateNetTUN([]netip.Addr{p.Addr()}, nil, 1376)
		if err != nil {
			t.Fatal(err)
		}
		d, err := New(tdev, Config{MAC: net.HardwareAddr(m[:]), Addrs: []netip.Prefix{p}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d, tnet
	}
	devA, netA := mk(addrA, ourMAC)
	devB, netB := mk(addrB, peerMAC)
	wire(devA, devB)

	ln, err := netB.ListenTCPAddrPort(netip.AddrPortFrom(addrB.Addr(), 8080))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	data := make([]byte, 8<<20)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(data)
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- [32]byte{}
			return
		}
		defer c.Close()
		h := sha256.New()
		_, _ = io.Copy(h, c)
		got <- [32]byte(h.Sum(nil))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := netA.DialContextTCPAddrPort(ctx, netip.AddrPortFrom(addrB.Addr(), 8080))
	if err != nil {
		t.Fatalf("dial over the devices: %v", err)
	}
	if _, err := io.Copy(c, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case h := <-got:
		if h != sha256.Sum256(data) {
			t.Fatal("the stream arrived damaged")
		}
	case <-ctx.Done():
		t.Fatal("the stream did not arrive")
	}
	if sa, sb := devA.Stats(), devB.Stats(); sa.ARPRequests == 0 || sb.ARPReplies == 0 || sb.PacketsIn == 0 {
		t.Fatalf("stats A %+v B %+v", sa, sb)
	}
}
