// Package wallclock schedules periodic work on the wall clock's multiples
// of its period (whole seconds, whole half minutes), rather than at
// whatever phase a ticker happened to start.
//
// An idle daemon's cost is its wake-ups, not its work. Every periodic loop
// of a process that ticks on the same instants is served by one wake-up;
// each loop with a phase of its own adds one of its own every period, and
// so does each peer's: peers whose clocks NTP keeps close send their
// periodic datagrams and gossip at the same moments, and a daemon reads a
// whole burst at once.
package wallclock

import (
	"sync"
	"time"
)

// Until is how long from now until the next multiple of every on the wall
// clock (every itself when now is one).
func Until(now time.Time, every time.Duration) time.Duration {
	return every - time.Duration(now.UnixNano()%int64(every))
}

// A Ticker sends the time on C at each multiple of its period on the wall
// clock. Like time.Ticker it drops ticks for a slow receiver; unlike it, a
// tick that comes late (a loaded machine, a clock stepped by NTP) does not
// shift the ones after it.
type Ticker struct {
	C <-chan time.Time

	c     chan time.Time
	every time.Duration

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

// NewTicker starts a Ticker of period every, which must be positive.
func NewTicker(every time.Duration) *Ticker {
	c := make(chan time.Time, 1)
	tk := &Ticker{C: c, c: c, every: every}
	tk.mu.Lock()
	defer tk.mu.Unlock()
	tk.t = time.AfterFunc(Until(time.Now(), every), tk.fire)
	return tk
}

func (tk *Ticker) fire() {
	now := time.Now()
	select {
	case tk.c <- now:
	default:
	}
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if tk.stopped {
		return
	}
	d := Until(now, tk.every)
	// A timer runs on the monotonic clock, so it may fire a hair before
	// the wall clock's instant if the wall clock is being slowed: that
	// instant is the one just served, not the next.
	if d < tk.every/8 {
		d += tk.every
	}
	tk.t.Reset(d)
}

// Stop ends the ticks. It does not close C.
func (tk *Ticker) Stop() {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	tk.stopped = true
	tk.t.Stop()
}
