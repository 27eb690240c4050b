package router

import (
	"strings"
	"testing"
	"time"

	"weavenet/mesh"
)

func TestPeerKindChoosesCadence(t *testing.T) {
	features := func(r *Router) map[string]string {
		f := map[string]string{}
		r.AddFeaturesTo(f)
		return f
	}
	tests := []struct {
		name        string
		features    map[string]string
		kind, rel   string
		slow, limit time.Duration
	}{
		{"weavenet", features(&Router{partialCsum: true, fastCipher: true}), KindWeavenet, ourRelease, time.Second, 5 * time.Second},
		// --weave-compat restricts the format and cipher, not the kind.
		{"weavenet --weave-compat", features(&Router{}), KindWeavenet, ourRelease, time.Second, 5 * time.Second},
		// Weave Net 2.8.1 sends only Overlays of the features we read.
		{"weave", map[string]string{featureOverlays: "sleeve fastdp"}, KindWeave, "", 10 * time.Second, 60 * time.Second},
		{"no features", map[string]string{}, KindWeave, "", 10 * time.Second, 60 * time.Second},
		// A weavenet peer from before the release was sent fails a
		// connection after 5 s: it must get weavenet's cadence.
		{"older weavenet", map[string]string{featureOverlays: "sleeve", featurePartialCsum: "1"}, KindWeavenet, "", time.Second, 5 * time.Second},
		{"hostile release", map[string]string{featureWeavenet: "1.0\n\x1b[31m" + strings.Repeat("x", 100)}, KindWeavenet, "1.0[31m" + strings.Repeat("x", 25), time.Second, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, rel, c := peerKind(tt.features)
			if kind != tt.kind || rel != tt.rel {
				t.Errorf("kind, release = %q, %q; want %q, %q", kind, rel, tt.kind, tt.rel)
			}
			if c.fast != 500*time.Millisecond || c.slow != tt.slow || c.timeout != tt.limit {
				t.Errorf("cadence = %+v; want fast 500ms, slow %v, timeout %v", c, tt.slow, tt.limit)
			}
			// Failure detection must tolerate missed heartbeats: Weave Net
			// gives up after six; weavenet after five.
			if c.timeout < 5*c.slow {
				t.Errorf("timeout %v is less than five heartbeats of %v", c.timeout, c.slow)
			}
		})
	}
}

func TestReportShowsKindAndCadence(t *testing.T) {
	f := &forwarder{r: &Router{mtu: 1376}, remoteName: mesh.PeerName(0x0257aabb0001), kind: KindWeave, cadence: weaveCadence()}
	got := connectionStatus(mesh.LocalConnectionStatus{Address: "192.168.200.2:6783", State: "established", Info: "sleeve x", Attrs: f.Attrs()})
	if got.PeerKind != KindWeave || got.PeerVersion != "" || got.PeerName != "02:57:aa:bb:00:01" ||
		got.Heartbeat != "10s" || got.HeartbeatTimeout != "60s" || got.Format != "classic" {
		t.Errorf("connection status %+v", got)
	}
}
