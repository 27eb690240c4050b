// Package docker owns weavenet's view of a Docker Engine: finding a
// container by ID, unique ID prefix or name, with the network namespace,
// name and hostname weave needs to plug it in, and following the engine's
// event stream of container starts, deaths and removals. It wraps the
// maintained Engine client (github.com/docker/docker/client) with API
// version negotiation, so it speaks to engines older than the client.
package docker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// DefaultHost is where the Engine listens unless told otherwise, as
// Weave Net's --docker-api default.
const DefaultHost = "unix:///var/run/docker.sock"

// ErrNotFound says no container has that ID, prefix or name.
var ErrNotFound = errors.New("no such Docker container")

// Client talks to one Docker Engine.
type Client struct {
	host string
	c    *client.Client
}

// New returns a client of the Engine at host (DefaultHost if empty). It
// does not connect: Ping says whether an engine answers.
func New(host string) (*Client, error) {
	if host == "" {
		host = DefaultHost
	}
	c, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", host, err)
	}
	return &Client{host: host, c: c}, nil
}

// SocketExists reports whether host is a unix socket that exists (or not a
// unix address at all, which only a connection can tell about). It lets
// callers skip Docker on machines without it instead of logging failed
// connections forever.
func SocketExists(host string) bool {
	if host == "" {
		host = DefaultHost
	}
	u, err := url.Parse(host)
	if err != nil || u.Scheme != "unix" {
		return err == nil
	}
	fi, err := os.Stat(u.Path)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

// Host is the Engine address this client talks to.
func (c *Client) Host() string { return c.host }

// Close releases the client's connections.
func (c *Client) Close() error { return c.c.Close() }

// Ping checks that an Engine answers.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.c.Ping(ctx); err != nil {
		return fmt.Errorf("docker at %s: %w", c.host, err)
	}
	return nil
}

// Container is what weave needs of a Docker container.
type Container struct {
	ID       string // full 64-hex ID: the key of its addresses and names
	Name     string // without Docker's leading '/'
	Hostname string // its hostname, with the domain if it has one
	PID      int    // of its first process; 0 when it is not running
	Running  bool
}

// ShortID is the 12-character form docker ps and weave ps show.
func (c Container) ShortID() string { return ShortID(c.ID) }

// ShortID shortens a container ID as docker ps does.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// NetNSPath is the container's network namespace while it runs.
func (c Container) NetNSPath() (string, error) {
	if !c.Running || c.PID <= 0 {
		return "", fmt.Errorf("docker container %s (%s) is not running", c.Name, c.ShortID())
	}
	return "/proc/" + strconv.Itoa(c.PID) + "/ns/net", nil
}

// Resolve finds a container by full ID, unique ID prefix or name, as the
// docker CLI does (the Engine itself resolves, and refuses an ambiguous
// prefix). A ref that names no container gives an error wrapping
// ErrNotFound.
func (c *Client) Resolve(ctx context.Context, ref string) (Container, error) {
	if ref == "" || strings.ContainsAny(ref, "?#") {
		return Container{}, fmt.Errorf("%q: %w", ref, ErrNotFound)
	}
	r, err := c.c.ContainerInspect(ctx, ref)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return Container{}, fmt.Errorf("%q: %w", ref, ErrNotFound)
		}
		return Container{}, fmt.Errorf("docker inspect %s: %w", ref, err)
	}
	out := Container{ID: r.ID, Name: strings.TrimPrefix(r.Name, "/")}
	if r.State != nil {
		out.Running, out.PID = r.State.Running, r.State.Pid
	}
	if r.Config != nil {
		out.Hostname = r.Config.Hostname
		if r.Config.Domainname != "" {
			out.Hostname += "." + r.Config.Domainname
		}
	}
	return out, nil
}

// RunningIDs lists the IDs of the running containers.
func (c *Client) RunningIDs(ctx context.Context) ([]string, error) {
	list, err := c.c.ContainerList(ctx, container.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("docker ps: %w", err)
	}
	ids := make([]string, 0, len(list))
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	return ids, nil
}

// Remove force-removes a container (docker rm -f).
func (c *Client) Remove(ctx context.Context, id string) error {
	if err := c.c.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker rm -f %s: %w", ShortID(id), err)
	}
	return nil
}

// EventKind is what happened to a container, as far as weave cares.
type EventKind int

const (
	// Started: a container (re)started and has a new network namespace.
	Started EventKind = iota + 1
	// Died: its processes are gone, and so its namespace; it may start again.
	Died
	// Destroyed: it was removed and will not come back.
	Destroyed
)

func (k EventKind) String() string {
	switch k {
	case Started:
		return "start"
	case Died:
		return "die"
	case Destroyed:
		return "destroy"
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

// Event is one container event of the Engine.
type Event struct {
	Kind EventKind
	ID   string
}

// Watch follows the Engine's container events until ctx ends, calling
// resync each time the stream is (re)opened, so that whatever happened
// while it was not being followed (before the start, across a daemon
// restart) is caught up, then fn for each event in order. A broken stream
// is reopened after a pause; Watch returns only when ctx is done.
// A restart is reported as the die and start it consists of.
func (c *Client) Watch(ctx context.Context, resync func(context.Context), fn func(Event), onErr func(error)) {
	f := filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("event", string(events.ActionStart)),
		filters.Arg("event", string(events.ActionDie)),
		filters.Arg("event", string(events.ActionDestroy)))
	for ctx.Err() == nil {
		sub, cancel := context.WithCancel(ctx)
		msgs, errs := c.c.Events(sub, events.ListOptions{Filters: f})
		// Subscribed before resync, so nothing falls between them.
		resync(ctx)
		err := follow(msgs, errs, fn)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if onErr != nil {
			onErr(fmt.Errorf("docker events from %s: %w", c.host, err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func follow(msgs <-chan events.Message, errs <-chan error, fn func(Event)) error {
	for {
		select {
		case err := <-errs:
			if err == nil {
				err = errors.New("stream ended")
			}
			return err
		case m := <-msgs:
			if ev, ok := toEvent(m); ok {
				fn(ev)
			}
		}
	}
}

// toEvent keeps the container events weave acts on; the Engine filters
// already, this guards against what it sends anyway.
func toEvent(m events.Message) (Event, bool) {
	if m.Type != events.ContainerEventType || m.Actor.ID == "" {
		return Event{}, false
	}
	var k EventKind
	switch m.Action {
	case events.ActionStart:
		k = Started
	case events.ActionDie:
		k = Died
	case events.ActionDestroy, events.ActionRemove:
		k = Destroyed
	default:
		return Event{}, false
	}
	return Event{Kind: k, ID: m.Actor.ID}, true
}
