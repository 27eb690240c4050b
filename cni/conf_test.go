package cni

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"weavenet/api"
)

func TestParseNetConfDefaults(t *testing.T) {
	t.Setenv(api.AddrEnv, "")
	c, err := ParseNetConf([]byte(`{"cniVersion":"1.1.0","name":"weave","type":"weave-net"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon != api.DefaultAddr || c.Bridge != "weave" || c.HairpinMode == nil || !*c.HairpinMode || c.MTU != 0 || c.IPAM.Type != "" {
		t.Errorf("defaults: %+v", c)
	}
	c, err = ParseNetConf([]byte(`{"cniVersion":"0.3.1","name":"n","type":"weave-net","daemon":"10.0.0.1:7000","bridge":"br1",
		"mtu":1400,"hairpinMode":false,"ipam":{"type":"weave-ipam","subnet":"10.40.0.0/16","routes":[{"dst":"10.0.0.0/8"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon != "10.0.0.1:7000" || c.Bridge != "br1" || *c.HairpinMode || c.MTU != 1400 || c.IPAM.Type != "weave-ipam" ||
		c.IPAM.Subnet != "10.40.0.0/16" || len(c.IPAM.Routes) != 1 || c.IPAM.Routes[0].Dst.String() != "10.0.0.0/8" {
		t.Errorf("explicit: %+v %+v", c, c.IPAM)
	}
}

func TestParseNetConfRefuses(t *testing.T) {
	for _, tc := range []struct{ conf, want string }{
		{`{"cniVersion":"1.1.0","type":"weave-net"}`, "no network name"},
		{`{"cniVersion":"1.1.0","name":"a:b"}`, "no colons"},
		{`{"cniVersion":"x.y","name":"n"}`, "cniVersion"},
		{`{"cniVersion":"1.1.0","name":"n","daemon":"nowhere"}`, "unix:///PATH or HOST:PORT"},
		{`{"cniVersion":"1.1.0","name":"n","daemon":"unix://weaved.sock"}`, "absolute"},
		{`{"cniVersion":"1.1.0","name":"n","isGateway":true}`, "isGateway"},
		{`{"cniVersion":"1.1.0","name":"n","ipMasq":true}`, "ipMasq"},
		{`{"cniVersion":"1.1.0","name":"n","mtu":100}`, "mtu"},
		{`{"cniVersion":"1.1.0","name":"n","bridge":"a/b"}`, "bridge"},
		{`{"cniVersion":"1.1.0","name":"n","ipam":{"subnet":"fd00::/64"}}`, "IPv4 CIDR"},
		{`{"cniVersion":"1.1.0","name":"n","ipam":{"routes":[{}]}}`, "without dst"},
		{`{"cniVersion":`, "configuration"},
	} {
		_, err := ParseNetConf([]byte(tc.conf))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error about %q", tc.conf, err, tc.want)
		}
	}
}

func TestParseIPAMNetConf(t *testing.T) {
	t.Setenv(api.AddrEnv, "")
	c, err := ParseIPAMNetConf([]byte(`{"cniVersion":"1.0.0","name":"n","daemon":"127.0.0.1:1","ipam":{"type":"weave-ipam","daemon":"unix:///run/w/weaved.sock"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon != "unix:///run/w/weaved.sock" {
		t.Errorf("ipam.daemon should win over daemon: %q", c.Daemon)
	}
	c, err = ParseIPAMNetConf([]byte(`{"name":"n","ipam":{"type":"weave-ipam"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon != api.DefaultAddr || c.CNIVersion != "0.3.0" {
		t.Errorf("defaults: daemon %q version %q", c.Daemon, c.CNIVersion)
	}
}

func TestOwnerRoundTrip(t *testing.T) {
	for _, tc := range []struct{ net, cid, ifn string }{
		{"weave", "abc123", "eth0"},
		{"k8s-pod-network", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "net1"},
		{"n.1_x", "c-1.2_3", "e"},
	} {
		o := Owner(tc.net, tc.cid, tc.ifn)
		cid, ifn, ok := ParseOwner(tc.net, o)
		if !ok || cid != tc.cid || ifn != tc.ifn {
			t.Errorf("%q: got %q %q %v", o, cid, ifn, ok)
		}
		if _, _, ok := ParseOwner(tc.net+"x", o); ok {
			t.Errorf("%q parsed as an owner of network %sx", o, tc.net)
		}
	}
	for _, o := range []string{"c1", "weave:expose", "cni:weave:", "cni:weave:cid", "cni:weave::eth0", "cni:weave:cid:", "cni:weave:cid:a:b", "cni:other:cid:eth0"} {
		if cid, ifn, ok := ParseOwner("weave", o); ok {
			t.Errorf("%q parsed as %q %q", o, cid, ifn)
		}
	}
}

func TestDerivedNames(t *testing.T) {
	a, b := hostVethName(Owner("weave", "c1", "eth0")), hostVethName(Owner("weave", "c1", "eth1"))
	if len(a) > 15 || !strings.HasPrefix(a, "vethwc") || a == b {
		t.Errorf("names %q %q", a, b)
	}
	if a != hostVethName(Owner("weave", "c1", "eth0")) {
		t.Error("not deterministic")
	}
	m := podMAC(Owner("weave", "c1", "eth0"))
	if m[0]&1 != 0 || m[0]&2 == 0 || m.String() != podMAC(Owner("weave", "c1", "eth0")).String() || m.String() == podMAC(Owner("weave", "c1", "eth1")).String() {
		t.Errorf("pod MAC %v: want a stable, locally administered unicast address per attachment", m)
	}
}

// The plugins answer VERSION with every supported version, and the result
// of an ADD converts to each version a conf may ask for, keeping the
// address, the gateway and the routes.
func TestVersions(t *testing.T) {
	got := PluginInfo().SupportedVersions()
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		if !slices.Contains(got, v) {
			t.Errorf("VERSION lacks %s: %v", v, got)
		}
	}
	if slices.Contains(got, "0.2.0") {
		t.Errorf("VERSION claims 0.2.0")
	}
	var rec version.Reconciler
	if err := rec.Check("0.2.0", PluginInfo()); err == nil {
		t.Error("a 0.2.0 conf is accepted")
	}
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: "vethwc1"}, {Name: "eth0", Sandbox: "/var/run/netns/p"}},
		IPs:        []*current.IPConfig{{Address: mustCIDR(t, "10.32.0.5/12"), Gateway: net.ParseIP("10.32.0.1"), Interface: current.Int(1)}},
		Routes:     []*types.Route{{Dst: mustCIDR(t, "0.0.0.0/0")}},
	}
	for _, v := range SupportedVersions {
		r, err := res.GetAsVersion(v)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m["cniVersion"] != v {
			t.Errorf("%s: result says cniVersion %v", v, m["cniVersion"])
		}
		s := string(b)
		for _, want := range []string{"10.32.0.5/12", "10.32.0.1", "0.0.0.0/0", "eth0"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s: result %s lacks %s", v, s, want)
			}
		}
		// Back to the current version, as CHECK reads a cached result.
		back, err := current.NewResultFromResult(r)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if p, ok := prefixOf(back.IPs[0].Address); !ok || p.String() != "10.32.0.5/12" {
			t.Errorf("%s: round trip gives %v", v, back.IPs[0].Address)
		}
	}
}

func TestConflist(t *testing.T) {
	t.Setenv(api.AddrEnv, "")
	var l struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(Conflist("", true), &l); err != nil {
		t.Fatal(err)
	}
	if l.CNIVersion != "1.1.0" || l.Name != "weave" || len(l.Plugins) != 2 || l.Plugins[0]["type"] != "weave-net" ||
		l.Plugins[0]["daemon"] != api.DefaultAddr || l.Plugins[1]["type"] != "portmap" {
		t.Errorf("conflist: %+v", l)
	}
	if err := json.Unmarshal(Conflist("10.1.1.1:1", false), &l); err != nil || len(l.Plugins) != 1 || l.Plugins[0]["daemon"] != "10.1.1.1:1" {
		t.Errorf("without portmap: %+v %v", l, err)
	}
}

func FuzzParseNetConf(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"weave","ipam":{"subnet":"10.32.0.0/12","routes":[{"dst":"0.0.0.0/0"}]},"prevResult":{"ips":[]}}`))
	f.Add([]byte(`{"name":"n","cni.dev/valid-attachments":[{"containerID":"a","ifname":"b"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := ParseNetConf(b); err == nil {
			if c.Name == "" || c.Daemon == "" || c.Bridge == "" {
				t.Errorf("accepted without defaults: %+v", c)
			}
			_, _ = prevResult(&c.PluginConf)
		}
		_, _ = ParseIPAMNetConf(b)
	})
}

func mustCIDR(t *testing.T, s string) net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip.To4()
	return *n
}

func TestInstall(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	for _, name := range []string{"weave-net", "weave-ipam"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte("#!/bin/true\n"+name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	in := Install{SrcDir: src, BinDir: filepath.Join(dst, "bin"), ConfDir: filepath.Join(dst, "net.d"), Daemon: "127.0.0.1:7000"}
	for range 2 { // again over what the first run left
		if err := in.Run(); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"weave-net", "weave-ipam"} {
		st, err := os.Stat(filepath.Join(dst, "bin", name))
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v", name, st, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dst, "net.d", ConflistName))
	if err != nil || !strings.Contains(string(b), "127.0.0.1:7000") || !strings.Contains(string(b), "portmap") {
		t.Errorf("conflist %s: %v", b, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dst, "*", ".*tmp*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if err := (Install{SrcDir: t.TempDir(), BinDir: dst, ConfDir: dst}).Run(); err == nil {
		t.Error("installing from a dir without the plugins succeeds")
	}
}
