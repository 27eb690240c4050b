// Package api is the contract between weaved and its clients: the JSON
// documents of the daemon's local HTTP API and a small client for them. The
// weave CLI renders everything it prints from these types.
//
// Endpoints (all JSON; errors are {"error": "..."} with a 4xx/5xx status):
//
//	GET  /report              Report
//	POST /connect             PeersRequest  → {}
//	POST /forget              PeersRequest  → {}
//	POST /attach              AttachRequest → AttachResponse
//	POST /detach              AttachRequest → AttachResponse
//	POST /stop                {}            → {} (the daemon exits)
package api

// Version is the weavenet release, shown by `weave version` and status.
const Version = "0.1.0"

// Report is the daemon's whole state, `weave report`'s output.
type Report struct {
	Version string
	Router  Router
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
}

// Peer is a peer of the mesh and the connections it reports.
type Peer struct {
	Name        string
	NickName    string
	UID         uint64
	ShortID     uint16
	Version     uint64
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
	// and handshake (TCP connections refused during the mesh handshake).
	Drops map[string]uint64
}

// PeersRequest names peers as HOST or HOST:PORT.
type PeersRequest struct {
	Peers   []string
	Replace bool `json:",omitempty"`
}

// AttachRequest asks to plug a container into the weave bridge (attach) or
// to take addresses from it (detach). Container is a netns name, a netns
// path, or a PID. Addrs are CIDRs such as 10.32.0.1/12.
type AttachRequest struct {
	Container string
	Addrs     []string
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
