package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// waitPath is where the wait program appears inside a container: a
// read-only bind mount of the host's weavewait binary.
const waitPath = "/w/weavewait"

// maxCreateBody bounds the container-create document we read to rewrite it;
// Docker's own are a few KiB, large environments included.
const maxCreateBody = 4 << 20

// maxHostname is the longest hostname Docker accepts.
const maxHostname = 64

// createOptions is what a rewrite adds to a container.
type createOptions struct {
	WaitBinary string // host path of the weavewait binary
	Domain     string // weaveDNS's domain, e.g. "weave.local."
	DNSServer  string // weaveDNS's address for the container's resolv.conf; empty for none
}

// imageConfig is what the container inherits from its image when the
// request does not say.
type imageConfig struct {
	Entrypoint, Cmd []string
}

// createPlan is the outcome of a rewrite: Body is nil when the request goes
// to Docker unchanged (Reason says why), else the new document.
type createPlan struct {
	Body   []byte
	Addrs  []string
	Reason string
}

// createRequest is the part of Docker's container-create document a rewrite
// reads; raw and host keep every field, known or not, so that what we do
// not touch reaches Docker exactly as sent.
type createRequest struct {
	raw  map[string]json.RawMessage
	host map[string]json.RawMessage // HostConfig; empty when absent

	Image                 string
	Env                   []string
	Entrypoint, Cmd       []string // nil when absent or null
	Hostname, Domainname  string
	NetworkMode           string
	Binds, DNS, DNSSearch []string
}

var errNotObject = errors.New("container config is not a JSON object")

// decodeCreate parses a container-create document. It fails on anything
// Docker itself would refuse to decode in the fields we read.
func decodeCreate(body []byte) (*createRequest, error) {
	if len(body) > maxCreateBody {
		return nil, fmt.Errorf("container config of %d bytes: at most %d", len(body), maxCreateBody)
	}
	c := &createRequest{}
	if err := json.Unmarshal(body, &c.raw); err != nil {
		return nil, fmt.Errorf("container config: %w", err)
	}
	if c.raw == nil {
		return nil, errNotObject
	}
	fields := []struct {
		name string
		to   any
	}{
		{"Image", &c.Image}, {"Env", &c.Env}, {"Hostname", &c.Hostname}, {"Domainname", &c.Domainname},
	}
	for _, f := range fields {
		if err := field(c.raw, f.name, f.to); err != nil {
			return nil, err
		}
	}
	var err error
	if c.Entrypoint, err = strSlice(c.raw, "Entrypoint"); err != nil {
		return nil, err
	}
	if c.Cmd, err = strSlice(c.raw, "Cmd"); err != nil {
		return nil, err
	}
	if err := field(c.raw, "HostConfig", &c.host); err != nil {
		return nil, err
	}
	if c.host == nil {
		c.host = map[string]json.RawMessage{}
	}
	hostFields := []struct {
		name string
		to   any
	}{
		{"NetworkMode", &c.NetworkMode}, {"Binds", &c.Binds}, {"Dns", &c.DNS}, {"DnsSearch", &c.DNSSearch},
	}
	for _, f := range hostFields {
		if err := field(c.host, f.name, f.to); err != nil {
			return nil, fmt.Errorf("HostConfig: %w", err)
		}
	}
	return c, nil
}

// field decodes m[name] into to when present and not null.
func field(m map[string]json.RawMessage, name string, to any) error {
	v, ok := m[name]
	if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
		return nil
	}
	if err := json.Unmarshal(v, to); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// strSlice decodes Docker's string-or-array form (its strslice type).
func strSlice(m map[string]json.RawMessage, name string) ([]string, error) {
	v, ok := m[name]
	if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(v, &one); err == nil {
		return []string{one}, nil
	}
	out := []string{}
	if err := json.Unmarshal(v, &out); err != nil {
		return nil, fmt.Errorf("%s: want a string or an array of strings: %w", name, err)
	}
	return out, nil
}

func (c *createRequest) set(m map[string]json.RawMessage, name string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only strings and slices of them: cannot fail
	}
	m[name] = b
}

var dnsLabel = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)

// rewriteCreate decides what a container created through the proxy gets:
// with a network of its own and WEAVE_CIDR not "none", its entrypoint runs
// behind weavewait (which execs the real one once the weave interface has
// its addresses), its hostname is its name in the weave domain and its
// resolver is weaveDNS, unless the request says otherwise. name is the
// ?name= of the request; image resolves what the image would contribute,
// asked only when the request leaves the entrypoint to the image.
func rewriteCreate(body []byte, name string, o createOptions, image func(ref string) (imageConfig, error)) (createPlan, error) {
	c, err := decodeCreate(body)
	if err != nil {
		return createPlan{}, err
	}
	if leftAlone(c.NetworkMode) {
		return createPlan{Reason: "network mode " + c.NetworkMode}, nil
	}
	addrs, none, err := parseWeaveCIDR(c.Env)
	if err != nil {
		return createPlan{}, err
	}
	if none {
		return createPlan{Reason: cidrEnv + "=none"}, nil
	}

	entrypoint, cmd := c.Entrypoint, c.Cmd
	// Docker's `--entrypoint ""` clears the image's entrypoint.
	if len(entrypoint) == 1 && entrypoint[0] == "" {
		entrypoint = []string{}
	}
	if len(entrypoint) > 0 && entrypoint[0] == waitPath {
		return createPlan{Reason: "already waits for its interface", Addrs: addrs}, nil
	}
	// Docker takes from the image what the request leaves out, but only
	// while the request names no entrypoint: we name one, so we merge.
	if len(entrypoint) == 0 {
		img, err := image(c.Image)
		if err != nil {
			return createPlan{}, err
		}
		if len(cmd) == 0 {
			cmd = img.Cmd
		}
		if entrypoint == nil {
			entrypoint = img.Entrypoint
		}
	}
	if len(entrypoint) == 0 && len(cmd) == 0 {
		// Docker refuses this itself, with its own message.
		return createPlan{Reason: "no command"}, nil
	}
	wrapped := append([]string{waitPath, "-n", strconv.Itoa(len(addrs)), "--"}, entrypoint...)
	c.set(c.raw, "Entrypoint", wrapped)
	if cmd == nil {
		cmd = []string{}
	}
	c.set(c.raw, "Cmd", cmd)

	c.set(c.host, "Binds", append(slices.Clip(c.Binds), o.WaitBinary+":"+waitPath+":ro"))
	domain := strings.TrimSuffix(o.Domain, ".")
	name = strings.TrimPrefix(name, "/")
	if c.Hostname == "" && domain != "" && dnsLabel.MatchString(name) && len(name)+1+len(domain) <= maxHostname {
		c.set(c.raw, "Hostname", name)
		c.set(c.raw, "Domainname", domain)
	}
	if o.DNSServer != "" && len(c.DNS) == 0 {
		c.set(c.host, "Dns", []string{o.DNSServer})
		if len(c.DNSSearch) == 0 && domain != "" {
			c.set(c.host, "DnsSearch", []string{domain})
		}
	}
	c.set(c.raw, "HostConfig", c.host)
	out, err := json.Marshal(c.raw)
	if err != nil {
		return createPlan{}, fmt.Errorf("container config: %w", err)
	}
	return createPlan{Body: out, Addrs: addrs}, nil
}
