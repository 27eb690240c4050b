package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// fakeIPAM hands out addresses of its range in order, keyed by address as
// weaved's allocator is.
type fakeIPAM struct {
	mu    sync.Mutex
	whole netip.Prefix
	held  map[netip.Addr]string
	fail  error
}

func newFakeIPAM() *fakeIPAM {
	return &fakeIPAM{whole: netip.MustParsePrefix("10.32.0.0/12"), held: map[netip.Addr]string{}}
}

func (f *fakeIPAM) Range() netip.Prefix         { return f.whole }
func (f *fakeIPAM) DefaultSubnet() netip.Prefix { return f.whole }

func (f *fakeIPAM) Allocate(_ context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return netip.Prefix{}, f.fail
	}
	for a := subnet.Addr().Next(); subnet.Contains(a); a = a.Next() {
		if _, taken := f.held[a]; !taken {
			f.held[a] = owner
			return netip.PrefixFrom(a, subnet.Bits()), nil
		}
	}
	return netip.Prefix{}, errors.New("no free addresses")
}

func (f *fakeIPAM) Claim(_ context.Context, owner string, addr netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o, taken := f.held[addr.Addr()]; taken && o != owner {
		return fmt.Errorf("%v is held by %s", addr, o)
	}
	f.held[addr.Addr()] = owner
	return nil
}

func (f *fakeIPAM) Release(owner string, addr netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held[addr.Addr()] != owner {
		return fmt.Errorf("%v not held by %s", addr, owner)
	}
	delete(f.held, addr.Addr())
	return nil
}

func (f *fakeIPAM) Owned(prefix string) map[string][]netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]netip.Prefix{}
	for a, o := range f.held {
		if strings.HasPrefix(o, prefix) {
			out[o] = append(out[o], netip.PrefixFrom(a, 12))
		}
	}
	return out
}

func (f *fakeIPAM) owner(a string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.held[netip.MustParseAddr(a)]
	return o, ok
}

type fakeLinks struct {
	mu      sync.Mutex
	pairs   map[string]string // host end → peer end
	peerPID map[string]int
}

func (l *fakeLinks) Create(_ context.Context, hostIf, peerIf string, mac net.HardwareAddr, pid int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pairs[hostIf] = peerIf
	l.peerPID[hostIf] = pid
	return nil
}

func (l *fakeLinks) Delete(hostIf string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.pairs, hostIf)
	return nil
}

type rig struct {
	t      *testing.T
	ipam   *fakeIPAM
	links  *fakeLinks
	h      http.Handler
	joined []Endpoint
	left   []Endpoint
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, ipam: newFakeIPAM(), links: &fakeLinks{pairs: map[string]string{}, peerPID: map[string]int{}}}
	d := NewDriver(Config{
		Name: "weave", IPAM: r.ipam, Links: r.links,
		Routes:  []netip.Prefix{netip.MustParsePrefix("169.254.53.53/32")},
		OnJoin:  func(ep Endpoint) { r.joined = append(r.joined, ep) },
		OnLeave: func(ep Endpoint) { r.left = append(r.left, ep) },
	})
	r.h = Handler(d)
	return r
}

// call posts body to path and returns the status and decoded response.
func (r *rig) call(path, body string) (int, map[string]any) {
	r.t.Helper()
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
	var out map[string]any
	if rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			r.t.Fatalf("%s: response %q is not a JSON object: %v", path, rec.Body.String(), err)
		}
	}
	return rec.Code, out
}

// ok posts and fails the test unless the answer is a 200 without Err.
func (r *rig) ok(path, body string) map[string]any {
	r.t.Helper()
	code, out := r.call(path, body)
	if code != http.StatusOK || out["Err"] != nil {
		r.t.Fatalf("%s %s: %d %v", path, body, code, out)
	}
	return out
}

const (
	netID = "5e1a0c1b2b6f4e0c9d7a3f2e1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c"
	epID  = "0f9e8d7c6b5a49382716a5b4c3d2e1f00f9e8d7c6b5a49382716a5b4c3d2e1f0"
	epID2 = "1f9e8d7c6b5a49382716a5b4c3d2e1f00f9e8d7c6b5a49382716a5b4c3d2e1f0"
)

