# The fast datapath's figures for the benchmark, measured so that one run
# can judge its bars on a shared, noisy machine: the underlay, plain kernel
# VXLAN (set up by hand, no weavenet) and weavenet's fast datapath run
# interleaved, FDP_ROUNDS times (default 3), and each figure is the median
# of its rounds, with the spread (lowest-highest) beside it; each ratio is
# taken per round (against the underlay measured in the same round) and the
# median of those is the bar's figure.
#
# Round trips are per-packet medians of FDP_PINGS pings (default 2000, 2 ms
# apart: the bar's figure), and of FDP_IDLE_PINGS (default 100) 50 ms apart,
# where each ping finds the CPUs idle and pays for waking them (the older
# bench's spacing), on four paths with the same two hosts:
#   underlay  host to host (one veth crossing each way)
#   routed    namespace to namespace routed through both hosts, no bridge,
#             no VXLAN: the overlay's three veth crossings each way
#   vxlan     plain kernel VXLAN: three veth crossings, two bridges, VXLAN
#   fastdp    weavenet's fast datapath: the same as vxlan
# so routed - underlay is what the extra veth hops cost, vxlan - routed
# what the bridges and the encapsulation cost.
#
# Then the same at 1 Gbit/s (tc tbf on both hosts' underlay), and again on a
# jumbo underlay (MTU 9000, overlay --mtu 8938: the sleeve's 62 bytes of
# unencrypted overhead fit, and VXLAN's 50), the second figure.
#
# Sourced by bench.sh after lib.sh (needs its on, host, launch, wait_link,
# tcp and throttle). bench_fastdp sets fdp_* variables and returns 1 if the
# link did not come up on the fast datapath; report_fastdp prints them.

FDP_ROUNDS=${FDP_ROUNDS:-3}
FDP_PINGS=${FDP_PINGS:-2000}
FDP_IDLE_PINGS=${FDP_IDLE_PINGS:-100}

# median: the median of the numbers on stdin, one a line.
median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# stats LIST: "median lowest highest" of a space-separated list.
stats() {
	local m
	m=$(printf '%s\n' $1 | median)
	printf '%s %s\n' "$m" "$(printf '%s\n' $1 | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo, hi }')"
}

# fdp_rtt NS ADDR [COUNT INTERVAL]: the median round trip in ms, per
# packet, of COUNT pings INTERVAL s apart (FDP_PINGS, 2 ms).
fdp_rtt() {
	on "$1" ping -n -c "${3:-$FDP_PINGS}" -i "${4:-0.002}" -W 1 "$2" | awk -F'time=' '/time=/ { split($2, a, " "); print a[1] }' | median
}

# iperf_cpu NS: the CPU seconds iperf3 reports for its sender and receiver
# in the last run from NS. On a kernel path the encapsulation and the
# receiving side's softirq work run in their contexts (a veth underlay
# delivers on the sending CPU), and unlike the machine's total it leaves out
# whatever else runs on a shared machine.
iperf_cpu() {
	awk -v d="$DURATION" '/"cpu_utilization_percent"/ { f = 1 } f && /"host_total"/ { gsub(/[^0-9.eE+-]/, "", $2); h = $2 } f && /"remote_total"/ { gsub(/[^0-9.eE+-]/, "", $2); r = $2; exit } END { printf "%.3f", (h + r) / 100 * d }' "$WORK/iperf-$1.json"
}

