package ipdev

import (
	"os"
	"sync"
	"time"
)

// fakeKernelTUN is a tunFile in memory, as a TUN opened with virtio headers
// behaves: reads put on in (virtio header and packet) come out of Read,
// writes go to out. Its read deadline acts as the kernel file's: once set
// in the past, every Read fails at once with os.ErrDeadlineExceeded until
// it is cleared.
type fakeKernelTUN struct {
	in, out chan []byte

	mu      sync.Mutex
	expired chan struct{} // closed while the deadline is past
	wakes   int           // how often the deadline was set in the past

	done chan struct{}
	once sync.Once
}

func newFakeKernelTUN() *fakeKernelTUN {
	return &fakeKernelTUN{
		in:      make(chan []byte, 64),
		out:     make(chan []byte, 64),
		expired: make(chan struct{}),
		done:    make(chan struct{}),
	}
}

func (f *fakeKernelTUN) Read(b []byte) (int, error) {
	f.mu.Lock()
	expired := f.expired
	f.mu.Unlock()
	select {
	case <-expired:
		return 0, os.ErrDeadlineExceeded
	case <-f.done:
		return 0, os.ErrClosed
	default:
	}
	select {
	case p := <-f.in:
		return copy(b, p), nil
	case <-expired:
		return 0, os.ErrDeadlineExceeded
	case <-f.done:
		return 0, os.ErrClosed
	}
}

func (f *fakeKernelTUN) Write(b []byte) (int, error) {
	select {
	case f.out <- append([]byte(nil), b...):
		return len(b), nil
	case <-f.done:
		return 0, os.ErrClosed
	}
}

func (f *fakeKernelTUN) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	past := !t.IsZero() && !t.After(time.Now())
	select {
	case <-f.expired:
		if !past {
			f.expired = make(chan struct{})
		}
	default:
		if past {
			close(f.expired)
		}
	}
	if past {
		f.wakes++
	}
	return nil
}

func (f *fakeKernelTUN) Close() error {
	f.once.Do(func() { close(f.done) })
	return nil
}

// loopKernelTUN hands out the same read forever and swallows writes, so
// the data path can be measured alone.
type loopKernelTUN struct {
	read []byte
	done chan struct{}
}

func (l *loopKernelTUN) Read(b []byte) (int, error) {
	select {
	case <-l.done:
		return 0, os.ErrClosed
	default:
		return copy(b, l.read), nil
	}
}

func (l *loopKernelTUN) Write(b []byte) (int, error)     { return len(b), nil }
func (l *loopKernelTUN) SetReadDeadline(time.Time) error { return nil }
func (l *loopKernelTUN) Close() error                    { close(l.done); return nil }
