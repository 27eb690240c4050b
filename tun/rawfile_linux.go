//go:build linux

package tun

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawFile reads and writes a non-blocking descriptor with raw system calls,
// and waits on Go's poller only when the descriptor is not ready.
//
// Why raw: a call made the usual way tells the Go runtime that the thread
// may block, and once it has lasted one tick of the runtime's monitor
// (20 µs) the processor is handed to another thread. A write of a 64 KiB
// super-frame runs the receiving container's whole TCP input and often lasts
// that long, so the data path hopped between threads thousands of times a
// second and kept the monitor waking every 20 µs: on a two-core VM, where
// every cross-CPU wake-up traps to the hypervisor, that cost a sixth of the
// sleeve's throughput. A raw call on a non-blocking descriptor
// returns at once, EAGAIN included, so there is nothing to hand over.
type rawFile struct {
	f      *os.File
	rc     syscall.RawConn
	closed atomic.Bool
	// ops are the calls' state with their poller callbacks, built once so
	// that a Read or Write allocates nothing. Pooled rather than locked:
	// Read and Write may be called concurrently.
	ops sync.Pool
}

type rawOp struct {
	trap  uintptr // SYS_READ or SYS_WRITE
	b     []byte
	n     int
	errno syscall.Errno
	call  func(fd uintptr) bool
}

func newRawFile(fd int, name string) (*rawFile, error) {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil, fmt.Errorf("F_GETFL: %w", err)
	}
	if flags&unix.O_NONBLOCK == 0 {
		// A raw call that blocks would stall a Go processor.
		return nil, fmt.Errorf("descriptor is blocking")
	}
	f := &rawFile{f: os.NewFile(uintptr(fd), name)}
	if f.rc, err = f.f.SyscallConn(); err != nil {
		f.f.Close()
		return nil, err
	}
	f.ops.New = func() any {
		o := &rawOp{}
		o.call = o.syscall
		return o
	}
	return f, nil
}

// syscall is the poller callback: it runs o.trap on o.b and returns true
// when done, false to wait until the descriptor is ready.
func (o *rawOp) syscall(fd uintptr) bool {
	for {
		var p unsafe.Pointer
		if len(o.b) > 0 {
			p = unsafe.Pointer(&o.b[0])
		}
		n, _, errno := unix.RawSyscall(o.trap, fd, uintptr(p), uintptr(len(o.b)))
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		o.n, o.errno = int(n), errno
		return true
	}
}

func (f *rawFile) do(trap uintptr, b []byte, wait func(func(uintptr) bool) error) (int, error) {
	o := f.ops.Get().(*rawOp)
	defer f.ops.Put(o)
	o.trap, o.b, o.n, o.errno = trap, b, 0, 0
	err := wait(o.call)
	o.b = nil
	switch {
	case err != nil && f.closed.Load():
		return 0, os.ErrClosed
	case err != nil:
		return 0, err // a read deadline: os.ErrDeadlineExceeded
	case o.errno != 0:
		return 0, o.errno
	}
	return o.n, nil
}

func (f *rawFile) Read(b []byte) (int, error)  { return f.do(unix.SYS_READ, b, f.rc.Read) }
func (f *rawFile) Write(b []byte) (int, error) { return f.do(unix.SYS_WRITE, b, f.rc.Write) }

func (f *rawFile) SetReadDeadline(t time.Time) error { return f.f.SetReadDeadline(t) }

// Close wakes any call waiting on the poller, which then reports
// os.ErrClosed.
func (f *rawFile) Close() error {
	f.closed.Store(true)
	return f.f.Close()
}
