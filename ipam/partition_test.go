package ipam

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// allAllocations collects every in-range allocation on the peers and fails
// on a duplicate or an address its holder doesn't own in its own ring.
func allAllocations(t *testing.T, peers []*testPeer) map[netip.Addr]string {
	t.Helper()
	seen := map[netip.Addr]string{}
	for _, p := range peers {
		p.a.mu.Lock()
		for addr, al := range p.a.space.allocs {
			o, in := p.a.geo.offset(addr)
			if !in {
				continue
			}
			if prev, dup := seen[addr]; dup {
				p.a.mu.Unlock()
				t.Fatalf("%v held by %s and %s/%s", addr, prev, p.nick, al.Owner)
			}
			seen[addr] = p.nick + "/" + al.Owner
			if p.a.ring.owner(o) != p.name {
				p.a.mu.Unlock()
				t.Fatalf("%s holds %v but its ring gives it to %v", p.nick, addr, p.a.ring.owner(o))
			}
		}
		p.a.mu.Unlock()
	}
	return seen
}

func TestPartitionAllocateThenHeal(t *testing.T) {
	n := newTestNet(t)
	opts := Config{Range: mustPrefix("10.9.0.0/26"), Init: consensusN(4)}
	var ps []*testPeer
	for i := 1; i <= 4; i++ {
		ps = append(ps, n.add(i, opts))
	}
	mustAllocate(t, n, ps[0], "boot", "")
	n.settle()
	n.partition(1, ps[0], ps[1])
	n.partition(2, ps[2], ps[3])
	// Each side allocates until it runs out; donations happen inside a side.
	for side, group := range [][]*testPeer{{ps[0], ps[1]}, {ps[2], ps[3]}} {
		for i := 0; ; i++ {
			p := group[i%2]
			if p == ps[0] && i == 0 {
				continue
			}
			_, err := allocate(n, p, fmt.Sprintf("s%d-%d", side, i), "")
			if errors.Is(err, ErrNoFreeAddresses) {
				if !strings.Contains(err.Error(), "unreachable") {
					t.Fatalf("exhausted side %d: %v", side, err)
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	allAllocations(t, ps)
	n.heal()
	n.settle()
	r := ringOf(ps[0])
	for _, p := range ps[1:] {
		if !ringOf(p).equal(r) {
			t.Fatalf("%s ring differs after heal", p.nick)
		}
	}
	if got := len(allAllocations(t, ps)); got != 62 {
		t.Fatalf("%d addresses allocated in a /26, want 62", got)
	}
	n.noErrors()
}

// TestRandomOperations runs random allocations, claims, releases,
// partitions and heals on four peers and checks after every step that no
// address is held twice anywhere.
func TestRandomOperations(t *testing.T) {
	for seed := range uint64(12) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, 3))
			n := newTestNet(t)
			opts := Config{Range: mustPrefix("10.9.0.0/25"), DefaultSubnet: mustPrefix("10.9.0.0/26"), Init: consensusN(4)}
			var ps []*testPeer
			for i := 1; i <= 4; i++ {
				ps = append(ps, n.add(i, opts))
			}
			n.idle = func() { n.tickAll(time.Second) }
			mustAllocate(t, n, ps[rnd.IntN(4)], "c0", "")
			n.settle()
			subnets := []string{"", "10.9.0.64/26", "10.9.0.96/27", "10.9.0.0/25"}
			var stats [4]int // allocated, full, claimed, claim refused
			defer func() {
				t.Logf("allocated %d, full %d, claimed %d, claims refused %d", stats[0], stats[1], stats[2], stats[3])
			}()
			for step := range 400 {
				p := ps[rnd.IntN(4)]
				switch r := rnd.IntN(20); {
				case r < 10:
					_, err := allocate(n, p, fmt.Sprintf("c%d", rnd.IntN(60)), subnets[rnd.IntN(len(subnets))])
					if err != nil && !errors.Is(err, ErrNoFreeAddresses) {
						t.Fatalf("step %d: %v", step, err)
					}
					stats[min(1, btoi(err != nil))]++
				case r < 12:
					addr := fmt.Sprintf("10.9.0.%d/25", 1+rnd.IntN(126))
					err := claim(n, p, fmt.Sprintf("c%d", rnd.IntN(60)), addr)
					if err != nil && !errors.Is(err, ErrAddressInUse) && !errors.Is(err, ErrOwnerUnreachable) &&
						!strings.Contains(err.Error(), "retry") {
						t.Fatalf("step %d: claim %s: %v", step, addr, err)
					}
					stats[2+btoi(err != nil)]++
				case r < 16:
					if err := p.a.ReleaseAll(fmt.Sprintf("c%d", rnd.IntN(60))); err != nil {
						t.Fatal(err)
					}
				case r < 18:
					n.heal()
					n.partition(1, ps[rnd.IntN(4)], ps[rnd.IntN(4)])
				default:
					n.heal()
					n.settle()
				}
				allAllocations(t, ps)
			}
			n.heal()
			n.settle()
			for _, p := range ps[1:] {
				if !ringOf(p).equal(ringOf(ps[0])) {
					t.Fatalf("%s ring differs at the end", p.nick)
				}
			}
			n.noErrors()
		})
	}
}

// TestConcurrentAllocations: many goroutines on three peers, messages
// pumped by another goroutine (for the race detector).
func TestConcurrentAllocations(t *testing.T) {
	n := newTestNet(t)
	opts := Config{Range: mustPrefix("10.9.0.0/24"), Init: consensusN(3)}
	var ps []*testPeer
	for i := 1; i <= 3; i++ {
		ps = append(ps, n.add(i, opts))
	}
	stop := make(chan struct{})
	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		for {
			n.Flush()
			select {
			case <-stop:
				return
			case <-n.notify:
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 90)
	for i := range 90 {
		wg.Go(func() {
			_, err := ps[i%3].a.Allocate(context.Background(), fmt.Sprint("c", i), netip.Prefix{})
			errs <- err
			_ = ps[(i+1)%3].a.Status()
			_ = ps[(i+2)%3].a.Gossip()
		})
	}
	wg.Wait()
	close(stop)
	<-pumped
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := len(allAllocations(t, ps)); got != 90 {
		t.Fatalf("%d allocations", got)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
