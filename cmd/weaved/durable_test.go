package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "containers.json")
	for _, want := range []string{"first", "second, longer", "3"} {
		if err := writeFileDurable(path, []byte(want), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Fatalf("read back %q, %v; want %q", got, err, want)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	// A directory that cannot hold the file: an error, the old file kept.
	if err := writeFileDurable(filepath.Join(t.TempDir(), "no", "such"), []byte("x"), 0o600); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}
