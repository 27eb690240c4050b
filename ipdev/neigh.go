package ipdev

import (
	"net/netip"
	"time"
)

// The neighbour table maps overlay IPv4 addresses to MACs, as a kernel's ARP
// cache does, with fewer states:
//
//   - incomplete: a request is out; packets wait in the hold slots. The
//     request is repeated every retransmit interval, maxProbes times in all;
//     then the entry and its packets are dropped, and the next packet starts
//     over (so an address no one has costs one broadcast a second at most).
//   - resolved: usable for reachableTime after the last reply. In the second
//     half of that time, traffic to it sends a unicast request to the cached
//     MAC (once per retransmit interval), whose reply renews it; an entry
//     nobody renews expires, and the next packet resolves it again.
//
// Times are nanoseconds of the Device's coarse clock.

const (
	reachableTime = int64(30 * time.Second)
	retransmit    = int64(time.Second)
	maxProbes     = 3
	// maxNeighbors bounds the table; when it is full the stalest entry
	// makes room.
	maxNeighbors = 1024
	// Packets held while resolving: at most heldPerAddr per destination
	// (newer ones replace the oldest) and holdSlots in all.
	heldPerAddr = 3
	holdSlots   = 16
)

type neighbor struct {
	mac      mac
	resolved bool
	// at: when the MAC was last confirmed (resolved entries).
	at int64
	// probedAt: when the last request went out; probes: how many went out
	// for this resolution.
	probedAt int64
	probes   int
}

// verdict is what the send path does with a packet for some destination.
type verdict int

const (
	sendNow     verdict = iota // the MAC is known
	sendRefresh                // known; also send a unicast request to renew it
	holdProbe                  // unknown: hold the packet and send a broadcast request
	holdOnly                   // unknown, a request is already out: hold the packet
)

type neighbors struct {
	m map[netip.Addr]neighbor
	// dropped is called for an incomplete entry that makeRoom evicts, so
	// that its held packets go too.
	dropped func(netip.Addr)
}

func newNeighbors(dropped func(netip.Addr)) neighbors {
	return neighbors{m: make(map[netip.Addr]neighbor), dropped: dropped}
}

// resolve looks dst up for a packet about to be sent at now.
func (t *neighbors) resolve(dst netip.Addr, now int64) (mac, verdict) {
	n, ok := t.m[dst]
	if ok && n.resolved {
		age := now - n.at
		if age < reachableTime {
			if age >= reachableTime/2 && now-n.probedAt >= retransmit {
				n.probedAt = now
				t.m[dst] = n
				return n.mac, sendRefresh
			}
			return n.mac, sendNow
		}
		ok = false // expired, not yet swept
	}
	if !ok {
		t.makeRoom(dst)
		t.m[dst] = neighbor{probedAt: now, probes: 1}
		return mac{}, holdProbe
	}
	if now-n.probedAt >= retransmit && n.probes < maxProbes {
		n.probedAt = now
		n.probes++
		t.m[dst] = n
		return mac{}, holdProbe
	}
	return mac{}, holdOnly
}

// learn records that ip is at m, confirmed at now. With create false only an
// existing entry is updated (what an unsolicited ARP packet may do). It
// reports whether the entry was waiting for this answer.
func (t *neighbors) learn(ip netip.Addr, m mac, now int64, create bool) (wasIncomplete bool) {
	n, ok := t.m[ip]
	if !ok && !create {
		return false
	}
	if !ok {
		t.makeRoom(ip)
	}
	t.m[ip] = neighbor{mac: m, resolved: true, at: now, probedAt: now}
	return ok && !n.resolved
}

// makeRoom evicts the stalest entry other than keep if the table is full.
func (t *neighbors) makeRoom(keep netip.Addr) {
	if len(t.m) < maxNeighbors {
		return
	}
	var (
		victim netip.Addr
		oldest int64
	)
	for ip, n := range t.m {
		last := n.probedAt
		if n.resolved && n.at > last {
			last = n.at
		}
		if ip != keep && (!victim.IsValid() || last < oldest) {
			victim, oldest = ip, last
		}
	}
	if n := t.m[victim]; !n.resolved {
		t.dropped(victim)
	}
	delete(t.m, victim)
}

// sweep drops expired entries and failed resolutions, calling failed for
// each of the latter, and probe for each incomplete entry whose request is
// due again.
func (t *neighbors) sweep(now int64, probe, failed func(netip.Addr)) {
	for ip, n := range t.m {
		switch {
		case n.resolved:
			if now-n.at >= reachableTime {
				delete(t.m, ip)
			}
		case now-n.probedAt < retransmit:
		case n.probes >= maxProbes:
			delete(t.m, ip)
			failed(ip)
		default:
			n.probedAt = now
			n.probes++
			t.m[ip] = n
			probe(ip)
		}
	}
}
