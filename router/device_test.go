package router

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// brokenDevice fails every read, as a TAP whose interface was deleted does.
type brokenDevice struct{}

func (brokenDevice) Read([]byte) (int, error)    { return 0, errors.New("file descriptor in bad state") }
func (brokenDevice) Write(b []byte) (int, error) { return len(b), nil }
func (brokenDevice) Close() error                { return nil }

// A device whose every read fails is given up on after DeviceGiveUp, and
// the owner hears of it, instead of the send loop retrying forever.
func TestDeviceGivenUpOnWhenEveryReadFails(t *testing.T) {
	sock, err := listenUDP(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := newRouter(brokenDevice{}, sock, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { r.Close() })
	if r.Err() != nil {
		t.Fatalf("Err before any failure: %v", r.Err())
	}
	done := make(chan struct{})
	go func() { defer close(done); r.sendLoop() }()
	select {
	case <-r.Failed():
	case <-time.After(DeviceGiveUp + 10*time.Second):
		t.Fatal("the router did not give up on a device that fails every read")
	}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "bad state") {
		t.Errorf("Err = %v, want the device's error", err)
	}
	<-done // the send loop has ended
}