# fdp_up MTU ADDR1 ADDR2 [FLAGS...]: weave on both hosts at overlay MTU
# MTU (attach sets it on the containers' veths again), C1 and C2 attached
# with ADDR1 and ADDR2; waits for the fast datapath.
fdp_up() {
	local mtu=$1 a1=$2 a2=$3 ns p="" i
	shift 3
	for ns in "$H1" "$H2"; do
		host "$ns" "$BIN/weave" stop >/dev/null 2>&1 || true
	done
	launch "$H1" h1 --mtu "$mtu" "$@" >/dev/null
	launch "$H2" h2 --mtu "$mtu" "$@" 192.168.200.1 >/dev/null
	wait_link
	host "$H1" "$BIN/weave" attach "$a1/12" "$C1" >/dev/null
	host "$H2" "$BIN/weave" attach "$a2/12" "$C2" >/dev/null
	on "$C1" ping -c 1 -W 5 "$a2" >/dev/null || { log "c1 cannot reach c2"; return 1; }
	for i in $(seq 50); do
		p=$(host "$H1" "$BIN/weave" report -f '{{range .Router.Connections}}{{.Datapath}}{{end}}' 2>/dev/null || true)
		[ "$p" = fastdp ] && break
		sleep 0.2
	done
	if [ "$p" != fastdp ]; then
		log "the link did not come up on the fast datapath: $(host "$H1" "$BIN/weave" status connections 2>&1)"
		return 1
	fi
	# Full-sized frames cross (and the entries are in place).
	on "$C1" ping -c 3 -i 0.2 -M do -s $((mtu - 28)) "$a2" >/dev/null || { log "full-sized pings at MTU $mtu do not cross"; return 1; }
}

# fdp_refs_up MTU: the references, on the same two hosts: plain kernel
# VXLAN (namespaces r1, r2 at 10.250.0.1/.2 behind a bridge and a VXLAN
# device on UDP 4790 per host, overlay MTU MTU) and the routed path
# (namespaces q1, q2 at 10.251.N.2, routed by the hosts over the underlay).
fdp_refs_up() {
	local mtu=$1 n ns peer
	for n in 1 2; do
		ns=$([ $n = 1 ] && echo "$H1" || echo "$H2")
		peer=192.168.200.$((3 - n))
		ip netns add "${P}r$n"
		ip -n "${P}r$n" link set lo up
		on "$ns" ip link add vxref mtu "$mtu" type vxlan id 4242 dstport 4790 remote "$peer" nolearning
		on "$ns" ip link add brref mtu "$mtu" type bridge
		on "$ns" ip link set vxref master brref
		on "$ns" ip link add vethref mtu "$mtu" type veth peer name eth0 mtu "$mtu" netns "${P}r$n"
		on "$ns" ip link set vethref master brref
		for dev in vxref brref vethref; do on "$ns" ip link set "$dev" up; done
		on "${P}r$n" ip addr add 10.250.0.$n/24 dev eth0
		on "${P}r$n" ip link set eth0 up

		ip netns add "${P}q$n"
		ip -n "${P}q$n" link set lo up
		on "$ns" ip link add vethq type veth peer name eth0 netns "${P}q$n"
		on "$ns" ip addr add 10.251.$n.1/24 dev vethq
		on "$ns" ip link set vethq up
		on "$ns" ip route replace 10.251.$((3 - n)).0/24 via "$peer"
		on "$ns" sysctl -qw net.ipv4.ip_forward=1
		on "${P}q$n" ip addr add 10.251.$n.2/24 dev eth0
		on "${P}q$n" ip link set eth0 up
		on "${P}q$n" ip route add default via 10.251.$n.1
	done
	on "${P}r1" ping -c 3 -i 0.2 -W 5 -M do -s $((mtu - 28)) 10.250.0.2 >/dev/null || { log "kernel VXLAN reference does not ping"; return 1; }
	on "${P}q1" ping -c 3 -i 0.2 -W 5 10.251.2.2 >/dev/null || { log "routed reference does not ping"; return 1; }
}

fdp_refs_down() {
	local n ns
	for n in 1 2; do
		ns=$([ $n = 1 ] && echo "$H1" || echo "$H2")
		on "$ns" ip link delete vxref 2>/dev/null || true
		on "$ns" ip link delete brref 2>/dev/null || true
		on "$ns" ip link delete vethq 2>/dev/null || true
		on "$ns" ip route delete 10.251.$((3 - n)).0/24 2>/dev/null || true
		ip netns delete "${P}r$n" 2>/dev/null || true
		ip netns delete "${P}q$n" 2>/dev/null || true
	done
}

