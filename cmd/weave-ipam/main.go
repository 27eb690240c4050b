// Command weave-ipam is weavenet's CNI IPAM plugin: addresses from the
// local weaved's ring, for weave-net or any other plugin (see package cni).
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"weavenet/cni"
)

func main() {
	skel.PluginMainFuncs(cni.IPAMFuncs(), cni.PluginInfo(), "weave-ipam: addresses from weavenet's ring for CNI plugins")
}
