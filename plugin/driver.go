// Package plugin owns weavenet's Docker network plugin: a libnetwork
// remote network driver and remote IPAM driver, served on a unix socket
// under /run/docker/plugins/ where the Docker Engine discovers it by name,
// so that `docker network create --driver weave --ipam-driver weave weave`
// and `docker run --net=weave` plug containers into the weave bridge.
//
// The package maps the protocol's requests to three things it is given:
// an address allocator (IPAM), a way to make veth pairs (Links), and hooks
// that name a container once it joined (weaveDNS). It keeps only what the
// protocol does not carry: which allocation became which endpoint.
package plugin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
)

// IPAM is the allocator the IPAM driver hands addresses out of. Owners are
// strings of the plugin's choosing, all starting with OwnerPrefix.
type IPAM interface {
	// Range is the whole allocation range; pools must lie inside it.
	Range() netip.Prefix
	// DefaultSubnet is the pool of a network created without --subnet.
	DefaultSubnet() netip.Prefix
	// Allocate gives owner a free address in subnet, in CIDR form with
	// subnet's length.
	Allocate(ctx context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error)
	// Claim gives owner exactly addr.
	Claim(ctx context.Context, owner string, addr netip.Prefix) error
	// Release frees owner's addr.
	Release(owner string, addr netip.Prefix) error
	// Owned lists the owners whose name starts with prefix and what each
	// holds.
	Owned(prefix string) map[string][]netip.Prefix
}

// Links makes and removes the veth pairs of endpoints.
type Links interface {
	// Create makes a pair whose end hostIf is plugged into the weave
	// bridge here, and whose end peerIf lies in the network namespace of
	// process peerPID (the Engine, which moves it into the container);
	// peerPID 0 means this namespace. A pair left from an earlier attempt
	// is replaced. peerMAC is the container end's address.
	Create(ctx context.Context, hostIf, peerIf string, peerMAC net.HardwareAddr, peerPID int) error
	// Delete removes the pair by its host end; an absent one is success.
	Delete(hostIf string) error
}

// Endpoint is what the hooks hear of a joined endpoint.
type Endpoint struct {
	NetworkID  string
	EndpointID string
	Addr       netip.Prefix
	MAC        net.HardwareAddr // of the container's interface
}

// Config says what the driver plugs containers into.
type Config struct {
	Name  string // the driver's name, as docker network create --driver names it
	IPAM  IPAM
	Links Links
	// Routes are connected routes every container gets on its weave
	// interface (weaveDNS's address, which lies outside every subnet).
	Routes []netip.Prefix
	// OnJoin is called when an endpoint joined a container, OnLeave when it
	// left; either may be nil. They must not block.
	OnJoin, OnLeave func(Endpoint)
	Log             *slog.Logger
}

// OwnerPrefix starts the IPAM owner of every address this plugin hands
// out. The protocol allocates before an endpoint exists, so the owner is
// one of ours per request, bound to the endpoint when it is created.
const OwnerPrefix = "docker-plugin:"

// ContainerIfPrefix is the name Docker gives the interface inside the
// container, followed by an index (ethwe0), as Weave Net's plugin did.
const ContainerIfPrefix = "ethwe"

// gatewayType is RequestAddress's option value for a network's gateway.
const gatewayType = "com.docker.network.gateway"

// maxTombstones bounds the addresses remembered as released by
// DeleteEndpoint, awaiting the engine's ReleaseAddress of them.
const maxTombstones = 1024

// Driver answers the protocol's requests.
type Driver struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// endpoints are those created and not yet deleted, with the IPAM owner
	// of their address ("" when it is not ours: another IPAM driver's).
	endpoints map[string]endpoint
	// tombstones are addresses DeleteEndpoint released: the engine's
	// ReleaseAddress of the same address follows, and must not free it
	// from whoever got it in between. Oldest first in tombOrder.
	tombstones map[netip.Addr]bool
	tombOrder  []netip.Addr
}

type endpoint struct {
	network string
	addr    netip.Prefix
	mac     net.HardwareAddr
	owner   string
	joined  bool
}

