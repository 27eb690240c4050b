package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v3"
	"github.com/vishvananda/netns"

	"weavenet/api"
	"weavenet/fastdp"
	"weavenet/netdev"
)

// checkAddrs validates the ADDR forms before anything is done with them.
func checkAddrs(addrs []string) error {
	for _, s := range addrs {
		switch {
		case s == "none" || s == "net:default":
		case strings.HasPrefix(s, "net:"):
			if p, err := netip.ParsePrefix(strings.TrimPrefix(s, "net:")); err != nil || !p.Addr().Is4() {
				return fmt.Errorf("%q: want net:CIDR such as net:10.2.2.0/24", s)
			}
		default:
			if p, err := netip.ParsePrefix(s); err != nil || !p.Addr().Is4() {
				return fmt.Errorf("%q is not an address: want CIDR (10.2.1.2/24), net:default, net:CIDR or none", s)
			}
		}
	}
	return nil
}

const netnsDir = "/var/run/netns"

// run makes a container: a named network namespace attached to the weave
// network with its name in DNS, and CMD started in it, detached.
const runUsage = `weave run [ADDR...] DOCKER-RUN-ARGS
weave run [ADDR...] --name NAME [-h FQDN] -- CMD [ARG...]

Docker form: docker run -d DOCKER-RUN-ARGS, with weaveDNS as the
container's resolver (--dns, --dns-search) and, given --name NAME and no
-h/--hostname, NAME.weave.local as its hostname; then the container is
plugged into the weave network with ADDR and its name registered in
weaveDNS. Prints the container's ID. Needs the docker CLI and Engine.

Namespace form, for machines without Docker: a network namespace NAME (as
ip netns add would), plugged into the weave network with ADDR, its name
(FQDN, default NAME.weave.local) in weaveDNS, /etc/netns/NAME/resolv.conf
pointing at weaveDNS, and CMD started in it, detached. Prints the
container's addresses.

ADDR: CIDR, net:default (the default), net:CIDR, none. The form is told by
one rule: a -- with only --name and -h/--hostname before it is the
namespace form; anything else is the Docker form. A -- after other flags is
an error (the Docker form takes no bare --).`

func run(ctx context.Context, cmd *cli.Command) error {
	if args := cmd.Args().Slice(); len(args) > 0 && (args[0] == "--help" || args[0] == "-help") {
		fmt.Println(runUsage)
		return nil
	}
	addrs, rest := splitRunAddrs(cmd.Args().Slice())
	nsForm, err := isNamespaceForm(rest)
	if err != nil {
		return err
	}
	if !nsForm {
		if err := checkAddrs(addrs); err != nil {
			return err
		}
		return dockerRun(ctx, cmd, addrs, rest)
	}
	name, hostname, addrs, command, err := parseRunArgs(cmd.Args().Slice())
	if err != nil {
		return err
	}
	if name == "" {
		return errors.New("weave run needs --name NAME: the container's network namespace and DNS name")
	}
	if strings.ContainsAny(name, "/ ") {
		return fmt.Errorf("--name %q: a container name cannot hold / or spaces", name)
	}
	if len(command) == 0 {
		return errors.New("weave run: give the command after --, e.g. weave run --name c1 -- sleep infinity")
	}
	if err := checkAddrs(addrs); err != nil {
		return err
	}
	bin, err := exec.LookPath(command[0])
	if err != nil {
		return fmt.Errorf("command %q: %w", command[0], err)
	}
	c := client(cmd)
	if _, err := c.Report(ctx); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(netnsDir, name)); err == nil {
		return fmt.Errorf("container %q exists; remove it first with weave rm %s", name, name)
	}
	if err := newNamedNetNS(name); err != nil {
		return fmt.Errorf("create network namespace %q: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, api.ClientTimeout)
	defer cancel()
	resp, err := c.Attach(ctx, api.AttachRequest{Container: name, Addrs: addrs, Hostname: hostname})
	if err != nil {
		_ = netns.DeleteNamed(name)
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := startIn(self, filepath.Join(netnsDir, name), bin, command[1:]); err != nil {
		// Leave nothing of a container whose command never ran.
		_, _ = c.Detach(ctx, api.AttachRequest{Container: name})
		_ = netns.DeleteNamed(name)
		return fmt.Errorf("start %s: %w", command[0], err)
	}
	fmt.Println(strings.Join(resp.Addrs, " "))
	return nil
}

// startIn starts bin with args in the namespace at nsPath, detached, and
// returns once it runs there: the helper (execIn) reports on a pipe that
// closes by itself when the command is exec'd, or carries why it was not.
// So weave run returns with the command in place, or with its error.
func startIn(self, nsPath, bin string, args []string) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	p := exec.Command(self, append([]string{execInNetNS, nsPath, bin}, args...)...)
	p.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	p.ExtraFiles = []*os.File{w} // fd 3 in the helper
	err = p.Start()
	w.Close()
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(r)
	if len(msg) > 0 {
		_ = p.Wait()
		return errors.New(strings.TrimSpace(string(msg)))
	}
	return p.Process.Release()
}

// parseRunArgs splits [ADDR...] --name NAME [-h FQDN] -- CMD [ARG...]. It
// is done by hand because everything after -- belongs to CMD, flags
// included.
func parseRunArgs(args []string) (name, hostname string, addrs, command []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func(flag string) (string, error) {
			if v, ok := strings.CutPrefix(a, flag+"="); ok {
				return v, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", flag)
			}
			i++
			return args[i], nil
		}
		switch {
		case a == "--":
			return name, hostname, addrs, args[i+1:], nil
		case a == "--name" || strings.HasPrefix(a, "--name="):
			name, err = value("--name")
		case a == "-h" || a == "--hostname" || strings.HasPrefix(a, "--hostname="):
			hostname, err = value(strings.SplitN(a, "=", 2)[0])
		case strings.HasPrefix(a, "-"):
			err = fmt.Errorf("unknown flag %s: weave run [ADDR...] --name NAME [-h FQDN] -- CMD [ARG...]", a)
		default:
			addrs = append(addrs, a)
		}
		if err != nil {
			return
		}
	}
	return name, hostname, addrs, nil, nil
}

