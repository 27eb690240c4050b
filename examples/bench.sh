#!/usr/bin/env bash
# weavenet benchmark: single-stream TCP throughput (iperf3 -t 10) and ping
# RTT (20 pings, 50 ms apart) host to host on the underlay and container to
# container over weave, on two "hosts" (network namespaces on a veth
# underlay), with the overlay/underlay ratios; and Weave Net 2.8.1's own
# router (weaver, sleeve) against itself and against weavenet, each way,
# plain and with a password (bench-weave.sh; skipped with a message if its
# weaver.xz, by default ../shared/weave-2.8.1/ beside the repository, or
# $WEAVER_XZ, is missing).
#
# The fast datapath (kernel VXLAN, --datapath auto) is measured against
# plain kernel VXLAN and the underlay in interleaved rounds, with medians
# and spreads, at 1 Gbit/s and on a jumbo underlay too (bench-fastdp.sh).
# Every other weavenet figure is the sleeve, forced with --datapath sleeve.
#
# Usage: sudo make bench     (or: sudo BIN=path/to/bin examples/bench.sh)
#        QUICK=1 measures only the plain overlay against the underlay;
#        FASTDP_ONLY=1 only the fast datapath (FDP_ROUNDS, FDP_PINGS).
# Everything it creates carries a random prefix and is removed on exit.
set -euo pipefail

TOOL=bench NEED="ping iperf3 awk ss"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/bench-l3.sh"
. "$(dirname "$0")/bench-weave.sh"
. "$(dirname "$0")/bench-fastdp.sh"
DURATION=${DURATION:-10}
C1=${P}c1 C2=${P}c2
log() { echo "bench: $*" >&2; }

make_hosts
for ns in "$C1" "$C2"; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
done

# up [WEAVED FLAGS...]: (re)launch weave on both hosts with the flags and
# plug the containers in again.
up() {
	for ns in "$H1" "$H2"; do
		host "$ns" "$BIN/weave" stop >/dev/null 2>&1 || true
	done
	log "launching weave on h1 and h2 $*"
	launch "$H1" h1 "$@" >/dev/null
	launch "$H2" h2 "$@" 192.168.200.1 >/dev/null
	wait_link
	host "$H1" "$BIN/weave" attach 10.32.0.1/12 "$C1" >/dev/null
	host "$H2" "$BIN/weave" attach 10.32.0.2/12 "$C2" >/dev/null
	on "$C1" ping -c 1 -W 5 10.32.0.2 >/dev/null || { log "c1 cannot reach c2"; exit 1; }
}

# tcp FROM_NS TO_NS TO_ADDR: receiver-side bits per second of one stream.
tcp() {
	local from=$1 to=$2 addr=$3 out=$WORK/iperf-$1.json
	on "$to" iperf3 -s -1 >/dev/null 2>&1 &
	local server=$!
	for i in $(seq 50); do
		on "$to" ss -Htln 'sport = :5201' | grep -q . && break
		sleep 0.1
	done
	on "$from" iperf3 -c "$addr" -t "$DURATION" -J >"$out"
	wait "$server" || true
	awk '/"sum_received"/ { f = 1 } f && /"bits_per_second"/ { gsub(/[^0-9.eE+-]/, "", $2); print $2; exit }' "$out"
}

# throttle add|del: tc tbf at 1 Gbit/s on both hosts' underlay egress.
throttle() {
	for ns in "$H1" "$H2"; do on "$ns" tc qdisc "$1" dev eth0 root tbf rate 1gbit burst 256kb latency 20ms; done
}

# cpu PATTERN: CPU seconds used so far by the processes whose command line
# matches PATTERN (user + system).
cpu() {
	local hz total=0
	hz=$(getconf CLK_TCK)
	for pid in $(pgrep -f "$1"); do
		t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
		total=$((total + t))
	done
	awk -v t="$total" -v hz="$hz" 'BEGIN { printf "%.3f", t / hz }'
}

# rtt NS ADDR: average RTT in ms of 20 pings 50 ms apart.
rtt() {
	on "$1" ping -n -q -c 20 -i 0.05 "$2" | awk -F/ '/^rtt|^round-trip/ { print $5 }'
}

