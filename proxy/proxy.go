// Package proxy owns weave's Docker API proxy: a unix socket that speaks the
// Docker Engine API by passing every request to the real Engine, except
// that containers created and started through it are plugged into the
// weave network. A create gets the container's command put behind
// weavewait (which holds it until the weave interface has its addresses)
// and its name as hostname in the weave domain; a start or restart that
// Docker accepted is followed, before the client hears back, by an attach
// through weaved's local API with the addresses of the container's
// WEAVE_CIDR. Everything else, streams and hijacked connections (attach,
// exec, logs -f, events) included, passes through untouched.
package proxy

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"weavenet/api"
)

// DefaultSocket is where the proxy listens unless told otherwise, as Weave
// Net's proxy did.
const DefaultSocket = "/var/run/weave/weave.sock"

// Weave is what the proxy asks of weaved; *api.Client is one.
type Weave interface {
	Report(ctx context.Context) (*api.Report, error)
	Attach(ctx context.Context, req api.AttachRequest) (*api.AttachResponse, error)
	DNSAdd(ctx context.Context, req api.DNSRequest) error
}

// Config says where the proxy listens and whom it talks to.
type Config struct {
	Socket       string // path of the unix socket to serve; DefaultSocket if empty
	DockerSocket string // path of the Engine's unix socket
	WaitBinary   string // host path of the static weavewait binary
	Weave        Weave
	Log          *slog.Logger
}

// Proxy is a running Docker API proxy.
type Proxy struct {
	cfg    Config
	ln     net.Listener
	srv    *http.Server
	rp     *httputil.ReverseProxy
	docker *client.Client
	done   chan struct{}
	wg     sync.WaitGroup
}

// attachTimeout bounds the attach that follows a start: IPAM may wait for
// consensus or a donation.
const attachTimeout = 60 * time.Second

// Listen checks the configuration, makes the socket (and its directory) and
// returns the proxy, not yet serving.
func Listen(cfg Config) (*Proxy, error) {
	if cfg.Socket == "" {
		cfg.Socket = DefaultSocket
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Weave == nil || cfg.DockerSocket == "" {
		return nil, errors.New("proxy: Weave and DockerSocket are required")
	}
	if err := checkStatic(cfg.WaitBinary); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	dc, err := client.NewClientWithOpts(client.WithHost("unix://"+cfg.DockerSocket), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("proxy: docker client: %w", err)
	}
	ln, err := listenUnix(cfg.Socket, cfg.DockerSocket)
	if err != nil {
		dc.Close()
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p := &Proxy{cfg: cfg, ln: ln, docker: dc, done: make(chan struct{})}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = "http", "docker"
			r.Out.Host = r.In.Host
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", cfg.DockerSocket)
			},
			MaxIdleConns:    16,
			IdleConnTimeout: 90 * time.Second,
		},
		// Logs, events and stats stream: every write goes out at once.
		FlushInterval:  -1,
		ModifyResponse: p.afterResponse,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.cfg.Log.Warn("proxy: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			writeError(w, statusOf(err), err)
		},
		ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, ErrorLog: p.rp.ErrorLog}
	return p, nil
}

// Addr is the proxy's address in DOCKER_HOST form.
func (p *Proxy) Addr() string { return "unix://" + p.cfg.Socket }

// Serve answers requests until Close.
func (p *Proxy) Serve() error {
	err := p.srv.Serve(p.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops serving, ends hijacked connections and removes the socket.
func (p *Proxy) Close() error {
	close(p.done)
	err := p.srv.Close()
	p.wg.Wait()
	p.docker.Close()
	_ = os.Remove(p.cfg.Socket)
	return err
}

// Engine API paths we act on, with or without a /vX.Y version prefix.
var (
	createPath  = regexp.MustCompile(`^(/v[0-9.]+)?/containers/create$`)
	startedPath = regexp.MustCompile(`^(/v[0-9.]+)?/containers/([^/]+)/(start|restart)$`)
	// Endpoints that hijack the connection, with or without asking for an
	// upgrade (clients before API 1.24 did not).
	hijackPath = regexp.MustCompile(`^(/v[0-9.]+)?/(containers/[^/]+/attach|exec/[^/]+/start)$`)
)

// ServeHTTP routes one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Header.Get("Upgrade") != "" || (r.Method == http.MethodPost && hijackPath.MatchString(r.URL.Path)):
		p.hijack(w, r)
	case r.Method == http.MethodPost && createPath.MatchString(r.URL.Path):
		p.create(w, r)
	default:
		p.rp.ServeHTTP(w, r)
	}
}

// create rewrites a container-create request, then passes it on.
func (p *Proxy) create(w http.ResponseWriter, r *http.Request) {
	// The body is read whole before anything is sent on: bound its size
	// and how long a slow client may take to send it.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(30 * time.Second))
	body, err := readAll(http.MaxBytesReader(w, r.Body, maxCreateBody))
	_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("weave proxy: reading container config: %w", err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	rep, err := p.cfg.Weave.Report(ctx)
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("weave proxy: %w", err))
		return
	}
	o := createOptions{WaitBinary: p.cfg.WaitBinary}
	if rep.DNS != nil {
		o.Domain, o.DNSServer = rep.DNS.Domain, rep.DNS.Address
	}
	plan, err := rewriteCreate(body, r.URL.Query().Get("name"), o, func(ref string) (imageConfig, error) {
		img, err := p.docker.ImageInspect(ctx, ref)
		if err != nil {
			return imageConfig{}, err
		}
		if img.Config == nil {
			return imageConfig{}, nil
		}
		return imageConfig{Entrypoint: img.Config.Entrypoint, Cmd: img.Config.Cmd}, nil
	})
	switch {
	case cerrdefs.IsNotFound(err):
		// The CLI pulls the image when told so, in Docker's words.
		writeError(w, http.StatusNotFound, err)
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, fmt.Errorf("weave proxy: %w", err))
		return
	}
	if plan.Body == nil {
		p.cfg.Log.Debug("proxy: container left alone", "name", r.URL.Query().Get("name"), "reason", plan.Reason)
		plan.Body = body
	} else {
		p.cfg.Log.Info("proxy: creating container on the weave network", "name", r.URL.Query().Get("name"), "addrs", plan.Addrs)
	}
	r.Body = nopCloser{strings.NewReader(string(plan.Body))}
	r.ContentLength = int64(len(plan.Body))
	r.TransferEncoding = nil
	r.Header.Del("Transfer-Encoding")
	p.rp.ServeHTTP(w, r)
}

