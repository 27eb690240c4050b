package main

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"
)

func garbageFlags(name string, args []string) (addr string, n int64, maxSize int, rng *rand.Rand, err error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	max := fs.Int("max-size", 1400, "largest payload in bytes")
	seed := fs.Uint64("seed", 0, "random seed (0: from the clock)")
	pos, err := parseFlags(fs, args, 2, usageFor(name))
	if err != nil {
		return
	}
	ap, err := parseAddrPort(pos[0])
	if err != nil {
		return
	}
	n, err = parseCount("N", pos[1])
	if err != nil {
		return
	}
	if *max < 1 || *max > maxDatagram-28 {
		err = fmt.Errorf("-max-size %d out of range 1..%d", *max, maxDatagram-28)
		return
	}
	s := *seed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	return ap.String(), n, *max, rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15)), nil
}

func fill(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

func runGarbageUDP(args []string, stdout, stderr io.Writer) error {
	addr, n, maxSize, rng, err := garbageFlags("garbage-udp", args)
	if err != nil {
		return err
	}
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, maxSize)
	var sent, failed int64
	deadline := time.Now().Add(time.Minute)
	for i := int64(0); i < n && time.Now().Before(deadline); i++ {
		p := buf[:1+rng.IntN(maxSize)]
		fill(rng, p)
		// An ICMP error from an earlier datagram can fail a write; count it
		// and go on.
		if _, err := c.Write(p); err != nil {
			failed++
			continue
		}
		sent++
	}
	fmt.Fprintf(stdout, "sent %d datagrams to %s (%d writes failed)\n", sent, addr, failed)
	if sent == 0 && n > 0 {
		return fmt.Errorf("no datagram could be sent to %s", addr)
	}
	return nil
}

func runGarbageTCP(args []string, stdout, stderr io.Writer) error {
	addr, n, maxSize, rng, err := garbageFlags("garbage-tcp", args)
	if err != nil {
		return err
	}
	buf := make([]byte, maxSize)
	var ok, failed int64
	var lastErr error
	deadline := time.Now().Add(2 * time.Minute)
	for i := int64(0); i < n && time.Now().Before(deadline); i++ {
		p := buf[:1+rng.IntN(maxSize)]
		fill(rng, p)
		if err := garbageConn(addr, p); err != nil {
			failed++
			lastErr = err
			continue
		}
		ok++
	}
	fmt.Fprintf(stdout, "%d connections sent garbage to %s (%d failed)\n", ok, addr, failed)
	if ok == 0 && n > 0 {
		return fmt.Errorf("no connection to %s succeeded: %v", addr, lastErr)
	}
	return nil
}

// garbageConn connects, writes p, half-closes, then waits up to 2s for the
// peer to hang up before closing.
func garbageConn(addr string, p []byte) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	if _, err := c.Write(p); err != nil {
		return nil // the peer may hang up on us first; that is fine
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<16))
	return nil
}

func usageFor(name string) string {
	if name == "garbage-udp" {
		return usageGarbageUDP
	}
	return usageGarbageTCP
}
