package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
)

// readyPeer is one allocator with a ready ring and `prefill` allocations.
func readyPeer(b *testing.B, store *Store, prefill int) (*testNet, *testPeer) {
	n := newTestNet(b)
	p := n.add(1, Config{Range: mustPrefix("10.0.0.0/8"), Init: consensusN(1), Store: store})
	for i := range prefill {
		if _, err := p.a.Allocate(context.Background(), fmt.Sprint("pre", i), netip.Prefix{}); err != nil {
			b.Fatal(err)
		}
	}
	return n, p
}

// BenchmarkAllocate: allocate (and release, to stay in a steady state)
// on a ready ring with 10,000 addresses in use, in memory.
func BenchmarkAllocate(b *testing.B) {
	_, p := readyPeer(b, nil, 10000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		got, err := p.a.Allocate(ctx, "c", netip.Prefix{})
		if err != nil {
			b.Fatal(err)
		}
		if err := p.a.Release("c", got); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAllocateGrowing: every iteration a new container.
func BenchmarkAllocateGrowing(b *testing.B) {
	_, p := readyPeer(b, nil, 0)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := p.a.Allocate(ctx, fmt.Sprint("c", i), netip.Prefix{}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkAllocateDurable: as BenchmarkAllocate with the bbolt Store, so
// every allocation and release is an fsynced transaction.
func BenchmarkAllocateDurable(b *testing.B) {
	store, err := OpenStore(filepath.Join(b.TempDir(), "ipam.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	_, p := readyPeer(b, store, 100)
	ctx := context.Background()
	for b.Loop() {
		got, err := p.a.Allocate(ctx, "c", netip.Prefix{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := p.a.Release("c", got); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkConsensusFirstAllocation: three fresh allocators with
// consensus=3, from nothing to the first address (in-process gossip, so
// this is the protocol's CPU cost, not network latency).
func BenchmarkConsensusFirstAllocation(b *testing.B) {
	for b.Loop() {
		n := newTestNet(b)
		opts := Config{Init: consensusN(3)}
		p := n.add(1, opts)
		n.add(2, opts)
		n.add(3, opts)
		got := await(n, func() error {
			_, err := p.a.Allocate(context.Background(), "c", netip.Prefix{})
			return err
		})
		if got != nil {
			b.Fatal(got)
		}
	}
}
