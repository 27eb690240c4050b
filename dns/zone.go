package dns

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"

	mdns "github.com/miekg/dns"
)

// handler is one link of the query chain, in the shape of CoreDNS's
// plugin.Handler reduced to what we need: it answers a well-formed query
// (one question, opcode QUERY) or returns nil to pass it on. req is only
// read; the returned message is the caller's.
type handler interface {
	serveDNS(ctx context.Context, req *mdns.Msg) *mdns.Msg
}

// zone answers from the table: names in the domain (authoritatively:
// NXDOMAIN for unknown ones), single-label names that exist in the domain
// (the search list of a client that did not apply it), and PTR queries for
// addresses in the table. Everything else goes on down the chain.
type zone struct {
	domain string
	ttl    uint32
	idx    *atomic.Pointer[index]
	stats  *counters
}

func (z *zone) serveDNS(_ context.Context, req *mdns.Msg) *mdns.Msg {
	q := req.Question[0]
	name := lower(q.Name)
	ix := z.idx.Load()
	switch {
	case inDomain(name, z.domain):
		z.stats.local.Add(1)
		return z.answerDomain(req, q, name, ix)
	case singleLabel(name):
		if as, ok := ix.byName[name+z.domain]; ok && classIN(q) {
			z.stats.local.Add(1)
			m := reply(req, false)
			m.Answer = z.addrRRs(q, as)
			return m
		}
	default:
		if hs, ok := ix.byRev[name]; ok && classIN(q) {
			z.stats.local.Add(1)
			return z.answerPTR(req, q, hs)
		}
	}
	return nil
}

func classIN(q mdns.Question) bool {
	return q.Qclass == mdns.ClassINET || q.Qclass == mdns.ClassANY
}

func reply(req *mdns.Msg, authoritative bool) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = authoritative
	m.RecursionAvailable = true
	m.Compress = true
	return m
}

func (z *zone) answerDomain(req *mdns.Msg, q mdns.Question, name string, ix *index) *mdns.Msg {
	if !classIN(q) {
		m := reply(req, false)
		m.Rcode = mdns.RcodeRefused
		return m
	}
	m := reply(req, true)
	as, ok := ix.byName[name]
	if !ok && !ix.ent[name] && name != z.domain {
		z.stats.nxdomain.Add(1)
		m.Rcode = mdns.RcodeNameError
		m.Ns = []mdns.RR{z.soa(ix.serial)}
		return m
	}
	switch {
	case q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY:
		m.Answer = z.addrRRs(q, as)
	case q.Qtype == mdns.TypeSOA && name == z.domain:
		m.Answer = []mdns.RR{z.soa(ix.serial)}
	}
	if len(m.Answer) == 0 {
		m.Ns = []mdns.RR{z.soa(ix.serial)} // NODATA, with SOA for negative caching
	}
	return m
}

// addrRRs returns A and/or AAAA records for q from as, shuffled so that
// every query sees a new order (round robin without shared state).
func (z *zone) addrRRs(q mdns.Question, as []netip.Addr) []mdns.RR {
	var rrs []mdns.RR
	for _, a := range as {
		switch {
		case a.Is4() && (q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY):
			rrs = append(rrs, &mdns.A{Hdr: z.hdr(q.Name, mdns.TypeA), A: a.AsSlice()})
		case a.Is6() && (q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY):
			rrs = append(rrs, &mdns.AAAA{Hdr: z.hdr(q.Name, mdns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	rand.Shuffle(len(rrs), func(i, j int) { rrs[i], rrs[j] = rrs[j], rrs[i] })
	return rrs
}

func (z *zone) answerPTR(req *mdns.Msg, q mdns.Question, hostnames []string) *mdns.Msg {
	m := reply(req, true)
	if q.Qtype == mdns.TypePTR || q.Qtype == mdns.TypeANY {
		for _, h := range hostnames {
			m.Answer = append(m.Answer, &mdns.PTR{Hdr: z.hdr(q.Name, mdns.TypePTR), Ptr: h})
		}
	}
	return m
}

func (z *zone) hdr(name string, rrtype uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: rrtype, Class: mdns.ClassINET, Ttl: z.ttl}
}

// soa is the synthetic SOA of the domain, given in the authority section of
// negative answers so resolvers cache them for no longer than the TTL.
func (z *zone) soa(serial uint32) mdns.RR {
	mbox := "hostmaster." + z.domain
	if len(mbox) > 254 {
		mbox = z.domain
	}
	return &mdns.SOA{
		Hdr: z.hdr(z.domain, mdns.TypeSOA),
		Ns:  z.domain, Mbox: mbox, Serial: serial,
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: z.ttl,
	}
}
