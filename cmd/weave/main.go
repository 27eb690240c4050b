// Command weave is the weavenet CLI: it launches and stops the local daemon
// (weaved) and talks to it over its local HTTP API.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/template"
	"time"

	"github.com/urfave/cli/v3"

	"weavenet/api"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == execInNetNS {
		execIn(os.Args[2:])
	}
	// -h is weave's hostname flag (weave run, dns-add), as in Weave Net;
	// help is --help only.
	cli.HelpFlag = &cli.BoolFlag{Name: "help", Usage: "show help"}
	if err := app().Run(context.Background(), os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "weave: %s\n", strings.Join(strings.Fields(err.Error()), " "))
		os.Exit(1)
	}
}

func app() *cli.Command {
	root := &cli.Command{
		Name:    "weave",
		Usage:   "run and inspect a weavenet container network",
		Version: api.Version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "http-addr", Value: api.DefaultAddr, Usage: "address of the local weaved API: unix:///PATH or HOST:PORT, as weaved's --http-addr", Sources: cli.EnvVars(api.AddrEnv)},
		},
		OnUsageError: usageError,
		Commands: []*cli.Command{
			{
				Name:            "launch",
				Usage:           "start weaved in the background on this host, wait until it answers, print its peer name",
				ArgsUsage:       "[weaved flags] [PEER...]",
				SkipFlagParsing: true,
				Action:          launch,
			},
			{Name: "stop", Usage: "stop the daemon", Action: stop},
			{
				Name:      "status",
				Usage:     "show the daemon's status, or one part of it",
				ArgsUsage: "[peers|connections|targets|ipam|dns]",
				Action:    status,
			},
			{
				Name:   "report",
				Usage:  "print the daemon's full state as JSON",
				Flags:  []cli.Flag{&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Usage: "Go `TEMPLATE` applied to the report instead of JSON"}},
				Action: report,
			},
			{Name: "attach", Usage: "plug a container (netns name, path or PID; or a Docker container's ID, unique ID prefix or name) into the weave network; ADDR: CIDR, net:default (the default), net:CIDR, none", ArgsUsage: "[ADDR...] CONTAINER",
				Flags: []cli.Flag{hostnameFlag}, Action: attach(true)},
			{Name: "detach", Usage: "take addresses from a container (all if none given); the last one unplugs it", ArgsUsage: "[ADDR...] CONTAINER", Action: attach(false)},
			{
				Name:            "run",
				Usage:           "make a container on the weave network with its name in DNS: docker run plus attach, or (with --) a network namespace NAME with CMD running in it; weave run --help",
				ArgsUsage:       "[ADDR...] DOCKER-RUN-ARGS | [ADDR...] --name NAME [-h FQDN] -- CMD [ARG...]",
				SkipFlagParsing: true,
				Action:          run,
			},
			{Name: "ps", Usage: "list containers with their MAC and addresses", Action: ps},
			{Name: "rm", Usage: "kill a container's processes, release its addresses and names, delete it (a Docker container: docker rm -f)", ArgsUsage: "NAME...", Action: rm},
			{Name: "expose", Usage: "give the host an address on the weave network; -h registers the host's name for it in DNS", ArgsUsage: "[ADDR...] [-h FQDN]",
				Flags: []cli.Flag{&cli.StringFlag{Name: "hostname", Aliases: []string{"h"}, Usage: "`FQDN` to register in DNS for the host's addresses"}}, Action: expose(true)},
			{Name: "hide", Usage: "take the host's weave addresses away (all if none given), and its name with the last", ArgsUsage: "[ADDR...]", Action: expose(false)},
			{Name: "rmpeer", Usage: "take over the address space of peers gone for good", ArgsUsage: "PEER...", Action: rmpeer},
			{Name: "reset", Usage: "stop the daemon, hand its address space to a peer, remove the bridge and persisted state (with no daemon running: those of --bridge and --data-dir)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "bridge", Value: api.DefaultBridge, Usage: "the bridge to remove when no daemon runs"},
					&cli.StringFlag{Name: "data-dir", Value: api.DefaultDataDir, Usage: "the state to remove when no daemon runs"},
				}, Action: reset},
			{Name: "dns-add", Usage: "register names", ArgsUsage: "[IP...] CONTAINER [-h FQDN]", Flags: []cli.Flag{hostnameFlag}, Action: dnsAdd},
			{Name: "dns-remove", Usage: "remove names", ArgsUsage: "[IP...] CONTAINER [-h FQDN]", Flags: []cli.Flag{hostnameFlag}, Action: dnsRemove},
			{Name: "dns-lookup", Usage: "resolve a name in the weave domain", ArgsUsage: "NAME", Action: dnsLookup},
			{Name: "connect", Usage: "add peers to connect to", ArgsUsage: "PEER...", Flags: []cli.Flag{&cli.BoolFlag{Name: "replace", Usage: "drop the targets not named"}}, Action: connect},
			{Name: "forget", Usage: "stop trying to connect to peers", ArgsUsage: "PEER...", Action: forget},
			{Name: "version", Usage: "print the version", Action: func(context.Context, *cli.Command) error {
				fmt.Println("weave", api.Version)
				return nil
			}},
		},
	}
	root.Commands = append(root.Commands, proxyCommands...)
	root.Commands = append(root.Commands, setupCNICommand)
	// The library calls only a command's own hook, and dumps its usage
	// without one.
	for _, c := range root.Commands {
		c.OnUsageError = usageError
	}
	return root
}

