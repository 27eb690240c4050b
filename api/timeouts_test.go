package api

import "testing"

// The CLI must outwait the daemon, which must outwait IPAM, or a slow
// attach is reported as the client's timeout while it still goes on.
func TestWaitsNest(t *testing.T) {
	if !(AllocWait < RequestWait && RequestWait < ClientTimeout) {
		t.Fatalf("AllocWait %v, RequestWait %v, ClientTimeout %v: want increasing", AllocWait, RequestWait, ClientTimeout)
	}
	if c := NewClient(DefaultAddr); c.HTTP.Timeout != ClientTimeout {
		t.Errorf("client timeout %v, want %v", c.HTTP.Timeout, ClientTimeout)
	}
}
