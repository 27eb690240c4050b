package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/urfave/cli/v3"

	"weavenet/cni"
)

// setupCNICommand installs the CNI plugins, which `make build` puts beside
// weave, for a container runtime on this host.
var setupCNICommand = &cli.Command{
	Name:  "setup-cni",
	Usage: "install the CNI plugins weave-net and weave-ipam and " + cni.ConflistName + " (weave-net chained with portmap) for a container runtime",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "cni-bin-dir", Value: cni.DefaultBinDir, Usage: "where the runtime finds CNI plugins"},
		&cli.StringFlag{Name: "cni-conf-dir", Value: cni.DefaultConfDir, Usage: "where the runtime finds network configurations"},
		&cli.BoolFlag{Name: "no-portmap", Usage: "leave the portmap plugin (hostPort) out of the chain"},
	},
	Action: func(_ context.Context, cmd *cli.Command) error {
		src, err := pluginDir()
		if err != nil {
			return err
		}
		in := cni.Install{SrcDir: src, BinDir: cmd.String("cni-bin-dir"), ConfDir: cmd.String("cni-conf-dir"),
			Daemon: cmd.String("http-addr"), NoPortmap: cmd.Bool("no-portmap")}
		if err := in.Run(); err != nil {
			return err
		}
		fmt.Printf("installed weave-net and weave-ipam in %s, %s in %s (daemon %s)\n", in.BinDir, cni.ConflistName, in.ConfDir, in.Daemon)
		return nil
	},
}

// pluginDir is where weave-net and weave-ipam are: beside weave, else
// beside the weave-net found in PATH.
func pluginDir() (string, error) {
	if self, err := os.Executable(); err == nil {
		dir := filepath.Dir(self)
		if _, err := os.Stat(filepath.Join(dir, "weave-net")); err == nil {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("weave-net"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("weave-net not found beside weave nor in PATH: build it (make build)")
}