# fdp_rounds LABEL OVERLAY_ADDR [rtt]: FDP_ROUNDS interleaved rounds of
# underlay, kernel VXLAN and fast datapath TCP; appends to fdp_LABEL_{u,v,f}
# (bit/s), fdp_LABEL_{vc,fc} (iperf3's CPU seconds) and, with rtt, to
# fdp_rtt_{u,q,v,f} (ms).
fdp_rounds() {
	local label=$1 addr=$2 want_rtt=${3:-} r x
	for r in $(seq "$FDP_ROUNDS"); do
		log "fast datapath, $label, round $r/$FDP_ROUNDS: underlay, kernel VXLAN, fast datapath TCP (${DURATION}s each)"
		x=$(tcp "$H1" "$H2" 192.168.200.2)
		eval "fdp_${label}_u+=\" $x\""
		x=$(tcp "${P}r1" "${P}r2" 10.250.0.2)
		eval "fdp_${label}_v+=\" $x\" fdp_${label}_vc+=\" $(iperf_cpu "${P}r1")\""
		x=$(tcp "$C1" "$C2" "$addr")
		eval "fdp_${label}_f+=\" $x\" fdp_${label}_fc+=\" $(iperf_cpu "$C1")\""
		if [ -n "$want_rtt" ]; then
			log "  round trips: $FDP_PINGS pings 2 ms apart and $FDP_IDLE_PINGS 50 ms apart on each of four paths"
			fdp_rtt_u+=" $(fdp_rtt "$H1" 192.168.200.2)"
			fdp_rtt_q+=" $(fdp_rtt "${P}q1" 10.251.2.2)"
			fdp_rtt_v+=" $(fdp_rtt "${P}r1" 10.250.0.2)"
			fdp_rtt_f+=" $(fdp_rtt "$C1" "$addr")"
			fdp_irtt_u+=" $(fdp_rtt "$H1" 192.168.200.2 "$FDP_IDLE_PINGS" 0.05)"
			fdp_irtt_q+=" $(fdp_rtt "${P}q1" 10.251.2.2 "$FDP_IDLE_PINGS" 0.05)"
			fdp_irtt_v+=" $(fdp_rtt "${P}r1" 10.250.0.2 "$FDP_IDLE_PINGS" 0.05)"
			fdp_irtt_f+=" $(fdp_rtt "$C1" "$addr" "$FDP_IDLE_PINGS" 0.05)"
		fi
	done
}

# ratios A B: the per-round ratios of two lists of the same length.
ratios() {
	paste -d' ' <(printf '%s\n' $1) <(printf '%s\n' $2) | awk '{ printf "%s ", $1 / $2 }'
}

# cpu_ratios FC F VC V: per round, (fc/f) / (vc/v): CPU per bit on the fast
# datapath against kernel VXLAN.
cpu_ratios() {
	paste -d' ' <(printf '%s\n' $1) <(printf '%s\n' $2) <(printf '%s\n' $3) <(printf '%s\n' $4) | awk '{ printf "%s ", ($1 / $2) / ($3 / $4) }'
}

bench_fastdp() {
	fdp_std_u="" fdp_std_v="" fdp_std_f="" fdp_std_vc="" fdp_std_fc=""
	fdp_std1g_u="" fdp_std1g_v="" fdp_std1g_f="" fdp_std1g_vc="" fdp_std1g_fc=""
	fdp_jumbo_u="" fdp_jumbo_v="" fdp_jumbo_f="" fdp_jumbo_vc="" fdp_jumbo_fc=""
	fdp_jumbo1g_u="" fdp_jumbo1g_v="" fdp_jumbo1g_f="" fdp_jumbo1g_vc="" fdp_jumbo1g_fc=""
	fdp_rtt_u="" fdp_rtt_q="" fdp_rtt_v="" fdp_rtt_f=""
	fdp_irtt_u="" fdp_irtt_q="" fdp_irtt_v="" fdp_irtt_f=""
	fdp_up 1376 10.32.0.1 10.32.0.2 || return 1
	fdp_refs_up 1376 || { fdp_refs_down; return 1; }
	fdp_rounds std 10.32.0.2 rtt
	if throttle add 2>/dev/null; then
		fdp_rounds std1g 10.32.0.2
		throttle del
	fi
	fdp_refs_down

	log "jumbo underlay: MTU 9000, overlay --mtu 8938"
	for ns in "$H1" "$H2"; do on "$ns" ip link set eth0 mtu 9000; done
	if fdp_up 8938 10.32.0.1 10.32.0.2 && fdp_refs_up 8938; then
		fdp_rounds jumbo 10.32.0.2
		if throttle add 2>/dev/null; then
			fdp_rounds jumbo1g 10.32.0.2
			throttle del
		fi
	else
		log "jumbo figures not measured (see above)"
	fi
	fdp_refs_down
	for ns in "$H1" "$H2"; do
		host "$ns" "$BIN/weave" stop >/dev/null 2>&1 || true
		on "$ns" ip link set eth0 mtu 1500
	done
	return 0
}

