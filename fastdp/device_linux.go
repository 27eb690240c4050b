//go:build linux

package fastdp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Config says where the VXLAN device goes and how it is set up.
type Config struct {
	// Name of the VXLAN device (the default is DefaultName).
	Name string
	// Bridge is the weave bridge the device joins; TAP the router's port
	// on it, isolated from the VXLAN port (see the package doc).
	Bridge, TAP string
	// Port is the UDP port of VXLAN on every peer (the default is
	// DefaultPort); VNI the VXLAN network identifier (DefaultVNI).
	Port int
	VNI  uint32
	// MTU of the device: the overlay MTU.
	MTU int
	// NoAllowList leaves the VXLAN port open to every source address (no
	// nftables table; see AllowList). Tests of the device alone use it.
	NoAllowList bool
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultName = "vxlan-weave"
	// DefaultPort is IANA's VXLAN port. Weave Net's fast datapath used
	// 6784, which is weavenet's HTTP API (TCP, but firewalls and readers
	// confuse the two); the sleeve uses --port (6783). A fixed, separate
	// port lets a firewall tell the paths apart.
	DefaultPort = 4789
	// DefaultVNI is 0x576e ("Wn"): any fixed value every peer agrees on.
	DefaultVNI = 0x576e
)

// Device is the fast datapath's kernel side: the VXLAN device on the
// bridge, its forwarding entries, and the sockets that send probes and read
// those arriving through it. Its methods are safe for concurrent use.
type Device struct {
	cfg    Config
	link   netlink.Link
	probes *probeIO
	log    *slog.Logger
	// allow guards the port (nil without nftables; allowOff says why).
	allow    *AllowList
	allowOff string
}

