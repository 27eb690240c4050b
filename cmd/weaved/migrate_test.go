package main

import (
	"bytes"
	"encoding/gob"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// weaveFile writes a data file as Weave Net 2.8 does, for peer name (a
// MAC as a number) with one container.
func weaveFile(t *testing.T, name uint64) string {
	t.Helper()
	type cidr struct {
		Addr      uint32
		PrefixLen int
	}
	type owned struct {
		IsContainer bool
		Cidrs       []cidr
	}
	path := filepath.Join(t.TempDir(), "weave-netdata.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		top, err := tx.CreateBucket([]byte("top"))
		if err != nil {
			return err
		}
		for k, v := range map[string]any{"peername": name, "ownedAddresses": map[string]owned{"abc": {true, []cidr{{0x0a200001, 12}}}}} {
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

func TestMigrateConfig(t *testing.T) {
	file := weaveFile(t, 0x025700000001)

	c := config{dataDir: t.TempDir(), mode: modeBridge}
	if err := migrateConfig(file, "", &c); err != nil {
		t.Fatal(err)
	}
	if c.name != "02:57:00:00:00:01" || c.migration == nil || len(c.migration.Owned) != 1 || c.migration.Owned[0].ID != "abc" {
		t.Fatalf("name %q, migration %+v", c.name, c.migration)
	}

	// The same name given by hand is fine (any spelling); another is a
	// one-line error naming both.
	c = config{dataDir: t.TempDir(), mode: modeBridge, name: "02:57:00:00:00:01"}
	if err := migrateConfig(file, "", &c); err != nil {
		t.Fatal(err)
	}
	c = config{dataDir: t.TempDir(), mode: modeBridge, name: "02:57:00:00:00:02"}
	err := migrateConfig(file, "", &c)
	if err == nil || !strings.Contains(err.Error(), "02:57:00:00:00:02") || !strings.Contains(err.Error(), "02:57:00:00:00:01") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("conflicting --name: %v", err)
	}

	for _, tc := range []struct {
		from, names, mode, want string
	}{
		{"", "report.json", modeBridge, "--migrate-names needs --migrate-from"},
		{file, "", modeL3, "needs --mode bridge"},
		{filepath.Join(t.TempDir(), "none.db"), "", modeBridge, "--migrate-from"},
	} {
		c := config{dataDir: t.TempDir(), mode: tc.mode}
		if err := migrateConfig(tc.from, tc.names, &c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("migrateConfig(%q, %q) in %s: %v, want %q", tc.from, tc.names, tc.mode, err, tc.want)
		}
	}

	// Once the import is done, Weave Net's file is not needed again.
	dir := t.TempDir()
	if err := writeMigration(dir, &migration{From: file, PeerName: "02:57:00:00:00:01", Done: true}); err != nil {
		t.Fatal(err)
	}
	c = config{dataDir: dir, mode: modeBridge}
	if err := migrateConfig(filepath.Join(t.TempDir(), "gone.db"), "", &c); err != nil || c.name != "02:57:00:00:00:01" || c.migration != nil {
		t.Fatalf("after a finished import: name %q, migration %+v, err %v", c.name, c.migration, err)
	}
}
