package main

import (
	"fmt"

	"github.com/urfave/cli/v3"

	"weavenet/fastdp"
	"weavenet/netdev"
	"weavenet/router"
)

// The fast datapath's flags and its setup: a VXLAN device on the bridge
// that carries known unicast between weavenet peers in the kernel (see
// package fastdp), where the link needs no encryption.

const (
	datapathAuto   = "auto"   // fastdp where both ends can, the sleeve elsewhere
	datapathFast   = "fastdp" // the same, but a VXLAN device that cannot be made is fatal
	datapathSleeve = "sleeve" // never the kernel path
)

func fastdpFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "datapath", Value: datapathAuto, Usage: "auto: unencrypted links between weavenet peers use the kernel's VXLAN (fast datapath) where its probes get through, the sleeve otherwise; fastdp: the same, and fail if the VXLAN device cannot be made; sleeve: never"},
		&cli.BoolFlag{Name: "no-fastdp", Usage: "the same as --datapath sleeve (Weave Net's flag)"},
		&cli.IntFlag{Name: "fastdp-port", Value: fastdp.DefaultPort, Usage: "UDP port of the fast datapath's VXLAN, the same on every peer (IANA's VXLAN port: not the sleeve's --port, and not 6784, weaved's HTTP API)"},
	}
}

type fastdpConfig struct {
	mode string
	port int
}

func fastdpConfigFrom(cmd *cli.Command) (fastdpConfig, error) {
	c := fastdpConfig{mode: cmd.String("datapath"), port: cmd.Int("fastdp-port")}
	if cmd.Bool("no-fastdp") {
		if cmd.IsSet("datapath") && c.mode != datapathSleeve {
			return c, fmt.Errorf("--no-fastdp and --datapath %s contradict each other", c.mode)
		}
		c.mode = datapathSleeve
	}
	switch c.mode {
	case datapathAuto, datapathFast, datapathSleeve:
	default:
		return c, fmt.Errorf("--datapath %q: want auto, fastdp or sleeve", c.mode)
	}
	if c.port < 1 || c.port > 65535 {
		return c, fmt.Errorf("--fastdp-port %d: want 1-65535", c.port)
	}
	return c, nil
}

// fastdpOff says why cfg gives no fast datapath at all, or "" if it may.
func fastdpOff(cfg config) string {
	switch {
	case cfg.fastdp.mode == datapathSleeve:
		return "--datapath sleeve on this peer"
	case cfg.mode == modeL3:
		return "L3 mode has no bridge for the VXLAN device"
	case cfg.compat:
		return "--weave-compat on this peer"
	case len(cfg.password) > 0 && len(cfg.trusted) == 0:
		// VXLAN authenticates nothing: with every link encrypted, a
		// VXLAN port would only let strangers onto the bridge.
		return "a password without --trusted-subnets: every link is encrypted"
	}
	return ""
}

// openFastdp fills in rcfg's fast datapath: the VXLAN device if cfg allows
// one, otherwise why not. Under --datapath auto a device that cannot be
// made leaves the sleeve, with a warning; under fastdp it is an error.
func (d *daemon) openFastdp(cfg config, rcfg *router.Config) error {
	if len(cfg.password) > 0 {
		if err := fastdp.ProbeESP(); err != nil {
			rcfg.EncryptedSleeve = "the kernel lacks IPsec ESP: " + err.Error()
		} else {
			rcfg.EncryptedSleeve = "the kernel has IPsec ESP, but weavenet's ESP datapath is not built yet"
		}
		d.log.Info("fastdp: encrypted links use the sleeve", "why", rcfg.EncryptedSleeve)
	}
	if why := fastdpOff(cfg); why != "" {
		rcfg.FastDatapathOff = why
		if cfg.mode != modeL3 {
			// One a daemon that died with the fast datapath on left
			// behind would still carry frames for the MACs it knew.
			if err := netdev.DeleteLink(fastdp.DeviceName(cfg.bridge)); err != nil {
				return err
			}
			// And its allow-list, which would drop datagrams to a port
			// nobody uses any more: harmless, but not ours to keep.
			if err := fastdp.RemoveAllowList(cfg.bridge); err != nil {
				d.log.Debug("fastdp: no leftover allow-list removed", "err", err)
			}
		}
		return nil
	}
	dev, err := fastdp.Open(fastdp.Config{
		Name: fastdp.DeviceName(cfg.bridge), Bridge: cfg.bridge, TAP: tapName(cfg.bridge),
		Port: cfg.fastdp.port, MTU: cfg.mtu, Logger: d.log,
	})
	if err != nil {
		if cfg.fastdp.mode == datapathFast {
			return fmt.Errorf("--datapath fastdp: %w", err)
		}
		d.log.Warn("fastdp: no VXLAN device, every link uses the sleeve", "err", err)
		rcfg.FastDatapathOff = "no VXLAN device: " + err.Error()
		return nil
	}
	rcfg.FastDatapath = dev
	table, _, _, off := dev.AllowList()
	d.log.Info("fastdp: VXLAN device ready", "device", dev.Name(), "port", dev.Port(), "vni", dev.VNI(), "allow_list", table, "allow_list_off", off)
	return nil
}
