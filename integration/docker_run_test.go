package integration

import (
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// The article end to end on two hosts: weave run -d --name c1 IMAGE top on
// h1, c2 on h2; c2 pings c1 by name; addresses are unique; weave ps lists
// them by short ID; attach, detach, dns-add and rm take Docker names.
func TestDockerRun(t *testing.T) {
	run := needDocker(t)
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	launch(t, h1, peerArg(t, h1, h2)...)
	launch(t, h2, peerArg(t, h2, h1)...)
	waitMesh(t, h1, 1, 2)
	waitMesh(t, h2, 1, 2)

	c1, c2 := run.Name("c1"), run.Name("c2")
	id1 := weaveRunDocker(t, h1, run, nil, "-d", "--name", c1, run.Image, "top")
	id2 := weaveRunDocker(t, h2, run, nil, "-d", "--name", c2, run.Image, "top")
	a1, a2 := ethweAddrs(t, id1), ethweAddrs(t, id2)
	if len(a1) != 1 || len(a2) != 1 || a1[0] == a2[0] {
		t.Fatalf("addresses of c1 %v and c2 %v: want one each, different", a1, a2)
	}
	for _, c := range []struct {
		h    *testbed.Host
		id   string
		addr string
	}{{h1, id1, a1[0]}, {h2, id2, a2[0]}} {
		line := psLine(t, c.h, c.id)
		if f := strings.Fields(line); len(f) != 3 || f[2] != c.addr {
			t.Errorf("%s: weave ps line %q: want SHORT-ID MAC %s", c.h.Name, line, c.addr)
		}
	}
	if got := mustEngine(t, "exec", c2, "hostname"); got != c2+".weave.local" && got != c2 {
		t.Errorf("c2's hostname is %q", got)
	}
	var out string
	var err error
	ok := testbed.Poll(20*time.Second, func() bool {
		out, err = engineCmd(t, "exec", c2, "ping", "-c", "3", "-W", "2", c1)
		return err == nil
	})
	if !ok {
		t.Fatalf("docker exec c2 ping -c 3 c1: %v\n%s", err, out)
	}
	if !strings.Contains(out, a1[0][:strings.IndexByte(a1[0], '/')]) {
		t.Errorf("c2 pinged c1 at another address than %s:\n%s", a1[0], out)
	}

	// attach, detach and dns-add by name and by short ID.
	extra := h1.MustWeave(t, "attach", "net:10.40.2.0/24", c1)
	if !strings.Contains(extra, "10.40.2.") {
		t.Fatalf("weave attach net:10.40.2.0/24 %s printed %q", c1, extra)
	}
	if got := ethweAddrs(t, id1); len(got) != 2 {
		t.Fatalf("after attach, c1 has %v", got)
	}
	h1.MustWeave(t, "detach", "net:10.40.2.0/24", id1[:8])
	if got := ethweAddrs(t, id1); len(got) != 1 || got[0] != a1[0] {
		t.Fatalf("after detach, c1 has %v, want %v", got, a1)
	}
	h1.MustWeave(t, "dns-add", c1, "-h", "alias-"+c1+".weave.local")
	testbed.WaitFor(t, 10*time.Second, func() bool {
		out, err := h2.Weave(t, "dns-lookup", "alias-"+c1)
		return err == nil && strings.TrimSpace(out) == strings.SplitN(a1[0], "/", 2)[0]
	}, "h2 resolves the alias added by Docker name")

	// weave rm: docker rm -f plus release; the name goes everywhere.
	h1.MustWeave(t, "rm", c1)
	if _, err := engineCmd(t, "inspect", id1); err == nil {
		t.Error("weave rm left the Docker container")
	}
	if line := psLine(t, h1, id1); line != "" {
		t.Errorf("weave ps still lists it: %q", line)
	}
	testbed.WaitFor(t, 5*time.Second, func() bool {
		_, err := h2.Weave(t, "dns-lookup", c1)
		return err != nil
	}, "c1's name gone on h2")
}

// weave run's two forms are told apart by one rule; input between them is
// refused in one line.
func TestDockerRunForms(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 1, Topology: testbed.FullMesh})
	h := b.Hosts[0]
	launch(t, h)
	_, err := h.Weave(t, "run", "-d", "--name", "x", "--", "top")
	if err == nil || !strings.Contains(testbed.Stderr(err), "ambiguous") || strings.Count(strings.TrimSpace(testbed.Stderr(err)), "\n") != 0 {
		t.Fatalf("weave run -d --name x -- top: want a one-line ambiguity error, got %v", err)
	}
}
