package main

import (
	"context"
	"testing"

	"github.com/urfave/cli/v3"
)

func TestPluginConfig(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		env      string // WEAVE_NO_PLUGIN
		on       bool
		explicit bool
		plugin   string
		err      bool
	}{
		{name: "default", on: true, plugin: "weave"},
		{name: "off", args: []string{"--no-plugin"}},
		{name: "off by env", env: "1"},
		{name: "named", args: []string{"--plugin-name", "wn1-h1"}, on: true, explicit: true, plugin: "wn1-h1"},
		{name: "named wins over env", args: []string{"--plugin-name", "wn1-h1"}, env: "1", on: true, explicit: true, plugin: "wn1-h1"},
		{name: "bad name", args: []string{"--plugin-name", "../x"}, err: true},
		{name: "empty name", args: []string{"--plugin-name", ""}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WEAVE_NO_PLUGIN", tc.env)
			var got pluginConfig
			var gotErr error
			cmd := &cli.Command{Name: "weaved", Flags: pluginFlags(), Action: func(_ context.Context, cmd *cli.Command) error {
				got, gotErr = pluginConfigFrom(cmd)
				return nil
			}}
			if err := cmd.Run(context.Background(), append([]string{"weaved"}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			if (gotErr != nil) != tc.err {
				t.Fatalf("error %v, want error: %v", gotErr, tc.err)
			}
			if tc.err {
				return
			}
			if got.on != tc.on || got.explicit != tc.explicit || (tc.on && got.name != tc.plugin) {
				t.Errorf("got %+v", got)
			}
		})
	}
}
