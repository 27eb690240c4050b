package ipam

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"weavenet/mesh"
)

// InitMode is how a peer bootstraps the ring when it has none.
type InitMode int

const (
	// Consensus: the initial peers agree (Paxos over gossip) on who
	// shares the Range before anyone allocates.
	Consensus InitMode = iota
	// Seed: the Range is split among a fixed list of peers.
	Seed
	// Observer: never owns space at start; waits for the ring.
	Observer
)

func (m InitMode) String() string {
	switch m {
	case Consensus:
		return "consensus"
	case Seed:
		return "seed"
	case Observer:
		return "observer"
	}
	return "InitMode(" + strconv.Itoa(int(m)) + ")"
}

// Init is a parsed --ipalloc-init.
type Init struct {
	Mode InitMode
	// Peers is N of consensus=N: how many peers take part in the initial
	// consensus, quorum N/2+1. Zero means Config.InitialPeers.
	Peers int
	// Seeds are the peer names of seed=NAME,..., sorted.
	Seeds []mesh.PeerName
}

func (i Init) String() string {
	switch i.Mode {
	case Consensus:
		if i.Peers > 0 {
			return "consensus=" + strconv.Itoa(i.Peers)
		}
		return "consensus"
	case Seed:
		names := make([]string, len(i.Seeds))
		for k, s := range i.Seeds {
			names[k] = s.String()
		}
		return "seed=" + strings.Join(names, ",")
	}
	return i.Mode.String()
}

// ParseInit parses --ipalloc-init: "" or "consensus" (N from
// Config.InitialPeers), "consensus=N", "seed=NAME,..." with peer names
// (as given to --name), or "observer".
func ParseInit(s string) (Init, error) {
	key, val, hasVal := strings.Cut(strings.TrimSpace(s), "=")
	switch key {
	case "", "consensus":
		if !hasVal {
			return Init{Mode: Consensus}, nil
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 {
			return Init{}, fmt.Errorf("ipam: --ipalloc-init %q: consensus=N needs N >= 1, the number of initial peers", s)
		}
		return Init{Mode: Consensus, Peers: n}, nil
	case "seed":
		if !hasVal || val == "" {
			return Init{}, fmt.Errorf("ipam: --ipalloc-init %q: give seed=NAME,... with the peer names of the initial peers", s)
		}
		var seeds []mesh.PeerName
		for _, name := range strings.Split(val, ",") {
			p, err := mesh.PeerNameFromUserInput(strings.TrimSpace(name))
			if err != nil || p == mesh.UnknownPeerName {
				return Init{}, fmt.Errorf("ipam: --ipalloc-init seed: %q is not a peer name (like 12:34:56:78:9a:bc; set one with --name)", name)
			}
			seeds = append(seeds, p)
		}
		slices.Sort(seeds)
		return Init{Mode: Seed, Seeds: slices.Compact(seeds)}, nil
	case "observer":
		if hasVal {
			return Init{}, fmt.Errorf("ipam: --ipalloc-init %q: observer takes no value", s)
		}
		return Init{Mode: Observer}, nil
	}
	return Init{}, fmt.Errorf("ipam: --ipalloc-init %q: use consensus[=N], seed=NAME,... or observer", s)
}
