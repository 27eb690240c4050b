// Package netstack puts a Go program on a weavenet overlay with no kernel
// device and no root: a userspace TCP/IP stack (gVisor's, through
// golang.zx2c4.com/wireguard/tun/netstack) with an overlay address, whose
// connections are ordinary net.Conn and net.Listener values.
//
// A Stack is two things at once: the router.Device of a router.Node (give it
// as NodeConfig.Device), and the program's network on the overlay (Dial,
// Listen, ListenPacket). Underneath, package ipdev makes the stack a station
// on the overlay's Ethernet: it has a MAC, answers ARP for its address and
// finds its peers' MACs by ARP, so a Stack reaches other Stacks and bridged
// containers in the same subnet alike.
//
//	st, err := netstack.New(netstack.Config{Addr: netip.MustParsePrefix("10.40.0.1/16")})
//	node, err := router.NewNode(router.NodeConfig{Device: st, Password: pw, Peers: peers})
//	err = node.Start(ctx)
//	ln, err := st.Listen("tcp", ":80")             // peers reach us at 10.40.0.1:80
//	c, err := st.DialContext(ctx, "tcp", "10.40.0.2:80")
//
// The stack's traffic never touches the host's network: the host's own
// programs cannot reach the overlay address, and the stack reaches nothing
// but the overlay. IPv4 only.
package netstack

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"

	wgtun "golang.zx2c4.com/wireguard/tun"
	wgnetstack "golang.zx2c4.com/wireguard/tun/netstack"

	"weavenet/ipdev"
	"weavenet/router"
)

// Config describes a Stack.
type Config struct {
	// Addr is the stack's overlay address with its subnet, e.g.
	// 10.40.0.1/16; peers' addresses in the subnet are found by ARP on the
	// overlay. Required, IPv4, unique in the overlay.
	Addr netip.Prefix
	// MTU is the largest IP packet; 0 means router.DefaultMTU. The Node
	// takes it from the Stack when NodeConfig.MTU is 0.
	MTU int
	// MAC is the stack's Ethernet address on the overlay; empty means a
	// random locally administered one.
	MAC net.HardwareAddr
	// Logger gets the rare events worth a line (an address conflict); nil
	// discards them.
	Logger *slog.Logger
}

// Stack is a userspace network stack on the overlay. It is a
// router.PlainDevice; the Node it is given to owns it and closes it.
type Stack struct {
	dev  *ipdev.Device
	net  *wgnetstack.Net
	addr netip.Prefix
}

var _ router.PlainDevice = (*Stack)(nil)

// New builds the stack. Errors name the Config field at fault.
func New(cfg Config) (*Stack, error) {
	p := cfg.Addr
	switch {
	case !p.IsValid():
		return nil, fmt.Errorf("netstack: Config.Addr %v: want an IPv4 address with its subnet, such as 10.40.0.1/16", p)
	case !p.Addr().Is4():
		return nil, fmt.Errorf("netstack: Config.Addr %v: only IPv4 is supported", p)
	case p.Bits() == 0:
		return nil, fmt.Errorf("netstack: Config.Addr %v: a /0 subnet is the whole Internet; give the overlay's subnet, such as /16", p)
	case p.Bits() < 31 && p.Addr() == p.Masked().Addr():
		return nil, fmt.Errorf("netstack: Config.Addr %v is the subnet's network address; give a host address, such as %v", p, netip.PrefixFrom(p.Addr().Next(), p.Bits()))
	}
	if cfg.MTU == 0 {
		cfg.MTU = router.DefaultMTU
	}
	if cfg.MTU < 576 || cfg.MTU > 65000 {
		return nil, fmt.Errorf("netstack: Config.MTU %d: want 576-65000, or 0 for %d", cfg.MTU, router.DefaultMTU)
	}
	if cfg.MAC == nil {
		var m [6]byte
		_, _ = rand.Read(m[:]) // never fails
		m[0] = (m[0] | 0x02) &^ 0x01
		cfg.MAC = m[:]
	}
	if len(cfg.MAC) != 6 || cfg.MAC[0]&1 != 0 {
		return nil, fmt.Errorf("netstack: Config.MAC %v: want a 6-byte unicast MAC", cfg.MAC)
	}
	tdev, tnet, err := wgnetstack.CreateNetTUN([]netip.Addr{p.Addr()}, nil, cfg.MTU)
	if err != nil {
		return nil, fmt.Errorf("netstack: %w", err)
	}
	dev, err := ipdev.New(drainOnClose{tdev}, ipdev.Config{MAC: cfg.MAC, Addrs: []netip.Prefix{p}, MTU: cfg.MTU, Logger: cfg.Logger})
	if err != nil {
		tdev.Close()
		return nil, fmt.Errorf("netstack: %w", err)
	}
	return &Stack{dev: dev, net: tnet, addr: p}, nil
}

