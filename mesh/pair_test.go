package mesh

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Two of our routers, under the race detector too.
func TestPairOurs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		password []byte
		v1       bool
	}{
		{"plain", nil, false},
		{"password", []byte("s3cret"), false},
		{"v1-password", []byte("s3cret"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const an, bn = PeerName(0x0d0000000001), PeerName(0x0d0000000002)
			cfg := Config{Password: tc.password, ConnLimit: 64, PeerDiscovery: true}
			a := startOursCfg(t, an, cfg)
			b := startOursCfg(t, bn, cfg, func(r *Router) {
				if tc.v1 {
					r.maxVersion = 1
				}
			})
			a.connect(b.addr)
			eventually(t, "both see each other", func() bool { return a.sees(bn) && b.sees(an) })
			if err := a.g.GossipUnicast(bn, []byte("u1")); err != nil {
				t.Fatal(err)
			}
			b.g.GossipBroadcast(setData{"b"})
			a.g.GossipNeighbourSubset(setData{"g"})
			eventually(t, "gossip", func() bool {
				return b.rx.hasUnicast(an.String()+":u1") && a.rx.has("b") && b.rx.has("g")
			})
			_ = NewStatus(a.r)
			_ = NewStatus(b.r)
			if st := b.r.HandshakeStats(); st.Accepted != 1 || st.Authenticated != 1 {
				t.Errorf("stats %+v", st)
			}
			a.r.Close()
			eventually(t, "b forgets a", func() bool { return !b.sees(an) && b.r.Peers.Fetch(an) == nil })
			b.r.Close()
			checkNoLeaks(t)
		})
	}
}

// The session password hook: called with what is known of the remote;
// an error refuses the connection; a different secret fails to decrypt.
func TestSessionPassword(t *testing.T) {
	const an, bn = PeerName(0x0e0000000001), PeerName(0x0e0000000002)
	var mu sync.Mutex
	var seen []map[string]string
	refuse := false
	hook := func(remote map[string]string) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, remote)
		if refuse {
			return nil, errors.New("not today")
		}
		return []byte("s3cret"), nil
	}
	a := startOursCfg(t, an, Config{Password: []byte("s3cret")})
	b := startOursCfg(t, bn, Config{SessionPassword: hook})
	a.connect(b.addr)
	eventually(t, "connected", func() bool { return a.sees(bn) && b.sees(an) })
	mu.Lock()
	if len(seen) == 0 || seen[0][FieldProtocolVersion] != "2" || seen[0][FieldOutbound] != "false" || seen[0][FieldRemoteAddr] == "" {
		t.Errorf("hook saw %v", seen)
	}
	refuse = true
	mu.Unlock()

	c := startOursCfg(t, 0x0e0000000003, Config{Password: []byte("s3cret")})
	c.connect(b.addr)
	eventually(t, "refused", func() bool { return b.r.HandshakeStats().Refused > 0 })
	if b.sees(0x0e0000000003) {
		t.Fatal("a refused peer joined")
	}
	d := startOursCfg(t, 0x0e0000000004, Config{Password: []byte("other")})
	d.connect(a.addr)
	eventually(t, "mismatch refused", func() bool { return a.r.HandshakeStats().Refused > 0 })
	time.Sleep(50 * time.Millisecond)
	if a.sees(0x0e0000000004) {
		t.Fatal("a peer with another password joined")
	}
	for _, p := range []*ourPeer{a, b, c, d} {
		p.r.Close()
	}
	checkNoLeaks(t)
}

// With AdvertiseWeavenet, two of ours agree on version 3 and the hook can
// tell; a reference peer (or a router without it) settles on 2.
func TestAdvertiseWeavenet(t *testing.T) {
	seen := make(chan string, 16)
	hook := func(remote map[string]string) ([]byte, error) {
		seen <- remote[FieldProtocolVersion]
		return []byte("k"), nil
	}
	cfg := Config{SessionPassword: hook, AdvertiseWeavenet: true}
	a := startOursCfg(t, 0x501, cfg)
	b := startOursCfg(t, 0x502, cfg)
	a.connect(b.addr)
	eventually(t, "connected", func() bool { return a.sees(0x502) && b.sees(0x501) })
	if v := <-seen; v != "3" {
		t.Errorf("between weavenet peers the hook saw version %s", v)
	}
	rf := startRefNode(t, 0x503, []byte("k"), false)
	rf.connect(a.addr)
	eventually(t, "the reference peer joined", func() bool { return a.sees(0x503) })
	for len(seen) > 0 {
		if v := <-seen; v != "3" && v != "2" {
			t.Errorf("hook saw version %s", v)
		}
	}
	if c := a.r.Ourself.connectionTo(0x503); c == nil || c.version != 2 {
		t.Errorf("with the reference peer: %+v", c)
	}
	a.r.Close()
	b.r.Close()
	checkNoLeaks(t)
}

