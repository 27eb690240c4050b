package ipam

import (
	"errors"
	"net/netip"
	"testing"

	"weavenet/mesh"
)

// A ring as Weave Net persists it (seeded with us and another peer) gives
// a fresh allocator our share at once: addresses of our pieces are claimed
// and allocated with no peer to gossip with.
func TestImportWeaveRing(t *testing.T) {
	n := newTestNet(t)
	p := n.add(1, Config{Range: netip.MustParsePrefix("10.2.0.0/16"), Init: Init{Mode: Observer}})
	a := p.a
	src := &ring{Range: a.cfg.Range}
	src.claim([]mesh.PeerName{peerName(1), peerName(2)})
	persisted := gobEncode(ringToWeave(src, a.geo, peerName(1)))
	if err := a.ImportWeaveRing(persisted); err != nil {
		t.Fatal(err)
	}
	if err := a.Claim(t.Context(), "c1", netip.MustParsePrefix("10.2.0.7/16")); err != nil {
		t.Fatalf("claim in our piece: %v", err)
	}
	if got, err := allocNow(a, "c2"); err != nil || !got.Addr().Less(netip.MustParseAddr("10.2.128.0")) {
		t.Fatalf("allocate: %v, %v (want one of our half)", got, err)
	}
	// Importing again changes nothing; a ring over another Range is refused.
	if err := a.ImportWeaveRing(persisted); err != nil {
		t.Fatal(err)
	}
	other := &ring{Range: netip.MustParsePrefix("10.3.0.0/16")}
	other.claim([]mesh.PeerName{peerName(1)})
	g, _ := newGeometry(other.Range)
	if err := a.ImportWeaveRing(gobEncode(ringToWeave(other, g, peerName(1)))); !errors.Is(err, errRangeMismatch) {
		t.Fatalf("ring over another range: %v", err)
	}
	if err := a.ImportWeaveRing([]byte("garbage")); !errors.Is(err, ErrWeaveFormat) {
		t.Fatalf("garbage: %v", err)
	}
}
