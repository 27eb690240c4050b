package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"weavenet/docker"
	"weavenet/netdev"
)

// Docker containers are keyed by their full ID, as Weave Net keyed them,
// so that a restart, a rename or a short form all reach the same
// addresses. What the CLI names a container is resolved here, by one
// rule:
//
//  1. a PID, an absolute path, or a name under /var/run/netns is a
//     network namespace (the namespace form of weave run makes those);
//  2. otherwise, with Docker enabled, Docker resolves it: full ID, unique
//     ID prefix, or name;
//  3. otherwise it is the key of a container this daemon knows (one whose
//     namespace or Docker container is already gone), or an error.
//
// So a namespace shadows a Docker container of the same name; the
// container's ID (or a prefix that is no namespace's name) still reaches it.

// dockerTimeout bounds one call to the Engine.
const dockerTimeout = 10 * time.Second

// openDocker connects to the Engine at host, or returns nil when Docker is
// disabled (empty host) or not on this machine.
func openDocker(host string, log interface{ Info(string, ...any) }) *docker.Client {
	if host == "" {
		return nil
	}
	if !docker.SocketExists(host) {
		log.Info("no Docker Engine: Docker containers are not followed", "docker-api", host)
		return nil
	}
	c, err := docker.New(host)
	if err != nil {
		log.Info("Docker not followed", "err", err)
		return nil
	}
	return c
}

// resolve turns what the CLI calls a container into its key, and, for a
// Docker container, what Docker says of it.
func (d *daemon) resolve(ctx context.Context, ref string) (string, *docker.Container, error) {
	if ref == "" || isNumber(ref) || strings.HasPrefix(ref, "/") {
		return ref, nil, nil
	}
	if _, err := os.Stat(filepath.Join(netnsDir, ref)); err == nil && !strings.Contains(ref, "/") {
		return ref, nil, nil
	}
	if d.docker != nil {
		ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
		defer cancel()
		c, err := d.docker.Resolve(ctx, ref)
		switch {
		case err == nil:
			return c.ID, &c, nil
		case !errors.Is(err, docker.ErrNotFound):
			return "", nil, err
		}
	}
	if _, ok := d.containers.get(ref); ok {
		return ref, nil, nil
	}
	// A Docker container removed behind our back, by its short ID.
	if len(ref) >= 3 {
		for key, info := range d.containers.all() {
			if info.Docker && strings.HasPrefix(key, ref) {
				return key, nil, nil
			}
		}
	}
	return ref, nil, nil
}

const netnsDir = "/var/run/netns"

// errNotAttached refuses weave rm of a namespace or Docker container weave
// never attached: removing it is its owner's business.
var errNotAttached = errors.New("weave never attached this container, so weave rm leaves it alone; remove it with ip netns delete or docker rm")

// attachedHere reports whether key is a container this daemon plugged in or
// holds addresses for: in its records in the data dir, or an owner in IPAM
// (attached by a weaved from before the records, or by Weave Net).
func (d *daemon) attachedHere(key string) bool {
	if _, ok := d.containers.get(key); ok {
		return true
	}
	return len(d.alloc.Lookup(key)) > 0
}

// dockerHostname is the name a Docker container gets in weaveDNS: its
// hostname when that is in our domain (docker run --hostname c1.weave.local),
// else its name.
func (d *daemon) dockerHostname(c *docker.Container) string {
	if d.dns != nil {
		domain := strings.TrimSuffix(d.dns.Domain(), ".")
		if h := strings.TrimSuffix(c.Hostname, "."); strings.HasSuffix(h, "."+domain) {
			return h
		}
	}
	if dnsLabel.MatchString(c.Name) {
		return c.Name
	}
	return ""
}

// rmRef is weave rm of whatever ref names: a Docker container is removed
// (docker rm -f) and its addresses and names released; a namespace's are
// released (the CLI deletes the namespace).
func (d *daemon) rmRef(ctx context.Context, ref string) error {
	key, c, err := d.resolve(ctx, ref)
	if err != nil {
		return err
	}
	if !d.attachedHere(key) {
		// The CLI kills what runs in a namespace we answer for: never
		// one weave did not plug in.
		return fmt.Errorf("%s: %w", ref, errNotAttached)
	}
	if c == nil {
		return d.rm(key)
	}
	d.dockerMu.Lock()
	defer d.dockerMu.Unlock()
	if _, known := d.containers.get(key); known {
		if err := d.rm(key); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	return d.docker.Remove(ctx, key)
}

// followDocker keeps the Docker containers we attached in step with the
// Engine until quit: a start plugs the container in again with the
// addresses it holds (and its name), a death takes its names out of DNS
// and keeps its addresses for a restart, a removal releases both.
func (d *daemon) followDocker(quit <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-quit; cancel() }()
	d.docker.Watch(ctx, d.dockerResync, d.dockerEvent, func(err error) {
		d.log.Warn("following Docker; resubscribing", "err", err)
	})
}

