package mesh

import (
	"net"
	"sync"
	"testing"
)

// recOverlay records what each connection was prepared with.
type recOverlay struct {
	NullOverlay
	feature string
	mu      sync.Mutex
	params  []OverlayConnectionParams
}

func (o *recOverlay) AddFeaturesTo(f map[string]string) { f["TestFeature"] = o.feature }

func (o *recOverlay) PrepareConnection(p OverlayConnectionParams) (OverlayConnection, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.params = append(o.params, p)
	return NullOverlay{}, nil
}

func (o *recOverlay) last() (OverlayConnectionParams, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.params) == 0 {
		return OverlayConnectionParams{}, false
	}
	return o.params[len(o.params)-1], true
}

// The overlay hears the remote's fields, a connection UID both ends share,
// and the session key only when either end does not trust the other.
func TestOverlayParams(t *testing.T) {
	_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
	for _, trusted := range []bool{false, true} {
		cfg := Config{Password: []byte("pw")}
		if trusted {
			cfg.TrustedSubnets = []*net.IPNet{loopback}
		}
		oa, ob := &recOverlay{feature: "a"}, &recOverlay{feature: "b"}
		a := startWithOverlay(t, 0x701, cfg, oa)
		b := startWithOverlay(t, 0x702, cfg, ob)
		a.connect(b.addr)
		eventually(t, "connected", func() bool { return a.sees(0x702) && b.sees(0x701) })
		pa, _ := oa.last()
		pb, _ := ob.last()
		if pa.Features["TestFeature"] != "b" || pb.Features["TestFeature"] != "a" {
			t.Errorf("features %v / %v", pa.Features, pb.Features)
		}
		if pa.ConnUID != pb.ConnUID || !pa.Outbound || pb.Outbound || pa.RemotePeer.Name != 0x702 {
			t.Errorf("params %+v / %+v", pa, pb)
		}
		if trusted != (pa.SessionKey == nil) || trusted != (pb.SessionKey == nil) {
			t.Errorf("trusted %v: session keys %v / %v", trusted, pa.SessionKey, pb.SessionKey)
		}
		if !trusted && *pa.SessionKey != *pb.SessionKey {
			t.Error("the ends have different session keys")
		}
		if err := pa.SendControlMessage(ProtocolOverlayControlMsg, []byte("hi")); err != nil {
			t.Error(err)
		}
		a.r.Close()
		b.r.Close()
	}
	checkNoLeaks(t)
}

func startWithOverlay(t *testing.T, name PeerName, cfg Config, o Overlay) *ourPeer {
	t.Helper()
	r, err := NewRouter(cfg, name, "ov", o, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &ourPeer{r: r, addr: serveLocal(t, r), rx: newReceived()}
}
