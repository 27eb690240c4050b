package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v3"

	"weavenet/api"
	"weavenet/docker"
	"weavenet/plugin"
)

// The Docker network plugin is served by weaved itself, not by a process
// of its own as Weave Net's plugin container was: every request needs
// what only the daemon has (the allocator, the bridge and its MTU,
// weaveDNS), so a separate process would be a second API client with a
// second lifecycle to keep in step, for nothing. Its socket comes and goes
// with the daemon: while weaved is down the engine cannot plug containers
// into the weave network, as it could not without a bridge.

func pluginFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "no-plugin", Usage: "do not serve the Docker network plugin (unless --plugin-name is given)", Sources: cli.EnvVars("WEAVE_NO_PLUGIN")},
		&cli.StringFlag{Name: "plugin-name", Value: "weave", Usage: "`NAME` of the Docker network and IPAM driver (docker network create --driver NAME --ipam-driver NAME); its socket is " + plugin.DefaultDir + "/NAME.sock"},
	}
}

// pluginConfig is the plugin's part of the daemon's configuration.
type pluginConfig struct {
	on       bool
	name     string
	explicit bool // --plugin-name given: failing to serve it is fatal
}

func pluginConfigFrom(cmd *cli.Command) (pluginConfig, error) {
	// A name given by hand asks for the plugin, even when the
	// environment (WEAVE_NO_PLUGIN, as the tests set it) turns it off.
	c := pluginConfig{name: cmd.String("plugin-name"), explicit: cmd.IsSet("plugin-name")}
	c.on = c.explicit || !cmd.Bool("no-plugin")
	if c.on {
		if err := plugin.CheckName(c.name); err != nil {
			return c, fmt.Errorf("--plugin-name: %w", err)
		}
	}
	return c, nil
}

// pluginRun is the plugin while it serves.
type pluginRun struct {
	driver *plugin.Driver
	server *plugin.Server
	done   chan struct{}
	stop   sync.Once

	// Names of joined endpoints' containers: pending from the join until
	// the engine lists the container, then the container's ID.
	mu      sync.Mutex
	pending map[string]bool
	named   map[string]namedEndpoint
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type namedEndpoint struct {
	container string
	addr      netip.Prefix
	mac       net.HardwareAddr
	hostname  string // "" when not named in weaveDNS
}

// startPlugin serves the plugin when it is asked for and Docker is there;
// the returned func stops it and may be called more than once. A default
// name another daemon serves already is a warning, a name given by hand
// an error.
func (d *daemon) startPlugin() (stop func(), err error) {
	pc := d.cfg.plugin
	if !pc.on || d.cfg.mode == modeL3 {
		return func() {}, nil
	}
	if !docker.SocketExists(d.cfg.dockerAPI) || d.cfg.dockerAPI == "" {
		d.log.Info("no Docker network plugin: no Docker Engine", "docker-api", d.cfg.dockerAPI)
		return func() {}, nil
	}
	// The default name serves the machine, so only a weaved beside the
	// Engine takes it; one in a namespace of its own is one of several
	// on the machine (as the test hosts are) and serves a plugin only by
	// name. Left in doubt, it serves.
	if sock, ok := strings.CutPrefix(d.cfg.dockerAPI, "unix://"); ok && !pc.explicit {
		if same, err := plugin.SharesNetNS(sock); err == nil && !same {
			d.log.Info("no Docker network plugin by default: weaved is not in the Docker Engine's network namespace; --plugin-name serves one", "docker-api", d.cfg.dockerAPI)
			return func() {}, nil
		}
	}
	p := &pluginRun{pending: map[string]bool{}, named: map[string]namedEndpoint{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	cfg := plugin.Config{
		Name:    pc.name,
		IPAM:    pluginIPAM{d},
		Links:   plugin.VethLinks{Bridge: d.cfg.bridge, MTU: d.cfg.mtu},
		Log:     d.log,
		OnJoin:  func(ep plugin.Endpoint) { d.pluginJoined(p, ep) },
		OnLeave: func(ep plugin.Endpoint) { d.pluginLeft(p, ep) },
	}
	if d.dns != nil {
		cfg.Routes = []netip.Prefix{netip.PrefixFrom(d.cfg.dnsAddr, 32)}
	}
	p.driver = plugin.NewDriver(cfg)
	p.server, err = plugin.Listen(plugin.DefaultDir, p.driver)
	if err != nil {
		p.cancel()
		if pc.explicit || !errors.Is(err, plugin.ErrInUse) {
			return nil, fmt.Errorf("--plugin-name %s: %w", pc.name, err)
		}
		d.log.Warn("no Docker network plugin", "err", err)
		return func() {}, nil
	}
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		if err := p.server.Serve(); err != nil && !errors.Is(err, net.ErrClosed) {
			d.log.Error("Docker network plugin", "err", err)
		}
	}()
	d.plugin.Store(p)
	if d.docker != nil {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); d.restorePlugin(p) }()
	}
	d.log.Info("Docker network plugin serving", "driver", pc.name, "socket", p.server.Path())
	return func() {
		p.stop.Do(func() {
			d.plugin.Store(nil)
			_ = p.server.Close()
			<-p.done
			p.cancel()
			p.wg.Wait()
		})
	}, nil
}