var hostnameFlag = &cli.StringFlag{Name: "hostname", Aliases: []string{"h"}, Usage: "`FQDN` to register in DNS (default: the container's name)"}

// usageError makes a bad flag one line that says where the right ones are,
// instead of the library's usage dump.
func usageError(_ context.Context, cmd *cli.Command, err error, _ bool) error {
	return fmt.Errorf("%w (see %s --help)", err, cmd.FullName())
}

func client(cmd *cli.Command) *api.Client { return api.NewClient(cmd.String("http-addr")) }

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, api.ClientTimeout)
}

func stop(ctx context.Context, cmd *cli.Command) error {
	c := client(cmd)
	if err := c.Stop(ctx); err != nil {
		return err
	}
	return waitGone(ctx, c)
}

// waitGone waits until the daemon no longer answers, so that a launch right
// after succeeds.
func waitGone(ctx context.Context, c *api.Client) error {
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := c.Report(ctx); errors.Is(err, api.ErrNoDaemon) {
			return nil
		}
	}
	return errors.New("the daemon did not stop within 15s")
}

func report(ctx context.Context, cmd *cli.Command) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rep, err := client(cmd).Report(ctx)
	if err != nil {
		return err
	}
	if f := cmd.String("format"); f != "" {
		t, err := template.New("report").Funcs(template.FuncMap{"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		}}).Parse(f)
		if err != nil {
			return fmt.Errorf("-f: %w", err)
		}
		if err := t.Execute(os.Stdout, rep); err != nil {
			return fmt.Errorf("-f: %w", err)
		}
		fmt.Println()
		return nil
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "    ")
	return enc.Encode(rep)
}

func attach(on bool) cli.ActionFunc {
	verb := map[bool]string{true: "attach", false: "detach"}[on]
	return func(ctx context.Context, cmd *cli.Command) error {
		args := cmd.Args().Slice()
		if len(args) < 1 {
			return fmt.Errorf("name the container: weave %s [ADDR...] CONTAINER", verb)
		}
		addrs, container := args[:len(args)-1], args[len(args)-1]
		if err := checkAddrs(addrs); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, api.ClientTimeout)
		defer cancel()
		req := api.AttachRequest{Container: container, Addrs: addrs}
		var resp *api.AttachResponse
		var err error
		if on {
			req.Hostname = cmd.String("hostname")
			resp, err = client(cmd).Attach(ctx, req)
		} else {
			resp, err = client(cmd).Detach(ctx, req)
		}
		if err != nil {
			return err
		}
		fmt.Println(strings.Join(resp.Addrs, " "))
		return nil
	}
}

func connect(ctx context.Context, cmd *cli.Command) error {
	peers := cmd.Args().Slice()
	if len(peers) == 0 && !cmd.Bool("replace") {
		return errors.New("name at least one PEER to connect to: weave connect [--replace] PEER")
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	return client(cmd).Connect(ctx, api.PeersRequest{Peers: peers, Replace: cmd.Bool("replace")})
}

func forget(ctx context.Context, cmd *cli.Command) error {
	peers := cmd.Args().Slice()
	if len(peers) == 0 {
		return errors.New("name at least one PEER to forget: weave forget PEER")
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	return client(cmd).Forget(ctx, api.PeersRequest{Peers: peers})
}
