package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"weavenet/mesh"

	"weavenet/docker"
	"weavenet/internal/weavedb"
	"weavenet/ipam"
	"weavenet/netdev"
)

// Taking a Weave Net 2.x host over in place (--migrate-from FILE):
//
//  1. configFrom reads Weave Net's data file, read-only (it is locked while
//     Weave Net runs, so this also proves Weave Net has stopped): its peer
//     name becomes ours, and its containers' addresses are to be imported.
//     --migrate-names FILE adds the names of a report saved before Weave Net
//     stopped.
//  2. prepareMigration, before the mesh starts, records the import in the
//     data dir (migrationFile, with the peer name in gossip's peer-name
//     file, so later starts need neither flag) and removes Weave Net's own
//     ports from the bridge; the containers' ports stay.
//  3. importWeave, before the mesh starts, merges Weave Net's persisted
//     ring into ours, registers each container (its veth found among the
//     named namespaces) and claims its addresses, which belong to our peer
//     name in that ring and in the one the other peers gossip. Then the
//     containers' names are announced, and the import is marked done.

// migrationFile records an import in the data dir.
const migrationFile = "weave-migration.json"

// weavePorts are the bridge ports Weave Net made for itself (sleeve's pcap
// pair, fastdp's pair to its datapath): with Weave Net gone nothing reads
// them.
var weavePorts = []string{"vethwe-bridge", "vethwe-pcap", "vethwe-datapath"}

// migration is what was imported, and whether it is complete.
type migration struct {
	From     string
	PeerName string
	Owned    []weavedb.Owned
	Names    []weavedb.Name `json:",omitempty"`
	Ring     []byte         `json:",omitempty"` // Weave Net's persisted ring, gob
	Done     bool
	Started  time.Time
}

// migrateConfig reads Weave Net's data (and names) for --migrate-from.
func migrateConfig(from, namesFile string, c *config) error {
	if from == "" {
		if namesFile != "" {
			return errors.New("--migrate-names needs --migrate-from")
		}
		return nil
	}
	if c.mode == modeL3 {
		return errors.New("--migrate-from takes over a Weave Net bridge and its containers: it needs --mode bridge")
	}
	if done, err := migrationDone(c.dataDir); err != nil {
		return err
	} else if done != nil {
		// Imported already: Weave Net's file is not needed any more
		// (and may be gone); the name is in the data dir.
		if c.name != "" && !sameName(c.name, done.PeerName) {
			return fmt.Errorf("--name %s differs from the peer name %s taken over from Weave Net (%s)", c.name, done.PeerName, done.From)
		}
		c.name = done.PeerName
		return nil
	}
	data, err := weavedb.Read(from)
	if err != nil {
		return fmt.Errorf("--migrate-from: %w", err)
	}
	switch {
	case data.PeerName == mesh.UnknownPeerName && c.name == "":
		return fmt.Errorf("--migrate-from %s records no peer name (Weave Net ran without IPAM?): pass --name with the name Weave Net used (weave status shows it)", from)
	case data.PeerName == mesh.UnknownPeerName:
	case c.name != "" && !sameName(c.name, data.PeerName.String()):
		return fmt.Errorf("--name %s differs from the peer name %v Weave Net used on this host (%s): leave --name out", c.name, data.PeerName, from)
	default:
		c.name = data.PeerName.String()
	}
	m := &migration{From: from, PeerName: c.name, Owned: data.Owned, Ring: data.Ring}
	if namesFile != "" {
		writer, names, err := weavedb.ReadNames(namesFile)
		if err != nil {
			return fmt.Errorf("--migrate-names: %w", err)
		}
		_ = writer // any peer's report holds every name
		for _, n := range names {
			if n.Origin.String() == c.name {
				m.Names = append(m.Names, n)
			}
		}
	}
	c.migration = m
	return nil
}

func sameName(a, b string) bool {
	na, err1 := mesh.PeerNameFromUserInput(a)
	nb, err2 := mesh.PeerNameFromUserInput(b)
	return err1 == nil && err2 == nil && na == nb
}

// migrationDone returns the record of a completed import in dataDir, or nil.
func migrationDone(dataDir string) (*migration, error) {
	m, err := readMigration(dataDir)
	if err != nil || m == nil || !m.Done {
		return nil, err
	}
	return m, nil
}

func readMigration(dataDir string) (*migration, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, migrationFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	var m migration
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("--data-dir: %s: %w", migrationFile, err)
	}
	return &m, nil
}

