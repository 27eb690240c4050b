package mesh

import (
	"bytes"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

// The handshake, both directions alike:
//
//  1. Each end writes "weave", its lowest and highest protocol version; the
//     highest version both support is used (ProtocolMinVersion..Max).
//  2. Version 2: each end writes an encryption flag (0 or 1) and, with 1,
//     its NaCl public key; then each sends its handshake fields, a gob
//     map[string]string, as the first (sealed, with a password) frame.
//     Version 1: each sends its fields as a gob value in clear, a subset of
//     them, with the public key as a hex "PublicKey" field.
//  3. With a password, the session key is formed (transport.go).
//
// Before the remote is known to speak the protocol, nothing it sends is
// believed: the header must arrive within headerTimeout, the whole
// handshake within handshakeTimeout, and a frame may not announce more
// than maxHandshakeFrame bytes.

const (
	// Protocol names the protocol in the header.
	Protocol = "weave"
	// ProtocolMinVersion is the lowest protocol version we speak.
	ProtocolMinVersion = 1
	// ProtocolMaxVersion is the highest protocol version we speak.
	ProtocolMaxVersion = 2

	// weavenetVersion is version 2's wire format, offered only between
	// weavenet peers (Config.AdvertiseWeavenet).
	weavenetVersion = 3

	headerTimeout     = 2500 * time.Millisecond
	handshakeTimeout  = 10 * time.Second
	maxHandshakeFrame = 64 << 10
	maxFields         = 256
)

// The fields a version 1 handshake carries: it is not encrypted, so only
// these are sent or believed.
var v1Fields = []string{"ConnID", "Name", "NickName", "PeerNameFlavour", "UID"}

// Session password hook pseudo-fields: what is known of the remote when the
// session secret is needed, besides (in version 1) its handshake fields.
const (
	// FieldProtocolVersion is the negotiated protocol version ("1", "2").
	FieldProtocolVersion = "_ProtocolVersion"
	// FieldRemoteMaxVersion is the highest version the remote offered.
	FieldRemoteMaxVersion = "_RemoteMaxVersion"
	// FieldRemoteAddr is the remote's TCP HOST:PORT.
	FieldRemoteAddr = "_RemoteAddr"
	// FieldOutbound is "true" when we dialled.
	FieldOutbound = "_Outbound"
)

// Why a handshake with a peer of another password (or none) failed; the
// errors a connection fails with wrap these.
var (
	// ErrRemoteUnencrypted: we have a password, the remote has none.
	ErrRemoteUnencrypted = errors.New("password mismatch: we have a password, the peer has none")
	// ErrRemoteEncrypted: the remote has a password, we have none.
	ErrRemoteEncrypted = errors.New("password mismatch: the peer has a password, we have none")
)

// Why a handshake failed, for the counters in HandshakeStats.
type failKind int

const (
	failOther    failKind = iota
	failSilent            // no header within headerTimeout
	failNotMesh           // the header or encryption flag is not mesh's
	failOversize          // a frame announced above the bound
	failTimeout           // not done within handshakeTimeout
	failRefused           // password mismatch, refused by the hook, bad fields
)

type handshakeError struct {
	kind failKind
	err  error
}

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

func classify(err error, kind failKind) error {
	if err == nil {
		return nil
	}
	var he *handshakeError
	if errors.As(err, &he) {
		return err
	}
	var oe *oversizeError
	switch {
	case errors.As(err, &oe):
		kind = failOversize
	case errors.Is(err, os.ErrDeadlineExceeded):
		if kind != failSilent {
			kind = failTimeout
		}
	}
	return &handshakeError{kind, err}
}

type handshake struct {
	conn     net.Conn
	outbound bool
	minVer   byte
	maxVer   byte
	fields   map[string]string
	encrypt  bool
	password func(remote map[string]string) ([]byte, error)
	deadline time.Time
	// onHeader, if set, hears that the remote's header arrived.
	onHeader func()
}

type handshakeResult struct {
	version byte
	fields  map[string]string
	w       frameWriter
	r       frameReader
	key     *[32]byte
}

func (h *handshake) run() (res handshakeResult, err error) {
	c := h.conn
	if err := c.SetDeadline(h.deadline); err != nil {
		return res, err
	}
	theirMax, err := h.exchangeHeader()
	if err != nil {
		return res, err
	}
	if h.onHeader != nil {
		h.onHeader()
	}
	res.version = min(theirMax, h.maxVer)
	if err := c.SetDeadline(h.deadline); err != nil {
		return res, err
	}
	known := map[string]string{
		FieldProtocolVersion:  strconv.Itoa(int(res.version)),
		FieldRemoteMaxVersion: strconv.Itoa(int(theirMax)),
		FieldRemoteAddr:       c.RemoteAddr().String(),
		FieldOutbound:         strconv.FormatBool(h.outbound),
	}
	var pub, priv *[32]byte
	if h.encrypt {
		if pub, priv, err = newKeyPair(); err != nil {
			return res, err
		}
	}
	if res.version == 1 {
		err = h.introV1(&res, pub, priv, known)
	} else {
		err = h.introV2(&res, pub, priv, known)
	}
	if err != nil {
		return res, classify(err, failOther)
	}
	return res, nil
}

// exchangeHeader sends ours and reads theirs; it returns their highest
// version once the ranges are known to overlap.
func (h *handshake) exchangeHeader() (byte, error) {
	ours := append([]byte(Protocol), h.minVer, h.maxVer)
	if _, err := h.conn.Write(ours); err != nil {
		return 0, classify(err, failOther)
	}
	// Inbound, the header must come quickly: that is what tells a peer
	// from a silent connection. Outbound, a busy remote may accept late.
	hd := h.deadline
	if d := time.Now().Add(headerTimeout); !h.outbound && d.Before(hd) {
		hd = d
	}
	if err := h.conn.SetReadDeadline(hd); err != nil {
		return 0, err
	}
	theirs := make([]byte, len(ours))
	n, err := io.ReadFull(h.conn, theirs)
	if err != nil {
		kind := failNotMesh
		if n == 0 {
			kind = failSilent
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && n > 0 {
			kind = failTimeout
		}
		return 0, classify(fmt.Errorf("reading the protocol header: %w", err), kind)
	}
	if !bytes.Equal(theirs[:len(Protocol)], []byte(Protocol)) {
		return 0, &handshakeError{failNotMesh, errors.New("remote protocol header not recognised")}
	}
	tMin, tMax := theirs[len(Protocol)], theirs[len(Protocol)+1]
	if max(tMin, h.minVer) > min(tMax, h.maxVer) {
		return 0, &handshakeError{failNotMesh, fmt.Errorf("remote version range [%d,%d] is incompatible with ours [%d,%d]",
			tMin, tMax, h.minVer, h.maxVer)}
	}
	return tMax, nil
}

func (h *handshake) introV2(res *handshakeResult, pub, priv *[32]byte, known map[string]string) error {
	flag := []byte{0}
	if pub != nil {
		flag = append([]byte{1}, pub[:]...)
	}
	if _, err := h.conn.Write(flag); err != nil {
		return err
	}
	var got [1]byte
	if _, err := io.ReadFull(h.conn, got[:]); err != nil {
		return err
	}
	w := frameWriter(&lengthWriter{w: h.conn})
	r := frameReader(newLengthReader(h.conn, maxHandshakeFrame))
	switch got[0] {
	case 0:
		if pub != nil {
			return &handshakeError{failRefused, ErrRemoteUnencrypted}
		}
	case 1:
		if pub == nil {
			return &handshakeError{failRefused, ErrRemoteEncrypted}
		}
		var theirs [32]byte
		if _, err := io.ReadFull(h.conn, theirs[:]); err != nil {
			return err
		}
		key, err := h.key(&theirs, priv, known)
		if err != nil {
			return err
		}
		res.key = key
		w = &sealWriter{inner: w, key: key, n: newNonceSeq(h.outbound)}
		r = &openReader{inner: r, key: key, n: newNonceSeq(!h.outbound)}
	default:
		return &handshakeError{failNotMesh, fmt.Errorf("bad encryption flag %d", got[0])}
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(h.fields); err != nil {
		return err
	}
	if err := w.writeFrame(buf.Bytes()); err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	frame, err := r.readFrame()
	if err != nil {
		if errors.Is(err, ErrPasswordMismatch) {
			return &handshakeError{failRefused, err}
		}
		return err
	}
	fields, err := decodeStringMap(frame, maxFields)
	if err != nil {
		return &handshakeError{failNotMesh, err}
	}
	res.fields, res.w, res.r = fields, w, r
	return nil
}

func (h *handshake) introV1(res *handshakeResult, pub, priv *[32]byte, known map[string]string) error {
	ours := onlyV1(h.fields)
	if pub != nil {
		ours["PublicKey"] = hex.EncodeToString(pub[:])
	}
	enc := gob.NewEncoder(h.conn)
	if err := enc.Encode(ours); err != nil {
		return err
	}
	gr := newGobReader(h.conn, maxHandshakeFrame)
	body, err := gr.s.nextValue()
	if err != nil {
		return err
	}
	theirs, err := decodeStringMapBody(body, maxFields)
	if err != nil {
		return &handshakeError{failNotMesh, err}
	}
	res.w, res.r = &gobWriter{enc}, gr
	keyHex, hasKey := theirs["PublicKey"]
	switch {
	case pub == nil && hasKey:
		return &handshakeError{failRefused, ErrRemoteEncrypted}
	case pub != nil && !hasKey:
		return &handshakeError{failRefused, ErrRemoteUnencrypted}
	case pub != nil:
		raw, err := hex.DecodeString(keyHex)
		if err != nil || len(raw) != 32 {
			return &handshakeError{failRefused, errors.New("bad PublicKey field")}
		}
		var their [32]byte
		copy(their[:], raw)
		for k, v := range onlyV1(theirs) {
			known[k] = v
		}
		key, err := h.key(&their, priv, known)
		if err != nil {
			return err
		}
		res.key = key
		res.w = &sealWriter{inner: res.w, key: key, n: newNonceSeq(h.outbound)}
		res.r = &openReader{inner: gr, key: key, n: newNonceSeq(!h.outbound)}
	}
	res.fields = onlyV1(theirs)
	return nil
}

// key asks for the session secret and forms the session key.
func (h *handshake) key(theirs, priv *[32]byte, known map[string]string) (*[32]byte, error) {
	secret, err := h.password(known)
	if err != nil {
		return nil, &handshakeError{failRefused, fmt.Errorf("session password refused: %w", err)}
	}
	return sessionKey(theirs, priv, secret), nil
}

func onlyV1(fields map[string]string) map[string]string {
	out := make(map[string]string, len(v1Fields))
	for _, k := range v1Fields {
		if v, ok := fields[k]; ok {
			out[k] = v
		}
	}
	return out
}

// remoteIdentity is what a peer's handshake fields say about it.
type remoteIdentity struct {
	name       PeerName
	nickName   string
	uid        PeerUID
	shortID    PeerShortID
	hasShortID bool
	connID     uint64
	trustsUs   bool
}

const maxNickName = 255

func parseIdentity(f map[string]string) (remoteIdentity, error) {
	var id remoteIdentity
	for _, k := range []string{"PeerNameFlavour", "Name", "NickName", "UID", "ConnID"} {
		if _, ok := f[k]; !ok {
			return id, fmt.Errorf("handshake field %s is missing", k)
		}
	}
	if fl := f["PeerNameFlavour"]; fl != PeerNameFlavour {
		return id, fmt.Errorf("peer name flavour mismatch (ours: %q, theirs: %q)", PeerNameFlavour, fl)
	}
	var err error
	if id.name, err = PeerNameFromString(f["Name"]); err != nil {
		return id, err
	}
	if id.nickName = f["NickName"]; len(id.nickName) > maxNickName {
		return id, errors.New("handshake field NickName is too long")
	}
	if s, ok := f["ShortID"]; ok {
		v, err := strconv.ParseUint(s, 10, peerShortIDBits)
		if err != nil {
			return id, fmt.Errorf("handshake field ShortID: %w", err)
		}
		id.shortID, id.hasShortID = PeerShortID(v), true
	}
	if s, ok := f["Trusted"]; ok {
		if id.trustsUs, err = strconv.ParseBool(s); err != nil {
			return id, fmt.Errorf("handshake field Trusted: %w", err)
		}
	}
	if id.uid, err = parsePeerUID(f["UID"]); err != nil {
		return id, fmt.Errorf("handshake field UID: %w", err)
	}
	if id.connID, err = strconv.ParseUint(f["ConnID"], 10, 64); err != nil {
		return id, fmt.Errorf("handshake field ConnID: %w", err)
	}
	return id, nil
}