func TestHandshake(t *testing.T) {
	r := newRig(t)
	if got := r.ok("/Plugin.Activate", ""); fmt.Sprint(got["Implements"]) != "[NetworkDriver IpamDriver]" {
		t.Errorf("Activate: %v", got)
	}
	if got := r.ok("/NetworkDriver.GetCapabilities", ""); got["Scope"] != "local" || got["ConnectivityScope"] != "global" {
		t.Errorf("GetCapabilities: %v", got)
	}
	if got := r.ok("/IpamDriver.GetCapabilities", "{}"); got["RequiresMACAddress"] != false {
		t.Errorf("IpamDriver.GetCapabilities: %v", got)
	}
	if got := r.ok("/IpamDriver.GetDefaultAddressSpaces", ""); got["LocalDefaultAddressSpace"] == "" {
		t.Errorf("GetDefaultAddressSpaces: %v", got)
	}
	for _, m := range []string{"DiscoverNew", "DiscoverDelete", "ProgramExternalConnectivity", "RevokeExternalConnectivity"} {
		r.ok("/NetworkDriver."+m, `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`)
	}
	if code, _ := r.call("/NetworkDriver.NoSuchMethod", "{}"); code != http.StatusNotFound {
		t.Errorf("unknown method: %d, want 404 (the engine takes it as not implemented)", code)
	}
}

