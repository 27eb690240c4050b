package main

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckClaim(t *testing.T) {
	dns := netip.MustParseAddr("169.254.53.53")
	other := netip.MustParseAddr("10.99.0.53") // a --dns-address outside link-local
	cases := []struct {
		claim string
		dns   netip.Addr
		want  string // in the error; empty for accepted
	}{
		{"10.32.0.1/12", dns, ""},
		{"10.2.1.2/24", dns, ""},
		{"192.168.0.9/32", dns, ""},
		{"10.0.0.1/8", dns, ""},
		{"255.255.255.255/32", dns, "broadcast"},
		{"169.254.53.53/32", dns, "weaveDNS"},
		{"10.99.0.53/24", other, "weaveDNS"},
		{"169.254.1.1/16", other, "link-local"},
		{"127.0.0.1/8", dns, "loopback"},
		{"224.0.0.5/24", dns, "multicast"},
		{"239.1.2.3/32", dns, "multicast"},
		{"0.0.0.0/8", dns, "unspecified"},
		{"1.2.3.4/0", dns, "/0"},
		{"10.2.1.2/7", dns, "shorter than /8"},
	}
	for _, c := range cases {
		err := checkClaim(netip.MustParsePrefix(c.claim), c.dns)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s refused: %v", c.claim, err)
		case c.want != "" && err == nil:
			t.Errorf("%s accepted", c.claim)
		case err != nil && (!strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n")):
			t.Errorf("%s: %q, want one line naming %q", c.claim, err, c.want)
		}
	}
}
