#!/usr/bin/env bash
# weavenet demo: two "hosts" (network namespaces joined by a veth underlay),
# weave launched on both, a container made with weave run on each (addresses
# from IPAM, names in weaveDNS), then the containers ping each other by name
# and run iperf3 over the weave network.
#
# Usage: sudo make demo      (or: sudo BIN=path/to/bin examples/demo.sh)
# Everything it creates carries a random prefix and is removed on exit.
set -euo pipefail

TOOL=demo NEED="ping iperf3 ss"
. "$(dirname "$0")/lib.sh"
C1=${P}c1 C2=${P}c2
step() { printf '\n==> %s\n' "$*"; }

step "hosts h1 ($H1) and h2 ($H2) on a veth underlay: 192.168.200.1 <-> 192.168.200.2"
make_hosts

step "h1: weave launch"
launch "$H1" h1
step "h2: weave launch 192.168.200.1"
launch "$H2" h2 192.168.200.1
step "waiting for the connection"
wait_link

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
