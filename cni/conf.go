package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"weavenet/api"
)

// SupportedVersions are the spec versions both plugins accept. Versions
// before 0.3.0 had a result without interfaces, which no runtime still
// sends.
var SupportedVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// PluginInfo is what VERSION reports.
func PluginInfo() version.PluginInfo { return version.PluginSupports(SupportedVersions...) }

// Defaults of the configuration.
const (
	DefaultBridge = api.DefaultBridge
	// OwnerPrefix starts every allocation owner the plugins make, so that
	// they never collide with containers weave attach plugged in.
	OwnerPrefix = "cni:"
)

// NetConf is weave-net's configuration (one entry of a conflist).
type NetConf struct {
	types.PluginConf
	// Daemon is weaved's API address, unix:///PATH or HOST:PORT. Absent,
	// it is $WEAVE_HTTP_ADDR if the runtime passes that on, else
	// api.DefaultAddr (unix:///var/run/weave/weaved.sock).
	Daemon string `json:"daemon,omitempty"`
	// Bridge is weaved's bridge (default weave).
	Bridge string `json:"bridge,omitempty"`
	// MTU of the pod's interface; 0 takes the overlay's from weaved.
	MTU int `json:"mtu,omitempty"`
	// HairpinMode lets a pod reach itself through a service address
	// (default true, as Weave Net's plugin did).
	HairpinMode *bool `json:"hairpinMode,omitempty"`
	// IPAM shadows PluginConf's: empty Type allocates in-process from
	// weaved, as weave-ipam would; another type is executed as a delegate.
	IPAM IPAMConf `json:"ipam,omitempty"`

	// Refused: Weave Net's plugin refused them too; the host reaches pods
	// through weave expose, and masquerading is the host's business.
	IsGateway bool `json:"isGateway,omitempty"`
	IPMasq    bool `json:"ipMasq,omitempty"`
}

// IPAMConf is the ipam section, as weave-ipam reads it.
type IPAMConf struct {
	Type string `json:"type,omitempty"`
	// Daemon overrides the top-level daemon address for weave-ipam.
	Daemon string `json:"daemon,omitempty"`
	// Subnet to allocate from (inside weaved's --ipalloc-range); empty
	// takes weaved's default subnet.
	Subnet string `json:"subnet,omitempty"`
	// Routes go into the result; one without a gateway goes via the
	// bridge's address (weave-net) or stays on-link (weave-ipam alone).
	Routes []*types.Route `json:"routes,omitempty"`
}

// IPAMNetConf is what weave-ipam reads of the whole network configuration.
type IPAMNetConf struct {
	types.PluginConf
	Daemon string   `json:"daemon,omitempty"`
	IPAM   IPAMConf `json:"ipam,omitempty"`
}

// ParseNetConf decodes and checks weave-net's configuration.
func ParseNetConf(b []byte) (*NetConf, error) {
	var c NetConf
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("weave-net: configuration: %w", err)
	}
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if c.HairpinMode == nil {
		t := true
		c.HairpinMode = &t
	}
	if err := checkCommon(&c.PluginConf, &c.Daemon, &c.IPAM); err != nil {
		return nil, fmt.Errorf("weave-net: configuration: %w", err)
	}
	switch {
	case c.IsGateway:
		return nil, fmt.Errorf("weave-net: configuration: isGateway is not supported: the bridge's address comes from weaved (weave expose)")
	case c.IPMasq:
		return nil, fmt.Errorf("weave-net: configuration: ipMasq is not supported")
	case c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535):
		return nil, fmt.Errorf("weave-net: configuration: mtu %d: want 576..65535, or 0 for the overlay's", c.MTU)
	case len(c.Bridge) > 15 || strings.ContainsAny(c.Bridge, "/ :"):
		return nil, fmt.Errorf("weave-net: configuration: bridge %q is not an interface name", c.Bridge)
	}
	return &c, nil
}

// ParseIPAMNetConf decodes and checks weave-ipam's view of the
// configuration.
func ParseIPAMNetConf(b []byte) (*IPAMNetConf, error) {
	var c IPAMNetConf
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("weave-ipam: configuration: %w", err)
	}
	if c.IPAM.Daemon != "" {
		c.Daemon = c.IPAM.Daemon
	}
	if err := checkCommon(&c.PluginConf, &c.Daemon, &c.IPAM); err != nil {
		return nil, fmt.Errorf("weave-ipam: configuration: %w", err)
	}
	return &c, nil
}

func checkCommon(pc *types.PluginConf, daemon *string, ipam *IPAMConf) error {
	if pc.Name == "" {
		return fmt.Errorf("no network name")
	}
	if strings.Contains(pc.Name, ":") {
		return fmt.Errorf("network name %q: no colons", pc.Name)
	}
	if pc.CNIVersion == "" {
		pc.CNIVersion = "0.3.0" // what the spec says an absent version means for results
	}
	if _, _, _, err := version.ParseVersion(pc.CNIVersion); err != nil {
		return fmt.Errorf("cniVersion: %w", err)
	}
	if *daemon == "" {
		*daemon = api.AddrFromEnv()
	}
	if _, err := api.ParseAddr(*daemon); err != nil {
		return fmt.Errorf("daemon: %w (weaved's --http-addr)", err)
	}
	if ipam.Subnet != "" {
		p, err := netip.ParsePrefix(ipam.Subnet)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("ipam subnet %q: want an IPv4 CIDR inside weaved's --ipalloc-range", ipam.Subnet)
		}
	}
	for _, r := range ipam.Routes {
		if r == nil || r.Dst.IP == nil {
			return fmt.Errorf("ipam routes: a route without dst")
		}
	}
	return nil
}

// Owner is the allocation owner of an attachment: the network, the
// container and the interface, so that a retried ADD finds the address it
// got and GC can match owners with the runtime's valid attachments. None of
// the three can hold a colon (the network name is checked; container IDs
// and interface names are validated by the CNI skeleton).
func Owner(network, containerID, ifName string) string {
	return OwnerPrefix + network + ":" + containerID + ":" + ifName
}

// ParseOwner splits an owner made by Owner for network; ok is false for
// owners of other networks or of anything else.
func ParseOwner(network, owner string) (containerID, ifName string, ok bool) {
	rest, found := strings.CutPrefix(owner, OwnerPrefix+network+":")
	if !found {
		return "", "", false
	}
	containerID, ifName, found = strings.Cut(rest, ":")
	if !found || containerID == "" || ifName == "" || strings.Contains(ifName, ":") {
		return "", "", false
	}
	return containerID, ifName, true
}
