package weavedb

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// Shaped as Weave Net 2.8's /report (JSON), trimmed to what ReadNames uses
// plus a neighbour of each.
const sampleReport = `{"Ready":true,"Version":"2.8.1","Router":{"Protocol":"weave","Name":"02:00:00:00:00:01","NickName":"h1"},
"DNS":{"Domain":"weave.local.","Upstream":[],"Address":"172.17.0.1:53","TTL":1,"Entries":[
{"Hostname":"c1.weave.local.","Origin":"02:00:00:00:00:01","ContainerID":"abc123","Address":"10.32.0.1","Version":0,"Tombstone":0},
{"Hostname":"gone.weave.local.","Origin":"02:00:00:00:00:01","ContainerID":"def456","Address":"10.32.0.2","Version":1,"Tombstone":1700000000},
{"Hostname":"C2.Weave.Local.","Origin":"02:00:00:00:00:02","ContainerID":"fff","Address":"10.40.0.1","Version":0,"Tombstone":0}]}}`

func TestReadNames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(path, []byte(sampleReport), 0o600); err != nil {
		t.Fatal(err)
	}
	peer, names, err := ReadNames(path)
	if err != nil {
		t.Fatal(err)
	}
	if peer.String() != "02:00:00:00:00:01" {
		t.Errorf("peer = %v", peer)
	}
	if len(names) != 2 || names[0].Hostname != "c1.weave.local." || names[0].Container != "abc123" ||
		names[0].Addr != netip.MustParseAddr("10.32.0.1") || names[1].Hostname != "c2.weave.local." || names[1].Origin.String() != "02:00:00:00:00:02" {
		t.Errorf("names = %+v", names)
	}
}

func TestReadNamesRefuses(t *testing.T) {
	for _, s := range []string{
		`{}`,
		`not json`,
		`{"Router":{"Name":"02:00:00:00:00:01"}}`,
		`{"Router":{"Name":"02:00:00:00:00:01"},"DNS":{"Entries":[{"Hostname":"a b.weave.local.","Origin":"02:00:00:00:00:01","ContainerID":"x","Address":"10.0.0.1"}]}}`,
		`{"Router":{"Name":"02:00:00:00:00:01"},"DNS":{"Entries":[{"Hostname":"a.weave.local.","Origin":"02:00:00:00:00:01","ContainerID":"x","Address":"nope"}]}}`,
		`{"Router":{"Name":"02:00:00:00:00:01"},"DNS":{"Entries":[{"Hostname":"a.weave.local.","Origin":"02:00:00:00:00:01","ContainerID":"../x","Address":"10.0.0.1"}]}}`,
	} {
		if _, _, err := decodeNames([]byte(s)); !errors.Is(err, ErrNotReport) {
			t.Errorf("%s: err = %v, want ErrNotReport", s, err)
		}
	}
}

func FuzzDecodeNames(f *testing.F) {
	f.Add([]byte(sampleReport))
	f.Add([]byte(`{"Router":{"Name":"02:00:00:00:00:01"},"DNS":{"Entries":[]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, names, err := decodeNames(b)
		if err != nil {
			return
		}
		for _, n := range names {
			if _, err := checkHostname(n.Hostname); err != nil || checkID(n.Container) != nil || !n.Addr.IsValid() {
				t.Fatalf("accepted a bad name %+v", n)
			}
		}
	})
}