// The engine's sequence for docker network create, docker run, docker rm.
func TestLifecycle(t *testing.T) {
	r := newRig(t)
	pool := r.ok("/IpamDriver.RequestPool", `{"AddressSpace":"weavelocal","Pool":"","SubPool":"","Options":{},"V6":false}`)
	if pool["PoolID"] != "weave:10.32.0.0/12" || pool["Pool"] != "10.32.0.0/12" {
		t.Fatalf("RequestPool: %v", pool)
	}
	if gw := pool["Data"].(map[string]any)["com.docker.network.gateway"]; gw != "10.32.0.0/12" {
		t.Errorf("RequestPool's stand-in gateway: %v", gw)
	}
	gw := r.ok("/IpamDriver.RequestAddress", `{"PoolID":"weave:10.32.0.0/12","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}`)
	if gw["Address"] != "10.32.0.0/12" || len(r.ipam.held) != 0 {
		t.Errorf("gateway request: %v, held %v", gw, r.ipam.held)
	}
	r.ok("/NetworkDriver.CreateNetwork", `{"NetworkID":"`+netID+`","Options":{"com.docker.network.generic":{}},"IPv4Data":[{"AddressSpace":"weavelocal","Pool":"10.32.0.0/12","Gateway":"10.32.0.0/12"}],"IPv6Data":[]}`)

	addr := r.ok("/IpamDriver.RequestAddress", `{"PoolID":"weave:10.32.0.0/12","Address":"","Options":{}}`)
	if addr["Address"] != "10.32.0.1/12" {
		t.Fatalf("RequestAddress: %v", addr)
	}
	owner, ok := r.ipam.owner("10.32.0.1")
	if !ok || !strings.HasPrefix(owner, OwnerPrefix) {
		t.Fatalf("10.32.0.1 held by %q", owner)
	}
	ep := r.ok("/NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","Interface":{"Address":"10.32.0.1/12","MacAddress":""},"Options":{}}`)
	if ep["Interface"] != nil {
		t.Errorf("CreateEndpoint echoed an interface the engine gave: %v", ep)
	}
	r.ok("/NetworkDriver.EndpointOperInfo", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`)
	join := r.ok("/NetworkDriver.Join", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","SandboxKey":"/var/run/docker/netns/abc","Options":{}}`)
	hostIf, peerIf := VethNames(epID)
	want := `map[DstPrefix:ethwe SrcName:` + peerIf + `]`
	if got := fmt.Sprint(join["InterfaceName"]); got != want {
		t.Errorf("Join InterfaceName %s, want %s", got, want)
	}
	if got := fmt.Sprint(join["StaticRoutes"]); got != "[map[Destination:169.254.53.53/32 RouteType:1]]" {
		t.Errorf("Join StaticRoutes %s", got)
	}
	if join["Gateway"] != nil {
		t.Errorf("Join gave a gateway: %v", join["Gateway"])
	}
	if r.links.pairs[hostIf] != peerIf || len(hostIf) > 15 {
		t.Errorf("pairs %v, want %s-%s", r.links.pairs, hostIf, peerIf)
	}
	if len(r.joined) != 1 || r.joined[0].Addr.String() != "10.32.0.1/12" || r.joined[0].NetworkID != netID {
		t.Errorf("OnJoin heard %v", r.joined)
	}
	r.ok("/NetworkDriver.Leave", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`)
	if len(r.left) != 1 || r.left[0].EndpointID != epID {
		t.Errorf("OnLeave heard %v", r.left)
	}

	// A bound address is not freed by a stray ReleaseAddress.
	r.ok("/NetworkDriver.DeleteEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`)
	if _, ok := r.ipam.owner("10.32.0.1"); ok || len(r.links.pairs) != 0 {
		t.Fatalf("after DeleteEndpoint: held %v, pairs %v", r.ipam.held, r.links.pairs)
	}
	// Another container gets the address before the engine's trailing
	// ReleaseAddress of the old one: that must not free the new holder's.
	again := r.ok("/IpamDriver.RequestAddress", `{"PoolID":"weave:10.32.0.0/12","Address":"","Options":{}}`)
	if again["Address"] != "10.32.0.1/12" {
		t.Fatalf("reallocation: %v", again)
	}
	r.ok("/IpamDriver.ReleaseAddress", `{"PoolID":"weave:10.32.0.0/12","Address":"10.32.0.1"}`)
	if _, ok := r.ipam.owner("10.32.0.1"); !ok {
		t.Fatal("the trailing ReleaseAddress freed the new holder's address")
	}
	// The new holder's own rollback (no endpoint made) does free it.
	r.ok("/IpamDriver.ReleaseAddress", `{"PoolID":"weave:10.32.0.0/12","Address":"10.32.0.1"}`)
	if _, ok := r.ipam.owner("10.32.0.1"); ok {
		t.Fatal("ReleaseAddress left the address held")
	}
	// Releasing what nobody holds, and the stand-in gateway, is success.
	r.ok("/IpamDriver.ReleaseAddress", `{"PoolID":"weave:10.32.0.0/12","Address":"10.32.0.9"}`)
	r.ok("/IpamDriver.ReleaseAddress", `{"PoolID":"weave:10.32.0.0/12","Address":"10.32.0.0"}`)
	r.ok("/NetworkDriver.DeleteNetwork", `{"NetworkID":"`+netID+`"}`)
	r.ok("/IpamDriver.ReleasePool", `{"PoolID":"weave:10.32.0.0/12"}`)
}

