package integration

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// rssKiB reads a process's resident set size from /proc.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("rss: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("rss %q: %v", line, err)
			}
			return kib
		}
	}
	t.Fatal("rss: no VmRSS")
	return 0
}

// gateDrops sums the report's counts of connections closed before their
// handshake completed.
func gateDrops(d map[string]uint64) (sum uint64) {
	for k, v := range d {
		if strings.HasPrefix(k, "handshake_") {
			sum += v
		}
	}
	return sum
}

// 400 connections to a --password daemon's mesh port, each posing as a
// weavenet peer (a Weave Net one would be refused before its frame, under
// the default --password-kdf) and announcing a 10 MB handshake frame and
// sending it: weaved's RSS stays under 100 MB
// (with weaveworks/mesh's unbounded handshake frames it reached 3.76 GB)
// and every connection refused is counted in the report. Its real peer
// stays connected.
func TestHostileMeshHandshakeFlood(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.FullMesh})
	h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
	d1 := launch(t, h1, "--password", "hostile-flood-secret")
	launch(t, h3, "--password", "hostile-flood-secret", peerArg(t, h3, h1)[1])
	waitMesh(t, h1, 1, 2)
	before := rssKiB(t, d1.Pid())

	flood := h2.StartTool(t, "mesh-flood", "-frame", strconv.Itoa(10<<20), "-hold", "20s",
		fmt.Sprintf("%s:6783", h1.AddrTowards(t, h2)), "400")
	peak := before
	for done := false; !done; {
		select {
		case <-flood.Done():
			done = true
		case <-time.After(100 * time.Millisecond):
		}
		peak = max(peak, rssKiB(t, d1.Pid()))
	}
	out, err := flood.Wait(time.Second)
	if err != nil {
		t.Fatalf("mesh-flood: %v %s", err, flood.Stderr())
	}
	t.Logf("flood: %s", strings.TrimSpace(out))
	t.Logf("weaved RSS: %d KiB before, %d KiB at most during 400 connections announcing 10 MB frames", before, peak)
	if peak > 100<<10 {
		t.Errorf("weaved's RSS reached %d KiB under the flood, want under 100 MB", peak)
	}

	var connected int
	fmt.Sscanf(out, "connected %d", &connected)
	var drops map[string]uint64
	testbed.WaitFor(t, 10*time.Second, func() bool {
		r, err := h1.TryReport(t)
		if err != nil {
			return false
		}
		drops = r.Router.Stats.Drops
		return gateDrops(drops)+drops["handshake"] >= uint64(connected)
	}, "h1 counts every flooding connection as refused")
	t.Logf("h1 drops: %v", drops)
	if drops["handshake_oversize"] == 0 {
		t.Errorf("no handshake_oversize counted: %v", drops)
	}
	if r := h1.Report(t); !r.Router.EstablishedTo(h3.AddrTowards(t, h1).String()) {
		t.Errorf("h1 lost its real peer under the flood: %s", describe(&r.Router))
	}
	if logs := d1.Logs(); strings.Count(logs, "connection accepted") > 100 {
		t.Errorf("h1 logged %d 'connection accepted' lines for 400 connections: want them rate-limited", strings.Count(logs, "connection accepted"))
	}
}

// 1,000 silent connections hold h1's mesh port while h3, which knows only
// h1, restarts: h3 rejoins at once, and the silent connections are counted.
func TestHostileMeshSilentConnections(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.FullMesh})
	h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
	launch(t, h1)
	args := peerArg(t, h3, h1)
	d3 := launch(t, h3, args...)
	waitMesh(t, h1, 1, 2)

	flood := h2.StartTool(t, "mesh-flood", "-silent", "-hold", "40s",
		fmt.Sprintf("%s:6783", h1.AddrTowards(t, h2)), "1000")
	t.Cleanup(flood.Kill)
	testbed.WaitFor(t, 30*time.Second, func() bool {
		r, err := h1.TryReport(t)
		return err == nil && r.Router.Stats.Drops["handshake_evicted"] >= 500
	}, "the silent connections reach h1 (and push each other out)")

	d3.Stop()
	launch(t, h3, args...)
	start := time.Now()
	waitMesh(t, h3, 1, 2)
	took := time.Since(start)
	t.Logf("h3 rejoined %v after it was ready, with 1,000 silent connections on h1's port", took)
	if took > 10*time.Second {
		t.Errorf("h3 took %v to rejoin", took)
	}
	d := h1.Report(t).Router.Stats.Drops
	t.Logf("h1 drops: %v", d)
	if d["handshake_evicted"]+d["handshake_silent"] < 900 {
		t.Errorf("h1 counted %d evicted and %d silent connections of 1,000", d["handshake_evicted"], d["handshake_silent"])
	}
}
