package router

import (
	"time"

	"weavenet/api"
)

// Heartbeats and failure detection differ by the kind of peer at the other
// end of a connection, which the mesh handshake tells: every weavenet peer
// sends featureWeavenet (also under WeaveCompat, which only restricts the
// data format and cipher), Weave Net sends nothing of ours.
//
// Weave Net sends heartbeats every 0.5 s until one is acknowledged, then
// every 10 s, and gives a connection up after 60 s without one. Failing a
// connection to it sooner would tear down a healthy link between two of its
// heartbeats, so toward it we keep its cadence and its limit. Between
// weavenet peers heartbeats stay frequent so that a dead path is noticed
// in seconds.

// featureWeavenet carries the sender's weavenet release.
const featureWeavenet = "Weavenet"

// Peer kinds, as status shows them.
const (
	KindWeavenet = "weavenet"
	KindWeave    = "weave" // Weave Net, which does not say its release
)

// cadence is how often heartbeats go out on a connection and how long
// without one fails it.
type cadence struct {
	fast    time.Duration // until the peer acknowledges our first heartbeat
	slow    time.Duration // after that
	timeout time.Duration // no heartbeat for this long fails the connection
}

// The cadences, as constants (they are never changed).
const (
	fastHeartbeat = 500 * time.Millisecond // both kinds, until acknowledged

	weavenetSlowHeartbeat = time.Second
	weavenetTimeout       = 5 * time.Second

	weaveSlowHeartbeat = 10 * time.Second
	weaveTimeout       = 60 * time.Second
)

// Periodic datagrams (acknowledged heartbeats, fast datapath probes) go
// out on the wall clock's multiples of their period (package wallclock):
// every peer, its clock kept by NTP, then sends at the same moments, so a
// daemon wakes once a period for the whole burst instead of once per peer.
// With 50 peers, timers firing at 49 moments of each second were most of
// an idle daemon's wake-ups.

func weavenetCadence() cadence {
	return cadence{fast: fastHeartbeat, slow: weavenetSlowHeartbeat, timeout: weavenetTimeout}
}

func weaveCadence() cadence {
	return cadence{fast: fastHeartbeat, slow: weaveSlowHeartbeat, timeout: weaveTimeout}
}

// peerKind reads the kind and release of the remote peer from its
// handshake features, and the cadence to use toward it. A peer that sends
// another of weavenet's features but no release is a weavenet peer from
// before the release was sent: it fails connections after
// weavenetTimeout, so it must get weavenet's cadence.
func peerKind(features map[string]string) (kind, release string, c cadence) {
	if v, ok := features[featureWeavenet]; ok {
		return KindWeavenet, boundRelease(v), weavenetCadence()
	}
	if _, ok := features[featurePartialCsum]; ok {
		return KindWeavenet, "", weavenetCadence()
	}
	if _, ok := features[featureCipher]; ok {
		return KindWeavenet, "", weavenetCadence()
	}
	return KindWeave, "", weaveCadence()
}

// maxReleaseLen bounds a release string from the network before it reaches
// status output.
const maxReleaseLen = 32

// boundRelease keeps a printable, bounded release string.
func boundRelease(v string) string {
	out := make([]byte, 0, min(len(v), maxReleaseLen))
	for i := 0; i < len(v) && len(out) < maxReleaseLen; i++ {
		if c := v[i]; c > ' ' && c < 0x7f {
			out = append(out, c)
		}
	}
	return string(out)
}

// ourRelease is what we send in featureWeavenet.
const ourRelease = api.Version
