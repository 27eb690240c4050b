package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

const maxDatagram = 65535

func runUDPRecv(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("udp-recv", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the datagram")
	pos, err := parseFlags(fs, args, 1, usageUDPRecv)
	if err != nil {
		return err
	}
	port, err := parsePort(pos[0])
	if err != nil {
		return err
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{Port: port})
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(stderr, "listening on %s\n", c.LocalAddr())
	if err := c.SetReadDeadline(time.Now().Add(*timeout)); err != nil {
		return err
	}
	buf := make([]byte, maxDatagram)
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		return fmt.Errorf("no datagram within %v: %w", *timeout, err)
	}
	fmt.Fprintf(stderr, "got %d bytes from %s\n", n, from)
	fmt.Fprintf(stdout, "%d\n", n)
	return nil
}

func runUDPSend(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("udp-send", flag.ContinueOnError)
	count := fs.Int("count", 1, "number of datagrams")
	interval := fs.Duration("interval", 100*time.Millisecond, "pause between datagrams")
	pos, err := parseFlags(fs, args, 2, usageUDPSend)
	if err != nil {
		return err
	}
	ap, err := parseAddrPort(pos[0])
	if err != nil {
		return err
	}
	size, err := parseSize("SIZE", pos[1])
	if err != nil {
		return err
	}
	if size > maxDatagram-28 {
		return fmt.Errorf("SIZE %d too large for one UDP datagram (max %d)", size, maxDatagram-28)
	}
	// An unconnected socket: an ICMP port unreachable caused by one
	// datagram (the receiver exits after the first) must not fail the next.
	c, err := net.ListenUDP("udp", nil)
	if err != nil {
		return err
	}
	defer c.Close()
	payload := make([]byte, size)
	if _, err := io.ReadFull(Stream(size), payload); err != nil {
		return err
	}
	if err := c.SetWriteDeadline(time.Now().Add(10*time.Second + time.Duration(*count)*(*interval))); err != nil {
		return err
	}
	dst := net.UDPAddrFromAddrPort(ap)
	for i := 0; i < *count; i++ {
		if i > 0 {
			time.Sleep(*interval)
		}
		if _, err := c.WriteToUDP(payload, dst); err != nil {
			return fmt.Errorf("datagram %d: %w", i+1, err)
		}
	}
	fmt.Fprintf(stdout, "sent %d x %d\n", *count, len(payload))
	return nil
}

func runMcastRecv(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mcast-recv", flag.ContinueOnError)
	pos, err := parseFlags(fs, args, 3, usageMcastRecv)
	if err != nil {
		return err
	}
	group, ifi, err := parseGroup(pos[0], pos[1])
	if err != nil {
		return err
	}
	timeout, err := parseDuration(pos[2])
	if err != nil {
		return err
	}
	c, err := net.ListenMulticastUDP("udp4", ifi, net.UDPAddrFromAddrPort(group))
	if err != nil {
		return fmt.Errorf("join %s on %s: %w", group.Addr(), ifi.Name, err)
	}
	defer c.Close()
	fmt.Fprintf(stderr, "listening on %s via %s\n", group, ifi.Name)
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	buf := make([]byte, maxDatagram)
	count := 0
	for {
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			return err
		}
		count++
		fmt.Fprintf(stderr, "got %d bytes from %s\n", n, from)
	}
	fmt.Fprintf(stdout, "%d\n", count)
	return nil
}

func runMcastSend(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mcast-send", flag.ContinueOnError)
	count := fs.Int("count", 1, "number of datagrams")
	interval := fs.Duration("interval", 100*time.Millisecond, "pause between datagrams")
	size := fs.Int("size", 64, "datagram size")
	pos, err := parseFlags(fs, args, 2, usageMcastSend)
	if err != nil {
		return err
	}
	group, ifi, err := parseGroup(pos[0], pos[1])
	if err != nil {
		return err
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := setMulticastIf(c, ifi); err != nil {
		return fmt.Errorf("send via %s: %w", ifi.Name, err)
	}
	payload := make([]byte, *size)
	copy(payload, "wntool mcast")
	if err := c.SetWriteDeadline(time.Now().Add(10*time.Second + time.Duration(*count)*(*interval))); err != nil {
		return err
	}
	dst := net.UDPAddrFromAddrPort(group)
	for i := 0; i < *count; i++ {
		if i > 0 {
			time.Sleep(*interval)
		}
		if _, err := c.WriteToUDP(payload, dst); err != nil {
			return fmt.Errorf("datagram %d: %w", i+1, err)
		}
	}
	fmt.Fprintf(stdout, "sent %d x %d to %s via %s\n", *count, *size, group, ifi.Name)
	return nil
}

// setMulticastIf makes c send multicast out of ifi, with TTL 1.
func setMulticastIf(c *net.UDPConn, ifi *net.Interface) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptIPMreqn(int(fd), syscall.IPPROTO_IP, syscall.IP_MULTICAST_IF, &syscall.IPMreqn{Ifindex: int32(ifi.Index)})
		if serr == nil {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_MULTICAST_TTL, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// parseGroup parses the GROUP:PORT and IFACE arguments of the multicast
// subcommands.
func parseGroup(groupArg, ifaceArg string) (netip.AddrPort, *net.Interface, error) {
	group, err := parseAddrPort(groupArg)
	if err != nil {
		return group, nil, err
	}
	if !group.Addr().Is4() || !group.Addr().IsMulticast() {
		return group, nil, fmt.Errorf("%s is not an IPv4 multicast group", group.Addr())
	}
	ifi, err := findIface(ifaceArg)
	return group, ifi, err
}

// runUDPEcho sends every datagram back to its sender until the time is up:
// the smallest userspace hop, to measure what one costs next to the
// kernel's own ping.
func runUDPEcho(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("udp-echo", flag.ContinueOnError)
	pos, err := parseFlags(fs, args, 2, usageUDPEcho)
	if err != nil {
		return err
	}
	port, err := parsePort(pos[0])
	if err != nil {
		return err
	}
	d, err := time.ParseDuration(pos[1])
	if err != nil {
		return fmt.Errorf("bad DURATION %q: %w", pos[1], err)
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{Port: port})
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(stderr, "listening on %s\n", c.LocalAddr())
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		return err
	}
	buf := make([]byte, maxDatagram)
	echoed := 0
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			fmt.Fprintf(stdout, "%d\n", echoed)
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := c.WriteToUDPAddrPort(buf[:n], from); err == nil {
			echoed++
		}
	}
}

// runUDPPing sends COUNT small datagrams to an echo, one at a time, and
// prints the average round trip in milliseconds, as ping does.
func runUDPPing(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("udp-ping", flag.ContinueOnError)
	count := fs.Int("count", 20, "number of round trips")
	interval := fs.Duration("interval", 50*time.Millisecond, "pause between round trips")
	pos, err := parseFlags(fs, args, 1, usageUDPPing)
	if err != nil {
		return err
	}
	ap, err := parseAddrPort(pos[0])
	if err != nil {
		return err
	}
	if *count < 1 {
		return fmt.Errorf("bad -count %d: want at least 1", *count)
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return err
	}
	defer c.Close()
	msg, buf := make([]byte, 56), make([]byte, 64)
	var total time.Duration
	for i := 0; i < *count; i++ {
		if i > 0 {
			time.Sleep(*interval)
		}
		start := time.Now()
		if err := c.SetReadDeadline(start.Add(time.Second)); err != nil {
			return err
		}
		if _, err := c.Write(msg); err != nil {
			return fmt.Errorf("round trip %d: %w", i+1, err)
		}
		if _, err := c.Read(buf); err != nil {
			return fmt.Errorf("round trip %d: no answer within 1s: %w", i+1, err)
		}
		total += time.Since(start)
	}
	fmt.Fprintf(stdout, "%.3f\n", float64(total.Microseconds())/1000/float64(*count))
	return nil
}
