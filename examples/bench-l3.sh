#!/usr/bin/env bash
# L3 mode's throughput, for the benchmark: bench_l3 [WEAVED FLAGS...]
# relaunches weave on h1 and h2 (lib.sh's two hosts, 192.168.200.1 and .2)
# in L3 mode with fixed overlay addresses, runs one iperf3 TCP stream host
# to host over the overlay for DURATION seconds (default 10), prints the
# receiver's rate in Gbit/s on stdout, and stops both daemons again.
#
# Sourced by bench.sh after lib.sh and make_hosts; run on its own
# (sudo BIN=bin examples/bench-l3.sh [WEAVED FLAGS...]) it builds the hosts
# itself and prints the figure with a label.

bench_l3() {
	local ns out=$WORK/iperf-l3.json server
	# reset, not stop: a bridge-mode daemon's bridge outlives a stop, and
	# its route to the range would clash with the TUN's. The data dirs are
	# named so that, with no daemon running, nothing but ours is touched.
	host "$H1" "$BIN/weave" reset --data-dir "$WORK/h1" >/dev/null 2>&1 || true
	host "$H2" "$BIN/weave" reset --data-dir "$WORK/h2" >/dev/null 2>&1 || true
	# Data dirs of their own: the bridge runs' state stays out of the way.
	launch "$H1" h1-l3 --mode l3 --l3-address 10.32.0.101/12 "$@" >/dev/null
	launch "$H2" h2-l3 --mode l3 --l3-address 10.32.0.102/12 "$@" 192.168.200.1 >/dev/null
	for i in $(seq 150); do
		host "$H1" ping -c 1 -W 1 10.32.0.102 >/dev/null 2>&1 && break
		sleep 0.2
	done
	host "$H1" ping -c 1 -W 5 10.32.0.102 >/dev/null || { echo "bench_l3: h1 cannot reach h2 over L3" >&2; return 1; }
	host "$H2" iperf3 -s -1 >/dev/null 2>&1 &
	server=$!
	for i in $(seq 50); do
		host "$H2" ss -Htln 'sport = :5201' | grep -q . && break
		sleep 0.1
	done
	host "$H1" iperf3 -c 10.32.0.102 -t "${DURATION:-10}" -J >"$out" || { wait "$server"; return 1; }
	wait "$server" || true
	for ns in "$H1" "$H2"; do
		host "$ns" "$BIN/weave" stop >/dev/null 2>&1 || true
	done
	awk '/"sum_received"/ { f = 1 } f && /"bits_per_second"/ { gsub(/[^0-9.eE+-]/, "", $2); printf "%.2f\n", $2 / 1e9; exit }' "$out"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	TOOL=bench-l3 NEED="ping iperf3 awk ss"
	. "$(dirname "$0")/lib.sh"
	make_hosts
	echo "L3 mode, TCP 1 stream host to host over the overlay (Gbit/s): $(bench_l3 "$@")"
fi
