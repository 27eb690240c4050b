package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// weaveDNS in a mixed cluster: a Weave Net 2.8.1 router (weaver) and
// weaved share names over Weave Net's "nameserver" gossip channel.

// interopDNSWait is how soon a name change must be seen on the other kind.
const interopDNSWait = 5 * time.Second

// askDNS asks the DNS server at server, from h's namespace, for name's A
// records: "RCODE RTT [A ADDR]...". weavenet serves on the bridge's
// 169.254.53.53, Weave Net on all addresses.
func askDNS(t *testing.T, h *testbed.Host, server, name string) string {
	out, err := h.Tool(t, 10*time.Second, "dns-query", server, name, "A")
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(out)
}

func weaverResolve(t *testing.T, h *testbed.Host, name string) string {
	return askDNS(t, h, "127.0.0.1:53", name)
}

// netResolved reports whether weavenet's DNS server on h answers name with
// at least one address.
func netResolved(t *testing.T, h *testbed.Host, name string) bool {
	return strings.Contains(askDNS(t, h, "169.254.53.53:53", name), " A ")
}

// TestInteropDNS: a name registered through Weave Net's API resolves through
// weavenet and one that weave run gives resolves on Weave Net, each within
// 5 s; deletions on either side reach the other; a peer that leaves takes
// its names with it on the other kind.
func TestInteropDNS(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	hw, hn := b.Hosts[0], b.Hosts[1] // Weave Net, weavenet
	w := hw.StartWeaver(t)
	launch(t, hn, peerArg(t, hn, hw)...)
	waitMesh(t, hn, 1, 2)
	waitWeaver(t, w, 1)
	hn.MustRun(t, "cn", "10.99.0.2/24")
	hn.MustRun(t, "cq", "10.99.0.5/24") // lives to the end
	weaverState := func() string {
		st, _ := w.HTTP(t, "GET", "/status/dns")
		return st + "\nweaver log tail:\n" + lastLines(w.Logs(), 20)
	}

	// Weave Net → weavenet, hostname case as registered there.
	for _, reg := range []string{"/name/cw1/10.99.0.1?fqdn=webw.weave.local.", "/name/cw2/10.99.0.3?fqdn=MixedCase.weave.local."} {
		if out, err := w.HTTP(t, "PUT", reg); err != nil {
			t.Fatalf("weaver PUT %s: %v %s", reg, err, out)
		}
	}
	for name, want := range map[string]string{"webw.weave.local": "10.99.0.1", "mixedcase.weave.local": "10.99.0.3"} {
		var got string
		if !testbed.Poll(interopDNSWait, func() bool {
			got = askDNS(t, hn, "169.254.53.53:53", name)
			return strings.HasPrefix(got, "NOERROR") && strings.HasSuffix(got, " A "+want)
		}) {
			t.Fatalf("weavenet's DNS answers %s (registered on Weave Net) with %q, want %s within %v\nweave status dns:\n%s",
				name, got, want, interopDNSWait, hn.MustWeave(t, "status", "dns"))
		}
	}
	if got := strings.TrimSpace(hn.MustWeave(t, "dns-lookup", "MIXEDCASE")); got != "10.99.0.3" {
		t.Errorf("weave dns-lookup MIXEDCASE = %q, want 10.99.0.3", got)
	}
	st := hn.MustWeave(t, "status", "dns")
	if !strings.Contains(st, "webw.weave.local.") || !strings.Contains(st, w.Name()) {
		t.Errorf("weave status dns does not list webw from %s:\n%s", w.Name(), st)
	}

	// weavenet → Weave Net: weave run's name, on Weave Net's DNS server.
	testbed.WaitFor(t, interopDNSWait, func() bool {
		return strings.Contains(weaverResolve(t, hw, "cn.weave.local."), "A 10.99.0.2")
	}, "Weave Net resolves cn.weave.local. (weave run on weavenet)")
	if st := weaverState(); !strings.Contains(st, b.Prefix+"cn") {
		t.Errorf("Weave Net's /status/dns does not list cn:\n%s", st)
	}

	// Removals both ways.
	if out, err := w.HTTP(t, "DELETE", "/name/cw1/10.99.0.1"); err != nil {
		t.Fatalf("weaver DELETE: %v %s", err, out)
	}
	testbed.WaitFor(t, interopDNSWait, func() bool { return !netResolved(t, hn, "webw.weave.local") },
		"webw stops resolving on weavenet after Weave Net deleted it")
	hn.MustWeave(t, "rm", b.Prefix+"cn")
	var last string
	if !testbed.Poll(interopDNSWait, func() bool {
		last = weaverResolve(t, hw, "cn.weave.local.")
		return strings.HasPrefix(last, "NXDOMAIN")
	}) {
		t.Fatalf("Weave Net still answers cn.weave.local. after weave rm: %s\n%s", last, weaverState())
	}
	// A name removed and registered again comes back (higher version).
	if out, err := w.HTTP(t, "PUT", "/name/cw1/10.99.0.1?fqdn=webw.weave.local."); err != nil {
		t.Fatalf("weaver PUT again: %v %s", err, out)
	}
	testbed.WaitFor(t, interopDNSWait, func() bool { return netResolved(t, hn, "webw.weave.local") },
		"webw resolves again after Weave Net registered it again")

	// A peer that leaves takes its names with it on the other kind, as
	// between Weave Net peers; a weavenet peer back from a restart brings
	// them back.
	hn.MustWeave(t, "stop")
	stopped := time.Now()
	if !testbed.Poll(meshTimeout, func() bool {
		last = weaverResolve(t, hw, "cq.weave.local.")
		return strings.HasPrefix(last, "NXDOMAIN")
	}) {
		t.Fatalf("Weave Net still answers cq.weave.local. after weaved stopped: %s\n%s", last, weaverState())
	}
	t.Logf("Weave Net dropped cq %v after weaved stopped", time.Since(stopped).Round(time.Millisecond))
	launch(t, hn, peerArg(t, hn, hw)...)
	waitMesh(t, hn, 1, 2)
	testbed.WaitFor(t, meshTimeout, func() bool {
		return strings.Contains(weaverResolve(t, hw, "cq.weave.local."), "A 10.99.0.5")
	}, "Weave Net resolves cq.weave.local. again after weaved restarted")
	testbed.WaitFor(t, meshTimeout, func() bool { return netResolved(t, hn, "webw.weave.local") },
		"webw resolves on weavenet again after weaved restarted")
	w.Stop()
	testbed.WaitFor(t, meshTimeout, func() bool { return !netResolved(t, hn, "webw.weave.local") },
		"webw stops resolving on weavenet once the Weave Net peer is gone")
}

