package main

import (
	"strings"
	"testing"

	"weavenet/api"
)

func TestCheckOwner(t *testing.T) {
	for _, ok := range []string{"cni:weave:abc:eth0", "x"} {
		if err := checkOwner(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", exposeKey, strings.Repeat("a", api.MaxOwnerLen+1)} {
		if err := checkOwner(bad); err == nil {
			t.Errorf("%.20q accepted", bad)
		}
	}
}
