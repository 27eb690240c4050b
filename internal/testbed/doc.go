// Package testbed builds throwaway multi-host topologies out of Linux network
// namespaces so that integration tests can run real weaved daemons against
// each other on one machine.
//
// A Bed is a set of hosts (one network namespace each) joined by an underlay:
//
//   - FullMesh: every host has eth0 on one bridge that lives in its own
//     namespace; host hN has 192.168.200.N/24.
//   - Line: hN and hN+1 share a point-to-point segment 192.168.(200+N).0/24
//     on a veth pair; a host never forwards, so h1 cannot reach h3.
//
// Containers are further namespaces created with Host.AddContainer; weave
// attach plugs them into the host's weave bridge.
//
// Host.StartWeaver runs a real Weave Net 2.8.1 router on a host instead of
// weaved, for interoperability tests (weaver.go): the binary is unpacked
// once per test process from $WEAVER_XZ or ../shared/weave-2.8.1/weaver.xz
// beside the module, and tests skip when it is absent. Weaver.Attach plugs a
// container into its bridge as Weave Net's own attach does.
//
// Every namespace name starts with a per-bed random prefix ("wn" and four hex
// digits). Nothing is created in the root namespace: veth pairs are created
// directly inside their namespaces. Bed cleanup (registered with t.Cleanup)
// kills every process still running in the bed's namespaces, deletes the
// namespaces and removes the data directories, also when the test fails.
// Beds whose test process died without cleaning up are swept by the next New.
//
// The package needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); New skips the test
// otherwise.
package testbed
