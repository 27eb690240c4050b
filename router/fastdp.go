package router

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"weavenet/internal/wallclock"
	"weavenet/mesh"
)

// The fast datapath: per connection, known unicast to a directly connected
// peer may go through a kernel VXLAN device instead of the sleeve. The
// router stays the one place that decides (package fastdp's doc has the
// whole design):
//
//  1. Both ends offer it in the mesh handshake (featureFastDP: the VXLAN
//     port and VNI, which must match), and the link needs no encryption.
//  2. Every probeInterval the fast manager takes the probes that arrived
//     since its last round, then sends each peer a small and a full-sized
//     probe through VXLAN, all in one batch; the peer acknowledges them in
//     its own probes (or, if older, over the mesh connection). A link is
//     on the fast datapath while its full-sized probes are acknowledged
//     and the peer's arrive here, both within fastTimeout (choosePath);
//     otherwise on the sleeve, with the reason.
//  3. After each round the manager syncs the kernel's forwarding entries:
//     every MAC learned behind a peer on the fast datapath gets one, and
//     entries of peers that left it are removed (fdbChanges), which sends
//     their frames back through the TAP and the sleeve.
//
// Frames never pass through this file: the kernel forwards offloaded
// unicast, the sleeve everything else.

// FastDatapath is the kernel side of the fast datapath (package fastdp's
// Device). Its methods are called from the router's fast manager
// goroutine, and the counters' from status too.
type FastDatapath interface {
	// Port is VXLAN's UDP port, VNI its network identifier; both must be
	// the same on every peer.
	Port() int
	VNI() uint32
	// Install sends frames for m to the VXLAN port of peer; Remove undoes it.
	Install(m [6]byte, peer netip.Addr) error
	Remove(m [6]byte, peer netip.Addr) error
	// SendProbes sends eth[i], an Ethernet frame, VXLAN-encapsulated to
	// the VXLAN port of to[i], for every i, in one go. ReadProbes calls fn
	// with each probe frame that arrived through the device since the last
	// call, without waiting. Neither keeps the frames.
	SendProbes(to []netip.Addr, eth [][]byte) error
	ReadProbes(fn func(eth []byte)) (int, error)
	// ByteCounters are the VXLAN device's received and sent bytes.
	ByteCounters() (rx, tx uint64, err error)
	// Idle says, for each installed MAC, how long since the kernel last
	// sent a frame to it.
	Idle() (map[[6]byte]time.Duration, error)
	// AllowPeers makes peers the only underlay addresses whose datagrams
	// the VXLAN port accepts; AllowList describes that list: its nftables
	// table, the peers listed and the datagrams dropped, or why there is
	// none (off).
	AllowPeers(peers []netip.Addr) error
	AllowList() (table string, peers int, dropped uint64, off string)
	Close() error
}

// featureFastDP offers the fast datapath: "vxlan <port> <vni>".
const featureFastDP = "WeavenetFastDP"

// featureProbeAcks ("1") says the sender acknowledges probes inside its
// own probes rather than over the mesh connection, and takes our probes as
// signs of life (forwarder.run). With 49 peers, the control message per
// probe (a TCP write on one end, a read on the other, and both kernels'
// TCP work) was a third of an idle daemon's CPU.
const featureProbeAcks = "WeavenetProbeAcks"

// ctlFastProbeAck acknowledges a probe, inside Weave Net's overlay control
// message (only peers that offered featureFastDP get one).
const ctlFastProbeAck = 0x46

