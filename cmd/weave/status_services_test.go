package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"weavenet/api"
)

// TestStatusGoldenServices: the Docker services' sections, as in the
// article: Service: proxy with its Address, Service: plugin with its
// DriverName, after the router's, IPAM's and DNS's.
func TestStatusGoldenServices(t *testing.T) {
	rep := threeHosts()
	rep.Proxy = &api.Proxy{Address: "unix:///var/run/weave/weave.sock"}
	rep.Plugin = &api.Plugin{DriverName: "weave", Socket: "unix:///run/docker/plugins/weave.sock", Endpoints: 2}
	var b bytes.Buffer
	renderStatus(&b, rep)
	path := filepath.Join("testdata", "services.golden")
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("weave status:\n%s\nwant:\n%s", b.Bytes(), want)
	}
}
