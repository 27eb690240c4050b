package ipdev

import (
	"os"
	"sync"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// fakeTUN is a tun.Device in memory: packets put on in come out of Read (up
// to a batch at a time), packets written go to out.
type fakeTUN struct {
	in        chan []byte
	out       chan []byte
	events    chan wgtun.Event
	batchSize int
	mtu       int
	done      chan struct{}
	once      sync.Once
}

func newFakeTUN(batchSize int) *fakeTUN {
	return &fakeTUN{
		in:        make(chan []byte, 64),
		out:       make(chan []byte, 64),
		events:    make(chan wgtun.Event, 1),
		batchSize: batchSize,
		mtu:       1376,
		done:      make(chan struct{}),
	}
}

func (f *fakeTUN) File() *os.File { return nil }

func (f *fakeTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var p []byte
	select {
	case p = <-f.in:
	case <-f.done:
		return 0, os.ErrClosed
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n][offset:], p)
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case p = <-f.in:
		default:
			return n, nil
		}
	}
}

func (f *fakeTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		// Scribble over the bytes in front, as the kernel TUN's virtio
		// header does, to catch a caller that lends us its buffer.
		clear(b[offset-min(offset, 10) : offset])
		select {
		case f.out <- append([]byte(nil), b[offset:]...):
		case <-f.done:
			return 0, os.ErrClosed
		}
	}
	return len(bufs), nil
}

func (f *fakeTUN) MTU() (int, error)          { return f.mtu, nil }
func (f *fakeTUN) Name() (string, error)      { return "fake", nil }
func (f *fakeTUN) Events() <-chan wgtun.Event { return f.events }
func (f *fakeTUN) BatchSize() int             { return f.batchSize }
func (f *fakeTUN) Close() error {
	f.once.Do(func() { close(f.done); close(f.events) })
	return nil
}
