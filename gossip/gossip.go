// Package gossip is weavenet's control plane: the mesh of peers that find
// each other, keep TCP connections (port 6783) to each other, and gossip the
// topology from which the data plane's routes are computed. It wraps
// github.com/weaveworks/mesh with what a daemon needs around it: a peer
// identity that survives restarts, validated peer addresses, status, and
// counters of refused handshakes.
package gossip

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "unsafe" // go:linkname, for meshAccept

	"github.com/weaveworks/mesh"
	"golang.org/x/crypto/argon2"

	"weavenet/meshgate"
)

// DefaultPort is the mesh TCP port.
const DefaultPort = 6783

// Config describes one peer of the mesh.
type Config struct {
	// Name is the peer name (a MAC-like aa:bb:cc:dd:ee:ff). Empty means the
	// one persisted in DataDir, generated on first use.
	Name string
	// NickName is a human name shown beside Name; empty means the hostname.
	NickName string
	// Host and Port are the TCP address to listen on ("" = all addresses).
	Host string
	Port int
	// DataDir keeps the generated peer name. Required when Name is empty.
	DataDir string
	// Discovery lets the mesh connect to peers it learns from other peers.
	Discovery bool
	// ConnLimit caps the number of connections (0 = mesh's default of 100).
	ConnLimit int
	// Password, when set, encrypts every connection (NaCl box key exchange,
	// then secretbox) and refuses peers that do not share it. The data
	// plane's session keys come from the same handshake.
	Password []byte
	// PasswordKDF is how the password becomes what mesh keys connections
	// with (see the README's "What the mesh port protects"): KDFArgon2id
	// ("" too: stretched once at New with argon2id, so that every offline
	// guess by someone who completed a key exchange costs as much) or
	// KDFWeave (Weave Net's: mesh hashes it once with the key exchange's
	// secret, fast to guess; only for networks with Weave Net 2.x peers,
	// which know no other). mesh holds one password for all connections,
	// so every peer of a network must use the same derivation.
	PasswordKDF string
	// TrustedSubnets: a connection between two peers whose addresses each
	// lie in the other's trusted subnets is not encrypted.
	TrustedSubnets []netip.Prefix
	Logger         *slog.Logger
	// OnConnectionError, when set, hears of each connection that failed
	// before mesh handed it to the overlay: a dial that failed or a
	// handshake that was refused (another password, not a mesh peer). addr
	// is the remote HOST:PORT. It runs on mesh's goroutines: do not block.
	OnConnectionError func(addr string, err error)
}

// Node is a started or startable mesh peer.
type Node struct {
	Mesh *mesh.Router
	Name mesh.PeerName
	log  *slog.Logger
	// onConnErr is Config.OnConnectionError.
	onConnErr func(addr string, err error)
	// handshakeFailures counts inbound or outbound connections that died
	// before the handshake completed: garbage, wrong protocol, refused.
	handshakeFailures atomic.Uint64
	// gate admits inbound connections to mesh (see package meshgate);
	// ln is the listener Start made, nil when the caller Serves its own.
	gate *meshgate.Gate
	ln   *net.TCPListener
	// logLimit spaces mesh's per-connection log lines (see meshLogger).
	logLimit logLimiter
}

// The listener. mesh's Router.Start listens itself, panics if it cannot,
// spins on accept errors, delays every accept behind a token bucket (so a
// flood of silent connections keeps a real peer waiting) and never closes
// its listener. A Node never calls it: it accepts through a meshgate.Gate,
// which hands each connection to mesh's own accept step. That step is
// unexported, hence the linkname; mesh is pinned in go.mod, and the tests
// that make inbound connections fail if the step stops working.

//go:linkname meshAccept github.com/weaveworks/mesh.(*Router).acceptTCP
func meshAccept(r *mesh.Router, c *net.TCPConn)

// gatedOverlay tells the Gate when mesh has finished an inbound handshake:
// mesh prepares the overlay's side of a connection only then.
type gatedOverlay struct {
	mesh.Overlay
	gate *meshgate.Gate
}

func (o gatedOverlay) PrepareConnection(p mesh.OverlayConnectionParams) (mesh.OverlayConnection, error) {
	if !p.Outbound && p.RemoteAddr != nil {
		o.gate.Authenticated(p.RemoteAddr)
	}
	return o.Overlay.PrepareConnection(p)
}

