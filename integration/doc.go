// Package integration holds weavenet's end-to-end tests: real weaved daemons
// and weave CLI calls on hosts simulated by network namespaces (see
// internal/testbed). They need root and skip otherwise. Run them with
//
//	sudo make test
//
// or `go test ./integration/` as root. WEAVENET_BIN=DIR reuses prebuilt
// binaries instead of building them; WEAVENET_BUILDFLAGS=-race builds the
// daemons with the race detector.
package integration
