package integration

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// marker is 16 bytes, what ping -p repeats through a payload.
const marker = "wvnetPLAINmarker"

// underlayIface is the name of h's interface that carries addr.
func underlayIface(t *testing.T, h *testbed.Host) string {
	t.Helper()
	out := h.MustExec(t, "ip", "-o", "-4", "addr", "show", "to", h.Addr.String()+"/32")
	f := strings.Fields(out)
	if len(f) < 2 {
		t.Fatalf("%s: no interface carries %s: %q", h.Name, h.Addr, out)
	}
	return strings.TrimSuffix(f[1], ":")
}

// sniff captures on h's underlay while c pings addr with the marker in
// every payload, and returns how many frames crossed and how many showed
// the marker.
func sniff(t *testing.T, h *testbed.Host, c *testbed.Container, addr string) (frames, matches int) {
	t.Helper()
	capture := h.StartTool(t, "capture", underlayIface(t, h), marker, "4s")
	capture.WaitStderr(t, "capturing", 10*time.Second)
	pattern := hex.EncodeToString([]byte(marker))
	pingAll(t, c, addr, 10, "-p", pattern, "-s", "600")
	out, err := capture.Wait(time.Minute)
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	fmt.Sscan(out, &frames, &matches)
	return frames, matches
}

// Without a password the underlay shows what containers send: the control
// for the encrypted test below, proving that the capture can see a marker.
func TestUnderlayShowsPlaintextWithoutPassword(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	launch(t, h1)
	launch(t, h2, peerArg(t, h2, h1)...)
	waitMesh(t, h1, 1, 2)
	c1 := attach(t, h1, "c1", "10.32.0.1/12")
	attach(t, h2, "c2", "10.32.0.2/12")
	c1.WaitPing(t, "10.32.0.2", pingTimeout)
	frames, matches := sniff(t, h2, c1, "10.32.0.2")
	if frames == 0 || matches == 0 {
		t.Fatalf("capture saw %d frames, %d with the marker: it cannot see plaintext", frames, matches)
	}
}

// Two hosts share a password: traffic flows and is unreadable on the
// underlay. A host with a wrong password and one with none cannot join.
func TestPasswordEncryptsAndExcludes(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 4, Topology: testbed.FullMesh})
	h1, h2, h3, h4 := b.Hosts[0], b.Hosts[1], b.Hosts[2], b.Hosts[3]
	pwFile := filepath.Join(h2.DataDir, "password")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	launch(t, h1, "--password", "s3cret")
	launch(t, h2, append([]string{"--password-file", pwFile}, peerArg(t, h2, h1)...)...)
	waitMesh(t, h1, 1, 2)
	c1 := attach(t, h1, "c1", "10.32.0.1/12")
	c2 := attach(t, h2, "c2", "10.32.0.2/12")
	c1.WaitPing(t, "10.32.0.2", pingTimeout)

	status := h1.MustWeave(t, "status")
	if !strings.Contains(status, "Encryption: enabled") {
		t.Errorf("weave status does not say encryption is enabled:\n%s", status)
	}
	conns := h1.MustWeave(t, "status", "connections")
	if !strings.Contains(conns, " encrypted") || strings.Contains(conns, "unencrypted") {
		t.Errorf("weave status connections does not show the link encrypted:\n%s", conns)
	}

	frames, matches := sniff(t, h2, c1, "10.32.0.2")
	if frames == 0 || matches != 0 {
		t.Fatalf("underlay capture: %d frames, %d showing the plaintext marker", frames, matches)
	}
	transfer(t, c1, c2, "10.32.0.2", "200M", 5010)

	// Intruders: one with the wrong password, one with none.
	// Their own IPAM range, so that they can record 10.32.0.x without a
	// ring they will never get.
	own := []string{"--ipalloc-range", "10.99.0.0/16"}
	launch(t, h3, append(own, append([]string{"--password", "wrong"}, peerArg(t, h3, h1)...)...)...)
	launch(t, h4, append(own, peerArg(t, h4, h1)...)...)
	c3 := attach(t, h3, "c3", "10.32.0.3/12")
	c4 := attach(t, h4, "c4", "10.32.0.4/12")
	testbed.WaitFor(t, 20*time.Second, func() bool {
		logs := readLog(t, h1)
		return strings.Count(logs, "password mismatch") >= 2
	}, "h1 logs a password mismatch for both intruders")
	for _, h := range []*testbed.Host{h3, h4} {
		r := h.Report(t)
		if n := r.Router.Established(); n != 0 {
			t.Errorf("%s joined without the password: %s", h.Name, describe(&r.Router))
		}
		out := h.MustWeave(t, "status", "connections")
		if !strings.Contains(out, "failed") && !strings.Contains(out, "retrying") {
			t.Errorf("%s: its connection to h1 is not shown as failed:\n%s", h.Name, out)
		}
	}
	if r := h1.Report(t); r.Router.Established() != 1 {
		t.Errorf("h1 has %d established connections, want only h2's: %s", r.Router.Established(), describe(&r.Router))
	}
	for _, c := range []*testbed.Container{c3, c4} {
		if err := c.Ping(t, "10.32.0.1", 2); err == nil {
			t.Errorf("%s reached c1 without the password", c.Name)
		}
	}
}