// blockingGossiper holds every broadcast until release is closed.
type blockingGossiper struct {
	ourGossiper
	entered chan struct{}
	release chan struct{}
}

func (g blockingGossiper) OnGossipBroadcast(src PeerName, update []byte) (GossipData, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.release
	return g.ourGossiper.OnGossipBroadcast(src, update)
}

// A gossiper that takes its time (IPAM syncing to disk) holds up neither
// the connection that brought its gossip nor other channels: what comes
// after on the same connection is delivered meanwhile.
func TestSlowGossiperDoesNotStallConnection(t *testing.T) {
	const an, bn = PeerName(0x0f0000000001), PeerName(0x0f0000000002)
	a := startOursCfg(t, an, Config{})
	b := startOursCfg(t, bn, Config{})
	slowA, err := a.r.NewGossip("slow", ourGossiper{newReceived()})
	if err != nil {
		t.Fatal(err)
	}
	slow := blockingGossiper{ourGossiper{newReceived()}, make(chan struct{}, 1), make(chan struct{})}
	if _, err := b.r.NewGossip("slow", slow); err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			close(slow.release)
		}
	}
	defer release() // a failed check must not leave b's Close waiting on it
	a.connect(b.addr)
	eventually(t, "both see each other", func() bool { return a.sees(bn) && b.sees(an) })

	slowA.GossipBroadcast(setData{"first"})
	select {
	case <-slow.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow gossiper was never called")
	}
	a.g.GossipBroadcast(setData{"after"})
	eventually(t, "gossip after the slow one delivered", func() bool { return b.rx.has("after") })
	if slow.has("first") {
		t.Fatal("the slow gossiper finished before it was released")
	}
	release()
	eventually(t, "the slow gossip delivered", func() bool { return slow.has("first") })
	a.r.Close()
	b.r.Close()
	checkNoLeaks(t)
}

// freezingProxy passes TCP connections through to target until freeze is
// closed, and then reads nothing more from the dialling side, as a peer
// whose process hangs. stop ends it and waits for its goroutines.
func freezingProxy(t *testing.T, target string, freeze <-chan struct{}) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(in, out)
				in.Close()
			}()
			go func() {
				defer wg.Done()
				defer out.Close()
				defer in.Close()
				buf := make([]byte, 32<<10)
				for {
					select {
					case <-freeze:
						<-done
						return
					default:
					}
					n, err := in.Read(buf)
					if n > 0 {
						if _, werr := out.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			ln.Close()
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// A peer that reads nothing holds a sender to it for ctlWait at most,
// not until the writer's deadline a minute later: once the control queue
// is full the connection is given up, and the send says why.
func TestSenderToStuckPeerNotHeld(t *testing.T) {
	const an, bn = PeerName(0x0f0000000011), PeerName(0x0f0000000012)
	a := startOursCfg(t, an, Config{})
	b := startOursCfg(t, bn, Config{})
	freeze := make(chan struct{})
	proxy, stopProxy := freezingProxy(t, b.addr, freeze)
	a.connect(proxy)
	eventually(t, "both see each other", func() bool { return a.sees(bn) && b.sees(an) })
	close(freeze)

	// 64 KB unicasts fill the socket buffers, then the queue.
	payload := make([]byte, 64<<10)
	result := make(chan error, 1)
	go func() {
		for range 4000 {
			if err := a.g.GossipUnicast(bn, payload); err != nil {
				result <- err
				return
			}
		}
		result <- nil
	}()
	select {
	case err := <-result:
		if err == nil || !strings.Contains(err.Error(), "reads nothing") {
			t.Fatalf("unicasts to a peer that reads nothing: %v, want a send that fails saying so", err)
		}
		t.Logf("the send gave up: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("a sender to a peer that reads nothing is still held after 30 s")
	}
	a.r.Close()
	b.r.Close()
	stopProxy()
	checkNoLeaks(t)
}
