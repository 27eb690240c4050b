package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"weavenet/internal/syncbuf"
)

type result struct {
	code           int
	stdout, stderr string
}

// start runs a subcommand in a goroutine.
func start(args ...string) (<-chan result, *syncbuf.Buffer) {
	ch := make(chan result, 1)
	var out, errb syncbuf.Buffer
	go func() {
		code := run(args, &out, &errb)
		ch <- result{code, out.String(), errb.String()}
	}()
	return ch, &errb
}

func runSync(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

func waitListening(t *testing.T, stderr *syncbuf.Buffer) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stderr.String(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("receiver not listening; stderr=%q", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	switch network {
	case "tcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	default:
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
}

func TestSendRecvDigestsMatch(t *testing.T) {
	port := strconv.Itoa(freePort(t, "tcp"))
	const n = 3<<20 + 17
	recv, recvErr := start("recv", "-timeout", "30s", port)
	waitListening(t, recvErr)
	sent := runSync(t, "send", "-timeout", "30s", "127.0.0.1:"+port, strconv.Itoa(n))
	if sent.code != 0 {
		t.Fatalf("send: %d %s", sent.code, sent.stderr)
	}
	got := <-recv
	if got.code != 0 {
		t.Fatalf("recv: %d %s", got.code, got.stderr)
	}
	h := sha256.New()
	io.Copy(h, Stream(n))
	want := fmt.Sprintf("%d %x\n", n, h.Sum(nil))
	if sent.stdout != want || got.stdout != want {
		t.Fatalf("send printed %q, recv printed %q, want %q", sent.stdout, got.stdout, want)
	}
}

func TestSendWaitsForReceiver(t *testing.T) {
	port := strconv.Itoa(freePort(t, "tcp"))
	send, _ := start("send", "-connect-timeout", "10s", "127.0.0.1:"+port, "1K")
	time.Sleep(300 * time.Millisecond) // the sender is retrying meanwhile
	got := runSync(t, "recv", "-timeout", "10s", port)
	s := <-send
	if s.code != 0 || got.code != 0 || s.stdout != got.stdout || !strings.HasPrefix(got.stdout, "1024 ") {
		t.Fatalf("send=%+v recv=%+v", s, got)
	}
}

func TestSendGivesUp(t *testing.T) {
	port := strconv.Itoa(freePort(t, "tcp"))
	r := runSync(t, "send", "-connect-timeout", "300ms", "127.0.0.1:"+port, "10")
	if r.code != 1 || !strings.Contains(r.stderr, "gave up") {
		t.Fatalf("got %+v", r)
	}
}

func TestUDP(t *testing.T) {
	port := strconv.Itoa(freePort(t, "udp"))
	recv, recvErr := start("udp-recv", "-timeout", "10s", port)
	waitListening(t, recvErr)
	s := runSync(t, "udp-send", "-count", "3", "-interval", "50ms", "127.0.0.1:"+port, "8000")
	if s.code != 0 {
		t.Fatalf("udp-send: %+v", s)
	}
	if got := <-recv; got.code != 0 || got.stdout != "8000\n" {
		t.Fatalf("udp-recv: %+v", got)
	}
}

func TestUDPEchoPing(t *testing.T) {
	port := strconv.Itoa(freePort(t, "udp"))
	echo, echoErr := start("udp-echo", port, "2s")
	waitListening(t, echoErr)
	p := runSync(t, "udp-ping", "-count", "5", "-interval", "1ms", "127.0.0.1:"+port)
	if ms, err := strconv.ParseFloat(strings.TrimSpace(p.stdout), 64); p.code != 0 || err != nil || ms <= 0 {
		t.Fatalf("udp-ping: %+v", p)
	}
	if got := <-echo; got.code != 0 || got.stdout != "5\n" {
		t.Fatalf("udp-echo: %+v, want 5 datagrams echoed", got)
	}
}

func TestUDPRecvTimesOut(t *testing.T) {
	port := strconv.Itoa(freePort(t, "udp"))
	r := runSync(t, "udp-recv", "-timeout", "200ms", port)
	if r.code != 1 || !strings.Contains(r.stderr, "no datagram") {
		t.Fatalf("got %+v", r)
	}
}

func TestGarbage(t *testing.T) {
	// UDP: every datagram arrives on loopback.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r := runSync(t, "garbage-udp", "-seed", "7", "-max-size", "100", pc.LocalAddr().String(), "5")
	if r.code != 0 {
		t.Fatalf("garbage-udp: %+v", r)
	}
	buf := make([]byte, 2000)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 0; i < 5; i++ {
		n, _, err := pc.ReadFrom(buf)
		if err != nil || n < 1 || n > 100 {
			t.Fatalf("datagram %d: n=%d err=%v", i, n, err)
		}
	}

	// TCP: a listener that counts connections and bytes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	conns, total := 0, 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n, _ := io.Copy(io.Discard, c)
			c.Close()
			mu.Lock()
			conns++
			total += int(n)
			mu.Unlock()
		}
	}()
	r = runSync(t, "garbage-tcp", "-max-size", "50", ln.Addr().String(), "4")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "4 connections") {
		t.Fatalf("garbage-tcp: %+v", r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		c, n := conns, total
		mu.Unlock()
		if c == 4 && n >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listener saw %d connections, %d bytes", c, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nope"},
		{"recv"},
		{"recv", "notaport"},
		{"send", "1.2.3.4", "10"},
		{"send", "127.0.0.1:1", "ten"},
		{"udp-send", "127.0.0.1:1", "70000"},
		{"mcast-recv", "10.0.0.1:5000", "lo", "1s"},
		{"mcast-send", "239.1.1.1:5000", "no-such-if0"},
		{"garbage-udp", "127.0.0.1:1", "-1"},
		{"udp-echo", "7", "soon"},
		{"udp-ping", "-count", "0", "127.0.0.1:7"},
	} {
		r := runSync(t, args...)
		if r.code == 0 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || r.stderr == "" {
			t.Errorf("%q: code %d stderr %q, want a one-line error", args, r.code, r.stderr)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "10": 10, "2K": 2048, "200M": 200 << 20, "1g": 1 << 30} {
		if got, err := parseSize("N", in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1", "1.5M", "x"} {
		if _, err := parseSize("N", in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
		}
	}
}
