// Package api is the contract between weaved and its clients: the JSON
// documents of the daemon's local HTTP API and a small client for them, and
// the daemon's defaults and state files, which the CLI needs when no daemon
// runs. The weave CLI renders everything it prints from these types.
// The API is served on a Unix socket (DefaultAddr) or, when asked, on TCP;
// ParseAddr reads the one address syntax weaved and every client share.
//
// Endpoints (all JSON; errors are {"error": "..."} with a 4xx/5xx status):
//
//	GET  /report              Report
//	POST /connect             PeersRequest  → {}
//	POST /forget              PeersRequest  → {}
//	POST /attach              AttachRequest → AttachResponse
//	POST /detach              AttachRequest → AttachResponse
//	POST /stop                {}            → {} (the daemon exits)
//	POST /reset               {}            → {} (hand IPAM space away, remove bridge and state, exit)
//	GET  /ps                  → []Container
//	POST /rm                  ContainerRequest → {}
//	POST /expose              AttachRequest (Container empty) → AttachResponse
//	POST /hide                AttachRequest (Container empty) → AttachResponse
//	POST /rmpeer              PeersRequest  → RmpeerResponse
//	POST /dns-add             DNSRequest    → {}
//	POST /dns-remove          DNSRequest    → {}
//	GET  /dns-lookup?name=N   → []string (addresses)
package api

import "time"

// Version is the weavenet release, shown by `weave version` and status.
const Version = "0.1.0"

// Report is the daemon's whole state, `weave report`'s output.
type Report struct {
	Version string
	Router  Router
	IPAM    *IPAM `json:",omitempty"`
	DNS     *DNS  `json:",omitempty"`
	// Proxy is the Docker API proxy's section; nil when none runs.
	Proxy *Proxy `json:",omitempty"`
	// Plugin is the Docker network plugin's section; nil when none runs.
	Plugin *Plugin `json:",omitempty"`
}

// Plugin is the Docker network plugin's section of the report.
type Plugin struct {
	DriverName string // docker network create --driver NAME --ipam-driver NAME
	Socket     string // where the engine reaches it: unix:///run/docker/plugins/NAME.sock
	Endpoints  int    // created by the engine and not deleted
}

// Proxy is the Docker API proxy's section of the report.
type Proxy struct {
	Address string // where docker -H reaches it: unix:///var/run/weave/weave.sock
}

// IPAM is the address allocator's section of the report.
type IPAM struct {
	// Status: idle, ready, awaiting consensus (quorum Q, known peers K),
	// waiting for the ring from other peers, waiting for donation, ...
	Status        string
	Range         string // first-last
	RangeCIDR     string
	DefaultSubnet string
	Init          string
	Allocations   int // addresses held by containers on this peer
	Peers         []IPAMPeer
}

// IPAMPeer is one owner of address space.
type IPAMPeer struct {
	Name      string
	NickName  string
	Ourself   bool
	Reachable bool
	Ranges    []string
	Addresses uint64  // size of its ranges
	Share     float64 // of the whole range, 0..1
	Free      uint64
}

// DNS is weaveDNS's section of the report.
type DNS struct {
	Domain   string
	Address  string // where containers reach it
	Upstream []string
	TTL      uint32
	Entries  []DNSEntry
}

// DNSEntry is one name → address record.
type DNSEntry struct {
	Hostname  string
	Address   string
	Container string
	Origin    string // peer name
	Tombstone bool   `json:",omitempty"`
}

// Router is the router section of the report.
type Router struct {
	Name               string
	NickName           string
	Port               int
	Protocol           string
	ProtocolMinVersion int
	ProtocolMaxVersion int
	Encryption         bool
	PeerDiscovery      bool
	TrustedSubnets     []string
	MTU                int
	Bridge             string
	Targets            []string
	Connections        []Connection
	Peers              []Peer
	Stats              Stats
	// Mode is bridge (containers on a Linux bridge) or l3 (the host
	// itself on a TUN device); empty from daemons before L3 mode.
	Mode string `json:",omitempty"`
	// FastDatapath is nil from daemons before it.
	FastDatapath *FastDatapath `json:",omitempty"`
}

