package kube

import (
	"context"
	"fmt"
	"net/netip"

	"k8s.io/client-go/kubernetes"
)

// Launch is how weaved is started on a node.
type Launch struct {
	Peers  Peers
	Range  netip.Prefix // zero: weaved's default
	Source string       // where Range came from
}

// Discover reads the peers and the pod range. rangeOverride (IPALLOC_RANGE
// in the manifest), when valid, wins over what the cluster says.
func Discover(ctx context.Context, c kubernetes.Interface, self string, rangeOverride netip.Prefix) (Launch, error) {
	peers, err := ListPeers(ctx, c, self)
	if err != nil {
		return Launch{}, err
	}
	l := Launch{Peers: peers, Range: rangeOverride, Source: "IPALLOC_RANGE"}
	if !rangeOverride.IsValid() {
		if l.Range, l.Source, err = PodRange(ctx, c); err != nil {
			return Launch{}, err
		}
	}
	return l, nil
}

// WeavedArgs are weaved's flags for l: the range, the first consensus
// among all the nodes the API lists (as Weave Net's DaemonSet did), and
// the other nodes as peers.
func (l Launch) WeavedArgs(nickname string) []string {
	var args []string
	if nickname != "" {
		args = append(args, "--nickname", nickname)
	}
	if l.Range.IsValid() {
		args = append(args, "--ipalloc-range", l.Range.String())
	}
	args = append(args, "--ipalloc-init", fmt.Sprintf("consensus=%d", max(l.Peers.Nodes, 1)))
	for _, p := range l.Peers.Addrs {
		args = append(args, "--peer", p)
	}
	return args
}
