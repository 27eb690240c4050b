package main

import (
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"
)

// udp-send-raw writes whole IPv4/UDP packets through a raw socket, so the
// source address and port are whatever the test says: a host that is no
// peer posing as one, as an attacker on the same segment could.

const maxRawPayload = 65535 - 20 - 8

func runUDPSendRaw(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("udp-send-raw", flag.ContinueOnError)
	count := fs.Int("count", 1, "datagrams to send")
	interval := fs.Duration("interval", 50*time.Millisecond, "pause between datagrams")
	pos, err := parseFlags(fs, args, 3, usageUDPSendRaw)
	if err != nil {
		return err
	}
	src, err := parseAddrPort(pos[0])
	if err != nil {
		return err
	}
	dst, err := parseAddrPort(pos[1])
	if err != nil {
		return err
	}
	if !src.Addr().Is4() || !dst.Addr().Is4() {
		return fmt.Errorf("IPv4 addresses only")
	}
	payload, err := hex.DecodeString(pos[2])
	if err != nil {
		return fmt.Errorf("HEX: %w", err)
	}
	if len(payload) > maxRawPayload {
		return fmt.Errorf("payload of %d bytes exceeds %d", len(payload), maxRawPayload)
	}
	if *count < 1 || *count > 100000 {
		return fmt.Errorf("-count %d out of range 1..100000", *count)
	}
	pkt := rawUDP(src.Addr().As4(), dst.Addr().As4(), src.Port(), dst.Port(), payload)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW) // IP_HDRINCL implied
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Addr: dst.Addr().As4()}
	sent := 0
	for i := 0; i < *count; i++ {
		if i > 0 {
			time.Sleep(*interval)
		}
		if err := unix.Sendto(fd, pkt, 0, to); err != nil {
			return fmt.Errorf("after %d datagrams: %w", sent, err)
		}
		sent++
	}
	fmt.Fprintf(stdout, "sent %d datagrams %s -> %s\n", sent, src, dst)
	return nil
}

// rawUDP builds an IPv4 packet holding one UDP datagram, both checksums
// filled in.
func rawUDP(src, dst [4]byte, sport, dport uint16, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	ip, udp := p[:20], p[20:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(len(p)))
	ip[8], ip[9] = 64, unix.IPPROTO_UDP
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:12], ^sum16(0, ip))
	binary.BigEndian.PutUint16(udp[0:2], sport)
	binary.BigEndian.PutUint16(udp[2:4], dport)
	binary.BigEndian.PutUint16(udp[4:6], uint16(8+len(payload)))
	copy(udp[8:], payload)
	pseudo := uint32(sum16(0, ip[12:20])) + uint32(unix.IPPROTO_UDP) + uint32(8+len(payload))
	c := ^sum16(pseudo, udp)
	if c == 0 {
		c = 0xffff // zero means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(udp[6:8], c)
	return p
}

// sum16 is the folded one's complement sum of b as big-endian 16-bit words,
// starting from sum.
func sum16(sum uint32, b []byte) uint16 {
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}
