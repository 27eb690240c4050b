//go:build linux

package tun

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newPipe returns a rawFile on the read end of a non-blocking pipe and one
// on its write end: rawFile works on any descriptor, and a pipe needs no
// privileges.
func newPipe(t *testing.T) (r, w *rawFile) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, err := newRawFile(p[0], "pipe-r")
	if err != nil {
		t.Fatal(err)
	}
	w, err = newRawFile(p[1], "pipe-w")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func TestRawFileReadWaitsForData(t *testing.T) {
	r, w := newPipe(t)
	go func() {
		time.Sleep(20 * time.Millisecond)
		w.Write([]byte("frame"))
	}()
	b := make([]byte, 16)
	n, err := r.Read(b)
	if err != nil || string(b[:n]) != "frame" {
		t.Fatalf("Read = %q, %v; want frame", b[:n], err)
	}
}

func TestRawFileCloseAndDeadlineWakeRead(t *testing.T) {
	r, _ := newPipe(t)
	r.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := r.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	r.SetReadDeadline(time.Time{})
	if err := wakeBlockedRead(t, r, make([]byte, 8), r.Close); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read woken by Close: %v, want os.ErrClosed", err)
	}
}

func TestRawFileRefusesBlockingDescriptor(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := newRawFile(p[0], "pipe"); err == nil {
		t.Fatal("newRawFile took a blocking descriptor: a raw call on it could stall a Go processor")
	}
}

func TestRawFileZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	r, w := newPipe(t)
	frame, b := make([]byte, 1500), make([]byte, 1500)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := w.Write(frame); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Read(b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a Write and a Read allocate %v times, want 0", allocs)
	}
}

// wakeBlockedRead reads r until a Read fails, lets that Read block, calls
// wake, and returns the error the Read ended with; it fails t if wake does
// not end it.
func wakeBlockedRead(t *testing.T, r interface{ Read([]byte) (int, error) }, buf []byte, wake func() error) error {
	t.Helper()
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, err := r.Read(buf); err != nil {
				readErr <- err
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond) // let the Read block; the assertions hold either way
	if err := wake(); err != nil {
		t.Fatalf("waking a blocked Read: %v", err)
	}
	select {
	case err := <-readErr:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked Read was not woken")
		return nil
	}
}
