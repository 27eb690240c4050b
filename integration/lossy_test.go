package integration

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"weavenet/internal/testbed"
)

// Over an underlay that loses 1% of the sleeve's datagrams and reorders
// another 1% (netem's job, done by wntool impair since this kernel has no
// netem), both wire formats carry 200 MB intact, encrypted, so the replay
// window meets reordering too: the fast format (segments with virtio
// headers, UDP GSO/GRO, AES-GCM) and the classic one Weave Net speaks
// (plain frames, NaCl).
func TestLossyUnderlay(t *testing.T) {
	for _, tc := range []struct {
		format, cipher string
		flags          []string
	}{
		{"fast", "aes-256-gcm", nil},
		{"classic", "nacl", []string{"--weave-compat"}},
	} {
		t.Run(tc.format, func(t *testing.T) {
			b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
			h1, h2 := b.Hosts[0], b.Hosts[1]
			impair := b.Impair(t, 1, 1)
			launch(t, h1, append([]string{"--password", "s3cret"}, tc.flags...)...)
			launch(t, h2, "--password", "s3cret", peerArg(t, h2, h1)[1])
			waitMesh(t, h1, 1, 2)
			c1 := attach(t, h1, "c1", "10.32.0.1/12")
			c2 := attach(t, h2, "c2", "10.32.0.2/12")
			c1.WaitPing(t, "10.32.0.2", pingTimeout)
			wantLinks(t, tc.format+"/"+tc.cipher, h1, h2)
			transfer(t, c1, c2, "10.32.0.2", "200M", 5030)

			impair.Signal(syscall.SIGTERM)
			out, err := impair.Wait(10 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var frames, dropped, reordered int
			if _, err := fmt.Sscan(out, &frames, &dropped, &reordered); err != nil {
				t.Fatalf("impair printed %q: %v", out, err)
			}
			t.Logf("underlay: %d frames, %d datagrams dropped, %d reordered", frames, dropped, reordered)
			if dropped < 100 || reordered < 100 {
				t.Errorf("the underlay was hardly impaired: %d dropped, %d reordered", dropped, reordered)
			}
			if d := h2.Report(t).Router.Stats.Drops; d["decrypt"]+d["malformed"] != 0 {
				t.Errorf("drops on h2: %v", d)
			}
		})
	}
}
