package wallclock

import (
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	base := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		now   time.Duration
		every time.Duration
		want  time.Duration
	}{
		{0, time.Second, time.Second},
		{300 * time.Millisecond, time.Second, 700 * time.Millisecond},
		{999 * time.Millisecond, time.Second, time.Millisecond},
		{7 * time.Second, 30 * time.Second, 23 * time.Second},
		{200 * time.Millisecond, 500 * time.Millisecond, 300 * time.Millisecond},
	} {
		if got := Until(base.Add(c.now), c.every); got != c.want {
			t.Errorf("Until(+%v, %v) = %v, want %v", c.now, c.every, got, c.want)
		}
	}
}

// Ticks keep coming (each timer set from Until), and none after Stop.
func TestTicker(t *testing.T) {
	const every = 50 * time.Millisecond
	tk := NewTicker(every)
	for range 3 {
		select {
		case <-tk.C:
		case <-time.After(10 * time.Second):
			t.Fatal("no tick")
		}
	}
	tk.Stop()
	select {
	case <-tk.C: // one may have been sent before Stop
	default:
	}
	select {
	case <-tk.C:
		t.Error("a tick after Stop")
	case <-time.After(3 * every):
	}
}
