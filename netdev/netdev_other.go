//go:build !linux

package netdev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// DefaultIfName is the container-side interface name when none is given.
const DefaultIfName = "ethwe"

// AttachConfig describes how to plug one container into the bridge; see the
// Linux build for the meaning of each field.
type AttachConfig struct {
	Bridge     string
	NetNS      string
	IfName     string
	HostIfName string
	MTU        int
	Addrs      []netip.Prefix
	Routes     []netip.Prefix
}

// errUnsupported is what every function returns outside Linux, where there
// are no bridges, veths or network namespaces to drive. It exists so that
// packages importing netdev still compile there.
// ErrHostNamespace is Attach refusing the caller's own network namespace.
var ErrHostNamespace = errors.New("it is the host's own network namespace, not a container's")

var errUnsupported = fmt.Errorf("netdev: only implemented on Linux: %w", errors.ErrUnsupported)

// EnsureBridge always fails outside Linux.
func EnsureBridge(name string, mtu int) (bool, error) { return false, errUnsupported }

// DeleteLink always fails outside Linux.
func DeleteLink(name string) error { return errUnsupported }

// ContainerNetNSPath always fails outside Linux.
func ContainerNetNSPath(container string) (string, error) { return "", errUnsupported }

// Attach always fails outside Linux.
func Attach(cfg AttachConfig) (net.HardwareAddr, []netip.Prefix, error) {
	return nil, nil, errUnsupported
}

// Detach always fails outside Linux.
func Detach(netnsPath, ifName string, addrs []netip.Prefix) ([]netip.Prefix, error) {
	return nil, errUnsupported
}

// AddAddr is unsupported off Linux.
func AddAddr(link string, p netip.Prefix) error { return errUnsupported }

// DelAddr is unsupported off Linux.
func DelAddr(link string, p netip.Prefix) error { return errUnsupported }

// AddRoute is unsupported off Linux.
func AddRoute(link string, dst netip.Prefix, src netip.Addr) error { return errUnsupported }

// OverlappingRoutes is unsupported off Linux.
func OverlappingRoutes(p netip.Prefix, except string) ([]string, error) { return nil, errUnsupported }

// SetMAC is unsupported off Linux.
func SetMAC(link string, mac net.HardwareAddr) error { return errUnsupported }

// HostIfNameOf is Linux-only; see the Linux build.
func HostIfNameOf(netnsPath string) (string, error) { return "", errUnsupported }

// LinkExists is Linux-only; see the Linux build.
func LinkExists(name string) (bool, error) { return false, errUnsupported }

// WatchContainerLinksGone is Linux-only; see the Linux build.
func WatchContainerLinksGone(done <-chan struct{}) (<-chan struct{}, error) {
	return nil, errUnsupported
}

// RemoveBridgePorts is Linux-only; see the Linux build.
func RemoveBridgePorts(bridge string, names ...string) ([]string, error) { return nil, errUnsupported }

// Plugged is a container found plugged into a bridge; see the Linux build.
type Plugged struct {
	NetNS  string
	IfName string
	HostIf string
	MAC    string
	Addrs  []netip.Prefix
}

// FindPlugged is Linux-only; see the Linux build.
func FindPlugged(bridge string, nsPaths []string) ([]Plugged, error) { return nil, errUnsupported }
