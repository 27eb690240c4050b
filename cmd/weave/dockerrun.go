package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/urfave/cli/v3"

	"weavenet/api"
)

// weave run has two forms, told apart by one rule: after the ADDRs, a `--`
// with nothing but --name and -h/--hostname before it is the namespace
// form; anything else is the Docker form (docker run's arguments). A `--`
// after other flags is refused as ambiguous.

// splitRunAddrs takes the leading ADDRs off weave run's arguments.
func splitRunAddrs(args []string) (addrs, rest []string) {
	for i, a := range args {
		if checkAddrs([]string{a}) != nil {
			return args[:i], args[i:]
		}
	}
	return args, nil
}

// isNamespaceForm applies the rule to the arguments after the ADDRs.
func isNamespaceForm(rest []string) (bool, error) {
	sep := -1
	for i, a := range rest {
		if a == "--" {
			sep = i
			break
		}
	}
	prefix := rest
	if sep >= 0 {
		prefix = rest[:sep]
	}
	var foreign string
	for i := 0; i < len(prefix); i++ {
		a := prefix[i]
		switch {
		case a == "--name" || a == "-h" || a == "--hostname":
			i++ // its value
		case strings.HasPrefix(a, "--name=") || strings.HasPrefix(a, "--hostname="):
		default:
			if foreign == "" {
				foreign = a
			}
		}
	}
	switch {
	case foreign == "":
		// Only the namespace form's flags (or nothing): with or without
		// the --, it is that form, which says what is missing.
		return true, nil
	case sep >= 0:
		return false, fmt.Errorf("weave run: ambiguous: -- marks the namespace form (weave run --name NAME -- CMD), where only --name and -h may come before it, but %q does; for a Docker container leave the -- out", foreign)
	}
	return false, nil
}

// dockerRun is weave run's Docker form: docker run -d with weaveDNS as the
// container's resolver (and NAME.DOMAIN as its hostname when --name is
// given), then the container is attached with addrs. A container that
// cannot be attached is removed again.
func dockerRun(ctx context.Context, cmd *cli.Command, addrs, dockerArgs []string) error {
	bin, err := exec.LookPath("docker")
	if err != nil {
		return errors.New("weave run: no docker CLI for the Docker form (weave run [ADDR...] DOCKER-RUN-ARGS); without Docker use the namespace form: weave run --name NAME -- CMD")
	}
	c := client(cmd)
	rep, err := c.Report(ctx)
	if err != nil {
		return err
	}
	// WEAVE_CIDR=none: a proxy on the way (DOCKER_HOST) must not attach it
	// too; the attach below does.
	args := []string{"run", "-d", "-e", "WEAVE_CIDR=none"}
	if rep.DNS != nil && rep.DNS.Address != "" {
		domain := strings.TrimSuffix(rep.DNS.Domain, ".")
		addr := rep.DNS.Address // host:port where it serves
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			addr = ap.Addr().String()
		}
		args = append(args, "--dns", addr, "--dns-search", domain)
		if name := dockerFlag(dockerArgs, "--name"); name != "" && !hasHostnameFlag(dockerArgs) {
			args = append(args, "--hostname", name+"."+domain)
		}
	}
	args = append(args, dockerArgs...)
	var out bytes.Buffer
	run := exec.CommandContext(ctx, bin, args...)
	run.Stdout, run.Stderr = &out, os.Stderr
	if err := run.Run(); err != nil {
		return fmt.Errorf("docker run: %w", err)
	}
	fields := strings.Fields(out.String())
	if len(fields) == 0 {
		return errors.New("docker run printed no container ID")
	}
	id := fields[len(fields)-1]
	actx, cancel := context.WithTimeout(ctx, api.ClientTimeout)
	defer cancel()
	if _, err := c.Attach(actx, api.AttachRequest{Container: id, Addrs: addrs}); err != nil {
		// Leave nothing of a container that is not on the network.
		_ = exec.Command(bin, "rm", "-f", id).Run()
		return fmt.Errorf("attach %.12s: %w", id, err)
	}
	fmt.Println(id)
	return nil
}

// dockerFlag is the value of a docker run flag given before the image
// (flag VALUE or flag=VALUE), or "".
func dockerFlag(args []string, flag string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func hasHostnameFlag(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--hostname" || strings.HasPrefix(a, "--hostname=") || strings.HasPrefix(a, "-h=") {
			return true
		}
	}
	return false
}
