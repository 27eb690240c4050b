// Command weave-net is weavenet's CNI plugin: run by a container runtime,
// it plugs a pod into the weave bridge with an address from the local
// weaved (see package cni). Run by hand as `weave-net setup`, it installs
// itself and weave-ipam into the CNI bin dir and writes the conflist.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/skel"

	"weavenet/api"
	"weavenet/cni"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "setup" {
		if err := setup(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "weave-net:", err)
			os.Exit(1)
		}
		return
	}
	skel.PluginMainFuncs(cni.NetFuncs(), cni.PluginInfo(), "weave-net: weavenet's CNI plugin (run `weave-net setup -h` to install it)")
}

func setup(args []string) error {
	fs := flag.NewFlagSet("weave-net setup", flag.ContinueOnError)
	in := cni.Install{}
	fs.StringVar(&in.BinDir, "cni-bin-dir", cni.DefaultBinDir, "where the runtime finds CNI plugins")
	fs.StringVar(&in.ConfDir, "cni-conf-dir", cni.DefaultConfDir, "where the runtime finds network configurations ("+cni.ConflistName+" is written there)")
	fs.StringVar(&in.Daemon, "daemon", api.AddrFromEnv(), "weaved's API address (--http-addr), written into the conflist")
	fs.BoolVar(&in.NoPortmap, "no-portmap", false, "leave the portmap plugin (hostPort) out of the chain")
	if err := fs.Parse(args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in.SrcDir = filepath.Dir(self)
	if err := in.Run(); err != nil {
		return err
	}
	fmt.Printf("installed weave-net and weave-ipam in %s, %s in %s\n", in.BinDir, cni.ConflistName, in.ConfDir)
	return nil
}
