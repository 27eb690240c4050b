package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"weavenet/api"
)

// weave-kube args against a fake API server serving a NodeList: the flags
// weaved would be started with on node a.
func TestArgsAgainstFakeAPI(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/nodes":
			list := corev1.NodeList{TypeMeta: metav1.TypeMeta{Kind: "NodeList", APIVersion: "v1"}}
			for i, n := range []string{"a", "b", "c"} {
				list.Items = append(list.Items, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n},
					Spec:   corev1.NodeSpec{PodCIDR: "10.244." + string(rune('0'+i)) + ".0/24"},
					Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.9." + string(rune('1'+i))}}}})
			}
			_ = json.NewEncoder(w).Encode(list)
		default:
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure, Code: 404, Reason: metav1.StatusReasonNotFound})
		}
	}))
	defer srv.Close()
	var out strings.Builder
	if err := run([]string{"args", "--kube-api", srv.URL, "--node-name", "a", "--ipalloc-range", ""}, &out); err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(out.String())
	want := strings.Fields("--nickname a --ipalloc-range 10.244.0.0/22 --ipalloc-init consensus=3 --peer 192.168.9.2 --peer 192.168.9.3")
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("weave-kube args:\n got %v\nwant %v", got, want)
	}
	if err := run([]string{"args", "--kube-api", srv.URL, "--ipalloc-range", "nonsense"}, &out); err == nil {
		t.Error("a bad --ipalloc-range is accepted")
	}
}

// The conflist names the API address weaved is given, else weaved's own
// fallback.
func TestWeavedAPIAddr(t *testing.T) {
	t.Setenv(api.AddrEnv, "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, api.DefaultAddr},
		{[]string{"--data-dir=/x", "--http-addr=127.0.0.1:6784"}, "127.0.0.1:6784"},
		{[]string{"--http-addr", "unix:///run/w.sock", "peer"}, "unix:///run/w.sock"},
		{[]string{"--", "--http-addr=127.0.0.1:1"}, api.DefaultAddr},
	} {
		if got := weavedAPIAddr(c.args); got != c.want {
			t.Errorf("%v: %q, want %q", c.args, got, c.want)
		}
	}
	t.Setenv(api.AddrEnv, "unix:///tmp/h1/weaved.sock")
	if got := weavedAPIAddr(nil); got != "unix:///tmp/h1/weaved.sock" {
		t.Errorf("with %s set: %q", api.AddrEnv, got)
	}
}
