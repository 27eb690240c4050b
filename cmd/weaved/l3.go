package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"weavenet/api"
	"weavenet/ipdev"
	"weavenet/tun"
)

// L3 mode: instead of a bridge for containers, the host itself joins the
// overlay through a TUN device. The TUN stands where the bridge would: the
// host's overlay address, the route to the range and weaveDNS's address go
// on it (config.bridge holds its name). The router sees it as one more
// Ethernet station, through ipdev. The TUN has virtio headers and offloads,
// so TCP crosses it in 64 KiB super-packets, as it crosses a bridge-mode
// TAP in super-frames.

const (
	modeBridge = "bridge"
	modeL3     = "l3"
)

// l3Host is the daemon's TUN and the ipdev station on it.
type l3Host struct {
	tun  *tun.TUN
	dev  *ipdev.TUNDevice // set once the peer name, and so the MAC, is known
	spec addrSpec         // --l3-address
	stop context.CancelFunc
}

// openL3 creates the TUN (up, with the overlay MTU) and the router Device
// that will sit on it.
func (d *daemon) openL3() (*l3Device, error) {
	cfg := d.cfg
	t, err := tun.OpenTUN(tun.TUNConfig{Name: cfg.bridge, MTU: cfg.mtu, VnetHdr: true, Offload: cfg.offload})
	if err != nil {
		return nil, fmt.Errorf("--l3-device %s: %w", cfg.bridge, err)
	}
	d.l3 = &l3Host{tun: t, spec: cfg.l3Addr}
	return &l3Device{h: d.l3}, nil
}

// startL3Station makes the TUN an Ethernet station whose MAC is the peer
// name, with the addresses the host already holds from before a restart.
func (d *daemon) startL3Station(m net.HardwareAddr) error {
	dev, err := ipdev.NewTUN(d.l3.tun, ipdev.Config{
		MAC:    m,
		Addrs:  d.alloc.Lookup(exposeKey),
		MTU:    d.cfg.mtu,
		Logger: d.log.With("component", "l3"),
	})
	if err != nil {
		return fmt.Errorf("--l3-device %s: %w", d.cfg.bridge, err)
	}
	d.l3.dev = dev
	return nil
}

// obtainL3Address gives the host its overlay address, in the background:
// from IPAM as weave expose does (an allocation may wait for the first
// peers to agree on the range), unless it already has one that fits
// --l3-address from before a restart.
func (d *daemon) obtainL3Address() {
	ctx, cancel := context.WithCancel(context.Background())
	d.l3.stop = cancel
	spec := d.l3.spec
	held := d.alloc.Lookup(exposeKey)
	if slices.ContainsFunc(held, func(p netip.Prefix) bool { return spec.matches(p, d.cfg.defaultSubnet) }) {
		d.log.Info("L3: host address", "addrs", prefixStrings(held), "device", d.cfg.bridge)
		return
	}
	req := api.AttachRequest{Addrs: []string{spec.String()}}
	go func() {
		for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
			resp, err := d.expose(ctx, req)
			if err == nil {
				d.log.Info("L3: host address", "addrs", resp.Addrs, "device", d.cfg.bridge)
				return
			}
			if ctx.Err() != nil {
				return
			}
			d.log.Warn("L3: no host address yet; retrying", "want", spec.String(), "err", err, "in", delay)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
		}
	}()
}

// syncL3Addrs tells the station which addresses the host holds now, after
// weave expose or hide.
func (d *daemon) syncL3Addrs() error {
	if d.l3 == nil || d.l3.dev == nil {
		return nil
	}
	return d.l3.dev.SetAddrs(d.alloc.Lookup(exposeKey))
}

func (d *daemon) stopL3() {
	if d.l3 != nil && d.l3.stop != nil {
		d.l3.stop()
	}
}

// String is the spec as the API takes it.
func (s addrSpec) String() string {
	switch {
	case !s.isNet:
		return s.claim.String()
	case s.subnet.IsValid():
		return "net:" + s.subnet.String()
	default:
		return "net:default"
	}
}

var errL3NoBridge = errors.New("this weaved runs in L3 mode (--mode l3): it has no bridge for containers; weave run and weave attach need a daemon in bridge mode")

// l3Device is the router's Device in L3 mode. The router needs its Device
// before the mesh gives us our peer name, and the station's MAC is that
// name, so the station is plugged in here just before the router starts.
type l3Device struct{ h *l3Host }

func (l *l3Device) Read(b []byte) (int, error)  { return l.h.dev.Read(b) }
func (l *l3Device) Write(b []byte) (int, error) { return l.h.dev.Write(b) }

func (l *l3Device) Close() error {
	if l.h.dev != nil {
		return l.h.dev.Close()
	}
	return l.h.tun.Close()
}

// l3Config reads the L3 flags into c.
func l3Config(mode, device, addr string, c *config) error {
	switch mode {
	case modeBridge:
		return nil
	case modeL3:
	default:
		return fmt.Errorf("--mode %q: want bridge or l3", mode)
	}
	c.mode = modeL3
	if device == "" || len(device) > 15 {
		return fmt.Errorf("--l3-device %q: want a name of 1-15 characters", device)
	}
	specs, none, err := parseAddrSpecs([]string{addr})
	if err != nil || none || len(specs) != 1 {
		return fmt.Errorf("--l3-address %q: want CIDR (10.32.0.5/12), net:default or net:CIDR", addr)
	}
	s := specs[0]
	if !s.isNet && (s.claim.Bits() == 0 || s.claim.Addr() == s.claim.Masked().Addr() && s.claim.Bits() < 31) {
		return fmt.Errorf("--l3-address %v: want a host address with its subnet, such as 10.32.0.5/12", s.claim)
	}
	if s.isNet && s.subnet.IsValid() && (!c.ipRange.Contains(s.subnet.Addr()) || s.subnet.Bits() < c.ipRange.Bits()) {
		return fmt.Errorf("--l3-address %s is not inside --ipalloc-range %v", addr, c.ipRange)
	}
	c.l3Addr = s
	// The TUN takes the bridge's place for addresses and routes.
	c.bridge = device
	return nil
}
