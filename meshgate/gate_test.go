package meshgate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"weavenet/internal/leakcheck"
)

func TestPairConn(t *testing.T) {
	la := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 6783}
	ra := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 40000}
	tc, uc, err := pairConn(la, ra)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	defer uc.Close()
	if tc.LocalAddr().String() != la.String() || tc.RemoteAddr().String() != ra.String() {
		t.Fatalf("addresses %v %v", tc.LocalAddr(), tc.RemoteAddr())
	}
	// What mesh calls on its connection.
	if err := tc.SetLinger(0); err != nil {
		t.Fatalf("SetLinger: %v", err)
	}
	if err := tc.SetDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := uc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q %v", buf, err)
	}
	if _, err := tc.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(uc, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q %v", buf, err)
	}
	_ = tc.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := tc.Read(buf); !isTimeout(err) {
		t.Fatalf("read past deadline: %v", err)
	}
	tc.Close()
	if _, err := uc.Read(buf); err != io.EOF {
		t.Fatalf("after close: %v, want EOF", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// testGate serves a Gate on loopback; mesh's side of each connection
// arrives on the returned channel.
func testGate(t *testing.T, cfg Config) (*Gate, string, chan *net.TCPConn) {
	t.Helper()
	before := leakcheck.Snapshot()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	handed := make(chan *net.TCPConn, 100)
	g := New(cfg, func(c *net.TCPConn) { handed <- c })
	done := make(chan struct{})
	go func() { _ = g.Serve(ln); close(done) }()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(handed)
		for c := range handed {
			c.Close()
		}
		g.Close()
		before.Check(t, 5*time.Second, nil)
	})
	return g, ln.Addr().String(), handed
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByPeer waits for c to be closed from the other end.
func closedByPeer(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	if _, err := io.Copy(io.Discard, c); isTimeout(err) {
		t.Fatalf("still open after %v", within)
	}
}

func waitStat(t *testing.T, g *Gate, what string, f func(Stats) uint64, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f(g.Stats()) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d (%+v)", what, f(g.Stats()), want, g.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestGateClosesSilentConnections(t *testing.T) {
	g, addr, handed := testGate(t, Config{HeaderTimeout: 200 * time.Millisecond})
	c := dial(t, addr)
	closedByPeer(t, c, 2*time.Second)
	waitStat(t, g, "silent", func(s Stats) uint64 { return s.Silent }, 1)
	if len(handed) != 0 {
		t.Fatal("a silent connection reached mesh")
	}
}

func TestGateRefusesAnOversizedHandshakeFrame(t *testing.T) {
	g, addr, handed := testGate(t, Config{})
	c := dial(t, addr)
	msg := []byte("weave\x01\x02\x00")
	msg = binary.BigEndian.AppendUint32(msg, 10<<20)
	go func() { _, _ = c.Write(append(msg, make([]byte, 1<<20)...)) }()
	m := <-handed
	got, _ := io.ReadAll(m) // mesh's side: up to the length, then closed
	if string(got) != "weave\x01\x02\x00" {
		t.Fatalf("mesh read %q", got)
	}
	closedByPeer(t, c, 2*time.Second)
	waitStat(t, g, "oversize", func(s Stats) uint64 { return s.Oversize }, 1)
}

func TestGatePassesAHandshakeThenEverything(t *testing.T) {
	g, addr, handed := testGate(t, Config{})
	c := dial(t, addr)
	first := append([]byte("weave\x01\x02\x00"), frame([]byte("features"))...)
	if _, err := c.Write(first); err != nil {
		t.Fatal(err)
	}
	m := <-handed
	if m.RemoteAddr().String() != c.LocalAddr().String() {
		t.Fatalf("mesh sees %v, the peer is %v", m.RemoteAddr(), c.LocalAddr())
	}
	got := make([]byte, len(first))
	if _, err := io.ReadFull(m, got); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("mesh read %q %v", got, err)
	}
	// mesh answers; the peer hears it.
	if _, err := m.Write([]byte("weave\x01\x02")); err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 7)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatal(err)
	}
	// A large frame before authentication waits; after, it passes.
	big := frame(bytes.Repeat([]byte{9}, 1<<20))
	go func() { _, _ = c.Write(big) }()
	time.Sleep(100 * time.Millisecond)
	g.Authenticated(m.RemoteAddr())
	got = make([]byte, len(big))
	if _, err := io.ReadFull(m, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("after authentication: %v", err)
	}
	if st := g.Stats(); st.Authenticated != 1 || g.Pending() != 0 {
		t.Fatalf("stats %+v, pending %d", st, g.Pending())
	}
	m.Close()
	closedByPeer(t, c, 2*time.Second)
}

func TestGateTimesOutAHeldFrame(t *testing.T) {
	g, addr, handed := testGate(t, Config{HandshakeTimeout: 300 * time.Millisecond})
	c := dial(t, addr)
	msg := append([]byte("weave\x01\x02\x00"), frame([]byte("features"))...)
	msg = binary.BigEndian.AppendUint32(msg, 1<<20)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	m := <-handed
	got, _ := io.ReadAll(m)
	if len(got) != len(msg)-4 {
		t.Fatalf("mesh read %d bytes, want %d", len(got), len(msg)-4)
	}
	closedByPeer(t, c, 2*time.Second)
	waitStat(t, g, "timeout", func(s Stats) uint64 { return s.Timeout }, 1)
}

// More silent connections from one address than it may hold: the oldest
// go, and a peer that talks still gets through at once.
func TestGateEvictsTheOldestSilentConnections(t *testing.T) {
	g, addr, handed := testGate(t, Config{MaxPendingPerSource: 4, MaxPending: 6, HeaderTimeout: time.Minute})
	var silent []net.Conn
	for i := 0; i < 10; i++ {
		silent = append(silent, dial(t, addr))
	}
	waitStat(t, g, "evicted", func(s Stats) uint64 { return s.Evicted }, 6)
	for _, c := range silent[:6] {
		closedByPeer(t, c, 2*time.Second)
	}
	c := dial(t, addr)
	if _, err := c.Write([]byte("weave\x01\x02")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-handed:
		m.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a talking peer did not reach mesh behind silent connections")
	}
	if st := g.Stats(); st.Evicted != 7 || st.Accepted != 11 {
		t.Fatalf("stats %+v: want 7 evicted (the talker pushed out one more), 11 accepted", st)
	}
}
