// Command weave-kube runs weaved as a Kubernetes DaemonSet's container
// (examples/kubernetes/weavenet.yaml): it installs the CNI plugins on the
// node, finds the other nodes and the pod range through the API (package
// kube), then becomes weaved with them as peers and range.
//
//	weave-kube launch [flags] [-- WEAVED-ARGS...]   install, discover, exec weaved
//	weave-kube args [flags]                         print weaved's discovered flags, one a line
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"weavenet/api"
	"weavenet/cni"
	"weavenet/kube"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "weave-kube:", err)
		os.Exit(1)
	}
}

// discoverTimeout bounds the API calls at start; the DaemonSet restarts the
// container if the API is not reachable by then.
const discoverTimeout = 60 * time.Second

func run(argv []string, stdout io.Writer) error {
	if len(argv) == 0 || argv[0] != "launch" && argv[0] != "args" {
		return errors.New("usage: weave-kube launch|args [flags] [-- WEAVED-ARGS...]")
	}
	cmd := argv[0]
	fs := flag.NewFlagSet("weave-kube "+cmd, flag.ContinueOnError)
	node := fs.String("node-name", os.Getenv("NODE_NAME"), "this node's name (the manifest sets NODE_NAME from spec.nodeName)")
	apiURL := fs.String("kube-api", "", "API server URL, unauthenticated (tests); default: the in-cluster config")
	rangeFlag := fs.String("ipalloc-range", os.Getenv("IPALLOC_RANGE"), "pod range, overriding the cluster's")
	weaved := fs.String("weaved", "", "weaved binary (default: beside weave-kube, else in PATH)")
	binDir := fs.String("cni-bin-dir", cni.DefaultBinDir, "where to install the CNI plugins")
	confDir := fs.String("cni-conf-dir", cni.DefaultConfDir, "where to write "+cni.ConflistName)
	noCNI := fs.Bool("no-cni", false, "do not install the CNI plugins")
	if err := fs.Parse(argv[1:]); err != nil {
		return err
	}
	var override netip.Prefix
	if *rangeFlag != "" {
		p, err := netip.ParsePrefix(*rangeFlag)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("--ipalloc-range %q: want an IPv4 CIDR", *rangeFlag)
		}
		override = p.Masked()
	}
	cfg, err := restConfig(*apiURL)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), discoverTimeout)
	defer cancel()
	l, err := kube.Discover(ctx, client, *node, override)
	if err != nil {
		return err
	}
	args := l.WeavedArgs(*node)
	if cmd == "args" {
		for _, a := range args {
			fmt.Fprintln(stdout, a)
		}
		return nil
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	if !*noCNI {
		in := cni.Install{SrcDir: filepath.Dir(self), BinDir: *binDir, ConfDir: *confDir, Daemon: weavedAPIAddr(fs.Args())}
		if err := in.Run(); err != nil {
			return err
		}
	}
	bin := *weaved
	if bin == "" {
		bin = filepath.Join(filepath.Dir(self), "weaved")
		if _, err := os.Stat(bin); err != nil {
			if bin, err = exec.LookPath("weaved"); err != nil {
				return errors.New("weaved not found beside weave-kube nor in PATH: give --weaved")
			}
		}
	}
	full := append([]string{bin}, append(args, fs.Args()...)...)
	fmt.Fprintf(os.Stderr, "weave-kube: %d nodes, pod range %v (%s); exec %v\n", l.Peers.Nodes, l.Range, l.Source, full)
	return syscall.Exec(bin, full, os.Environ())
}

// weavedAPIAddr is where the weaved started with args will serve its API,
// which the conflist must name: its --http-addr, else what weaved itself
// falls back to.
func weavedAPIAddr(args []string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, name := range []string{"--http-addr", "-http-addr"} {
			if a == name && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, name+"="); ok {
				return v
			}
		}
	}
	return api.AddrFromEnv()
}

func restConfig(url string) (*rest.Config, error) {
	if url != "" {
		return &rest.Config{Host: url, Timeout: 10 * time.Second}, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster config (run inside a pod, or give --kube-api): %w", err)
	}
	cfg.Timeout = 10 * time.Second
	return cfg, nil
}