func writeMigration(dataDir string, m *migration) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dataDir, migrationFile)
	if err := writeFileDurable(path, b, 0o600); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	return nil
}

// prepareMigration runs before the mesh starts: it keeps the import and the
// peer name in the data dir and clears Weave Net's ports off the bridge.
func (d *daemon) prepareMigration() error {
	cfg := d.cfg
	if cfg.migration == nil {
		return nil
	}
	// An unfinished import from before a restart goes on as recorded.
	if prev, err := readMigration(cfg.dataDir); err != nil {
		return err
	} else if prev != nil && sameName(prev.PeerName, cfg.name) {
		d.cfg.migration = prev
	} else {
		d.cfg.migration.Started = time.Now().UTC()
		if err := writeMigration(cfg.dataDir, d.cfg.migration); err != nil {
			return err
		}
	}
	// The data dir's own name, if it has one, must be Weave Net's: it
	// would be someone else's state otherwise.
	path := filepath.Join(cfg.dataDir, "peer-name")
	if b, err := os.ReadFile(path); err == nil {
		if !sameName(strings.TrimSpace(string(b)), cfg.name) {
			return fmt.Errorf("--data-dir %s belongs to peer %s, not to %s that Weave Net used: give a fresh --data-dir (or weave reset this one)", cfg.dataDir, strings.TrimSpace(string(b)), cfg.name)
		}
	} else if err := os.WriteFile(path, []byte(cfg.name+"\n"), 0o600); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	gone, err := netdev.RemoveBridgePorts(cfg.bridge, weavePorts...)
	if err != nil {
		return fmt.Errorf("taking over bridge %s: %w", cfg.bridge, err)
	}
	if len(gone) > 0 {
		d.log.Info("removed Weave Net's ports from the bridge", "bridge", cfg.bridge, "ports", gone)
	}
	if exists, _ := netdev.LinkExists("datapath"); exists {
		d.log.Warn("Weave Net's fast datapath device \"datapath\" is still there; weavenet does not use it")
	}
	return nil
}

// maxNetNS bounds the namespaces looked into for imported containers.
const maxNetNS = 4096

// importWeave registers the imported containers and, in the background,
// claims their addresses and announces their names. Call it once the
// daemon's background work can start (d.quit made).
func (d *daemon) importWeave() {
	m := d.cfg.migration
	if m == nil || m.Done {
		return
	}
	// Weave Net's own copy of the ring: this host's share is known even
	// if no other peer is up to gossip it (a stale copy loses the merge).
	if len(m.Ring) > 0 {
		if err := d.alloc.ImportWeaveRing(m.Ring); err != nil {
			d.log.Warn("Weave Net's persisted ring not imported; waiting for the ring from the other peers", "err", err)
		} else {
			d.log.Info("imported Weave Net's persisted ring")
		}
	}
	// Weave Net keyed a Docker container by its full ID, as weaved does:
	// with Docker followed, such a container is weaved's Docker container
	// from now on (its stops, starts and removal followed), found through
	// its process, and named as Weave Net named it, from its hostname,
	// unless the report says otherwise.
	d.dockerMu.Lock()
	defer d.dockerMu.Unlock()
	dockers := d.weaveDockerContainers(m.Owned)
	candidates := netnsCandidates()
	for _, c := range dockers {
		if p, err := c.NetNSPath(); err == nil {
			candidates = append(candidates, p)
		}
	}
	plugged, err := netdev.FindPlugged(d.cfg.bridge, candidates)
	if err != nil {
		d.log.Warn("looking for Weave Net's containers on the bridge", "err", err)
	}
	byAddr := map[netip.Addr]netdev.Plugged{}
	for _, p := range plugged {
		for _, a := range p.Addrs {
			byAddr[a.Addr()] = p
		}
	}
	for _, o := range m.Owned {
		if _, known := d.containers.get(o.ID); known {
			continue
		}
		if o.ID == exposeKey {
			// The host's (weave expose): on the bridge already, and in
			// IPAM below; only its name, if any, is kept here.
			if h := hostnameOf(m.Names, o.ID); h != "" {
				if err := d.containers.set(o.ID, &containerInfo{Hostname: h}); err != nil {
					d.log.Error("registering Weave Net's host name", "err", err)
				}
			}
			continue
		}
		info := containerInfo{Hostname: hostnameOf(m.Names, o.ID)}
		var found netdev.Plugged
		for _, a := range o.Addrs {
			if p, ok := byAddr[a.Addr()]; ok {
				found = p
				info.NetNS, info.HostIf, info.MAC = p.NetNS, p.HostIf, p.MAC
				break
			}
		}
		named := info.Hostname != ""
		if c, ok := dockers[o.ID]; ok {
			info.Docker = true
			if p, err := c.NetNSPath(); err == nil && info.NetNS != "" {
				info.NetNS = p // as weaved records a Docker container's
			}
			if info.Hostname == "" {
				info.Hostname = d.dockerHostname(&c)
			}
			if !named && info.Hostname != "" {
				for _, a := range o.Addrs {
					m.Names = append(m.Names, weavedb.Name{Hostname: info.Hostname, Container: o.ID, Addr: a.Addr()})
				}
			}
		}
		if info.NetNS != "" {
			// As if attached by us: the route to weaveDNS on the
			// bridge, MTU and link state; the pair is only checked.
			ac := d.attachConfig(info.NetNS, nil)
			ac.Existing, ac.HostIfName, ac.IfName = true, found.HostIf, found.IfName
			if _, _, err := netdev.Attach(ac); err != nil {
				d.log.Warn("Weave Net's container not taken up", "container", o.ID, "err", err)
			}
		}
		if info.NetNS == "" {
			d.log.Warn("Weave Net's container not found in any named network namespace: its addresses are kept, but weaved cannot tell when it goes (weave detach ID releases them)", "container", o.ID, "addrs", o.Addrs)
		}
		if err := d.containers.set(o.ID, &info); err != nil {
			d.log.Error("registering Weave Net's container", "container", o.ID, "err", err)
		}
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.claimImported(m)
	}()
}

