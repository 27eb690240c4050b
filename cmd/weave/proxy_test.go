package main

import "testing"

func TestProxyEnv(t *testing.T) {
	const p = "unix:///var/run/weave/weave.sock"
	for _, tc := range []struct{ current, orig, want string }{
		{"", "", "export DOCKER_HOST=" + p + " ORIG_DOCKER_HOST=''"},
		{"tcp://1.2.3.4:2375", "", "export DOCKER_HOST=" + p + " ORIG_DOCKER_HOST=tcp://1.2.3.4:2375"},
		// A second eval keeps what the first saved.
		{p, "tcp://1.2.3.4:2375", "export DOCKER_HOST=" + p + " ORIG_DOCKER_HOST=tcp://1.2.3.4:2375"},
		{"unix:///it's here", "", "export DOCKER_HOST=" + p + ` ORIG_DOCKER_HOST='unix:///it'\''s here'`},
	} {
		if got := exportEnv(p, tc.current, tc.orig); got != tc.want {
			t.Errorf("exportEnv(%q, %q) = %s, want %s", tc.current, tc.orig, got, tc.want)
		}
	}
	if got := restoreEnv(""); got != "unset DOCKER_HOST ORIG_DOCKER_HOST" {
		t.Errorf("restoreEnv() = %s", got)
	}
	if got := restoreEnv("tcp://h:2375"); got != "export DOCKER_HOST=tcp://h:2375; unset ORIG_DOCKER_HOST" {
		t.Errorf("restoreEnv(tcp) = %s", got)
	}
}