func (d *daemon) dockerEvent(ev docker.Event) {
	d.dockerMu.Lock()
	defer d.dockerMu.Unlock()
	info, known := d.containers.get(ev.ID)
	if !known || !info.Docker {
		return // not ours: the proxy or the plugin, or nothing of weave's
	}
	d.log.Debug("docker event", "container", docker.ShortID(ev.ID), "event", ev.Kind.String())
	switch ev.Kind {
	case docker.Started:
		ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
		defer cancel()
		c, err := d.docker.Resolve(ctx, ev.ID)
		if err != nil {
			d.log.Warn("restarted Docker container not plugged in", "container", docker.ShortID(ev.ID), "err", err)
			return
		}
		d.replugDocker(&c, info)
	case docker.Died:
		d.dockerStopped(ev.ID, info)
	case docker.Destroyed:
		d.log.Info("Docker container removed: releasing its addresses and names", "container", docker.ShortID(ev.ID))
		if err := d.rm(ev.ID); err != nil {
			d.log.Warn("releasing a removed Docker container", "container", docker.ShortID(ev.ID), "err", err)
		}
	}
}

// dockerResync catches up with what happened while the events were not
// followed: containers removed are released, running ones plugged in
// (again) and named, stopped ones unnamed.
func (d *daemon) dockerResync(ctx context.Context) {
	d.dockerMu.Lock()
	defer d.dockerMu.Unlock()
	for key, info := range d.containers.all() {
		if !info.Docker {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, dockerTimeout)
		c, err := d.docker.Resolve(rctx, key)
		cancel()
		switch {
		case errors.Is(err, docker.ErrNotFound):
			d.log.Info("Docker container gone: releasing its addresses and names", "container", docker.ShortID(key))
			if err := d.rm(key); err != nil {
				d.log.Warn("releasing a removed Docker container", "container", docker.ShortID(key), "err", err)
			}
		case err != nil:
			d.log.Warn("Docker container not checked", "container", docker.ShortID(key), "err", err)
		case c.Running:
			d.replugDocker(&c, info)
		default:
			d.dockerStopped(key, info)
		}
	}
}

// replugDocker plugs a running Docker container into the bridge with the
// addresses its ID holds, and names it again. Attach is idempotent, so a
// container still plugged in (a weaved restart that kept the bridge) is
// left as it is.
func (d *daemon) replugDocker(c *docker.Container, info containerInfo) {
	nsPath, err := c.NetNSPath()
	if err != nil {
		return
	}
	held := d.alloc.Lookup(c.ID)
	if len(held) == 0 {
		return
	}
	ac := d.attachConfig(nsPath, held)
	// The pair's host end as whoever plugged it in named it (Weave Net,
	// for a container taken over from it); a stop forgets it.
	ac.HostIfName = info.HostIf
	mac, _, err := netdev.Attach(ac)
	if err != nil {
		d.log.Warn("Docker container not plugged in again", "container", c.ShortID(), "err", err)
		return
	}
	info.NetNS, info.MAC = nsPath, mac.String()
	if info.HostIf == "" {
		if h, err := netdev.HostIfNameOf(nsPath); err == nil {
			info.HostIf = h
		}
	}
	if err := d.containers.set(c.ID, &info); err != nil {
		d.log.Warn("containers", "err", err)
	}
	if d.dns != nil && info.Hostname != "" {
		for _, p := range held {
			if err := d.dns.AddEntry(c.ID, info.Hostname, p.Addr()); err != nil {
				d.log.Warn("Docker container not named again", "container", c.ShortID(), "err", err)
			}
		}
	}
	d.log.Info("Docker container plugged in", "container", c.ShortID(), "addrs", prefixStrings(held))
}

// dockerStopped takes a stopped container's names out of DNS (its
// addresses reach nothing until it starts again) and forgets its namespace,
// gone with its processes: the PID in that path may come to mean another
// process, whose interfaces a later detach must not touch. It keeps its
// addresses.
func (d *daemon) dockerStopped(key string, info containerInfo) {
	if d.dns != nil {
		_, _ = d.dns.RemoveEntries(key, "", netip.Addr{})
	}
	if info.NetNS != "" || info.HostIf != "" {
		info.NetNS, info.HostIf = "", ""
		if err := d.containers.set(key, &info); err != nil {
			d.log.Warn("containers", "err", err)
		}
	}
}
