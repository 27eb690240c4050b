package api

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// DefaultAddr is where weaved serves its API unless told otherwise: a Unix
// socket that weaved makes mode 0600, so that only root (the daemon's
// user) can drive it, and no web page at all. It sits beside the Docker
// API proxy's weave.sock in /var/run/weave, which is a tmpfs (/run): a
// socket left by a crash is gone after a reboot.
const DefaultAddr = "unix://" + DefaultSocket

// DefaultSocket is DefaultAddr's path.
const DefaultSocket = "/var/run/weave/weaved.sock"

// maxSocketPath is the longest path a Unix socket can have on Linux
// (sun_path holds 108 bytes with the terminating NUL).
const maxSocketPath = 107

// Addr is where a daemon's API listens: a Unix socket or a TCP address.
type Addr struct {
	Network string // "unix" or "tcp"
	Address string // the socket's absolute path, or host:port
}

// ParseAddr reads an API address, the one syntax that weaved's and the
// CLI's --http-addr, WEAVE_HTTP_ADDR and the CNI conflist's daemon share:
//
//	unix:///var/run/weave/weaved.sock   a Unix socket (also unix:/PATH, or a bare /PATH)
//	127.0.0.1:6784                      TCP (also tcp://HOST:PORT)
//
// A socket path must be absolute: a relative one would name another
// socket for each directory a client runs in.
func ParseAddr(s string) (Addr, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Addr{}, fmt.Errorf("empty API address: want unix:///PATH or HOST:PORT")
	}
	path, isUnix := strings.CutPrefix(s, "unix:")
	if !isUnix && strings.HasPrefix(s, "/") {
		path, isUnix = s, true
	}
	if isUnix {
		if p, ok := strings.CutPrefix(path, "//"); ok {
			path = p
		}
		if !strings.HasPrefix(path, "/") {
			return Addr{}, fmt.Errorf("API address %q: a Unix socket's path must be absolute (unix:///PATH)", s)
		}
		if len(path) > maxSocketPath {
			return Addr{}, fmt.Errorf("API address %q: a Unix socket's path can be at most %d bytes", s, maxSocketPath)
		}
		return Addr{Network: "unix", Address: filepath.Clean(path)}, nil
	}
	hostport, _ := strings.CutPrefix(s, "tcp://")
	if strings.Contains(hostport, "://") {
		return Addr{}, fmt.Errorf("API address %q: want unix:///PATH or HOST:PORT", s)
	}
	if _, port, err := net.SplitHostPort(hostport); err != nil || port == "" {
		return Addr{}, fmt.Errorf("API address %q: want unix:///PATH or HOST:PORT", s)
	}
	return Addr{Network: "tcp", Address: hostport}, nil
}

// String is the address in the form ParseAddr reads.
func (a Addr) String() string {
	if a.Network == "unix" {
		return "unix://" + a.Address
	}
	return a.Address
}

// IsUnix reports whether the address is a Unix socket.
func (a Addr) IsUnix() bool { return a.Network == "unix" }

// dial connects to the address, whatever the HTTP client asked for: over a
// socket the URL's host is only a Host header.
func (a Addr) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, a.Network, a.Address)
}

// urlHost is the host of request URLs: the TCP address itself, or over a
// socket a name that weaved's guard and every HTTP server accept.
func (a Addr) urlHost() string {
	if a.IsUnix() {
		return "localhost"
	}
	return a.Address
}

// AddrEnv names the environment variable that tells the CLI, and weaved
// itself, where the API is (weave's and weaved's --http-addr win over it).
const AddrEnv = "WEAVE_HTTP_ADDR"

// AddrFromEnv is the API address a client uses when nothing else names
// one: $WEAVE_HTTP_ADDR, else DefaultAddr. The CNI plugins and weave-kube
// follow it too, so that a weaved started with it is found.
func AddrFromEnv() string {
	if s := os.Getenv(AddrEnv); s != "" {
		return s
	}
	return DefaultAddr
}
