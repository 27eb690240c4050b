package main

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// runCapture counts the frames seen on an interface, and those that contain
// a marker, for a while: a test's stand-in for tcpdump, to show that what
// crosses the underlay is (or is not) readable.
func runCapture(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("capture", flag.ContinueOnError)
	pos, err := parseFlags(fs, args, 3, usageCapture)
	if err != nil {
		return err
	}
	ifi, err := findIface(pos[0])
	if err != nil {
		return err
	}
	marker := []byte(pos[1])
	d, err := parseDuration(pos[2])
	if err != nil {
		return err
	}
	fd, err := packetSocket(ifi, unix.SOCK_RAW, 0x0003) // ETH_P_ALL
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	fmt.Fprintf(stderr, "capturing on %s\n", ifi.Name)
	buf := make([]byte, 1<<16)
	var packets, matches int
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // timeout tick
		}
		packets++
		if bytes.Contains(buf[:n], marker) {
			matches++
		}
	}
	fmt.Fprintf(stdout, "%d %d\n", packets, matches)
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// packetSocket opens an AF_PACKET socket of the given type for protocol on
// ifi, whose reads time out every 100 ms so that callers can watch a clock.
func packetSocket(ifi *net.Interface, typ int, protocol uint16) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, typ, int(htons(protocol)))
	if err != nil {
		return -1, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(protocol), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind to %s: %w", ifi.Name, err)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// runCaptureUDP waits for one UDP datagram to PORT of at least MINSIZE
// payload bytes on IFACE and prints the payload in hex: a test captures a
// sealed datagram this way to replay it.
func runCaptureUDP(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("capture-udp", flag.ContinueOnError)
	pos, err := parseFlags(fs, args, 4, usageCaptureUDP)
	if err != nil {
		return err
	}
	ifi, err := findIface(pos[0])
	if err != nil {
		return err
	}
	port, err := parsePort(pos[1])
	if err != nil {
		return err
	}
	minSize, err := parseSize("MINSIZE", pos[2])
	if err != nil {
		return err
	}
	d, err := parseDuration(pos[3])
	if err != nil {
		return err
	}
	fd, err := packetSocket(ifi, unix.SOCK_DGRAM, 0x0800) // IPv4 packets, link header stripped
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	fmt.Fprintf(stderr, "capturing on %s\n", ifi.Name)
	buf := make([]byte, 1<<16)
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil || n < 28 || buf[9] != 17 { // UDP
			continue
		}
		ihl := int(buf[0]&0xf) * 4
		if flags := buf[6] & 0x3f; flags != 0 || buf[7] != 0 {
			continue // a fragment: we want whole datagrams
		}
		udp := buf[ihl:n]
		if len(udp) < 8 || int(udp[2])<<8|int(udp[3]) != port || int64(len(udp)-8) < minSize {
			continue
		}
		fmt.Fprintln(stdout, hex.EncodeToString(udp[8:]))
		return nil
	}
	return fmt.Errorf("no datagram to port %d of %d+ bytes within %v", port, minSize, d)
}

// runUDPSendHex sends one datagram whose payload is HEX.
func runUDPSendHex(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("udp-send-hex", flag.ContinueOnError)
	pos, err := parseFlags(fs, args, 2, usageUDPSendHex)
	if err != nil {
		return err
	}
	ap, err := parseAddrPort(pos[0])
	if err != nil {
		return err
	}
	payload, err := hex.DecodeString(pos[1])
	if err != nil {
		return fmt.Errorf("HEX: %w", err)
	}
	c, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.WriteToUDPAddrPort(payload, ap)
	return err
}