# fdp_line LABEL LIST: a throughput line, median (lowest-highest) in Gbit/s.
fdp_line() {
	[ -n "$2" ] || return 0
	stats "$2" | awk -v l="$1" '{ printf "  %-44s %7.2f Gbit/s (%.2f-%.2f)\n", l, $1 / 1e9, $2 / 1e9, $3 / 1e9 }'
}

# fdp_rttline LABEL LIST IDLE_LIST: round trips, median (lowest-highest),
# both spacings.
fdp_rttline() {
	printf "  %-44s %s | %s\n" "  $1" "$(stats "$2" | awk '{ printf "%.3f (%.3f-%.3f)", $1, $2, $3 }')" "$(stats "$3" | awk '{ printf "%.3f (%.3f-%.3f)", $1, $2, $3 }')"
}

# diffs A B: the per-round differences of two lists of the same length.
diffs() {
	paste -d' ' <(printf '%s\n' $1) <(printf '%s\n' $2) | awk '{ printf "%s ", $1 - $2 }'
}

# fdp_bar NAME LIST min|max|scale LIMIT FMT: a bar judged on the median of
# the per-round figures in LIST, printed with FMT, with their spread; a
# scale line is not judged.
fdp_bar() {
	local name=$1 list=$2 dir=$3 limit=$4 fmt=$5 s
	[ -n "$list" ] || return 0
	s=$(stats "$list")
	printf "  %-50s %28s   %s\n" "$name" "$(awk -v s="$s" -v f="$fmt" 'BEGIN { split(s, a, " "); printf f " (" f "-" f ")", a[1], a[2], a[3] }')" \
		"$(awk -v s="$s" -v d="$dir" -v l="$limit" 'BEGIN { split(s, a, " "); if (d == "scale") exit; ok = d == "min" ? a[1] >= l : a[1] < l; print ok ? "pass" : "MISSED" }')"
}

# fdp_ceiling UNDERLAY_MTU OVERLAY_MTU: the most of the underlay's TCP
# goodput that the overlay can carry through VXLAN when bytes on the wire
# are the limit: TCP payload (MTU less 52: IPv4, TCP, timestamps) per byte
# the shaper counts (the frame with its 14-byte Ethernet header; VXLAN adds
# 50 more: outer IPv4, UDP, VXLAN header, and the inner Ethernet header
# counted in the overlay's frame).
fdp_ceiling() {
	awk -v u="$1" -v o="$2" 'BEGIN { printf "%.3f", ((o - 52) / (o + 14 + 50)) / ((u - 52) / (u + 14)) }'
}

