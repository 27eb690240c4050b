package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"weavenet/gossip"
	"weavenet/netdev"
	"weavenet/router"
	"weavenet/tun"
)

// daemon is one running weaved: the pieces and what it created, so that
// shutdown removes exactly that.
type daemon struct {
	cfg           config
	log           *slog.Logger
	node          *gossip.Node
	router        *router.Router
	bridgeCreated bool
	stop          chan struct{}
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
	ln, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		return fmt.Errorf("--http-addr %s: %w (is weave already running?)", cfg.httpAddr, err)
	}
	d := &daemon{cfg: cfg, log: log, stop: make(chan struct{})}
	defer d.cleanup()
	if err := d.start(); err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: d.handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("API server", "err", err)
		}
	}()
	log.Info("weaved started", "name", d.node.Name.String(), "port", cfg.port, "bridge", cfg.bridge, "api", cfg.httpAddr, "peers", cfg.peers)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sigs:
		log.Info("stopping", "signal", s.String())
	case <-d.stop:
		log.Info("stopping", "reason", "API request")
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	return nil
}

func (d *daemon) start() error {
	cfg := d.cfg
	created, err := netdev.EnsureBridge(cfg.bridge, cfg.mtu)
	if err != nil {
		return fmt.Errorf("--bridge %s: %w", cfg.bridge, err)
	}
	d.bridgeCreated = created
	tap, err := tun.OpenTAP(tun.TAPConfig{
		Name:    tapName(cfg.bridge),
		MTU:     cfg.mtu,
		Bridge:  cfg.bridge,
		VnetHdr: true,
		Offload: cfg.offload,
	})
	if err != nil {
		return fmt.Errorf("bridge port: %w", err)
	}
	r, err := router.New(router.Config{Device: tap, Host: cfg.host, Port: cfg.port, MTU: cfg.mtu, Logger: d.log})
	if err != nil {
		tap.Close()
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
		TrustedSubnets: cfg.trusted,
		Logger:         d.log,
	}, r)
	if err != nil {
		return err
	}
	d.node = node
	r.Start(node.Mesh)
	return node.Start(cfg.peers)
}

// cleanup removes what this daemon created, and nothing of the user's.
func (d *daemon) cleanup() {
	if d.router != nil {
		if err := d.router.Close(); err != nil {
			d.log.Warn("closing router", "err", err)
		}
	}
	if d.bridgeCreated {
		if err := netdev.DeleteLink(d.cfg.bridge); err != nil {
			d.log.Warn("removing bridge", "bridge", d.cfg.bridge, "err", err)
		}
	}
}

// tapName is the bridge port the router reads frames from.
func tapName(bridge string) string {
	name := "vwtap-" + bridge
	if len(name) > 15 {
		name = name[:15]
	}
	return name
}
