package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v3"

	"weavenet/api"
	"weavenet/proxy"
)

// The Docker API proxy: weaved serves it beside its own API, so that
// `eval $(weave env)` makes plain docker commands plug containers in.

func proxyFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "proxy-socket", Value: proxy.DefaultSocket, Usage: "unix socket `PATH` of the Docker API proxy (docker -H unix://PATH, or eval $(weave env))"},
		&cli.BoolFlag{Name: "no-proxy", Usage: "do not serve the Docker API proxy"},
		&cli.StringFlag{Name: "proxy-wait-binary", Usage: "the static weavewait `FILE` the proxy runs containers' commands behind (default: weavewait next to weaved)"},
	}
}

// proxyConfig is the proxy's part of the daemon's configuration.
type proxyConfig struct {
	on         bool
	socket     string
	explicit   bool // --proxy-socket given: failing to serve it is fatal
	waitBinary string
}

func proxyConfigFrom(cmd *cli.Command) (proxyConfig, error) {
	c := proxyConfig{on: !cmd.Bool("no-proxy"), socket: cmd.String("proxy-socket"), explicit: cmd.IsSet("proxy-socket"), waitBinary: cmd.String("proxy-wait-binary")}
	if c.on && !filepath.IsAbs(c.socket) {
		return c, fmt.Errorf("--proxy-socket %q: want an absolute path such as %s", c.socket, proxy.DefaultSocket)
	}
	if c.waitBinary == "" {
		if self, err := os.Executable(); err == nil {
			c.waitBinary = filepath.Join(filepath.Dir(self), "weavewait")
		}
	}
	return c, nil
}

// startProxy serves the Docker API proxy when it is asked for and Docker is
// there; the returned func stops it. Without Docker, or when the default
// socket is taken (another weaved on this machine serves it), the daemon
// runs without a proxy and says so; a socket asked for by name that cannot
// be served is an error.
func (d *daemon) startProxy() (stop func(), err error) {
	pc := d.cfg.proxy
	if !pc.on || d.cfg.mode == modeL3 {
		return func() {}, nil
	}
	dockerSocket, ok := strings.CutPrefix(d.cfg.dockerAPI, "unix://")
	if !ok || dockerSocket == "" {
		d.log.Info("no Docker API proxy: it needs a Docker Engine on a unix socket", "docker-api", d.cfg.dockerAPI)
		return func() {}, nil
	}
	if _, err := os.Stat(dockerSocket); err != nil {
		d.log.Info("no Docker API proxy: no Docker Engine", "docker-api", d.cfg.dockerAPI)
		return func() {}, nil
	}
	p, err := proxy.Listen(proxy.Config{
		Socket:       pc.socket,
		DockerSocket: dockerSocket,
		WaitBinary:   pc.waitBinary,
		Weave:        api.NewClient(d.cfg.apiAddr.String()),
		Log:          d.log,
	})
	if err != nil {
		if pc.explicit {
			return nil, fmt.Errorf("--proxy-socket: %w", err)
		}
		d.log.Warn("no Docker API proxy", "err", err)
		return func() {}, nil
	}
	d.proxyAddr.Store(p.Addr())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.Serve(); err != nil && !errors.Is(err, os.ErrClosed) {
			d.log.Error("Docker API proxy", "err", err)
		}
	}()
	d.log.Info("Docker API proxy serving", "address", p.Addr())
	return func() {
		d.proxyAddr.Store("")
		_ = p.Close()
		<-done
	}, nil
}

// proxyReport is the proxy's section of the report; nil when none runs.
func (d *daemon) proxyReport() *api.Proxy {
	if addr, _ := d.proxyAddr.Load().(string); addr != "" {
		return &api.Proxy{Address: addr}
	}
	return nil
}
