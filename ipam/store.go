package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"weavenet/mesh"
)

// Store persists IPAM state in a bbolt file: the ring, our consensus
// record, and every allocation of this peer. Each write is one committed
// (fsynced) transaction, so an allocation is durable before Allocate
// returns it. Layout:
//
//	bucket "meta":   "format" -> 1, "peer" -> u64, "range" -> prefix,
//	                 "ring" -> version:u8 ring, "paxos" -> version:u8 paxos
//	bucket "allocs": addr (4 or 16 bytes) -> version:u8 bits:u8 owner
//
// with ring, paxos and prefix encoded as in codec.go.
type Store struct {
	db *bolt.DB
}

// ErrStoreLocked: another process (a second weaved on the same
// --data-dir) has the store open.
var ErrStoreLocked = errors.New("ipam: store is locked by another process")

var (
	bucketMeta   = []byte("meta")
	bucketAllocs = []byte("allocs")
	keyFormat    = []byte("format")
	keyPeer      = []byte("peer")
	keyRange     = []byte("range")
	keyRing      = []byte("ring")
	keyPaxos     = []byte("paxos")
)

// OpenStore opens or creates the store file at path (the daemon uses
// DATA-DIR/ipam.db). It waits at most a second for the file lock, then
// fails with ErrStoreLocked.
func OpenStore(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s; is another weaved running with the same --data-dir? Stop it or use another directory", ErrStoreLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("ipam: open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketAllocs); err != nil {
			return err
		}
		if f := meta.Get(keyFormat); f != nil && (len(f) != 1 || f[0] != formatVersion) {
			return fmt.Errorf("%w: store format %v", ErrUnknownVersion, f)
		}
		return meta.Put(keyFormat, []byte{formatVersion})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("ipam: store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error {
	if s == nil {
		return nil
	}
	return s.db.Close()
}

// stored is what load returns.
type stored struct {
	peer   mesh.PeerName
	rng    netip.Prefix
	ring   *ring      // nil if none
	paxos  paxosState // nil if none
	allocs map[netip.Addr]allocation
}

func (s *Store) load() (*stored, error) {
	out := &stored{allocs: map[netip.Addr]allocation{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyPeer); len(v) == 8 {
			out.peer = mesh.PeerName(binary.BigEndian.Uint64(v))
		}
		if v := meta.Get(keyRange); v != nil {
			d := &decoder{b: v}
			out.rng = d.prefix()
			if d.err != nil {
				return fmt.Errorf("stored range: %w", d.err)
			}
		}
		if v := meta.Get(keyRing); v != nil {
			r, err := decodeStoredRing(v)
			if err != nil {
				return fmt.Errorf("stored ring: %w", err)
			}
			out.ring = r
		}
		if v := meta.Get(keyPaxos); v != nil {
			p, err := decodeStoredPaxos(v)
			if err != nil {
				return fmt.Errorf("stored consensus state: %w", err)
			}
			out.paxos = p
		}
		return tx.Bucket(bucketAllocs).ForEach(func(k, v []byte) error {
			addr, al, err := decodeAlloc(k, v)
			if err != nil {
				return err
			}
			out.allocs[addr] = al
			return nil
		})
	})
	return out, err
}

// reset wipes everything and records who we are and our Range.
func (s *Store) reset(peer mesh.PeerName, rng netip.Prefix, keep map[netip.Addr]allocation) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketAllocs); err != nil {
			return err
		}
		allocs, err := tx.CreateBucket(bucketAllocs)
		if err != nil {
			return err
		}
		for addr, al := range keep {
			if err := allocs.Put(addr.AsSlice(), encodeAlloc(al)); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		for _, k := range [][]byte{keyRing, keyPaxos} {
			if err := meta.Delete(k); err != nil {
				return err
			}
		}
		return putMeta(meta, peer, rng)
	})
}

func putMeta(meta *bolt.Bucket, peer mesh.PeerName, rng netip.Prefix) error {
	if err := meta.Put(keyPeer, binary.BigEndian.AppendUint64(nil, uint64(peer))); err != nil {
		return err
	}
	return meta.Put(keyRange, appendPrefix(nil, rng))
}

func (s *Store) setMeta(peer mesh.PeerName, rng netip.Prefix) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putMeta(tx.Bucket(bucketMeta), peer, rng) })
}

// The methods below are no-ops on a nil Store.

func (s *Store) put(bucket, key, val []byte) error {
	if s == nil {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, val) })
}

func (s *Store) putAlloc(addr netip.Addr, al allocation) error {
	return s.put(bucketAllocs, addr.AsSlice(), encodeAlloc(al))
}

