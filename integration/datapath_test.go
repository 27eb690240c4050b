package integration

import (
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// Two hosts, one container each: ping both ways, a 200 MB TCP stream arrives
// intact, an 8000-byte UDP datagram and 10000-byte pings (both fragmented
// below the overlay MTU) arrive.
func TestTwoHostsDatapath(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	launch(t, h1)
	launch(t, h2, peerArg(t, h2, h1)...)
	waitMesh(t, h1, 1, 2)
	waitMesh(t, h2, 1, 2)

	c1 := attach(t, h1, "c1", "10.32.0.1/12")
	c2 := attach(t, h2, "c2", "10.32.0.2/12")
	c1.WaitPing(t, "10.32.0.2", pingTimeout)

	t.Run("ping", func(t *testing.T) {
		pingAll(t, c1, "10.32.0.2", 3)
		pingAll(t, c2, "10.32.0.1", 3)
	})
	t.Run("tcp-200MB", func(t *testing.T) {
		transfer(t, c1, c2, "10.32.0.2", "200M", 5001)
	})
	t.Run("udp-8000", func(t *testing.T) {
		recv := c2.StartTool(t, "udp-recv", "-timeout", "20s", "5002")
		recv.WaitStderr(t, "listening", 10*time.Second)
		// Three copies: the point is that an 8000-byte datagram can cross
		// at all, not that UDP never loses one.
		if _, err := c1.Tool(t, 20*time.Second, "udp-send", "-count", "3", "10.32.0.2:5002", "8000"); err != nil {
			t.Fatal(err)
		}
		out, err := recv.Wait(30 * time.Second)
		if err != nil || strings.TrimSpace(out) != "8000" {
			t.Fatalf("udp-recv printed %q, %v; want 8000", out, err)
		}
	})
	t.Run("ping-s10000", func(t *testing.T) {
		pingAll(t, c1, "10.32.0.2", 3, "-s", "10000")
		pingAll(t, c2, "10.32.0.1", 3, "-s", "10000")
	})

	r := h1.Report(t)
	if r.Router.Stats.FramesOut == 0 || r.Router.Stats.FramesIn == 0 {
		t.Errorf("h1 counters after traffic: FramesIn=%d FramesOut=%d", r.Router.Stats.FramesIn, r.Router.Stats.FramesOut)
	}
}

// With --weave-compat on one end, the link uses Weave Net's classic sleeve
// frames and NaCl: the slow path (checksums completed and TCP super-frames
// segmented in software) carries 200 MB intact, large pings and UDP too.
func TestWeaveCompatLink(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	launch(t, h1, "--password", "s3cret", "--weave-compat")
	launch(t, h2, "--password", "s3cret", peerArg(t, h2, h1)[1])
	waitMesh(t, h1, 1, 2)
	c1 := attach(t, h1, "c1", "10.32.0.1/12")
	c2 := attach(t, h2, "c2", "10.32.0.2/12")
	c1.WaitPing(t, "10.32.0.2", pingTimeout)
	wantLinks(t, "classic/nacl", h1, h2)
	pingAll(t, c1, "10.32.0.2", 3, "-s", "10000")
	transfer(t, c1, c2, "10.32.0.2", "200M", 5020)
	transfer(t, c2, c1, "10.32.0.1", "50M", 5021)
	if d := h2.Report(t).Router.Stats.Drops; d["unsegmentable"]+d["too_big"]+d["decrypt"] != 0 {
		t.Errorf("drops on the classic link: %v", d)
	}
}
