// Package leakcheck finds goroutines that outlive a test: take a Snapshot
// before making things, close them, then Check.
package leakcheck

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Goroutines are the stacks of a moment's goroutines, by id.
type Goroutines map[string]string

// Snapshot returns the goroutines running now.
func Snapshot() Goroutines {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := Goroutines{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		id, _, _ := strings.Cut(strings.TrimPrefix(g, "goroutine "), " ")
		out[id] = g
	}
	return out
}

// Check fails t if goroutines started since before are still running after
// up to wait, other than at most allowed of each kind named in allow (a
// function name their stack contains). Goroutines that end on their own a
// moment after a Close are given that moment.
func (before Goroutines) Check(t testing.TB, wait time.Duration, allow map[string]int) {
	t.Helper()
	var leaked []string
	for deadline := time.Now().Add(wait); ; time.Sleep(50 * time.Millisecond) {
		leaked = leaked[:0]
		seen := map[string]int{}
	next:
		for id, g := range Snapshot() {
			if _, ok := before[id]; ok {
				continue
			}
			for fn := range allow {
				if strings.Contains(g, fn) {
					seen[fn]++
					continue next
				}
			}
			leaked = append(leaked, g)
		}
		for fn, n := range seen {
			if n > allow[fn] {
				leaked = append(leaked, fmt.Sprintf("%d goroutines in %s, want at most %d", n, fn, allow[fn]))
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(leaked) > 0 {
		t.Fatalf("%d goroutines outlive Close:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	}
}
