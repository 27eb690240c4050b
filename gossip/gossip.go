// Package gossip is weavenet's control plane: the mesh of peers that find
// each other, keep TCP connections (port 6783) to each other, and gossip the
// topology from which the data plane's routes are computed. It wraps
// weavenet/mesh with what a daemon needs around it: a peer identity that
// survives restarts, validated peer addresses, the password's derivation
// per connection, status, and counters of refused handshakes.
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

	"golang.org/x/crypto/argon2"

	"weavenet/mesh"
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
	// ConnLimit caps the number of connections (0 = the default of 100).
	ConnLimit int
	// Password, when set, encrypts every connection (NaCl box key exchange,
	// then secretbox) and refuses peers that do not share it. The data
	// plane's session keys come from the same handshake.
	Password []byte
	// PasswordKDF says what a connection with a Weave Net 2.x peer keys
	// with (see the README's "What the mesh port protects"). Connections
	// between weavenet peers always key with the password stretched by
	// argon2id (once, at New), so that every offline guess by someone who
	// completed a key exchange costs as much. A Weave Net peer knows only
	// Weave's derivation (the password hashed once with the key exchange's
	// secret, fast to guess): KDFWeave connects with such peers that way,
	// KDFArgon2id ("" too) refuses them.
	PasswordKDF string
	// TrustedSubnets: a connection between two peers whose addresses each
	// lie in the other's trusted subnets is not encrypted.
	TrustedSubnets []netip.Prefix
	Logger         *slog.Logger
	// OnConnectionError, when set, hears of each connection that failed
	// before the overlay saw it: a dial that failed or a handshake that was
	// refused (another password, not a mesh peer). addr is the remote
	// HOST:PORT. It runs on the mesh's goroutines: do not block.
	OnConnectionError func(addr string, err error)
}

// Node is a started or startable mesh peer.
type Node struct {
	Mesh *mesh.Router
	Name mesh.PeerName
	log  *slog.Logger
	// onConnErr is Config.OnConnectionError.
	onConnErr func(addr string, err error)
	// weavenetSecret keys connections with weavenet peers, weaveSecret
	// (nil unless PasswordKDF is KDFWeave) those with Weave Net peers.
	weavenetSecret, weaveSecret []byte
	closed                      atomic.Bool
	// ln is the listener Start made, nil when the caller Serves its own.
	ln net.Listener
	wg sync.WaitGroup
	// logLimit spaces the per-connection log lines (see meshLogger).
	logLimit logLimiter
}

// weavenetVersion is the protocol version two weavenet peers settle on
// (mesh.Config.AdvertiseWeavenet): version 2 on the wire, agreed in the
// clear header before either end derives a key, so that both key with the
// stretched password. Weave Net's mesh settles on 2.
const weavenetVersion = "3"

// ErrWeaveNetPeer refuses a Weave Net peer when PasswordKDF is KDFArgon2id.
var ErrWeaveNetPeer = errors.New("the peer offers Weave Net's protocol, not weavenet's: it knows only Weave's password derivation, which this peer refuses (to connect with Weave Net 2.x peers, start weavenet with --password-kdf weave)")

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
	n := &Node{Name: name, log: cfg.Logger, onConnErr: cfg.OnConnectionError}
	if overlay == nil {
		overlay = mesh.NullOverlay{}
	}
	mcfg := mesh.Config{
		Host:               cfg.Host,
		Port:               cfg.Port,
		ConnLimit:          connLimit,
		ProtocolMinVersion: mesh.ProtocolMinVersion,
		AdvertiseWeavenet:  true,
		PeerDiscovery:      cfg.Discovery,
		TrustedSubnets:     trusted,
		OnConnectionError:  n.connectionFailed,
	}
	if pw := cfg.Password; len(pw) > 0 {
		if len(pw) < minPasswordLen {
			cfg.Logger.Warn("gossip: the password is short: anyone who completes a key exchange with this peer can guess it offline; use 12 characters or more", "length", len(pw))
		}
		switch cfg.PasswordKDF {
		case KDFWeave:
			n.weaveSecret = pw
		case KDFArgon2id, "":
		default:
			return nil, fmt.Errorf("gossip: password KDF %q: want %q or %q", cfg.PasswordKDF, KDFWeave, KDFArgon2id)
		}
		n.weavenetSecret = StretchPassword(pw)
		mcfg.SessionPassword = n.sessionPassword
	}
	m, err := mesh.NewRouter(mcfg, name, nick, overlay, meshLogger{n})
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	n.Mesh = m
	return n, nil
}