func readLog(t *testing.T, h *testbed.Host) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.DataDir, testbed.LogFile))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Trusted subnets: a link is unencrypted only when both ends trust each
// other's subnet.
func TestTrustedSubnets(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.FullMesh})
	h1, h2, h3 := b.Hosts[0], b.Hosts[1], b.Hosts[2]
	trust := []string{"--password", "s3cret", "--trusted-subnets", h1.Nets[0].String()}
	launch(t, h1, trust...)
	launch(t, h2, append(trust, peerArg(t, h2, h1)...)...)
	launch(t, h3, append([]string{"--password", "s3cret"}, peerArg(t, h3, h1)...)...)
	waitMesh(t, h1, 2, 3)
	waitMesh(t, h3, 2, 3)
	conns := h1.MustWeave(t, "status", "connections")
	for _, line := range strings.Split(strings.TrimSpace(conns), "\n") {
		switch {
		case strings.Contains(line, h2.Addr.String()+":") && !strings.HasSuffix(line, " unencrypted"):
			t.Errorf("h1–h2 trust each other but the link is encrypted: %q", line)
		case strings.Contains(line, h3.Addr.String()+":") && !strings.HasSuffix(line, " encrypted"):
			t.Errorf("h3 does not trust h1 but the link is not encrypted: %q", line)
		}
	}
	c1 := attach(t, h1, "c1", "10.32.0.1/12")
	attach(t, h2, "c2", "10.32.0.2/12")
	attach(t, h3, "c3", "10.32.0.3/12")
	c1.WaitPing(t, "10.32.0.2", pingTimeout)
	c1.WaitPing(t, "10.32.0.3", pingTimeout)
}

// inEchos is how many ICMP echo requests c's kernel has received.
func inEchos(t *testing.T, c *testbed.Container) int {
	t.Helper()
	out := c.MustExec(t, "cat", "/proc/net/snmp")
	lines := strings.Split(out, "\n")
	for i := 0; i+1 < len(lines); i++ {
		if strings.HasPrefix(lines[i], "Icmp: InMsgs") {
			names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			for j, n := range names {
				if n == "InEchos" && j < len(values) {
					v, _ := strconv.Atoi(values[j])
					return v
				}
			}
		}
	}
	t.Fatalf("no InEchos in %s's /proc/net/snmp", c.Name)
	return 0
}

// A sealed datagram captured on the underlay and sent again is dropped and
// counted as a replay; with one bit flipped, as a decrypt failure; neither
// reaches the container.
func TestReplayedAndTamperedDatagramsDropped(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	launch(t, h1, "--password", "s3cret")
	launch(t, h2, "--password", "s3cret", peerArg(t, h2, h1)[1])
	waitMesh(t, h1, 1, 2)
	c1 := attach(t, h1, "c1", "10.32.0.1/12")
	c2 := attach(t, h2, "c2", "10.32.0.2/12")
	c1.WaitPing(t, "10.32.0.2", pingTimeout)

	capture := h2.StartTool(t, "capture-udp", underlayIface(t, h2), "6783", "600", "10s")
	capture.WaitStderr(t, "capturing", 10*time.Second)
	pingAll(t, c1, "10.32.0.2", 3, "-s", "600")
	sealed, err := capture.Wait(time.Minute)
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	sealed = strings.TrimSpace(sealed)

	drops := func() (replay, decrypt uint64) {
		d := h2.Report(t).Router.Stats.Drops
		return d["replay"], d["decrypt"]
	}
	replay0, decrypt0 := drops()
	echos0 := inEchos(t, c2)
	target := h2.Addr.String() + ":6783"
	if _, err := h1.Tool(t, 10*time.Second, "udp-send-hex", target, sealed); err != nil {
		t.Fatal(err)
	}
	// Flip one bit of the sequence number (byte 6, after the sender's
	// name): the copy is not a replay any more, and fails authentication.
	raw, err := hex.DecodeString(sealed)
	if err != nil || len(raw) < 40 {
		t.Fatalf("captured %q", sealed)
	}
	raw[6] ^= 0x01
	flipped := hex.EncodeToString(raw)
	if _, err := h1.Tool(t, 10*time.Second, "udp-send-hex", target, flipped); err != nil {
		t.Fatal(err)
	}
	testbed.WaitFor(t, 10*time.Second, func() bool {
		r, d := drops()
		return r > replay0 && d > decrypt0
	}, "h2 counts the replay and the tampered datagram")
	if got := inEchos(t, c2); got != echos0 {
		t.Errorf("c2 received %d echo requests from the replayed or tampered datagrams", got-echos0)
	}
}
