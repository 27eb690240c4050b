package main

import (
	"strings"
	"testing"
)

func TestRunForm(t *testing.T) {
	for _, tc := range []struct {
		args   string
		addrs  int
		nsForm bool
		err    bool
	}{
		{"--name c1 -- sleep 1", 0, true, false},
		{"10.2.1.1/24 net:default --name=c1 -h c1.weave.local -- sleep 1", 2, true, false},
		{"--name c1", 0, true, false}, // the namespace form says -- CMD is missing
		{"-d --name c1 busybox top", 0, false, false},
		{"net:10.2.2.0/24 -d busybox", 1, false, false},
		{"busybox sh -c x", 0, false, false},
		{"--name c1 busybox top", 0, false, false},
		{"-d --name c1 -- top", 0, false, true},
		{"-d busybox sh -c x -- y", 0, false, true}, // the Docker form takes no bare --
	} {
		addrs, rest := splitRunAddrs(strings.Fields(tc.args))
		ns, err := isNamespaceForm(rest)
		if len(addrs) != tc.addrs || ns != tc.nsForm || (err != nil) != tc.err {
			t.Errorf("%q: addrs %v, namespace form %v, err %v; want %d addrs, %v, err %v", tc.args, addrs, ns, err, tc.addrs, tc.nsForm, tc.err)
		}
	}
}
