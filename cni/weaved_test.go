package cni

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"weavenet/api"
)

// fakeWeaved serves the parts of weaved's API the plugins use.
type fakeWeaved struct {
	mu       sync.Mutex
	status   string
	owners   map[string][]string
	released []string
}

func (f *fakeWeaved) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.URL.Path {
	case "/report":
		_ = json.NewEncoder(w).Encode(api.Report{IPAM: &api.IPAM{Status: f.status}})
	case "/ipam/owners":
		out := []api.IPAMOwner{}
		for o, a := range f.owners {
			if strings.HasPrefix(o, r.URL.Query().Get("prefix")) {
				out = append(out, api.IPAMOwner{Owner: o, Addrs: a})
			}
		}
		_ = json.NewEncoder(w).Encode(out)
	case "/ipam/release":
		var req api.IPAMRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		delete(f.owners, req.Owner)
		f.released = append(f.released, req.Owner)
		_, _ = w.Write([]byte("{}"))
	default:
		http.NotFound(w, r)
	}
}

func TestStatus(t *testing.T) {
	f := &fakeWeaved{status: "awaiting consensus (quorum 2, known peers 1)"}
	srv := httptest.NewServer(f)
	defer srv.Close()
	w := newWeaved(strings.TrimPrefix(srv.URL, "http://"))
	_, err := w.ready(context.Background())
	var e *types.Error
	if !asTypesError(err, &e) || e.Code != types.ErrPluginNotAvailable || !strings.Contains(e.Msg, "weaved's IPAM") || !strings.Contains(e.Msg, "awaiting consensus") {
		t.Errorf("not ready: %v", err)
	}
	for _, st := range []string{"ready", "idle"} {
		f.mu.Lock()
		f.status = st
		f.mu.Unlock()
		if _, err := w.ready(context.Background()); err != nil {
			t.Errorf("%s: %v", st, err)
		}
	}
}

// Nothing listening: STATUS and every call fail at once, naming weaved.
func TestWeavedDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	w := newWeaved(addr)
	start := time.Now()
	_, err = w.ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "weaved is not running") || !strings.Contains(err.Error(), addr) {
		t.Errorf("status: %v", err)
	}
	if _, err := w.allocate(context.Background(), "o", ""); err == nil || !strings.Contains(err.Error(), "weaved") {
		t.Errorf("allocate: %v", err)
	}
	if time.Since(start) > queryTimeout {
		t.Errorf("took %v with nothing listening", time.Since(start))
	}
}

// A listener that never answers: the call ends at its deadline.
func TestWeavedHungTimesOut(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	w := newWeaved(strings.TrimPrefix(srv.URL, "http://"))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := w.report(ctx); err == nil || !strings.Contains(err.Error(), "did not answer in time") {
		t.Errorf("hung weaved: %v", err)
	}
}

func TestGC(t *testing.T) {
	f := &fakeWeaved{owners: map[string][]string{
		Owner("weave", "c1", "eth0"):  {"10.32.0.1/12"},
		Owner("weave", "c2", "eth0"):  {"10.32.0.2/12"},
		Owner("weave", "c1", "eth1"):  {"10.32.0.3/12"},
		Owner("other", "c3", "eth0"):  {"10.32.0.4/12"},
		"c4":                          {"10.32.0.5/12"},
		Owner("weave", "c5", "net-1"): {"10.32.0.6/12"},
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	w := newWeaved(strings.TrimPrefix(srv.URL, "http://"))
	released, err := w.gc(context.Background(), "weave", []types.GCAttachment{{ContainerID: "c1", IfName: "eth0"}, {ContainerID: "c5", IfName: "net-1"}})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(released)
	want := []string{Owner("weave", "c1", "eth1"), Owner("weave", "c2", "eth0")}
	if !slices.Equal(released, want) {
		t.Errorf("released %v, want %v", released, want)
	}
	if _, ok := f.owners[Owner("other", "c3", "eth0")]; !ok {
		t.Error("another network's allocation was released")
	}
}

func asTypesError(err error, e **types.Error) bool {
	te, ok := err.(*types.Error)
	*e = te
	return ok
}
