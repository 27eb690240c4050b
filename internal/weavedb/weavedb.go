// Package weavedb reads what Weave Net 2.x persisted on a host, so that
// weaved can take the host over in place: the peer name, the addresses its
// IPAM gave each container, and its copy of the ring. It owns nothing and
// writes nothing: the file stays exactly as Weave Net left it, so Weave Net
// can be started on it again.
//
// Weave Net keeps a bbolt file, <db-prefix>data.db (the weave-kube
// DaemonSet: /var/lib/weave/weave-netdata.db; the weave script: the
// weavedb volume's weavedata.db), with one bucket "top" whose values are
// gob-encoded: "peername" (the peer name, a uint64), "ring" (the IPAM ring)
// and "ownedAddresses" (container ID -> whether it is a container, and its
// addresses). The file is another program's: every size and count is
// bounded before it is used, and anything malformed is an error, never a
// crash.
package weavedb

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"time"
	"unicode"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"weavenet/mesh"
)

// Limits on what Read accepts. Weave Net's own file is a few tens of KiB.
const (
	MaxFileSize  = 256 << 20 // the whole file
	MaxValueSize = 16 << 20  // one gob value
	MaxOwners    = 1 << 16   // containers (and weave:expose) with addresses
	MaxAddrs     = 256       // addresses of one of them
	MaxIDLen     = 256       // length of a container ID
)

// ErrLocked means Weave Net (or something else) has the file open for
// writing: it must be stopped before weaved takes its data.
var ErrLocked = errors.New("weavedb: the file is locked by another process: stop Weave Net first")

// ErrNotWeaveDB means the file is not a Weave Net data file.
var ErrNotWeaveDB = errors.New("weavedb: not a Weave Net data file")

// Data is what Weave Net persisted.
type Data struct {
	// PeerName is the name Weave Net ran under; UnknownPeerName if the
	// file does not record one (IPAM never started).
	PeerName mesh.PeerName
	// Owned are the addresses Weave Net's IPAM gave out on this host,
	// sorted by ID.
	Owned []Owned
	// Ring is the raw gob encoding of Weave Net's ring (nil if absent),
	// for a decoder of that format to use; at most MaxValueSize bytes.
	Ring []byte
}

// Owned is one entry of Weave Net's ownedAddresses.
type Owned struct {
	ID          string // container ID, or "weave:expose" for the host
	IsContainer bool
	Addrs       []netip.Prefix // the address with its subnet's prefix length
}

var (
	topBucket   = []byte("top")
	versionKey  = []byte("version")
	peerNameKey = []byte("peername")
	ringKey     = []byte("ring")
	ownedKey    = []byte("ownedAddresses")
)

// Read opens the file at path read-only and returns what it holds. It
// fails with ErrLocked within about a second if Weave Net still runs on it.
func Read(path string) (*Data, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("weavedb: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrNotWeaveDB, path)
	}
	if fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than %d", ErrNotWeaveDB, path, fi.Size(), MaxFileSize)
	}
	db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w (%s)", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNotWeaveDB, path, err)
	}
	defer db.Close()
	var raw rawValues
	if err := view(db, &raw); err != nil {
		return nil, fmt.Errorf("weavedb: %s: %w", path, err)
	}
	d, err := decode(raw)
	if err != nil {
		return nil, fmt.Errorf("weavedb: %s: %w", path, err)
	}
	return d, nil
}

// rawValues are the bucket's values, copied out of the transaction.
type rawValues struct {
	version, peerName, ring, owned []byte
}

// view copies the values out. bbolt trusts its pages; a damaged file can
// make it panic, which becomes an error here.
func view(db *bolt.DB, raw *rawValues) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: damaged file (%v)", ErrNotWeaveDB, p)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		top := tx.Bucket(topBucket)
		if top == nil {
			return fmt.Errorf("%w: no bucket %q", ErrNotWeaveDB, topBucket)
		}
		get := func(k []byte) ([]byte, error) {
			v := top.Get(k)
			if len(v) > MaxValueSize {
				return nil, fmt.Errorf("%w: value %q is %d bytes, more than %d", ErrNotWeaveDB, k, len(v), MaxValueSize)
			}
			if v == nil {
				return nil, nil
			}
			return bytes.Clone(v), nil
		}
		var err error
		if raw.version, err = get(versionKey); err != nil {
			return err
		}
		if raw.peerName, err = get(peerNameKey); err != nil {
			return err
		}
		if raw.ring, err = get(ringKey); err != nil {
			return err
		}
		raw.owned, err = get(ownedKey)
		return err
	})
}

