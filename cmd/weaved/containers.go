package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"weavenet/api"
	"weavenet/dns"
	"weavenet/docker"
	"weavenet/internal/wallclock"
	"weavenet/ipam"
	"weavenet/netdev"
)

// What the daemon knows of each container it plugged in, kept in the data
// dir so that a restarted daemon re-announces their names. Addresses live in
// IPAM; the container's key there is the name it was attached by.

type containerInfo struct {
	NetNS    string // namespace path
	HostIf   string // host end of its veth: when it is gone, so is the container
	MAC      string
	Hostname string // registered in DNS; empty for none
	ByName   bool   // given as a netns name: has /etc/netns/NAME/resolv.conf
	// Docker: the key is a Docker container's ID. Its addresses outlive
	// its stops and go when Docker removes it (see docker.go).
	Docker bool `json:",omitempty"`
}

type registry struct {
	path string
	mu   sync.Mutex
	m    map[string]containerInfo
}

func openRegistry(path string) (*registry, error) {
	r := &registry{path: path, m: map[string]containerInfo{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("containers: %w", err)
	}
	if err := json.Unmarshal(b, &r.m); err != nil {
		return nil, fmt.Errorf("containers: %s: %w", path, err)
	}
	return r, nil
}

func (r *registry) get(key string) (containerInfo, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.m[key]
	return c, ok
}

func (r *registry) all() map[string]containerInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]containerInfo, len(r.m))
	for k, v := range r.m {
		out[k] = v
	}
	return out
}

func (r *registry) set(key string, c *containerInfo) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c == nil {
		delete(r.m, key)
	} else {
		r.m[key] = *c
	}
	b, err := json.MarshalIndent(r.m, "", "  ")
	if err != nil {
		return err
	}
	// Durable before the caller goes on: a crash must not forget a
	// container whose addresses IPAM already holds, or they leak for good.
	if err := writeFileDurable(r.path, b, 0o600); err != nil {
		return fmt.Errorf("containers: %w", err)
	}
	return nil
}

// addrSpec is one ADDR of the CLI: a specific address, a subnet to
// allocate from, or nothing.
type addrSpec struct {
	claim  netip.Prefix // a specific address (CIDR form)
	subnet netip.Prefix // net:CIDR; zero with isNet means net:default
	isNet  bool
}

func parseAddrSpecs(in []string) (specs []addrSpec, none bool, err error) {
	for _, s := range in {
		switch {
		case s == "none":
			none = true
		case s == "net:default":
			specs = append(specs, addrSpec{isNet: true})
		case strings.HasPrefix(s, "net:"):
			p, err := netip.ParsePrefix(strings.TrimPrefix(s, "net:"))
			if err != nil || !p.Addr().Is4() {
				return nil, false, fmt.Errorf("%q: want net:CIDR such as net:10.2.2.0/24", s)
			}
			specs = append(specs, addrSpec{isNet: true, subnet: p.Masked()})
		default:
			p, err := netip.ParsePrefix(s)
			if err != nil || !p.Addr().Is4() {
				return nil, false, fmt.Errorf("%q is not an address: want CIDR (10.2.1.2/24), net:default, net:CIDR or none", s)
			}
			specs = append(specs, addrSpec{claim: p})
		}
	}
	return specs, none, nil
}

// matches reports whether held is what spec names, for detach.
func (s addrSpec) matches(held netip.Prefix, defaultSubnet netip.Prefix) bool {
	switch {
	case !s.isNet:
		return held == s.claim
	case s.subnet.IsValid():
		return held.Bits() == s.subnet.Bits() && s.subnet.Contains(held.Addr())
	default:
		return held.Bits() == defaultSubnet.Bits() && defaultSubnet.Contains(held.Addr())
	}
}

// dnsLabel is what a container name must look like to become a hostname.
var dnsLabel = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)

// allocTimeout bounds how long an attach waits for IPAM (consensus, a
// donation from another peer).
const allocTimeout = api.AllocWait