// NewDriver returns a driver with no endpoints.
func NewDriver(cfg Config) *Driver {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{cfg: cfg, log: log.With("plugin", cfg.Name), endpoints: map[string]endpoint{}, tombstones: map[netip.Addr]bool{}}
}

// VethNames are the two ends of an endpoint's pair: derived from its ID,
// so that a restarted daemon still finds them, and short enough for any ID.
func VethNames(endpointID string) (hostIf, peerIf string) {
	h := fnv.New32a()
	h.Write([]byte(endpointID))
	sum := fmt.Sprintf("%08x", h.Sum32())
	return "vethwpl" + sum, "vethwpg" + sum
}

// EndpointMAC is the MAC address of an endpoint's container interface when
// the engine gives none (docker run --mac-address): derived from its ID,
// locally administered and unicast, so that it is known again after a
// restart and stays the same when the engine retries.
func EndpointMAC(endpointID string) net.HardwareAddr {
	h := fnv.New64a()
	h.Write([]byte(endpointID))
	s := h.Sum64()
	mac := net.HardwareAddr{byte(s >> 40), byte(s >> 32), byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

// Handshake and capabilities.

func (d *Driver) activate() activateResponse {
	return activateResponse{Implements: []string{"NetworkDriver", "IpamDriver"}}
}

// capabilities: the networks' state is local to each engine (one engine
// per machine, no shared store: every machine creates its own weave
// network), while their containers reach those of every machine.
func (d *Driver) capabilities() capabilitiesResponse {
	return capabilitiesResponse{Scope: "local", ConnectivityScope: "global"}
}

// The network driver.

func (d *Driver) createNetwork(req createNetworkRequest) error {
	if err := checkID("NetworkID", req.NetworkID); err != nil {
		return err
	}
	if len(req.IPv6Data) > 0 {
		return errors.New("the weave driver does not carry IPv6: create the network without --ipv6")
	}
	for _, v4 := range req.IPv4Data {
		if _, err := netip.ParsePrefix(v4.Pool); err != nil {
			return fmt.Errorf("%w: pool %q: %v", errBadRequest, v4.Pool, err)
		}
	}
	d.log.Info("network created", "network", short(req.NetworkID))
	return nil
}

func (d *Driver) deleteNetwork(req networkRequest) error {
	if err := checkID("NetworkID", req.NetworkID); err != nil {
		return err
	}
	d.log.Info("network deleted", "network", short(req.NetworkID))
	return nil
}

func (d *Driver) createEndpoint(req createEndpointRequest) (createEndpointResponse, error) {
	if err := checkID("NetworkID", req.NetworkID); err != nil {
		return createEndpointResponse{}, err
	}
	if err := checkID("EndpointID", req.EndpointID); err != nil {
		return createEndpointResponse{}, err
	}
	if req.Interface == nil || req.Interface.Address == "" {
		return createEndpointResponse{}, errors.New("no IPv4 address for the endpoint: create the network with an IPAM driver that gives one (--ipam-driver " + d.cfg.Name + ")")
	}
	addr, err := netip.ParsePrefix(req.Interface.Address)
	if err != nil || !addr.Addr().Is4() {
		return createEndpointResponse{}, fmt.Errorf("%w: Interface.Address %q: want an IPv4 CIDR", errBadRequest, req.Interface.Address)
	}
	mac := EndpointMAC(req.EndpointID)
	if req.Interface.MacAddress != "" {
		if mac, err = net.ParseMAC(req.Interface.MacAddress); err != nil || len(mac) != 6 {
			return createEndpointResponse{}, fmt.Errorf("%w: Interface.MacAddress %q: want an Ethernet MAC", errBadRequest, req.Interface.MacAddress)
		}
	}
	owner := d.ownerOf(addr.Addr())
	d.mu.Lock()
	d.endpoints[req.EndpointID] = endpoint{network: req.NetworkID, addr: addr, mac: mac, owner: owner}
	d.mu.Unlock()
	d.log.Info("endpoint created", "endpoint", short(req.EndpointID), "addr", addr)
	return createEndpointResponse{}, nil
}

// ownerOf is the plugin's owner holding addr, or "" (an address of
// another IPAM driver).
func (d *Driver) ownerOf(addr netip.Addr) string {
	for o, held := range d.cfg.IPAM.Owned(OwnerPrefix) {
		for _, p := range held {
			if p.Addr() == addr {
				return o
			}
		}
	}
	return ""
}

// Restore takes up an endpoint the engine still has from before the
// daemon restarted (its pair outlived the restart with the bridge): the
// engine's Leave, DeleteEndpoint and ReleaseAddress then treat it as if
// it had been made by this run.
func (d *Driver) Restore(ep Endpoint) {
	owner := d.ownerOf(ep.Addr.Addr())
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, known := d.endpoints[ep.EndpointID]; !known {
		d.endpoints[ep.EndpointID] = endpoint{network: ep.NetworkID, addr: ep.Addr, mac: ep.MAC, owner: owner, joined: true}
	}
}

func (d *Driver) endpointInfo(req endpointRequest) (endpointInfoResponse, error) {
	if err := checkID("EndpointID", req.EndpointID); err != nil {
		return endpointInfoResponse{}, err
	}
	return endpointInfoResponse{Value: map[string]any{}}, nil
}

// deleteEndpoint removes the pair and releases the endpoint's address.
func (d *Driver) deleteEndpoint(req endpointRequest) error {
	if err := checkID("EndpointID", req.EndpointID); err != nil {
		return err
	}
	hostIf, _ := VethNames(req.EndpointID)
	if err := d.cfg.Links.Delete(hostIf); err != nil {
		return fmt.Errorf("endpoint %s: %w", short(req.EndpointID), err)
	}
	d.mu.Lock()
	ep, ok := d.endpoints[req.EndpointID]
	delete(d.endpoints, req.EndpointID)
	if ok && ep.owner != "" {
		d.tombstone(ep.addr.Addr())
	}
	d.mu.Unlock()
	if ok && ep.owner != "" {
		if err := d.cfg.IPAM.Release(ep.owner, ep.addr); err != nil {
			d.log.Warn("releasing a deleted endpoint's address", "endpoint", short(req.EndpointID), "addr", ep.addr, "err", err)
		}
	}
	d.log.Info("endpoint deleted", "endpoint", short(req.EndpointID))
	return nil
}

// tombstone remembers addr as released by DeleteEndpoint; d.mu is held.
func (d *Driver) tombstone(addr netip.Addr) {
	if d.tombstones[addr] {
		return
	}
	if len(d.tombOrder) >= maxTombstones {
		delete(d.tombstones, d.tombOrder[0])
		d.tombOrder = d.tombOrder[1:]
	}
	d.tombstones[addr] = true
	d.tombOrder = append(d.tombOrder, addr)
}

// join makes the endpoint's pair, with its container end in the namespace
// of the engine (peerPID), which moves it into the container under the
// name ethweN and gives it the address.
func (d *Driver) join(ctx context.Context, req joinRequest, peerPID int) (joinResponse, error) {
	if err := checkID("NetworkID", req.NetworkID); err != nil {
		return joinResponse{}, err
	}
	if err := checkID("EndpointID", req.EndpointID); err != nil {
		return joinResponse{}, err
	}
	d.mu.Lock()
	ep, ok := d.endpoints[req.EndpointID]
	d.mu.Unlock()
	if !ok {
		return joinResponse{}, fmt.Errorf("endpoint %s unknown to this plugin (created before weaved restarted?): docker network disconnect and connect it again", short(req.EndpointID))
	}
	hostIf, peerIf := VethNames(req.EndpointID)
	if err := d.cfg.Links.Create(ctx, hostIf, peerIf, ep.mac, peerPID); err != nil {
		return joinResponse{}, fmt.Errorf("endpoint %s: %w", short(req.EndpointID), err)
	}
	d.mu.Lock()
	if cur, still := d.endpoints[req.EndpointID]; still {
		cur.joined = true
		d.endpoints[req.EndpointID] = cur
	}
	d.mu.Unlock()
	resp := joinResponse{InterfaceName: interfaceName{SrcName: peerIf, DstPrefix: ContainerIfPrefix}}
	for _, r := range d.cfg.Routes {
		resp.StaticRoutes = append(resp.StaticRoutes, staticRoute{Destination: r.String(), RouteType: 1})
	}
	d.log.Info("endpoint joined", "endpoint", short(req.EndpointID), "veth", hostIf)
	if d.cfg.OnJoin != nil {
		d.cfg.OnJoin(Endpoint{NetworkID: ep.network, EndpointID: req.EndpointID, Addr: ep.addr, MAC: ep.mac})
	}
	return resp, nil
}

func (d *Driver) leave(req endpointRequest) error {
	if err := checkID("EndpointID", req.EndpointID); err != nil {
		return err
	}
	d.mu.Lock()
	ep, ok := d.endpoints[req.EndpointID]
	if ok {
		ep.joined = false
		d.endpoints[req.EndpointID] = ep
	}
	d.mu.Unlock()
	if d.cfg.OnLeave != nil {
		d.cfg.OnLeave(Endpoint{NetworkID: req.NetworkID, EndpointID: req.EndpointID, Addr: ep.addr, MAC: ep.mac})
	}
	d.log.Info("endpoint left", "endpoint", short(req.EndpointID))
	return nil
}

// The IPAM driver.

func (d *Driver) ipamCapabilities() ipamCapabilitiesResponse {
	return ipamCapabilitiesResponse{}
}

func (d *Driver) addressSpaces() addressSpacesResponse {
	return addressSpacesResponse{LocalDefaultAddressSpace: "weavelocal", GlobalDefaultAddressSpace: "weaveglobal"}
}

// pool is a network's subnet and the part of it addresses come from.
type pool struct {
	subnet  netip.Prefix
	ipRange netip.Prefix
}

// ID encodes the pool in its ID, so that nothing needs to be kept:
// weave:SUBNET or weave:SUBNET:RANGE.
func (p pool) ID() string {
	if p.ipRange == p.subnet {
		return "weave:" + p.subnet.String()
	}
	return "weave:" + p.subnet.String() + ":" + p.ipRange.String()
}

func parsePoolID(id string) (pool, error) {
	rest, ok := strings.CutPrefix(id, "weave:")
	if !ok || len(id) > 100 {
		return pool{}, fmt.Errorf("%w: pool %q is not one of this plugin's", errBadRequest, id)
	}
	subnetS, rangeS, hasRange := strings.Cut(rest, ":")
	subnet, err := netip.ParsePrefix(subnetS)
	if err != nil || !subnet.Addr().Is4() || subnet != subnet.Masked() {
		return pool{}, fmt.Errorf("%w: pool %q is not one of this plugin's", errBadRequest, id)
	}
	p := pool{subnet: subnet, ipRange: subnet}
	if hasRange {
		r, err := netip.ParsePrefix(rangeS)
		if err != nil || r != r.Masked() || !subnet.Contains(r.Addr()) || r.Bits() < subnet.Bits() {
			return pool{}, fmt.Errorf("%w: pool %q is not one of this plugin's", errBadRequest, id)
		}
		p.ipRange = r
	}
	return p, nil
}

func (d *Driver) requestPool(req requestPoolRequest) (requestPoolResponse, error) {
	if req.V6 {
		return requestPoolResponse{}, errors.New("the weave IPAM driver has no IPv6 addresses: create the network without --ipv6")
	}
	whole := d.cfg.IPAM.Range()
	p := pool{subnet: d.cfg.IPAM.DefaultSubnet()}
	if req.Pool != "" {
		s, err := netip.ParsePrefix(req.Pool)
		if err != nil || !s.Addr().Is4() {
			return requestPoolResponse{}, fmt.Errorf("--subnet %q: want an IPv4 CIDR inside %v", req.Pool, whole)
		}
		p.subnet = s.Masked()
	}
	if !whole.Contains(p.subnet.Addr()) || p.subnet.Bits() < whole.Bits() || p.subnet.Bits() > 30 {
		return requestPoolResponse{}, fmt.Errorf("--subnet %v: want a subnet of 4 addresses or more inside weave's --ipalloc-range %v", p.subnet, whole)
	}
	p.ipRange = p.subnet
	if req.SubPool != "" {
		r, err := netip.ParsePrefix(req.SubPool)
		if err != nil || !r.Addr().Is4() || !p.subnet.Contains(r.Addr()) || r.Bits() < p.subnet.Bits() {
			return requestPoolResponse{}, fmt.Errorf("--ip-range %q: want an IPv4 CIDR inside %v", req.SubPool, p.subnet)
		}
		p.ipRange = r.Masked()
	}
	// The network's address stands in for a gateway: it is never handed
	// out, and saying it spares the engine asking for one of ours.
	return requestPoolResponse{
		PoolID: p.ID(),
		Pool:   p.subnet.String(),
		Data:   map[string]string{gatewayType: p.subnet.String()},
	}, nil
}

func (d *Driver) releasePool(req releasePoolRequest) error {
	_, err := parsePoolID(req.PoolID)
	return err
}

func (d *Driver) requestAddress(ctx context.Context, req requestAddressRequest) (requestAddressResponse, error) {
	p, err := parsePoolID(req.PoolID)
	if err != nil {
		return requestAddressResponse{}, err
	}
	if req.Options["RequestAddressType"] == gatewayType {
		return requestAddressResponse{Address: p.subnet.String()}, nil
	}
	owner := newOwner()
	if req.Address != "" {
		a, err := netip.ParseAddr(req.Address)
		if err != nil || !a.Is4() || !p.subnet.Contains(a) || a == p.subnet.Addr() {
			return requestAddressResponse{}, fmt.Errorf("--ip %q: want an IPv4 address inside %v", req.Address, p.subnet)
		}
		addr := netip.PrefixFrom(a, p.subnet.Bits())
		if err := d.cfg.IPAM.Claim(ctx, owner, addr); err != nil {
			return requestAddressResponse{}, fmt.Errorf("claim %v: %w", addr, err)
		}
		return requestAddressResponse{Address: addr.String()}, nil
	}
	got, err := d.cfg.IPAM.Allocate(ctx, owner, p.ipRange)
	if err != nil {
		return requestAddressResponse{}, err
	}
	if !p.subnet.Contains(got.Addr()) {
		_ = d.cfg.IPAM.Release(owner, got)
		return requestAddressResponse{}, fmt.Errorf("allocator gave %v outside %v", got, p.subnet)
	}
	// From the --ip-range, the interface takes the subnet's length (the
	// allocator keys addresses by address alone).
	got = netip.PrefixFrom(got.Addr(), p.subnet.Bits())
	d.log.Debug("address handed out", "addr", got, "owner", owner)
	return requestAddressResponse{Address: got.String()}, nil
}

// releaseAddress frees addr from whichever of our owners holds it, except
// an owner bound to a live endpoint, and except right after DeleteEndpoint
// released it: then the engine's trailing call concerns the old holder.
func (d *Driver) releaseAddress(req releaseAddressRequest) error {
	p, err := parsePoolID(req.PoolID)
	if err != nil {
		return err
	}
	a, err := netip.ParseAddr(req.Address)
	if err != nil || !a.Is4() {
		return fmt.Errorf("%w: Address %q: want an IPv4 address", errBadRequest, req.Address)
	}
	if a == p.subnet.Addr() {
		return nil // the stand-in gateway
	}
	d.mu.Lock()
	if d.tombstones[a] {
		delete(d.tombstones, a)
		for i, t := range d.tombOrder {
			if t == a {
				d.tombOrder = append(d.tombOrder[:i], d.tombOrder[i+1:]...)
				break
			}
		}
		d.mu.Unlock()
		return nil
	}
	bound := map[string]bool{}
	for _, ep := range d.endpoints {
		if ep.owner != "" {
			bound[ep.owner] = true
		}
	}
	d.mu.Unlock()
	for owner, held := range d.cfg.IPAM.Owned(OwnerPrefix) {
		if bound[owner] {
			continue
		}
		for _, h := range held {
			if h.Addr() == a {
				if err := d.cfg.IPAM.Release(owner, h); err != nil {
					return fmt.Errorf("release %v: %w", h, err)
				}
			}
		}
	}
	return nil
}

// Endpoints counts the endpoints created and not deleted, for the report.
func (d *Driver) Endpoints() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.endpoints)
}

// Name is the driver's name.
func (d *Driver) Name() string { return d.cfg.Name }

func newOwner() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return OwnerPrefix + hex.EncodeToString(b[:])
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
