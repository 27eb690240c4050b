//go:build linux

package netdev

import (
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// HostIfNameOf is the host-side veth name Attach gives the container whose
// network namespace is at netnsPath. A daemon records it at attach time:
// once the namespace is gone it cannot be worked out again.
func HostIfNameOf(netnsPath string) (string, error) {
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return "", fmt.Errorf("netdev: open network namespace %s: %w", netnsPath, err)
	}
	defer ns.Close()
	name, err := hostIfName(ns)
	if err != nil {
		return "", fmt.Errorf("netdev: %s: %w", netnsPath, err)
	}
	return name, nil
}

// LinkExists reports whether the caller's namespace has an interface name.
func LinkExists(name string) (bool, error) {
	_, err := netlink.LinkByName(name)
	switch {
	case isLinkNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("netdev: look up %q: %w", name, err)
	}
	return true, nil
}

// WatchContainerLinksGone signals on the returned channel whenever a
// host-side container veth (one Attach made) is deleted in the caller's
// namespace, as the kernel does when a container's namespace goes away.
// Signals coalesce: one may stand for several deletions. The channel is
// closed when done is, or if the kernel ends the subscription.
func WatchContainerLinksGone(done <-chan struct{}) (<-chan struct{}, error) {
	updates := make(chan netlink.LinkUpdate, 64)
	if err := netlink.LinkSubscribe(updates, done); err != nil {
		return nil, fmt.Errorf("netdev: watch links: %w", err)
	}
	gone := make(chan struct{}, 1)
	go func() {
		defer close(gone)
		for u := range updates {
			if u.Header.Type != unix.RTM_DELLINK || u.Link == nil || !strings.HasPrefix(u.Link.Attrs().Name, hostIfPrefix) {
				continue
			}
			select {
			case gone <- struct{}{}:
			default: // one is pending already
			}
		}
	}()
	return gone, nil
}
