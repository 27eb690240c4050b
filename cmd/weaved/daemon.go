package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"weavenet/api"
	"weavenet/dns"
	"weavenet/docker"
	"weavenet/gossip"
	"weavenet/ipam"
	"weavenet/mesh"
	"weavenet/netdev"
	"weavenet/router"
	"weavenet/tun"
)

// daemon is one running weaved: the pieces it runs, which shutdown stops.
// The bridge outlives it (reset removes it).
type daemon struct {
	cfg        config
	log        *slog.Logger
	node       *gossip.Node
	router     *router.Router
	store      *ipam.Store
	alloc      *ipam.Allocator
	dns        *dns.Server // nil with --no-dns
	containers *registry
	docker     *docker.Client // nil when Docker is not followed
	// dockerMu keeps Docker's events, their resync and weave rm of a
	// Docker container from acting on one container at once.
	dockerMu    sync.Mutex
	l3          *l3Host // in L3 mode
	stop        chan struct{}
	reset       bool // on the way out, remove bridge and state too
	cleanupOnce sync.Once
	quit        chan struct{}             // closed at cleanup: background work ends
	proxyAddr   atomic.Value              // string: the Docker API proxy's address while it serves
	plugin      atomic.Pointer[pluginRun] // the Docker network plugin while it serves
	wg          sync.WaitGroup            // background work

	// pendingAllocs counts addresses being obtained right now (waiting for
	// consensus, a donation or an owner), for the metrics.
	pendingAllocs atomic.Int64
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func run(ctx context.Context, cfg config) error {
	log, _ := newLogger(cfg.logLevel, cfg.logFormat)
	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	// Claim the API address first: it is how a second daemon on this host
	// finds out that one is already running, before touching any device.
	ln, stale, err := listenAPI(cfg.apiAddr, cfg.apiGroup)
	if err != nil {
		return err
	}
	if stale {
		log.Info("removed the API socket a stopped daemon left", "path", cfg.apiAddr.Address)
	}
	// Closing a Unix listener removes its socket: on every way out, also
	// the early returns below, which skip the server's shutdown.
	defer ln.Close()
	d := &daemon{cfg: cfg, log: log, stop: make(chan struct{})}
	defer d.cleanup()
	if err := d.start(); err != nil {
		return err
	}
	srv := newAPIServer(newAPIGuard(cfg.apiAddr, d.handler(), log))
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("API server", "err", err)
		}
	}()
	stopProxy, err := d.startProxy()
	if err != nil {
		return err
	}
	defer stopProxy()
	stopPlugin, err := d.startPlugin()
	if err != nil {
		return err
	}
	defer stopPlugin()
	if cfg.metrics != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(newMetrics(d), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mln, err := net.Listen("tcp", cfg.metrics)
		if err != nil {
			return fmt.Errorf("--metrics-addr %s: %w", cfg.metrics, err)
		}
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = msrv.Serve(mln) }()
		defer msrv.Close()
	}
	if err := sdNotify("READY=1"); err != nil {
		log.Warn("telling systemd we are ready", "err", err)
	}
	log.Info("weaved started", "name", d.node.Name.String(), "port", cfg.port, "mode", cfg.mode, "bridge", cfg.bridge, "api", cfg.apiAddr.String(), "peers", cfg.peers)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	var failed error
wait:
	for {
		select {
		case <-d.router.Failed():
			// Its TAP (or TUN) is gone, deleted under us: exit, so that
			// the service manager starts a daemon that makes a new one.
			failed = fmt.Errorf("%w; restart weaved to make a new one", d.router.Err())
			log.Error("stopping", "reason", "device lost", "err", d.router.Err())
		case s := <-sigs:
			if s == syscall.SIGHUP {
				d.reload()
				continue
			}
			log.Info("stopping", "signal", s.String())
		case <-d.stop:
			log.Info("stopping", "reason", "API request")
		case <-ctx.Done():
		}
		break wait
	}
	_ = sdNotify("STOPPING=1")
	// Release devices and ports before the API goes quiet: weave stop
	// returns when it does, and a launch right after must find them free.
	// The plugin goes first: the engine must not plug into a bridge whose
	// router is gone.
	stopPlugin()
	d.cleanup()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	return failed
}

