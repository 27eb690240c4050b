package router

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"weavenet/internal/wallclock"
	"weavenet/mesh"

	"weavenet/crypto"
)

// A forwarder is the router's half of one mesh connection: it owns the UDP
// address of the directly connected peer and proves, with heartbeats over
// UDP, that frames can flow before mesh marks the connection established.
// Its goroutine handles the rare events (heartbeats, control messages);
// frames themselves never pass through it.

// Heartbeat timing: fast until the peer acknowledges our first heartbeat,
// then slow; a connection whose heartbeats stop for the cadence's timeout
// is failed. The cadence depends on the peer's kind (see cadence.go).
const (
	fragTestAttempts = 10
	fragTestInterval = time.Second
)

// On a link on the fast datapath to a peer that offers featureProbeAcks,
// the probes, which the fast loop watches, are the peer's signs of life,
// so heartbeats go only every fastLinkBeats slow intervals (slowBeat, as
// often as Weave Net's): they still prove that the sleeve, which carries
// the link's broadcasts, is open, and the connection fails without one
// for sleeveSilence. When the probes stop, the fast loop moves the link
// off the fast datapath and tells the forwarder (pathChanged): heartbeats
// go every slow interval again, from then, and the peer has a whole
// cadence timeout from then to send its own. At 50 peers a heartbeat
// each way every 3 s per link was a fifth of an idle daemon's CPU.
const (
	fastLinkBeats = 10
	sleeveSilence = 30 * time.Second
)

// confirmTimeout is how long a weavenet connection waits for the peer's
// first heartbeat before it fails. Until then nothing depends on the
// link, and a slow start is not a dead path: at 50 peers on two cores,
// connections made while the mesh formed failed after 5 s without a first
// heartbeat by the dozen, each one to be made again after a back-off.
const confirmTimeout = 15 * time.Second

// Control message tags on the mesh TCP connection, as Weave Net's sleeve uses
// them.
const (
	ctlConnectionEstablished = mesh.ProtocolReserved1 // "your heartbeat arrived"
	ctlFragmentationReceived = mesh.ProtocolReserved2 // "your fragmented test frame arrived"
	ctlPMTUVerified          = mesh.ProtocolReserved3 // "your probe of this size arrived"
)

// Connection features, exchanged in the mesh handshake. featureOverlays is
// Weave Net's list of overlays a peer offers; a peer that sends it wraps
// control messages with the overlay's index. featurePartialCsum says the
// peer speaks the fast format: TCP checksums cross the link partial.
const (
	featureOverlays    = "Overlays"
	featurePartialCsum = "WeavenetPartialCsum"
	featureCipher      = "WeavenetCipher" // a faster cipher than Weave Net's that we can use
	overlayName        = "sleeve"
)

type forwarder struct {
	r          *Router
	remote     *mesh.Peer
	remoteName mesh.PeerName
	connUID    uint64
	// kind and release of the peer, and the heartbeat cadence toward it,
	// from its handshake features.
	kind, release string
	cadence       cadence
	// partialCsum: the fast format. Every TCP segment on this link carries
	// only the pseudo-header sum in its checksum field; the receiving
	// device finishes it, so neither router reads the payload to sum it.
	partialCsum bool
	// fast is the link's fast datapath state (fastdp.go).
	fast *fastLink
	// wrapControl: the peer speaks Weave Net's overlay switch, which
	// prefixes control messages with an overlay index and the tag.
	wrapControl bool
	sendControl func(tag byte, msg []byte) error
	// sealer and opener are nil on an unencrypted link. The opener is used
	// only by the receive loop.
	suite  crypto.Suite
	sealer *crypto.Sealer
	opener *crypto.Opener

	addr      atomic.Pointer[netip.AddrPort] // nil until the peer's UDP address is known
	stackFrag atomic.Bool                    // the underlay delivers fragmented datagrams
	noGSO     atomic.Bool                    // the route's MTU is too small for UDP GSO runs

	specials    chan special
	controls    chan control
	pathChanged chan struct{} // the link moved on or off the fast datapath
	confirmed   chan struct{}
	established chan struct{}
	errs        chan error
	stop        chan struct{}
	stopOnce    sync.Once
	stopped     bool // under Router.fwdMu
}

type special struct {
	from    netip.AddrPort
	length  int // of the Ethernet payload
	uid     uint64
	allZero bool
}

type control struct {
	tag byte
	msg []byte
}

