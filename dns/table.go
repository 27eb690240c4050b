package dns

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"weavenet/mesh"
)

// The replicated name table.
//
// A table maps keys to records. A key is one address of one hostname of one
// container as registered by one peer, its origin; only the origin ever
// writes a key (PeerGone excepted, see retired). A record carries the
// origin's Lamport version at the write and whether it is a tombstone.
//
// Merge is a join: per key the record with the higher version wins, at equal
// versions a tombstone beats a live record; per origin the retired watermark
// is the maximum seen, and every record of that origin at or below it is
// dropped. That is commutative, associative and idempotent (property-tested),
// and nothing in it looks at a clock: versions are only ever compared between
// writes of the same origin.
//
// A tombstone also carries its expiry on the local clock, so garbage
// collection can drop it later; the expiry is local bookkeeping, not part of
// the merged value (on the wire it travels as a remaining lifetime, and a
// record already held keeps its own expiry).

// key identifies one entry.
type key struct {
	Origin    mesh.PeerName
	Hostname  string // canonical FQDN
	Addr      netip.Addr
	Container string
}

// record is the replicated value of a key.
type record struct {
	Version   uint64 // the origin's Lamport counter at this write, >= 1
	Tombstone bool
	// Expires is when garbage collection may drop a tombstone (local
	// clock); zero for live records. Not compared by merge.
	Expires time.Time
}

// newer reports whether r beats o in the merge order.
func (r record) newer(o record) bool {
	if r.Version != o.Version {
		return r.Version > o.Version
	}
	return r.Tombstone && !o.Tombstone
}

// same reports whether r and o are the same replicated value.
func (r record) same(o record) bool {
	return r.Version == o.Version && r.Tombstone == o.Tombstone
}

// table is the replicated state. It implements mesh.GossipData; a *table
// handed to mesh (from Gossip, OnGossip, OnGossipBroadcast or a broadcast)
// is owned by mesh from then on and is never touched by the Server again.
type table struct {
	entries map[key]record
	// retired maps an origin removed by PeerGone to the highest version
	// of its records that the remover knew: those and all older are dead.
	retired map[mesh.PeerName]uint64
	// now is the reference time for encoding tombstone lifetimes.
	now time.Time
}

func newTable(now time.Time) *table {
	return &table{entries: map[key]record{}, retired: map[mesh.PeerName]uint64{}, now: now}
}

func (t *table) empty() bool { return len(t.entries) == 0 && len(t.retired) == 0 }

func (t *table) clone() *table {
	c := newTable(t.now)
	for k, r := range t.entries {
		c.entries[k] = r
	}
	for p, v := range t.retired {
		c.retired[p] = v
	}
	return c
}

// mergeDelta joins o into t and returns what changed t: the records and
// watermarks of o that were new to t. o is not modified.
func (t *table) mergeDelta(o *table) *table { return t.join(o, nil) }

// mergeDeltaExcept is mergeDelta ignoring everything o says about origin.
func (t *table) mergeDeltaExcept(o *table, origin mesh.PeerName) *table {
	return t.join(o, &origin)
}

func (t *table) join(o *table, skip *mesh.PeerName) *table {
	delta := newTable(t.now)
	for p, v := range o.retired {
		if skip != nil && p == *skip {
			continue
		}
		if v > t.retired[p] {
			t.retired[p] = v
			delta.retired[p] = v
		}
	}
	if len(delta.retired) > 0 {
		for k, r := range t.entries {
			if r.Version <= t.retired[k.Origin] {
				delete(t.entries, k)
			}
		}
	}
	for k, r := range o.entries {
		if (skip != nil && k.Origin == *skip) || r.Version <= t.retired[k.Origin] {
			continue
		}
		if cur, ok := t.entries[k]; ok && !r.newer(cur) {
			continue
		}
		t.entries[k] = r
		delta.entries[k] = r
	}
	return delta
}

// Merge implements mesh.GossipData: it joins other into t and returns t.
// mesh uses it to coalesce pending outbound gossip.
func (t *table) Merge(other mesh.GossipData) mesh.GossipData {
	if o, ok := other.(*table); ok {
		t.mergeDelta(o)
		if o.now.After(t.now) {
			t.now = o.now
		}
	}
	return t
}

// gc drops tombstones whose expiry is not after now; it returns how many.
func (t *table) gc(now time.Time) int {
	n := 0
	for k, r := range t.entries {
		if r.Tombstone && !r.Expires.After(now) {
			delete(t.entries, k)
			n++
		}
	}
	return n
}

// maxVersion returns the highest version t holds for origin, including its
// retired watermark.
func (t *table) maxVersion(origin mesh.PeerName) uint64 {
	v := t.retired[origin]
	for k, r := range t.entries {
		if k.Origin == origin && r.Version > v {
			v = r.Version
		}
	}
	return v
}

// sameState reports whether t and o hold the same replicated value
// (tombstone expiries are local and not compared).
func (t *table) sameState(o *table) bool {
	if len(t.entries) != len(o.entries) || len(t.retired) != len(o.retired) {
		return false
	}
	for k, r := range t.entries {
		if or, ok := o.entries[k]; !ok || !or.same(r) {
			return false
		}
	}
	for p, v := range t.retired {
		if ov, ok := o.retired[p]; !ok || ov != v {
			return false
		}
	}
	return true
}

func compareKeys(a, b key) int {
	if c := cmp.Compare(a.Hostname, b.Hostname); c != 0 {
		return c
	}
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Origin, b.Origin); c != 0 {
		return c
	}
	return cmp.Compare(a.Container, b.Container)
}

// sortedKeys returns t's keys in canonical order (hostname, address,
// origin, container).
func (t *table) sortedKeys() []key {
	keys := make([]key, 0, len(t.entries))
	for k := range t.entries {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	return keys
}
