package testbed

import (
	"testing"
	"time"
)

// PollInterval is the pause between two evaluations in Poll and WaitFor.
const PollInterval = 100 * time.Millisecond

// Poll evaluates cond until it returns true or timeout passes, and reports
// whether it did. cond is always evaluated at least once.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(PollInterval)
	}
}

// WaitFor polls cond until it returns true and fails the test with msg if it
// has not within timeout.
func WaitFor(t testing.TB, timeout time.Duration, cond func() bool, msg string) {
	t.Helper()
	start := time.Now()
	if !Poll(timeout, cond) {
		t.Fatalf("timed out after %v waiting for: %s", timeout, msg)
	}
	t.Logf("ok after %v: %s", time.Since(start).Round(time.Millisecond), msg)
}

// Consistently evaluates cond for the whole of period and fails the test with
// msg the first time it returns false.
func Consistently(t testing.TB, period time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(period)
	for {
		if !cond() {
			t.Fatalf("no longer true: %s", msg)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(PollInterval)
	}
}