report_fastdp() {
	echo
	echo "Fast datapath: $FDP_ROUNDS interleaved rounds of underlay / kernel VXLAN / fast datapath, one TCP stream,"
	echo "iperf3 ${DURATION}s each; median (lowest-highest). Round trips: per-packet median of $FDP_PINGS pings, 2 ms apart."
	echo " 1500-byte underlay, overlay MTU 1376:"
	fdp_line "underlay, host to host" "$fdp_std_u"
	fdp_line "plain kernel VXLAN (reference, no weavenet)" "$fdp_std_v"
	fdp_line "overlay, fast datapath" "$fdp_std_f"
	fdp_line "underlay throttled to 1 Gbit/s" "$fdp_std1g_u"
	fdp_line "  plain kernel VXLAN on it" "$fdp_std1g_v"
	fdp_line "  fast datapath on it" "$fdp_std1g_f"
	if [ -n "$fdp_rtt_u" ]; then
		echo "  RTT, ms (pings 2 ms apart | 50 ms apart):"
		fdp_rttline "underlay, host to host" "$fdp_rtt_u" "$fdp_irtt_u"
		fdp_rttline "routed, the overlay's veth hops" "$fdp_rtt_q" "$fdp_irtt_q"
		fdp_rttline "plain kernel VXLAN" "$fdp_rtt_v" "$fdp_irtt_v"
		fdp_rttline "fast datapath" "$fdp_rtt_f" "$fdp_irtt_f"
	fi
	if [ -n "$fdp_jumbo_u" ]; then
		echo " Jumbo underlay (MTU 9000), overlay --mtu 8938 (second figure, not the default):"
		fdp_line "underlay, host to host" "$fdp_jumbo_u"
		fdp_line "plain kernel VXLAN" "$fdp_jumbo_v"
		fdp_line "overlay, fast datapath" "$fdp_jumbo_f"
		fdp_line "underlay throttled to 1 Gbit/s" "$fdp_jumbo1g_u"
		fdp_line "  plain kernel VXLAN on it" "$fdp_jumbo1g_v"
		fdp_line "  fast datapath on it" "$fdp_jumbo1g_f"
	fi
	echo
	echo "Fast datapath goals (median of per-round figures; spread in brackets):"
	fdp_bar "fast datapath >= 75% of the underlay" "$(ratios "$fdp_std_f" "$fdp_std_u")" min 0.75 "%.2f"
	fdp_bar "  (plain kernel VXLAN / underlay, for scale)" "$(ratios "$fdp_std_v" "$fdp_std_u")" scale 0 "%.2f"
	fdp_bar "fast datapath CPU/Gbit <= 1.2x kernel VXLAN's" "$(cpu_ratios "$fdp_std_fc" "$fdp_std_f" "$fdp_std_vc" "$fdp_std_v")" max 1.2 "%.2f"
	if [ -n "$fdp_rtt_u" ]; then
		fdp_bar "fast datapath added RTT < 0.05 ms" "$(diffs "$fdp_rtt_f" "$fdp_rtt_u")" max 0.05 "%.3f"
		fdp_bar "  (kernel VXLAN's added RTT, for scale)" "$(diffs "$fdp_rtt_v" "$fdp_rtt_u")" scale 0 "%.3f"
		fdp_bar "  (of which the extra veth hops: routed - underlay)" "$(diffs "$fdp_rtt_q" "$fdp_rtt_u")" scale 0 "%.3f"
		fdp_bar "  (bridges + VXLAN: fast datapath - routed)" "$(diffs "$fdp_rtt_f" "$fdp_rtt_q")" scale 0 "%.3f"
		fdp_bar "fast datapath added RTT, pings 50 ms apart" "$(diffs "$fdp_irtt_f" "$fdp_irtt_u")" max 0.05 "%.3f"
		fdp_bar "  (kernel VXLAN's, 50 ms apart, for scale)" "$(diffs "$fdp_irtt_v" "$fdp_irtt_u")" scale 0 "%.3f"
	fi
	fdp_bar "fast datapath at 1 Gbit/s: >= 97% of it" "$(ratios "$fdp_std1g_f" "$fdp_std1g_u")" min 0.97 "%.3f"
	[ -n "$fdp_std1g_u" ] && printf "  %-50s %28s\n" "  (the most VXLAN can carry at MTU 1376 / 1438 / 1450)" "$(fdp_ceiling 1500 1376) / $(fdp_ceiling 1500 1438) / $(fdp_ceiling 1500 1450)"
	fdp_bar "  (plain kernel VXLAN at 1 Gbit/s, for scale)" "$(ratios "$fdp_std1g_v" "$fdp_std1g_u")" scale 0 "%.3f"
	if [ -n "$fdp_jumbo1g_u" ]; then
		fdp_bar "jumbo underlay at 1 Gbit/s: fast datapath >= 97%" "$(ratios "$fdp_jumbo1g_f" "$fdp_jumbo1g_u")" min 0.97 "%.3f"
		printf "  %-50s %28s\n" "  (the most VXLAN can carry at MTU 8938 on 9000)" "$(fdp_ceiling 9000 8938)"
		fdp_bar "jumbo underlay: fast datapath >= 75% of it" "$(ratios "$fdp_jumbo_f" "$fdp_jumbo_u")" min 0.75 "%.2f"
	fi
}