// attach allocates or claims the addresses specs names for the container,
// plugs it in with them and registers its name.
func (d *daemon) attach(ctx context.Context, req api.AttachRequest) (*api.AttachResponse, error) {
	if d.cfg.mode == modeL3 {
		return nil, errL3NoBridge
	}
	specs, none, err := parseAddrSpecs(req.Addrs)
	if err != nil {
		return nil, err
	}
	if len(specs) == 0 && !none {
		specs = []addrSpec{{isNet: true}}
	}
	key, dc, err := d.resolve(ctx, req.Container)
	if err != nil {
		return nil, err
	}
	var nsPath string
	if dc != nil {
		nsPath, err = dc.NetNSPath()
	} else {
		nsPath, err = netdev.ContainerNetNSPath(key)
	}
	if err != nil {
		return nil, err
	}
	info, _ := d.containers.get(key)
	info.NetNS = nsPath
	info.Docker = dc != nil
	info.ByName = !info.Docker && !strings.ContainsRune(key, '/') && dnsLabel.MatchString(key) && !isNumber(key)
	switch {
	case req.Hostname != "":
		info.Hostname = req.Hostname
	case info.Hostname == "" && info.Docker:
		info.Hostname = d.dockerHostname(dc)
	case info.Hostname == "" && info.ByName:
		info.Hostname = key
	}

	ctx, cancel := context.WithTimeout(ctx, allocTimeout)
	defer cancel()
	var got []netip.Prefix
	for _, s := range specs {
		p, err := d.obtain(ctx, key, s)
		if err != nil {
			d.releaseNew(key, got)
			return nil, err
		}
		got = append(got, p)
	}
	mac, have, err := netdev.Attach(d.attachConfig(nsPath, got))
	if err != nil {
		d.releaseNew(key, got)
		if errors.Is(err, netdev.ErrHostNamespace) {
			return nil, fmt.Errorf("%s: %w; weave expose gives the host an address", req.Container, err)
		}
		return nil, err
	}
	info.MAC = mac.String()
	if info.HostIf, err = netdev.HostIfNameOf(nsPath); err != nil {
		d.log.Warn("container's host veth unknown: its addresses will not be released when it goes", "container", key, "err", err)
	}
	if err := d.containers.set(key, &info); err != nil {
		return nil, err
	}
	if d.dns != nil && info.Hostname != "" {
		for _, p := range got {
			if err := d.dns.AddEntry(key, info.Hostname, p.Addr()); err != nil {
				return nil, fmt.Errorf("dns: %w", err)
			}
		}
		if info.ByName {
			if err := d.writeResolvConf(key); err != nil {
				return nil, err
			}
		}
	}
	return &api.AttachResponse{MAC: info.MAC, Addrs: prefixStrings(have)}, nil
}

// attachConfig plugs the container at nsPath into our bridge with addrs,
// and a route to weaveDNS on the bridge when it runs.
func (d *daemon) attachConfig(nsPath string, addrs []netip.Prefix) netdev.AttachConfig {
	ac := netdev.AttachConfig{Bridge: d.cfg.bridge, NetNS: nsPath, IfName: containerIfName, MTU: d.cfg.mtu, Addrs: addrs}
	if d.dns != nil {
		ac.Routes = []netip.Prefix{netip.PrefixFrom(d.cfg.dnsAddr, 32)}
	}
	return ac
}

// replug plugs the containers attached before a restart into the bridge
// again, with the addresses they hold: a no-op when the bridge outlived the
// restart, the way back when it did not (deleted by hand, or by a weaved
// from before bridges were kept). Containers that went while the daemon
// was down are reaped first; one whose pair cannot be found is left alone.
func (d *daemon) replug() {
	for key, info := range d.containers.all() {
		if key == exposeKey || info.NetNS == "" || info.Docker && d.docker != nil {
			continue // Docker's are plugged in by dockerResync: their PID may have changed
		}
		ac := d.attachConfig(info.NetNS, d.alloc.Lookup(key))
		ac.Existing = true
		ac.HostIfName = info.HostIf // named by whoever plugged it in (Weave Net, for one)
		if _, _, err := netdev.Attach(ac); err != nil {
			d.log.Warn("container from before the restart not plugged in again; weave rm releases its addresses", "container", key, "err", err)
			continue
		}
		if info.HostIf == "" { // attached by a weaved that did not record it
			if info.HostIf, _ = netdev.HostIfNameOf(info.NetNS); info.HostIf != "" {
				_ = d.containers.set(key, &info)
			}
		}
	}
}