// afterResponse attaches a container Docker just started, before its
// client hears of the start: the client may act on the network at once.
func (p *Proxy) afterResponse(resp *http.Response) error {
	req := resp.Request
	if req.Method != http.MethodPost || resp.StatusCode != http.StatusNoContent {
		return nil
	}
	m := startedPath.FindStringSubmatch(req.URL.Path)
	if m == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(req.Context(), attachTimeout)
	defer cancel()
	if err := p.attachStarted(ctx, m[2]); err != nil {
		return fmt.Errorf("weave proxy: %w", err)
	}
	return nil
}

// attachStarted plugs in a running container as its WEAVE_CIDR says. A
// container that cannot be plugged in is killed: it would wait for its
// interface forever.
func (p *Proxy) attachStarted(ctx context.Context, ref string) error {
	c, err := p.docker.ContainerInspect(ctx, ref)
	if err != nil {
		return fmt.Errorf("inspect container %s: %w", ref, err)
	}
	if c.Config == nil || c.HostConfig == nil || c.State == nil || c.State.Pid == 0 {
		return nil // exited already, or not a container we can plug in
	}
	if leftAlone(string(c.HostConfig.NetworkMode)) {
		return nil
	}
	addrs, none, err := parseWeaveCIDR(c.Config.Env)
	if err != nil {
		p.cfg.Log.Warn("proxy: container left alone", "container", c.ID, "err", err)
		return nil
	}
	if none {
		return nil
	}
	name := strings.TrimPrefix(c.Name, "/")
	req := api.AttachRequest{Container: c.ID, Addrs: addrs}
	if dnsLabel.MatchString(name) {
		req.Hostname = name
	}
	if _, err := p.cfg.Weave.Attach(ctx, req); err != nil {
		kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer kcancel()
		if kerr := p.docker.ContainerKill(kctx, c.ID, "KILL"); kerr != nil {
			p.cfg.Log.Warn("proxy: killing a container that could not be attached", "container", c.ID, "err", kerr)
		}
		return fmt.Errorf("attach container %s (killed, as it waits for its interface): %w", name, err)
	}
	// Its hostname too, when it is a name of the weave domain other than
	// the one registered.
	if fqdn := hostFQDN(c.Config.Hostname, c.Config.Domainname); fqdn != "" && strings.TrimSuffix(fqdn, ".") != name {
		if rep, err := p.cfg.Weave.Report(ctx); err == nil && rep.DNS != nil && inDomain(fqdn, rep.DNS.Domain) {
			if err := p.cfg.Weave.DNSAdd(ctx, api.DNSRequest{Container: c.ID, Hostname: fqdn}); err != nil {
				p.cfg.Log.Warn("proxy: registering the container's hostname", "container", c.ID, "hostname", fqdn, "err", err)
			}
		}
	}
	p.cfg.Log.Info("proxy: attached container", "container", c.ID, "name", name, "addrs", addrs)
	return nil
}

func hostFQDN(hostname, domain string) string {
	if hostname == "" {
		return ""
	}
	if domain != "" {
		return hostname + "." + strings.TrimSuffix(domain, ".")
	}
	return hostname
}

// inDomain reports whether fqdn is a name under domain, e.g.
// "db.weave.local" under "weave.local.".
func inDomain(fqdn, domain string) bool {
	d := "." + strings.Trim(domain, ".")
	return len(d) > 1 && strings.HasSuffix(strings.TrimSuffix(fqdn, "."), d)
}

// writeError answers in the Engine's error format, which clients show.
func writeError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": err.Error()})
}

func statusOf(err error) int {
	if cerrdefs.IsNotFound(err) {
		return http.StatusNotFound
	}
	if strings.HasPrefix(err.Error(), "weave proxy:") {
		return http.StatusInternalServerError
	}
	return http.StatusBadGateway
}

// listenUnix makes the socket at path: its directory is created, a stale
// socket left by a daemon that died is replaced (a live one is not), and
// the socket gets the owner group and mode of Docker's own, since it grants
// the same power.
func listenUnix(path, dockerSocket string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another proxy answers there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	mode, gid := os.FileMode(0o660), 0
	if fi, err := os.Stat(dockerSocket); err == nil {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			gid = int(st.Gid)
		}
	}
	if err := os.Chown(path, os.Getuid(), gid); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket owner: %w", err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket mode: %w", err)
	}
	return ln, nil
}

// checkStatic refuses a wait binary that needs a dynamic loader: it runs
// inside images that may have none.
func checkStatic(path string) error {
	if path == "" {
		return errors.New("no weavewait binary given")
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("weavewait binary: %w", err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("weavewait binary %s is dynamically linked: build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}