// sessionPassword is the mesh's per-connection secret: the stretched
// password with a weavenet peer, the password as Weave Net uses it with
// another, if PasswordKDF allows.
func (n *Node) sessionPassword(remote map[string]string) ([]byte, error) {
	if remote[mesh.FieldProtocolVersion] == weavenetVersion {
		return n.weavenetSecret, nil
	}
	if n.weaveSecret != nil {
		return n.weaveSecret, nil
	}
	return nil, ErrWeaveNetPeer
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
	n.ln = ln
	n.wg.Add(1)
	go func() { defer n.wg.Done(); _ = n.Serve(ln) }()
	return n.Connect(peers, false)
}

// Serve accepts mesh connections from ln until ln or the Node is closed.
// Start serves a listener of its own; a caller that owns the listener
// calls Serve instead of Start. Close closes ln.
func (n *Node) Serve(ln net.Listener) error { return n.Mesh.Serve(ln) }

// HandshakeStats counts inbound connections by how their handshake ended.
func (n *Node) HandshakeStats() mesh.HandshakeStats { return n.Mesh.HandshakeStats() }

// Close closes the listeners being served and every connection, and waits
// for the mesh's goroutines to end.
func (n *Node) Close() {
	n.closed.Store(true)
	if n.ln != nil {
		// Serve may not have handed it to the mesh yet.
		n.ln.Close()
	}
	n.Mesh.Close()
	n.wg.Wait()
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

// HandshakeFailures is the number of connections refused in the handshake
// for a reason other than those HandshakeStats names apart (silent, not
// mesh, oversize, timeout, evicted): another password, a hung-up or
// colliding peer; inbound and outbound.
func (n *Node) HandshakeFailures() uint64 {
	st := n.Mesh.HandshakeStats()
	return st.Refused + st.Failed + st.OutboundHandshakeFailed
}

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

// Explain adds to the mesh's handshake errors what a user can act on.
func Explain(msg string) string { return msg + refusedHint(msg) }

// refusedHint says why a handshake may have ended in a reset: the end
// that finds a mismatch closes the connection, the other only sees that.
func refusedHint(msg string) string {
	if strings.Contains(msg, "handshake") && (strings.Contains(msg, resetByPeer) || strings.HasSuffix(msg, ": EOF")) {
		return " (the peer refused us, e.g. a password mismatch: see its log)"
	}
	return ""
}

const resetByPeer = "connection reset by peer"

func passwordRefusal(err error) bool {
	for _, e := range []error{mesh.ErrPasswordMismatch, mesh.ErrRemoteEncrypted, mesh.ErrRemoteUnencrypted, ErrWeaveNetPeer} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// connectionFailed is the mesh's hook for connections that failed before
// they joined: it tells OnConnectionError. The mesh logs outbound ones
// itself and counts inbound ones (HandshakeStats); of those, the refusals
// an operator must act on (another password, or none, or a Weave Net peer
// under KDFArgon2id) are logged too, rate-limited: one line per
// connection would be a flood under attack.
func (n *Node) connectionFailed(addr string, outbound bool, err error) {
	if n.closed.Load() {
		return
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		err = fmt.Errorf("connect: %w", err)
	} else {
		err = fmt.Errorf("handshake: %w%s", err, refusedHint(fmt.Sprint("handshake: ", err)))
	}
	if n.onConnErr != nil {
		n.onConnErr(addr, err)
	}
	if !outbound && passwordRefusal(err) {
		n.logLimited("mesh: connection refused", "addr", addr, "err", err)
	}
}

// logLimited logs an Info line unless the rate limit holds it back.
func (n *Node) logLimited(msg string, args ...any) {
	suppressed, ok := n.logLimit.allow(time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		n.log.Info("mesh: connection lines suppressed (rate limit)", "suppressed", suppressed)
	}
	n.log.Info(msg, args...)
}

// meshLogger turns the mesh's printf logging into structured log lines;
// those about single connections are rate-limited.
type meshLogger struct{ n *Node }

func (l meshLogger) Printf(format string, args ...interface{}) {
	msg := "mesh: " + Explain(fmt.Sprintf(format, args...))
	if strings.HasPrefix(format, "->[") {
		l.n.logLimited(msg)
		return
	}
	l.n.log.Info(msg)
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

// StretchPassword is the argon2id derivation that keys connections between
// weavenet peers: 32 bytes, which the mesh uses where Weave Net uses the
// password.
func StretchPassword(pw []byte) []byte {
	return argon2.IDKey(pw, []byte(argonSalt), argonTime, argonMemory, argonThreads, 32)
}
