package dns

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// FuzzDecodeGossip: any bytes either decode into a table whose encoding
// decodes back to the same table, or are refused with an error; a Server
// fed them through every mesh entry point never panics and stays sane.
func FuzzDecodeGossip(f *testing.F) {
	now := newFakeClock().Now()
	tab := newTable(now)
	for i := range 4 {
		k := key{Origin: peerName(f, 1+i%2), Hostname: fmt.Sprintf("h%d.weave.local.", i),
			Addr: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), Container: "c"}
		tab.entries[k] = record{Version: uint64(i + 1), Tombstone: i == 3, Expires: now.Add(time.Minute)}
	}
	k6 := key{Origin: peerName(f, 3), Hostname: "v6.weave.local.", Addr: ip("fd00::1"), Container: "c6"}
	tab.entries[k6] = record{Version: 9}
	tab.retired[peerName(f, 4)] = 3
	for _, p := range tab.Encode() {
		f.Add(p)
	}
	f.Add([]byte{1, 0, 0, 0})
	f.Add([]byte{})
	self := peerName(f, 1)
	f.Fuzz(func(t *testing.T, msg []byte) {
		got, err := decodeTable(msg, now)
		if err == nil {
			back := newTable(now)
			for _, p := range got.Encode() {
				d, err := decodeTable(p, now)
				if err != nil {
					t.Fatalf("re-decoding: %v", err)
				}
				back.mergeDelta(d)
			}
			if !back.sameState(got) {
				t.Fatalf("round trip changed\n%v\n%v", got, back)
			}
		}
		s, err := New(Config{Ourself: self, Logger: quietLogger(), Now: func() time.Time { return now },
			Upstream: StaticUpstreams(nil)})
		if err != nil {
			t.Fatal(err)
		}
		s.AddEntry("mine", "mine", ip("10.9.9.9"))
		if _, err := s.OnGossip(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := s.OnGossipBroadcast(peerName(t, 2), msg); err != nil {
			t.Fatal(err)
		}
		if err := s.OnGossipUnicast(peerName(t, 2), msg); err != nil {
			t.Fatal(err)
		}
		// Whatever others claim about us, our entry stays live.
		if got := s.Lookup("mine"); len(got) != 1 {
			t.Fatalf("own entry lost: %v", got)
		}
		if g := s.Gossip(); g != nil {
			g.Encode()
		}
	})
}

// FuzzHandleQuery: the query path (unpack, chain, fit, pack) with any
// bytes never panics; a reply, when there is one, parses, carries the
// query's ID and fits the transport.
func FuzzHandleQuery(f *testing.F) {
	for _, q := range []*mdns.Msg{
		new(mdns.Msg).SetQuestion("c1.weave.local.", mdns.TypeA),
		new(mdns.Msg).SetQuestion("big.weave.local.", mdns.TypeANY),
		new(mdns.Msg).SetQuestion("1.0.32.10.in-addr.arpa.", mdns.TypePTR),
		new(mdns.Msg).SetQuestion("unknown.weave.local.", mdns.TypeMX),
		new(mdns.Msg).SetQuestion("example.com.", mdns.TypeA),
		new(mdns.Msg).SetQuestion("C1.", mdns.TypeAAAA),
		new(mdns.Msg).SetQuestion("weave.local.", mdns.TypeSOA),
	} {
		b, _ := q.Pack()
		f.Add(b, false)
		q.SetEdns0(4096, true)
		b, _ = q.Pack()
		f.Add(b, true)
	}
	f.Add([]byte{0, 1, 2}, false)
	s, err := New(Config{Ourself: peerName(f, 1), Logger: quietLogger(), Upstream: StaticUpstreams(nil)})
	if err != nil {
		f.Fatal(err)
	}
	s.AddEntry("c1", "c1", ip("10.32.0.1"))
	s.AddEntry("c1", "c1", ip("fd00::1"))
	for i := range 60 {
		s.AddEntry(fmt.Sprint("b", i), "big", netip.AddrFrom4([4]byte{10, 40, 0, byte(i + 1)}))
	}
	f.Fuzz(func(t *testing.T, raw []byte, tcp bool) {
		out := s.handle(context.Background(), raw, tcp)
		if out == nil {
			return
		}
		limit := mdns.MaxMsgSize
		if !tcp {
			limit = ednsUDPSize
			var q mdns.Msg
			if q.Unpack(raw) != nil || q.IsEdns0() == nil {
				limit = mdns.MinMsgSize
			}
		}
		if len(out) > limit {
			t.Fatalf("reply of %d bytes over the %d limit", len(out), limit)
		}
		var m mdns.Msg
		if err := m.Unpack(out); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if len(raw) >= 2 && m.Id != uint16(raw[0])<<8|uint16(raw[1]) {
			t.Fatalf("reply ID %x for query %x", m.Id, raw[:2])
		}
		if !m.Response {
			t.Fatal("reply without QR")
		}
	})
}
