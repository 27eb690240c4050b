package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// hijack passes a connection-taking request (attach, exec start, anything
// asking for an Upgrade) through as a byte stream: the request goes to the
// Engine as received, then the two connections are spliced, the Engine's
// answer (101 UPGRADED, or 200 and a raw stream) included, so whatever the
// Engine and the client say to each other afterwards reaches the other
// unchanged. A client that closes its sending side (stdin's end) has that
// passed on; when the Engine is done the client's connection ends.
//
// The Engine's connection is opened and the request written before the
// client's connection is taken, so a failure is still an HTTP error.
func (p *Proxy) hijack(w http.ResponseWriter, r *http.Request) {
	backend, err := net.DialTimeout("unix", p.cfg.DockerSocket, 10*time.Second)
	if err != nil {
		writeError(w, http.StatusBadGateway, fmt.Errorf("weave proxy: docker: %w", err))
		return
	}
	// Bodies of these requests are small (exec start's options, or none);
	// bound how long sending it may take.
	_ = backend.SetWriteDeadline(time.Now().Add(30 * time.Second))
	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host = "", ""
	out.RequestURI = ""
	if err := out.Write(backend); err != nil {
		backend.Close()
		writeError(w, http.StatusBadGateway, fmt.Errorf("weave proxy: forwarding %s: %w", r.URL.Path, err))
		return
	}
	_ = backend.SetWriteDeadline(time.Time{})
	client, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		backend.Close()
		writeError(w, http.StatusInternalServerError, fmt.Errorf("weave proxy: cannot take the connection over: %w", err))
		return
	}
	_ = client.SetDeadline(time.Time{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		splice(client, buf.Reader, backend, p.done)
	}()
}

// splice copies client→backend and backend→client until the backend's
// side ends (or the proxy closes), then closes both. Ownership of both
// connections passes to splice.
func splice(client net.Conn, clientBuf *bufio.Reader, backend net.Conn, done <-chan struct{}) {
	fromBackend, fromClient := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(fromClient)
		// Bytes the server read ahead belong to the stream.
		_, _ = io.Copy(backend, clientBuf)
		closeWrite(backend)
	}()
	go func() {
		defer close(fromBackend)
		_, _ = io.Copy(client, backend)
	}()
	select {
	case <-fromBackend:
	case <-done:
	}
	client.Close()
	backend.Close()
	<-fromBackend
	<-fromClient
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// readAll reads a body that MaxBytesReader bounds.
func readAll(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(r)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, fmt.Errorf("more than %d bytes", tooBig.Limit)
	}
	return b, err
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }
