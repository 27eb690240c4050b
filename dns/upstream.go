package dns

import (
	"bufio"
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// UpstreamSource supplies the resolvers that names outside the domain are
// forwarded to, in order of preference. It is called for every forwarded
// query and must be safe for concurrent use; the returned slice is the
// caller's.
type UpstreamSource interface {
	Upstreams() []netip.AddrPort
}

// StaticUpstreams is a fixed list of resolvers.
type StaticUpstreams []netip.AddrPort

// Upstreams implements UpstreamSource.
func (s StaticUpstreams) Upstreams() []netip.AddrPort { return slices.Clone(s) }

// ResolvConf reads the nameserver lines of a resolv.conf file (port 53),
// and reads them again whenever the file's modification time or size has
// changed, checked on every use. A missing or unreadable file means no
// upstreams (forwarded queries get SERVFAIL) until it appears.
type ResolvConf struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	mtime   time.Time
	size    int64
	present bool
	warned  bool // about the file being unreadable, until it is readable
	servers []netip.AddrPort
}

// NewResolvConf returns a source reading path; log may be nil.
func NewResolvConf(path string, log *slog.Logger) *ResolvConf {
	if log == nil {
		log = slog.Default()
	}
	return &ResolvConf{path: path, log: log.With("component", "dns", "resolv_conf", path)}
}

// Upstreams implements UpstreamSource.
func (r *ResolvConf) Upstreams() []netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	fi, err := os.Stat(r.path)
	if err != nil {
		if !r.warned {
			r.log.Warn("cannot read upstream resolvers; forwarding will fail until it is readable", "err", err)
			r.warned = true
		}
		r.present, r.servers = false, nil
		return nil
	}
	if r.present && fi.ModTime().Equal(r.mtime) && fi.Size() == r.size {
		return slices.Clone(r.servers)
	}
	data, err := os.ReadFile(r.path)
	if err != nil {
		if !r.warned {
			r.log.Warn("cannot read upstream resolvers; forwarding will fail until it is readable", "err", err)
			r.warned = true
		}
		r.present, r.servers = false, nil
		return nil
	}
	r.present, r.warned, r.mtime, r.size = true, false, fi.ModTime(), fi.Size()
	r.servers = parseResolvConf(data)
	r.log.Info("upstream resolvers", "servers", r.servers)
	return slices.Clone(r.servers)
}

// parseResolvConf returns the nameserver addresses of a resolv.conf, port
// 53, in file order, skipping what does not parse.
func parseResolvConf(data []byte) []netip.AddrPort {
	var out []netip.AddrPort
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		ap := netip.AddrPortFrom(a.Unmap(), 53)
		if !slices.Contains(out, ap) {
			out = append(out, ap)
		}
	}
	return out
}

// upstreams is the configured list minus our own listening address, so a
// host whose resolv.conf names us cannot make us forward to ourselves.
func (s *Server) upstreams() []netip.AddrPort {
	ups := s.upstream.Upstreams()
	self := s.Addr()
	if !self.IsValid() {
		return ups
	}
	return slices.DeleteFunc(ups, func(u netip.AddrPort) bool {
		if u.Port() != self.Port() {
			return false
		}
		a := u.Addr().WithZone("")
		return a == self.Addr() ||
			(self.Addr().IsUnspecified() && (a.IsLoopback() || a.IsUnspecified()))
	})
}