func TestPools(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		body, poolID string
	}{
		{`{"Pool":"10.32.4.0/24"}`, "weave:10.32.4.0/24"},
		{`{"Pool":"10.32.4.7/24"}`, "weave:10.32.4.0/24"},
		{`{"Pool":"10.32.0.0/16","SubPool":"10.32.9.0/24"}`, "weave:10.32.0.0/16:10.32.9.0/24"},
	} {
		if got := r.ok("/IpamDriver.RequestPool", tc.body); got["PoolID"] != tc.poolID {
			t.Errorf("RequestPool %s: %v, want %s", tc.body, got, tc.poolID)
		}
	}
	for _, body := range []string{
		`{"Pool":"192.168.0.0/24"}`,                        // outside the range
		`{"Pool":"10.0.0.0/8"}`,                            // wider than the range
		`{"Pool":"10.32.0.0/31"}`,                          // no usable addresses
		`{"Pool":"fd00::/64"}`,                             // IPv6
		`{"V6":true}`,                                      // IPv6
		`{"Pool":"10.32.4.0/24","SubPool":"10.33.0.0/24"}`, // range outside the subnet
		`{"Pool":"nonsense"}`,
	} {
		if code, out := r.call("/IpamDriver.RequestPool", body); code == http.StatusOK || out["Err"] == nil {
			t.Errorf("RequestPool %s: %d %v, want an Err", body, code, out)
		}
	}
	// From the --ip-range, with the subnet's length.
	got := r.ok("/IpamDriver.RequestAddress", `{"PoolID":"weave:10.32.0.0/16:10.32.9.0/24"}`)
	if got["Address"] != "10.32.9.1/16" {
		t.Errorf("RequestAddress in an --ip-range: %v", got)
	}
	// --ip: exactly that address, once.
	if got := r.ok("/IpamDriver.RequestAddress", `{"PoolID":"weave:10.32.4.0/24","Address":"10.32.4.20"}`); got["Address"] != "10.32.4.20/24" {
		t.Errorf("RequestAddress --ip: %v", got)
	}
	if code, out := r.call("/IpamDriver.RequestAddress", `{"PoolID":"weave:10.32.4.0/24","Address":"10.32.4.20"}`); code == http.StatusOK {
		t.Errorf("the same --ip twice: %d %v", code, out)
	}
	for _, body := range []string{
		`{"PoolID":"weave:10.32.4.0/24","Address":"10.40.0.1"}`, // outside the subnet
		`{"PoolID":"weave:10.32.4.0/24","Address":"10.32.4.0"}`, // the network address
		`{"PoolID":"other:10.32.4.0/24"}`,
		`{"PoolID":"weave:10.32.4.1/24"}`, // not a masked subnet
	} {
		if code, _ := r.call("/IpamDriver.RequestAddress", body); code == http.StatusOK {
			t.Errorf("RequestAddress %s: accepted", body)
		}
	}
	r.ipam.fail = errors.New("refusing to allocate: cannot agree")
	if code, out := r.call("/IpamDriver.RequestAddress", `{"PoolID":"weave:10.32.4.0/24"}`); code != http.StatusInternalServerError || !strings.Contains(fmt.Sprint(out["Err"]), "cannot agree") {
		t.Errorf("allocator failure: %d %v, want 500 with its reason", code, out)
	}
}

func TestBadRequests(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct{ path, body string }{
		{"/NetworkDriver.CreateEndpoint", `{"NetworkID":`},
		{"/NetworkDriver.CreateEndpoint", `{"NetworkID":"` + netID + `","EndpointID":"` + epID + `"} {}`},
		{"/NetworkDriver.CreateEndpoint", `{"NetworkID":"` + netID + `","EndpointID":"../../x","Interface":{"Address":"10.32.0.1/12"}}`},
		{"/NetworkDriver.CreateEndpoint", `{"NetworkID":"","EndpointID":"` + epID + `","Interface":{"Address":"10.32.0.1/12"}}`},
		{"/NetworkDriver.CreateEndpoint", `{"NetworkID":"` + netID + `","EndpointID":"` + epID + `","Interface":{"Address":"fd00::1/64"}}`},
		{"/NetworkDriver.Join", `{"NetworkID":"` + netID + `","EndpointID":"` + strings.Repeat("a", 200) + `"}`},
		{"/NetworkDriver.Join", `[1,2,3]`},
		{"/IpamDriver.ReleaseAddress", `{"PoolID":"weave:10.32.0.0/12","Address":"nope"}`},
		{"/IpamDriver.RequestPool", `{"Pool":` + strings.Repeat(" ", maxBody) + `"10.32.0.0/12"}`},
	} {
		if code, out := r.call(tc.path, tc.body); code != http.StatusBadRequest || out["Err"] == nil {
			t.Errorf("%s %.60s: %d %v, want 400 with Err", tc.path, tc.body, code, out)
		}
	}
	// Decoded, but not something the driver can do: an Err, 500.
	if code, out := r.call("/NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`); code != http.StatusInternalServerError || !strings.Contains(fmt.Sprint(out["Err"]), "--ipam-driver weave") {
		t.Errorf("CreateEndpoint without an address: %d %v", code, out)
	}
	if code, out := r.call("/NetworkDriver.Join", `{"NetworkID":"`+netID+`","EndpointID":"`+epID2+`"}`); code != http.StatusInternalServerError || out["Err"] == nil {
		t.Errorf("Join of an unknown endpoint: %d %v", code, out)
	}
	if code, _ := r.call("/NetworkDriver.CreateNetwork", `{"NetworkID":"`+netID+`","IPv6Data":[{"Pool":"fd00::/64"}]}`); code == http.StatusOK {
		t.Error("CreateNetwork with IPv6 accepted")
	}
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/Plugin.Activate", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", rec.Code)
	}
}

