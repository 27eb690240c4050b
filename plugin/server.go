package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// DefaultDir is where the Docker Engine looks for plugin sockets: a socket
// NAME.sock there is the plugin NAME.
const DefaultDir = "/run/docker/plugins"

// ErrInUse says another process already serves a plugin of that name.
var ErrInUse = errors.New("a plugin of that name is already served")

// requestTimeout bounds one request, including an allocation that waits
// for the ring (consensus, a donation from another peer).
const requestTimeout = 60 * time.Second

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)

// CheckName refuses a plugin name the engine could not find as a socket.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("plugin name %q: want 1-64 letters, digits, '_', '.', '-', starting with a letter or digit", name)
	}
	return nil
}

// Server serves a Driver on its socket.
type Server struct {
	path string
	ln   net.Listener
	srv  *http.Server
}

// Listen creates the socket dir/NAME.sock for d. A socket there that still
// answers gives ErrInUse; one left by a dead process is replaced.
func Listen(dir string, d *Driver) (*Server, error) {
	if err := CheckName(d.Name()); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("plugin socket dir: %w", err)
	}
	path := filepath.Join(dir, d.Name()+".sock")
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", path, ErrInUse)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("stale plugin socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("plugin socket: %w", err)
	}
	// Only the engine (root) talks to it: it can plug interfaces in.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("plugin socket: %w", err)
	}
	s := &Server{path: path, ln: ln}
	s.srv = &http.Server{
		Handler:           Handler(d),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      requestTimeout + 5*time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ConnContext:       withPeer,
	}
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers requests until Close; it then returns net.ErrClosed.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return net.ErrClosed
	}
	return err
}

// Close stops serving and removes the socket, so that the engine no longer
// finds the plugin.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if rmErr := os.Remove(s.path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) && err == nil {
		err = rmErr
	}
	return err
}

type peerKey struct{}

// withPeer remembers which process connected: the engine, in whose
// network namespace a new pair's container end must lie.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	if uc, ok := c.(*net.UnixConn); ok {
		if pid := peerPID(uc); pid > 0 {
			return context.WithValue(ctx, peerKey{}, pid)
		}
	}
	return ctx
}

func peerOf(ctx context.Context) int {
	pid, _ := ctx.Value(peerKey{}).(int)
	return pid
}

// Handler answers the protocol on every path it defines; others are 404,
// which tells the engine a method is not implemented.
func Handler(d *Driver) http.Handler {
	mux := http.NewServeMux()
	none := func(context.Context, struct{}) (any, error) { return struct{}{}, nil }
	handle(mux, "/Plugin.Activate", func(context.Context, struct{}) (any, error) { return d.activate(), nil })
	handle(mux, "/NetworkDriver.GetCapabilities", func(context.Context, struct{}) (any, error) { return d.capabilities(), nil })
	handle(mux, "/NetworkDriver.CreateNetwork", func(_ context.Context, r createNetworkRequest) (any, error) { return struct{}{}, d.createNetwork(r) })
	handle(mux, "/NetworkDriver.DeleteNetwork", func(_ context.Context, r networkRequest) (any, error) { return struct{}{}, d.deleteNetwork(r) })
	handle(mux, "/NetworkDriver.CreateEndpoint", func(_ context.Context, r createEndpointRequest) (any, error) { return d.createEndpoint(r) })
	handle(mux, "/NetworkDriver.EndpointOperInfo", func(_ context.Context, r endpointRequest) (any, error) { return d.endpointInfo(r) })
	handle(mux, "/NetworkDriver.DeleteEndpoint", func(_ context.Context, r endpointRequest) (any, error) { return struct{}{}, d.deleteEndpoint(r) })
	handle(mux, "/NetworkDriver.Join", func(ctx context.Context, r joinRequest) (any, error) { return d.join(ctx, r, peerOf(ctx)) })
	handle(mux, "/NetworkDriver.Leave", func(_ context.Context, r endpointRequest) (any, error) { return struct{}{}, d.leave(r) })
	for _, m := range []string{"DiscoverNew", "DiscoverDelete", "ProgramExternalConnectivity", "RevokeExternalConnectivity", "AllocateNetwork", "FreeNetwork"} {
		handle(mux, "/NetworkDriver."+m, none)
	}
	handle(mux, "/IpamDriver.GetCapabilities", func(context.Context, struct{}) (any, error) { return d.ipamCapabilities(), nil })
	handle(mux, "/IpamDriver.GetDefaultAddressSpaces", func(context.Context, struct{}) (any, error) { return d.addressSpaces(), nil })
	handle(mux, "/IpamDriver.RequestPool", func(_ context.Context, r requestPoolRequest) (any, error) { return d.requestPool(r) })
	handle(mux, "/IpamDriver.ReleasePool", func(_ context.Context, r releasePoolRequest) (any, error) { return struct{}{}, d.releasePool(r) })
	handle(mux, "/IpamDriver.RequestAddress", func(ctx context.Context, r requestAddressRequest) (any, error) { return d.requestAddress(ctx, r) })
	handle(mux, "/IpamDriver.ReleaseAddress", func(_ context.Context, r releaseAddressRequest) (any, error) { return struct{}{}, d.releaseAddress(r) })
	return mux
}

// contentType is the plugin protocol's media type.
const contentType = "application/vnd.docker.plugins.v1+json"

// handle serves one method: the body decoded into Req (bounded), then do.
// A body that does not decode is a 400, as the protocol asks; a failed
// operation is a 500 with the protocol's {"Err": ...}.
func handle[Req any](mux *http.ServeMux, path string, do func(context.Context, Req) (any, error)) {
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := decode(r.Body, &req); err != nil {
			reply(w, http.StatusBadRequest, errResponse{Err: err.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		v, err := do(ctx, req)
		switch {
		case errors.Is(err, errBadRequest):
			reply(w, http.StatusBadRequest, errResponse{Err: err.Error()})
		case err != nil:
			reply(w, http.StatusInternalServerError, errResponse{Err: err.Error()})
		default:
			reply(w, http.StatusOK, v)
		}
	})
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
