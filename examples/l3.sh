#!/usr/bin/env bash
# weavenet L3 mode: three "hosts" in a line, h1 - h2 - h3 (network
# namespaces; h1 and h3 share no segment, so h2's router relays between
# them), each running weave in L3 mode with a password: no bridge, no
# containers, the hosts themselves get overlay addresses on a TUN device
# (h1 and h2 from IPAM, h3 a fixed one). Then h1 pings h3's overlay address
# and runs iperf3 to it through h2, encrypted on both links.
#
# Usage: sudo make demo-l3      (or: sudo BIN=path/to/bin examples/l3.sh)
# Everything it creates carries a random prefix and is removed on exit.
set -euo pipefail

TOOL=demo-l3 NEED="ping iperf3 ss"
. "$(dirname "$0")/lib.sh"
H3=${P}h3
DURATION=${DURATION:-5}
step() { printf '\n==> %s\n' "$*"; }

step "hosts in a line: h1 ($H1) 192.168.201.1 <-> 192.168.201.2 h2 ($H2) 192.168.202.2 <-> 192.168.202.3 h3 ($H3)"
for ns in "$H1" "$H2" "$H3"; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
done
ip link add eth0 netns "$H1" type veth peer name eth0 netns "$H2"
ip link add eth1 netns "$H2" type veth peer name eth0 netns "$H3"
ip -n "$H1" addr add 192.168.201.1/24 dev eth0
ip -n "$H2" addr add 192.168.201.2/24 dev eth0
ip -n "$H2" addr add 192.168.202.2/24 dev eth1
ip -n "$H3" addr add 192.168.202.3/24 dev eth0
for l in "$H1 eth0" "$H2 eth0" "$H2 eth1" "$H3 eth0"; do
	set -- $l
	ip -n "$1" link set "$2" up
done

step "h1: weave launch --mode l3 --password ...;  h2: ... 192.168.201.1;  h3: ... --l3-address 10.32.99.3/12 192.168.202.2"
export WEAVE_PASSWORD=demo-l3-secret
launch "$H1" h1 --mode l3
launch "$H2" h2 --mode l3 192.168.201.1
launch "$H3" h3 --mode l3 --l3-address 10.32.99.3/12 192.168.202.2

step "waiting for h1 and h3 to have an overlay address and to know all three peers"
addr() { host "$1" ip -o -4 addr show dev weavetun | awk '$4 ~ /^10\./ { sub("/.*", "", $4); print $4; exit }'; }
for i in $(seq 150); do
	A1=$(addr "$H1") A3=$(addr "$H3")
	peers=$(host "$H1" "$BIN/weave" report -f '{{len .Router.Peers}}' 2>/dev/null || true)
	[ -n "$A1" ] && [ -n "$A3" ] && [ "$peers" = 3 ] && break
	sleep 0.2
done
[ -n "$A1" ] && [ -n "$A3" ] || { echo "demo-l3: no overlay addresses after 30s" >&2; exit 1; }
echo "h1 has $A1, h2 has $(addr "$H2"), h3 has $A3 (on device weavetun)"

step "h1: ip route (the overlay range goes to the TUN)"
host "$H1" ip route
step "h2: weave status   (h2 relays between h1 and h3)"
host "$H2" "$BIN/weave" status
host "$H2" "$BIN/weave" status connections

step "h1: ping -c 3 $A3   (h3's overlay address, two hops away)"
if ! host "$H1" ping -c 3 -W 5 "$A3"; then
	echo "demo-l3: ping from h1 to h3 over the overlay failed" >&2
	exit 1
fi

step "h1 -> h3: iperf3 for $DURATION seconds over the overlay, relayed by h2, encrypted"
host "$H3" iperf3 -s -1 >/dev/null 2>&1 &
for i in $(seq 50); do
	host "$H3" ss -Htln 'sport = :5201' | grep -q . && break
	sleep 0.1
done
host "$H1" iperf3 -c "$A3" -t "$DURATION"
wait

step "done: three hosts in L3 mode, h1 reaches h3 through h2"
