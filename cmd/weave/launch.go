package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"

	"weavenet/api"
)

// launch starts weaved fully detached (own session, output to a log file in
// its data dir) so that `name=$(weave launch ...)` returns, then waits until
// the daemon's API answers.
func launch(ctx context.Context, cmd *cli.Command) error {
	args := cmd.Args().Slice()
	if slices.Contains(args, "--help") || slices.Contains(args, "-help") {
		bin, err := weavedPath()
		if err != nil {
			return err
		}
		fmt.Println("weave launch [weaved flags] [PEER...]: start weaved in the background; its flags:")
		help := exec.Command(bin, "--help")
		help.Stdout, help.Stderr = os.Stdout, os.Stderr
		return help.Run()
	}
	httpAddr := flagValue(args, "http-addr", cmd.String("http-addr"))
	dataDir := flagValue(args, "data-dir", api.DefaultDataDir)
	c := api.NewClient(httpAddr)
	if rep, err := c.Report(ctx); err == nil {
		return fmt.Errorf("weave is already running at %s as %s(%s); stop it first with 'weave stop'", httpAddr, rep.Router.Name, rep.Router.NickName)
	}
	bin, err := weavedPath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	logPath := filepath.Join(dataDir, "weaved.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	defer logFile.Close()
	if !hasFlag(args, "http-addr") {
		args = append([]string{"--http-addr", httpAddr}, args...)
	}
	p := exec.Command(bin, args...)
	p.Stdout, p.Stderr = logFile, logFile
	p.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := p.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.Wait() }()

	start := time.Now()
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	said := false
	for {
		select {
		case <-exited:
			return fmt.Errorf("weaved exited: %s (log: %s)", lastLine(logPath), logPath)
		case <-deadline:
			return fmt.Errorf("weaved did not answer at %s within 60s (log: %s)", httpAddr, logPath)
		case <-tick.C:
			rep, err := c.Report(ctx)
			if err != nil {
				if !said && time.Since(start) > time.Second {
					fmt.Fprintf(os.Stderr, "waiting for weaved to answer at %s (log: %s)\n", httpAddr, logPath)
					said = true
				}
				continue
			}
			// Addresses wait for the first peers to agree on the range;
			// say so rather than leave a user wondering why weave run
			// hangs.
			if ip := rep.IPAM; ip != nil && strings.HasPrefix(ip.Status, "awaiting consensus") {
				fmt.Fprintf(os.Stderr, "IPAM is %s: addresses are handed out once enough of the first peers are connected\n", ip.Status)
			}
			fmt.Println(rep.Router.Name)
			return nil
		}
	}
}

func weavedPath() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "weaved")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("weaved")
	if err != nil {
		return "", errors.New("weaved not found next to weave nor in PATH; install both binaries together")
	}
	return p, nil
}

// flagValue finds --name VALUE or --name=VALUE among weaved's arguments.
func flagValue(args []string, name, def string) string {
	for i, a := range args {
		for _, prefix := range []string{"--" + name, "-" + name} {
			if a == prefix && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, prefix+"="); ok {
				return v
			}
		}
	}
	return def
}

func hasFlag(args []string, name string) bool {
	return flagValue(args, name, "\x00") != "\x00"
}

func lastLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "no log"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