func (d *daemon) start() error {
	cfg := d.cfg
	clash, err := netdev.OverlappingRoutes(cfg.ipRange, cfg.bridge)
	if err != nil {
		return err
	}
	switch {
	case len(clash) > 0 && !cfg.ipRangeExplicit:
		return fmt.Errorf("the default --ipalloc-range %v overlaps this host's route %s: pass --ipalloc-range with a free range (or, if that is a weave bridge a stopped daemon left, weave reset removes it)", cfg.ipRange, clash[0])
	case len(clash) > 0:
		// Chosen by hand: the user may mean it (a range routed elsewhere
		// on purpose), but should hear of it.
		d.log.Warn("--ipalloc-range overlaps a route of this host: containers may not reach what that route leads to", "range", cfg.ipRange, "route", clash[0])
	}
	store, err := ipam.OpenStore(filepath.Join(cfg.dataDir, "ipam.db"))
	if err != nil {
		return fmt.Errorf("--data-dir %s: %w", cfg.dataDir, err)
	}
	d.store = store
	if d.containers, err = openRegistry(filepath.Join(cfg.dataDir, "containers.json")); err != nil {
		return err
	}
	if err := d.prepareMigration(); err != nil {
		return err
	}
	cfg = d.cfg
	var dev router.Device
	if cfg.mode == modeL3 {
		if dev, err = d.openL3(); err != nil {
			return err
		}
	} else {
		if _, err := netdev.EnsureBridge(cfg.bridge, cfg.mtu); err != nil {
			return fmt.Errorf("--bridge %s: %w", cfg.bridge, err)
		}
		dev, err = tun.OpenTAP(tun.TAPConfig{
			Name:    tapName(cfg.bridge),
			MTU:     cfg.mtu,
			Bridge:  cfg.bridge,
			VnetHdr: true,
			Offload: cfg.offload,
		})
		if err != nil {
			return fmt.Errorf("bridge port: %w", err)
		}
	}
	rcfg := router.Config{Device: dev, Host: cfg.host, Port: cfg.port, MTU: cfg.mtu, Logger: d.log, WeaveCompat: cfg.compat}
	if cfg.dns {
		rcfg.HostLocal = []netip.Addr{cfg.dnsAddr}
	}
	if err := d.openFastdp(cfg, &rcfg); err != nil {
		dev.Close()
		return err
	}
	r, err := router.New(rcfg)
	if err != nil {
		dev.Close()
		if rcfg.FastDatapath != nil {
			rcfg.FastDatapath.Close()
		}
		return fmt.Errorf("--port %d: %w", cfg.port, err)
	}
	d.router = r
	node, err := gossip.New(gossip.Config{
		Name:           cfg.name,
		NickName:       cfg.nickname,
		Host:           cfg.host,
		Port:           cfg.port,
		DataDir:        cfg.dataDir,
		Discovery:      cfg.discovery,
		ConnLimit:      cfg.connLimit,
		Password:       cfg.password,
		PasswordKDF:    cfg.passwordKDF,
		TrustedSubnets: cfg.trusted,
		Logger:         d.log,
	}, r)
	if err != nil {
		return err
	}
	if len(cfg.password) > 0 {
		// argon2id's 64 MiB are garbage now: hand them back to the system
		// instead of carrying them in RSS until the scavenger gets there.
		debug.FreeOSMemory()
	}
	d.node = node
	// A bridge MAC of our own, stable across restarts: the peer name is a
	// locally administered unicast MAC no one else uses.
	if cfg.mode != modeL3 {
		if err := netdev.SetMAC(cfg.bridge, net.HardwareAddr(peerNameBytes(node.Name))); err != nil {
			return err
		}
	}

	// Gossipers register before the mesh starts, so that no message for
	// them arrives first.
	peers := &meshPeers{m: node.Mesh, nicks: map[mesh.PeerName]string{}}
	alloc, err := ipam.New(ipam.Config{
		Ourself:       node.Name,
		NickName:      node.Mesh.Ourself.NickName,
		Range:         cfg.ipRange,
		DefaultSubnet: cfg.defaultSubnet,
		Init:          cfg.ipInit,
		InitialPeers:  len(cfg.peers) + 1,
		Store:         store,
		Peers:         peers,
		Logger:        d.log.With("component", "ipam"),
	})
	if err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	d.alloc = alloc
	g, err := node.Mesh.NewGossip("ipam", alloc)
	if err != nil {
		return fmt.Errorf("ipam gossip: %w", err)
	}
	alloc.SetGossip(g)
	// Weave Net 2.x peers gossip IPAM on this channel in their format:
	// the allocator speaks it too, so a mixed cluster shares one ring.
	wg, err := node.Mesh.NewGossip("IPallocation", alloc.WeaveGossiper())
	if err != nil {
		return fmt.Errorf("ipam gossip (Weave Net channel): %w", err)
	}
	alloc.SetWeaveGossip(wg)
	alloc.SendWeaveWhen(r.WeaveNetConnected)
	node.Mesh.Routes.OnChange(alloc.PeersChanged)

	// Addresses weave expose gave the host survive a restart, as the
	// containers' do.
	for _, p := range alloc.Lookup(exposeKey) {
		if err := netdev.AddAddr(cfg.bridge, p); err != nil {
			return err
		}
	}
	if cfg.mode == modeL3 {
		// The station, with the peer name as its MAC, so the host keeps
		// it across restarts too.
		if err := d.startL3Station(net.HardwareAddr(peerNameBytes(node.Name))); err != nil {
			return err
		}
		if err := d.hostRoute(netip.Addr{}); err != nil {
			return err
		}
	}
	if cfg.dns {
		if err := d.startDNS(); err != nil {
			return err
		}
	}
	if cfg.mode != modeL3 {
		d.docker = openDocker(cfg.dockerAPI, d.log)
		d.reap() // containers that went while we were down
		d.replug()
		d.quit = make(chan struct{})
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.reapLoop(d.quit) }()
		if d.docker != nil {
			d.wg.Add(1)
			go func() { defer d.wg.Done(); d.followDocker(d.quit) }()
		}
		d.importWeave()
	}
	r.Start(node.Mesh)
	if err := node.Start(cfg.peers); err != nil {
		return err
	}
	if cfg.mode == modeL3 {
		d.obtainL3Address()
	}
	return nil
}