// A link not (or no longer) on the fast datapath is probed with both size
// classes every probeInterval, so that it gets there soon and the reason
// when it does not is precise. A link on it is probed only with full-sized
// probes every steadyProbeInterval: at 50 peers the probes were most of
// an idle daemon's CPU, a second apart a quarter of it even batched, most
// of that the kernel carrying them. Every 2 s, as Tailscale's path
// heartbeats go every 3 s and trust a path for 6.5 s.
//
// An acknowledgement inside a probe says which of ours arrived last, and
// what counts is when that one was sent: a peer whose probes still arrive
// but whose view of ours has stopped keeps repeating an old number. Both
// ends probe on the wall clock's multiples of the interval and, once all
// their links are on the fast datapath, read what arrived only at the next
// round, so the number a probe carries is of our previous round, read two
// intervals after it went; a loaded machine adds to that. fastTimeout
// leaves room for that and one lost probe. A round that comes late on a
// starved daemon makes every acknowledgement look old (at 50 peers on two
// cores, a hundred links in a run fell back while the mesh formed): an
// acknowledgement of one of our last maxAckGap probes counts too, however
// long ago that went.
const (
	probeInterval       = 500 * time.Millisecond
	steadyProbeInterval = 2 * time.Second
	fastTimeout         = 8 * time.Second
	maxAckGap           = 4
)

// Datapath names, as status shows them.
const (
	DatapathFast   = "fastdp"
	DatapathSleeve = "sleeve"
)

// fastConfig is the part of Config the fast datapath takes.
type fastConfig struct {
	dev FastDatapath
	// off says why there is no dev (e.g. "--datapath sleeve").
	off string
	// encrypted says why encrypted links stay on the sleeve.
	encrypted string
}

func (r *Router) fastFeature() string {
	if r.fast.dev == nil {
		return ""
	}
	return fmt.Sprintf("vxlan %d %d", r.fast.dev.Port(), r.fast.dev.VNI())
}

// parseFastFeature reads a peer's featureFastDP value; it comes from the
// network, so anything odd is just "no fast datapath".
func parseFastFeature(v string) (port int, vni uint32, ok bool) {
	if len(v) > 32 {
		return 0, 0, false
	}
	f := strings.Fields(v)
	if len(f) != 3 || f[0] != "vxlan" {
		return 0, 0, false
	}
	p, err1 := strconv.ParseUint(f[1], 10, 16)
	n, err2 := strconv.ParseUint(f[2], 10, 24)
	if err1 != nil || err2 != nil || p == 0 {
		return 0, 0, false
	}
	return int(p), uint32(n), true
}

// A fastLink is a forwarder's fast datapath state.
type fastLink struct {
	// usable: both ends can and the link needs no encryption; if not,
	// why says why, for good.
	usable bool
	why    string
	start  time.Time
	seq    atomic.Uint32
	// peerAcks: the peer offers featureProbeAcks.
	peerAcks bool
	// sentAt holds the Unix nanoseconds each of our last rounds of probes
	// went out, by seq; peerSeq the highest seq of the peer's probes
	// seen, per size class, which our probes acknowledge.
	sentAt  [16]atomic.Int64
	peerSeq [numProbeClasses]atomic.Uint32
	// Unix nanoseconds at which the last of our probes to be acknowledged
	// went out, and at which the last of the peer's probes arrived, per
	// size class.
	acked [numProbeClasses]atomic.Int64
	seen  [numProbeClasses]atomic.Int64
	// ackedSeq is the number of that last acknowledged probe of ours.
	ackedSeq [numProbeClasses]atomic.Uint32
	state    atomic.Pointer[pathState]
}

type pathState struct {
	fast bool
	why  string
}

// newFastLink decides, from the handshake, whether f's link may use the
// fast datapath at all.
func (r *Router) newFastLink(f *forwarder, features map[string]string) *fastLink {
	l := &fastLink{start: time.Now()}
	peerPort, peerVNI, peerOffers := parseFastFeature(features[featureFastDP])
	switch {
	case r.fast.dev == nil:
		l.why = r.fast.off
	case f.kind != KindWeavenet:
		l.why = "the peer is Weave Net, which has no VXLAN datapath we can share"
	case !peerOffers:
		l.why = "the peer does not offer the fast datapath (--datapath sleeve, or an older release)"
	case peerPort != r.fast.dev.Port() || peerVNI != r.fast.dev.VNI():
		l.why = fmt.Sprintf("the peer's VXLAN port/VNI %d/%d differ from ours %d/%d", peerPort, peerVNI, r.fast.dev.Port(), r.fast.dev.VNI())
	case f.sealer != nil:
		l.why = "encrypted link: " + r.fast.encrypted
	default:
		l.usable = true
		l.why = "probing VXLAN port " + strconv.Itoa(r.fast.dev.Port())
		l.peerAcks = features[featureProbeAcks] == "1"
	}
	l.state.Store(&pathState{why: l.why})
	return l
}

