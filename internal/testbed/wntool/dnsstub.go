package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// runDNSStub answers every A query with one address for a while: an
// upstream resolver living inside the test topology.
func runDNSStub(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dns-stub", flag.ContinueOnError)
	pos, err := parseFlags(fs, args, 3, usageDNSStub)
	if err != nil {
		return err
	}
	listen, err := parseAddrPort(pos[0])
	if err != nil {
		return err
	}
	answer, err := netip.ParseAddr(pos[1])
	if err != nil || !answer.Is4() {
		return fmt.Errorf("ANSWER %q: want an IPv4 address", pos[1])
	}
	d, err := parseDuration(pos[2])
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", listen.String())
	if err != nil {
		return err
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, q *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(q)
		for _, question := range q.Question {
			if question.Qtype == mdns.TypeA {
				m.Answer = append(m.Answer, &mdns.A{
					Hdr: mdns.RR_Header{Name: question.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 1},
					A:   answer.AsSlice(),
				})
			}
		}
		_ = w.WriteMsg(m)
	})}
	fmt.Fprintf(stderr, "listening on %s\n", pc.LocalAddr())
	go func() { time.Sleep(d); _ = srv.Shutdown() }()
	return srv.ActivateAndServe()
}

// runDNSQuery asks one server one question over UDP and prints the rcode,
// the answers and how long it took.
func runDNSQuery(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dns-query", flag.ContinueOnError)
	pos, err := parseFlags(fs, args, 3, usageDNSQuery)
	if err != nil {
		return err
	}
	qtype, ok := mdns.StringToType[pos[2]]
	if !ok {
		return fmt.Errorf("TYPE %q: want a type such as A, AAAA, PTR or MX", pos[2])
	}
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(pos[1]), qtype)
	c := &mdns.Client{Timeout: 3 * time.Second}
	r, rtt, err := c.Exchange(m, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %v", mdns.RcodeToString[r.Rcode], rtt)
	for _, a := range r.Answer {
		fmt.Fprintf(stdout, " %s", strings.Join(strings.Fields(a.String())[3:], " "))
	}
	fmt.Fprintln(stdout)
	return nil
}