if [ -n "${FASTDP_ONLY:-}" ]; then
	# FASTDP_ONLY=1: the fast datapath's figures and bars only.
	bench_fastdp || { log "fast datapath not measured (see above)"; exit 1; }
	report_fastdp
	exit 0
fi

up --datapath sleeve
log "underlay TCP (h1 -> h2, ${DURATION}s)"
tcp_under=$(tcp "$H1" "$H2" 192.168.200.2)
log "overlay TCP (c1 -> c2, ${DURATION}s)"
cpu0=$(cpu "weaved.*$WORK/h")
tcp_over=$(tcp "$C1" "$C2" 10.32.0.2)
cpu_over=$(awk -v a="$cpu0" -v b="$(cpu "weaved.*$WORK/h")" 'BEGIN { printf "%.3f", b - a }')
log "ping RTT"
rtt_under=$(rtt "$H1" 192.168.200.2)
rtt_over=$(rtt "$C1" 10.32.0.2)
# For scale: the same round trips through the smallest userspace hop, a UDP
# echo on h2 answering a UDP client on h1 (both Go, with weaved's runtime
# settings). Over the kernel's ping it adds one process wake-up, the echo's:
# what one userspace hop costs on this machine. A sleeve round trip has
# three (the sending daemon, the receiving one, the sending one again).
rtt_echo=""
if [ -x "${WNTOOL:-}" ]; then
	on "$H2" env GOMAXPROCS=1 GODEBUG=schedtrace=2147483647 "$WNTOOL" udp-echo 7777 20s >/dev/null 2>&1 &
	echo_pid=$!
	sleep 0.3
	rtt_echo=$(on "$H1" env GOMAXPROCS=1 GODEBUG=schedtrace=2147483647 "$WNTOOL" udp-ping -count 20 -interval 50ms 192.168.200.2:7777 2>/dev/null || true)
	kill "$echo_pid" 2>/dev/null || true
	wait "$echo_pid" 2>/dev/null || true
fi
if [ -n "${QUICK:-}" ]; then
	# QUICK=1: the plain overlay only, for a developer's before and after.
	awk -v tu="$tcp_under" -v to="$tcp_over" -v ru="$rtt_under" -v ro="$rtt_over" -v c="$cpu_over" -v d="$DURATION" 'BEGIN {
		printf "underlay %.2f Gbit/s, overlay %.2f Gbit/s (%.0f%%), RTT +%.3f ms, CPU %.2f s per Gbit\n", tu / 1e9, to / 1e9, 100 * to / tu, ro - ru, c / (to * d / 1e9)
	}'
	exit 0
fi

# The same over an underlay throttled to 1 Gbit/s, where a real network's
# speed, not our CPU, is the limit.
tcp_under_1g="" tcp_over_1g=""
if throttle add 2>/dev/null; then
	log "1 Gbit/s underlay: TCP host to host and container to container"
	tcp_under_1g=$(tcp "$H1" "$H2" 192.168.200.2)
	tcp_over_1g=$(tcp "$C1" "$C2" 10.32.0.2)
	throttle del
else
	log "tc tbf unavailable: no throttled measurement"
fi

# The fast datapath against plain kernel VXLAN and the underlay, interleaved
# (bench-fastdp.sh; report_fastdp prints its figures and bars at the end).
fdp_measured=""
bench_fastdp && fdp_measured=1 || log "fast datapath not measured (see above)"

