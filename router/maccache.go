package router

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/weaveworks/mesh"
)

// macMaxAge outlives typical ARP cache lifetimes, so a quiet but live
// container is relearned from its ARP traffic before its entry expires.
const macMaxAge = 10 * time.Minute

type mac [6]byte

func (m mac) isUnicast() bool { return m[0]&1 == 0 }

// macCache maps a learned MAC address to the peer whose bridge it lives
// behind. Lookups and refreshes of known entries take only the read lock.
type macCache struct {
	mu  sync.RWMutex
	m   map[mac]*macEntry
	now atomic.Int64 // unix seconds, ticked by expireLoop so frames need no clock read
}

type macEntry struct {
	peer mesh.PeerName
	seen atomic.Int64
}

func newMACCache() *macCache {
	c := &macCache{m: make(map[mac]*macEntry)}
	c.now.Store(time.Now().Unix())
	return c
}

// lookup returns the peer owning addr.
func (c *macCache) lookup(addr mac) (mesh.PeerName, bool) {
	c.mu.RLock()
	e := c.m[addr]
	c.mu.RUnlock()
	if e == nil {
		return 0, false
	}
	return e.peer, true
}

// learn records that addr lives behind peer. It reports whether the MAC moved
// from another peer, which is worth a log line.
func (c *macCache) learn(addr mac, peer mesh.PeerName) (moved bool, from mesh.PeerName) {
	now := c.now.Load()
	c.mu.RLock()
	e := c.m[addr]
	c.mu.RUnlock()
	if e != nil && e.peer == peer {
		if e.seen.Load() != now {
			e.seen.Store(now)
		}
		return false, 0
	}
	ne := &macEntry{peer: peer}
	ne.seen.Store(now)
	c.mu.Lock()
	old := c.m[addr]
	c.m[addr] = ne
	c.mu.Unlock()
	if old != nil && old.peer != peer {
		return true, old.peer
	}
	return false, 0
}

// forgetPeer drops every MAC learned behind peer, e.g. when it leaves.
func (c *macCache) forgetPeer(peer mesh.PeerName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if e.peer == peer {
			delete(c.m, k)
		}
	}
}

func (c *macCache) expire(now int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if now-e.seen.Load() > int64(macMaxAge/time.Second) {
			delete(c.m, k)
		}
	}
}

func (c *macCache) expireLoop(done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-done:
			return
		case now := <-t.C:
			c.now.Store(now.Unix())
			if i%60 == 0 {
				c.expire(now.Unix())
			}
		}
	}
}
