package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/urfave/cli/v3"

	"weavenet/api"
)

func status(ctx context.Context, cmd *cli.Command) error {
	view := cmd.Args().First()
	render, ok := statusViews[view]
	if !ok || cmd.Args().Len() > 1 {
		return fmt.Errorf("unknown status view %q: want one of peers, connections, targets, ipam, dns, or none", strings.Join(cmd.Args().Slice(), " "))
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rep, err := client(cmd).Report(ctx)
	if err != nil {
		return err
	}
	render(os.Stdout, rep)
	return nil
}

var statusViews = map[string]func(io.Writer, *api.Report){
	"":            renderStatus,
	"peers":       renderPeers,
	"connections": renderConnections,
	"targets":     renderTargets,
	"ipam":        renderIPAM,
	"dns":         renderDNS,
}

// renderStatus prints the summary in Weave Net's layout: right-aligned labels.
func renderStatus(w io.Writer, rep *api.Report) {
	r := rep.Router
	line := func(label, value string) { fmt.Fprintf(w, "%15s: %s\n", label, value) }
	line("Version", rep.Version)
	line("Service", "router")
	line("Protocol", fmt.Sprintf("%s %d..%d", r.Protocol, r.ProtocolMinVersion, r.ProtocolMaxVersion))
	line("Name", fmt.Sprintf("%s(%s)", r.Name, r.NickName))
	line("Encryption", enabled(r.Encryption))
	line("PeerDiscovery", enabled(r.PeerDiscovery))
	line("Targets", fmt.Sprint(len(r.Targets)))
	line("Connections", countConnections(r.Connections))
	line("Peers", countPeers(rep))
	trusted := "none"
	if len(r.TrustedSubnets) > 0 {
		trusted = strings.Join(r.TrustedSubnets, ", ")
	}
	line("TrustedSubnets", trusted)
	if fd := r.FastDatapath; fd != nil && fd.Enabled {
		line("FastDatapath", fastDatapathSummary(fd))
	}
	if ip := rep.IPAM; ip != nil {
		fmt.Fprintln(w)
		line("Service", "ipam")
		line("Status", ip.Status)
		line("Range", ip.Range)
		line("DefaultSubnet", ip.DefaultSubnet)
	}
	if d := rep.DNS; d != nil {
		fmt.Fprintln(w)
		line("Service", "dns")
		line("Domain", d.Domain)
		upstream := "none"
		if len(d.Upstream) > 0 {
			upstream = strings.Join(d.Upstream, ", ")
		}
		line("Upstream", upstream)
		line("TTL", fmt.Sprint(d.TTL))
		line("Entries", fmt.Sprint(len(d.Entries)))
	}
	if p := rep.Proxy; p != nil {
		fmt.Fprintln(w)
		line("Service", "proxy")
		line("Address", p.Address)
	}
	if p := rep.Plugin; p != nil {
		fmt.Fprintln(w)
		line("Service", "plugin")
		line("DriverName", p.DriverName)
	}
}

// fastDatapathSummary is the VXLAN port and what guards it.
func fastDatapathSummary(fd *api.FastDatapath) string {
	s := fmt.Sprintf("VXLAN on UDP %d", fd.Port)
	if fd.AllowList == "" {
		return s + ", open to any source (" + fd.AllowListOff + ")"
	}
	return fmt.Sprintf("%s, from %d peer(s) only (nftables inet %s; %d dropped)", s, fd.AllowedPeers, fd.AllowList, fd.Dropped)
}

// renderIPAM lists who owns how much of the range.
func renderIPAM(w io.Writer, rep *api.Report) {
	if rep.IPAM == nil {
		return
	}
	for _, p := range rep.IPAM.Peers {
		note := ""
		if !p.Reachable {
			note = " - unreachable!"
		}
		fmt.Fprintf(w, "%s(%s) %10d IPs (%5.1f%% of total) %s%s\n", p.Name, p.NickName, p.Addresses, 100*p.Share, strings.Join(p.Ranges, " "), note)
	}
}

// renderDNS lists the names: name, address, owning peer, container.
func renderDNS(w io.Writer, rep *api.Report) {
	if rep.DNS == nil {
		return
	}
	for _, e := range rep.DNS.Entries {
		fmt.Fprintf(w, "%-24s %-15s %s %s\n", e.Hostname, e.Address, e.Origin, e.Container)
	}
}

func enabled(b bool) string {
	if b {
		return "enabled"
	}
	return "disabled"
}

// countConnections gives "3 (2 established, 1 failed)".
func countConnections(conns []api.Connection) string {
	if len(conns) == 0 {
		return "0"
	}
	byState := map[string]int{}
	for _, c := range conns {
		byState[c.State]++
	}
	order := []string{"established", "pending", "connecting", "retrying", "failed"}
	var parts []string
	for _, s := range order {
		if n := byState[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
			delete(byState, s)
		}
	}
	rest := make([]string, 0, len(byState))
	for s := range byState {
		rest = append(rest, s)
	}
	sort.Strings(rest)
	for _, s := range rest {
		parts = append(parts, fmt.Sprintf("%d %s", byState[s], s))
	}
	return fmt.Sprintf("%d (%s)", len(conns), strings.Join(parts, ", "))
}

// countPeers gives "2 (with 2 established connections)" as Weave Net counts
// them: every connection of every peer in the topology, so each link twice,
// pending ones named apart ("with 1 established, 1 pending connections"),
// and no parenthesis when there are none.
func countPeers(rep *api.Report) string {
	established, pending := 0, 0
	fresh := ourLinks(rep)
	for _, p := range rep.Router.Peers {
		for _, c := range p.Connections {
			if c.Established || fresh(p.Name, c) {
				established++
			} else {
				pending++
			}
		}
	}
	var parts []string
	if established > 0 {
		parts = append(parts, fmt.Sprintf("%d established", established))
	}
	if pending > 0 {
		parts = append(parts, fmt.Sprintf("%d pending", pending))
	}
	if len(parts) == 0 {
		return fmt.Sprint(len(rep.Router.Peers))
	}
	return fmt.Sprintf("%d (with %s connections)", len(rep.Router.Peers), strings.Join(parts, ", "))
}

// ourLinks reports whether peer's topology entry c is its end of a link to
// us that our own end shows established. Mesh holds back a peer's topology
// changes for up to a second to batch them, so just after a peer joins, its
// gossiped record of the link still says pending while both ends are in
// fact established: each end becomes established when the other has
// acknowledged its heartbeat, so ours being established means the peer has
// our acknowledgement in flight or in hand. For that one link our own state
// is the fresher word; links between other peers are as gossiped.
func ourLinks(rep *api.Report) func(peer string, c api.PeerConnection) bool {
	up := map[string]bool{}
	for _, c := range rep.Router.Connections {
		if c.State == "established" && c.PeerName != "" {
			up[c.PeerName] = true
		}
	}
	return func(peer string, c api.PeerConnection) bool {
		return c.Name == rep.Router.Name && up[peer]
	}
}

func arrow(outbound bool) string {
	if outbound {
		return "->"
	}
	return "<-"
}

func renderPeers(w io.Writer, rep *api.Report) {
	fresh := ourLinks(rep)
	for _, p := range rep.Router.Peers {
		fmt.Fprintf(w, "%s(%s)%s\n", p.Name, p.NickName, peerKind(" ", p.Kind, p.Release))
		for _, c := range p.Connections {
			state := "pending"
			if c.Established || fresh(p.Name, c) {
				state = "established"
			}
			fmt.Fprintf(w, "   %s %-21s %s(%s) %s\n", arrow(c.Outbound), c.Address, c.Name, c.NickName, state)
		}
	}
}

func renderConnections(w io.Writer, rep *api.Report) {
	for _, c := range rep.Router.Connections {
		extra := ""
		if c.MTU != 0 {
			extra = fmt.Sprintf(" mtu=%d", c.MTU)
		}
		if c.Encrypted && c.Cipher != "" {
			extra += " cipher=" + c.Cipher
		}
		if k := peerKind("", c.PeerKind, c.PeerVersion); k != "" {
			extra += " peer=" + strings.ReplaceAll(k, " ", "/")
		}
		if c.Format != "" {
			extra += " format=" + c.Format
		}
		if c.Heartbeat != "" {
			extra += " heartbeat=" + c.Heartbeat + "/" + c.HeartbeatTimeout
		}
		if c.Datapath != "" {
			extra += " datapath=" + c.Datapath
			if c.DatapathReason != "" {
				extra += " (" + c.DatapathReason + ")"
			}
		}
		// The encryption stays the last word, where scripts look for it.
		if c.Transport != "" {
			if c.Encrypted {
				extra += " encrypted"
			} else {
				extra += " unencrypted"
			}
		}
		fmt.Fprintf(w, "%s %-21s %-11s %s%s\n", arrow(c.Outbound), c.Address, c.State, c.Info, extra)
	}
}

// peerKind gives "weavenet 0.1.0", "weave" or, unknown, "", after prefix.
func peerKind(prefix, kind, release string) string {
	if kind == "" {
		return ""
	}
	if release != "" {
		kind += " " + release
	}
	return prefix + kind
}

func renderTargets(w io.Writer, rep *api.Report) {
	for _, t := range rep.Router.Targets {
		fmt.Fprintln(w, t)
	}
}