up --password bench-secret
log "encrypted overlay TCP (c1 -> c2, ${DURATION}s)"
cpu0=$(cpu "weaved.*$WORK/h")
tcp_enc=$(tcp "$C1" "$C2" 10.32.0.2)
cpu_enc=$(awk -v a="$cpu0" -v b="$(cpu "weaved.*$WORK/h")" 'BEGIN { printf "%.3f", b - a }')
rtt_enc=$(rtt "$C1" 10.32.0.2)
# wireguard-go on the same two hosts, host to host over its TUN (it has no
# bridge, so it is measured between the hosts' wg0 addresses): the userspace
# router to beat.
tcp_wg="" rtt_wg="" cpu_wg=0
WIREGUARD_GO=${WIREGUARD_GO:-$(command -v wireguard-go || true)}
if [ -x "$WIREGUARD_GO" ] && command -v wg >/dev/null; then
	log "wireguard-go TCP (h1 -> h2 over wg0, ${DURATION}s)"
	# Distinct names: wireguard-go's control sockets live in one directory
	# shared by all namespaces.
	for i in 1 2; do
		on "$([ $i = 1 ] && echo "$H1" || echo "$H2")" "$WIREGUARD_GO" "${P}wg$i" >/dev/null 2>&1
		(umask 077; wg genkey > "$WORK/wg$i.key")
		wg pubkey < "$WORK/wg$i.key" > "$WORK/wg$i.pub"
	done
	on "$H1" wg set "${P}wg1" private-key "$WORK/wg1.key" listen-port 51820 peer "$(cat "$WORK/wg2.pub")" allowed-ips 10.99.0.2/32 endpoint 192.168.200.2:51820
	on "$H2" wg set "${P}wg2" private-key "$WORK/wg2.key" listen-port 51820 peer "$(cat "$WORK/wg1.pub")" allowed-ips 10.99.0.1/32 endpoint 192.168.200.1:51820
	on "$H1" ip addr add 10.99.0.1/24 dev "${P}wg1"
	on "$H2" ip addr add 10.99.0.2/24 dev "${P}wg2"
	on "$H1" ip link set "${P}wg1" up
	on "$H2" ip link set "${P}wg2" up
	if on "$H1" ping -c 1 -W 5 10.99.0.2 >/dev/null; then
		cpu0=$(cpu "${P}wg")
		tcp_wg=$(tcp "$H1" "$H2" 10.99.0.2)
		cpu_wg=$(awk -v a="$cpu0" -v b="$(cpu "${P}wg")" 'BEGIN { printf "%.3f", b - a }')
		rtt_wg=$(rtt "$H1" 10.99.0.2)
	fi
	on "$H1" ip link delete "${P}wg1" 2>/dev/null || true
	on "$H2" ip link delete "${P}wg2" 2>/dev/null || true
else
	log "wireguard-go or wg not found: no comparison (make bench installs them)"
fi

# Weave Net's classic sleeve (plain frames, complete checksums), which a
# mixed cluster with Weave Net peers would use.
up --weave-compat
log "classic-format overlay TCP (c1 -> c2, ${DURATION}s)"
tcp_classic=$(tcp "$C1" "$C2" 10.32.0.2)

# L3 mode: host to host over a TUN, no bridge.
log "L3 mode TCP (h1 -> h2, ${DURATION}s)"
tcp_l3=$(bench_l3) || tcp_l3=""

# Weave Net 2.8.1's router, alone and in a mixed pair with weavenet, on
# hosts of their own (bench-weave.sh sets tcp_ww_*, tcp_nw_*, tcp_wn_*).
weave_measured=""
if weaver_ready; then
	bench_weave plain && weave_measured=1 || weaver_why="its runs failed (see above)"
	if [ -n "$weave_measured" ]; then
		bench_weave password --password bench-secret || log "Weave Net runs with a password failed"
	fi
else
	log "Weave Net 2.8.1 not measured: $weaver_why"
fi

for v in "$tcp_under" "$tcp_over" "$rtt_under" "$rtt_over" "$tcp_enc" "$rtt_enc" "$tcp_classic"; do
	[ -n "$v" ] || { log "a measurement produced no number"; exit 1; }
done

# IPAM: two fresh daemons (no persisted ring) that must agree by consensus
# before the first address; then the latency of weave attach on a ready ring.
for ns in "$H1" "$H2"; do host "$ns" "$BIN/weave" stop >/dev/null 2>&1 || true; done
rm -f "$WORK"/h1/ipam.db "$WORK"/h2/ipam.db "$WORK"/h1/containers.json "$WORK"/h2/containers.json
log "IPAM: two fresh daemons, consensus, first allocation"
t0=$(date +%s%N)
launch "$H1" h1 --ipalloc-init consensus=2 >/dev/null 2>&1
launch "$H2" h2 --ipalloc-init consensus=2 192.168.200.1 >/dev/null 2>&1
until host "$H1" "$BIN/weave" attach net:default "$C1" >/dev/null 2>&1; do
	[ $(( ($(date +%s%N) - t0) / 1000000000 )) -lt 60 ] || { log "no allocation within 60s"; exit 1; }
	sleep 0.05
