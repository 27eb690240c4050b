package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"weavenet/api"
)

// guardedMux is the guard in front of a mux with a /reset and a /report
// that only count what reaches them.
func guardedMux(listen string) (http.Handler, *atomic.Int32) {
	var reached atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		writeJSON(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("GET /report", func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		writeJSON(w, http.StatusOK, api.Report{})
	})
	a, err := api.ParseAddr(listen)
	if err != nil {
		panic(err)
	}
	return newAPIGuard(a, mux, slog.New(slog.DiscardHandler)), &reached
}

func TestAPIGuardRefusesBrowsers(t *testing.T) {
	cases := []struct {
		name   string
		method string
		host   string
		header map[string]string
		body   string
		want   int
	}{
		{"cross-site form POST to /reset", "POST", "127.0.0.1:6784",
			map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"}, "a=b", http.StatusForbidden},
		{"form POST without Origin", "POST", "127.0.0.1:6784",
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "a=b", http.StatusUnsupportedMediaType},
		{"text/plain POST", "POST", "127.0.0.1:6784",
			map[string]string{"Content-Type": "text/plain"}, "{}", http.StatusUnsupportedMediaType},
		{"multipart POST", "POST", "127.0.0.1:6784",
			map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, "", http.StatusUnsupportedMediaType},
		{"no Content-Type", "POST", "127.0.0.1:6784", nil, "{}", http.StatusUnsupportedMediaType},
		{"JSON with an Origin", "POST", "127.0.0.1:6784",
			map[string]string{"Content-Type": "application/json", "Origin": "null"}, "{}", http.StatusForbidden},
		{"cross-site fetch metadata", "GET", "127.0.0.1:6784",
			map[string]string{"Sec-Fetch-Site": "cross-site"}, "", http.StatusForbidden},
		{"DNS rebinding: GET /report by name", "GET", "attacker.example:6784", nil, "", http.StatusForbidden},
		{"DNS rebinding: POST by name", "POST", "rebind.attacker.example",
			map[string]string{"Content-Type": "application/json"}, "{}", http.StatusForbidden},
		{"CLI-style POST", "POST", "127.0.0.1:6784",
			map[string]string{"Content-Type": "application/json"}, "{}", http.StatusOK},
		{"CLI-style GET", "GET", "127.0.0.1:6784", nil, "", http.StatusOK},
		{"localhost", "GET", "localhost:6784", nil, "", http.StatusOK},
		{"IPv6 loopback", "GET", "[::1]:6784", nil, "", http.StatusOK},
		{"a browser's own navigation", "GET", "127.0.0.1:6784", map[string]string{"Sec-Fetch-Site": "none"}, "", http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, reached := guardedMux("127.0.0.1:6784")
			path := "/reset"
			if c.method == "GET" {
				path = "/report"
			}
			r := httptest.NewRequest(c.method, path, strings.NewReader(c.body))
			r.Host = c.host
			for k, v := range c.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != c.want {
				t.Fatalf("status %d, want %d: %s", w.Code, c.want, w.Body)
			}
			if ok := c.want == http.StatusOK; ok != (reached.Load() == 1) {
				t.Errorf("handler reached %d times", reached.Load())
			}
			if c.want != http.StatusOK && (!strings.Contains(w.Body.String(), `"error"`) || strings.Count(strings.TrimSpace(w.Body.String()), "\n") > 0) {
				t.Errorf("want a one-line JSON error, got %q", w.Body)
			}
		})
	}
}

// A listen address given by name is its own Host.
func TestAPIGuardListenName(t *testing.T) {
	g := newAPIGuard(api.Addr{Network: "tcp", Address: "weave-host.internal:6784"}, http.NotFoundHandler(), nil)
	if !g.hostOK("weave-host.internal:6784") || g.hostOK("other.example:6784") {
		t.Error("want the listen name accepted and another refused")
	}
}

// The api package's client, against a real server with the guard: what
// the CLI sends passes.
func TestAPIGuardAcceptsClient(t *testing.T) {
	h, reached := guardedMux("127.0.0.1:0")
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := api.NewClient(strings.TrimPrefix(srv.URL, "http://"))
	ctx := context.Background()
	if err := c.Reset(ctx); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if _, err := c.Report(ctx); err != nil {
		t.Fatalf("Report: %v", err)
	}
	if reached.Load() != 2 {
		t.Errorf("handlers reached %d times, want 2", reached.Load())
	}
}

// A body that never finishes is answered (408) once bodyWait is up, and
// the handler never sees it.
func TestAPIGuardSlowBody(t *testing.T) {
	h, reached := guardedMux("127.0.0.1:0")
	h.(*apiGuard).bodyWait = 200 * time.Millisecond
	srv := httptest.NewServer(h)
	defer srv.Close()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /reset HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status %d, want 408", resp.StatusCode)
	}
	if reached.Load() != 0 {
		t.Error("the handler ran on a stalled body")
	}
}
