//go:build !linux

package cni

import (
	"errors"

	"github.com/containernetworking/cni/pkg/skel"
)

// NetFuncs fail on systems other than Linux, which have no veth pairs.
func NetFuncs() skel.CNIFuncs {
	fail := func(*skel.CmdArgs) error { return errors.New("weave-net: Linux only") }
	return skel.CNIFuncs{Add: fail, Del: fail, Check: fail, Status: fail, GC: fail}
}