done
first_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
N=10
for i in $(seq $N); do ip netns add "${P}x$i"; done
t0=$(date +%s%N)
for i in $(seq $N); do host "$H1" "$BIN/weave" attach net:default "${P}x$i" >/dev/null; done
attach_ms=$(( ($(date +%s%N) - t0) / 1000000 / N ))
for i in $(seq $N); do ip netns delete "${P}x$i"; done

# The report: every figure, then each bar of the performance goals with its
# ratio, all from this one run.
g() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1e9 }'; }
echo
echo "One TCP stream, iperf3 ${DURATION}s, two hosts (network namespaces) on a veth underlay:"
printf "  %-44s %7s Gbit/s\n" "underlay, host to host" "$(g "$tcp_under")"
printf "  %-44s %7s Gbit/s\n" "overlay, sleeve (--datapath sleeve)" "$(g "$tcp_over")"
printf "  %-44s %7s Gbit/s\n" "overlay, encrypted (AES-256-GCM)" "$(g "$tcp_enc")"
printf "  %-44s %7s Gbit/s\n" "overlay, classic format (--weave-compat)" "$(g "$tcp_classic")"
[ -n "$tcp_l3" ] && printf "  %-44s %7s Gbit/s\n" "L3 mode, host to host" "$tcp_l3"
[ -n "$tcp_wg" ] && printf "  %-44s %7s Gbit/s\n" "wireguard-go, host to host (encrypted)" "$(g "$tcp_wg")"
# wvline LABEL BITS [BASE]: a Weave Net line, with its ratio to BASE.
wvline() {
	[ -n "$2" ] || return 0
	printf "  %-44s %7s Gbit/s" "$1" "$(g "$2")"
	[ -n "${3:-}" ] && awk -v a="$2" -v b="$3" 'BEGIN { printf "   %.2fx Weave Net alone", a / b }'
	printf "\n"
}
if [ -n "$weave_measured" ]; then
	wvline "Weave Net 2.8.1 to Weave Net (sleeve)" "$tcp_ww_plain"
	wvline "weavenet to Weave Net 2.8.1" "$tcp_nw_plain" "$tcp_ww_plain"
	wvline "Weave Net 2.8.1 to weavenet" "$tcp_wn_plain" "$tcp_ww_plain"
	wvline "Weave Net to Weave Net, password (NaCl)" "${tcp_ww_password:-}"
	wvline "weavenet to Weave Net, password" "${tcp_nw_password:-}" "${tcp_ww_password:-}"
	wvline "Weave Net to weavenet, password" "${tcp_wn_password:-}" "${tcp_ww_password:-}"
else
	echo "  (Weave Net 2.8.1 not measured: $weaver_why)"
fi
printf "  %-44s %7.3f ms underlay, %.3f overlay, %.3f encrypted%s\n" "ping RTT (avg of 20)" "$rtt_under" "$rtt_over" "$rtt_enc" \
	"$([ -n "$rtt_wg" ] && echo ", $rtt_wg wireguard-go")"
[ -n "$rtt_echo" ] && awk -v e="$rtt_echo" -v u="$rtt_under" 'BEGIN {
	printf "  %-44s %7.3f ms: one userspace hop adds %.3f ms here, a sleeve round trip has 3\n", "UDP echo host to host (Go, avg of 20)", e, e - u
}'
awk -v c="$cpu_over" -v to="$tcp_over" -v ce="$cpu_enc" -v te="$tcp_enc" -v cw="$cpu_wg" -v tw="${tcp_wg:-0}" -v d="$DURATION" 'BEGIN {
	printf "  %-44s %7.2f s plain, %.2f s encrypted", "CPU (both daemons) per Gbit carried", c / (to * d / 1e9), ce / (te * d / 1e9)
	if (tw > 0) printf ", %.2f s wireguard-go", cw / (tw * d / 1e9)
	printf "\n"
}'
echo "  IPAM: first address $first_ms ms after launching two fresh daemons (consensus of 2);" \
	"weave attach net:default on a ready ring: $attach_ms ms (mean of $N, CLI start and veth included)"
