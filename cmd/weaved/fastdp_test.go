package main

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/urfave/cli/v3"
)

func TestFastdpConfig(t *testing.T) {
	for _, c := range []struct {
		args    []string
		mode    string
		port    int
		wantErr string
	}{
		{nil, datapathAuto, 4789, ""},
		{[]string{"--datapath", "fastdp"}, datapathFast, 4789, ""},
		{[]string{"--no-fastdp"}, datapathSleeve, 4789, ""},
		{[]string{"--no-fastdp", "--datapath", "sleeve"}, datapathSleeve, 4789, ""},
		{[]string{"--no-fastdp", "--datapath", "fastdp"}, "", 0, "contradict"},
		{[]string{"--datapath", "odp"}, "", 0, "want auto, fastdp or sleeve"},
		{[]string{"--fastdp-port", "0"}, "", 0, "want 1-65535"},
		{[]string{"--fastdp-port", "8472"}, datapathAuto, 8472, ""},
	} {
		var got fastdpConfig
		var err error
		cmd := &cli.Command{Flags: fastdpFlags(), Action: func(_ context.Context, cmd *cli.Command) error {
			got, err = fastdpConfigFrom(cmd)
			return nil
		}}
		if rerr := cmd.Run(context.Background(), append([]string{"weaved"}, c.args...)); rerr != nil {
			t.Fatalf("%v: %v", c.args, rerr)
		}
		switch {
		case c.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%v: error %v, want one with %q", c.args, err, c.wantErr)
			}
		case err != nil || got.mode != c.mode || got.port != c.port:
			t.Errorf("%v: %+v, %v; want mode %s port %d", c.args, got, err, c.mode, c.port)
		}
	}
}

func TestFastdpOff(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, c := range []struct {
		cfg  config
		want string
	}{
		{config{fastdp: fastdpConfig{mode: datapathAuto}}, ""},
		{config{fastdp: fastdpConfig{mode: datapathSleeve}}, "--datapath sleeve"},
		{config{fastdp: fastdpConfig{mode: datapathAuto}, mode: modeL3}, "L3 mode"},
		{config{fastdp: fastdpConfig{mode: datapathAuto}, compat: true}, "--weave-compat"},
		{config{fastdp: fastdpConfig{mode: datapathAuto}, password: []byte("x")}, "every link is encrypted"},
		{config{fastdp: fastdpConfig{mode: datapathAuto}, password: []byte("x"), trusted: trusted}, ""},
	} {
		if got := fastdpOff(c.cfg); (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%+v: %q, want %q", c.cfg.fastdp, got, c.want)
		}
	}
}
