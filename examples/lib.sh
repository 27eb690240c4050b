# Shared by demo.sh and bench.sh: checks, two "hosts" (network namespaces
# on a veth underlay, 192.168.200.1 and .2), helpers to run commands in them,
# and a cleanup that removes every namespace carrying this run's random
# prefix, whatever happened. Set TOOL (for messages) and NEED (commands that
# must exist) before sourcing.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=$(cd "${BIN:-$here/../bin}" 2>/dev/null && pwd) || { echo "$TOOL: no bin directory; run make build first" >&2; exit 1; }
for b in weave weaved; do
	[ -x "$BIN/$b" ] || { echo "$TOOL: $BIN/$b not found; run make build first" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "$TOOL: needs root for network namespaces; run sudo make $TOOL" >&2; exit 1; }
for c in ip nsenter $NEED; do
	command -v "$c" >/dev/null || { echo "$TOOL: $c not found; run sudo make deps" >&2; exit 1; }
done

P=wn$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
H1=${P}h1 H2=${P}h2
WORK=$(mktemp -d "/tmp/weavenet-$TOOL-XXXXXX")
# weaveDNS forwards names outside its domain nowhere: nothing leaves this machine.
: > "$WORK/upstream-resolv.conf"

cleanup() {
	local rc=$?
	set +e
	trap - EXIT
	if [ "$rc" != 0 ]; then
		for h in $(ls "$WORK" 2>/dev/null); do
			[ -f "$WORK/$h/weaved.log" ] && { echo "--- $h weaved.log (tail)"; tail -n 20 "$WORK/$h/weaved.log"; }
		done
	fi
	for ns in "$H1" "$H2" ${H3:-}; do
		[ -e "/var/run/netns/$ns" ] && host "$ns" "$BIN/weave" stop >/dev/null 2>&1
	done
	for ns in $(ls /var/run/netns 2>/dev/null | grep "^$P"); do
		pids=$(ip netns pids "$ns" 2>/dev/null || true)
		[ -n "$pids" ] && kill -9 $pids 2>/dev/null
		ip netns delete "$ns"
		rm -rf "/etc/netns/$ns"
	done
	rm -rf "$WORK"
	echo "$TOOL: cleaned up ($P*)" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# host runs a command on a host: in its network namespace but in our mount
# namespace, as on a real machine (weave run's namespaces must be visible to
# everyone); hosts share the filesystem, so each host's weaved serves its
# API on a socket of its own, which weave finds through WEAVE_HTTP_ADDR. on
# runs a command in a container, as ip netns exec does, with its
# /etc/netns/NAME/resolv.conf pointing at weaveDNS.
host() { local ns=$1; shift; WEAVE_HTTP_ADDR="unix://$WORK/$ns.sock" nsenter --net="/var/run/netns/$ns" -- "$@"; }
on() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# launch HOST NICK [FLAGS...]: weave launch with this run's data dir.
launch() {
	local ns=$1 nick=$2
	shift 2
	host "$ns" "$BIN/weave" launch --data-dir "$WORK/$nick" --nickname "$nick" --dns-resolv-conf "$WORK/upstream-resolv.conf" "$@"
}

# wait_link: until h2 gossips its link to h1 as established from both ends.
wait_link() {
	for i in $(seq 100); do
		links=$(host "$H2" "$BIN/weave" report -f '{{range .Router.Peers}}{{range .Connections}}{{if .Established}}x{{end}}{{end}}{{end}}' 2>/dev/null || true)
		[ "$links" = xx ] && return 0
		sleep 0.2
	done
	echo "$TOOL: h2 did not connect to h1 within 20s" >&2
	return 1
}

# make_hosts [A B]: two hosts (default $H1 and $H2), 192.168.200.1 and .2
# on a veth underlay.
make_hosts() {
	local a=${1:-$H1} b=${2:-$H2}
	for ns in "$a" "$b"; do
		ip netns add "$ns"
		ip -n "$ns" link set lo up
	done
	ip link add eth0 netns "$a" type veth peer name eth0 netns "$b"
	ip -n "$a" addr add 192.168.200.1/24 dev eth0
	ip -n "$b" addr add 192.168.200.2/24 dev eth0
	ip -n "$a" link set eth0 up
	ip -n "$b" link set eth0 up
}
