package proxy

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
)

func TestParseWeaveCIDR(t *testing.T) {
	for _, tc := range []struct {
		env   []string
		addrs []string
		none  bool
		bad   bool
	}{
		{env: nil, addrs: []string{"net:default"}},
		{env: []string{"PATH=/bin"}, addrs: []string{"net:default"}},
		{env: []string{"WEAVE_CIDR="}, addrs: []string{"net:default"}},
		{env: []string{"WEAVE_CIDR=10.2.1.2/24"}, addrs: []string{"10.2.1.2/24"}},
		{env: []string{"WEAVE_CIDR=net:default net:10.2.2.0/24"}, addrs: []string{"net:default", "net:10.2.2.0/24"}},
		{env: []string{"WEAVE_CIDR=net:10.2.2.7/24 net:10.2.2.0/24"}, addrs: []string{"net:10.2.2.0/24"}},
		{env: []string{"WEAVE_CIDR=  10.2.1.2/24   10.2.1.2/24 "}, addrs: []string{"10.2.1.2/24"}},
		{env: []string{"WEAVE_CIDR=10.9.9.9/24", "WEAVE_CIDR=none"}, none: true},
		{env: []string{"WEAVE_CIDR=none"}, none: true},
		{env: []string{"WEAVE_CIDR=none 10.2.1.2/24"}, bad: true},
		{env: []string{"WEAVE_CIDR=10.2.1.2"}, bad: true},
		{env: []string{"WEAVE_CIDR=net:fish"}, bad: true},
		{env: []string{"WEAVE_CIDR=fd00::1/64"}, bad: true},
		{env: []string{"WEAVE_CIDR=" + repeat("net:default ", maxAddrs+1)}, bad: true},
		{env: []string{"XWEAVE_CIDR=none"}, addrs: []string{"net:default"}},
	} {
		addrs, none, err := parseWeaveCIDR(tc.env)
		if (err != nil) != tc.bad || none != tc.none || !slices.Equal(addrs, tc.addrs) {
			t.Errorf("parseWeaveCIDR(%q) = %q, %v, %v; want %q, none %v, error %v", tc.env, addrs, none, err, tc.addrs, tc.none, tc.bad)
		}
	}
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

func TestLeftAlone(t *testing.T) {
	for mode, want := range map[string]bool{"host": true, "container:abc": true, "": false, "default": false, "bridge": false, "none": false, "mynet": false} {
		if leftAlone(mode) != want {
			t.Errorf("leftAlone(%q) = %v", mode, !want)
		}
	}
}

var testOpts = createOptions{WaitBinary: "/usr/bin/weavewait", Domain: "weave.local.", DNSServer: "169.254.53.53"}

func image(ep, cmd []string) func(string) (imageConfig, error) {
	return func(string) (imageConfig, error) { return imageConfig{Entrypoint: ep, Cmd: cmd}, nil }
}

func noImage(string) (imageConfig, error) { return imageConfig{}, errors.New("image asked") }

func decodeOut(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("rewritten body: %v\n%s", err, b)
	}
	return m
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestRewriteCreate(t *testing.T) {
	in := `{"Image":"bb","Cmd":["top"],"Env":["WEAVE_CIDR=net:default net:10.2.2.0/24"],"Labels":{"a":"b"},"StopTimeout":10,"HostConfig":{"Binds":["/data:/data"],"Memory":12345678901234567}}`
	plan, err := rewriteCreate([]byte(in), "/c1", testOpts, image([]string{"/init"}, []string{"sh"}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(plan.Addrs, []string{"net:default", "net:10.2.2.0/24"}) {
		t.Errorf("addrs %q", plan.Addrs)
	}
	m := decodeOut(t, plan.Body)
	if got, want := strs(m["Entrypoint"]), []string{waitPath, "-n", "2", "--", "/init"}; !slices.Equal(got, want) {
		t.Errorf("Entrypoint %q, want %q", got, want)
	}
	if got := strs(m["Cmd"]); !slices.Equal(got, []string{"top"}) {
		t.Errorf("Cmd %q", got)
	}
	if m["Hostname"] != "c1" || m["Domainname"] != "weave.local" {
		t.Errorf("Hostname %v Domainname %v", m["Hostname"], m["Domainname"])
	}
	hc := m["HostConfig"].(map[string]any)
	if got, want := strs(hc["Binds"]), []string{"/data:/data", "/usr/bin/weavewait:" + waitPath + ":ro"}; !slices.Equal(got, want) {
		t.Errorf("Binds %q", got)
	}
	if !slices.Equal(strs(hc["Dns"]), []string{"169.254.53.53"}) || !slices.Equal(strs(hc["DnsSearch"]), []string{"weave.local"}) {
		t.Errorf("Dns %v DnsSearch %v", hc["Dns"], hc["DnsSearch"])
	}
	// What we do not touch reaches Docker byte for byte.
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(plan.Body, &raw)
	var rawHC map[string]json.RawMessage
	_ = json.Unmarshal(raw["HostConfig"], &rawHC)
	if string(raw["Labels"]) != `{"a":"b"}` || string(raw["StopTimeout"]) != "10" || string(rawHC["Memory"]) != "12345678901234567" {
		t.Errorf("untouched fields changed: %s", plan.Body)
	}
}

// Docker takes the image's entrypoint and command only where the request
// leaves them out, and its command only while no entrypoint is named.
func TestRewriteCreateMergesImage(t *testing.T) {
	for _, tc := range []struct {
		name          string
		body          string
		img           imageConfig
		wantEP, wantC []string
	}{
		{"image both", `{"Image":"i"}`, imageConfig{[]string{"/ep"}, []string{"a"}}, []string{"/ep"}, []string{"a"}},
		{"request cmd", `{"Image":"i","Cmd":"b"}`, imageConfig{[]string{"/ep"}, []string{"a"}}, []string{"/ep"}, []string{"b"}},
		{"request entrypoint drops image cmd", `{"Image":"i","Entrypoint":["/x"]}`, imageConfig{[]string{"/ep"}, []string{"a"}}, []string{"/x"}, []string{}},
		{"entrypoint cleared", `{"Image":"i","Entrypoint":[""]}`, imageConfig{[]string{"/ep"}, []string{"a"}}, nil, []string{"a"}},
		{"entrypoint cleared, cmd given", `{"Image":"i","Entrypoint":"","Cmd":["ls","-l"]}`, imageConfig{[]string{"/ep"}, []string{"a"}}, nil, []string{"ls", "-l"}},
		{"no image entrypoint", `{"Image":"i","Cmd":null}`, imageConfig{nil, []string{"sh"}}, nil, []string{"sh"}},
	} {
		plan, err := rewriteCreate([]byte(tc.body), "", testOpts, image(tc.img.Entrypoint, tc.img.Cmd))
		if err != nil || plan.Body == nil {
			t.Errorf("%s: %v %+v", tc.name, err, plan)
			continue
		}
		m := decodeOut(t, plan.Body)
		if got, want := strs(m["Entrypoint"]), append([]string{waitPath, "-n", "1", "--"}, tc.wantEP...); !slices.Equal(got, want) {
			t.Errorf("%s: Entrypoint %q, want %q", tc.name, got, want)
		}
		got := strs(m["Cmd"])
		if got == nil {
			got = []string{}
		}
		if want := tc.wantC; !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("%s: Cmd %q, want %q", tc.name, got, want)
		}
		if _, ok := m["Hostname"]; ok {
			t.Errorf("%s: hostname set without a name", tc.name)
		}
	}
}

func TestRewriteCreateLeavesAlone(t *testing.T) {
	for _, body := range []string{
		`{"Image":"i","Cmd":["x"],"HostConfig":{"NetworkMode":"host"}}`,
		`{"Image":"i","Cmd":["x"],"HostConfig":{"NetworkMode":"container:abc"}}`,
		`{"Image":"i","Cmd":["x"],"Env":["WEAVE_CIDR=none"]}`,
		`{"Image":"i","Entrypoint":["/w/weavewait","-n","1","--"],"Cmd":["x"]}`,
		`{"Image":"i"}`, // no command at all: Docker's error
	} {
		plan, err := rewriteCreate([]byte(body), "c", testOpts, image(nil, nil))
		if err != nil || plan.Body != nil || plan.Reason == "" {
			t.Errorf("%s: %v %+v, want it left alone", body, err, plan)
		}
	}
}

func TestRewriteCreateKeepsUserChoices(t *testing.T) {
	body := `{"Image":"i","Cmd":["x"],"Hostname":"mine","HostConfig":{"Dns":["8.8.8.8"]}}`
	plan, err := rewriteCreate([]byte(body), "c", testOpts, image(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	m := decodeOut(t, plan.Body)
	hc := m["HostConfig"].(map[string]any)
	if m["Hostname"] != "mine" || m["Domainname"] != nil || !slices.Equal(strs(hc["Dns"]), []string{"8.8.8.8"}) || hc["DnsSearch"] != nil {
		t.Errorf("user choices overridden: %s", plan.Body)
	}
	// No DNS: no resolver change.
	o := testOpts
	o.DNSServer = ""
	plan, _ = rewriteCreate([]byte(`{"Image":"i","Cmd":["x"]}`), "c", o, image(nil, nil))
	if hc := decodeOut(t, plan.Body)["HostConfig"].(map[string]any); hc["Dns"] != nil {
		t.Errorf("Dns set without weaveDNS: %s", plan.Body)
	}
	// A name too long for a hostname is not made one.
	long := repeat("a", 60)
	plan, _ = rewriteCreate([]byte(`{"Image":"i","Cmd":["x"]}`), long, testOpts, image(nil, nil))
	if decodeOut(t, plan.Body)["Hostname"] != nil {
		t.Errorf("hostname from a %d-character name", len(long))
	}
}

func TestRewriteCreateRefuses(t *testing.T) {
	imgErr := errors.New("no such image")
	for body, want := range map[string]error{
		`[]`:                               nil,
		`null`:                             errNotObject,
		`{"Env":3}`:                        nil,
		`{"Cmd":{}}`:                       nil,
		`{"HostConfig":{"NetworkMode":1}}`: nil,
		`{"Env":["WEAVE_CIDR=1.2.3.4"],"Cmd":["x"]}`: nil,
		`{"Image":"i"}`: imgErr,
	} {
		_, err := rewriteCreate([]byte(body), "", testOpts, func(string) (imageConfig, error) { return imageConfig{}, imgErr })
		if err == nil || (want != nil && !errors.Is(err, want)) {
			t.Errorf("%s: err %v, want an error (%v)", body, err, want)
		}
	}
	if _, err := decodeCreate(make([]byte, maxCreateBody+1)); err == nil {
		t.Error("oversized body decoded")
	}
}

func TestHostFQDN(t *testing.T) {
	if got := hostFQDN("db", "weave.local."); got != "db.weave.local" || !inDomain(got, "weave.local.") {
		t.Errorf("hostFQDN = %q", got)
	}
	if inDomain("db.example.com", "weave.local.") || inDomain("weave.local", "weave.local.") || inDomain("x", "") {
		t.Error("inDomain accepts a name outside the domain")
	}
}

func FuzzDecodeCreate(f *testing.F) {
	for _, s := range []string{
		`{"Image":"bb","Cmd":["top"],"Env":["WEAVE_CIDR=net:default net:10.2.2.0/24"],"HostConfig":{"Binds":["/a:/b"]}}`,
		`{"Entrypoint":"sh","Cmd":"x","HostConfig":{"NetworkMode":"host","Dns":null}}`,
		`{"Env":["WEAVE_CIDR=none"]}`, `null`, `{}`, `{"HostConfig":null}`, `{"Entrypoint":[""]}`,
	} {
		f.Add([]byte(s), "c1")
	}
	f.Fuzz(func(t *testing.T, body []byte, name string) {
		c, err := decodeCreate(body)
		if err != nil {
			return
		}
		if c.raw == nil || c.host == nil {
			t.Fatal("decoded without maps")
		}
		plan, err := rewriteCreate(body, name, testOpts, image([]string{"/ep"}, []string{"cmd"}))
		if err != nil || plan.Body == nil {
			return
		}
		// A rewrite is itself a valid document that is already rewritten.
		again, err := rewriteCreate(plan.Body, name, testOpts, noImage)
		if err != nil || again.Body != nil {
			t.Fatalf("rewrite of a rewrite: %v %+v\n%s", err, again, plan.Body)
		}
		if !reflect.DeepEqual(again.Addrs, plan.Addrs) {
			t.Fatalf("addrs %q then %q", plan.Addrs, again.Addrs)
		}
	})
}
