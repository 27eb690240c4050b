// Command weaved is the weavenet daemon: one per host (network namespace).
// It joins the mesh of peers, owns the weave bridge and its TAP port, carries
// the bridge's frames to other hosts over UDP, and serves the local API that
// the weave CLI talks to.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/urfave/cli/v3"

	"weavenet/api"
	"weavenet/docker"
	"weavenet/gossip"
	"weavenet/ipam"
	"weavenet/router"
)

func main() {
	tuneRuntime()
	cmd := &cli.Command{
		Name:      "weaved",
		Usage:     "the weavenet daemon: join the mesh and carry the weave bridge's frames to other hosts",
		ArgsUsage: "[PEER...]",
		Version:   api.Version,
		Flags:     append(append(flags(), proxyFlags()...), pluginFlags()...),
		OnUsageError: func(_ context.Context, _ *cli.Command, err error, _ bool) error {
			return fmt.Errorf("%w (see weaved --help)", err)
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			cfg, err := configFrom(cmd)
			if err != nil {
				return err
			}
			if lowLatency(cmd.IsSet("low-latency"), cmd.Bool("low-latency"), fastdpOff(cfg)) {
				keepMonitorAwake()
			}
			return run(ctx, cfg)
		},
	}
	if err := cmd.Run(context.Background(), os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "weaved: %s\n", oneLine(err))
		os.Exit(1)
	}
}

func flags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringSliceFlag{Name: "peer", Usage: "`HOST[:PORT]` of a peer to connect to (repeatable; positional PEERs too)"},
		&cli.StringFlag{Name: "name", Usage: "peer name, a MAC such as aa:bb:cc:dd:ee:ff (default: generated once and kept in the data dir)"},
		&cli.StringFlag{Name: "nickname", Usage: "human name of this peer (default: hostname)"},
		&cli.StringFlag{Name: "host", Usage: "address to listen on for peers (default: all)"},
		&cli.IntFlag{Name: "port", Value: router.DefaultPort, Usage: "TCP control and UDP data port"},
		&cli.StringFlag{Name: "bridge", Value: api.DefaultBridge, Usage: "bridge that containers plug into"},
		&cli.IntFlag{Name: "mtu", Value: router.DefaultMTU, Usage: "MTU of the bridge and of containers' interfaces"},
		&cli.StringFlag{Name: "data-dir", Value: api.DefaultDataDir, Usage: "where persisted state lives (two daemons on one machine need two)"},
		&cli.StringFlag{Name: "http-addr", Value: api.DefaultAddr, Usage: "local API address the weave CLI talks to: unix:///PATH (a socket only this user can use) or HOST:PORT (TCP: any local user can)", Sources: cli.EnvVars(api.AddrEnv)},
		&cli.StringFlag{Name: "api-group", Usage: "let this `GROUP` (name or number) use the API socket too (mode 0660), as Docker's socket is the docker group's; its members can then do anything weave can without sudo"},
		&cli.StringFlag{Name: "password", Usage: "encrypt all traffic and refuse peers without this password (prefer --password-file: arguments show in ps)", Sources: cli.EnvVars("WEAVE_PASSWORD")},
		&cli.StringFlag{Name: "password-file", Usage: "read the password from `FILE` (first line)"},
		&cli.StringFlag{Name: "password-kdf", Value: gossip.KDFArgon2id, Usage: "how the password keys connections: argon2id (memory-hard, slow to guess) or weave (Weave Net 2.x's single SHA-256, fast to guess; needed only while Weave Net peers share the network); the same on every peer"},
		&cli.StringFlag{Name: "trusted-subnets", Usage: "`CIDR,...` of peers that may talk to us unencrypted (if they trust us too)"},
		&cli.StringFlag{Name: "metrics-addr", Value: "127.0.0.1:6782", Usage: "address to serve Prometheus metrics on (/metrics); empty for none"},
		&cli.BoolFlag{Name: "no-discovery", Usage: "connect only to the peers given, not to peers learned from them"},
		&cli.IntFlag{Name: "conn-limit", Value: 100, Usage: "maximum number of connections to peers"},
		&cli.StringFlag{Name: "ipalloc-range", Usage: "`CIDR` containers' addresses are allocated from (default 10.32.0.0/12)"},
		&cli.StringFlag{Name: "ipalloc-default-subnet", Usage: "`CIDR` inside the range that containers get by default (default: the whole range)"},
		&cli.StringFlag{Name: "ipalloc-init", Usage: "how the first peers share the range: consensus[=N], seed=NAME,..., or observer (default consensus, N = this peer and the peers given)"},
		&cli.StringFlag{Name: "dns-domain", Value: "weave.local.", Usage: "domain weaveDNS answers for"},
		&cli.IntFlag{Name: "dns-ttl", Value: 1, Usage: "TTL of weaveDNS answers, in seconds"},
		&cli.StringFlag{Name: "dns-address", Value: defaultDNSAddr.String(), Usage: "address weaveDNS serves on, on every host's bridge"},
		&cli.StringFlag{Name: "dns-resolv-conf", Value: "/etc/resolv.conf", Usage: "resolv.conf `FILE` naming the upstream resolvers for names outside the domain (re-read when it changes)"},
		&cli.BoolFlag{Name: "no-dns", Usage: "do not run weaveDNS"},
		&cli.StringFlag{Name: "mode", Value: modeBridge, Usage: "bridge: containers on a Linux bridge; l3: the host itself joins the overlay through a TUN device, with an address from IPAM"},
		&cli.StringFlag{Name: "l3-device", Value: "weavetun", Usage: "in L3 mode, the name of the TUN device"},
		&cli.StringFlag{Name: "l3-address", Value: "net:default", Usage: "in L3 mode, the host's overlay address: `ADDR` is CIDR (a fixed address such as 10.32.0.5/12), net:default or net:CIDR (allocated by IPAM)"},
		&cli.BoolFlag{Name: "weave-compat", Usage: "on every link speak only what Weave Net 2.x speaks: its plain sleeve frames and NaCl encryption (slower; for mixed networks and tests)"},
		&cli.StringFlag{Name: "migrate-from", Usage: "take this host over from Weave Net 2.x: its data `FILE` (e.g. /var/lib/weave/weave-netdata.db), read-only, gives the peer name and the containers' addresses"},
		&cli.StringFlag{Name: "migrate-names", Usage: "with --migrate-from: Weave Net's report saved as JSON before it stopped (`FILE`), for its containers' DNS names"},
		&cli.StringFlag{Name: "docker-api", Value: docker.DefaultHost, Usage: "the Docker Engine whose containers weave run, attach, ps and rm may name, and whose events keep them plugged in; empty: none"},
		&cli.BoolFlag{Name: "low-latency", Usage: "keep the Go runtime's monitor polling so that waking for a frame is quicker (sleeve ping RTT 0.32 instead of 0.55 ms on a 2-CPU VM), at the price of 100 wake-ups a second when idle (0.18% of a CPU instead of 0.05% with one peer); default: on only when this peer can have no fast datapath (a password, --datapath sleeve, L3 mode, --weave-compat)", Sources: cli.EnvVars(lowLatencyEnv)},
		&cli.BoolFlag{Name: "no-offload", Usage: "read single frames from the bridge (L3 mode: packets from the TUN) instead of 64 KiB offloaded super-frames"},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
	}, fastdpFlags()...)
}