// weaveDockerContainers returns the Docker containers, by ID, among those
// Weave Net had addresses for; none without Docker.
func (d *daemon) weaveDockerContainers(owned []weavedb.Owned) map[string]docker.Container {
	out := map[string]docker.Container{}
	if d.docker == nil {
		return out
	}
	for _, o := range owned {
		if o.ID == exposeKey {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
		c, err := d.docker.Resolve(ctx, o.ID)
		cancel()
		if err == nil && c.ID == o.ID {
			out[o.ID] = c
		} else if err != nil && !errors.Is(err, docker.ErrNotFound) {
			d.log.Warn("asking Docker about Weave Net's container", "container", o.ID, "err", err)
		}
	}
	return out
}

// netnsCandidates are the namespaces Weave Net's containers may live in:
// named ones (ip netns) and Docker's.
func netnsCandidates() []string {
	var out []string
	for _, dir := range []string{"/run/netns", "/var/run/docker/netns"} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if len(out) == maxNetNS {
				return out
			}
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

func hostnameOf(names []weavedb.Name, id string) string {
	for _, n := range names {
		if n.Container == id {
			return n.Hostname
		}
	}
	return ""
}

// claimImported claims every imported address for its container, retrying
// while the ring has not arrived or an owner is out of reach, then
// announces the names and marks the import done.
func (d *daemon) claimImported(m *migration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	failed := 0
	for _, o := range m.Owned {
		for _, a := range o.Addrs {
			for {
				err := d.alloc.Claim(ctx, o.ID, a)
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return
				}
				if errors.Is(err, ipam.ErrAddressInUse) {
					// Someone else holds it now (handed out
					// again after an rmpeer of this host?).
					d.log.Error("an address of Weave Net's container is held by another container: not imported", "container", o.ID, "addr", a, "err", err)
					failed++
					break
				}
				d.log.Info("waiting to claim Weave Net's address", "container", o.ID, "addr", a, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		}
		d.announceImported(m, o.ID)
		if o.ID == exposeKey {
			// The host's route to the range takes its exposed
			// address as source again, as Weave Net had it.
			if err := d.hostRoute(netip.Addr{}); err != nil {
				d.log.Warn("route to the range from the exposed address", "err", err)
			}
		}
	}
	m.Done = true
	if err := writeMigration(d.cfg.dataDir, m); err != nil {
		d.log.Error("recording the finished import", "err", err)
	}
	d.log.Info("took over Weave Net's containers", "from", m.From, "containers", len(m.Owned), "names", len(m.Names), "failed", failed)
}

// announceImported registers the container's names for the addresses it
// now holds.
func (d *daemon) announceImported(m *migration, id string) {
	if d.dns == nil {
		return
	}
	for _, n := range m.Names {
		if n.Container != id {
			continue
		}
		if err := d.dns.AddEntry(id, n.Hostname, n.Addr); err != nil {
			d.log.Warn("announcing Weave Net's name", "container", id, "name", n.Hostname, "err", err)
		}
	}
}