echo
echo "Goals:"
bar() { # bar NAME FIGURE PASS(1/0)
	printf "  %-50s %16s   %s\n" "$1" "$2" "$([ "$3" = 1 ] && echo pass || echo MISSED)"
}
bar "overlay >= 30% of the underlay" "$(awk -v o="$tcp_over" -v u="$tcp_under" 'BEGIN { printf "%.0f%%", 100 * o / u }')" \
	"$(awk -v o="$tcp_over" -v u="$tcp_under" 'BEGIN { print (o >= 0.3 * u) }')"
if [ -n "$tcp_wg" ]; then
	bar "overlay >= 2x wireguard-go" "$(awk -v o="$tcp_over" -v w="$tcp_wg" 'BEGIN { printf "%.2fx", o / w }')" \
		"$(awk -v o="$tcp_over" -v w="$tcp_wg" 'BEGIN { print (o >= 2 * w) }')"
	bar "encrypted overlay >= 1.3x wireguard-go" "$(awk -v o="$tcp_enc" -v w="$tcp_wg" 'BEGIN { printf "%.2fx", o / w }')" \
		"$(awk -v o="$tcp_enc" -v w="$tcp_wg" 'BEGIN { print (o >= 1.3 * w) }')"
	bar "CPU per Gbit below wireguard-go's (encrypted)" "$(awk -v ce="$cpu_enc" -v te="$tcp_enc" -v cw="$cpu_wg" -v tw="$tcp_wg" -v d="$DURATION" 'BEGIN { printf "%.2f vs %.2f s", ce / (te * d / 1e9), cw / (tw * d / 1e9) }')" \
		"$(awk -v ce="$cpu_enc" -v te="$tcp_enc" -v cw="$cpu_wg" -v tw="$tcp_wg" 'BEGIN { print (ce / te < cw / tw) }')"
else
	echo "  (wireguard-go not measured: its bars are skipped)"
fi
if [ -n "$tcp_over_1g" ]; then
	bar "underlay at 1 Gbit/s: overlay >= 95% of it" "$(awk -v o="$tcp_over_1g" -v u="$tcp_under_1g" 'BEGIN { printf "%.0f%% (%.3f/%.3f)", 100 * o / u, o / 1e9, u / 1e9 }')" \
		"$(awk -v o="$tcp_over_1g" -v u="$tcp_under_1g" 'BEGIN { print (o >= 0.95 * u) }')"
fi
# The mixed pair's slower direction against Weave Net alone.
mixbar() { # mixbar LABEL WW NW WN
	[ -n "$2" ] && [ -n "$3" ] && [ -n "$4" ] || return 0
	bar "$1" "$(awk -v w="$2" -v a="$3" -v b="$4" 'BEGIN { m = a < b ? a : b; printf "%.2fx", m / w }')" \
		"$(awk -v w="$2" -v a="$3" -v b="$4" 'BEGIN { print (a >= w && b >= w) }')"
}
if [ -n "$weave_measured" ]; then
	mixbar "mixed pair >= Weave Net alone, each way" "$tcp_ww_plain" "$tcp_nw_plain" "$tcp_wn_plain"
	mixbar "  the same with a password" "${tcp_ww_password:-}" "${tcp_nw_password:-}" "${tcp_wn_password:-}"
fi
bar "added ping RTT < 0.15 ms" "$(awk -v o="$rtt_over" -v u="$rtt_under" 'BEGIN { printf "+%.3f ms", o - u }')" \
	"$(awk -v o="$rtt_over" -v u="$rtt_under" 'BEGIN { print (o - u < 0.15) }')"
[ -n "$rtt_echo" ] && awk -v e="$rtt_echo" -v u="$rtt_under" 'BEGIN {
	printf "  %-50s %16s\n", "  (three userspace hops at the UDP echo'"'"'s cost)", sprintf("+%.3f ms", 3 * (e - u))
}'
[ -n "$fdp_measured" ] && report_fastdp
exit 0
