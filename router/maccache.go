package router

import (
	"sync"
	"sync/atomic"
	"time"

	"weavenet/internal/wallclock"
	"weavenet/mesh"
)

// macMaxAge outlives typical ARP cache lifetimes, so a quiet but live
// container is relearned from its ARP traffic before its entry expires.
const macMaxAge = 10 * time.Minute

// macLimit bounds the MAC table. Any container, and any peer, can make up
// source MACs at line rate; past the limit each new MAC evicts an old one.
// A MAC missing from the table costs only flooding, never a lost frame. It
// is far above what real networks learn in macMaxAge.
const macLimit = 16384

// macEvictSample is how many entries a full table looks at to evict the
// least recently seen among them: an approximation of oldest-first that
// costs a constant per eviction rather than a pass over the table.
const macEvictSample = 8

type mac [6]byte

func (m mac) isUnicast() bool { return m[0]&1 == 0 }

// macCache maps a learned MAC address to the peer whose bridge it lives
// behind. Lookups and refreshes of known entries take only the read lock.
type macCache struct {
	mu    sync.RWMutex
	m     map[mac]*macEntry
	limit int          // entries at most
	now   atomic.Int64 // unix seconds, ticked by expireLoop so frames need no clock read
}

type macEntry struct {
	peer mesh.PeerName
	seen atomic.Int64
}

func newMACCache() *macCache {
	c := &macCache{m: make(map[mac]*macEntry), limit: macLimit}
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
// from another peer, which is worth a log line, and whether the table was
// full, so that another MAC was evicted to make room.
func (c *macCache) learn(addr mac, peer mesh.PeerName) (moved bool, from mesh.PeerName, evicted bool) {
	now := c.now.Load()
	c.mu.RLock()
	e := c.m[addr]
	c.mu.RUnlock()
	if e != nil && e.peer == peer {
		if e.seen.Load() != now {
			e.seen.Store(now)
		}
		return false, 0, false
	}
	ne := &macEntry{peer: peer}
	ne.seen.Store(now)
	c.mu.Lock()
	old := c.m[addr]
	if old == nil && len(c.m) >= c.limit {
		c.evictLocked()
		evicted = true
	}
	c.m[addr] = ne
	c.mu.Unlock()
	if old != nil && old.peer != peer {
		return true, old.peer, evicted
	}
	return false, 0, evicted
}

// evictLocked deletes the least recently seen of a few entries; map
// iteration starts at a random place, so these are a random sample.
func (c *macCache) evictLocked() {
	var (
		victim mac
		oldest int64
		n      int
	)
	for k, e := range c.m {
		if seen := e.seen.Load(); n == 0 || seen < oldest {
			victim, oldest = k, seen
		}
		if n++; n == macEvictSample {
			break
		}
	}
	delete(c.m, victim)
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
	t := wallclock.NewTicker(time.Second)
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