// reload is SIGHUP: connect again to every --peer (targets dropped with
// weave forget come back), and check the password file. mesh reads its
// password without a lock, so a new one cannot be swapped in safely while
// connections come and go: a changed file is reported, and takes effect at
// the next start.
func (d *daemon) reload() {
	if err := d.node.Connect(d.cfg.peers, false); err != nil {
		d.log.Warn("SIGHUP: peers", "err", err)
	}
	if d.cfg.passwordFile != "" {
		pw, err := password("", d.cfg.passwordFile)
		switch {
		case err != nil:
			d.log.Warn("SIGHUP: password file", "err", err)
		case string(pw) != string(d.cfg.password):
			d.log.Warn("SIGHUP: the password file changed; restart weaved to use the new password", "file", d.cfg.passwordFile)
		}
	}
	d.log.Info("SIGHUP: reconnecting to peers", "peers", d.cfg.peers)
}

// startDNS builds weaveDNS, re-registers the names of the containers still
// here from before a restart, and serves on the bridge's DNS address.
func (d *daemon) startDNS() error {
	cfg := d.cfg
	srv, err := dns.New(dns.Config{
		Ourself:  d.node.Name,
		Domain:   cfg.dnsDomain,
		TTL:      uint32(cfg.dnsTTL),
		Upstream: dns.NewResolvConf(cfg.dnsConf, d.log),
		Logger:   d.log.With("component", "dns"),
		// Weave Net ignores names of peers mesh does not know; on its
		// channel ours wait for the peer (PeersChanged).
		KnownPeer: func(p mesh.PeerName) bool { return d.node.Mesh.Peers.Fetch(p) != nil },
	})
	if err != nil {
		return fmt.Errorf("--dns-domain: %w", err)
	}
	d.dns = srv
	if err := srv.Reconcile(d.registrations()); err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	g, err := d.node.Mesh.NewGossip("dns", srv)
	if err != nil {
		return fmt.Errorf("dns gossip: %w", err)
	}
	srv.SetGossip(g)
	// Weave Net 2.x peers gossip names on this channel in their format:
	// the server speaks it too, so names resolve across both kinds.
	wg, err := d.node.Mesh.NewGossip("nameserver", srv.WeaveGossiper())
	if err != nil {
		return fmt.Errorf("dns gossip (Weave Net channel): %w", err)
	}
	srv.SetWeaveGossip(wg)
	d.node.Mesh.Routes.OnChange(srv.PeersChanged)
	d.node.Mesh.Peers.OnGC(func(p *mesh.Peer) { go srv.PeerGone(p.Name) })
	// Containers reach the server on the bridge; the host reaches them back
	// over it.
	if err := netdev.AddAddr(cfg.bridge, netip.PrefixFrom(cfg.dnsAddr, 32)); err != nil {
		return err
	}
	if err := d.hostRoute(netip.Addr{}); err != nil {
		return err
	}
	if err := srv.Start(netip.AddrPortFrom(cfg.dnsAddr, 53)); err != nil {
		return fmt.Errorf("dns: serve on %v:53: %w", cfg.dnsAddr, err)
	}
	return nil
}

