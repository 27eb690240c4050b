package mesh

import (
	"testing"
	"time"
)

// An inbox holds at most inboxJobs calls and inboxBytes of frames (one
// larger frame only alone); past that, put waits for the goroutine to
// take one, or gives up when its connection stops.
func TestInboxBounds(t *testing.T) {
	never := make(chan struct{})
	in := newInbox()
	nop := func() {}
	for range inboxJobs {
		if !in.put(nop, 1, nil, never) {
			t.Fatal("put refused below the bound")
		}
	}
	stop := make(chan struct{})
	done := make(chan bool)
	go func() { done <- in.put(nop, 1, stop, never) }()
	select {
	case <-done:
		t.Fatal("put past inboxJobs did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	close(stop)
	if <-done {
		t.Fatal("put whose connection stopped was queued")
	}

	in = newInbox()
	if !in.put(nop, 10*inboxBytes, nil, never) {
		t.Fatal("a frame over inboxBytes refused by an empty inbox")
	}
	go func() { done <- in.put(nop, 1, nil, never) }()
	select {
	case <-done:
		t.Fatal("put past inboxBytes did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	closing := make(chan struct{})
	ran := make(chan struct{}, 2)
	in.jobs[0].f = func() { ran <- struct{}{} }
	go in.serve(closing)
	if !<-done {
		t.Fatal("put not queued once the big frame was taken")
	}
	<-ran
	close(closing)
}