// reapLoop releases the addresses and names of containers that are gone,
// as Weave Net did when Docker said a container had died. A container is
// gone when the host end of its veth is: the kernel deletes a namespace's
// veths with the namespace, so that is the cue, and with its interface
// gone no address of it can be in use any more. A sweep every half minute
// catches what the cue missed.
func (d *daemon) reapLoop(quit <-chan struct{}) {
	gone, err := netdev.WatchContainerLinksGone(quit)
	if err != nil {
		d.log.Warn("not watching for containers that go; a sweep every 30s finds them", "err", err)
	}
	sweep := wallclock.NewTicker(30 * time.Second)
	defer sweep.Stop()
	for {
		select {
		case <-quit:
			return
		case _, ok := <-gone:
			if !ok {
				gone = nil
				continue
			}
		case <-sweep.C:
		}
		d.reap()
	}
}

// reap releases what the containers whose host veth is gone hold.
func (d *daemon) reap() {
	for key, info := range d.containers.all() {
		if info.HostIf == "" || info.Docker {
			// Attached before we recorded veths, or the host's names; or
			// a Docker container, whose veth goes with every stop: only
			// Docker's removal releases it.
			continue
		}
		if exists, err := netdev.LinkExists(info.HostIf); err != nil || exists {
			continue
		}
		d.log.Info("container gone: releasing its addresses and names", "container", key, "veth", info.HostIf)
		if err := d.rm(key); err != nil {
			d.log.Warn("releasing a container that went", "container", key, "err", err)
		}
	}
}

func isNumber(s string) bool { return strings.Trim(s, "0123456789") == "" }

// ownerGrace is how long a claim waits for an unreachable owner to become
// reachable before giving up.
const ownerGrace = 5 * time.Second

