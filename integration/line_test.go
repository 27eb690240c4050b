package integration

import (
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// h1 - h2 - h3 where h1 and h3 cannot reach each other: traffic between
// their containers is relayed by h2's router. Killing h2 drops h1's
// connection; restarting it (same data dir, so same name) restores the path.
func TestLineRelayAndRestart(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.Line})
	h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
	launch(t, h1)
	d2 := launch(t, h2, peerArg(t, h2, h1)...)
	launch(t, h3, peerArg(t, h3, h2)...)
	waitMesh(t, h2, 2, 3)
	waitMesh(t, h1, 1, 3)
	waitMesh(t, h3, 1, 3)

	c1 := attach(t, h1, "c1", "10.32.0.1/12")
	c3 := attach(t, h3, "c3", "10.32.0.3/12")
	c1.WaitPing(t, "10.32.0.3", pingTimeout)
	pingAll(t, c3, "10.32.0.1", 3)

	d2.Kill()
	testbed.WaitFor(t, 10*time.Second, func() bool {
		r, err := h1.TryReport(t)
		return err == nil && r.Router.Established() == 0
	}, "h1 reports no established connection after h2's daemon was killed")

	launch(t, h2, peerArg(t, h2, h1)...)
	// h3 reconnects to h2 with its own backoff; wait until the whole line
	// has converged again, then the path must carry traffic both ways.
	waitMesh(t, h2, 2, 3)
	waitMesh(t, h1, 1, 3)
	waitMesh(t, h3, 1, 3)
	c1.WaitPing(t, "10.32.0.3", pingTimeout)
	c3.WaitPing(t, "10.32.0.1", pingTimeout)
	pingAll(t, c1, "10.32.0.3", 3)
	pingAll(t, c3, "10.32.0.1", 3)
}
