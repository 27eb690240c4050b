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
		args []string
		env  string
		want bool
	}{
		{nil, "", true},
		{nil, "false", false},
		{nil, "0", false},
		{nil, "bogus", true},
		{[]string{"--low-latency"}, "false", true},
		{[]string{"-low-latency"}, "", true},
		{[]string{"--low-latency=false"}, "", false},
		{[]string{"--low-latency=true", "10.0.0.1"}, "", true},
		{nil, "true", true},
		{nil, "1", true},
		{[]string{"--low-latency=false"}, "true", false},
		{[]string{"--", "--low-latency=false"}, "", true},
		{[]string{"--low-latency-x=false"}, "", true},
		{[]string{"low-latency=false"}, "", true},
		{[]string{"-low-latency=0"}, "", false},
	} {
		if got := lowLatency(tc.args, tc.env); got != tc.want {
			t.Errorf("lowLatency(%q, %q) = %v; want %v", tc.args, tc.env, got, tc.want)
		}
	}
}