// config is the daemon's validated configuration.
type config struct {
	peers     []string
	name      string
	nickname  string
	host      string
	port      int
	bridge    string // in L3 mode, the TUN device's name
	mode      string // modeBridge or modeL3
	l3Addr    addrSpec
	mtu       int
	dataDir   string
	httpAddr  string   // as given; apiAddr is what it says
	apiAddr   api.Addr // where the API listens
	apiGroup  int      // the socket's group (0660), or noGroup (0600)
	metrics   string
	discovery bool
	connLimit int
	offload   bool
	compat    bool
	password  []byte
	// passwordKDF is gossip.KDFArgon2id or gossip.KDFWeave.
	passwordKDF string
	// passwordFile is re-read on SIGHUP.
	passwordFile string
	trusted      []netip.Prefix
	// IPAM
	ipRange         netip.Prefix
	ipRangeExplicit bool
	defaultSubnet   netip.Prefix
	ipInit          ipam.Init
	// DNS
	dns       bool
	dnsDomain string
	dnsTTL    int
	dnsAddr   netip.Addr
	dnsConf   string
	logLevel  string
	logFormat string
	// dockerAPI is the Engine followed; empty for none.
	dockerAPI string
	proxy     proxyConfig
	plugin    pluginConfig
	fastdp    fastdpConfig
	// migration is what --migrate-from imports; nil without it.
	migration *migration
}