// TestInteropDNSLine: three hosts in a line, the middle one of the other
// kind. A name registered at one end resolves at the other end, and its
// deletion arrives there: the middle peer relays the other kind's names,
// on the channel it speaks (weavenet: Weave Net's "nameserver") or unread
// (Weave Net: mesh's relay for our "dns").
func TestInteropDNSLine(t *testing.T) {
	for _, weave := range [][]bool{{true, false, true}, {false, true, false}} {
		t.Run(kindsName(weave), func(t *testing.T) {
			t.Parallel()
			b := testbed.New(t, testbed.Options{Hosts: 3, Topology: testbed.Line})
			weavers := make([]*testbed.Weaver, 3)
			for i, h := range b.Hosts {
				var peer []string
				if i > 0 {
					peer = []string{"--peer", b.Hosts[i-1].AddrTowards(t, h).String()}
				}
				switch {
				case weave[i] && len(peer) > 0:
					weavers[i] = h.StartWeaver(t, peer[1])
				case weave[i]:
					weavers[i] = h.StartWeaver(t)
				default:
					launch(t, h, peer...)
				}
			}
			for i, h := range b.Hosts {
				want := []int{1, 2, 1}[i]
				if weave[i] {
					waitWeaver(t, weavers[i], want)
				} else {
					waitMesh(t, h, want, 3)
				}
			}
			// register adds name → addr on end i; resolvedAt reports
			// whether end j answers it with addr.
			register := func(i int, name, addr string) {
				if weave[i] {
					if out, err := weavers[i].HTTP(t, "PUT", "/name/c"+name+"/"+addr+"?fqdn="+name+".weave.local."); err != nil {
						t.Fatalf("weaver PUT: %v %s", err, out)
					}
					return
				}
				b.Hosts[i].MustRun(t, name, addr+"/24")
			}
			unregister := func(i int, name, addr string) {
				if weave[i] {
					if out, err := weavers[i].HTTP(t, "DELETE", "/name/c"+name+"/"+addr); err != nil {
						t.Fatalf("weaver DELETE: %v %s", err, out)
					}
					return
				}
				b.Hosts[i].MustWeave(t, "rm", b.Prefix+name)
			}
			answer := func(j int, name string) string {
				if weave[j] {
					return weaverResolve(t, b.Hosts[j], name+".weave.local.")
				}
				return askDNS(t, b.Hosts[j], "169.254.53.53:53", name+".weave.local.")
			}
			for _, dir := range []struct{ from, to int }{{0, 2}, {2, 0}} {
				name := fmt.Sprintf("end%d", dir.from+1)
				addr := fmt.Sprintf("10.99.0.%d", dir.from+1)
				register(dir.from, name, addr)
				var got string
				if !testbed.Poll(interopDNSWait, func() bool {
					got = answer(dir.to, name)
					return strings.HasSuffix(got, " A "+addr)
				}) {
					t.Fatalf("h%d answers %s with %q, want %s within %v", dir.to+1, name, got, addr, interopDNSWait)
				}
				unregister(dir.from, name, addr)
				if !testbed.Poll(interopDNSWait, func() bool {
					got = answer(dir.to, name)
					return strings.HasPrefix(got, "NXDOMAIN")
				}) {
					t.Fatalf("h%d still answers %s after its deletion on h%d: %q", dir.to+1, name, dir.from+1, got)
				}
			}
		})
	}
}
