// Package cni owns weavenet's CNI plugins: weave-net, which plugs a pod's
// network namespace into the weave bridge with a veth pair, and
// weave-ipam, which hands out addresses from weavenet's ring and can serve
// under other plugins too. Both ask the local weaved for addresses over its
// HTTP API (package api), keyed by network, container ID and interface, so
// that a retried ADD gets the address it got before and GC can tell which
// allocations are still wanted. The commands in cmd/weave-net and
// cmd/weave-ipam only hand this package's functions to the CNI skeleton.
//
// Spec 1.1.0 is implemented (ADD, DEL, CHECK, STATUS, GC, VERSION) and
// configurations of 0.3.0, 0.3.1, 0.4.0 and 1.0.0 are accepted, with the
// result printed in the version the configuration asks for.
package cni
