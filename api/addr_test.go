package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func TestParseAddr(t *testing.T) {
	long := "/" + strings.Repeat("d", maxSocketPath)
	cases := []struct {
		in      string
		network string
		address string
		str     string
	}{
		{DefaultAddr, "unix", DefaultSocket, DefaultAddr},
		{"unix:///tmp/x/weaved.sock", "unix", "/tmp/x/weaved.sock", "unix:///tmp/x/weaved.sock"},
		{"unix:/tmp/x/weaved.sock", "unix", "/tmp/x/weaved.sock", "unix:///tmp/x/weaved.sock"},
		{"/tmp/x//weaved.sock", "unix", "/tmp/x/weaved.sock", "unix:///tmp/x/weaved.sock"},
		{"127.0.0.1:6784", "tcp", "127.0.0.1:6784", "127.0.0.1:6784"},
		{"tcp://127.0.0.1:6784", "tcp", "127.0.0.1:6784", "127.0.0.1:6784"},
		{"[::1]:6784", "tcp", "[::1]:6784", "[::1]:6784"},
		{"localhost:6784", "tcp", "localhost:6784", "localhost:6784"},
		{"", "", "", ""},
		{"unix://weaved.sock", "", "", ""}, // relative: which directory?
		{"unix:weaved.sock", "", "", ""},
		{"127.0.0.1", "", "", ""},
		{"127.0.0.1:", "", "", ""},
		{"http://127.0.0.1:6784", "", "", ""},
		{"unix://" + long, "", "", ""},
	}
	for _, c := range cases {
		a, err := ParseAddr(c.in)
		if c.network == "" {
			if err == nil {
				t.Errorf("ParseAddr(%q) = %+v, want an error", c.in, a)
			}
			continue
		}
		if err != nil || a.Network != c.network || a.Address != c.address || a.String() != c.str {
			t.Errorf("ParseAddr(%q) = %+v (%q), %v; want %s %s (%q)", c.in, a, a.String(), err, c.network, c.address, c.str)
		}
	}
}

// The client reaches a daemon on a Unix socket, and says plainly when
// nothing is there or the address is malformed.
func TestClientOverUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "weaved.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var host atomic.Value // string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host.Store(r.Host)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"Version":"test"}`))
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	ctx := context.Background()

	rep, err := NewClient("unix://" + sock).Report(ctx)
	if err != nil || rep.Version != "test" {
		t.Fatalf("Report over %s: %+v, %v", sock, rep, err)
	}
	if h, _ := host.Load().(string); h != "localhost" {
		t.Errorf("Host %q, want localhost", h)
	}
	if _, err := NewClient("unix://" + sock + ".gone").Report(ctx); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("no socket: %v, want ErrNoDaemon", err)
	}
	if _, err := NewClient("weaved.sock").Report(ctx); err == nil || errors.Is(err, ErrNoDaemon) || !strings.Contains(err.Error(), "want unix:///PATH") {
		t.Errorf("malformed address: %v", err)
	}
}
