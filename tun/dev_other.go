//go:build !linux

package tun

import (
	"errors"
	"fmt"
	"time"
)

// TAPConfig describes the TAP device OpenTAP creates; see the Linux build
// for the meaning of each field.
type TAPConfig struct {
	Name    string
	MTU     int
	Bridge  string
	VnetHdr bool
	Offload bool
}

// TUNConfig describes the TUN device OpenTUN creates; see the Linux build
// for the meaning of each field.
type TUNConfig struct {
	Name    string
	MTU     int
	VnetHdr bool
	Offload bool
}

// device exists on other platforms only so that code using TAP and TUN,
// and the fake devices its tests use, still compile there.
type device struct{}

// TAP is a TAP device; see the Linux build.
type TAP struct{ device }

// TUN is a TUN device; see the Linux build.
type TUN struct{ device }

// OpenTAP always fails outside Linux.
func OpenTAP(cfg TAPConfig) (*TAP, error) {
	return nil, fmt.Errorf("tun: open TAP %q: %w: TAP devices are only implemented on Linux", cfg.Name, errors.ErrUnsupported)
}

// OpenTUN always fails outside Linux.
func OpenTUN(cfg TUNConfig) (*TUN, error) {
	return nil, fmt.Errorf("tun: open TUN %q: %w: TUN devices with virtio headers are only implemented on Linux", cfg.Name, errors.ErrUnsupported)
}

// MTU returns 0 outside Linux.
func (t *TUN) MTU() int { return 0 }

// Name returns "" outside Linux.
func (d *device) Name() string { return "" }

// VnetHdr returns false outside Linux.
func (d *device) VnetHdr() bool { return false }

// Read always fails outside Linux.
func (d *device) Read(b []byte) (int, error) { return 0, errors.ErrUnsupported }

// Write always fails outside Linux.
func (d *device) Write(b []byte) (int, error) { return 0, errors.ErrUnsupported }

// SetReadDeadline always fails outside Linux.
func (d *device) SetReadDeadline(t time.Time) error { return errors.ErrUnsupported }

// Close does nothing outside Linux.
func (d *device) Close() error { return nil }