// restorePlugin takes up the endpoints the engine has on our networks
// from before a restart, and names their containers again: weaveDNS
// forgot them with the daemon.
func (d *daemon) restorePlugin(p *pluginRun) {
	ctx, cancel := context.WithTimeout(p.ctx, dockerTimeout)
	defer cancel()
	eps, err := d.docker.DriverEndpoints(ctx, p.driver.Name())
	if err != nil {
		d.log.Warn("Docker network plugin: endpoints from before the start not taken up", "err", err)
		return
	}
	for _, e := range eps {
		if !e.Addr.IsValid() || e.EndpointID == "" {
			continue
		}
		ep := plugin.Endpoint{NetworkID: e.NetworkID, EndpointID: e.EndpointID, Addr: e.Addr, MAC: plugin.EndpointMAC(e.EndpointID)}
		if mac, err := net.ParseMAC(e.MAC); err == nil {
			ep.MAC = mac
		}
		p.driver.Restore(ep)
		d.pluginJoined(p, ep)
	}
	if len(eps) > 0 {
		d.log.Info("Docker network plugin: endpoints taken up", "count", len(eps))
	}
}

// pluginReport is the plugin's section of the report; nil when none runs.
func (d *daemon) pluginReport() *api.Plugin {
	p := d.plugin.Load()
	if p == nil {
		return nil
	}
	return &api.Plugin{DriverName: p.driver.Name(), Socket: "unix://" + p.server.Path(), Endpoints: p.driver.Endpoints()}
}

// pluginNameWait bounds how long a joined endpoint's container is looked
// for: the engine lists it once its start went through.
const pluginNameWait = 30 * time.Second

// pluginJoined finds the endpoint's container once the engine says which
// it is (for weave ps), and names it in weaveDNS: its hostname in our
// domain, else its name.
func (d *daemon) pluginJoined(p *pluginRun, ep plugin.Endpoint) {
	if d.docker == nil {
		return
	}
	p.mu.Lock()
	p.pending[ep.EndpointID] = true
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithTimeout(p.ctx, pluginNameWait)
		defer cancel()
		for {
			c, err := d.docker.EndpointContainer(ctx, ep.NetworkID, ep.EndpointID)
			if err == nil {
				d.namePluginContainer(p, ep, &c)
				return
			}
			if !errors.Is(err, docker.ErrNotFound) {
				d.log.Debug("plugin endpoint's container", "endpoint", docker.ShortID(ep.EndpointID), "err", err)
			}
			select {
			case <-ctx.Done():
				d.log.Warn("container of a plugin endpoint not found: not named in weaveDNS nor listed by weave ps", "endpoint", docker.ShortID(ep.EndpointID))
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

func (d *daemon) namePluginContainer(p *pluginRun, ep plugin.Endpoint, c *docker.Container) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.pending[ep.EndpointID] {
		return // it left meanwhile
	}
	delete(p.pending, ep.EndpointID)
	n := namedEndpoint{container: c.ID, addr: ep.Addr, mac: ep.MAC}
	if d.dns != nil {
		n.hostname = d.dockerHostname(c)
	}
	if n.hostname != "" {
		if err := d.dns.AddEntry(c.ID, n.hostname, ep.Addr.Addr()); err != nil {
			d.log.Warn("plugin container not named", "container", c.ShortID(), "err", err)
			n.hostname = ""
		}
	}
	p.named[ep.EndpointID] = n
	d.log.Info("plugin container named", "container", c.ShortID(), "hostname", n.hostname, "addr", ep.Addr.Addr())
}

// pluginPS lists the plugin's containers for weave ps, one line per
// endpoint, as Weave Net listed them: short ID, MAC, address.
func (d *daemon) pluginPS() []api.Container {
	p := d.plugin.Load()
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]api.Container, 0, len(p.named))
	for _, n := range p.named {
		out = append(out, api.Container{Container: docker.ShortID(n.container), MAC: n.mac.String(), Addrs: []string{n.addr.String()}})
	}
	return out
}

func (d *daemon) pluginLeft(p *pluginRun, ep plugin.Endpoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.pending, ep.EndpointID)
	n, ok := p.named[ep.EndpointID]
	if !ok {
		return
	}
	delete(p.named, ep.EndpointID)
	if d.dns != nil && n.hostname != "" {
		_, _ = d.dns.RemoveEntries(n.container, "", n.addr.Addr())
	}
}

// pluginIPAM hands the plugin addresses from weaved's allocator, under
// owners of its own (plugin.OwnerPrefix...), which weaved neither plugs
// nor reaps: the engine releases them.
type pluginIPAM struct{ d *daemon }

func (a pluginIPAM) Range() netip.Prefix         { return a.d.cfg.ipRange }
func (a pluginIPAM) DefaultSubnet() netip.Prefix { return a.d.cfg.defaultSubnet }

func (a pluginIPAM) Allocate(ctx context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error) {
	ctx, cancel := context.WithTimeout(ctx, allocTimeout)
	defer cancel()
	return a.d.obtain(ctx, owner, addrSpec{isNet: true, subnet: subnet})
}

func (a pluginIPAM) Claim(ctx context.Context, owner string, addr netip.Prefix) error {
	ctx, cancel := context.WithTimeout(ctx, allocTimeout)
	defer cancel()
	_, err := a.d.obtain(ctx, owner, addrSpec{claim: addr})
	return err
}

func (a pluginIPAM) Release(owner string, addr netip.Prefix) error {
	return a.d.alloc.Release(owner, addr)
}

func (a pluginIPAM) Owned(prefix string) map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	for _, o := range a.d.alloc.Owners() {
		if strings.HasPrefix(o, prefix) {
			out[o] = a.d.alloc.Lookup(o)
		}
	}
	return out
}
