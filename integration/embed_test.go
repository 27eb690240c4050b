package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// TestEmbedExampleServesHTTP runs examples/embed, a program with its own
// overlay (a router and a userspace stack, no daemon, no kernel device), on
// two hosts with a password: h2's copy fetches a page from h1's over the
// overlay address, which neither host's kernel knows.
func TestEmbedExampleServesHTTP(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	bin := filepath.Join(testbed.EmbedDir(t), "embed")

	srv := h1.Start(t, bin, "-addr", "10.40.0.1/16", "-password", "s3cret")
	srv.WaitStderr(t, "serving HTTP", 10*time.Second)
	fetch := h2.Start(t, bin, "-addr", "10.40.0.2/16", "-password", "s3cret",
		"-peer", h1.AddrTowards(t, h2).String(), "-fetch", "http://10.40.0.1/")
	out, err := fetch.Wait(90 * time.Second)
	if err != nil {
		t.Fatalf("fetch: %v\nserver's log:\n%s", err, srv.Stderr())
	}
	if !strings.Contains(out, "hello from") || !strings.Contains(out, "at 10.40.0.1, to 10.40.0.2:") {
		t.Fatalf("fetched %q, want the server's greeting to 10.40.0.2", out)
	}
	if !strings.Contains(fetch.Stderr(), "connection-established") {
		t.Errorf("no connection-established event in the log:\n%s", fetch.Stderr())
	}
	// The overlay lives in the two programs: the hosts' kernels have no
	// route to it.
	if err := h2.Ping(t, "10.40.0.1", 1); err == nil {
		t.Error("h2's kernel reaches the overlay address; it should not know it")
	}
}
