package ipam

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"weavenet/mesh"
)

func TestStatusWaitingForDonation(t *testing.T) {
	n := newTestNet(t)
	seeds := Init{Mode: Seed, Seeds: []mesh.PeerName{peerName(1)}}
	p1 := n.add(1, Config{Range: mustPrefix("10.9.0.0/24"), Init: seeds})
	p2 := n.add(2, Config{Range: mustPrefix("10.9.0.0/24"), Init: seeds})
	n.Flush()
	select {
	case <-n.notify:
	default:
	}
	done := make(chan netip.Prefix)
	go func() {
		got, _ := p2.a.Allocate(context.Background(), "c", netip.Prefix{})
		done <- got
	}()
	<-n.notify // the space request is queued
	if st := p2.a.Status(); st.Status != "waiting for donation" {
		t.Fatalf("status %q", st.Status)
	}
	n.Flush()
	if got := <-done; got.String() != "10.9.0.128/24" {
		t.Fatalf("got %v", got)
	}
	st := p2.a.Status()
	if st.Status != "ready" || len(st.Peers) != 2 || st.Peers[1].Addresses != 128 || st.Peers[1].Free != 127 ||
		st.Peers[1].NickName != "h2" || !st.Peers[1].Ourself || st.Peers[1].Ranges[0].String() != "10.9.0.128-10.9.0.255" {
		t.Fatalf("status %+v", st)
	}
	// The only other owner gone: the status and the error say what to do.
	p1.stop()
	if st := p2.a.Status(); st.Status != "ready" {
		t.Fatalf("status %q", st.Status)
	}
	for i := 0; ; i++ {
		_, err := allocate(n, p2, "x"+string(rune('a'+i%26))+string(rune('a'+i/26)), "")
		if err != nil {
			if !errors.Is(err, ErrNoFreeAddresses) || !strings.Contains(err.Error(), "rmpeer") {
				t.Fatalf("exhausted: %v", err)
			}
			break
		}
	}
}

func TestStatusAllOwnersUnreachable(t *testing.T) {
	n := newTestNet(t)
	seeds := Init{Mode: Seed, Seeds: []mesh.PeerName{peerName(1)}}
	p1 := n.add(1, Config{Range: mustPrefix("10.9.0.0/24"), Init: seeds})
	p2 := n.add(2, Config{Range: mustPrefix("10.9.0.0/24"), Init: seeds})
	p1.stop()
	if st := p2.a.Status().Status; !strings.Contains(st, "unreachable") {
		t.Fatalf("status %q", st)
	}
	if _, err := allocate(n, p2, "c", ""); !errors.Is(err, ErrNoFreeAddresses) || !strings.Contains(err.Error(), "h1") {
		t.Fatalf("allocate: %v", err)
	}
}

func TestSilentDonorSkipped(t *testing.T) {
	n := newTestNet(t)
	seeds := Init{Mode: Seed, Seeds: []mesh.PeerName{peerName(1), peerName(2)}}
	opts := Config{Range: mustPrefix("10.9.0.0/24"), Init: seeds}
	p1, p2, p3 := n.add(1, opts), n.add(2, opts), n.add(3, opts)
	_ = p1
	// Requests to p2 are lost; p3 asks p1 (lower name on equal hints)
	// first, so make p1 the silent one.
	n.drop = func(d delivery) bool { return d.dst == peerName(1) && d.kind == unicast }
	n.idle = func() { n.tickAll(time.Second) }
	got := mustAllocate(t, n, p3, "c", "")
	if ringOf(p2).owner(mustOffset(t, p2, got.Addr().String())) != p3.name {
		t.Fatalf("got %v, not from p2's space", got)
	}
}

func TestClaimWhileAwaitingConsensus(t *testing.T) {
	n := newTestNet(t)
	opts := Config{Range: mustPrefix("10.2.0.0/16"), Init: consensusN(2)}
	p1, p2 := n.add(1, opts), n.add(2, opts)
	// A claim before any ring bootstraps it, then goes to the owner.
	if err := claim(n, p2, "a", "10.2.1.2/24"); err != nil {
		t.Fatal(err)
	}
	if l := p2.a.Lookup("a"); len(l) != 1 || l[0].String() != "10.2.1.2/24" {
		t.Fatalf("lookup %v", l)
	}
	n.settle()
	if !ringOf(p1).equal(ringOf(p2)) {
		t.Fatal("rings differ")
	}
	n.noErrors()
}