// cleanup removes what this daemon created, and nothing of the user's; after
// weave reset, also the bridge and the persisted state.
func (d *daemon) cleanup() { d.cleanupOnce.Do(d.doCleanup) }

func (d *daemon) doCleanup() {
	if d.quit != nil {
		close(d.quit)
		d.wg.Wait()
	}
	d.stopL3()
	// The mesh port goes before the API falls silent: weave stop returns
	// then, and a launch right after must be able to listen on it.
	if d.node != nil {
		d.node.Close()
	}
	if d.dns != nil {
		d.dns.Close()
	}
	if d.alloc != nil {
		d.alloc.Close()
	}
	if d.store != nil {
		d.store.Close()
	}
	if d.router != nil {
		if err := d.router.Close(); err != nil {
			d.log.Warn("closing router", "err", err)
		}
	}
	// The bridge outlives a stop, as Weave Net's did: the containers stay
	// plugged into it and reach each other on this host, and the next
	// start takes it up again. Only reset removes it.
	if d.reset && d.cfg.mode != modeL3 {
		if err := netdev.DeleteLink(d.cfg.bridge); err != nil {
			d.log.Warn("removing bridge", "bridge", d.cfg.bridge, "err", err)
		}
	}
	if d.reset {
		for _, f := range api.StateFiles() {
			if err := os.Remove(filepath.Join(d.cfg.dataDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
				d.log.Warn("removing state", "file", f, "err", err)
			}
		}
	}
}

func peerNameBytes(n mesh.PeerName) []byte {
	b := make([]byte, 6)
	for i := 5; i >= 0; i-- {
		b[i] = byte(n)
		n >>= 8
	}
	b[0] = (b[0] | 0x02) &^ 0x01
	return b
}

// tapName is the bridge port the router reads frames from.
func tapName(bridge string) string {
	name := "vwtap-" + bridge
	if len(name) > 15 {
		name = name[:15]
	}
	return name
}

// meshPeers tells IPAM who is reachable: every peer mesh knows. mesh
// forgets (garbage-collects) a peer as soon as no path leads to it, and
// knows a new one before its routes are computed, so this neither lags
// behind a peer that just connected nor keeps one that is gone. Nicknames
// are remembered after a peer is gone, so that weave rmpeer NICKNAME works.
type meshPeers struct {
	m     *mesh.Router
	mu    sync.Mutex
	nicks map[mesh.PeerName]string
}

func (p *meshPeers) Reachable() []mesh.PeerName {
	descs := p.m.Peers.Descriptions()
	out := make([]mesh.PeerName, 0, len(descs))
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range descs {
		out = append(out, d.Name)
		if d.NickName != "" {
			p.nicks[d.Name] = d.NickName
		}
	}
	return out
}

func (p *meshPeers) NickName(name mesh.PeerName) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if peer := p.m.Peers.Fetch(name); peer != nil && peer.NickName != "" {
		p.nicks[name] = peer.NickName
	}
	return p.nicks[name]
}
