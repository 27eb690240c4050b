package cni

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"weavenet/api"
)

// Where the CNI runtimes look by default.
const (
	DefaultBinDir   = "/opt/cni/bin"
	DefaultConfDir  = "/etc/cni/net.d"
	ConflistName    = "10-weave.conflist"
	DefaultNetwork  = "weave"
	pluginNet       = "weave-net"
	pluginIPAM      = "weave-ipam"
	conflistVersion = "1.1.0"
)

// Install is what `weave-net setup` does.
type Install struct {
	SrcDir  string // holds weave-net and weave-ipam
	BinDir  string // default DefaultBinDir
	ConfDir string // default DefaultConfDir
	Daemon  string // weaved's API address written into the conflist
	// NoPortmap leaves the reference portmap plugin out of the chain.
	NoPortmap bool
}

// Conflist is the network configuration list weave-net setup writes:
// weave-net (addresses from weaved in-process) chained with the reference
// portmap plugin, which publishes pods' hostPorts.
func Conflist(daemon string, portmap bool) []byte {
	if daemon == "" {
		daemon = api.AddrFromEnv()
	}
	plugins := []map[string]any{{"type": pluginNet, "daemon": daemon, "hairpinMode": true}}
	if portmap {
		plugins = append(plugins, map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true})
	}
	b, err := json.MarshalIndent(map[string]any{"cniVersion": conflistVersion, "name": DefaultNetwork, "plugins": plugins}, "", "  ")
	if err != nil {
		panic(err) // maps of strings and bools always marshal
	}
	return append(b, '\n')
}

// Run copies the plugins into BinDir and writes the conflist into ConfDir.
// Each file is written beside its destination and renamed over it, so a
// runtime never execs or reads a half-written file, and a plugin binary
// that is running is replaced rather than overwritten.
func (in Install) Run() error {
	if in.BinDir == "" {
		in.BinDir = DefaultBinDir
	}
	if in.ConfDir == "" {
		in.ConfDir = DefaultConfDir
	}
	for _, dir := range []string{in.BinDir, in.ConfDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
	}
	for _, name := range []string{pluginNet, pluginIPAM} {
		src := filepath.Join(in.SrcDir, name)
		if err := copyFile(src, filepath.Join(in.BinDir, name), 0o755); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
	}
	if err := writeFile(filepath.Join(in.ConfDir, ConflistName), Conflist(in.Daemon, !in.NoPortmap), 0o644); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return atomicWrite(dst, mode, func(w io.Writer) error { _, err := io.Copy(w, f); return err })
}

func writeFile(dst string, b []byte, mode os.FileMode) error {
	return atomicWrite(dst, mode, func(w io.Writer) error { _, err := w.Write(b); return err })
}

func atomicWrite(dst string, mode os.FileMode, fill func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := fill(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
