#!/usr/bin/env bash
# weavenet demo: two "hosts" (network namespaces joined by a veth underlay),
# weave launched on both, a container made with weave run on each (addresses
# from IPAM, names in weaveDNS), then the containers ping each other by name
# and run iperf3 over the weave network.
#
# Usage: sudo make demo      (or: sudo BIN=path/to/bin examples/demo.sh)
# Everything it creates carries a random prefix and is removed on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
BIN=$(cd "${BIN:-$here/../bin}" 2>/dev/null && pwd) || { echo "demo: no bin directory; run make build first" >&2; exit 1; }
for b in weave weaved; do
	[ -x "$BIN/$b" ] || { echo "demo: $BIN/$b not found; run make build first" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "demo: needs root for network namespaces; run sudo make demo" >&2; exit 1; }
for c in ip ping iperf3; do
	command -v "$c" >/dev/null || { echo "demo: $c not found; run sudo make deps" >&2; exit 1; }
done

P=wn$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
H1=${P}h1 H2=${P}h2 C1=${P}c1 C2=${P}c2
WORK=$(mktemp -d /tmp/weavenet-demo-XXXXXX)

cleanup() {
	local rc=$?
	set +e
	trap - EXIT
	if [ "$rc" != 0 ]; then
		for h in h1 h2; do
			[ -f "$WORK/$h/weaved.log" ] && { echo "--- $h weaved.log (tail)"; tail -n 20 "$WORK/$h/weaved.log"; }
		done
	fi
	[ -e "/var/run/netns/$H1" ] && host "$H1" "$BIN/weave" rm "$C1" >/dev/null 2>&1
	[ -e "/var/run/netns/$H2" ] && host "$H2" "$BIN/weave" rm "$C2" >/dev/null 2>&1
	for ns in "$H1" "$H2"; do
		[ -e "/var/run/netns/$ns" ] && host "$ns" "$BIN/weave" stop >/dev/null 2>&1
	done
	rm -rf "/etc/netns/$C1" "/etc/netns/$C2"
	for ns in "$C1" "$C2" "$H1" "$H2"; do
		[ -e "/var/run/netns/$ns" ] || continue
		pids=$(ip netns pids "$ns" 2>/dev/null || true)
		[ -n "$pids" ] && kill -9 $pids 2>/dev/null
		ip netns delete "$ns"
	done
	rm -rf "$WORK"
	echo "demo: cleaned up ($P*)"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# host runs a command on a host: in its network namespace, but in our mount
# namespace, as on a real machine (weave run's namespaces must be visible to
# everyone). on runs a command in a container, as ip netns exec does, with
# the container's /etc/netns/NAME/resolv.conf pointing at weaveDNS.
host() { local ns=$1; shift; nsenter --net="/var/run/netns/$ns" -- "$@"; }
on() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
step() { printf '\n==> %s\n' "$*"; }

step "hosts h1 ($H1) and h2 ($H2) on a veth underlay: 192.168.200.1 <-> 192.168.200.2"
for ns in "$H1" "$H2"; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
done
ip link add eth0 netns "$H1" type veth peer name eth0 netns "$H2"
ip -n "$H1" addr add 192.168.200.1/24 dev eth0
ip -n "$H2" addr add 192.168.200.2/24 dev eth0
ip -n "$H1" link set eth0 up
ip -n "$H2" link set eth0 up

step "h1: weave launch"
: > "$WORK/upstream-resolv.conf"  # weaveDNS forwards nothing off this machine
host "$H1" "$BIN/weave" launch --data-dir "$WORK/h1" --nickname h1 --dns-resolv-conf "$WORK/upstream-resolv.conf"
step "h2: weave launch 192.168.200.1"
host "$H2" "$BIN/weave" launch --data-dir "$WORK/h2" --nickname h2 --dns-resolv-conf "$WORK/upstream-resolv.conf" 192.168.200.1

printf 'waiting for the connection'
for i in $(seq 100); do
	# Both ends gossip the link as established once the mesh has settled.
	links=$(host "$H2" "$BIN/weave" report -f '{{range .Router.Peers}}{{range .Connections}}{{if .Established}}x{{end}}{{end}}{{end}}' 2>/dev/null || true)
	[ "$links" = xx ] && break
	[ "$i" = 100 ] && { echo; echo "demo: h2 did not connect to h1 within 20s" >&2; exit 1; }
	printf .
	sleep 0.2
done
echo " established"

step "containers: c1 10.32.0.1/12 on h1, c2 10.32.0.2/12 on h2"
step "h1: weave run --name c1 -- sleep 3600;  h2: weave run --name c2 -- sleep 3600"
host "$H1" "$BIN/weave" run --name "$C1" -h c1.weave.local -- sleep 3600
host "$H2" "$BIN/weave" run --name "$C2" -h c2.weave.local -- sleep 3600

step "h2: weave status"
host "$H2" "$BIN/weave" status
step "h2: weave status connections, ipam, dns"
host "$H2" "$BIN/weave" status connections
host "$H2" "$BIN/weave" status ipam
host "$H2" "$BIN/weave" status dns

step "c2: ping -c 3 c1   (c1 lives on h1)"
if ! on "$C2" ping -c 3 -W 2 c1; then
	echo "demo: ping from c2 to c1 by name failed" >&2
	exit 1
fi
step "c1: ping -c 3 c2   (c2 lives on h2)"
if ! on "$C1" ping -c 3 -W 2 c2; then
	echo "demo: ping from c1 to c2 by name failed" >&2
	exit 1
fi

step "c1 -> c2: iperf3 for 5 seconds"
on "$C2" iperf3 -s -1 >/dev/null 2>&1 &
for i in $(seq 50); do
	on "$C2" ss -Htln 'sport = :5201' | grep -q . && break
	sleep 0.1
done
on "$C1" iperf3 -c c2 -t 5
wait

step "done: c1 and c2 talk over weave across two hosts"