func (s *Store) deleteAlloc(addr netip.Addr) error {
	if s == nil {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketAllocs).Delete(addr.AsSlice()) })
}

func (s *Store) putRing(r *ring) error {
	return s.put(bucketMeta, keyRing, appendRing([]byte{formatVersion}, r))
}

func (s *Store) putPaxos(p paxosState) error {
	return s.put(bucketMeta, keyPaxos, appendPaxos([]byte{formatVersion}, p))
}

func encodeAlloc(al allocation) []byte {
	return append([]byte{formatVersion, byte(al.Bits)}, al.Owner...)
}

// decodeAlloc decodes one record of the allocs bucket.
func decodeAlloc(k, v []byte) (netip.Addr, allocation, error) {
	addr, ok := netip.AddrFromSlice(k)
	switch {
	case !ok:
		return netip.Addr{}, allocation{}, fmt.Errorf("ipam: stored allocation with a bad address %x", k)
	case len(v) < 3:
		return netip.Addr{}, allocation{}, fmt.Errorf("ipam: stored allocation of %v truncated", addr)
	case v[0] != formatVersion:
		return netip.Addr{}, allocation{}, fmt.Errorf("%w: stored allocation of %v in version %d", ErrUnknownVersion, addr, v[0])
	case int(v[1]) > addr.BitLen():
		return netip.Addr{}, allocation{}, fmt.Errorf("ipam: stored allocation of %v with prefix length %d", addr, v[1])
	}
	return addr, allocation{Bits: int(v[1]), Owner: string(v[2:])}, nil
}

func decodeStoredRing(v []byte) (*ring, error) {
	if len(v) == 0 || v[0] != formatVersion {
		return nil, ErrUnknownVersion
	}
	d := &decoder{b: v[1:]}
	r := d.ring()
	if d.err == nil && len(d.b) > 0 {
		d.fail("trailing bytes")
	}
	return r, d.err
}

func decodeStoredPaxos(v []byte) (paxosState, error) {
	if len(v) == 0 || v[0] != formatVersion {
		return nil, ErrUnknownVersion
	}
	d := &decoder{b: v[1:]}
	p := d.paxos()
	if d.err == nil && len(d.b) > 0 {
		d.fail("trailing bytes")
	}
	return p, d.err
}

// load restores the Allocator's state from its Store, discarding what a
// changed identity or Range makes meaningless. Called by New.
func (a *Allocator) load() error {
	st := a.cfg.Store
	if st == nil {
		return nil
	}
	data, err := st.load()
	if err != nil {
		return fmt.Errorf("ipam: read store: %w; remove the file to start afresh (weave reset)", err)
	}
	switch {
	case data.peer == mesh.UnknownPeerName:
		if err := st.setMeta(a.cfg.Ourself, a.cfg.Range); err != nil {
			return fmt.Errorf("ipam: write store: %w", err)
		}
		return nil
	case data.peer != a.cfg.Ourself:
		a.log.Warn("the data dir holds IPAM state of another peer name; discarding it",
			"stored", data.peer, "ourself", a.cfg.Ourself, "allocations", len(data.allocs))
		if err := st.reset(a.cfg.Ourself, a.cfg.Range, nil); err != nil {
			return fmt.Errorf("ipam: write store: %w", err)
		}
		return nil
	case data.rng != a.cfg.Range:
		keep := map[netip.Addr]allocation{}
		for addr, al := range data.allocs {
			if _, in := a.geo.offset(addr); !in {
				keep[addr] = al
			}
		}
		a.log.Warn("--ipalloc-range changed: discarding the old ring and the allocations inside the new range",
			"old", data.rng, "new", a.cfg.Range, "discarded", len(data.allocs)-len(keep), "kept", len(keep))
		if err := st.reset(a.cfg.Ourself, a.cfg.Range, keep); err != nil {
			return fmt.Errorf("ipam: write store: %w", err)
		}
		data.ring, data.paxos, data.allocs = nil, nil, keep
	}
	if data.ring != nil && data.ring.Range == a.cfg.Range {
		a.ring = data.ring
	}
	if data.paxos != nil && a.paxos != nil {
		a.paxos.state = data.paxos
		a.paxos.durable, a.paxos.hasDurable = data.paxos[a.cfg.Ourself]
	}
	for addr, al := range data.allocs {
		a.space.add(addr, al)
	}
	a.space.setOwned(a.ring.ownedBy(a.cfg.Ourself))
	a.checkConflicts()
	a.log.Info("restored IPAM state", "ring", a.ring.ready(), "allocations", len(data.allocs))
	return nil
}
