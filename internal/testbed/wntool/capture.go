package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
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
	const ethPAll = 0x0003
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(ethPAll)))
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(ethPAll), Ifindex: ifi.Index}); err != nil {
		return fmt.Errorf("bind to %s: %w", ifi.Name, err)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
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
