package plugin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

var fuzzPaths = []string{
	"/Plugin.Activate",
	"/NetworkDriver.GetCapabilities",
	"/NetworkDriver.CreateNetwork",
	"/NetworkDriver.DeleteNetwork",
	"/NetworkDriver.CreateEndpoint",
	"/NetworkDriver.EndpointOperInfo",
	"/NetworkDriver.DeleteEndpoint",
	"/NetworkDriver.Join",
	"/NetworkDriver.Leave",
	"/IpamDriver.RequestPool",
	"/IpamDriver.ReleasePool",
	"/IpamDriver.RequestAddress",
	"/IpamDriver.ReleaseAddress",
}

// FuzzRequests: whatever the body of whichever method, the plugin answers
// 200, 400 or 500 with a JSON object (an Err on failure), and never panics.
// The driver keeps its state across inputs, so sequences are exercised too.
func FuzzRequests(f *testing.F) {
	seeds := []struct {
		path int
		body string
	}{
		{0, ""},
		{2, `{"NetworkID":"` + netID + `","Options":{"com.docker.network.generic":{"a":"b"}},"IPv4Data":[{"Pool":"10.32.0.0/12","Gateway":"10.32.0.0/12","AuxAddresses":{"x":"10.32.0.3"}}]}`},
		{4, `{"NetworkID":"` + netID + `","EndpointID":"` + epID + `","Interface":{"Address":"10.32.0.1/12"}}`},
		{7, `{"NetworkID":"` + netID + `","EndpointID":"` + epID + `","SandboxKey":"/x","Options":{"k":[1,{"a":null}]}}`},
		{6, `{"NetworkID":"` + netID + `","EndpointID":"` + epID + `"}`},
		{9, `{"AddressSpace":"weavelocal","Pool":"10.32.4.0/24","SubPool":"10.32.4.128/25","Options":{"a":"b"},"V6":false}`},
		{11, `{"PoolID":"weave:10.32.0.0/16:10.32.9.0/24","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}`},
		{11, `{"PoolID":"weave:10.32.4.0/24","Address":"10.32.4.9"}`},
		{12, `{"PoolID":"weave:10.32.4.0/24","Address":"10.32.4.9"}`},
		{3, `{"NetworkID":1}`},
		{8, `{"EndpointID":"\u0000"}`},
	}
	for _, s := range seeds {
		f.Add(uint8(s.path), s.body)
	}
	r := newRig(&testing.T{})
	f.Fuzz(func(t *testing.T, path uint8, body string) {
		p := fuzzPaths[int(path)%len(fuzzPaths)]
		rec := httptest.NewRecorder()
		r.h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, p, strings.NewReader(body)))
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusInternalServerError:
		default:
			t.Fatalf("%s %q: status %d", p, body, rec.Code)
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %q: response %q is not a JSON object: %v", p, body, rec.Body.String(), err)
		}
		if rec.Code != http.StatusOK && out["Err"] == nil {
			t.Fatalf("%s %q: status %d without Err", p, body, rec.Code)
		}
		if len(r.ipam.held) > 10000 {
			r.ipam.held = map[netip.Addr]string{}
		}
	})
}