// AddFeaturesTo implements mesh.Overlay.
func (r *Router) AddFeaturesTo(features map[string]string) {
	features[featureOverlays] = overlayName
	features[featureWeavenet] = ourRelease
	if r.partialCsum {
		features[featurePartialCsum] = "1"
	}
	if r.fastCipher {
		features[featureCipher] = crypto.AESGCM.String()
	}
	if v := r.fastFeature(); v != "" {
		features[featureFastDP] = v
		features[featureProbeAcks] = "1"
	}
}

// Diagnostics implements mesh.Overlay.
func (r *Router) Diagnostics() interface{} { return r.Stats() }

// Stop implements mesh.Overlay; the router is stopped with Close.
func (r *Router) Stop() {}

// PrepareConnection implements mesh.Overlay.
func (r *Router) PrepareConnection(p mesh.OverlayConnectionParams) (mesh.OverlayConnection, error) {
	offered, wrap := p.Features[featureOverlays]
	if wrap && !slices.Contains(strings.Fields(offered), overlayName) {
		return nil, fmt.Errorf("peer offers overlays %q, we only speak %q", offered, overlayName)
	}
	kind, release, cad := peerKind(p.Features)
	f := &forwarder{
		r:           r,
		kind:        kind,
		release:     release,
		cadence:     cad,
		remote:      p.RemotePeer,
		remoteName:  p.RemotePeer.Name,
		connUID:     p.ConnUID,
		partialCsum: r.partialCsum && p.Features[featurePartialCsum] == "1",
		wrapControl: wrap,
		sendControl: p.SendControlMessage,
		specials:    make(chan special, 4),
		controls:    make(chan control, 4),
		pathChanged: make(chan struct{}, 1),
		confirmed:   make(chan struct{}, 1),
		established: make(chan struct{}),
		errs:        make(chan error, 1),
		stop:        make(chan struct{}),
	}
	// mesh gives a session key unless both ends trust each other's subnet.
	if p.SessionKey != nil {
		// Weave Net's NaCl unless both ends run AES in hardware.
		if r.fastCipher && p.Features[featureCipher] == crypto.AESGCM.String() {
			f.suite = crypto.AESGCM
		}
		f.sealer = crypto.NewSealer(p.SessionKey, p.Outbound, f.suite)
		f.opener = crypto.NewOpener(p.SessionKey, p.Outbound, f.suite)
	}
	f.fast = r.newFastLink(f, p.Features)
	// Only for a connection we dialled is the peer's address known up front
	// (Weave Net uses the same port for UDP as for TCP); otherwise the first
	// heartbeat tells us.
	if p.Outbound && p.RemoteAddr != nil {
		a := p.RemoteAddr.AddrPort()
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		f.addr.Store(&a)
	}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); f.run() }()
	return f, nil
}

// WeaveNetConnected says whether a Weave Net router is among the peers
// the router has a confirmed connection to.
func (r *Router) WeaveNetConnected() bool {
	for _, f := range *r.fwds.Load() {
		if f.kind == KindWeave {
			return true
		}
	}
	return false
}

// notePathChange tells f's goroutine that the link moved on or off the
// fast datapath; it does not wait.
func (f *forwarder) notePathChange() {
	select {
	case f.pathChanged <- struct{}{}:
	default:
	}
}

// Confirm implements mesh.OverlayConnection.
func (f *forwarder) Confirm() {
	select {
	case f.confirmed <- struct{}{}:
	default:
	}
}

// EstablishedChannel implements mesh.OverlayConnection.
func (f *forwarder) EstablishedChannel() <-chan struct{} { return f.established }

// ErrorChannel implements mesh.OverlayConnection.
func (f *forwarder) ErrorChannel() <-chan error { return f.errs }

// Stop implements mesh.OverlayConnection.
func (f *forwarder) Stop() {
	f.stopOnce.Do(func() {
		f.r.setForwarder(f.remoteName, nil, f)
		close(f.stop)
	})
}

// ControlMessage implements mesh.OverlayConnection.
func (f *forwarder) ControlMessage(tag byte, msg []byte) {
	if tag == mesh.ProtocolOverlayControlMsg {
		// Weave Net's overlay switch: [overlay index, tag, msg...].
		if len(msg) < 2 {
			return
		}
		tag, msg = msg[1], msg[2:]
	}
	if tag == ctlFastProbeAck {
		f.onProbeAck(msg) // not for the forwarder's goroutine: it only stores a time
		return
	}
	select {
	case f.controls <- control{tag, msg}:
	case <-f.stop:
	}
}

