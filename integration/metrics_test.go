package integration

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// scrape reads h's Prometheus metrics into name{labels} → value.
func scrape(t *testing.T, h *testbed.Host) map[string]float64 {
	t.Helper()
	out, err := h.Tool(t, 15*time.Second, "http-get", "http://127.0.0.1:6782/metrics")
	if err != nil {
		t.Fatalf("%s: scrape: %v", h.Name, err)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// After traffic, /metrics shows forwarded bytes; garbage moves the drop
// counters.
func TestMetrics(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	launch(t, h1)
	launch(t, h2, peerArg(t, h2, h1)...)
	waitMesh(t, h1, 1, 2)
	c1, _ := h1.MustRun(t, "m1")
	_, out := h2.MustRun(t, "m2")
	c1.WaitPing(t, addrOf(t, out).Addr().String(), pingTimeout)
	pingAll(t, c1, "m2", 5)

	before := scrape(t, h1)
	for _, k := range []string{`weavenet_bytes_total{direction="out"}`, `weavenet_bytes_total{direction="in"}`, `weavenet_frames_total{direction="out"}`} {
		if before[k] <= 0 {
			t.Errorf("%s = %v after traffic", k, before[k])
		}
	}
	if before[`weavenet_connections{encryption="none",state="established",transport="sleeve"}`] != 1 {
		t.Errorf("connections metric: %v", before)
	}
	if before["weavenet_peers"] != 2 || before[`weavenet_build_info{version="0.1.0"}`] != 1 {
		t.Errorf("peers %v, build_info %v", before["weavenet_peers"], before[`weavenet_build_info{version="0.1.0"}`])
	}
	if _, err := h2.Tool(t, time.Minute, "garbage-udp", fmt.Sprintf("%s:6783", h1.Addr), "200"); err != nil {
		t.Fatal(err)
	}
	drops := `weavenet_drops_total{reason="unknown_peer"}`
	testbed.WaitFor(t, 10*time.Second, func() bool { return scrape(t, h1)[drops] > before[drops] }, drops+" moves")
}
