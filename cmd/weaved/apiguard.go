package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"weavenet/api"
)

// The local API answers on a Unix socket only root can use (apilisten.go)
// unless --http-addr asks for TCP, where any web page the host's browser
// opens, and any local user, can reach it. apiGuard keeps browsers out
// (the CLI and the CNI plugin are not browsers) and bounds what a slow or
// large request can hold:
//
//   - Over TCP, a Host header naming anything but an IP literal,
//     localhost or the listen host is refused: that is a DNS-rebinding
//     page, whose name now resolves to 127.0.0.1. (A socket takes any
//     Host: no browser reaches it.)
//   - A request with an Origin header, or Sec-Fetch-Site other than
//     none, comes from a web page: refused.
//   - A request that changes state (any method but GET and HEAD) must
//     say Content-Type: application/json. A browser sends that
//     cross-site only after a CORS preflight, which the API never
//     grants; forms and text/plain, which need none, are refused.
//   - A body must arrive within bodyWait and fit in maxBody; it is read
//     before the handler runs, so that a slow sender holds neither the
//     handler nor a daemon lock.
//
// A request that passes and changes state is logged with who sent it
// (apicaller.go); reads are not.

// maxBody bounds a request body; the largest real one (attach with a few
// addresses, connect with maxTargets peers) is far smaller.
const maxBody = 1 << 20

// bodyWait bounds how long a request body may take to arrive.
const bodyWait = 10 * time.Second

type apiGuard struct {
	listenHost string // the host of a TCP --http-addr, as given
	bodyWait   time.Duration
	next       http.Handler
	log        *slog.Logger
}

func newAPIGuard(listen api.Addr, next http.Handler, log *slog.Logger) *apiGuard {
	var host string
	if !listen.IsUnix() {
		host, _, _ = net.SplitHostPort(listen.Address)
	}
	return &apiGuard{listenHost: host, bodyWait: bodyWait, next: next, log: log}
}

// newAPIServer serves h (the guard) with the header, idle and size bounds
// a local API needs, noting each socket client's credentials.
func newAPIServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, ConnContext: withCaller}
}

func (g *apiGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := g.check(r); err != nil {
		writeError(w, http.StatusForbidden, err)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, errors.New("the weave API takes only Content-Type: application/json (use the weave CLI or the api package)"))
			return
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		b, code, err := g.readBody(w, r)
		if err != nil {
			writeError(w, code, err)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		g.log.Info("api: "+r.Method+" "+r.URL.Path, callerAttrs(r)...)
	}
	g.next.ServeHTTP(w, r)
}

// check refuses what a browser sends: another site's page, or a
// rebinding one.
func (g *apiGuard) check(r *http.Request) error {
	if r.Header.Get("Origin") != "" {
		return errors.New("requests from web pages (with an Origin header) are refused; use the weave CLI")
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "none" {
		return errors.New("requests from web pages (Sec-Fetch-Site) are refused; use the weave CLI")
	}
	// No browser reaches a Unix socket, so no Host there is a rebound
	// name; and clients send what they like (curl localhost, others the
	// socket's path).
	if !overSocket(r) && !g.hostOK(r.Host) {
		return fmt.Errorf("the Host header %q is not this API's address; connect to it by IP address or localhost", r.Host)
	}
	return nil
}

// overSocket reports whether r came through a Unix socket. A request
// whose connection is unknown (handler tests) is treated as TCP.
func overSocket(r *http.Request) bool {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	return ok && a.Network() == "unix"
}

// hostOK accepts a Host that cannot be a rebound name: an IP literal,
// localhost, or the listen host as configured. An empty one (HTTP/1.0)
// comes from no browser.
func (g *apiGuard) hostOK(hostport string) bool {
	if hostport == "" {
		return true
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return strings.EqualFold(host, "localhost") || strings.EqualFold(host, g.listenHost)
}

// readBody reads the whole body within bodyWait, then lifts the deadline
// so that the handler may take as long as its work does.
func (g *apiGuard) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(g.bodyWait)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, http.StatusInternalServerError, err
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(b) > maxBody {
		// The deadline stays: the server drains what is left of the
		// body after the answer, and must not wait on this sender.
		w.Header().Set("Connection", "close")
	} else if err := rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, http.StatusInternalServerError, err
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return nil, http.StatusRequestTimeout, fmt.Errorf("request body not received within %v", g.bodyWait)
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("request body: %w", err)
	case len(b) > maxBody:
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes", maxBody)
	}
	return b, 0, nil
}
