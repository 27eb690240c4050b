package weavedb

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"weavenet/mesh"
)

// Weave Net keeps its DNS names only in memory and in gossip, and every
// peer drops the names of a peer as soon as it leaves the mesh: when Weave
// Net stops on a host, its containers' names are gone everywhere. The only
// copy to take over is its status report, saved while it runs:
//
//	curl -s -H 'Accept: application/json' 127.0.0.1:6784/report > FILE

// MaxNames bounds the entries read from a report.
const MaxNames = 1 << 18

// Name is one live DNS entry of a Weave Net report.
type Name struct {
	Hostname  string // canonical FQDN, with the final dot
	Origin    mesh.PeerName
	Container string
	Addr      netip.Addr
}

type reportJSON struct {
	Router struct {
		Name string
	}
	DNS *struct {
		Entries []struct {
			Hostname    string
			Origin      string
			ContainerID string
			Address     string
			Tombstone   int64
		}
	}
}

// ErrNotReport means the file is not a Weave Net report with DNS entries.
var ErrNotReport = errors.New("weavedb: not a Weave Net report (curl -H 'Accept: application/json' 127.0.0.1:6784/report)")

// ReadNames reads the live DNS entries from a Weave Net report saved as
// JSON, and the name of the peer that wrote it.
func ReadNames(path string) (peer mesh.PeerName, names []Name, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, fmt.Errorf("weavedb: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxValueSize+1))
	if err != nil {
		return 0, nil, fmt.Errorf("weavedb: %s: %w", path, err)
	}
	if len(b) > MaxValueSize {
		return 0, nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrNotReport, path, MaxValueSize)
	}
	peer, names, err = decodeNames(b)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", path, err)
	}
	return peer, names, nil
}

func decodeNames(b []byte) (mesh.PeerName, []Name, error) {
	var r reportJSON
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrNotReport, err)
	}
	peer, err := mesh.PeerNameFromString(r.Router.Name)
	if err != nil || r.DNS == nil {
		return 0, nil, fmt.Errorf("%w: no Router.Name or no DNS section", ErrNotReport)
	}
	if len(r.DNS.Entries) > MaxNames {
		return 0, nil, fmt.Errorf("%w: %d DNS entries, more than %d", ErrNotReport, len(r.DNS.Entries), MaxNames)
	}
	var out []Name
	for _, e := range r.DNS.Entries {
		if e.Tombstone != 0 {
			continue
		}
		origin, err := mesh.PeerNameFromString(e.Origin)
		if err != nil {
			return 0, nil, fmt.Errorf("%w: entry origin %q", ErrNotReport, e.Origin)
		}
		addr, err := netip.ParseAddr(e.Address)
		if err != nil {
			return 0, nil, fmt.Errorf("%w: entry address %q", ErrNotReport, e.Address)
		}
		if err := checkID(e.ContainerID); err != nil {
			return 0, nil, fmt.Errorf("%w: %w", ErrNotReport, err)
		}
		h, err := checkHostname(e.Hostname)
		if err != nil {
			return 0, nil, fmt.Errorf("%w: %w", ErrNotReport, err)
		}
		out = append(out, Name{Hostname: h, Origin: origin, Container: e.ContainerID, Addr: addr})
	}
	return peer, out, nil
}

// checkHostname accepts a DNS name of letters, digits, '-' and '_' labels
// and returns it lower-cased with a final dot.
func checkHostname(h string) (string, error) {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" || len(h) > 253 {
		return "", fmt.Errorf("hostname of %d bytes", len(h))
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("hostname %q has an empty or long label", h)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("hostname %q has the character %q", h, c)
			}
		}
	}
	return h + ".", nil
}
