//go:build !linux

package plugin

import (
	"context"
	"errors"
	"net"
)

var errUnsupported = errors.New("the Docker network plugin needs Linux")

// VethLinks makes endpoints' pairs; only on Linux.
type VethLinks struct {
	Bridge string
	MTU    int
}

// Create fails: veth pairs are Linux's.
func (VethLinks) Create(context.Context, string, string, net.HardwareAddr, int) error {
	return errUnsupported
}

// Delete fails: veth pairs are Linux's.
func (VethLinks) Delete(string) error { return errUnsupported }

func peerPID(*net.UnixConn) int { return 0 }

// SharesNetNS fails: network namespaces are Linux's.
func SharesNetNS(string) (bool, error) { return false, errUnsupported }
