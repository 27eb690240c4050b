package integration

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"weavenet/cni"
	"weavenet/internal/testbed"
)

// listenIn opens a TCP listener inside h's namespace, on its underlay
// address, from the test process: the socket stays in the namespace it was
// made in, so the other hosts reach it over the underlay.
func listenIn(t *testing.T, h *testbed.Host) net.Listener {
	t.Helper()
	// Unlocked only once the thread is back in the test's namespace: a
	// goroutine that ends locked takes its thread down with it.
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(h.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		t.Fatal(err)
	}
	l, lerr := net.Listen("tcp", net.JoinHostPort(h.Addr.String(), "0"))
	if err := netns.Set(orig); err != nil {
		t.Fatalf("back to the test's namespace: %v", err)
	}
	runtime.UnlockOSThread()
	if lerr != nil {
		t.Fatal(lerr)
	}
	return l
}

// The DaemonSet's entry point on two namespace hosts, against a fake
// Kubernetes API server (a NodeList built from the API types, no
// kubeadm-config): weave-kube launch installs the plugins and conflist,
// finds the other node as peer and the pod range from the nodes'
// podCIDRs, and execs weaved; pods added through the conflist it wrote
// get addresses in that range and reach each other.
func TestCNIWeaveKubeLaunch(t *testing.T) {
	b := testbed.New(t, testbed.Options{Hosts: 2, Topology: testbed.FullMesh})
	h1, h2 := b.Hosts[0], b.Hosts[1]
	nodes := corev1.NodeList{TypeMeta: metav1.TypeMeta{Kind: "NodeList", APIVersion: "v1"}}
	for i, h := range b.Hosts {
		nodes.Items = append(nodes.Items, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: h.Name},
			Spec:   corev1.NodeSpec{PodCIDRs: []string{[]string{"10.244.0.0/24", "10.244.1.0/24"}[i]}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: h.Addr.String()}}}})
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/api/v1/nodes" {
			_ = json.NewEncoder(w).Encode(nodes)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound})
	}))
	srv.Listener.Close()
	srv.Listener = listenIn(t, h1)
	srv.Start()
	defer srv.Close()

	bin, weaveBin := buildCNI(t), testbed.BinDir(t)
	var hosts []*cniHost
	for _, h := range b.Hosts {
		cniDir := t.TempDir()
		resolv := filepath.Join(h.DataDir, "upstream-resolv.conf")
		if err := os.WriteFile(resolv, []byte("# no upstream in tests\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		p := h.Start(t, filepath.Join(bin, "weave-kube"), "launch", "--kube-api", srv.URL, "--node-name", h.Name,
			"--ipalloc-range", "", "--weaved", filepath.Join(weaveBin, "weaved"),
			"--cni-bin-dir", filepath.Join(cniDir, "bin"), "--cni-conf-dir", filepath.Join(cniDir, "net.d"),
			"--", "--data-dir", h.DataDir, "--dns-resolv-conf", resolv, "--proxy-socket", filepath.Join(h.DataDir, "weave.sock"))
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("[%s] weave-kube/weaved stderr:\n%s", h.Name, p.Stderr())
			}
		})
		h.WaitReady(t)
		if !strings.Contains(p.Stderr(), "2 nodes, pod range 10.244.0.0/23") {
			t.Errorf("[%s] weave-kube said: %s", h.Name, p.Stderr())
		}
		conf, err := os.ReadFile(filepath.Join(cniDir, "net.d", cni.ConflistName))
		if err != nil {
			t.Fatal(err)
		}
		// The plugins weave-kube installed, with the test's portmap and
		// driver beside them.
		for _, name := range []string{"portmap", "cnidriver"} {
			copyExec(t, filepath.Join(bin, name), filepath.Join(cniDir, "bin", name))
		}
		hosts = append(hosts, newCNIHost(t, h, filepath.Join(cniDir, "bin"), conf))
	}
	// The two weaved found each other through the node list alone.
	waitMesh(t, h1, 1, 2)
	waitMesh(t, h2, 1, 2)
	var pods []*testbed.Container
	var addrs []string
	for _, c := range hosts {
		pod := c.h.AddContainer(t, "pod"+c.h.Name)
		_, a := c.add(t, "pod-"+c.h.Name, pod)
		if !strings.HasPrefix(a.String(), "10.244.") || !strings.HasSuffix(a.String(), "/23") {
			t.Errorf("[%s] pod got %v, not in the cluster's 10.244.0.0/23", c.h.Name, a)
		}
		pods = append(pods, pod)
		addrs = append(addrs, a.Addr().String())
	}
	pods[0].WaitPing(t, addrs[1], pingTimeout)
	pods[1].WaitPing(t, addrs[0], pingTimeout)
}
