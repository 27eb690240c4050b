package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"weavenet/api"
)

// metrics exposes the daemon's state to Prometheus. Everything is read from
// the same report `weave status` renders, at scrape time: nothing on the
// packet path knows about Prometheus.
type metrics struct {
	d *daemon

	buildInfo, peers, connections *prometheus.Desc
	frames, bytes, drops          *prometheus.Desc
	ipamAddrs, ipamAllocs         *prometheus.Desc
	ipamPending                   *prometheus.Desc
	dnsEntries, dnsQueries        *prometheus.Desc
}

func newMetrics(d *daemon) *metrics {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("weavenet_"+name, help, labels, nil)
	}
	return &metrics{
		d:           d,
		buildInfo:   desc("build_info", "Always 1; the version is a label.", "version"),
		peers:       desc("peers", "Peers in the mesh, this one included."),
		connections: desc("connections", "Connections to peers and targets, by state, transport and encryption.", "state", "transport", "encryption"),
		frames:      desc("frames_total", "Frames forwarded, by direction: in from peers, out to peers (one per next hop).", "direction"),
		bytes:       desc("bytes_total", "Bytes of datagrams sent to and frames received from peers, by direction.", "direction"),
		drops:       desc("drops_total", "Frames, datagrams and handshakes dropped, by reason.", "reason"),
		ipamAddrs:   desc("ipam_addresses", "Addresses of the allocation range: total, and owned by unreachable peers.", "kind"),
		ipamAllocs:  desc("ipam_allocations", "Addresses held by containers on this peer."),
		ipamPending: desc("ipam_pending_allocations", "Addresses being obtained now: waiting for consensus, a donation or their owner."),
		dnsEntries:  desc("dns_entries", "Names in the weaveDNS table, all peers' included."),
		dnsQueries:  desc("dns_queries_total", "DNS queries this peer answered or forwarded."),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.buildInfo, m.peers, m.connections, m.frames, m.bytes, m.drops, m.ipamAddrs, m.ipamAllocs, m.ipamPending, m.dnsEntries, m.dnsQueries} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	rep := m.d.report()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(m.buildInfo, 1, api.Version)
	gauge(m.peers, float64(len(rep.Router.Peers)))
	type connKey struct{ state, transport, encryption string }
	conns := map[connKey]int{}
	for _, c := range rep.Router.Connections {
		enc := "none"
		if c.Encrypted {
			enc = c.Cipher
		}
		conns[connKey{c.State, c.Transport, enc}]++
	}
	for k, n := range conns {
		gauge(m.connections, float64(n), k.state, k.transport, k.encryption)
	}
	st := rep.Router.Stats
	counter(m.frames, st.FramesIn, "in")
	counter(m.frames, st.FramesOut, "out")
	counter(m.bytes, st.BytesIn, "in")
	counter(m.bytes, st.BytesOut, "out")
	for reason, n := range st.Drops {
		counter(m.drops, n, reason)
	}
	if ip := rep.IPAM; ip != nil {
		var total, unreachable uint64
		for _, p := range ip.Peers {
			total += p.Addresses
			if !p.Reachable {
				unreachable += p.Addresses
			}
		}
		gauge(m.ipamAddrs, float64(total), "total")
		gauge(m.ipamAddrs, float64(unreachable), "unreachable")
		gauge(m.ipamAllocs, float64(ip.Allocations))
		gauge(m.ipamPending, float64(m.d.pendingAllocs.Load()))
	}
	if m.d.dns != nil {
		gauge(m.dnsEntries, float64(len(rep.DNS.Entries)))
		counter(m.dnsQueries, m.d.dns.Counters().Queries)
	}
}
