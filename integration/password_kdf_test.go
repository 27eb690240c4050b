package integration

import (
	"strings"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// A password stretched with argon2id (weaved's default) keys connections
// differently from Weave's single hash: peers that disagree on
// --password-kdf, Weave Net routers included, are refused, and the log
// says which flag to look at. The matching cases are the other tests'
// (TestEncryption with the default, TestInteropTwoHosts/password with
// --password-kdf weave).
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
			testbed.WaitFor(t, 30*time.Second, func() bool {
				return strings.Contains(readLog(t, h2), "password mismatch")
			}, "h2 logs a password mismatch")
			if n := h2.Report(t).Router.Established(); n != 0 {
				t.Errorf("h2 has %d established connections with a peer of another --password-kdf", n)
			}
			if !tc.weave {
				// The end that fails to decrypt says why; the other sees a reset.
				testbed.WaitFor(t, 10*time.Second, func() bool {
					return strings.Contains(readLog(t, h1)+readLog(t, h2), "--password-kdf")
				}, "a log points at --password-kdf")
			}
		})
	}
}
