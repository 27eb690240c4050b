package api

import "time"

// How long weaved and its clients wait, in one place so that a client
// never gives up on a request the daemon is still working on (it would
// then report a timeout instead of the daemon's own error, and a retry
// could race the first attempt).
const (
	// AllocWait bounds how long weaved waits for IPAM within one
	// request: consensus, or a donation from another peer.
	AllocWait = 30 * time.Second

	// RequestWait is the longest weaved works on one API request: an
	// attach's IPAM wait plus resolving the container (Docker) and
	// plugging it in. weaved gives up with an error by then.
	RequestWait = 60 * time.Second

	// ClientTimeout is how long a client waits for any answer: a little
	// beyond RequestWait, so that the daemon's error arrives first.
	ClientTimeout = RequestWait + 10*time.Second
)
