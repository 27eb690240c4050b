package main

import (
	"slices"
	"testing"
)

func TestMonitorEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		goos    string
		environ []string
		want    []string // nil: no re-execution
	}{
		{"no GODEBUG", "linux", []string{"PATH=/bin"}, []string{"GODEBUG=schedtrace=2147483647", "PATH=/bin"}},
		{"user settings kept", "linux", []string{"GODEBUG=madvdontneed=1", "HOME=/"}, []string{"GODEBUG=madvdontneed=1,schedtrace=2147483647", "HOME=/"}},
		{"empty GODEBUG", "linux", []string{"GODEBUG="}, []string{"GODEBUG=schedtrace=2147483647"}},
		{"user's schedtrace wins", "linux", []string{"GODEBUG=schedtrace=1000"}, nil},
		{"already re-executed", "linux", []string{"GODEBUG=schedtrace=2147483647"}, nil},
		{"not linux", "darwin", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := monitorEnv(tc.goos, tc.environ)
			if ok != (tc.want != nil) || !slices.Equal(got, tc.want) {
				t.Fatalf("monitorEnv(%q, %q) = %q, %v; want %q", tc.goos, tc.environ, got, ok, tc.want)
			}
		})
	}
}

func TestLowLatency(t *testing.T) {
	for _, tc := range []struct {
		set, on   bool
		sleeveWhy string
		want      bool
	}{
		{false, false, "", false},
		{false, false, "a password without --trusted-subnets: every link is encrypted", true},
		{true, true, "", true},
		{true, false, "--datapath sleeve on this peer", false},
	} {
		if got := lowLatency(tc.set, tc.on, tc.sleeveWhy); got != tc.want {
			t.Errorf("lowLatency(%v, %v, %q) = %v; want %v", tc.set, tc.on, tc.sleeveWhy, got, tc.want)
		}
	}
}
