package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// DefaultDataDir and DefaultBridge are weaved's --data-dir and --bridge
// unless told otherwise.
const (
	DefaultDataDir = "/var/lib/weave"
	DefaultBridge  = "weave"
)

// StateFiles are the files weaved keeps in its data dir: what a reset
// removes.
func StateFiles() []string {
	return []string{"ipam.db", "containers.json", "peer-name", "weave-migration.json"}
}

// ErrNoDaemon means nothing answered at the API address.
var ErrNoDaemon = errors.New("weave is not running")

// ErrNoAccess means the API's socket refused this user: it is the
// daemon's user's (root's) only, and its group's if weaved was given one.
var ErrNoAccess = errors.New("not allowed to use the weave API")

// Client talks to one daemon's API.
type Client struct {
	Addr string // as given to NewClient, for messages
	// HTTP's Transport dials the daemon's address (a socket or TCP)
	// whatever host a request names; change its Timeout, not the
	// Transport.
	HTTP *http.Client

	addr    Addr
	addrErr error // from ParseAddr: every request fails with it
}

// NewClient returns a client for the daemon at addr, in ParseAddr's
// syntax. A malformed addr fails every request with ParseAddr's error.
func NewClient(addr string) *Client {
	a, err := ParseAddr(addr)
	// Never a proxy from the environment: the API is local.
	tr := &http.Transport{DialContext: a.dial, MaxIdleConns: 2, IdleConnTimeout: 30 * time.Second}
	return &Client{Addr: addr, HTTP: &http.Client{Timeout: ClientTimeout, Transport: tr}, addr: a, addrErr: err}
}

// Report fetches the daemon's state.
func (c *Client) Report(ctx context.Context) (*Report, error) {
	var r Report
	return &r, c.do(ctx, http.MethodGet, "/report", nil, &r)
}

// Connect adds targets.
func (c *Client) Connect(ctx context.Context, req PeersRequest) error {
	return c.do(ctx, http.MethodPost, "/connect", req, nil)
}

// Forget drops targets.
func (c *Client) Forget(ctx context.Context, req PeersRequest) error {
	return c.do(ctx, http.MethodPost, "/forget", req, nil)
}

// Attach plugs a container in with the given addresses.
func (c *Client) Attach(ctx context.Context, req AttachRequest) (*AttachResponse, error) {
	var r AttachResponse
	return &r, c.do(ctx, http.MethodPost, "/attach", req, &r)
}

// Detach removes addresses from a container.
func (c *Client) Detach(ctx context.Context, req AttachRequest) (*AttachResponse, error) {
	var r AttachResponse
	return &r, c.do(ctx, http.MethodPost, "/detach", req, &r)
}

// Ps lists the containers attached here.
func (c *Client) Ps(ctx context.Context) ([]Container, error) {
	var r []Container
	return r, c.do(ctx, http.MethodGet, "/ps", nil, &r)
}

// Rm releases a container's addresses and names and unplugs it.
func (c *Client) Rm(ctx context.Context, container string) error {
	return c.do(ctx, http.MethodPost, "/rm", ContainerRequest{Container: container}, nil)
}

// Expose gives the host addresses on the weave network.
func (c *Client) Expose(ctx context.Context, req AttachRequest) (*AttachResponse, error) {
	var r AttachResponse
	return &r, c.do(ctx, http.MethodPost, "/expose", req, &r)
}

// Hide takes them away.
func (c *Client) Hide(ctx context.Context, req AttachRequest) (*AttachResponse, error) {
	var r AttachResponse
	return &r, c.do(ctx, http.MethodPost, "/hide", req, &r)
}

// Rmpeer takes over the address space of peers gone for good.
func (c *Client) Rmpeer(ctx context.Context, req PeersRequest) (*RmpeerResponse, error) {
	var r RmpeerResponse
	return &r, c.do(ctx, http.MethodPost, "/rmpeer", req, &r)
}

// DNSAdd registers names.
func (c *Client) DNSAdd(ctx context.Context, req DNSRequest) error {
	return c.do(ctx, http.MethodPost, "/dns-add", req, nil)
}

// DNSRemove removes names.
func (c *Client) DNSRemove(ctx context.Context, req DNSRequest) error {
	return c.do(ctx, http.MethodPost, "/dns-remove", req, nil)
}

// DNSLookup resolves a name in the weave domain.
func (c *Client) DNSLookup(ctx context.Context, name string) ([]string, error) {
	var r []string
	return r, c.do(ctx, http.MethodGet, "/dns-lookup?name="+url.QueryEscape(name), nil, &r)
}

// Reset asks the daemon to hand its address space to another peer, remove
// its bridge and persisted state, and exit.
func (c *Client) Reset(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/reset", struct{}{}, nil)
}

// Stop asks the daemon to exit.
func (c *Client) Stop(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/stop", struct{}{}, nil)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	if c.addrErr != nil {
		return c.addrErr
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.addr.urlHost()+path, body)
	if err != nil {
		return fmt.Errorf("weave API %s: %w", c.Addr, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		var opErr *net.OpError
		switch {
		case errors.As(err, &opErr) && opErr.Op == "dial" && errors.Is(err, os.ErrPermission):
			return fmt.Errorf("%w: %s refused this user (run as root, e.g. with sudo, or as a member of the group given to weaved's --api-group)", ErrNoAccess, c.Addr)
		case errors.As(err, &opErr) && opErr.Op == "dial":
			return fmt.Errorf("%w (nothing answers at %s)", ErrNoDaemon, c.Addr)
		}
		return fmt.Errorf("weave API %s: %w", c.Addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e ErrorResponse
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("weave API %s%s: %s", c.Addr, path, resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("weave API %s%s: decode: %w", c.Addr, path, err)
	}
	return nil
}
