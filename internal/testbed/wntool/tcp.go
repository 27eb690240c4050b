package main

import (
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"time"
)

// streamSeed seeds the deterministic stream that send writes, so that two
// runs with the same NBYTES produce the same bytes and digest.
var streamSeed = [32]byte{'w', 'e', 'a', 'v', 'e', 'n', 'e', 't', '-', 't', 'e', 's', 't', 'b', 'e', 'd'}

const chunk = 64 << 10

// Stream returns a reader of n deterministic pseudorandom bytes.
func Stream(n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8(streamSeed), n)
}

func runRecv(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("recv", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 5*time.Minute, "overall time limit")
	pos, err := parseFlags(fs, args, 1, usageRecv)
	if err != nil {
		return err
	}
	port, err := parsePort(pos[0])
	if err != nil {
		return err
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{Port: port})
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Fprintf(stderr, "listening on %s\n", ln.Addr())
	n, sum, err := recvOne(ln, time.Now().Add(*timeout))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d %x\n", n, sum)
	return nil
}

// recvOne accepts one connection and reads it to EOF before deadline.
func recvOne(ln *net.TCPListener, deadline time.Time) (int64, []byte, error) {
	if err := ln.SetDeadline(deadline); err != nil {
		return 0, nil, err
	}
	c, err := ln.AcceptTCP()
	if err != nil {
		return 0, nil, fmt.Errorf("accept: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return 0, nil, err
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, c, make([]byte, chunk))
	if err != nil {
		return n, nil, fmt.Errorf("after %d bytes: %w", n, err)
	}
	return n, h.Sum(nil), nil
}

func runSend(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 5*time.Minute, "overall time limit")
	connectTimeout := fs.Duration("connect-timeout", 15*time.Second, "keep retrying the connection this long (the receiver may not listen yet)")
	pos, err := parseFlags(fs, args, 2, usageSend)
	if err != nil {
		return err
	}
	ap, err := parseAddrPort(pos[0])
	if err != nil {
		return err
	}
	nbytes, err := parseSize("NBYTES", pos[1])
	if err != nil {
		return err
	}
	start := time.Now()
	deadline := start.Add(*timeout)
	c, err := dialRetry(ap.String(), *connectTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return err
	}
	h := sha256.New()
	n, err := sendStream(c, h, nbytes)
	if err != nil {
		return fmt.Errorf("after %d of %d bytes: %w", n, nbytes, err)
	}
	elapsed := time.Since(start)
	fmt.Fprintf(stdout, "%d %x\n", n, h.Sum(nil))
	fmt.Fprintf(stderr, "sent %d bytes in %v (%.1f Mbit/s)\n", n, elapsed.Round(time.Millisecond), float64(n)*8/elapsed.Seconds()/1e6)
	return nil
}

// sendStream writes nbytes of Stream to c, hashing them into h, then half
// closes c and waits for the peer to close so that the count printed is
// known to have been read.
func sendStream(c *net.TCPConn, h hash.Hash, nbytes int64) (int64, error) {
	n, err := io.CopyBuffer(io.MultiWriter(c, h), Stream(nbytes), make([]byte, chunk))
	if err != nil {
		return n, err
	}
	if err := c.CloseWrite(); err != nil {
		return n, err
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		return n, fmt.Errorf("waiting for receiver to close: %w", err)
	}
	return n, nil
}

// dialRetry dials addr over TCP, retrying refused or timed out attempts until
// within has passed.
func dialRetry(addr string, within time.Duration) (*net.TCPConn, error) {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err == nil {
			return c.(*net.TCPConn), nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connect %s: %w (gave up after %v)", addr, err, within)
		}
		var ne net.Error
		if errors.As(err, &ne) && !ne.Timeout() {
			time.Sleep(100 * time.Millisecond)
		}
	}
}