// Attrs implements mesh.OverlayConnection.
func (f *forwarder) Attrs() map[string]interface{} {
	datapath, why := f.datapath()
	return map[string]interface{}{
		"name":         overlayName,
		"mtu":          f.r.mtu,
		"partial_csum": f.partialCsum,
		"encrypted":    f.sealer != nil,
		"cipher":       f.cipher(),
		// fragments: the underlay passes IP fragments, which frames
		// bigger than its MTU (from a peer with a larger one) rely on.
		"fragments": f.stackFrag.Load(),
		// format: both carry Weave Net's plain frames; classic with
		// complete checksums, fast with TCP checksums left to the
		// receiving device.
		"format":       map[bool]string{false: "classic", true: "fast"}[f.partialCsum],
		"peer":         f.remoteName.String(),
		"peer_kind":    f.kind,
		"peer_version": f.release,
		// heartbeat: the interval once acknowledged; heartbeat_timeout:
		// how long without one fails the connection. Both are longer
		// while the peer's probes stand in for them.
		"heartbeat":         f.slowBeat(),
		"heartbeat_timeout": f.beatTimeout(),
		// datapath: fastdp (kernel VXLAN) or sleeve, and why not fastdp.
		"datapath":        datapath,
		"datapath_reason": why,
	}
}

func (f *forwarder) cipher() string {
	if f.sealer == nil {
		return "none"
	}
	return f.suite.String()
}

func (f *forwarder) control(tag byte, msg []byte) error {
	if f.wrapControl {
		return f.sendControl(mesh.ProtocolOverlayControlMsg, append([]byte{0, tag}, msg...))
	}
	return f.sendControl(tag, msg)
}

// onSpecial is called by the receive loop for one of the peer's control
// frames. It must not block the receive loop: a heartbeat lost to a full
// queue is simply one of the many heartbeats.
func (f *forwarder) onSpecial(from netip.AddrPort, eth []byte) {
	s := special{from: from, length: len(eth)}
	switch len(eth) {
	case heartbeatLen:
		s.uid = binary.BigEndian.Uint64(eth[ethHdrLen:])
	case fragTestLen:
		s.allZero = !slices.ContainsFunc(eth, func(c byte) bool { return c != 0 })
	}
	select {
	case f.specials <- s:
	default:
	}
}

