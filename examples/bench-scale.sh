#!/usr/bin/env bash
# weavenet scale benchmark: PEERS (default 50) hosts (network namespaces) on
# one underlay bridge, weave launched on each in turn knowing only host 1
# and the host before it, as a real deployment's peers know one or two
# others. It measures, from the moment the last `weave launch` returned:
#
#   - full mesh: every peer has PEERS-1 established connections. Host 1's
#     gossiped topology is polled until it shows that (so a peer counts
#     only once the others could know); then every host reports when each
#     of its connections became established, and the last of those is the
#     time;
#   - first address: `weave expose` on every host, all started when the
#     last launch returned (as containers would be), retried if one gives
#     up; the time the last one got its address;
#
# then, after SETTLE seconds (default 10), IDLE seconds (default 30) of
# nothing: each daemon's CPU (utime+stime from /proc/PID/stat), RSS (VmRSS)
# and the context switches of all daemons together (every thread's
# voluntary and involuntary switches from /proc/PID/task/*/status).
#
# The neighbour table is one per kernel, shared by every namespace, and
# garbage collection refuses new entries above net.ipv4.neigh.default.
# gc_thresh3 (1024): PEERS*(PEERS-1) learned entries (2,450 for 50) would
# overflow it and break other namespaces' traffic on the machine. So every
# host gets its peers' MACs as permanent entries, which the kernel does not
# count against that limit, and nothing is learned.
#
# Usage: sudo make bench-scale   (PEERS=25 sudo make bench-scale; or
#        sudo PEERS=N BIN=path/to/bin examples/bench-scale.sh). WEAVED_FLAGS
#        are added to every launch. Everything it creates carries a random
#        prefix and is removed on exit.
set -euo pipefail

TOOL=bench-scale NEED="awk getconf"
. "$(dirname "$0")/lib.sh"