// Open creates the VXLAN device (replacing a leftover one of the same name),
// attaches it to the bridge with the port flags the design needs, isolates
// the TAP port, and opens the probe sockets.
func Open(cfg Config) (_ *Device, err error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.VNI == 0 {
		cfg.VNI = DefaultVNI
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Port < 1 || cfg.Port > 65535 || cfg.VNI >= 1<<24 {
		return nil, fmt.Errorf("fastdp: port %d or VNI %d out of range", cfg.Port, cfg.VNI)
	}
	br, err := netlink.LinkByName(cfg.Bridge)
	if err != nil {
		return nil, fmt.Errorf("fastdp: bridge %q: %w", cfg.Bridge, err)
	}
	tap, err := netlink.LinkByName(cfg.TAP)
	if err != nil {
		return nil, fmt.Errorf("fastdp: TAP %q: %w", cfg.TAP, err)
	}
	if old, err := netlink.LinkByName(cfg.Name); err == nil {
		// A daemon that died left it: its entries are stale.
		if err := netlink.LinkDel(old); err != nil {
			return nil, fmt.Errorf("fastdp: remove leftover %q: %w", cfg.Name, err)
		}
	}
	d := &Device{cfg: cfg, log: cfg.Logger}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	// The allow-list goes in before the device opens the port, empty:
	// until the router lists its peers, the port takes nobody's frames.
	if cfg.NoAllowList {
		d.allowOff = "turned off"
	} else if d.allow, err = OpenAllowList(cfg.Bridge, cfg.Port); err != nil {
		d.allowOff = "nftables unavailable: " + err.Error()
		d.log.Warn("fastdp: no allow-list on the VXLAN port: any host that can reach it can put frames on the bridge", "port", cfg.Port, "err", err)
		err = nil
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = cfg.Name
	attrs.MTU = cfg.MTU
	vx := &netlink.Vxlan{LinkAttrs: attrs, VxlanId: int(cfg.VNI), Port: cfg.Port, Learning: false}
	if err := netlink.LinkAdd(vx); err != nil {
		return nil, fmt.Errorf("fastdp: create VXLAN device %q (port %d): %w", cfg.Name, cfg.Port, err)
	}
	if d.link, err = netlink.LinkByName(cfg.Name); err != nil {
		return nil, fmt.Errorf("fastdp: %q: %w", cfg.Name, err)
	}
	if err := netlink.LinkSetMaster(d.link, br); err != nil {
		return nil, fmt.Errorf("fastdp: attach %q to %q: %w", cfg.Name, cfg.Bridge, err)
	}
	// The kernel never floods to the VXLAN port nor learns on it; it and
	// the TAP never forward to each other.
	for _, a := range []int{nl.IFLA_BRPORT_LEARNING, nl.IFLA_BRPORT_UNICAST_FLOOD, nl.IFLA_BRPORT_MCAST_FLOOD, nl.IFLA_BRPORT_BCAST_FLOOD} {
		if err := setPortFlag(d.link, a, false); err != nil {
			return nil, fmt.Errorf("fastdp: port flag %d of %q: %w", a, cfg.Name, err)
		}
	}
	if err := setPortFlag(d.link, nl.IFLA_BRPORT_ISOLATED, true); err != nil {
		return nil, fmt.Errorf("fastdp: isolate %q: %w", cfg.Name, err)
	}
	if err := setPortFlag(tap, nl.IFLA_BRPORT_ISOLATED, true); err != nil {
		return nil, fmt.Errorf("fastdp: isolate %q: %w", cfg.TAP, err)
	}
	if err := netlink.LinkSetUp(d.link); err != nil {
		return nil, fmt.Errorf("fastdp: set %q up: %w", cfg.Name, err)
	}
	if d.probes, err = openProbeIO(d.link.Attrs().Index, cfg.Port, cfg.VNI, cfg.MTU); err != nil {
		return nil, err
	}
	return d, nil
}

// setPortFlag sets a boolean bridge port attribute (IFLA_BRPORT_*) of link.
func setPortFlag(link netlink.Link, attr int, on bool) error {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_BRIDGE)
	msg.Index = int32(link.Attrs().Index)
	req.AddData(msg)
	v := byte(0)
	if on {
		v = 1
	}
	br := nl.NewRtAttr(unix.IFLA_PROTINFO|unix.NLA_F_NESTED, nil)
	br.AddRtAttr(attr, []byte{v})
	req.AddData(br)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Port is the UDP port of VXLAN; VNI its network identifier; Name the
// device's.
func (d *Device) Port() int    { return d.cfg.Port }
func (d *Device) VNI() uint32  { return d.cfg.VNI }
func (d *Device) Name() string { return d.cfg.Name }
func (d *Device) ifindex() int { return d.link.Attrs().Index }

// Install sends frames for MAC m through the VXLAN device to the host at
// peer: the VXLAN entry first, then the bridge entry (see the package doc).
// Installing an installed MAC again moves it.
func (d *Device) Install(m [6]byte, peer netip.Addr) error {
	if !peer.Is4() {
		return fmt.Errorf("fastdp: install %s: %v is not IPv4", net.HardwareAddr(m[:]), peer)
	}
	self := &netlink.Neigh{
		LinkIndex: d.ifindex(), Family: unix.AF_BRIDGE, HardwareAddr: net.HardwareAddr(m[:]),
		IP: peer.AsSlice(), Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT | netlink.NUD_NOARP,
	}
	if err := netlink.NeighSet(self); err != nil {
		return fmt.Errorf("fastdp: VXLAN entry %s → %v: %w", net.HardwareAddr(m[:]), peer, err)
	}
	master := &netlink.Neigh{
		LinkIndex: d.ifindex(), Family: unix.AF_BRIDGE, HardwareAddr: net.HardwareAddr(m[:]),
		Flags: netlink.NTF_MASTER | netlink.NTF_STICKY, State: netlink.NUD_NOARP,
	}
	if err := netlink.NeighSet(master); err != nil {
		return fmt.Errorf("fastdp: bridge entry %s → %s: %w", net.HardwareAddr(m[:]), d.cfg.Name, err)
	}
	return nil
}

// Remove sends frames for MAC m, installed towards peer, back through the
// TAP: the bridge entry goes first, then the VXLAN entry. Missing entries
// are not an error.
func (d *Device) Remove(m [6]byte, peer netip.Addr) error {
	hw := net.HardwareAddr(m[:])
	master := &netlink.Neigh{LinkIndex: d.ifindex(), Family: unix.AF_BRIDGE, HardwareAddr: hw, Flags: netlink.NTF_MASTER}
	err1 := netlink.NeighDel(master)
	// The address too: without one the kernel looks for a default
	// destination's family, which this device has none of.
	self := &netlink.Neigh{LinkIndex: d.ifindex(), Family: unix.AF_BRIDGE, HardwareAddr: hw, Flags: netlink.NTF_SELF, IP: peer.AsSlice()}
	err2 := netlink.NeighDel(self)
	if err := errors.Join(ignoreMissing(err1), ignoreMissing(err2)); err != nil {
		return fmt.Errorf("fastdp: remove %s: %w", hw, err)
	}
	return nil
}

func ignoreMissing(err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
		return nil
	}
	return err
}

// SendProbes sends eth[i], an Ethernet frame, VXLAN-encapsulated to the
// VXLAN port of the host at to[i], for every i, in as few system calls as
// it can (see probes_linux.go). A probe refused on the way (EMSGSIZE for
// one too big for the path) does not keep the others; the first error is
// returned. The frames are not retained.
func (d *Device) SendProbes(to []netip.Addr, eth [][]byte) error { return d.probes.send(to, eth) }

// ReadProbes calls fn with each probe frame (Ethernet header first) that
// arrived through the device since the last call, without waiting, and
// returns how many. fn must not keep the frame.
func (d *Device) ReadProbes(fn func(eth []byte)) (int, error) { return d.probes.read(fn) }

// Counters are the VXLAN device's own, from the kernel.
type Counters struct {
	RxPackets, RxBytes, TxPackets, TxBytes, TxDropped uint64
}

// Counters reads the device's counters.
func (d *Device) Counters() (Counters, error) {
	l, err := netlink.LinkByIndex(d.ifindex())
	if err != nil {
		return Counters{}, fmt.Errorf("fastdp: %s: %w", d.cfg.Name, err)
	}
	s := l.Attrs().Statistics
	if s == nil {
		return Counters{}, nil
	}
	return Counters{RxPackets: s.RxPackets, RxBytes: s.RxBytes, TxPackets: s.TxPackets, TxBytes: s.TxBytes, TxDropped: s.TxDropped}, nil
}

// AllowPeers makes peers' addresses the only sources whose datagrams the
// VXLAN port accepts (nothing without an allow-list).
func (d *Device) AllowPeers(peers []netip.Addr) error {
	if d.allow == nil {
		return nil
	}
	return d.allow.Set(peers)
}

// AllowList describes the port's allow-list: its nftables table (family
// inet), how many peers it lists and how many datagrams it has dropped;
// or, with no list, why not (off).
func (d *Device) AllowList() (table string, peers int, dropped uint64, off string) {
	if d.allow == nil {
		return "", 0, 0, d.allowOff
	}
	dropped, _, err := d.allow.Dropped()
	if err != nil {
		d.log.Debug("fastdp: allow-list counter", "err", err)
	}
	return d.allow.Table(), len(d.allow.Peers()), dropped, ""
}

// Close deletes the VXLAN device (and with it every entry) and its
// allow-list, and closes the probe sockets.
func (d *Device) Close() error {
	var errs []error
	if d.probes != nil {
		errs = append(errs, d.probes.close())
	}
	if d.link != nil {
		if err := netlink.LinkDel(d.link); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("fastdp: delete %q: %w", d.cfg.Name, err))
		}
	}
	// After the device: the port stays guarded while it exists.
	if d.allow != nil {
		errs = append(errs, d.allow.Close())
	}
	return errors.Join(errs...)
}

// ByteCounters are the device's received and sent bytes.
func (d *Device) ByteCounters() (rx, tx uint64, err error) {
	c, err := d.Counters()
	return c.RxBytes, c.TxBytes, err
}

// Idle says, for each MAC with a VXLAN entry, how long since the kernel
// last sent a frame by it.
func (d *Device) Idle() (map[[6]byte]time.Duration, error) {
	ns, err := netlink.NeighList(d.ifindex(), unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("fastdp: list entries of %s: %w", d.cfg.Name, err)
	}
	out := make(map[[6]byte]time.Duration, len(ns))
	for _, n := range ns {
		if n.Flags&netlink.NTF_SELF == 0 || len(n.HardwareAddr) != 6 || n.LinkIndex != d.ifindex() {
			continue
		}
		// The kernel counts in USER_HZ ticks, 100 a second on Linux.
		out[[6]byte(n.HardwareAddr)] = time.Duration(n.Used) * time.Second / 100
	}
	return out, nil
}