// newNamedNetNS creates /var/run/netns/NAME as ip netns add does. netns
// switches the calling thread into the new namespace, so the thread is
// locked and switched back.
func newNamedNetNS(name string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	if err != nil {
		_ = netns.Set(orig)
		return err
	}
	ns.Close()
	return netns.Set(orig)
}

// execInNetNS is the hidden command weave run starts the container's
// process with: it enters the namespace and execs the command, so that the
// process and its children live there.
const execInNetNS = "__exec-in-netns"

func execIn(args []string) {
	if len(args) < 2 {
		os.Exit(2)
	}
	// fd 3 tells weave run how it went: closed by the exec, or the error.
	status := os.NewFile(3, "status")
	syscall.CloseOnExec(3)
	runtime.LockOSThread()
	ns, err := netns.GetFromPath(args[0])
	if err == nil {
		err = netns.Set(ns)
	}
	if err == nil {
		devnull, _ := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		for _, fd := range []int{0, 1, 2} {
			_ = syscall.Dup2(int(devnull.Fd()), fd)
		}
		err = syscall.Exec(args[1], args[1:], os.Environ())
	}
	fmt.Fprintf(status, "in %s: %v\n", args[0], err)
	os.Exit(1)
}

// rm stops a container's processes, releases its addresses and names, and
// deletes its namespace.
func rm(ctx context.Context, cmd *cli.Command) error {
	names := cmd.Args().Slice()
	if len(names) == 0 {
		return errors.New("name at least one container to remove: weave rm NAME")
	}
	c := client(cmd)
	for _, name := range names {
		path := filepath.Join(netnsDir, name)
		if _, err := os.Stat(path); err != nil {
			// Not a namespace: weaved asks Docker (docker rm -f, then
			// release), or knows it as a container already gone.
			if err := c.Rm(ctx, name); err != nil {
				return fmt.Errorf("no container %q (no %s, and %w)", name, path, err)
			}
			continue
		}
		if err := c.Rm(ctx, name); err != nil {
			return err
		}
		killIn(path)
		if err := netns.DeleteNamed(name); err != nil {
			return fmt.Errorf("delete network namespace %q: %w", name, err)
		}
	}
	return nil
}