N=${PEERS:-50}
SETTLE=${SETTLE:-10}
IDLE=${IDLE:-30}
TIMEOUT=${TIMEOUT:-120}
read -r -a EXTRA <<<"${WEAVED_FLAGS:-}"
[[ "$N" =~ ^[0-9]+$ ]] && [ "$N" -ge 2 ] && [ "$N" -le 250 ] || { echo "$TOOL: PEERS must be 2..250" >&2; exit 2; }
# The API on TCP inside each host's namespace, given explicitly to the CLI
# and the daemon, whatever the default is.
export WEAVE_HTTP_ADDR=127.0.0.1:6784
UL=${P}ul
log() { echo "$TOOL: $*" >&2; }
hostns() { echo "${P}h$1"; }
addr() { echo "192.168.200.$1"; }
mac() { printf '02:77:6e:00:00:%02x' "$1"; }
# elapsed FROM TO: seconds between two $EPOCHREALTIME readings.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# On exit: stop the address requests still retrying, keep the daemons'
# logs in $KEEP if set, then lib.sh's cleanup.
finish() {
	local rc=$?
	set +e
	kill $(jobs -p) 2>/dev/null
	[ -n "${group_nice:-}" ] && echo "$group_nice" >/proc/$$/autogroup
	if [ -n "${KEEP:-}" ]; then
		mkdir -p "$KEEP"
		for i in $(seq "$N"); do
			cp "$WORK/h$i/weaved.log" "$KEEP/h$i.log" 2>/dev/null
		done
		cp "$WORK"/*.err "$WORK/progress" "$KEEP/" 2>/dev/null
	fi
	(exit "$rc")
	cleanup
}
trap finish EXIT

log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
log "making $N hosts on one bridge"
ip netns add "$UL"
ip -n "$UL" link add br0 type bridge
ip -n "$UL" link set br0 up
for i in $(seq "$N"); do
	ns=$(hostns "$i")
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip link add eth0 netns "$ns" address "$(mac "$i")" type veth peer name "h$i" netns "$UL"
	ip -n "$UL" link set "h$i" master br0 up
	ip -n "$ns" addr add "$(addr "$i")/24" dev eth0
	ip -n "$ns" link set eth0 up
done
for i in $(seq "$N"); do
	for j in $(seq "$N"); do
		[ "$i" = "$j" ] || echo "neigh replace $(addr "$j") lladdr $(mac "$j") dev eth0 nud permanent"
	done >"$WORK/neigh"
	ip -n "$(hostns "$i")" -batch "$WORK/neigh"
done

log "launching weave on $N hosts in turn, each knowing host 1 and the host before it ${EXTRA[*]}"
t0=$EPOCHREALTIME
for i in $(seq "$N"); do
	peers=()
	[ "$i" -gt 1 ] && peers+=("$(addr 1)")
	[ "$i" -gt 2 ] && peers+=("$(addr $((i - 1)))")
	launch "$(hostns "$i")" "h$i" --http-addr "$WEAVE_HTTP_ADDR" --ipalloc-init "consensus=$N" \
		--no-proxy --no-plugin --docker-api "" "${EXTRA[@]}" "${peers[@]}" >/dev/null 2>>"$WORK/launch.err"
done
tl=$EPOCHREALTIME
log "last launch returned after $(elapsed "$t0" "$tl") s"

# full_peers: how many peers host 1's topology shows with N-1 established
# connections, then those short of it (nickname:connections).
full_peers() {
	host "$(hostns 1)" "$BIN/weave" --http-addr "$WEAVE_HTTP_ADDR" report \
		-f '{{range .Router.Peers}}{{.NickName}}:{{range .Connections}}{{if .Established}}x{{end}}{{end}} {{end}}' 2>/dev/null |
		awk -v n="$N" '{ for (i = 1; i <= NF; i++) { split($i, f, ":"); if (length(f[2]) == n - 1) c++; else short = short " " f[1] ":" length(f[2]) } }
			END { print c + 0 short }'
}

# The scheduler shares the CPU between sessions (autogroup), and every
# daemon has a session of its own: this shell, its polls and 50 address
# requests once shared one share in 51, so the polls took seconds each and
# the mesh time was mostly the time of the first poll. The measuring shell
# (only polls and sleeps) gets a higher priority; each address request a
# session of its own, as a container's process is a group of its own.
if [ -w /proc/$$/autogroup ]; then
	group_nice=$(awk '{ print $3 }' /proc/$$/autogroup)
	echo -10 >/proc/$$/autogroup
fi

# Host 1 is polled from the moment the last launch returned, before the
# requests start; each poll goes into $WORK/progress (seconds after the
# last launch at its start and end, peers fully connected, those short of
# it with their connections), the first full one's start and end into
# $WORK/mesh.
(
	while :; do
		start=$EPOCHREALTIME
		read -r full short <<<"$(full_peers)"
		end=$EPOCHREALTIME
		echo "$(elapsed "$tl" "$start") $(elapsed "$tl" "$end") $full $short" >>"$WORK/progress"
		[ "$full" = "$N" ] && { echo "$start $end" >"$WORK/mesh"; exit 0; }
		sleep 0.25
	done
) &

# Every host asks for its first address now, as containers started right
# after launch would.
for i in $(seq "$N"); do
	(
		until host "$(hostns "$i")" setsid -w "$BIN/weave" --http-addr "$WEAVE_HTTP_ADDR" expose >/dev/null 2>>"$WORK/expose.err"; do
			sleep 0.5
		done
		echo "$EPOCHREALTIME" >"$WORK/addr.$i"
	) &
done

mesh_at="" addrs=0 next=1
while :; do
	now=$EPOCHREALTIME
	if [ -z "$mesh_at" ] && [ -s "$WORK/mesh" ]; then
		read -r mesh_at mesh_end <"$WORK/mesh"
		log "host 1 shows a full mesh in the poll from $(elapsed "$tl" "$mesh_at") to $(elapsed "$tl" "$mesh_end") s after the last launch"
	fi
	addrs=$(ls "$WORK" | grep -c '^addr\.' || true)
	[ -n "$mesh_at" ] && [ "$addrs" = "$N" ] && break
	full=$(tail -n 1 "$WORK/progress" 2>/dev/null | cut -d' ' -f3 || true)
	if [ "$(elapsed "$tl" "$now" | cut -d. -f1)" -ge "$TIMEOUT" ]; then
		log "gave up after ${TIMEOUT}s: ${full:-?}/$N peers fully connected, $addrs/$N hosts with an address"
		exit 1
	fi
	if [ "$(elapsed "$tl" "$now" | cut -d. -f1)" -ge "$next" ]; then
		log "+${next}s: ${full:-?}/$N peers fully connected (host 1's view), $addrs/$N hosts with an address"
		next=$((next + 5))
	fi
	sleep 0.25
done
wait
addr_times=$(for i in $(seq "$N"); do awk -v a="$tl" '{ printf "%.2f\n", $1 - a }' "$WORK/addr.$i"; done | sort -n)
addr_last=$(tail -n 1 <<<"$addr_times")
addr_median=$(sed -n "$(((N + 1) / 2))p" <<<"$addr_times")

# Each host's own view: N-1 established connections, and when each became
# established. The last of those moments is when the mesh was full: a poll
# of host 1 shows it only later (its start is logged above), since while
# the mesh forms a poll takes seconds and host 1 hears of a connection by
# gossip.
short=0 last_est=0 last_link=
for i in $(seq "$N"); do
	read -r c at peer <<<"$(host "$(hostns "$i")" "$BIN/weave" --http-addr "$WEAVE_HTTP_ADDR" report \
		-f '{{range .Router.Connections}}{{if eq .State "established"}}x{{end}}{{end}} {{range .Router.Connections}}{{$a := .Address}}{{with .EstablishedAt}}{{.UnixMicro}}@{{$a}} {{end}}{{end}}' |
		awk '{ m = 0; p = "?"; for (i = 2; i <= NF; i++) { split($i, f, "@"); if (f[1] > m) { m = f[1]; p = f[2] } } print $1, m, p }')"
	[ "${#c}" = $((N - 1)) ] || { log "h$i has ${#c} established connections, not $((N - 1))"; short=$((short + 1)); }
	if [ "$at" -gt "$last_est" ]; then
		last_est=$at
		last_link="h$i to h$(cut -d: -f1 <<<"$peer" | cut -d. -f4)"
	fi
done
mesh_s=$(awk -v at="$last_est" -v tl="$tl" 'BEGIN { printf "%.1f", at / 1e6 - tl }')
log "the last connection established: $last_link, $mesh_s s after the last launch"
learned=0
for i in $(seq "$N"); do
	learned=$((learned + $(ip -n "$(hostns "$i")" neigh show dev eth0 | grep -vc PERMANENT || true)))
done

pids=()
for i in $(seq "$N"); do
	for p in $(ip netns pids "$(hostns "$i")"); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = weaved ] && pids+=("$p")
	done
done
[ "${#pids[@]}" = "$N" ] || { log "found ${#pids[@]} weaved processes, not $N"; exit 1; }

# sample: per daemon "PID TICKS SWITCHES RSS_KB".
sample() {
	for p in "${pids[@]}"; do
		ticks=$(awk '{ print $14 + $15 }' "/proc/$p/stat")
		sw=$(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { s += $2 } END { print s }')
		rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$p/status")
		echo "$p $ticks $sw $rss"
	done
}
log "settling ${SETTLE}s, then measuring ${IDLE}s of idle"
sleep "$SETTLE"
sample >"$WORK/before"
s0=$EPOCHREALTIME
sleep "$IDLE"
sample >"$WORK/after"
s1=$EPOCHREALTIME
load=$(cut -d' ' -f1-3 /proc/loadavg)
hz=$(getconf CLK_TCK)
# Per daemon "CPU% RSS_MB SWITCHES" over the idle period.
awk -v hz="$hz" -v t="$(elapsed "$s0" "$s1")" '
	NR == FNR { tk[$1] = $2; sw[$1] = $3; next }
	{ printf "%.3f %.1f %d\n", ($2 - tk[$1]) / hz / t * 100, $4 / 1024, $3 - sw[$1] }' "$WORK/before" "$WORK/after" >"$WORK/idle"
t=$(elapsed "$s0" "$s1")
# Formation's cost: every daemon's CPU from its start to the end of
# settling (the idle part of that is small).
formation_cpu=$(awk -v hz="$hz" '{ s += $2 } END { printf "%.1f", s / hz }' "$WORK/before")
cpu_mean=$(awk '{ s += $1 } END { printf "%.2f", s / NR }' "$WORK/idle")
cpu_median=$(cut -d' ' -f1 "$WORK/idle" | sort -n | sed -n "$(((N + 1) / 2))p")
cpu_max=$(cut -d' ' -f1 "$WORK/idle" | sort -n | tail -n 1)
rss_median=$(cut -d' ' -f2 "$WORK/idle" | sort -n | sed -n "$(((N + 1) / 2))p")
rss_max=$(cut -d' ' -f2 "$WORK/idle" | sort -n | tail -n 1)
cs=$(awk -v t="$t" '{ s += $3 } END { printf "%.0f", s / t }' "$WORK/idle")

verdict() { awk -v v="$1" -v bar="$2" 'BEGIN { print (v + 0 < bar + 0) ? "pass" : "MISSED" }'; }
addr_bar=$(awk -v m="$mesh_s" 'BEGIN { printf "%.1f", m + 5 }')
echo
echo "Scale: $N peers (namespace hosts on one bridge), each launched knowing host 1 and the one before it${EXTRA[*]:+, flags: ${EXTRA[*]}}"
printf '  %-50s %s s\n' "launches, one after another" "$(elapsed "$t0" "$tl")"
printf '  %-50s %-26s %s\n' \
	"full mesh after the last launch" "$mesh_s s" "bar 5 s            $(verdict "$mesh_s" 5)" \
	"first address on every host, after the last launch" "$addr_last s (median $addr_median)" "bar mesh+5 = $addr_bar s $(verdict "$addr_last" "$addr_bar")" \
	"idle CPU per daemon (${IDLE}s)" "mean $cpu_mean%, median $cpu_median, max $cpu_max" "bar 0.3% each      $(verdict "$cpu_max" 0.3)" \
	"RSS per daemon" "median $rss_median MB, max $rss_max" "bar 40 MB          $(verdict "$rss_max" 40)" \
	"context switches, all daemons" "$cs/s" "" \
	"CPU of all daemons, first launch to end of settling" "$formation_cpu s" ""
echo "  load average after the idle period: $load (2 CPUs, other work on the machine included)"
echo "  hosts whose own view lacks a connection: $short; learned neighbour entries on the underlay: $learned"
# KEEP also gets each host's idle figures; HOLD=S keeps the hosts S
# seconds more (for profiling), their daemons' pids in $KEEP/pids.
if [ -n "${KEEP:-}" ]; then
	mkdir -p "$KEEP"
	cp "$WORK/idle" "$KEEP/"
	echo "${pids[*]}" >"$KEEP/pids"
fi
if [ -n "${HOLD:-}" ]; then
	log "holding ${HOLD}s: daemons ${pids[*]}"
	sleep "$HOLD"
fi