// obtain gets one address for key as spec says.
func (d *daemon) obtain(ctx context.Context, key string, s addrSpec) (netip.Prefix, error) {
	d.pendingAllocs.Add(1)
	defer d.pendingAllocs.Add(-1)
	start := time.Now()
	if !s.isNet {
		if err := checkClaim(s.claim, d.cfg.dnsAddr); err != nil {
			return netip.Prefix{}, err
		}
		for {
			err := d.alloc.Claim(ctx, key, s.claim)
			if err == nil {
				return s.claim, nil
			}
			// Just after a peer connects its routes, and so its
			// reachability, lag behind by a moment: give it a few.
			if !errors.Is(err, ipam.ErrOwnerUnreachable) || time.Since(start) > ownerGrace {
				return netip.Prefix{}, fmt.Errorf("claim %v: %w", s.claim, err)
			}
			select {
			case <-ctx.Done():
				return netip.Prefix{}, fmt.Errorf("claim %v: %w", s.claim, err)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	if s.subnet.IsValid() {
		if err := checkPrefixLen(s.subnet); err != nil {
			return netip.Prefix{}, err
		}
	}
	p, err := d.alloc.Allocate(ctx, key, s.subnet)
	if err != nil {
		subnet := s.subnet
		if !subnet.IsValid() {
			subnet = d.cfg.defaultSubnet
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return p, fmt.Errorf("allocate in %v: IPAM is %s; gave up after %v", subnet, d.alloc.Status().Status, allocTimeout)
		}
		return p, fmt.Errorf("allocate in %v: %w", subnet, err)
	}
	return p, nil
}

// releaseNew gives back addresses obtained for an attach that failed,
// keeping those the container already had.
func (d *daemon) releaseNew(key string, got []netip.Prefix) {
	before, _ := d.containers.get(key)
	if before.NetNS != "" {
		return // it was attached before: its addresses may be in use
	}
	for _, p := range got {
		_ = d.alloc.Release(key, p)
	}
}

// detach takes the addresses specs names (all if none) from the container;
// with none left it is unplugged and forgotten.
func (d *daemon) detach(req api.AttachRequest) (*api.AttachResponse, error) {
	specs, _, err := parseAddrSpecs(req.Addrs)
	if err != nil {
		return nil, err
	}
	key, _, err := d.resolve(context.Background(), req.Container)
	if err != nil {
		return nil, err
	}
	info, known := d.containers.get(key)
	held := d.alloc.Lookup(key)
	var drop []netip.Prefix
	for _, p := range held {
		if len(specs) == 0 || slices.ContainsFunc(specs, func(s addrSpec) bool { return s.matches(p, d.cfg.defaultSubnet) }) {
			drop = append(drop, p)
		}
	}
	for _, s := range specs {
		if !s.isNet && !slices.Contains(held, s.claim) {
			drop = append(drop, s.claim) // added by hand: take it off the interface all the same
		}
	}
	nsPath := info.NetNS
	if nsPath == "" {
		if nsPath, err = netdev.ContainerNetNSPath(key); err != nil && !known {
			return nil, err
		}
	}
	var left []netip.Prefix
	if nsPath != "" {
		if len(specs) == 0 {
			left, err = netdev.Detach(nsPath, containerIfName, nil)
		} else {
			left, err = netdev.Detach(nsPath, containerIfName, drop)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("detach", "container", key, "err", err)
		}
	}
	for _, p := range drop {
		if err := d.alloc.Release(key, p); err != nil && !strings.Contains(err.Error(), "no such allocation") {
			d.log.Warn("release", "container", key, "addr", p, "err", err)
		}
		if d.dns != nil {
			_, _ = d.dns.RemoveEntries(key, "", p.Addr())
		}
	}
	if len(left) == 0 {
		d.forget(key, info)
	}
	return &api.AttachResponse{MAC: info.MAC, Addrs: prefixStrings(left)}, nil
}

// rm releases everything of a container and unplugs it.
func (d *daemon) rm(key string) error {
	if _, err := d.detach(api.AttachRequest{Container: key}); err != nil {
		return err
	}
	return d.alloc.ReleaseAll(key)
}

func (d *daemon) forget(key string, info containerInfo) {
	if d.dns != nil {
		_, _ = d.dns.RemoveEntries(key, "", netip.Addr{})
	}
	if info.ByName {
		_ = os.RemoveAll(filepath.Join("/etc/netns", key))
	}
	if err := d.containers.set(key, nil); err != nil {
		d.log.Warn("containers", "err", err)
	}
}

func (d *daemon) ps() []api.Container {
	var out []api.Container
	for key, info := range d.containers.all() {
		if key == exposeKey {
			continue // its name only; listed below if it holds addresses
		}
		name := key
		if info.Docker {
			name = docker.ShortID(key) // as weave ps and docker ps show them
		}
		out = append(out, api.Container{Container: name, MAC: info.MAC, Addrs: prefixStrings(d.alloc.Lookup(key))})
	}
	if held := d.alloc.Lookup(exposeKey); len(held) > 0 {
		out = append(out, api.Container{Container: exposeKey, Addrs: prefixStrings(held)})
	}
	out = append(out, d.pluginPS()...)
	sort.Slice(out, func(i, j int) bool { return out[i].Container < out[j].Container })
	return out
}

// exposeKey owns the addresses weave expose gives the host.
const exposeKey = "weave:expose"

func (d *daemon) expose(ctx context.Context, req api.AttachRequest) (*api.AttachResponse, error) {
	specs, _, err := parseAddrSpecs(req.Addrs)
	if err != nil {
		return nil, err
	}
	if len(specs) == 0 {
		specs = []addrSpec{{isNet: true}}
	}
	ctx, cancel := context.WithTimeout(ctx, allocTimeout)
	defer cancel()
	for _, s := range specs {
		p, err := d.obtain(ctx, exposeKey, s)
		if err != nil {
			return nil, err
		}
		if err := netdev.AddAddr(d.cfg.bridge, p); err != nil {
			return nil, err
		}
		if err := d.hostRoute(p.Addr()); err != nil {
			return nil, err
		}
	}
	if err := d.syncL3Addrs(); err != nil {
		return nil, err
	}
	if err := d.nameHost(req.Hostname); err != nil {
		return nil, err
	}
	return &api.AttachResponse{Addrs: prefixStrings(d.alloc.Lookup(exposeKey))}, nil
}

// nameHost registers the host's name (weave expose -h FQDN, or the one
// given before) for every address it exposes. The name is kept with the
// containers', so it is announced again after a restart, until hide takes
// the last address.
func (d *daemon) nameHost(hostname string) error {
	info, _ := d.containers.get(exposeKey)
	if hostname == "" {
		hostname = info.Hostname
	}
	if hostname == "" || d.dns == nil && hostname == info.Hostname {
		return nil
	}
	if d.dns == nil {
		return errNoDNS
	}
	// Registered before it is kept, so that a name DNS refuses is not.
	for _, p := range d.alloc.Lookup(exposeKey) {
		if err := d.dns.AddEntry(exposeKey, hostname, p.Addr()); err != nil {
			return err
		}
	}
	if hostname == info.Hostname {
		return nil
	}
	if info.Hostname != "" {
		_, _ = d.dns.RemoveEntries(exposeKey, info.Hostname, netip.Addr{})
	}
	info.Hostname = hostname
	return d.containers.set(exposeKey, &info)
}

// hostRoute points the host's route to the range at the bridge with src as
// the source address, so that what the host sends to containers comes from
// an address they can answer: its exposed address if it has one, else the
// DNS address, which only its own containers reach.
func (d *daemon) hostRoute(src netip.Addr) error {
	if !src.IsValid() {
		if d.dns == nil && d.cfg.mode != modeL3 {
			return nil
		}
		if d.cfg.mode != modeL3 {
			// In L3 mode the DNS address reaches no one: no route
			// until the host has an overlay address.
			src = d.cfg.dnsAddr
		}
		for _, p := range d.alloc.Lookup(exposeKey) {
			if d.cfg.ipRange.Contains(p.Addr()) {
				src = p.Addr()
			}
		}
	}
	if !src.IsValid() {
		return nil
	}
	return netdev.AddRoute(d.cfg.bridge, d.cfg.ipRange, src)
}

func (d *daemon) hide(req api.AttachRequest) (*api.AttachResponse, error) {
	specs, _, err := parseAddrSpecs(req.Addrs)
	if err != nil {
		return nil, err
	}
	for _, p := range d.alloc.Lookup(exposeKey) {
		if len(specs) > 0 && !slices.ContainsFunc(specs, func(s addrSpec) bool { return s.matches(p, d.cfg.defaultSubnet) }) {
			continue
		}
		if err := netdev.DelAddr(d.cfg.bridge, p); err != nil {
			return nil, err
		}
		if err := d.alloc.Release(exposeKey, p); err != nil {
			return nil, err
		}
		if d.dns != nil {
			_, _ = d.dns.RemoveEntries(exposeKey, "", p.Addr())
		}
	}
	if len(d.alloc.Lookup(exposeKey)) == 0 {
		if err := d.containers.set(exposeKey, nil); err != nil {
			return nil, err
		}
	}
	if err := d.hostRoute(netip.Addr{}); err != nil {
		return nil, err
	}
	if err := d.syncL3Addrs(); err != nil {
		return nil, err
	}
	return &api.AttachResponse{Addrs: prefixStrings(d.alloc.Lookup(exposeKey))}, nil
}

// registrations are the DNS names of the containers on this host, for
// re-announcing after a restart.
func (d *daemon) registrations() []dns.Registration {
	var regs []dns.Registration
	for key, info := range d.containers.all() {
		if info.Hostname == "" {
			continue
		}
		for _, p := range d.alloc.Lookup(key) {
			regs = append(regs, dns.Registration{Container: key, Hostname: info.Hostname, Addr: p.Addr()})
		}
	}
	return regs
}

// writeResolvConf points `ip netns exec NAME` at weaveDNS.
func (d *daemon) writeResolvConf(name string) error {
	dir := filepath.Join("/etc/netns", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	conf := fmt.Sprintf("# written by weave for container %s\nnameserver %v\nsearch %s\noptions ndots:1\n",
		name, d.cfg.dnsAddr, strings.TrimSuffix(d.dns.Domain(), "."))
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(conf), 0o644)
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}
