package ipam

import "fmt"

// ImportWeaveRing merges into ours the ring that Weave Net 2.x persisted on
// this host (the gob value under "ring" in its data file), as weaved does
// when it takes a Weave Net host over under its peer name: the host then
// knows its share of the Range even if no other peer is up to gossip it,
// as Weave Net does when it restarts on its file. The ring is checked as a
// gossiped one is (Range, seeds, tokens, free counts) and merged as a CRDT,
// so a stale copy loses to what the other peers have since written. Call
// it before the mesh starts.
func (a *Allocator) ImportWeaveRing(b []byte) error {
	var w wnRing
	if err := gobDecode(b, &w); err != nil {
		return fmt.Errorf("ipam: Weave Net's persisted ring: %w", err)
	}
	r, err := ringFromWeave(&w, a.geo)
	if err != nil {
		return fmt.Errorf("ipam: Weave Net's persisted ring: %w", err)
	}
	a.mu.Lock()
	defer a.unlock()
	merged, err := a.ring.merge(r)
	if err != nil {
		return fmt.Errorf("ipam: Weave Net's persisted ring: %w", err)
	}
	if merged.equal(a.ring) {
		return nil
	}
	return a.adoptRing(merged)
}
