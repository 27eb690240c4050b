package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// Garbage datagrams and handshakes from a third host hit h1's port while a
// transfer flows between c1 and c2: the transfer completes intact and h1
// counts the drops.
func TestGarbageDoesNotDisturb(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.FullMesh})
	h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
	launch(t, h1)
	launch(t, h2, peerArg(t, h2, h1)...)
	waitMesh(t, h1, 1, 2)
	c1 := attach(t, h1, "c1", "10.32.0.1/12")
	c2 := attach(t, h2, "c2", "10.32.0.2/12")
	c1.WaitPing(t, "10.32.0.2", pingTimeout)

	target := fmt.Sprintf("%s:6783", h1.Addr)
	attacks := make(chan error, 2)
	go func() {
		// Give the transfer a moment to start, then hit h1 from h3.
		time.Sleep(500 * time.Millisecond)
		_, err := h3.Tool(t, time.Minute, "garbage-udp", target, "3000")
		attacks <- err
		_, err = h3.Tool(t, 2*time.Minute, "garbage-tcp", "-max-size", "512", target, "40")
		attacks <- err
	}()
	transfer(t, c1, c2, "10.32.0.2", "200M", 5003)
	for i := 0; i < 2; i++ {
		if err := <-attacks; err != nil {
			t.Errorf("garbage sender: %v", err)
		}
	}

	var last testbed.StatsReport
	testbed.WaitFor(t, 10*time.Second, func() bool {
		r, err := h1.TryReport(t)
		if err != nil {
			return false
		}
		last = r.Router.Stats
		d := last.Drops
		// Refused handshakes are counted by reason: handshake (refused,
		// another password, hung up) and handshake_* (silent, not mesh...).
		handshakes := uint64(0)
		for k, n := range d {
			if strings.HasPrefix(k, "handshake") {
				handshakes += n
			}
		}
		return d["malformed"]+d["unknown_peer"]+d["spoofed"] > 0 && handshakes > 0
	}, "h1 counts malformed/unknown_peer/spoofed and handshake drops")
	t.Logf("h1 drops: %v", last.Drops)

	// The real connection survived.
	r := h1.Report(t)
	if !r.Router.EstablishedTo(h2.Addr.String()) {
		t.Errorf("h1 lost its connection to h2: %s", describe(&r.Router))
	}
	pingAll(t, c1, "10.32.0.2", 3)
}