// onProbeAck handles the peer's acknowledgement of one of our probes.
func (f *forwarder) onProbeAck(msg []byte) {
	class, _, err := decodeProbeAck(msg)
	if err != nil || f.fast == nil || !f.fast.usable {
		return
	}
	f.fast.acked[class].Store(time.Now().UnixNano())
}

// onProbe records one of the peer's probes that arrived at now, and the
// acknowledgements it carries if the peer sends them that way; otherwise
// it acknowledges the probe over the mesh connection.
func (f *forwarder) onProbe(p probe, now time.Time) {
	l := f.fast
	l.seen[p.class].Store(now.UnixNano())
	if p.seq > l.peerSeq[p.class].Load() {
		l.peerSeq[p.class].Store(p.seq) // only the fast loop stores it
	}
	if !l.peerAcks {
		_ = f.sendControl(mesh.ProtocolOverlayControlMsg, append([]byte{0, ctlFastProbeAck}, putProbeAck(p.class, p.seq)...))
		return
	}
	last := l.seq.Load()
	for c, seq := range p.acks {
		if seq == 0 || seq > last || last-seq >= uint32(len(l.sentAt)) {
			continue // none, not ours, or too old to know when it went
		}
		if sent := l.sentAt[seq%uint32(len(l.sentAt))].Load(); sent > l.acked[c].Load() {
			l.acked[c].Store(sent) // only the fast loop stores them
			l.ackedSeq[c].Store(seq)
		}
	}
}

// datapath is the path f's frames take now, and why.
func (f *forwarder) datapath() (name, why string) {
	if f.fast == nil {
		return DatapathSleeve, ""
	}
	s := f.fast.state.Load()
	if s.fast {
		return DatapathFast, ""
	}
	return DatapathSleeve, s.why
}

// probeTimes is what choosePath decides from.
type probeTimes struct {
	now, start  time.Time
	acked, seen [numProbeClasses]time.Time
	// ackGap: how many probes we have sent since the last acknowledged
	// one (0: none acknowledged, or the peer acknowledges over the mesh
	// connection).
	ackGap [numProbeClasses]uint32
	// acksInProbes: the peer acknowledges inside its probes, so when
	// none of them arrives we cannot know whether ours do.
	acksInProbes bool
}

// choosePath decides whether a usable link is on the fast datapath: while
// both ends' full-sized probes get through within fastTimeout. The reason
// names the first thing that fails. A full-sized probe that got through
// says the port is open as well as a small one would (links on the fast
// datapath send only those).
func choosePath(t probeTimes, port int) (fast bool, why string) {
	recent := func(at time.Time) bool { return !at.IsZero() && t.now.Sub(at) < fastTimeout }
	answered := func(c int) bool { return recent(t.acked[c]) || t.ackGap[c] > 0 && t.ackGap[c] <= maxAckGap }
	if answered(probeFull) && recent(t.seen[probeFull]) {
		return true, ""
	}
	switch {
	case t.now.Sub(t.start) < fastTimeout && (t.acked[probeFull].IsZero() || t.seen[probeFull].IsZero()):
		return false, fmt.Sprintf("probing VXLAN port %d", port)
	case t.acksInProbes && !recent(t.seen[probeSmall]) && !recent(t.seen[probeFull]):
		return false, fmt.Sprintf("the peer's VXLAN probes do not arrive here (UDP port %d blocked on this host?)", port)
	case !answered(probeSmall) && !answered(probeFull):
		return false, fmt.Sprintf("no answer to VXLAN probes on UDP port %d for %v (blocked on the way to the peer?)", port, fastTimeout)
	case !answered(probeFull):
		return false, "full-sized VXLAN frames do not reach the peer (underlay MTU too small for the overlay MTU + 50?)"
	case !recent(t.seen[probeSmall]) && !recent(t.seen[probeFull]):
		return false, fmt.Sprintf("the peer's VXLAN probes do not arrive here (UDP port %d blocked on this host?)", port)
	default:
		return false, "the peer's full-sized VXLAN frames do not arrive here (underlay MTU too small?)"
	}
}

