# Weave Net 2.8.1's own router against itself and against weavenet, for the
# benchmark: one TCP stream container to container (iperf3, DURATION s)
# between two hosts that both run Weave Net's router (weaver, sleeve only:
# --no-fastdp), and between a weavenet host and a Weave Net host, each way.
# Measured on hosts of their own (two namespaces on a veth underlay, as
# lib.sh's), so nothing of the other runs is in the way.
#
# Sourced by bench.sh after lib.sh; needs its tcp function. The router is
# weaver.xz from $WEAVER_XZ, by default <repository>/../shared/weave-2.8.1/
# (README there), and needs libpcap0.8, iptables and ethtool (make deps).
# bench_weave [LABEL] [--password S] sets, for LABEL (default plain):
#   tcp_ww_LABEL   Weave Net to Weave Net
#   tcp_nw_LABEL   weavenet to Weave Net
#   tcp_wn_LABEL   Weave Net to weavenet
# in bit/s, and returns 1 if it could not measure (weaver_why says why when
# the router cannot run here; other failures are logged on stderr).

WEAVER_XZ=${WEAVER_XZ:-$here/../../shared/weave-2.8.1/weaver.xz}
WEAVER=""
weaver_n=0

# weaver_ready: unpacks the router once into $WORK; if it cannot run here,
# sets weaver_why to the reason and returns 1.
weaver_why=""
weaver_ready() {
	[ -n "$WEAVER" ] && return 0
	if [ ! -f "$WEAVER_XZ" ]; then
		weaver_why="no Weave Net 2.8.1 router at $WEAVER_XZ (set WEAVER_XZ to its weaver.xz)"
		return 1
	fi
	for c in xz curl ethtool iptables; do
		command -v "$c" >/dev/null || { weaver_why="Weave Net's router needs $c here; run sudo make deps"; return 1; }
	done
	if ! xz -dc "$WEAVER_XZ" >"$WORK/weaver" || ! chmod +x "$WORK/weaver"; then
		weaver_why="cannot unpack $WEAVER_XZ"
		return 1
	fi
	local msg
	msg=$("$WORK/weaver" --help 2>&1 || true)
	if grep -q 'shared librar' <<<"$msg"; then
		weaver_why="Weave Net's router cannot run here: $(head -n 1 <<<"$msg") (make deps installs libpcap0.8)"
		return 1
	fi
	WEAVER=$WORK/weaver
}


# weaver_start NS NICK [ARGS...]: Weave Net's router on NS in the background
# (its pid is appended to weaver_pids), returning once its HTTP API answers.
weaver_pids=""
weaver_start() {
	local ns=$1 nick=$2 dir=$WORK/$2-weaver
	shift 2
	weaver_n=$((weaver_n + 1))
	mkdir -p "$dir"
	# It drops restart.sentinel in its working directory: one per router.
	(cd "$dir" && CHECKPOINT_DISABLE=1 exec nsenter --net="/var/run/netns/$ns" -- "$WEAVER" \
		--port 6783 --name "$(printf '02:bb:00:00:00:%02x' "$weaver_n")" --nickname "$nick" \
		--no-fastdp --docker-api "" --http-addr 127.0.0.1:6784 --db-prefix "$dir/" \
		"$@" >"$dir/weaver.log" 2>&1) &
	weaver_pids="$weaver_pids $!"
	for i in $(seq 100); do
		host "$ns" curl -sf -o /dev/null http://127.0.0.1:6784/status && return 0
		sleep 0.1
	done
	echo "Weave Net's router on $nick did not answer; log tail:" >&2
	tail -n 20 "$dir/weaver.log" >&2
	return 1
}

weaver_stop() {
	[ -n "$weaver_pids" ] && kill $weaver_pids 2>/dev/null
	for pid in $weaver_pids; do wait "$pid" 2>/dev/null; done
	weaver_pids=""
	return 0
}

# weaver_attach NS C CIDR: container C into the router's bridge as Weave
# Net's own attach does it: MTU 1376 on both ends of the veth, and transmit
# checksum offload off in the container (the router takes frames off the
# bridge with pcap and would forward their checksums unfilled).
weaver_attach() {
	local ns=$1 c=$2 cidr=$3 hif=vw${2: -6}
	ip netns add "$c"
	ip -n "$c" link set lo up
	ip link add "$hif" netns "$ns" mtu 1376 type veth peer name ethwe netns "$c" mtu 1376
	ip -n "$ns" link set "$hif" master weave
	ip -n "$ns" link set "$hif" up
	on "$c" ethtool -K ethwe tx off >/dev/null
	ip -n "$c" addr add "$cidr" dev ethwe
	ip -n "$c" link set ethwe up
}

# reach FROM ADDR: until FROM pings ADDR (30 s).
reach() {
	for i in $(seq 60); do
		on "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	echo "$1 cannot reach $2 over the overlay" >&2
	return 1
}

bench_weave_n=0
bench_weave() {
	local label=${1:-plain} a b c d n
	shift || true
	weaver_ready || return 1
	bench_weave_n=$((bench_weave_n + 1))
	n=$bench_weave_n
	# Weave Net to Weave Net.
	a=${P}w${n}h1 b=${P}w${n}h2 c=${P}w${n}c1 d=${P}w${n}c2
	make_hosts "$a" "$b"
	weaver_start "$a" "ww1-$label" "$@" || return 1
	weaver_start "$b" "ww2-$label" "$@" 192.168.200.1 || return 1
	weaver_attach "$a" "$c" 10.99.1.1/24
	weaver_attach "$b" "$d" 10.99.1.2/24
	reach "$c" 10.99.1.2 || return 1
	echo "bench: Weave Net to Weave Net TCP ($label, ${DURATION}s)" >&2
	printf -v "tcp_ww_$label" %s "$(tcp "$c" "$d" 10.99.1.2)"
	weaver_stop

	# weavenet (a) and Weave Net (b), which joins it.
	a=${P}m${n}h1 b=${P}m${n}h2 c=${P}m${n}c1 d=${P}m${n}c2
	make_hosts "$a" "$b"
	# A password keys this mixed link Weave Net's way only if weavenet
	# is told to (its default, argon2id, Weave Net does not know).
	local kdf=()
	case " $* " in *" --password "*) kdf=(--password-kdf weave) ;; esac
	launch "$a" "mix-$label" "$@" "${kdf[@]}" >/dev/null || return 1
	weaver_start "$b" "mixw-$label" "$@" 192.168.200.1 || return 1
	ip netns add "$c"
	ip -n "$c" link set lo up
	host "$a" "$BIN/weave" attach 10.99.1.1/24 "$c" >/dev/null || return 1
	weaver_attach "$b" "$d" 10.99.1.2/24
	reach "$c" 10.99.1.2 || return 1
	echo "bench: weavenet to Weave Net TCP and back ($label, ${DURATION}s each)" >&2
	printf -v "tcp_nw_$label" %s "$(tcp "$c" "$d" 10.99.1.2)"
	printf -v "tcp_wn_$label" %s "$(tcp "$d" "$c" 10.99.1.1)"
	weaver_stop
	host "$a" "$BIN/weave" stop >/dev/null 2>&1 || true
}