// New builds the mesh peer with overlay as its data plane. Call Start to
// listen and connect.
func New(cfg Config, overlay mesh.Overlay) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("gossip: port %d out of range 1-65535", cfg.Port)
	}
	name, err := peerName(cfg.Name, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	nick := cfg.NickName
	if nick == "" {
		if nick, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("gossip: nickname: %w", err)
		}
	}
	connLimit := cfg.ConnLimit
	if connLimit == 0 {
		connLimit = 100
	}
	trusted := make([]*net.IPNet, 0, len(cfg.TrustedSubnets))
	for _, p := range cfg.TrustedSubnets {
		trusted = append(trusted, &net.IPNet{IP: p.Masked().Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	var password []byte
	if len(cfg.Password) > 0 {
		password = cfg.Password
		if len(password) < minPasswordLen {
			cfg.Logger.Warn("gossip: the password is short: anyone who completes a key exchange with this peer can guess it offline; use 12 characters or more", "length", len(password))
		}
		switch cfg.PasswordKDF {
		case KDFWeave:
		case KDFArgon2id, "":
			password = StretchPassword(password)
		default:
			return nil, fmt.Errorf("gossip: password KDF %q: want %q or %q", cfg.PasswordKDF, KDFWeave, KDFArgon2id)
		}
	}
	if err := meshgate.Check(); err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	if overlay == nil {
		overlay = mesh.NullOverlay{}
	}
	n := &Node{Name: name, log: cfg.Logger, onConnErr: cfg.OnConnectionError}
	n.gate = meshgate.New(meshgate.Config{
		MinVersion: mesh.ProtocolMinVersion,
		MaxVersion: mesh.ProtocolMaxVersion,
		Logger:     cfg.Logger,
	}, func(c *net.TCPConn) { meshAccept(n.Mesh, c) })
	m, err := mesh.NewRouter(mesh.Config{
		Host:               cfg.Host,
		Port:               cfg.Port,
		Password:           password,
		ConnLimit:          connLimit,
		ProtocolMinVersion: mesh.ProtocolMinVersion,
		PeerDiscovery:      cfg.Discovery,
		TrustedSubnets:     trusted,
	}, name, nick, gatedOverlay{overlay, n.gate}, meshLogger{n})
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	n.Mesh = m
	return n, nil
}

// Start listens for peers and starts connecting to the given ones.
func (n *Node) Start(peers []string) error {
	if err := ValidatePeers(peers); err != nil {
		return err
	}
	// Give a daemon that is just exiting a moment to let go of the port.
	addr := net.JoinHostPort(n.Mesh.Host, fmt.Sprint(n.Mesh.Port))
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gossip: listen on TCP %s: %w", addr, err)
		}
	}
	n.ln = ln.(*net.TCPListener)
	go func() { _ = n.Serve(n.ln) }()
	n.Connect(peers, false)
	return nil
}

// Serve accepts mesh connections from ln, through the Node's Gate, until
// ln is closed. Start serves a listener of its own; a caller that owns the
// listener calls Serve instead of Start.
func (n *Node) Serve(ln *net.TCPListener) error { return n.gate.Serve(ln) }

// GateStats counts what happened to inbound connections before their
// handshake completed.
func (n *Node) GateStats() meshgate.Stats { return n.gate.Stats() }

// Close closes the listener Start made and the inbound connections still
// in the handshake, and waits a moment for those the Gate copies for to
// end; mesh itself has no way to stop (see router.Node.Close).
func (n *Node) Close() {
	if n.ln != nil {
		n.ln.Close()
	}
	n.gate.Close()
}

// Connect adds peers to the targets the mesh keeps connecting to, with
// backoff, forever. replace drops the targets not in peers.
func (n *Node) Connect(peers []string, replace bool) error {
	if err := ValidatePeers(peers); err != nil {
		return err
	}
	return errors.Join(n.Mesh.ConnectionMaker.InitiateConnections(peers, replace)...)
}

// Forget drops peers from the targets. Existing connections stay up.
func (n *Node) Forget(peers []string) {
	n.Mesh.ConnectionMaker.ForgetConnections(peers)
}

// HandshakeFailures is the number of connections that failed before the
// peer at the other end proved to be a mesh peer.
func (n *Node) HandshakeFailures() uint64 { return n.handshakeFailures.Load() }

// Status is a snapshot of the mesh: peers, connections, targets.
func (n *Node) Status() *mesh.Status { return mesh.NewStatus(n.Mesh) }

// ValidatePeers checks that each peer is HOST or HOST:PORT.
func ValidatePeers(peers []string) error {
	for _, p := range peers {
		host := p
		if strings.Contains(p, ":") {
			h, port, err := net.SplitHostPort(p)
			if err != nil {
				return fmt.Errorf("peer %q: want HOST or HOST:PORT", p)
			}
			if _, err := net.LookupPort("tcp", port); err != nil {
				return fmt.Errorf("peer %q: bad port %q", p, port)
			}
			host = h
		}
		if host == "" {
			return fmt.Errorf("peer %q: empty host", p)
		}
	}
	return nil
}

const nameFile = "peer-name"