// Addr is the stack's overlay address and subnet.
func (s *Stack) Addr() netip.Prefix { return s.addr }

// MAC is the stack's Ethernet address on the overlay.
func (s *Stack) MAC() net.HardwareAddr { return s.dev.MAC() }

// Stats are the counters of the stack's side of the overlay: packets, ARP.
func (s *Stack) Stats() ipdev.Stats { return s.dev.Stats() }

// DialContext connects to address on the overlay: network is "tcp",
// "tcp4", "udp" or "udp4", address an IPv4 HOST:PORT (there is no DNS on
// the overlay).
func (s *Stack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return s.net.DialContext(ctx, network, address)
}

// Dial is DialContext without a context.
func (s *Stack) Dial(network, address string) (net.Conn, error) {
	return s.DialContext(context.Background(), network, address)
}

// Listen listens for TCP connections from the overlay: network "tcp" or
// "tcp4", address ":PORT" or the stack's own address with a port.
func (s *Stack) Listen(network, address string) (net.Listener, error) {
	if network != "tcp" && network != "tcp4" {
		return nil, fmt.Errorf("netstack: listen %s: only tcp and tcp4", network)
	}
	ap, err := s.localAddr(address)
	if err != nil {
		return nil, err
	}
	return s.net.ListenTCPAddrPort(ap)
}

// ListenPacket opens a UDP socket on the overlay: network "udp" or "udp4",
// address as for Listen.
func (s *Stack) ListenPacket(network, address string) (net.PacketConn, error) {
	if network != "udp" && network != "udp4" {
		return nil, fmt.Errorf("netstack: listen %s: only udp and udp4", network)
	}
	ap, err := s.localAddr(address)
	if err != nil {
		return nil, err
	}
	return s.net.ListenUDPAddrPort(ap)
}

// localAddr parses ":PORT" or "ADDR:PORT", ADDR being ours.
func (s *Stack) localAddr(address string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("netstack: listen on %q: %w", address, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("netstack: listen on %q: port %q is not a number from 0 to 65535", address, port)
	}
	a := s.addr.Addr()
	if host != "" {
		if a, err = netip.ParseAddr(host); err != nil || a != s.addr.Addr() {
			return netip.AddrPort{}, fmt.Errorf("netstack: listen on %q: the stack's only address is %v", address, s.addr.Addr())
		}
	}
	return netip.AddrPortFrom(a, uint16(n)), nil
}

// Read, Write, PlainFrames and MTU make the Stack a router.PlainDevice; the
// router calls them.

// Read implements router.Device: the next frame for the overlay.
func (s *Stack) Read(b []byte) (int, error) { return s.dev.Read(b) }

// Write implements router.Device: a frame from the overlay.
func (s *Stack) Write(b []byte) (int, error) { return s.dev.Write(b) }

// PlainFrames implements router.PlainDevice.
func (s *Stack) PlainFrames() bool { return true }

// MTU is the largest IP packet the stack sends or takes.
func (s *Stack) MTU() int { return s.dev.MTU() }

// Close closes the stack and every connection and listener on it. The Node
// the stack was given to closes it; call it only for a Stack never given to
// a Node.
func (s *Stack) Close() error {
	if err := s.dev.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("netstack: close: %w", err)
	}
	return nil
}

// drainOnClose reads the stack's packets while it closes. Closing gVisor's
// stack resets the connections still open, and the TUN hands each reset
// over through an unbuffered channel: with no reader (ipdev stops reading
// when it closes) the close would wait forever.
type drainOnClose struct{ wgtun.Device }

func (d drainOnClose) Close() error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		bufs, sizes := [][]byte{make([]byte, 65535)}, []int{0}
		for {
			if _, err := d.Device.Read(bufs, sizes, 0); err != nil {
				return // closed
			}
		}
	}()
	err := d.Device.Close()
	<-done
	return err
}
