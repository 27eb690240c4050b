package weavedb

import (
	"bytes"
	"encoding/gob"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"weavenet/mesh"
)

// writeDB makes a file laid out as Weave Net 2.8 writes it, with the
// given values gob-encoded (nil values are left out).
func writeDB(t *testing.T, vals map[string]any) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "weavedata.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		top, err := tx.CreateBucket(topBucket)
		if err != nil {
			return err
		}
		if err := top.Put(versionKey, []byte{1, 0}); err != nil {
			return err
		}
		for k, v := range vals {
			var buf bytes.Buffer
			if err := gob.NewEncoder(&buf).Encode(v); err != nil {
				return err
			}
			if err := top.Put([]byte(k), buf.Bytes()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// The types Weave Net encodes, under its own names, to show that gob
// matches by field name and basic kind.
type (
	wnAddress uint32
	wnCIDR    struct {
		Addr      wnAddress
		PrefixLen int
	}
	wnOwned struct {
		IsContainer bool
		Cidrs       []wnCIDR
	}
	wnPeerName uint64
)

func TestRead(t *testing.T) {
	name, _ := mesh.PeerNameFromString("02:00:00:00:00:01")
	path := writeDB(t, map[string]any{
		"peername": wnPeerName(name),
		"ownedAddresses": map[string]wnOwned{
			"abc123":       {IsContainer: true, Cidrs: []wnCIDR{{0x0a200001, 12}, {0x0a200005, 12}}},
			"weave:expose": {Cidrs: []wnCIDR{{0x0a200002, 12}}},
			"empty":        {IsContainer: true},
		},
		"peer-reclaim": "ok", // weave-kube's flag: ignored
	})
	d, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if d.PeerName != name {
		t.Errorf("PeerName = %v, want %v", d.PeerName, name)
	}
	want := []Owned{
		{ID: "abc123", IsContainer: true, Addrs: []netip.Prefix{netip.MustParsePrefix("10.32.0.1/12"), netip.MustParsePrefix("10.32.0.5/12")}},
		{ID: "weave:expose", Addrs: []netip.Prefix{netip.MustParsePrefix("10.32.0.2/12")}},
	}
	if len(d.Owned) != len(want) {
		t.Fatalf("Owned = %+v, want %+v", d.Owned, want)
	}
	for i := range want {
		g, w := d.Owned[i], want[i]
		if g.ID != w.ID || g.IsContainer != w.IsContainer || len(g.Addrs) != len(w.Addrs) || g.Addrs[0] != w.Addrs[0] {
			t.Errorf("Owned[%d] = %+v, want %+v", i, g, w)
		}
	}
}

func TestReadEmpty(t *testing.T) {
	d, err := Read(writeDB(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if d.PeerName != mesh.UnknownPeerName || len(d.Owned) != 0 || d.Ring != nil {
		t.Errorf("got %+v from an empty file", d)
	}
}

func TestReadRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals map[string]any
	}{
		{"peer name not a MAC", map[string]any{"peername": uint64(1) << 50}},
		{"peer name wrong type", map[string]any{"peername": "hello"}},
		{"prefix length", map[string]any{"ownedAddresses": map[string]wnOwned{"a": {Cidrs: []wnCIDR{{1, 33}}}}}},
		{"slash in ID", map[string]any{"ownedAddresses": map[string]wnOwned{"../a": {Cidrs: []wnCIDR{{1, 24}}}}}},
		{"owned wrong type", map[string]any{"ownedAddresses": []int{1, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Read(writeDB(t, tc.vals)); !errors.Is(err, ErrNotWeaveDB) {
				t.Errorf("err = %v, want ErrNotWeaveDB", err)
			}
		})
	}
	garbage := filepath.Join(t.TempDir(), "g.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte{0xa5}, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(garbage); !errors.Is(err, ErrNotWeaveDB) {
		t.Errorf("garbage file: err = %v, want ErrNotWeaveDB", err)
	}
}

// Weave Net holds its file open with an exclusive lock while it runs.
func TestReadLocked(t *testing.T) {
	path := writeDB(t, nil)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := time.Now()
	if _, err := Read(path); !errors.Is(err, ErrLocked) {
		t.Errorf("err = %v, want ErrLocked", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Error("Read waited far longer than its timeout")
	}
}

// Reading leaves the file byte for byte as it was, so Weave Net can run
// on it again.
func TestReadWritesNothing(t *testing.T) {
	path := writeDB(t, map[string]any{"peername": uint64(0x020000000001)})
	before, _ := os.ReadFile(path)
	if _, err := Read(path); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("Read changed the file")
	}
}

func TestReadSample(t *testing.T) {
	p := os.Getenv("WEAVEDB_SAMPLE")
	if p == "" {
		t.Skip("WEAVEDB_SAMPLE not set")
	}
	d, err := Read(p)
	t.Logf("%+v %v ring=%d bytes", d, err, len(d.Ring))
}

// FuzzDecode feeds arbitrary values to the decoder of the bucket's values:
// errors are fine, panics and unbounded allocation are not.
func FuzzDecode(f *testing.F) {
	enc := func(v any) []byte {
		var buf bytes.Buffer
		_ = gob.NewEncoder(&buf).Encode(v)
		return buf.Bytes()
	}
	f.Add([]byte{1, 0}, enc(uint64(0x020000000001)), enc(map[string]wnOwned{"abc": {true, []wnCIDR{{0x0a200001, 12}}}}))
	f.Add([]byte(nil), []byte{}, []byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, version, peer, owned []byte) {
		d, err := decode(rawValues{version: version, peerName: peer, owned: owned})
		if err != nil {
			return
		}
		for _, o := range d.Owned {
			if checkID(o.ID) != nil || len(o.Addrs) == 0 || len(o.Addrs) > MaxAddrs {
				t.Fatalf("accepted a bad entry %+v", o)
			}
		}
	})
}
