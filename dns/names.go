package dns

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// Name rules. Every hostname stored in the table is canonical: lower case,
// fully qualified (trailing dot), at most 253 characters, labels of 1-63
// letters, digits, '-' or '_'. Queries are compared after ASCII lower-casing
// only, so a question in any case finds the entry.

// ErrBadName is wrapped by the errors returned for a hostname or domain that
// is not a usable DNS name.
var ErrBadName = errors.New("invalid DNS name")

// ErrNotInDomain is wrapped by AddEntry's error when an FQDN hostname lies
// outside the served domain; pass a name under the domain or an unqualified
// name (the domain is then appended).
var ErrNotInDomain = errors.New("hostname is not in the DNS domain")

// lower returns s with ASCII A-Z mapped to a-z; other bytes are kept as they
// are (unlike strings.ToLower, which rewrites invalid UTF-8).
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// checkCanonical reports whether name is in the table's canonical form.
func checkCanonical(name string) error {
	if len(name) < 2 || len(name) > 254 || name[len(name)-1] != '.' {
		return fmt.Errorf("%w: %q must be a fully qualified name of at most 253 characters", ErrBadName, name)
	}
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			if label == 0 {
				return fmt.Errorf("%w: %q has an empty label", ErrBadName, name)
			}
			label = 0
			continue
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("%w: %q may contain only letters, digits, '-', '_' and dots", ErrBadName, name)
		}
		label++
		if label > 63 {
			return fmt.Errorf("%w: %q has a label longer than 63 characters", ErrBadName, name)
		}
	}
	return nil
}

// canonicalDomain validates and canonicalises a domain such as "weave.local".
func canonicalDomain(domain string) (string, error) {
	d := lower(strings.TrimSpace(domain))
	if !strings.HasSuffix(d, ".") {
		d += "."
	}
	if err := checkCanonical(d); err != nil {
		return "", fmt.Errorf("dns domain: %w", err)
	}
	return d, nil
}

// qualify turns a user-supplied hostname into a canonical FQDN: names with a
// trailing dot are taken as they are; a name ending in the domain without its
// trailing dot gets the dot; anything else is relative to the domain.
func qualify(name, domain string) (string, error) {
	n := lower(strings.TrimSpace(name))
	switch {
	case n == "":
		return "", fmt.Errorf("%w: empty hostname", ErrBadName)
	case strings.HasSuffix(n, "."):
	case n+"." == domain || strings.HasSuffix(n+".", "."+domain):
		n += "."
	default:
		n += "." + domain
	}
	if err := checkCanonical(n); err != nil {
		return "", err
	}
	return n, nil
}

// inDomain reports whether canonical name is domain or below it.
func inDomain(name, domain string) bool {
	return name == domain || strings.HasSuffix(name, "."+domain)
}

// strictlyInDomain reports whether name lies below domain (not the apex).
func strictlyInDomain(name, domain string) bool {
	return name != domain && inDomain(name, domain)
}

// singleLabel reports whether a lower-cased FQDN query name has one label.
func singleLabel(name string) bool {
	return len(name) > 1 && strings.IndexByte(name, '.') == len(name)-1
}

// reverseName returns the in-addr.arpa. or ip6.arpa. name of addr.
func reverseName(addr netip.Addr) string {
	r, err := mdns.ReverseAddr(addr.String())
	if err != nil {
		return ""
	}
	return r
}

// checkAddr validates an address for the table: valid, unzoned, not
// unspecified; 4in6 addresses are unmapped.
func checkAddr(addr netip.Addr) (netip.Addr, error) {
	addr = addr.Unmap()
	if !addr.IsValid() || addr.IsUnspecified() || addr.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("dns: address %v is not a usable unicast address", addr)
	}
	return addr, nil
}

// maxContainerLen bounds container identifiers (netns names, IDs).
const maxContainerLen = 255

func checkContainer(c string) error {
	if c == "" || len(c) > maxContainerLen {
		return fmt.Errorf("dns: container identifier must be 1-%d bytes, got %d", maxContainerLen, len(c))
	}
	return nil
}
