package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v3"
)

// weave env and weave config point the docker CLI at the Docker API proxy
// of the running weaved, as Weave Net's did.

// origDockerHost keeps the DOCKER_HOST that weave env replaced, for
// weave env --restore.
const origDockerHost = "ORIG_DOCKER_HOST"

var proxyCommands = []*cli.Command{
	{
		Name:  "env",
		Usage: "print the shell commands that point the docker CLI at weave's Docker API proxy: eval $(weave env); --restore undoes it",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "restore", Usage: "print the commands that give DOCKER_HOST back its previous value"}},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Bool("restore") {
				fmt.Println(restoreEnv(os.Getenv(origDockerHost)))
				return nil
			}
			addr, err := proxyAddr(ctx, cmd)
			if err != nil {
				return err
			}
			fmt.Println(exportEnv(addr, os.Getenv("DOCKER_HOST"), os.Getenv(origDockerHost)))
			return nil
		},
	},
	{
		Name:  "config",
		Usage: "print the docker flag that reaches weave's Docker API proxy: docker $(weave config) run ...",
		Action: func(ctx context.Context, cmd *cli.Command) error {
			addr, err := proxyAddr(ctx, cmd)
			if err != nil {
				return err
			}
			fmt.Println("-H " + addr)
			return nil
		},
	},
}

func proxyAddr(ctx context.Context, cmd *cli.Command) (string, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rep, err := client(cmd).Report(ctx)
	if err != nil {
		return "", err
	}
	if rep.Proxy == nil {
		return "", errors.New("weave's Docker API proxy is not running (launched with --no-proxy, without Docker, or its socket was taken: see weaved's log)")
	}
	return rep.Proxy.Address, nil
}

// exportEnv points DOCKER_HOST at the proxy and keeps the previous value,
// unless that already was the proxy (a second eval must not lose it).
func exportEnv(proxy, current, orig string) string {
	if current == proxy {
		current = orig
	}
	return fmt.Sprintf("export DOCKER_HOST=%s %s=%s", shellQuote(proxy), origDockerHost, shellQuote(current))
}

// restoreEnv gives DOCKER_HOST its value from before weave env.
func restoreEnv(orig string) string {
	if orig == "" {
		return "unset DOCKER_HOST " + origDockerHost
	}
	return fmt.Sprintf("export DOCKER_HOST=%s; unset %s", shellQuote(orig), origDockerHost)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/:._-@%+=,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
