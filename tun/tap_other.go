//go:build !linux

package tun

import (
	"errors"
	"fmt"
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

// TAP exists on other platforms only so that code using it, and the fake
// devices its tests use, still compile there.
type TAP struct{}

// OpenTAP always fails outside Linux.
func OpenTAP(cfg TAPConfig) (*TAP, error) {
	return nil, fmt.Errorf("tun: open TAP %q: %w: TAP devices are only implemented on Linux", cfg.Name, errors.ErrUnsupported)
}

// Name returns "" outside Linux.
func (t *TAP) Name() string { return "" }

// VnetHdr returns false outside Linux.
func (t *TAP) VnetHdr() bool { return false }

// Read always fails outside Linux.
func (t *TAP) Read(b []byte) (int, error) { return 0, errors.ErrUnsupported }

// Write always fails outside Linux.
func (t *TAP) Write(b []byte) (int, error) { return 0, errors.ErrUnsupported }

// Close does nothing outside Linux.
func (t *TAP) Close() error { return nil }