func TestVethNames(t *testing.T) {
	h1, p1 := VethNames(epID)
	h2, p2 := VethNames(epID2)
	if h1 == h2 || p1 == p2 || h1 == p1 {
		t.Errorf("names collide: %s %s %s %s", h1, p1, h2, p2)
	}
	for _, n := range []string{h1, p1, h2, p2} {
		if len(n) > 15 || strings.HasPrefix(n, "vethwe") {
			t.Errorf("%q: want at most 15 characters, not weave attach's vethwe prefix", n)
		}
	}
	if a, _ := VethNames(epID); a != h1 {
		t.Error("names not stable")
	}
}

func TestTombstonesBounded(t *testing.T) {
	d := NewDriver(Config{Name: "weave", IPAM: newFakeIPAM(), Links: &fakeLinks{pairs: map[string]string{}, peerPID: map[string]int{}}})
	a := netip.MustParseAddr("10.32.0.1")
	for i := 0; i < 3*maxTombstones; i++ {
		d.tombstone(a)
		a = a.Next()
	}
	if len(d.tombstones) != maxTombstones || len(d.tombOrder) != maxTombstones {
		t.Errorf("%d tombstones (%d in order), want %d", len(d.tombstones), len(d.tombOrder), maxTombstones)
	}
}

// An endpoint taken up after a restart is deleted and released as one of
// this run's.
func TestRestore(t *testing.T) {
	r := newRig(t)
	r.ok("/IpamDriver.RequestAddress", `{"PoolID":"weave:10.32.0.0/12"}`)
	d := NewDriver(Config{Name: "weave", IPAM: r.ipam, Links: r.links}) // the restarted daemon
	r.h = Handler(d)
	d.Restore(Endpoint{NetworkID: netID, EndpointID: epID, Addr: netip.MustParsePrefix("10.32.0.1/12")})
	if d.Endpoints() != 1 {
		t.Fatalf("%d endpoints after Restore", d.Endpoints())
	}
	r.ok("/NetworkDriver.Leave", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`)
	r.ok("/NetworkDriver.DeleteEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`)
	if _, ok := r.ipam.owner("10.32.0.1"); ok || d.Endpoints() != 0 {
		t.Fatalf("after DeleteEndpoint: held %v, %d endpoints", r.ipam.held, d.Endpoints())
	}
	r.ok("/IpamDriver.ReleaseAddress", `{"PoolID":"weave:10.32.0.0/12","Address":"10.32.0.1"}`)
}

// The container end's MAC: the engine's (--mac-address) when it gives
// one, else derived from the endpoint, locally administered unicast.
func TestEndpointMAC(t *testing.T) {
	r := newRig(t)
	r.ok("/NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","Interface":{"Address":"10.32.0.1/12"}}`)
	r.ok("/NetworkDriver.Join", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`)
	r.ok("/NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID2+`","Interface":{"Address":"10.32.0.2/12","MacAddress":"02:42:0a:20:00:02"}}`)
	r.ok("/NetworkDriver.Join", `{"NetworkID":"`+netID+`","EndpointID":"`+epID2+`"}`)
	derived := EndpointMAC(epID)
	if derived[0]&1 != 0 || derived[0]&2 == 0 || derived.String() == EndpointMAC(epID2).String() {
		t.Errorf("derived MAC %v: want locally administered unicast, distinct per endpoint", derived)
	}
	if len(r.joined) != 2 || r.joined[0].MAC.String() != derived.String() || r.joined[1].MAC.String() != "02:42:0a:20:00:02" {
		t.Errorf("joined %v", r.joined)
	}
	if code, _ := r.call("/NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","Interface":{"Address":"10.32.0.1/12","MacAddress":"nope"}}`); code != http.StatusBadRequest {
		t.Errorf("a bad MacAddress: %d, want 400", code)
	}
}
