package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"
)

// forwarder is the last link of the chain: it asks the upstream resolvers
// in order, each over UDP and again over TCP when the answer is truncated,
// sharing one deadline (Config.ForwardTimeout) between them. It always
// answers: with the first usable upstream response, or SERVFAIL.
type forwarder struct {
	upstreams func() []netip.AddrPort
	timeout   time.Duration
	stats     *counters
	log       *slog.Logger
}

func (f *forwarder) serveDNS(ctx context.Context, req *mdns.Msg) *mdns.Msg {
	ups := f.upstreams()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	q := req.Copy()
	q.Id = mdns.Id() // a fresh ID upstream: ours to match, not the client's
	for i, u := range ups {
		// Split what is left of the budget between the upstreams still
		// to try, so a dead first server cannot eat all of it.
		deadline, _ := ctx.Deadline()
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		tctx, tcancel := context.WithTimeout(ctx, left/time.Duration(len(ups)-i))
		resp, err := exchange(tctx, q, u)
		tcancel()
		if err != nil {
			f.log.Debug("upstream failed", "upstream", u, "name", q.Question[0].Name, "err", err)
			continue
		}
		if resp.Rcode == mdns.RcodeServerFailure || resp.Rcode == mdns.RcodeRefused {
			f.log.Debug("upstream declined", "upstream", u, "name", q.Question[0].Name,
				"rcode", mdns.RcodeToString[resp.Rcode])
			continue
		}
		f.stats.forwarded.Add(1)
		resp.Id = req.Id
		return resp
	}
	f.stats.forwardFailures.Add(1)
	if len(ups) == 0 {
		f.log.Debug("no upstream resolver to forward to", "name", q.Question[0].Name)
	}
	m := reply(req, false)
	m.Rcode = mdns.RcodeServerFailure
	return m
}

// exchange asks one upstream over UDP, then over TCP if the UDP answer was
// truncated.
func exchange(ctx context.Context, q *mdns.Msg, u netip.AddrPort) (*mdns.Msg, error) {
	r, err := exchangeOver(ctx, "udp", q, u)
	if err == nil && r.Truncated {
		// Over TCP it fits; if TCP fails, the truncated answer is still
		// an answer (the client will try TCP itself).
		if rt, terr := exchangeOver(ctx, "tcp", q, u); terr == nil {
			r = rt
		}
	}
	if err != nil {
		return nil, err
	}
	if !r.Response || len(r.Question) != 1 || lower(r.Question[0].Name) != lower(q.Question[0].Name) ||
		r.Question[0].Qtype != q.Question[0].Qtype {
		return nil, fmt.Errorf("upstream %v: %w", u, errMismatch)
	}
	return r, nil
}

var errMismatch = errors.New("answer does not match the question")

// exchangeOver is one query to one upstream. miekg's client only honours a
// context's deadline; cancelling ctx (Close) also ends the wait here.
func exchangeOver(ctx context.Context, network string, q *mdns.Msg, u netip.AddrPort) (*mdns.Msg, error) {
	c := mdns.Client{Net: network, UDPSize: mdns.MaxMsgSize}
	co, err := c.DialContext(ctx, u.String())
	if err != nil {
		return nil, err
	}
	defer co.Close()
	stop := context.AfterFunc(ctx, func() { co.Close() })
	defer stop()
	r, _, err := c.ExchangeWithConnContext(ctx, q, co)
	return r, err
}