func (f *forwarder) run() {
	var (
		interval time.Duration // zero until confirmed
		beat     = stoppedTimer()
		timeout  = stoppedTimer()
		fragTest = stoppedTimer()
		fragLeft = 0       // fragmentation tests still to send until one is answered
		acked    bool      // we told the peer its heartbeats arrive
		lastBeat time.Time // the peer's last heartbeat
		waitFrom time.Time // confirmation: the timeout counts from here until a heartbeat
		leftFast time.Time // the link last left the fast datapath
		err      error
	)
	// deadline is when the connection fails without another heartbeat,
	// and the silence that allows.
	deadline := func() (time.Time, time.Duration) {
		switch {
		case !lastBeat.After(waitFrom):
			limit := max(f.cadence.timeout, confirmTimeout)
			return waitFrom.Add(limit), limit
		case f.probesBeat():
			return lastBeat.Add(sleeveSilence), sleeveSilence
		case leftFast.After(lastBeat):
			return leftFast.Add(f.cadence.timeout), f.cadence.timeout
		default:
			return lastBeat.Add(f.cadence.timeout), f.cadence.timeout
		}
	}
	// A heartbeat does not push the timeout back: a timer reset before it
	// fires still wakes the runtime at its old time, so 49 links' timers,
	// pushed back at every heartbeat, woke an idle daemon at scattered
	// moments all second long. It fires on whole seconds, with the other
	// periodic work, and is set again from the last heartbeat.
	armTimeout := func(now time.Time) {
		d, _ := deadline()
		timeout.Reset(d.Sub(now) + wallclock.Until(d, time.Second))
	}
	defer func() {
		beat.Stop()
		timeout.Stop()
		fragTest.Stop()
		if err != nil {
			f.errs <- err
		}
	}()
	for err == nil {
		select {
		case <-f.stop:
			return
		case <-f.r.closing:
			return
		case <-f.confirmed:
			if interval != 0 {
				continue
			}
			f.r.setForwarder(f.remoteName, f, nil)
			interval = f.cadence.fast
			err = f.sendHeartbeat()
			beat.Reset(interval)
			waitFrom = time.Now()
			armTimeout(waitFrom)
		case <-beat.C:
			err = f.sendHeartbeat()
			if interval == f.cadence.slow {
				beat.Reset(wallclock.Until(time.Now(), f.slowBeat()))
			} else {
				beat.Reset(interval) // unacknowledged: keep trying at once
			}
		case <-fragTest.C:
			if fragLeft > 0 {
				fragLeft--
				err = f.sendSpecial(fragTestLen, nil)
				fragTest.Reset(fragTestInterval)
			}
		case <-timeout.C:
			now := time.Now()
			if d, limit := deadline(); !now.Before(d) {
				err = fmt.Errorf("no UDP heartbeat from %s (%s) for %v", f.remote, f.kind, limit)
				continue
			}
			armTimeout(now)
		case <-f.pathChanged:
			if interval != f.cadence.slow || f.probesBeat() {
				continue // the next heartbeat and timeout see the change
			}
			// Off the fast datapath: heartbeats every slow interval again.
			leftFast = time.Now()
			err = f.sendHeartbeat()
			beat.Reset(wallclock.Until(leftFast, f.slowBeat()))
			armTimeout(leftFast)
		case s := <-f.specials:
			switch {
			case s.length == heartbeatLen:
				if s.uid != f.connUID {
					continue // a heartbeat of an older connection to the same peer
				}
				old := f.addr.Load()
				if old == nil || *old != s.from {
					f.addr.Store(&s.from)
				}
				if !acked && interval != 0 {
					// Answer the first now rather than at the next tick
					// (up to fastHeartbeat away): the link is established
					// once each end has heard the other.
					err = f.sendHeartbeat()
				}
				lastBeat = time.Now()
				if !acked && err == nil {
					acked = true
					err = f.control(ctlConnectionEstablished, nil)
				}
			case s.length == fragTestLen:
				if s.allZero {
					err = f.control(ctlFragmentationReceived, nil)
				}
			default:
				var b [2]byte
				binary.BigEndian.PutUint16(b[:], uint16(s.length-ethHdrLen))
				err = f.control(ctlPMTUVerified, b[:])
			}
		case c := <-f.controls:
			switch c.tag {
			case ctlConnectionEstablished:
				if interval != f.cadence.slow {
					interval = f.cadence.slow
					close(f.established)
					// Find out whether the underlay passes fragments, for
					// status (Weave Net peers run the same test). A
					// datagram may be lost, so ask a few times.
					fragLeft = fragTestAttempts
					fragTest.Reset(0)
				}
			case ctlFragmentationReceived:
				f.stackFrag.Store(true)
				fragLeft = 0
				fragTest.Stop()
			case ctlPMTUVerified:
				// We never probe (we rely on fragmentation), so an answer
				// is stale or unsolicited.
			}
		}
	}
}

// probesBeat says whether the peer takes our probes as heartbeats now,
// and we its: it offers featureProbeAcks and the link is on the fast
// datapath, where probes go every steadyProbeInterval.
func (f *forwarder) probesBeat() bool {
	return f.fast != nil && f.fast.usable && f.fast.peerAcks && f.fast.state.Load().fast
}

// slowBeat is the interval of acknowledged heartbeats: longer while the
// peer's probes stand in for them.
func (f *forwarder) slowBeat() time.Duration {
	if f.probesBeat() {
		return fastLinkBeats * f.cadence.slow
	}
	return f.cadence.slow
}

// beatTimeout is how long a confirmed connection lasts without a
// heartbeat: sleeveSilence while the peer's probes stand in for them.
// (For a while after the link leaves the fast datapath the peer has the
// cadence's timeout from then: see deadline in run.)
func (f *forwarder) beatTimeout() time.Duration {
	if f.probesBeat() {
		return sleeveSilence
	}
	return f.cadence.timeout
}

func (f *forwarder) sendHeartbeat() error {
	return f.sendSpecial(heartbeatLen, func(eth []byte) {
		binary.BigEndian.PutUint64(eth[ethHdrLen:], f.connUID)
	})
}

// sendSpecial sends one control frame: an Ethernet payload of n bytes whose
// header is all zeros, filled in by fill.
func (f *forwarder) sendSpecial(n int, fill func(eth []byte)) error {
	addr := f.addr.Load()
	if addr == nil {
		return nil // inbound connection: we answer once the peer's heartbeat arrives
	}
	b := make([]byte, txHeadroom+n+crypto.MaxTailroom)
	if fill != nil {
		fill(b[txHeadroom:])
	}
	f.r.send(f.r.encode(f, b, txHeadroom, n, f.r.name, f.remoteName), *addr)
	return nil
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}
