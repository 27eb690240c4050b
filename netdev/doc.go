// Package netdev owns the kernel plumbing between the host and its
// containers: the host bridge the router's TAP joins, and the veth pairs
// that plug container network namespaces into that bridge.
//
// Everything goes through netlink and namespace file descriptors, never
// through the ip command, so the daemon needs no external tools and gets
// errors it can inspect. Functions act on the caller's current network
// namespace for the host side (the daemon runs in the host's namespace) and
// reach into a container's namespace with a netlink handle opened there,
// which leaves the calling thread's namespace untouched. The one thing
// netlink cannot set, a sysctl of the container's interface, is written
// from a goroutine whose locked thread visits the namespace (inNetNS).
package netdev
