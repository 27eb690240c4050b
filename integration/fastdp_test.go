package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// The fast datapath (issue 16): known unicast between weavenet peers goes
// through the kernel's VXLAN, everything else over the sleeve.

// datapaths is each of h's connections' datapath and reason, as
// "fastdp" or "sleeve(reason)", separated by ";".
func datapaths(t *testing.T, h *testbed.Host) string {
	t.Helper()
	out := h.MustWeave(t, "report", "-f", `{{range .Router.Connections}}{{if .Datapath}}{{.Datapath}}{{if .DatapathReason}}({{.DatapathReason}}){{end}};{{end}}{{end}}`)
	return strings.TrimSpace(out)
}

// waitDatapath waits until every connection of h reports want (fastdp or
// sleeve), and returns how long that took.
func waitDatapath(t *testing.T, h *testbed.Host, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var got string
	for time.Since(start) < within {
		got = datapaths(t, h)
		ok := got != ""
		for _, p := range strings.Split(strings.TrimSuffix(got, ";"), ";") {
			if p != want && !strings.HasPrefix(p, want+"(") {
				ok = false
			}
		}
		if ok {
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: datapaths %q after %v, want all %s", h.Name, got, within, want)
	return 0
}

// fastCounters are h's router counters (bytes through weaved) and its
// VXLAN device's (bytes through the kernel only).
func fastCounters(t *testing.T, h *testbed.Host) (routerIn, routerOut, vxRx, vxTx uint64) {
	t.Helper()
	out := h.MustWeave(t, "report", "-f", `{{.Router.Stats.BytesIn}} {{.Router.Stats.BytesOut}} {{with .Router.FastDatapath}}{{.RxBytes}} {{.TxBytes}}{{else}}0 0{{end}}`)
	f := strings.Fields(out)
	if len(f) != 4 {
		t.Fatalf("%s: counters %q", h.Name, out)
	}
	var v [4]uint64
	for i := range f {
		v[i], _ = strconv.ParseUint(f[i], 10, 64)
	}
	return v[0], v[1], v[2], v[3]
}

// Two hosts, no password: the link uses the fast datapath, 200 MB arrive
// intact, and weaved's own counters show the bytes went through the VXLAN
// device, not through weaved.
func TestFastdpTwoHosts(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	launch(t, h1)
	launch(t, h2, peerArg(t, h2, h1)...)
	waitMesh(t, h1, 1, 2)
	waitMesh(t, h2, 1, 2)
	c1 := attach(t, h1, "c1", "10.32.0.1/12")
	c2 := attach(t, h2, "c2", "10.32.0.2/12")
	c1.WaitPing(t, "10.32.0.2", pingTimeout)
	t.Logf("fastdp after %v", waitDatapath(t, h1, "fastdp", 15*time.Second))
	waitDatapath(t, h2, "fastdp", 5*time.Second)
	pingAll(t, c1, "10.32.0.2", 3) // the entries are in place after a round of probes

	in1, out1, rx1, tx1 := fastCounters(t, h1)
	in2, out2, rx2, tx2 := fastCounters(t, h2)
	transfer(t, c1, c2, "10.32.0.2", "200M", 5101)
	in1b, out1b, rx1b, tx1b := fastCounters(t, h1)
	in2b, out2b, rx2b, tx2b := fastCounters(t, h2)
	t.Logf("h1 router in/out +%d/+%d bytes, VXLAN rx/tx +%d/+%d", in1b-in1, out1b-out1, rx1b-rx1, tx1b-tx1)
	t.Logf("h2 router in/out +%d/+%d bytes, VXLAN rx/tx +%d/+%d", in2b-in2, out2b-out2, rx2b-rx2, tx2b-tx2)
	const mb200 = 200 << 20
	if tx1b-tx1 < mb200 || rx2b-rx2 < mb200 {
		t.Errorf("VXLAN devices carried h1 tx %d, h2 rx %d bytes; want at least the 200 MB", tx1b-tx1, rx2b-rx2)
	}
	// Heartbeats, probes' acknowledgements and the odd ARP still pass
	// through weaved: a little, nothing like the transfer.
	for _, d := range []uint64{in1b - in1, out1b - out1, in2b - in2, out2b - out2} {
		if d > 1<<20 {
			t.Errorf("weaved carried %d bytes of the transfer; want under 1 MiB", d)
		}
	}

}
