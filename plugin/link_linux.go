package plugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VethLinks makes endpoints' pairs with netlink: the host end in Bridge,
// both ends with the overlay's MTU.
type VethLinks struct {
	Bridge string
	MTU    int
}

// Create makes the pair. Its container end is created directly in the
// engine's network namespace (which is not ours when weaved runs in a
// namespace of its own, as on the test hosts), because the engine looks
// the name up in its own namespace to move it into the container.
func (l VethLinks) Create(_ context.Context, hostIf, peerIf string, peerMAC net.HardwareAddr, peerPID int) error {
	br, err := netlink.LinkByName(l.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %q: %w (is weaved running?)", l.Bridge, err)
	}
	if err := l.Delete(hostIf); err != nil {
		return err
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = hostIf
	attrs.MTU = l.MTU
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: peerIf, PeerMTU: uint32(max(l.MTU, 0)), PeerHardwareAddr: peerMAC}
	if peerPID > 0 {
		f, err := os.Open("/proc/" + strconv.Itoa(peerPID) + "/ns/net")
		if err != nil {
			return fmt.Errorf("the Docker Engine's network namespace: %w", err)
		}
		defer f.Close()
		veth.PeerNamespace = netlink.NsFd(int(f.Fd()))
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth pair %s/%s: %w", hostIf, peerIf, err)
	}
	host, err := netlink.LinkByName(hostIf)
	if err == nil {
		err = netlink.LinkSetMasterByIndex(host, br.Attrs().Index)
	}
	if err == nil {
		err = netlink.LinkSetUp(host)
	}
	if err != nil {
		_ = netlink.LinkDel(veth) // takes the peer with it
		return fmt.Errorf("plug %s into %s: %w", hostIf, l.Bridge, err)
	}
	return nil
}

// Delete removes the pair by its host end, wherever the other end is.
func (l VethLinks) Delete(hostIf string) error {
	link, err := netlink.LinkByName(hostIf)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", hostIf, err)
	}
	if _, ok := link.(*netlink.Veth); !ok {
		return fmt.Errorf("%s is a %s device, not an endpoint's veth: remove it by hand", hostIf, link.Type())
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", hostIf, err)
	}
	return nil
}

// peerPID is the process at the other end of a unix connection.
func peerPID(c *net.UnixConn) int {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	_ = raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}

// SharesNetNS reports whether the process serving the unix socket at path
// (the Docker Engine) is in this process's network namespace.
func SharesNetNS(path string) (bool, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return false, err
	}
	defer c.Close()
	pid := peerPID(c.(*net.UnixConn))
	if pid <= 0 {
		return false, fmt.Errorf("%s: no peer credentials", path)
	}
	var own, theirs unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &own); err != nil {
		return false, err
	}
	if err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/ns/net", &theirs); err != nil {
		return false, err
	}
	return own.Dev == theirs.Dev && own.Ino == theirs.Ino, nil
}