// peerName returns the configured name, or the one persisted in dataDir,
// generating and saving one the first time.
func peerName(configured, dataDir string) (mesh.PeerName, error) {
	if configured != "" {
		name, err := mesh.PeerNameFromUserInput(configured)
		if err != nil {
			return 0, fmt.Errorf("gossip: peer name %q: %w", configured, err)
		}
		return name, nil
	}
	if dataDir == "" {
		return 0, errors.New("gossip: no peer name and no data dir to keep one in")
	}
	path := filepath.Join(dataDir, nameFile)
	if b, err := os.ReadFile(path); err == nil {
		name, err := mesh.PeerNameFromString(strings.TrimSpace(string(b)))
		if err != nil {
			return 0, fmt.Errorf("gossip: %s: %w", path, err)
		}
		return name, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("gossip: read peer name: %w", err)
	}
	var mac [6]byte
	if _, err := rand.Read(mac[:]); err != nil {
		return 0, fmt.Errorf("gossip: generate peer name: %w", err)
	}
	mac[0] = (mac[0] | 0x02) &^ 0x01 // locally administered, unicast
	name := mesh.PeerNameFromBin(mac[:])
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return 0, fmt.Errorf("gossip: data dir: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(name.String()+"\n"), 0o600); err != nil {
		return 0, fmt.Errorf("gossip: save peer name: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, fmt.Errorf("gossip: save peer name: %w", err)
	}
	return name, nil
}

// Explain rewrites mesh's handshake errors into what a user can act on.
func Explain(msg string) string {
	if strings.Contains(msg, "handshake") && strings.Contains(msg, resetByPeer) {
		// The end that finds a mismatch closes the connection; the other
		// end only sees the reset.
		return strings.Replace(msg, resetByPeer, resetByPeer+" (the peer refused us, e.g. a password mismatch: see its log)", 1)
	}
	for raw, why := range explanations {
		if strings.Contains(msg, raw) {
			return strings.Replace(msg, raw, why, 1)
		}
	}
	return msg
}

var explanations = map[string]string{
	"Unable to decrypt TCP msg":                  "password mismatch: the peer's handshake does not decrypt with our password (or its --password-kdf differs: Weave Net peers need weave on every peer)",
	"password specified, but peer requested an":  "password mismatch: we have a password, the peer has none, and it asked for an",
	"no password specificed, but peer requested": "password mismatch: we have no password, but the peer has one and requested",
}

const resetByPeer = "connection reset by peer"

// meshLogger turns mesh's printf logging into structured log lines, and
// counts the failures that a daemon should expose as metrics.
type meshLogger struct{ n *Node }

// The formats of mesh's log lines about connections that failed before the
// overlay saw them; both take the address, then the error.
const (
	handshakeFailedFormat = "->[%s] connection shutting down due to error during handshake: %v"
	dialFailedFormat      = "->[%s] error during connection attempt: %v"
)

// acceptedFormat is mesh's line for every connection it accepts.
const acceptedFormat = "->[%s] connection accepted"

func (l meshLogger) Printf(format string, args ...interface{}) {
	if format == handshakeFailedFormat {
		l.n.handshakeFailures.Add(1)
	}
	if format == handshakeFailedFormat || format == acceptedFormat {
		// One line per connection is a flood under attack: these two are
		// rate-limited, the counters (report, metrics) keep the totals.
		if suppressed, ok := l.n.logLimit.allow(time.Now()); !ok {
			if l.n.onConnErr != nil && format == handshakeFailedFormat && len(args) == 2 {
				l.n.onConnErr(fmt.Sprint(args[0]), errors.New(Explain(fmt.Sprint("handshake: ", args[1]))))
			}
			return
		} else if suppressed > 0 {
			l.n.log.Info("mesh: connection lines suppressed (rate limit)", "suppressed", suppressed)
		}
	}
	if l.n.onConnErr != nil && len(args) == 2 {
		switch format {
		case handshakeFailedFormat:
			l.n.onConnErr(fmt.Sprint(args[0]), errors.New(Explain(fmt.Sprint("handshake: ", args[1]))))
		case dialFailedFormat:
			l.n.onConnErr(fmt.Sprint(args[0]), fmt.Errorf("connect: %v", args[1]))
		}
	}
	l.n.log.Info("mesh: " + Explain(fmt.Sprintf(format, args...)))
}

// logLimiter lets through a burst of logBurst lines, then one per
// logInterval, and counts what it held back.
type logLimiter struct {
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed uint64
}

const (
	logBurst    = 20
	logInterval = 100 * time.Millisecond
)

// allow says whether a line may be logged at now and, if so, how many were
// suppressed since the last one allowed.
func (l *logLimiter) allow(now time.Time) (suppressed uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = logBurst
	} else {
		l.tokens = min(logBurst, l.tokens+float64(now.Sub(l.last))/float64(logInterval))
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return 0, false
	}
	l.tokens--
	suppressed, l.suppressed = l.suppressed, 0
	return suppressed, true
}

// Password derivations (Config.PasswordKDF).
const (
	KDFArgon2id = "argon2id"
	KDFWeave    = "weave"
)

// minPasswordLen is the length below which New warns about a password.
const minPasswordLen = 12

// The argon2id parameters: 64 MiB and two passes cost a fraction of a
// second once per start, and as much for every guess an attacker tries.
// The salt is fixed because every peer must derive the same key from the
// same password with nothing else shared; it only separates this use.
const (
	argonTime    = 2
	argonMemory  = 64 << 10 // KiB
	argonThreads = 2
	argonSalt    = "weavenet mesh password v1"
)

// StretchPassword is the argon2id derivation of KDFArgon2id: 32 bytes,
// which mesh then uses where it would use the password.
func StretchPassword(pw []byte) []byte {
	return argon2.IDKey(pw, []byte(argonSalt), argonTime, argonMemory, argonThreads, 32)
}
