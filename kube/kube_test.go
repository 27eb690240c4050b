package kube

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// FakeAPI is an API server that answers the two reads this package makes
// with JSON documents built from the real API types, so that the tests go
// through client-go's real HTTP client, codecs and error handling.
type fakeAPI struct {
	mu        sync.Mutex
	nodes     []corev1.Node
	kubeadm   string // ClusterConfiguration; empty: the ConfigMap does not exist
	forbidden bool
	paths     []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paths = append(f.paths, r.Method+" "+r.URL.Path)
	w.Header().Set("Content-Type", "application/json")
	status := func(code int, reason metav1.StatusReason, msg string) {
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status: metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg})
	}
	switch {
	case f.forbidden:
		status(http.StatusForbidden, metav1.StatusReasonForbidden, `nodes is forbidden: User "system:serviceaccount:kube-system:default" cannot list resource "nodes"`)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/nodes":
		_ = json.NewEncoder(w).Encode(corev1.NodeList{TypeMeta: metav1.TypeMeta{Kind: "NodeList", APIVersion: "v1"}, Items: f.nodes})
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/kube-system/configmaps/kubeadm-config":
		if f.kubeadm == "" {
			status(http.StatusNotFound, metav1.StatusReasonNotFound, `configmaps "kubeadm-config" not found`)
			return
		}
		_ = json.NewEncoder(w).Encode(corev1.ConfigMap{TypeMeta: metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Name: "kubeadm-config", Namespace: "kube-system"},
			Data:       map[string]string{"ClusterConfiguration": f.kubeadm}})
	default:
		status(http.StatusNotFound, metav1.StatusReasonNotFound, "no such path in the fake")
	}
}

func startFake(t *testing.T, f *fakeAPI) kubernetes.Interface {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func node(name string, podCIDRs []string, addrs ...corev1.NodeAddress) corev1.Node {
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDRs: podCIDRs},
		Status: corev1.NodeStatus{Addresses: addrs}}
}

func internal(a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a}
}
func external(a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: a}
}

func sampleNodes() []corev1.Node {
	return []corev1.Node{
		node("n1", []string{"10.244.0.0/24"}, internal("192.168.1.1"), corev1.NodeAddress{Type: corev1.NodeHostName, Address: "n1"}),
		node("n2", []string{"10.244.1.0/24", "fd00:1::/64"}, external("203.0.113.2"), internal("192.168.1.2")),
		node("n3", []string{"10.244.3.0/24"}, external("203.0.113.3")),
		node("v6only", nil, internal("fd00::4")),
		node("bare", nil),
		node("dup", nil, internal("192.168.1.2")),
	}
}

func TestListPeers(t *testing.T) {
	f := &fakeAPI{nodes: sampleNodes()}
	c := startFake(t, f)
	p, err := ListPeers(context.Background(), c, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"192.168.1.2", "203.0.113.3"}; !slices.Equal(p.Addrs, want) || p.Nodes != 3 {
		t.Errorf("peers %v of %d nodes, want %v of 3", p.Addrs, p.Nodes, want)
	}
	if !slices.Contains(f.paths, "GET /api/v1/nodes") {
		t.Errorf("the client asked %v", f.paths)
	}
}

func TestPodRangeFromKubeadm(t *testing.T) {
	c := startFake(t, &fakeAPI{nodes: sampleNodes(), kubeadm: `apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.33.0
networking:
  dnsDomain: cluster.local
  podSubnet: fd00:10::/56,10.200.0.0/16
  serviceSubnet: 10.96.0.0/12
`})
	p, src, err := PodRange(context.Background(), c)
	if err != nil || p != netip.MustParsePrefix("10.200.0.0/16") || !strings.Contains(src, "kubeadm") {
		t.Errorf("got %v from %q, %v", p, src, err)
	}
}

// Without kubeadm's ConfigMap the range covers every node's pod CIDRs.
func TestPodRangeFromNodes(t *testing.T) {
	c := startFake(t, &fakeAPI{nodes: sampleNodes()})
	p, src, err := PodRange(context.Background(), c)
	if err != nil || p != netip.MustParsePrefix("10.244.0.0/22") || !strings.Contains(src, "podCIDRs") {
		t.Errorf("got %v from %q, %v", p, src, err)
	}
	c = startFake(t, &fakeAPI{nodes: []corev1.Node{node("a", nil, internal("192.168.1.1"))}})
	if p, _, err := PodRange(context.Background(), c); err != nil || p.IsValid() {
		t.Errorf("a cluster that says nothing gave %v, %v", p, err)
	}
}

func TestForbidden(t *testing.T) {
	c := startFake(t, &fakeAPI{forbidden: true})
	_, err := ListPeers(context.Background(), c, "n1")
	if err == nil || !strings.Contains(err.Error(), "ClusterRole") || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("forbidden: %v", err)
	}
}

func TestDiscoverAndArgs(t *testing.T) {
	c := startFake(t, &fakeAPI{nodes: sampleNodes(), kubeadm: "networking:\n  podSubnet: 10.200.0.0/16\n"})
	l, err := Discover(context.Background(), c, "n2", netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(l.WeavedArgs("n2"), " ")
	if want := "--nickname n2 --ipalloc-range 10.200.0.0/16 --ipalloc-init consensus=3 --peer 192.168.1.1 --peer 203.0.113.3"; got != want {
		t.Errorf("weaved args\n got %s\nwant %s", got, want)
	}
	l, err = Discover(context.Background(), c, "n2", netip.MustParsePrefix("10.9.0.0/16"))
	if err != nil || l.Range != netip.MustParsePrefix("10.9.0.0/16") || l.Source != "IPALLOC_RANGE" {
		t.Errorf("override: %+v %v", l, err)
	}
}

func TestCovering(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"10.244.0.0/24"}, "10.244.0.0/24"},
		{[]string{"10.244.0.0/24", "10.244.1.0/24"}, "10.244.0.0/23"},
		{[]string{"10.244.1.0/24", "10.244.0.0/16"}, "10.244.0.0/16"},
		{[]string{"10.0.0.0/24", "11.0.0.0/24"}, "10.0.0.0/7"},
	} {
		var ps []netip.Prefix
		for _, s := range tc.in {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		got := covering(ps)
		if got.String() != tc.want {
			t.Errorf("covering(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for _, p := range ps {
			if !got.Contains(p.Addr()) || got.Bits() > p.Bits() {
				t.Errorf("covering(%v) = %v does not hold %v", tc.in, got, p)
			}
		}
	}
}

func FuzzKubeadmPodSubnet(f *testing.F) {
	f.Add("networking:\n  podSubnet: 10.244.0.0/16\n")
	f.Add("networking:\n  podSubnet: fd00::/56, 10.1.0.0/16\n")
	f.Add("{")
	f.Fuzz(func(t *testing.T, doc string) {
		p, ok, err := kubeadmPodSubnet(doc)
		if ok && (err != nil || !p.Addr().Is4() || p != p.Masked()) {
			t.Errorf("%q gave %v %v", doc, p, err)
		}
	})
}
