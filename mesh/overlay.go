package mesh

import "net"

// Overlay is the data plane beside the mesh: it adds its handshake fields
// and is handed each connection once the handshake is done.
type Overlay interface {
	// AddFeaturesTo adds the overlay's fields to our handshake fields.
	AddFeaturesTo(map[string]string)
	// PrepareConnection makes the overlay's side of a connection; it stays
	// passive until Confirm.
	PrepareConnection(OverlayConnectionParams) (OverlayConnection, error)
	// Diagnostics is the overlay's part of Status.
	Diagnostics() interface{}
	// Stop stops the overlay.
	Stop()
}

// OverlayConnectionParams describe a connection to the overlay.
type OverlayConnectionParams struct {
	RemotePeer *Peer
	// LocalAddr and RemoteAddr are the TCP connection's addresses.
	LocalAddr  *net.TCPAddr
	RemoteAddr *net.TCPAddr
	// Outbound is true when we dialled.
	Outbound bool
	// ConnUID is the same number at both ends of the connection.
	ConnUID uint64
	// SessionKey is the connection's key when it is encrypted (a password
	// is set and either end does not trust the other), else nil. The TCP
	// stream's nonces have the second bit of the first byte set; the
	// overlay's must not.
	SessionKey *[32]byte
	// SendControlMessage sends a message to the remote overlay on the TCP
	// connection; tag is a Protocol* tag of the overlay's.
	SendControlMessage func(tag byte, msg []byte) error
	// Features are the remote's handshake fields.
	Features map[string]string
}

// OverlayConnection is the overlay's side of one connection.
type OverlayConnection interface {
	// Confirm says the connection is kept: start heartbeats.
	Confirm()
	// EstablishedChannel is closed once the overlay works.
	EstablishedChannel() <-chan struct{}
	// ErrorChannel carries the error that ends the connection.
	ErrorChannel() <-chan error
	// Stop ends the overlay's side.
	Stop()
	// ControlMessage is a message from the remote overlay.
	ControlMessage(tag byte, msg []byte)
	// Attrs describe the connection in Status ("name" is shown).
	Attrs() map[string]interface{}
}

// NullOverlay carries nothing: its connections are established at once.
type NullOverlay struct{}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (NullOverlay) AddFeaturesTo(map[string]string) {}
func (NullOverlay) PrepareConnection(OverlayConnectionParams) (OverlayConnection, error) {
	return NullOverlay{}, nil
}
func (NullOverlay) Diagnostics() interface{}            { return nil }
func (NullOverlay) Stop()                               {}
func (NullOverlay) Confirm()                            {}
func (NullOverlay) EstablishedChannel() <-chan struct{} { return closedChan }
func (NullOverlay) ErrorChannel() <-chan error          { return nil }
func (NullOverlay) ControlMessage(byte, []byte)         {}
func (NullOverlay) Attrs() map[string]interface{}       { return nil }

// Protocol message tags: the first byte of each message after the
// handshake.
const (
	ProtocolHeartbeat = iota
	// ProtocolReserved1 to 3 are the overlay's (Weave's sleeve uses them).
	ProtocolReserved1
	ProtocolReserved2
	ProtocolReserved3
	ProtocolGossip
	ProtocolGossipUnicast
	ProtocolGossipBroadcast
	ProtocolOverlayControlMsg
)

// Logger is where the mesh writes its few log lines.
type Logger interface {
	Printf(format string, args ...interface{})
}