// The shapes Weave Net gob-encoded; gob matches struct fields by name.
type gobCIDR struct {
	Addr      uint32
	PrefixLen int
}

type gobOwned struct {
	IsContainer bool
	Cidrs       []gobCIDR
}

// decode checks and decodes the values of the top bucket.
func decode(raw rawValues) (*Data, error) {
	// Weave Net writes version 1.0 and refuses another major version.
	if raw.version != nil && (len(raw.version) != 2 || raw.version[0] != 1) {
		return nil, fmt.Errorf("%w: format version %x (want 1.x, as Weave Net 2.x writes)", ErrNotWeaveDB, raw.version)
	}
	d := &Data{}
	if raw.peerName != nil {
		var n uint64
		if err := gobDecode(raw.peerName, &n); err != nil {
			return nil, fmt.Errorf("%w: peer name: %w", ErrNotWeaveDB, err)
		}
		// Peer names are MACs: 48 bits.
		if n == 0 || n>>48 != 0 {
			return nil, fmt.Errorf("%w: peer name %#x is not a MAC", ErrNotWeaveDB, n)
		}
		d.PeerName = mesh.PeerName(n)
	}
	if raw.owned != nil {
		// Made here so that gob does not size it by a count read
		// from the file.
		m := map[string]gobOwned{}
		if err := gobDecode(raw.owned, &m); err != nil {
			return nil, fmt.Errorf("%w: ownedAddresses: %w", ErrNotWeaveDB, err)
		}
		if len(m) > MaxOwners {
			return nil, fmt.Errorf("%w: ownedAddresses has %d entries, more than %d", ErrNotWeaveDB, len(m), MaxOwners)
		}
		for id, o := range m {
			e, err := owned(id, o)
			if err != nil {
				return nil, fmt.Errorf("%w: ownedAddresses: %w", ErrNotWeaveDB, err)
			}
			if len(e.Addrs) > 0 {
				d.Owned = append(d.Owned, e)
			}
		}
		sort.Slice(d.Owned, func(i, j int) bool { return d.Owned[i].ID < d.Owned[j].ID })
	}
	d.Ring = raw.ring
	return d, nil
}

func owned(id string, o gobOwned) (Owned, error) {
	if err := checkID(id); err != nil {
		return Owned{}, err
	}
	if len(o.Cidrs) > MaxAddrs {
		return Owned{}, fmt.Errorf("%q has %d addresses, more than %d", id, len(o.Cidrs), MaxAddrs)
	}
	e := Owned{ID: id, IsContainer: o.IsContainer}
	seen := map[netip.Addr]bool{}
	for _, c := range o.Cidrs {
		if c.PrefixLen < 0 || c.PrefixLen > 32 {
			return Owned{}, fmt.Errorf("%q: prefix length %d", id, c.PrefixLen)
		}
		a := netip.AddrFrom4([4]byte{byte(c.Addr >> 24), byte(c.Addr >> 16), byte(c.Addr >> 8), byte(c.Addr)})
		if seen[a] {
			continue
		}
		seen[a] = true
		e.Addrs = append(e.Addrs, netip.PrefixFrom(a, c.PrefixLen))
	}
	return e, nil
}

// checkID accepts what Docker, CNI and Weave Net use as IDs: printable,
// no spaces or slashes (weaved uses a slash to tell a path from a name).
func checkID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("container ID of %d bytes (want 1-%d)", len(id), MaxIDLen)
	}
	for _, r := range id {
		if r == '/' || r > unicode.MaxASCII || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("container ID %q has the character %q", id, r)
		}
	}
	return nil
}

// gobDecode decodes exactly one value from b.
func gobDecode(b []byte, v any) (err error) {
	defer func() {
		// gob reports bad input as errors; this is a second net for a
		// decoder fed a file that another program wrote.
		if p := recover(); p != nil {
			err = fmt.Errorf("gob: %v", p)
		}
	}()
	r := bytes.NewReader(b)
	if err := gob.NewDecoder(r).Decode(v); err != nil {
		return err
	}
	if r.Len() != 0 {
		return fmt.Errorf("%d trailing bytes", r.Len())
	}
	return nil
}
