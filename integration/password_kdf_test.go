package integration

import (
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// --password-kdf says only how a peer keys connections with Weave Net
// routers: between weavenet peers the password is always stretched with
// argon2id, so two weavenet peers of different --password-kdf connect. A
// Weave Net router knows only Weave's derivation: a weavenet peer with the
// default refuses it, and its log says to use --password-kdf weave. The
// Weave Net case with --password-kdf weave is TestInteropTwoHosts/password's.
func TestPasswordKDFMismatch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		weave bool // the other end is a Weave Net router
	}{
		{"weavenet", false},
		{"weave-net", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
			h1, h2 := b.Hosts[0], b.Hosts[1]
			const pw = "kdf-mismatch-secret"
			if tc.weave {
				h1.StartWeaver(t, "--password", pw)
			} else {
				launch(t, h1, "--password", pw, "--password-kdf", "weave")
			}
			launch(t, h2, "--password", pw, peerArg(t, h2, h1)[1])
			if !tc.weave {
				testbed.WaitFor(t, 30*time.Second, func() bool {
					return h2.Report(t).Router.EstablishedTo(h1.Addr.String())
				}, "weavenet peers of different --password-kdf connect")
				for _, c := range h2.Report(t).Router.Connections {
					if c.State == "established" && !c.Encrypted {
						t.Errorf("h2's connection is not encrypted: %+v", c)
					}
				}
				return
			}
			testbed.WaitFor(t, 30*time.Second, func() bool {
				return strings.Contains(readLog(t, h2), "--password-kdf weave")
			}, "h2 refuses the Weave Net router and its log points at --password-kdf weave")
			if n := h2.Report(t).Router.Established(); n != 0 {
				t.Errorf("h2 has %d established connections with a Weave Net router, without --password-kdf weave", n)
			}
		})
	}
}
