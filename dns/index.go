package dns

import (
	"net/netip"
	"slices"
	"strings"
)

// index is an immutable view of the live entries for answering queries,
// rebuilt under Server.mu whenever the live set changes and read lock-free.
type index struct {
	byName map[string][]netip.Addr // canonical hostname → sorted addresses
	byRev  map[string][]string     // reverse (arpa) name → sorted hostnames
	// ent holds the empty non-terminals below the domain: names that
	// exist only because a longer name does ("b.weave.local." for
	// "a.b.weave.local."). They answer NOERROR, not NXDOMAIN.
	ent    map[string]bool
	live   int    // live entries (not distinct names)
	serial uint32 // SOA serial: bumps on every rebuild
}

func buildIndex(t *table, domain string, serial uint32) *index {
	ix := &index{
		byName: map[string][]netip.Addr{},
		byRev:  map[string][]string{},
		ent:    map[string]bool{},
		serial: serial,
	}
	for k, r := range t.entries {
		if r.Tombstone {
			continue
		}
		ix.live++
		ix.byName[k.Hostname] = append(ix.byName[k.Hostname], k.Addr)
		if rev := reverseName(k.Addr); rev != "" {
			ix.byRev[rev] = append(ix.byRev[rev], k.Hostname)
		}
		if strictlyInDomain(k.Hostname, domain) {
			for n := parent(k.Hostname); n != domain && strictlyInDomain(n, domain); n = parent(n) {
				ix.ent[n] = true
			}
		}
	}
	for n, as := range ix.byName {
		slices.SortFunc(as, netip.Addr.Compare)
		ix.byName[n] = slices.Compact(as)
	}
	for n, hs := range ix.byRev {
		slices.Sort(hs)
		ix.byRev[n] = slices.Compact(hs)
	}
	return ix
}

// parent drops the first label of a canonical FQDN ("a.b." → "b.").
func parent(name string) string {
	i := strings.IndexByte(name, '.')
	if i < 0 || i == len(name)-1 {
		return "."
	}
	return name[i+1:]
}