// killIn kills every process whose network namespace is the one at path.
func killIn(path string) {
	var want syscall.Stat_t
	if syscall.Stat(path, &want) != nil {
		return
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", p.Name(), "ns/net"), &st) == nil && st.Ino == want.Ino && st.Dev == want.Dev {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func ps(ctx context.Context, cmd *cli.Command) error {
	list, err := client(cmd).Ps(ctx)
	if err != nil {
		return err
	}
	for _, c := range list {
		fmt.Printf("%s %s %s\n", c.Container, orDash(c.MAC), strings.Join(c.Addrs, " "))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func expose(on bool) cli.ActionFunc {
	return func(ctx context.Context, cmd *cli.Command) error {
		addrs := cmd.Args().Slice()
		if err := checkAddrs(addrs); err != nil {
			return err
		}
		var resp *api.AttachResponse
		var err error
		if on {
			resp, err = client(cmd).Expose(ctx, api.AttachRequest{Addrs: addrs, Hostname: cmd.String("hostname")})
		} else {
			resp, err = client(cmd).Hide(ctx, api.AttachRequest{Addrs: addrs})
		}
		if err != nil {
			return err
		}
		fmt.Println(strings.Join(resp.Addrs, " "))
		return nil
	}
}

func rmpeer(ctx context.Context, cmd *cli.Command) error {
	peers := cmd.Args().Slice()
	if len(peers) == 0 {
		return errors.New("name at least one peer (name or nickname) to remove: weave rmpeer PEER")
	}
	resp, err := client(cmd).Rmpeer(ctx, api.PeersRequest{Peers: peers})
	if err != nil {
		return err
	}
	for _, p := range peers {
		fmt.Printf("%d IPs taken over from %s\n", resp.Reclaimed[p], p)
	}
	return nil
}

// reset asks the daemon to reset itself. With none running (weave stop
// keeps the bridge and the state for the next launch), it removes them
// itself: the bridge and the state files in --data-dir. The address space
// this peer held is then not handed over: weave rmpeer on another peer
// takes it.
func reset(ctx context.Context, cmd *cli.Command) error {
	c := client(cmd)
	err := c.Reset(ctx)
	if err == nil {
		return waitGone(ctx, c)
	}
	if !errors.Is(err, api.ErrNoDaemon) {
		return err
	}
	if err := netdev.DeleteLink(cmd.String("bridge")); err != nil {
		return fmt.Errorf("remove bridge: %w", err)
	}
	// The fast datapath's device, if a daemon died without removing it.
	if err := netdev.DeleteLink(fastdp.DeviceName(cmd.String("bridge"))); err != nil {
		return fmt.Errorf("remove VXLAN device: %w", err)
	}
	// Its allow-list; a kernel without nftables has none to remove.
	_ = fastdp.RemoveAllowList(cmd.String("bridge"))
	for _, f := range api.StateFiles() {
		if err := os.Remove(filepath.Join(cmd.String("data-dir"), f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove state: %w", err)
		}
	}
	return nil
}

// dnsArgs splits [IP...] CONTAINER.
func dnsArgs(cmd *cli.Command, verb string) (api.DNSRequest, error) {
	args := cmd.Args().Slice()
	if len(args) == 0 {
		return api.DNSRequest{}, fmt.Errorf("name the container: weave %s [IP...] CONTAINER [-h FQDN]", verb)
	}
	req := api.DNSRequest{Container: args[len(args)-1], Addrs: args[:len(args)-1], Hostname: cmd.String("hostname")}
	for _, a := range req.Addrs {
		if _, err := netip.ParseAddr(a); err != nil {
			return req, fmt.Errorf("%q is not an IP address", a)
		}
	}
	return req, nil
}

func dnsAdd(ctx context.Context, cmd *cli.Command) error {
	req, err := dnsArgs(cmd, "dns-add")
	if err != nil {
		return err
	}
	return client(cmd).DNSAdd(ctx, req)
}

func dnsRemove(ctx context.Context, cmd *cli.Command) error {
	req, err := dnsArgs(cmd, "dns-remove")
	if err != nil {
		return err
	}
	return client(cmd).DNSRemove(ctx, req)
}

func dnsLookup(ctx context.Context, cmd *cli.Command) error {
	if cmd.Args().Len() != 1 {
		return errors.New("give one name: weave dns-lookup NAME")
	}
	addrs, err := client(cmd).DNSLookup(ctx, cmd.Args().First())
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%s: no such name", cmd.Args().First())
	}
	fmt.Println(strings.Join(addrs, "\n"))
	return nil
}
