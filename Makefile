# weavenet developer targets. `make test`, `make demo` and `make bench` need
# root (network namespaces): run them with sudo.

SHELL := /bin/bash
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
BIN := $(CURDIR)/bin

STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := $(GOBIN_DIR)/staticcheck

# Debian packages the tests, demo and benchmark use; installed only if missing.
APT_PACKAGES := iproute2 iputils-ping iperf3 ethtool libpcap0.8 iptables xz-utils curl busybox-static
# Installed when the distribution has it; nothing fails without it.
APT_OPTIONAL := arping

# The unit tests run with the race detector; `make test RACE=` turns it off.
RACE ?= -race
UNIT_TIMEOUT ?= 10m
INTEGRATION_TIMEOUT ?= 25m
TEST_TIMEOUT ?= 25m
FUZZTIME ?= 10s

.PHONY: all build deps staticcheck test unit integration lint demo demo-l3 bench bench-scale fuzz clean setup-cni

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

deps: staticcheck
	@missing=""; \
	for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	optional=""; \
	for p in $(APT_OPTIONAL); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || optional="$$optional $$p"; \
	done; \
	if [ -z "$$missing$$optional" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		if [ -n "$$missing" ]; then echo "make deps: missing Debian packages:$$missing; run sudo make deps" >&2; exit 1; fi; \
		exit 0; \
	fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq; \
	if [ -n "$$missing" ]; then apt-get install -y -qq --no-install-recommends $$missing; fi; \
	for p in $$optional; do \
		apt-get install -y -qq --no-install-recommends $$p || echo "make deps: optional package $$p not available; skipped"; \
	done

staticcheck:
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# Lint, then every package's tests; the integration tests (real daemons in
# network namespaces) run last, so the last lines are go test's summary.
test: deps lint
	$(GO) test $(RACE) -count=1 -timeout $(TEST_TIMEOUT) ./...

unit:
	$(GO) test $(RACE) -count=1 -timeout $(UNIT_TIMEOUT) $$($(GO) list ./... | grep -v '/integration')

integration: deps
	$(GO) test -count=1 -v -timeout $(INTEGRATION_TIMEOUT) ./integration/...

# Lint also refuses a tracked built binary (ELF, Mach-O, PE, or binary content
# with the executable bit): .ci/check-binaries says which and what to do.
lint: staticcheck
	@.ci/check-binaries
	@out="$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt -l lists files to format:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

demo: deps build
	BIN=$(BIN) examples/demo.sh

demo-l3: deps build
	BIN=$(BIN) examples/l3.sh

# The benchmark compares with wireguard-go (from the Go module proxy) and
# wg (Debian's wireguard-tools) on the same topology; both are installed if
# missing, and the comparison is skipped if that fails.
WIREGUARD_GO := $(GOBIN_DIR)/wireguard
bench: deps build
	@test -x $(WIREGUARD_GO) || $(GO) install golang.zx2c4.com/wireguard@latest || echo "bench: wireguard-go not installable; comparison skipped"
	@command -v wg >/dev/null || (apt-get install -y -qq --no-install-recommends wireguard-tools >/dev/null) || echo "bench: wg not installable; comparison skipped"
	$(GO) build -o $(BIN)/wntool ./internal/testbed/wntool
	BIN=$(BIN) WIREGUARD_GO=$(WIREGUARD_GO) WNTOOL=$(BIN)/wntool examples/bench.sh

# PEERS (default 50) daemons on namespace hosts: time to a full mesh and to
# every host's first address, then idle CPU, RSS and context switches.
PEERS ?= 50
bench-scale: deps build
	BIN=$(BIN) PEERS=$(PEERS) examples/bench-scale.sh

# Runs every Fuzz* target of every package for $(FUZZTIME).
fuzz:
	@set -e; \
	for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf $(BIN)

# The CNI plugins weave-net and weave-ipam into CNI_BIN_DIR and
# 10-weave.conflist (weave-net chained with portmap) into CNI_CONF_DIR.
CNI_BIN_DIR ?= /opt/cni/bin
CNI_CONF_DIR ?= /etc/cni/net.d
setup-cni: build
	$(BIN)/weave-net setup --cni-bin-dir $(CNI_BIN_DIR) --cni-conf-dir $(CNI_CONF_DIR)
