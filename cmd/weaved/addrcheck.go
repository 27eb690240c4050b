package main

import (
	"fmt"
	"net/netip"
)

// minPrefixBits is the shortest prefix a container or the host may be
// given: a shorter one puts a route to most of the Internet on the weave
// interface and takes over the namespace's default route in all but name.
const minPrefixBits = 8

// limitedBroadcast is 255.255.255.255, which no interface may hold.
var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// checkClaim refuses an address no container should be given, with what to
// do instead: the kernel would take most of them, and the result is a
// container that cannot talk (loopback, broadcast), one that answers for
// weaveDNS, or one whose route swallows the host's traffic.
func checkClaim(p netip.Prefix, dnsAddr netip.Addr) error {
	a := p.Addr()
	switch {
	case a == limitedBroadcast:
		return fmt.Errorf("%v is the broadcast address, which no container can hold; give a unicast address such as 10.2.1.2/24", p)
	case dnsAddr.IsValid() && a == dnsAddr:
		return fmt.Errorf("%v is weaveDNS's address (--dns-address); give the container another one", p)
	case a.IsUnspecified():
		return fmt.Errorf("%v is the unspecified address; give a unicast address such as 10.2.1.2/24, or net:default", p)
	case a.IsLoopback():
		return fmt.Errorf("%v is a loopback address, which every namespace has of its own; give one outside 127.0.0.0/8", p)
	case a.IsMulticast():
		return fmt.Errorf("%v is a multicast address; give a unicast address such as 10.2.1.2/24", p)
	case a.IsLinkLocalUnicast():
		return fmt.Errorf("%v is link-local (169.254.0.0/16, where weaveDNS lives); give one outside it", p)
	}
	return checkPrefixLen(p)
}

// checkPrefixLen refuses a subnet shorter than minPrefixBits.
func checkPrefixLen(p netip.Prefix) error {
	if p.Bits() < minPrefixBits {
		return fmt.Errorf("%v: a prefix shorter than /%d would route most of the Internet to the weave network; give the subnet's own length, such as /24", p, minPrefixBits)
	}
	return nil
}
