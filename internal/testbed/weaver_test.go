package testbed

import (
	"strings"
	"testing"
	"time"
)

func TestWeaverName(t *testing.T) {
	b := &Bed{Prefix: "wnab12"}
	h3 := &Host{Name: "h3", Bed: b}
	if got, want := h3.WeaverName(), "02:57:ab:12:00:03"; got != want {
		t.Fatalf("WeaverName = %s, want %s", got, want)
	}
}

// TestWeaverStatus starts one Weave Net router, reads its status and
// plugs two containers into its bridge, which then reach each other.
func TestWeaverStatus(t *testing.T) {
	b := New(t, Options{Hosts: 1})
	h := b.Hosts[0]
	w := h.StartWeaver(t)
	status, err := w.HTTP(t, "GET", "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(status, "Name: "+w.Name()+"(h1)") || !strings.Contains(status, "2.8.1") {
		t.Fatalf("/status does not name %s(h1) version 2.8.1:\n%s", w.Name(), status)
	}
	report, err := w.HTTP(t, "GET", "/report")
	if err != nil || !strings.Contains(report, `"NickName": "h1"`) {
		t.Fatalf("/report: %v\n%s", err, report)
	}

	c1, c2 := h.AddContainer(t, "c1"), h.AddContainer(t, "c2")
	w.Attach(t, c1, "10.40.0.1/24")
	w.Attach(t, c2, "10.40.0.2/24")
	if mtu := c1.MustExec(t, "cat", "/sys/class/net/ethwe/mtu"); strings.TrimSpace(mtu) != "1376" {
		t.Errorf("container MTU %q, want 1376", mtu)
	}
	c1.WaitPing(t, "10.40.0.2", 10*time.Second)

	w.Stop()
	if ok, _ := w.Exited(); !ok {
		t.Fatal("weaver still running after Stop")
	}
	if !strings.Contains(w.Logs(), "Our name is "+w.Name()) {
		t.Errorf("log does not show the peer name:\n%s", tail(w.Logs(), 20))
	}
}
