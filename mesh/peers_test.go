package mesh

import (
	"slices"
	"sync"
	"testing"
)

// Discovery offers, for each peer we have no connection to, the address
// each of our peers reports it at: an outbound link's as reported, an
// inbound one's host at the mesh port. Links to us and to peers we are
// connected to are no targets.
func TestDiscoveryTargets(t *testing.T) {
	const us, nb, far, inbound = 1, 2, 3, 4
	ps := newPeers(&Peer{Name: us})
	ps.mu.Lock()
	ps.byName[us].links = map[PeerName]link{nb: {addr: "10.0.0.2:6783", outbound: true, established: true}}
	ps.byName[nb] = &peerState{p: &Peer{Name: nb, Version: 1}, links: map[PeerName]link{
		us:      {addr: "10.0.0.1:40000", established: true},
		far:     {addr: "10.0.0.3:7000", outbound: true, established: true},
		inbound: {addr: "10.0.0.4:41000", established: true},
	}}
	ps.byName[far] = &peerState{p: &Peer{Name: far, Version: 1}, links: map[PeerName]link{
		nb: {addr: "10.0.0.2:41001", established: true},
		us: {addr: "10.0.0.1:6783", outbound: true},
	}}
	ps.mu.Unlock()

	got, degree := ps.discoveryTargets(us, map[PeerName]bool{nb: true}, 6783)
	slices.SortFunc(got, func(a, b discovered) int { return int(a.name) - int(b.name) })
	want := []discovered{{addr: "10.0.0.3:7000", name: far, degree: 1}, {addr: "10.0.0.4:6783", name: inbound, degree: 0}}
	if !slices.Equal(got, want) || degree != 1 {
		t.Fatalf("targets %v, degree %d; want %v, 1", got, degree, want)
	}
}

// The topology's readers that walk every link (discovery, encoding) work
// on the maps Peers publishes, outside its lock: under the race detector,
// they run beside every writer.
func TestTopologyReadersBesideWriters(t *testing.T) {
	const n = 20
	ps := newPeers(&Peer{Name: 1, UID: 1})
	update := func(version uint64) []byte {
		var recs []peerRecord
		for i := PeerName(2); i <= n; i++ {
			r := peerRecord{peer: wirePeer{NameByte: i.bytes(), UID: PeerUID(i), Version: version}}
			for j := PeerName(1); j <= n; j++ {
				if j != i {
					r.conns = append(r.conns, wireConn{NameByte: j.bytes(), RemoteTCPAddr: "10.0.0.9:6783", Outbound: j < i, Established: version%2 == 0})
				}
			}
			recs = append(recs, r)
		}
		return encodeTopology(recs)
	}
	var wg sync.WaitGroup
	run := func(f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				f(i)
			}
		}()
	}
	run(func(i int) {
		if _, _, _, err := ps.applyUpdate(update(uint64(i + 1))); err != nil {
			t.Error(err)
		}
	})
	run(func(i int) {
		name := PeerName(1000 + i)
		if _, err := ps.addRef(remoteIdentity{name: name, uid: 7}, true); err != nil {
			t.Error(err)
		}
		ps.unref(name)
		ps.collect()
	})
	run(func(int) { ps.discoveryTargets(1, nil, 6783) })
	run(func(int) {
		if _, err := decodeTopology(ps.encode(ps.names()), nil); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
}