// Connection is one of this peer's connections, or a target it is trying to
// connect to.
type Connection struct {
	Address  string
	Outbound bool
	// State is established, pending, connecting, retrying or failed.
	State string
	// Info says with whom, or why it failed.
	Info      string
	Transport string `json:",omitempty"`
	MTU       int    `json:",omitempty"`
	Encrypted bool
	// Cipher is nacl (Weave Net's), aes-256-gcm (between weavenet peers
	// with AES hardware) or none.
	Cipher string `json:",omitempty"`
	// Format is the sleeve format of the link: fast (weavenet peers:
	// offloaded super-frames cross whole) or classic (Weave Net's).
	Format string `json:",omitempty"`
	// PeerName is the peer at the other end, PeerKind what it runs:
	// weavenet or weave (Weave Net), as its handshake says; PeerVersion
	// its release when it says (Weave Net does not).
	PeerName    string `json:",omitempty"`
	PeerKind    string `json:",omitempty"`
	PeerVersion string `json:",omitempty"`
	// Heartbeat is the interval of UDP heartbeats once acknowledged, and
	// HeartbeatTimeout how long without one fails the connection
	// (durations such as "10s"): Weave Net's toward Weave Net, shorter
	// between weavenet peers.
	Heartbeat        string `json:",omitempty"`
	HeartbeatTimeout string `json:",omitempty"`
	// Datapath is fastdp (known unicast through the kernel's VXLAN) or
	// sleeve (everything through the router); DatapathReason says why
	// not fastdp.
	Datapath       string `json:",omitempty"`
	DatapathReason string `json:",omitempty"`
	// EstablishedAt is when the connection became established: both
	// ends had heard each other over the data path.
	EstablishedAt *time.Time `json:",omitempty"`
}

// FastDatapath is the fast datapath's section of the router report.
type FastDatapath struct {
	Enabled bool
	// Why not, when not enabled.
	Why     string `json:",omitempty"`
	Port    int    `json:",omitempty"`
	VNI     uint32 `json:",omitempty"`
	Entries int64  // MACs whose frames the kernel forwards to a peer
	// Encrypted says why encrypted links use the sleeve.
	Encrypted string `json:",omitempty"`
	// RxBytes and TxBytes are the VXLAN device's own counters: what
	// crossed without passing through weaved.
	RxBytes, TxBytes uint64
	// AllowList is the nftables table (family inet) that drops UDP to the
	// VXLAN port unless it comes from one of AllowedPeers underlay
	// addresses; Dropped counts what it dropped (also Stats.Drops'
	// vxlan_not_peer). AllowListOff says why there is none (nftables
	// unavailable: the port then takes frames from anyone).
	AllowList    string `json:",omitempty"`
	AllowListOff string `json:",omitempty"`
	AllowedPeers int
	Dropped      uint64
}

// Peer is a peer of the mesh and the connections it reports.
type Peer struct {
	Name     string
	NickName string
	UID      uint64
	ShortID  uint16
	Version  uint64
	// Kind is weavenet or weave (Weave Net) where known: for this peer
	// and those it has a connection to. Release is its weavenet release.
	Kind        string `json:",omitempty"`
	Release     string `json:",omitempty"`
	Connections []PeerConnection
}

// PeerConnection is a connection as gossiped by the peer that has it.
type PeerConnection struct {
	Name        string
	NickName    string
	Address     string
	Outbound    bool
	Established bool
}

// Stats are the data plane counters.
type Stats struct {
	FramesIn, FramesOut, BytesIn, BytesOut uint64
	// Drops counts frames and datagrams dropped, by reason: malformed,
	// unknown_peer, no_route, no_contact, too_big, unsegmentable, device, send,
	// handshake (TCP connections refused during the mesh handshake: another
	// password, a peer that hung up), and the inbound connections the mesh
	// closed before their handshake completed: handshake_silent (no protocol header within 2.5 s),
	// handshake_not_mesh, handshake_oversize (a handshake frame over 64 KiB),
	// handshake_timeout (not authenticated within 10 s) and
	// handshake_evicted (over the caps on connections in the handshake);
	// vxlan_not_peer: datagrams to the fast datapath's VXLAN port from an
	// address that is no peer's, dropped by the kernel (its allow-list).
	Drops map[string]uint64
}

// PeersRequest names peers as HOST or HOST:PORT.
type PeersRequest struct {
	Peers   []string
	Replace bool `json:",omitempty"`
}

// AttachRequest asks to plug a container into the weave bridge (attach) or
// to take addresses from it (detach). Container is a netns name, a netns
// path, or a PID. Addrs are the CLI's ADDR forms: a CIDR (that address),
// net:default, net:CIDR (allocate from that subnet), none. Hostname is the
// name to register in DNS (default: the container's name).
type AttachRequest struct {
	Container string
	Addrs     []string
	Hostname  string `json:",omitempty"`
}

// ContainerRequest names a container.
type ContainerRequest struct {
	Container string
}

// Container is one line of weave ps.
type Container struct {
	Container string
	MAC       string
	Addrs     []string
}

// RmpeerResponse says how many addresses were taken over per peer.
type RmpeerResponse struct {
	Reclaimed map[string]uint64
}

// DNSRequest adds or removes names: Addrs (default: the container's
// addresses) of Container under Hostname (default: its name).
type DNSRequest struct {
	Container string
	Addrs     []string `json:",omitempty"`
	Hostname  string   `json:",omitempty"`
}

// AttachResponse is the container's interface after the change.
type AttachResponse struct {
	MAC   string
	Addrs []string
}

// ErrorResponse is the body of every failed request.
type ErrorResponse struct {
	Error string `json:"error"`
}
