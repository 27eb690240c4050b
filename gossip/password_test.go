package gossip

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"weavenet/internal/leakcheck"
	"weavenet/mesh"
)

const testPassword = "correct horse battery staple"

// failures collects what OnConnectionError heard.
type failures struct {
	mu   sync.Mutex
	errs []error
}

func (f *failures) add(_ string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
}

func (f *failures) has(target error) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, err := range f.errs {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// serveNode starts a Node on a loopback port of its own.
func serveNode(t *testing.T, name, kdf string, f *failures) (*Node, string) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Name: name, NickName: name, Port: ln.Addr().(*net.TCPAddr).Port, Password: []byte(testPassword), PasswordKDF: kdf,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if f != nil {
		cfg.OnConnectionError = f.add
	}
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = n.Serve(ln) }()
	t.Cleanup(n.Close)
	return n, ln.Addr().String()
}

// weaveNetPeer stands in for a Weave Net 2.x router: a mesh router that
// offers protocol version 2 and keys with the raw password, as Weave Net
// does (mesh's interop tests check that keying against Weave's own mesh).
func weaveNetPeer(t *testing.T, name string) *mesh.Router {
	t.Helper()
	pn, err := mesh.PeerNameFromString(name)
	if err != nil {
		t.Fatal(err)
	}
	r, err := mesh.NewRouter(mesh.Config{Password: []byte(testPassword)}, pn, "weave-net", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func sees(r *mesh.Router, name mesh.PeerName) bool {
	_, ok := r.Routes.Unicast(name)
	return ok
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Between weavenet peers the stretched password keys connections whatever
// their PasswordKDF; a Weave Net peer is keyed with the raw password under
// KDFWeave and refused, with a hint at the flag, under KDFArgon2id.
func TestPasswordPerConnection(t *testing.T) {
	before := leakcheck.Snapshot()
	var af failures
	a, aAddr := serveNode(t, "02:00:00:00:0a:01", KDFArgon2id, &af)
	b, bAddr := serveNode(t, "02:00:00:00:0a:02", KDFWeave, nil)
	if err := b.Connect([]string{aAddr}, false); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "weavenet peers of different PasswordKDF connect", func() bool {
		return sees(a.Mesh, b.Name) && sees(b.Mesh, a.Name)
	})
	if st := a.Status(); fmt.Sprint(st.ProtocolMaxVersion) != weavenetVersion {
		t.Errorf("a offers protocol version %d, want %s", st.ProtocolMaxVersion, weavenetVersion)
	}

	w := weaveNetPeer(t, "02:00:00:00:0a:03")
	w.ConnectionMaker.InitiateConnections([]string{aAddr, bAddr}, false)
	waitUntil(t, "a refuses the Weave Net peer", func() bool {
		return a.HandshakeStats().Refused > 0 && af.has(ErrWeaveNetPeer)
	})
	waitUntil(t, "b (KDFWeave) connects with the Weave Net peer", func() bool {
		return sees(b.Mesh, w.Ourself.Name) && sees(w, b.Name)
	})
	for _, p := range a.Status().Peers {
		for _, c := range p.Connections {
			if p.Name == a.Name.String() && c.Name == w.Ourself.Name.String() {
				t.Fatal("a has a connection with the Weave Net peer")
			}
		}
	}
	if a.HandshakeFailures() == 0 {
		t.Error("the refusal is not in HandshakeFailures")
	}

	w.Close()
	a.Close()
	b.Close()
	before.Check(t, 10*time.Second, nil)
}

// A peer we dial gets the same bounds as one that dials us: a handshake
// frame announcing 10 MB ends the connection at once, in protocol
// versions 1 and 2.
func TestOutboundHandshakeIsBounded(t *testing.T) {
	before := leakcheck.Snapshot()
	n, err := New(Config{Name: "02:00:00:00:0b:01", NickName: "n", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, hello := range [][]byte{
		{'w', 'e', 'a', 'v', 'e', 1, 2, 0, 0x00, 0xa0, 0x00, 0x00},    // v2: no crypto, then a 10 MB frame
		{'w', 'e', 'a', 'v', 'e', 1, 1, 0xfc, 0x00, 0xa0, 0x00, 0x00}, // v1: a 10 MB gob message
	} {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := make(chan time.Duration, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			start := time.Now()
			_, _ = c.Write(hello)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.Copy(io.Discard, c)
			closed <- time.Since(start)
		}()
		if err := n.Connect([]string{ln.Addr().String()}, false); err != nil {
			t.Fatal(err)
		}
		if d := <-closed; d >= 5*time.Second {
			t.Fatalf("hello %d: the connection was held open", i)
		}
		n.Forget([]string{ln.Addr().String()})
		ln.Close()
		waitUntil(t, "counted", func() bool { return n.HandshakeStats().OutboundHandshakeFailed == uint64(i+1) })
	}
	n.Close()
	before.Check(t, 10*time.Second, nil)
}
