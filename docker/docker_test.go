package docker

import (
	"path/filepath"
	"testing"

	"github.com/docker/docker/api/types/events"
)

func TestToEvent(t *testing.T) {
	for _, tc := range []struct {
		m    events.Message
		want Event
		ok   bool
	}{
		{events.Message{Type: events.ContainerEventType, Action: events.ActionStart, Actor: events.Actor{ID: "abc"}}, Event{Started, "abc"}, true},
		{events.Message{Type: events.ContainerEventType, Action: events.ActionDie, Actor: events.Actor{ID: "abc"}}, Event{Died, "abc"}, true},
		{events.Message{Type: events.ContainerEventType, Action: events.ActionDestroy, Actor: events.Actor{ID: "abc"}}, Event{Destroyed, "abc"}, true},
		{events.Message{Type: events.ContainerEventType, Action: events.ActionKill, Actor: events.Actor{ID: "abc"}}, Event{}, false},
		{events.Message{Type: events.NetworkEventType, Action: events.ActionDestroy, Actor: events.Actor{ID: "abc"}}, Event{}, false},
		{events.Message{Type: events.ContainerEventType, Action: events.ActionStart}, Event{}, false},
	} {
		got, ok := toEvent(tc.m)
		if ok != tc.ok || got != tc.want {
			t.Errorf("toEvent(%s %s %q) = %v %v, want %v %v", tc.m.Type, tc.m.Action, tc.m.Actor.ID, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSocketExists(t *testing.T) {
	if SocketExists("unix://" + filepath.Join(t.TempDir(), "none.sock")) {
		t.Error("a missing socket exists")
	}
	if !SocketExists("tcp://127.0.0.1:2375") {
		t.Error("a TCP address is only known by connecting: should be tried")
	}
}

func TestShortID(t *testing.T) {
	if got := ShortID("0123456789abcdef0123"); got != "0123456789ab" {
		t.Errorf("ShortID = %q", got)
	}
	if got := ShortID("abc"); got != "abc" {
		t.Errorf("ShortID(short) = %q", got)
	}
}
