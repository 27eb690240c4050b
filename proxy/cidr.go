package proxy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// cidrEnv is the variable a container's creator sets to choose its weave
// addresses, as with Weave Net's proxy.
const cidrEnv = "WEAVE_CIDR"

// maxAddrs bounds how many addresses one WEAVE_CIDR may ask for: each is an
// IPAM allocation, and the value comes from whoever may talk to Docker.
const maxAddrs = 16

// parseWeaveCIDR reads WEAVE_CIDR from a container's environment (the last
// occurrence wins, as in Docker) into the ADDR forms of `weave attach`:
// CIDR, net:default, net:CIDR. Unset or empty means net:default; "none"
// means no attachment (none is true, addrs empty). Repeats are dropped,
// since weaved hands a container one address per distinct request.
func parseWeaveCIDR(env []string) (addrs []string, none bool, err error) {
	value, set := "", false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, cidrEnv+"="); ok {
			value, set = v, true
		}
	}
	fields := strings.Fields(value)
	if !set || len(fields) == 0 {
		return []string{"net:default"}, false, nil
	}
	if len(fields) > maxAddrs {
		return nil, false, fmt.Errorf("%s has %d addresses: at most %d", cidrEnv, len(fields), maxAddrs)
	}
	for _, f := range fields {
		if f == "none" {
			if len(fields) > 1 {
				return nil, false, fmt.Errorf("%s=%q: none cannot be combined with addresses", cidrEnv, value)
			}
			return nil, true, nil
		}
		norm, err := normalizeAddr(f)
		if err != nil {
			return nil, false, fmt.Errorf("%s=%q: %w", cidrEnv, value, err)
		}
		if !slices.Contains(addrs, norm) {
			addrs = append(addrs, norm)
		}
	}
	return addrs, false, nil
}

// normalizeAddr checks one ADDR and gives it in a canonical form, so that
// repeats written differently are recognised.
func normalizeAddr(s string) (string, error) {
	if s == "net:default" {
		return s, nil
	}
	if rest, ok := strings.CutPrefix(s, "net:"); ok {
		p, err := netip.ParsePrefix(rest)
		if err != nil || !p.Addr().Is4() {
			return "", fmt.Errorf("%q: want net:CIDR such as net:10.2.2.0/24", s)
		}
		return "net:" + p.Masked().String(), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		// Weave Net accepted a bare address as a /32 of the default
		// subnet's size; we want the prefix length said.
		if a, aerr := netip.ParseAddr(s); aerr == nil && a.Is4() {
			return "", fmt.Errorf("%q has no prefix length: write it as CIDR, such as %s/24", s, s)
		}
		return "", fmt.Errorf("%q is not an address: want CIDR (10.2.1.2/24), net:default, net:CIDR or none", s)
	}
	return p.String(), nil
}

// leftAlone reports whether a container in this Docker network mode keeps
// its network as Docker made it: with the host's stack, or sharing another
// container's, an interface of ours would land in a namespace that is not
// the container's own.
func leftAlone(networkMode string) bool {
	return networkMode == "host" || strings.HasPrefix(networkMode, "container:")
}
