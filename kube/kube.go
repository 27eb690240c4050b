// Package kube owns what weavenet reads of a Kubernetes cluster to run
// weaved on every node, as Weave Net's kube-utils did: the other nodes'
// addresses (weaved's peers, from the API's node list) and the cluster's
// pod range (weaved's --ipalloc-range). It only reads; the DaemonSet in
// examples/kubernetes runs it through cmd/weave-kube.
package kube

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// maxNodes bounds how many nodes are taken from the API's answer: each
// becomes a connection target of weaved, which caps its connections
// anyway.
const maxNodes = 1000

// Peers are the other nodes' addresses, what weaved is given as peers.
type Peers struct {
	Addrs []string // sorted, without this node
	// Nodes counts the nodes with an address, this one included: the
	// quorum of the first IPAM consensus (--ipalloc-init consensus=N).
	Nodes int
}

// ListPeers lists the nodes and returns the address of every one but self
// (by node name): its InternalIP, else its ExternalIP; IPv4 only, since
// weaved's underlay is. Nodes with neither are skipped.
func ListPeers(ctx context.Context, c kubernetes.Interface, self string) (Peers, error) {
	list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return Peers{}, fmt.Errorf("kube: list nodes: %w", explain(err))
	}
	items := list.Items
	if len(items) > maxNodes {
		items = items[:maxNodes]
	}
	var p Peers
	seen := map[string]bool{}
	for i := range items {
		addr, ok := nodeAddr(&items[i])
		if !ok || seen[addr] {
			continue
		}
		seen[addr] = true
		p.Nodes++
		if items[i].Name != self {
			p.Addrs = append(p.Addrs, addr)
		}
	}
	slices.Sort(p.Addrs)
	return p, nil
}

func nodeAddr(n *corev1.Node) (string, bool) {
	for _, kind := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, a := range n.Status.Addresses {
			if a.Type != kind {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
				return ip.String(), true
			}
		}
	}
	return "", false
}

// PodRange is the cluster's pod range and where it was found: kubeadm's
// ClusterConfiguration (networking.podSubnet in the kube-system/
// kubeadm-config ConfigMap), else the smallest range covering every node's
// pod CIDRs (set when the controller manager allocates them). The zero
// Prefix means the cluster says nothing, and weaved's default stands.
func PodRange(ctx context.Context, c kubernetes.Interface) (netip.Prefix, string, error) {
	cm, err := c.CoreV1().ConfigMaps("kube-system").Get(ctx, "kubeadm-config", metav1.GetOptions{})
	switch {
	case err == nil:
		if p, ok, err := kubeadmPodSubnet(cm.Data["ClusterConfiguration"]); err != nil {
			return netip.Prefix{}, "", err
		} else if ok {
			return p, "kubeadm-config networking.podSubnet", nil
		}
	case apierrors.IsNotFound(err) || apierrors.IsForbidden(err):
		// Not a kubeadm cluster, or not allowed to look: the nodes may say.
	default:
		return netip.Prefix{}, "", fmt.Errorf("kube: kubeadm-config: %w", explain(err))
	}
	list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return netip.Prefix{}, "", fmt.Errorf("kube: list nodes: %w", explain(err))
	}
	var cidrs []netip.Prefix
	for i, n := range list.Items {
		if i == maxNodes {
			break
		}
		all := n.Spec.PodCIDRs
		if len(all) == 0 && n.Spec.PodCIDR != "" {
			all = []string{n.Spec.PodCIDR}
		}
		for _, s := range all {
			if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
				cidrs = append(cidrs, p.Masked())
			}
		}
	}
	if len(cidrs) == 0 {
		return netip.Prefix{}, "", nil
	}
	return covering(cidrs), "the nodes' podCIDRs", nil
}

// kubeadmPodSubnet reads networking.podSubnet of a ClusterConfiguration:
// its first IPv4 range (dual-stack clusters list two, comma-separated).
func kubeadmPodSubnet(doc string) (netip.Prefix, bool, error) {
	if doc == "" {
		return netip.Prefix{}, false, nil
	}
	var cc struct {
		Networking struct {
			PodSubnet string `json:"podSubnet"`
		} `json:"networking"`
	}
	if err := yaml.Unmarshal([]byte(doc), &cc); err != nil {
		return netip.Prefix{}, false, fmt.Errorf("kube: kubeadm-config ClusterConfiguration: %w", err)
	}
	for _, s := range strings.Split(cc.Networking.PodSubnet, ",") {
		if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil && p.Addr().Is4() {
			return p.Masked(), true, nil
		}
	}
	return netip.Prefix{}, false, nil
}

// covering is the smallest prefix holding every one of ps (IPv4).
func covering(ps []netip.Prefix) netip.Prefix {
	out := ps[0]
	for _, p := range ps[1:] {
		for !out.Contains(p.Addr()) || out.Bits() > p.Bits() {
			out = netip.PrefixFrom(out.Addr(), out.Bits()-1).Masked()
		}
	}
	return out
}

// explain adds what to do to the errors a DaemonSet's pod meets.
func explain(err error) error {
	var status apierrors.APIStatus
	if apierrors.IsForbidden(err) && errors.As(err, &status) {
		return fmt.Errorf("%w (the weavenet ServiceAccount needs the ClusterRole of examples/kubernetes/weavenet.yaml)", err)
	}
	return err
}
