//go:build race

package tun

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// pooled buffers are allocated anew and allocation counts mean nothing.
const raceEnabled = true