func configFrom(cmd *cli.Command) (config, error) {
	c := config{
		peers:     append(cmd.StringSlice("peer"), cmd.Args().Slice()...),
		name:      cmd.String("name"),
		nickname:  cmd.String("nickname"),
		host:      cmd.String("host"),
		port:      cmd.Int("port"),
		bridge:    cmd.String("bridge"),
		mode:      modeBridge,
		mtu:       cmd.Int("mtu"),
		dataDir:   cmd.String("data-dir"),
		httpAddr:  cmd.String("http-addr"),
		metrics:   cmd.String("metrics-addr"),
		discovery: !cmd.Bool("no-discovery"),
		connLimit: cmd.Int("conn-limit"),
		offload:   !cmd.Bool("no-offload"),
		compat:    cmd.Bool("weave-compat"),
		logLevel:  cmd.String("log-level"),
		logFormat: cmd.String("log-format"),
		dockerAPI: cmd.String("docker-api"),
	}
	switch {
	case c.port < 1 || c.port > 65535:
		return c, fmt.Errorf("--port %d: want 1-65535", c.port)
	case c.mtu < 576 || c.mtu > 65000:
		return c, fmt.Errorf("--mtu %d: want 576-65000", c.mtu)
	case c.bridge == "" || len(c.bridge) > 15:
		return c, fmt.Errorf("--bridge %q: want a name of 1-15 characters", c.bridge)
	case c.connLimit < 1:
		return c, fmt.Errorf("--conn-limit %d: want at least 1", c.connLimit)
	case c.dataDir == "":
		return c, errors.New("--data-dir is empty: give a directory for persisted state")
	}
	if err := gossip.ValidatePeers(c.peers); err != nil {
		return c, err
	}
	pw, err := password(cmd.String("password"), cmd.String("password-file"))
	if err != nil {
		return c, err
	}
	c.password, c.passwordFile = pw, cmd.String("password-file")
	if c.apiAddr, err = api.ParseAddr(c.httpAddr); err != nil {
		return c, fmt.Errorf("--http-addr: %w", err)
	}
	if c.apiGroup, err = apiGroup(cmd.String("api-group"), c.apiAddr); err != nil {
		return c, err
	}
	switch c.passwordKDF = cmd.String("password-kdf"); c.passwordKDF {
	case gossip.KDFArgon2id, gossip.KDFWeave:
	default:
		return c, fmt.Errorf("--password-kdf %q: want %s, or %s only for networks with Weave Net 2.x peers", c.passwordKDF, gossip.KDFArgon2id, gossip.KDFWeave)
	}
	if err := ipamConfig(cmd, &c); err != nil {
		return c, err
	}
	if err := l3Config(cmd.String("mode"), cmd.String("l3-device"), cmd.String("l3-address"), &c); err != nil {
		return c, err
	}
	c.dns = !cmd.Bool("no-dns")
	c.dnsDomain = cmd.String("dns-domain")
	c.dnsTTL = cmd.Int("dns-ttl")
	c.dnsConf = cmd.String("dns-resolv-conf")
	if c.dnsTTL < 0 {
		return c, fmt.Errorf("--dns-ttl %d: want 0 or more seconds", c.dnsTTL)
	}
	if c.dnsAddr, err = netip.ParseAddr(cmd.String("dns-address")); err != nil || !c.dnsAddr.Is4() {
		return c, fmt.Errorf("--dns-address %q: want an IPv4 address such as %v", cmd.String("dns-address"), defaultDNSAddr)
	}
	if s := cmd.String("trusted-subnets"); s != "" {
		for _, f := range strings.Split(s, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(f))
			if err != nil {
				return c, fmt.Errorf("--trusted-subnets: %q is not a CIDR such as 192.168.0.0/16", f)
			}
			c.trusted = append(c.trusted, p)
		}
	}
	if _, err := newLogger(c.logLevel, c.logFormat); err != nil {
		return c, err
	}
	if c.proxy, err = proxyConfigFrom(cmd); err != nil {
		return c, err
	}
	if c.plugin, err = pluginConfigFrom(cmd); err != nil {
		return c, err
	}
	if c.fastdp, err = fastdpConfigFrom(cmd); err != nil {
		return c, err
	}
	if err := migrateConfig(cmd.String("migrate-from"), cmd.String("migrate-names"), &c); err != nil {
		return c, err
	}
	return c, nil
}

// defaultDNSAddr is link-local, so it collides with nothing a user routes;
// every host gives it to its bridge and the router keeps its ARP at home.
var defaultDNSAddr = netip.MustParseAddr("169.254.53.53")

func ipamConfig(cmd *cli.Command, c *config) error {
	c.ipRange = ipam.DefaultRange
	if s := cmd.String("ipalloc-range"); s != "" {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
			return fmt.Errorf("--ipalloc-range %q: want an IPv4 CIDR of at least 4 addresses, such as 10.32.0.0/12", s)
		}
		c.ipRange, c.ipRangeExplicit = p.Masked(), true
	}
	c.defaultSubnet = c.ipRange
	if s := cmd.String("ipalloc-default-subnet"); s != "" {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("--ipalloc-default-subnet %q: want an IPv4 CIDR inside --ipalloc-range", s)
		}
		p = p.Masked()
		if !c.ipRange.Contains(p.Addr()) || p.Bits() < c.ipRange.Bits() {
			return fmt.Errorf("--ipalloc-default-subnet %v is not inside --ipalloc-range %v", p, c.ipRange)
		}
		c.defaultSubnet = p
	}
	init, err := ipam.ParseInit(cmd.String("ipalloc-init"))
	if err != nil {
		return fmt.Errorf("--ipalloc-init: %w", err)
	}
	c.ipInit = init
	return nil
}

// password returns the secret from --password (or WEAVE_PASSWORD) or from
// the first line of --password-file.
func password(literal, file string) ([]byte, error) {
	if literal != "" && file != "" {
		return nil, errors.New("--password and --password-file both given: use one")
	}
	if file == "" {
		if literal == "" {
			return nil, nil
		}
		return []byte(literal), nil
	}
	fi, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("--password-file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(os.Stderr, "weaved: warning: --password-file %s is readable by other users (mode %v); chmod 600 it\n", file, fi.Mode().Perm())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--password-file: %w", err)
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimRight(pw, "\r")
	if pw == "" {
		return nil, fmt.Errorf("--password-file %s: the first line is empty", file)
	}
	return []byte(pw), nil
}

// oneLine keeps an error on one line, as the CLI contract promises.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
