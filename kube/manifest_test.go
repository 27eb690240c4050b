package kube

import (
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// The manifest decodes strictly into the real API types (a misspelt field
// fails) and has what the README promises of it. No API server validates
// it here: see the README for what was not exercised.
func TestManifest(t *testing.T) {
	b, err := os.ReadFile("../examples/kubernetes/weavenet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds *appsv1.DaemonSet
	var roles []rbacv1.PolicyRule
	kinds := map[string]int{}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		kinds[meta.Kind]++
		var into any
		switch meta.Kind {
		case "DaemonSet":
			ds = &appsv1.DaemonSet{}
			into = ds
		case "ClusterRole":
			into = &rbacv1.ClusterRole{}
		case "Role":
			into = &rbacv1.Role{}
		case "ServiceAccount":
			into = &corev1.ServiceAccount{}
		case "ClusterRoleBinding":
			into = &rbacv1.ClusterRoleBinding{}
		case "RoleBinding":
			into = &rbacv1.RoleBinding{}
		default:
			t.Fatalf("unexpected kind %q", meta.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
			t.Fatalf("%s: %v", meta.Kind, err)
		}
		switch r := into.(type) {
		case *rbacv1.ClusterRole:
			roles = append(roles, r.Rules...)
		case *rbacv1.Role:
			roles = append(roles, r.Rules...)
		}
	}
	if ds == nil {
		t.Fatal("no DaemonSet")
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || spec.ServiceAccountName != "weavenet" {
		t.Errorf("hostNetwork %v, serviceAccount %q", spec.HostNetwork, spec.ServiceAccountName)
	}
	if u := ds.Spec.UpdateStrategy; u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil || u.RollingUpdate.MaxUnavailable.IntValue() != 1 {
		t.Errorf("update strategy %+v: want RollingUpdate, maxUnavailable 1", u)
	}
	c := spec.Containers[0]
	if len(c.Command) < 2 || !strings.HasSuffix(c.Command[0], "weave-kube") || c.Command[1] != "launch" {
		t.Errorf("command %v", c.Command)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}) {
		t.Error("NODE_NAME does not come from spec.nodeName")
	}
	mounts := map[string]string{}
	var mounted []string
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
		mounted = append(mounted, m.MountPath)
	}
	for _, v := range spec.Volumes {
		if v.HostPath == nil {
			t.Errorf("volume %s is not on the node", v.Name)
			continue
		}
		if mounts[v.Name] != v.HostPath.Path {
			t.Errorf("volume %s: host %s mounted at %s", v.Name, v.HostPath.Path, mounts[v.Name])
		}
	}
	// /var/run/weave holds weaved's API socket, which the CNI plugin on
	// the node dials.
	for _, dir := range []string{"/var/lib/weave", "/opt/cni/bin", "/etc/cni/net.d", "/var/run/weave"} {
		if !slices.Contains(mounted, dir) {
			t.Errorf("%s is not kept on the node", dir)
		}
	}
	if !slices.Contains(c.Command, "--data-dir=/var/lib/weave") {
		t.Errorf("weaved's data dir is not the hostPath: %v", c.Command)
	}
	if kinds["ClusterRoleBinding"] != 1 || kinds["RoleBinding"] != 1 {
		t.Errorf("bindings: %v", kinds)
	}
	grants := func(res, verb string) bool {
		return slices.ContainsFunc(roles, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.Resources, res) && slices.Contains(r.Verbs, verb)
		})
	}
	if !grants("nodes", "list") || !grants("configmaps", "get") {
		t.Errorf("the roles do not grant what ListPeers and PodRange read: %+v", roles)
	}
}
