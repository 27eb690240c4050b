package ipam

import (
	"path/filepath"
	"testing"
)

// A promise that could not be persisted never leaves: a restart would
// forget it, and a lower ballot promised after it could decide a second
// value. With the store working, the same step reaches the other peer.
func TestPaxosPromiseNotSentUnpersisted(t *testing.T) {
	for _, broken := range []bool{false, true} {
		n := newTestNet(t)
		st, err := OpenStore(filepath.Join(t.TempDir(), "ipam.db"))
		if err != nil {
			t.Fatal(err)
		}
		opts := Config{Range: mustPrefix("10.32.0.0/12"), Init: consensusN(2)}
		withStore := opts
		withStore.Store = st
		p1, p2 := n.add(1, withStore), n.add(2, opts)
		if broken {
			if err := st.db.Close(); err != nil {
				t.Fatal(err)
			}
		}
		p1.a.mu.Lock()
		p1.a.needRing()
		p1.a.unlock()
		n.Flush()

		p2.a.mu.Lock()
		seen := p2.a.paxos.state[p1.name].Promised
		p2.a.mu.Unlock()
		p1.a.mu.Lock()
		own := p1.a.paxos.state[p1.name].Promised
		p1.a.mu.Unlock()
		switch {
		case broken && !seen.zero():
			t.Errorf("store failing: p2 saw p1's promise %+v", seen)
		case broken && !own.zero():
			t.Errorf("store failing: p1 kept its unpersisted promise %+v, which gossip would carry", own)
		case !broken && seen.zero():
			t.Errorf("store working: p2 never saw p1's promise")
		}
		if broken {
			_ = n.takeErrors() // the closed store's complaints
		}
	}
}