func timeOf(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// fdbEntry is an installed forwarding entry: the MAC's peer and its address.
type fdbEntry struct {
	peer mesh.PeerName
	addr netip.Addr
}

// fdbChanges compares the entries installed with what should be: every MAC
// learned behind a peer on the fast datapath (fastPeers, with their
// underlay addresses). An installed entry whose MAC the router has since
// forgotten stays while its peer stays on the fast datapath, since frames to
// it no longer pass through the router to refresh it, unless the kernel has
// not used it for macMaxAge either (stale): its container is likely gone. It
// returns the entries to add (or move) and the MACs to remove.
func fdbChanges(learned map[mac]mesh.PeerName, installed map[mac]fdbEntry, fastPeers map[mesh.PeerName]netip.Addr, stale map[mac]bool) (add map[mac]fdbEntry, del []mac) {
	add = map[mac]fdbEntry{}
	for m, p := range learned {
		addr, ok := fastPeers[p]
		if !ok {
			continue
		}
		if e := (fdbEntry{p, addr}); installed[m] != e {
			add[m] = e
		}
	}
	for m, e := range installed {
		if _, moving := add[m]; moving {
			continue
		}
		p, known := learned[m]
		if known && p != e.peer || fastPeers[e.peer] != e.addr || !known && stale[m] {
			del = append(del, m)
		}
	}
	return add, del
}

// learnedSnapshot copies the MAC → peer table.
func (c *macCache) learnedSnapshot(out map[mac]mesh.PeerName) {
	clear(out)
	c.mu.RLock()
	defer c.mu.RUnlock()
	for m, e := range c.m {
		out[m] = e.peer
	}
}

// fastLoop probes every usable link, decides each link's path and keeps
// the kernel's entries in line, until the router closes.
func (r *Router) fastLoop() {
	// Rounds on the wall clock's half seconds, or only on multiples of
	// steadyProbeInterval once every link is on the fast datapath (see
	// cadence.go).
	tick := time.NewTimer(wallclock.Until(time.Now(), probeInterval))
	defer tick.Stop()
	installed := map[mac]fdbEntry{}
	learned := map[mac]mesh.PeerName{}
	stale := map[mac]bool{}
	lastStale := time.Now()
	settled := false // every link on the fast datapath at the last round
	var allowed []netip.Addr
	var out probeBatch
	for {
		select {
		case <-r.closing:
			return
		case <-tick.C:
		}
		now := time.Now()
		// What the peers sent since the last round, before deciding.
		r.readProbes(now)
		out.reset()
		// Links on the fast datapath are probed only on multiples of
		// steadyProbeInterval (the only rounds there are once settled,
		// however late they come).
		steadyRound := settled || now.Round(probeInterval).UnixNano()%int64(steadyProbeInterval) == 0
		settled = true
		clear(stale)
		if now.Sub(lastStale) >= staleCheckEvery {
			lastStale = now
			r.staleEntries(stale)
		}
		fastPeers := map[mesh.PeerName]netip.Addr{}
		allowed = allowed[:0]
		for _, f := range *r.fwds.Load() {
			if f.fast == nil || !f.fast.usable {
				continue
			}
			if addr := f.addr.Load(); addr != nil && addr.Addr().Unmap().Is4() {
				allowed = append(allowed, addr.Addr().Unmap())
			}
		}
		// Every peer the link may use VXLAN with is listed, before its
		// probes (which come through the port) can pass; a connection that
		// goes takes its peer off by the next round.
		if err := r.fast.dev.AllowPeers(allowed); err != nil {
			r.log.Warn("fastdp: allow-list", "err", err)
		}
		for name, f := range *r.fwds.Load() {
			if f.fast == nil || !f.fast.usable {
				continue
			}
			addr := f.addr.Load()
			if addr == nil {
				continue
			}
			peer := addr.Addr().Unmap()
			if !peer.Is4() {
				f.fast.state.Store(&pathState{why: "the peer's address is IPv6; the fast datapath is IPv4 only"})
				continue
			}
			if onFast := f.fast.state.Load().fast; !onFast || steadyRound {
				r.addProbes(&out, f, peer, onFast)
			}
			t := probeTimes{now: now, start: f.fast.start, acksInProbes: f.fast.peerAcks}
			for c := range numProbeClasses {
				t.acked[c] = timeOf(f.fast.acked[c].Load())
				t.seen[c] = timeOf(f.fast.seen[c].Load())
				if a := f.fast.ackedSeq[c].Load(); a != 0 {
					t.ackGap[c] = f.fast.seq.Load() - a
				}
			}
			fast, why := choosePath(t, r.fast.dev.Port())
			if old := f.fast.state.Load(); old.fast != fast || (!fast && old.why != why) {
				f.fast.state.Store(&pathState{fast: fast, why: why})
				if old.fast != fast {
					f.notePathChange()
					if fast {
						r.log.Info("fastdp: link uses the kernel VXLAN path", "peer", name.String())
					} else {
						r.log.Warn("fastdp: link falls back to the sleeve", "peer", name.String(), "why", why)
					}
				}
			}
			if fast {
				fastPeers[name] = peer
			} else {
				settled = false
			}
		}
		if err := r.fast.dev.SendProbes(out.to, out.eth); err != nil {
			// Expected where the path is too small for full-sized probes.
			r.log.Debug("fastdp: probes", "err", err)
		}
		r.macs.learnedSnapshot(learned)
		add, del := fdbChanges(learned, installed, fastPeers, stale)
		for _, m := range del {
			if err := r.fast.dev.Remove(m, installed[m].addr); err != nil {
				r.log.Warn("fastdp: remove entry", "err", err)
				continue
			}
			delete(installed, m)
		}
		for m, e := range add {
			if err := r.fast.dev.Install(m, e.addr); err != nil {
				r.log.Warn("fastdp: install entry", "err", err)
				continue
			}
			installed[m] = e
		}
		r.fast.entries.Store(int64(len(installed)))
		next := probeInterval
		if settled {
			next = steadyProbeInterval
		}
		tick.Reset(wallclock.Until(time.Now(), next))
	}
}

// staleCheckEvery: how often to ask the kernel which entries it has not
// used for macMaxAge.
const staleCheckEvery = 30 * time.Second

// staleEntries adds to stale the MACs whose kernel entries have not carried
// a frame for macMaxAge.
func (r *Router) staleEntries(stale map[mac]bool) {
	idle, err := r.fast.dev.Idle()
	if err != nil {
		r.log.Warn("fastdp: read entries' idle times", "err", err)
		return
	}
	for m, d := range idle {
		if d > macMaxAge {
			stale[m] = true
		}
	}
}

// probeBatch is a round's probes, sent together; its buffers are kept
// from round to round.
type probeBatch struct {
	to   []netip.Addr
	eth  [][]byte
	bufs [][]byte
}

func (b *probeBatch) reset() { b.to, b.eth = b.to[:0], b.eth[:0] }

// add returns a buffer of n bytes for the next probe to to.
func (b *probeBatch) add(to netip.Addr, n int) []byte {
	i := len(b.eth)
	if i == len(b.bufs) {
		b.bufs = append(b.bufs, nil)
	}
	if cap(b.bufs[i]) < n {
		b.bufs[i] = make([]byte, n)
	}
	b.to = append(b.to, to)
	b.eth = append(b.eth, b.bufs[i][:n])
	return b.bufs[i][:n]
}

// addProbes adds to out one probe of each size class for f's peer, or only
// a full-sized one.
func (r *Router) addProbes(out *probeBatch, f *forwarder, to netip.Addr, fullOnly bool) {
	l := f.fast
	seq := l.seq.Load() + 1
	l.sentAt[seq%uint32(len(l.sentAt))].Store(time.Now().UnixNano())
	l.seq.Store(seq)
	p := probe{from: r.name, to: f.remoteName, connUID: f.connUID, seq: seq}
	if l.peerAcks {
		for c := range p.acks {
			p.acks[c] = l.peerSeq[c].Load()
		}
	}
	for c, n := range [numProbeClasses]int{probeSmallLen, ethHdrLen + r.mtu} {
		if fullOnly && c != probeFull {
			continue
		}
		p.class = byte(c)
		// A probe too big for the underlay fails when sent (EMSGSIZE) or on
		// the way: either way it goes unacknowledged.
		n = max(n, probeMinLen)
		putProbe(out.add(to, n), n, p)
	}
}

// readProbes takes the probes that arrived since the last round and
// records those of our connections (acknowledging them, for peers that
// want it over the mesh connection).
func (r *Router) readProbes(now time.Time) {
	_, err := r.fast.dev.ReadProbes(func(eth []byte) {
		p, err := decodeProbe(eth)
		if err != nil || p.to != r.name {
			r.stats.drop(DropMalformed)
			return
		}
		f := r.forwarder(p.from)
		if f == nil || f.connUID != p.connUID || f.fast == nil || !f.fast.usable {
			return // an older connection's, or one that does not use it
		}
		f.onProbe(p, now)
	})
	if err != nil && !r.isClosing() {
		r.log.Warn("fastdp: read probes", "err", err)
	}
}

// fastState is the router's fast datapath: its configuration and the
// number of entries installed (for status).
type fastState struct {
	fastConfig
	entries atomic.Int64
}

func (r *Router) closeFast() error {
	if r.fast.dev == nil {
		return nil
	}
	return r.fast.dev.Close()
}

// FastDatapathStatus is the fast datapath's part of status.
type FastDatapathStatus struct {
	Enabled   bool
	Why       string // why not, when not enabled
	Port      int
	VNI       uint32
	Entries   int64  // MACs whose frames the kernel forwards
	Encrypted string // why encrypted links stay on the sleeve
	// RxBytes and TxBytes are the VXLAN device's counters.
	RxBytes, TxBytes uint64
	// AllowList is the nftables table (family inet) that drops datagrams
	// to the port from anyone but AllowedPeers addresses, Dropped counts
	// them; AllowListOff says why there is none.
	AllowList    string
	AllowListOff string
	AllowedPeers int
	Dropped      uint64
}

// FastDatapathStatus reports the fast datapath.
func (r *Router) FastDatapathStatus() FastDatapathStatus {
	if r.fast.dev == nil {
		return FastDatapathStatus{Why: r.fast.off, Encrypted: r.fast.encrypted}
	}
	s := FastDatapathStatus{Enabled: true, Port: r.fast.dev.Port(), VNI: r.fast.dev.VNI(), Entries: r.fast.entries.Load(), Encrypted: r.fast.encrypted}
	s.RxBytes, s.TxBytes, _ = r.fast.dev.ByteCounters()
	s.AllowList, s.AllowedPeers, s.Dropped, s.AllowListOff = r.fast.dev.AllowList()
	return s
}
