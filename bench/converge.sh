#!/usr/bin/env bash
# converge.sh - BGP convergence benchmark: FEEDER --eBGP--> DUT --netlink--> kernel FIB
#
#   bb-feed (10.99.0.1/30, AS 65001)  ==veth==  bb-dut (10.99.0.2/30, AS 65002)
#        feeder announces N IPv4 prefixes          DUT learns them (RIB) and installs
#        (next hop 10.99.0.1)                       them into bb-dut's main table (FIB)
#
# Usage:   converge.sh [-d DUT] [-n N] [options]        (needs root)
#   -d, --dut NAME        tortie | tortierib | tortieplain | bird | frr | gobgp | birdrib | cmd   (default bird;
#                         tortieplain = tortie writing plain routes (nexthop_objects: false);
#                         tortierib = tortie with install_learned_routes: false, its RIB alone; birdrib = BIRD
#                         without kernel protocol, gobgp = GoBGP without zebra: both RIB only;
#                         tortie = `tortie node` from TORTIE_BIN, default target/release/tortie)
#   -n, --n N             number of prefixes          (default 10000)
#   --feeder KIND         py | bird | exabgp          (default py = bench/feeder.py)
#   --plen L              prefix length               (default 32, from --start upward)
#   --start A             first prefix                (default 100.64.0.0)
#   --no-withdraw         skip the withdraw phase
#   --timeout S           give up a phase after S seconds (default 300)
#   --rib-poll S          RIB poll interval            (default 0.1)
#   --fib-count MODE      watch (rtnetlink events, default) | poll (fib_triestat every 0.1 s)
#   --watcher KIND        the event counter for --fib-count watch: rs (default,
#                         target/release/examples/fibwatch, ~0.9 us of CPU per route, nearly all
#                         of it the kernel's receive of each notification) | py
#                         (bench/fibwatch.py, ~2 us per route: two CPU-seconds per 1M routes, on a
#                         machine whose two cores the DUT and the feeder share)
#   --keep                keep the work directory (configs, logs, event files)
#   --settle S            (feeder py only) let the DUT run S seconds before the feeder may connect:
#                         separates daemon start-up effects from session convergence
#   --wait-quiet S        before starting, wait up to S s for a 1-s window in which the machine is
#                         < QUIET_MAX (default 0.25) busy; the machine may run other work
#   --timeline FILE       write the routes in the FIB over time (from Established, until the withdraw)
#                         to FILE: `<seconds from Established> <routes>` lines, from the watcher's
#                         progress every 0.02 s (needs --fib-count watch)
#   -q, --quiet           no progress on stderr
# For DUT=cmd (your own binary), set in the environment:
#   DUT_CMD      command line started inside bb-dut (exec'd by bash -c); it must speak BGP on
#                10.99.0.2:179 as AS 65002 with neighbor 10.99.0.1 AS 65001 (passive, or use
#                FEEDER_MODE=listen if it only dials out), and install routes into table main.
#   DUT_PROTO    rtm_protocol number it installs routes with (ip route ... proto N); empty=RIB only
#   DUT_RIB_CMD  optional command (run in the root namespace) printing the number of prefixes the
#                DUT has accepted from the feeder; without it rib_s is reported as NA.
#   DUT_CONF     optional: passed through in the environment to DUT_CMD (e.g. a config path).
# For DUT=tortie, TORTIE_NEXTHOP_OBJECTS=false writes plain routes instead of routes by nexthop
# object (dataplane.nexthop_objects). TORTIE_BIN names the binary and TORTIE_POOL the IP pool it is given (default
# 100.64.0.0/10, which holds the feeder's prefixes: they become remote pool blocks as on a node;
# TORTIE_POOL=192.168.0.0/16 makes them plain learned routes outside every pool).
# FIBWATCH_EXTRA adds options to the watcher (both take the same ones): with --keep, FIBWATCH_EXTRA="--progress 0.02" leaves
# a timeline of the route count in WORK/fib.ev.
# For DUT=frr, FRR_ZEBRA_EXTRA / FRR_BGPD_EXTRA add config lines (e.g. "debug zebra rib") to the
# generated zebra.conf / bgpd.conf (bgpd lines go before "router bgp").
# Output: progress on stderr, one final machine-readable line on stdout:
#   dut=bird n=100000 est_s=.. feed_s=.. rib_s=.. fib_s=.. rss_mb=.. cpu_s=.. wd_rib_s=.. wd_fib_s=.. ...
set -uo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DUT_PROTO_ENV=${DUT_PROTO:-}      # for DUT=cmd
PY=${PYTHON:-python3}

DUT=${DUT:-bird}; N=${N:-10000}; FEEDER=${FEEDER:-py}; PLEN=${PLEN:-32}; START=${START:-100.64.0.0}
WITHDRAW=${WITHDRAW:-1}; TIMEOUT=${TIMEOUT:-300}; RIB_POLL=${RIB_POLL:-0.1}; FIB_COUNT=${FIB_COUNT:-watch}
WATCHER=${WATCHER:-rs}
KEEP=${KEEP:-0}; QUIET=${QUIET:-0}; FEEDER_MODE=${FEEDER_MODE:-connect}
WAIT_QUIET=${WAIT_QUIET:-0}; QUIET_MAX=${QUIET_MAX:-0.25}; SETTLE=${SETTLE:-0}; TIMELINE=${TIMELINE:-}
while [[ $# -gt 0 ]]; do
  case $1 in
    -d|--dut) DUT=$2; shift 2;;
    -n|--n) N=$2; shift 2;;
    --feeder) FEEDER=$2; shift 2;;
    --plen) PLEN=$2; shift 2;;
    --start) START=$2; shift 2;;
    --no-withdraw) WITHDRAW=0; shift;;
    --timeout) TIMEOUT=$2; shift 2;;
    --rib-poll) RIB_POLL=$2; shift 2;;
    --fib-count) FIB_COUNT=$2; shift 2;;
    --watcher) WATCHER=$2; shift 2;;
    --keep) KEEP=1; shift;;
    --wait-quiet) WAIT_QUIET=$2; shift 2;;
    --settle) SETTLE=$2; shift 2;;
    --timeline) TIMELINE=$2; shift 2;;
    -q|--quiet) QUIET=1; shift;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
    *) echo "unknown argument: $1" >&2; exit 2;;
  esac
done
[[ $(id -u) == 0 ]] || { echo "must run as root" >&2; exit 2; }
case $WATCHER in
  rs) WATCH_CMD=("${FIBWATCH_BIN:-$(cd "$HERE/.." && pwd)/target/release/examples/fibwatch}");;
  py) WATCH_CMD=("$PY" "$HERE/fibwatch.py");;
  *) echo "--watcher: rs or py, not '$WATCHER'" >&2; exit 2;;
esac

NS_F=bb-feed; NS_D=bb-dut; IF_F=bb-f0; IF_D=bb-d0
A_F=10.99.0.1; A_D=10.99.0.2; AS_F=65001; AS_D=65002
WORK=$(mktemp -d /tmp/bb-converge.XXXXXX)
STARTED=()          # every PID we started (killed on exit)
DUT_PIDS=()         # DUT processes (RSS/CPU are summed over these)
DUT_PROTO=""        # rtm_protocol the DUT installs routes with; empty = RIB only
CLK_TCK=$(getconf CLK_TCK)

log() { [[ $QUIET == 1 ]] || printf '[%6.2f] %s\n' "$(tdiff "$T_SCRIPT" "$EPOCHREALTIME")" "$*" >&2; }
tdiff() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a=="" || b=="") print "NA"; else printf "%.3f", b-a }'; }
T_SCRIPT=$EPOCHREALTIME

# ---------------------------------------------------------------- cleanup
ns_kill_all() {   # kill remaining processes inside one of *our* namespaces, by PID
  local ns=$1 pid
  ip netns list 2>/dev/null | grep -qw "^$ns" || return 0
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
}
cleanup() {
  local rc=$? pid i alive
  trap - EXIT INT TERM
  for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for i in $(seq 1 20); do
    alive=0; for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break; sleep 0.1
  done
  for pid in "${STARTED[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  ns_kill_all $NS_F; ns_kill_all $NS_D
  ip netns del $NS_F 2>/dev/null; ip netns del $NS_D 2>/dev/null
  if [[ $KEEP == 1 ]]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# one run at a time: the namespace names are fixed
exec 9>/tmp/bb-converge.lock
flock -w 60 9 || { echo "another converge.sh run holds /tmp/bb-converge.lock (or its daemons are still exiting)" >&2; trap - EXIT; rm -rf "$WORK"; exit 3; }

# idempotency: remove leftovers of an earlier, interrupted run
ns_kill_all $NS_F; ns_kill_all $NS_D
ip netns del $NS_F 2>/dev/null; ip netns del $NS_D 2>/dev/null

# ---------------------------------------------------------------- topology
ip netns add $NS_F && ip netns add $NS_D || exit 1
ip -n $NS_F link set lo up; ip -n $NS_D link set lo up
ip link add $IF_F netns $NS_F type veth peer name $IF_D netns $NS_D || exit 1
ip -n $NS_F addr add $A_F/30 dev $IF_F; ip -n $NS_D addr add $A_D/30 dev $IF_D
ip -n $NS_F link set $IF_F up; ip -n $NS_D link set $IF_D up
# The kernel's linkwatch reports a veth's operstate UP up to ~1 s after "link set up". FRR's zebra
# treats the interface as down until then, so the connected next hop 10.99.0.1 stays unresolved
# and bgpd installs nothing (cold-start fib_s +0.7 s). Wait for operstate UP on both ends.
for i in $(seq 1 300); do
  ip -n $NS_D -o link show $IF_D | grep -q 'state UP' && ip -n $NS_F -o link show $IF_F | grep -q 'state UP' && break
  sleep 0.01
done

# ---------------------------------------------------------------- helpers
proc_cpu_s() {     # utime+stime (all threads) of the given PIDs, in seconds
  local pid t=0 f
  for pid in "$@"; do
    [[ -r /proc/$pid/stat ]] || continue
    f=$(</proc/$pid/stat); f=${f##*) }
    read -r -a a <<<"$f"
    t=$(( t + a[11] + a[12] ))   # fields 14,15 (utime, stime) counted after "pid (comm)"
  done
  awk -v t=$t -v h=$CLK_TCK 'BEGIN{printf "%.2f", t/h}'
}
proc_hwm_mb() {    # sum of VmHWM (peak RSS) of the given PIDs, in MiB
  local pid kb=0 v
  for pid in "$@"; do
    v=$(awk '/^VmHWM:/{print $2}' /proc/$pid/status 2>/dev/null); kb=$(( kb + ${v:-0} ))
  done
  awk -v k=$kb 'BEGIN{printf "%.1f", k/1024}'
}
ev_time() { awk -v e="$2" '$1==e {print $2; exit}' "$1" 2>/dev/null; }   # first event time
sys_busy_ticks() { awk '$1=="cpu"{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }  # user+nice+system+irq+softirq+steal
alive_all() { local p; for p in "$@"; do kill -0 "$p" 2>/dev/null || return 1; done; }

# ================================================================ DUTs
# A DUT is:  dut_<name>_start   start it inside $NS_D, append its PIDs to DUT_PIDS and STARTED,
#                               set DUT_PROTO (rtm_protocol it installs with; empty = RIB only)
#            dut_<name>_rib     print how many prefixes it has accepted from the feeder
#            dut_<name>_check   (optional) print extra info at the end (log lines etc.)
# Every DUT must: listen on $A_D:179 (neighbor $A_F passive), AS $AS_D, peer AS $AS_F,
#                 import everything, export nothing, install into table main.

# ---- BIRD 2 ------------------------------------------------------
dut_bird_start() {
  cat >"$WORK/bird.conf" <<EOF
log "$WORK/bird.log" all;
router id $A_D;
timeformat protocol iso long ms;
protocol device { scan time 60; }
$( [[ ${BIRD_NO_KERNEL:-0} == 1 ]] || cat <<'KRT'
protocol kernel kfib {
  ipv4 { import none; export all; };
  learn off;
  persist off;
  merge paths off;
  scan time 3600;                  # periodic full kernel-table re-sync; 60 s default would dump N routes mid-run
  netlink rx buffer 67108864;      # async socket also receives the echo of every route BIRD installs
}
KRT
)
protocol bgp feeder {
  local $A_D as $AS_D;
  neighbor $A_F as $AS_F;
  passive on;
  hold time 180;
  ipv4 { import all; export none; };
}
EOF
  ip netns exec $NS_D bird -f -c "$WORK/bird.conf" -s "$WORK/bird.ctl" -P "$WORK/bird.pid" \
    >"$WORK/bird.out" 2>&1 &
  DUT_PIDS+=($!); STARTED+=($!); disown $!; DUT_PROTO=12     # RTPROT_BIRD
}
dut_bird_rib() {
  birdc -s "$WORK/bird.ctl" show protocols all feeder 2>/dev/null |
    awk '$1=="Routes:" {print $2; f=1; exit} END{if(!f) print 0}'
}
dut_bird_check() { grep -iE 'error|warn|drop' "$WORK/bird.log" 2>/dev/null | sort | uniq -c | head -5 >&2; }

# ---- BIRD 2 without a kernel protocol (RIB only; isolates BGP processing from FIB programming)
dut_birdrib_start() { BIRD_NO_KERNEL=1 dut_bird_start; DUT_PROTO=""; }
dut_birdrib_rib() { dut_bird_rib; }
dut_birdrib_est() { dut_bird_est; }
dut_bird_est() {   # Established time as seen by the DUT (BIRD prints state-change time with ms)
  local l; l=$(birdc -s "$WORK/bird.ctl" show protocols feeder 2>/dev/null | awk '$1=="feeder" && $7=="Established" {print $5" "$6}')
  [[ -n $l ]] && date -d "$l" +%s.%N
}

# ---- FRR (zebra + bgpd) ------------------------------------------
dut_frr_start() {
  # FRR daemons drop privileges to user "frr" (run as root with -u root they refuse unless root is
  # in group frrvty), so they get their own directory they can write logs/sockets/pidfiles into.
  local F=$WORK/frr; mkdir -p "$F"; chmod 755 "$WORK"
  cat >"$F/zebra.conf" <<EOF
hostname bb-dut-zebra
log file $F/zebra.log informational
log timestamp precision 3
${FRR_ZEBRA_EXTRA:-}
EOF
  cat >"$F/bgpd.conf" <<EOF
hostname bb-dut-bgpd
log file $F/bgpd.log informational
log timestamp precision 3
${FRR_BGPD_EXTRA:-}
router bgp $AS_D
 bgp router-id $A_D
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 neighbor $A_F remote-as $AS_F
 neighbor $A_F passive
 neighbor $A_F timers 60 180
 address-family ipv4 unicast
  neighbor $A_F activate
 exit-address-family
EOF
  chown -R frr:frr "$F"
  local common=(-z "$F/zserv.api" --vty_socket "$F" --limit-fds 1024)
  # zebra -s: netlink receive buffer (zebra uses SO_RCVBUFFORCE, so net.core.rmem_max does not cap it)
  ip netns exec $NS_D /usr/lib/frr/zebra "${common[@]}" -f "$F/zebra.conf" -i "$F/zebra.pid" \
    -s 268435456 >"$WORK/zebra.out" 2>&1 &
  DUT_PIDS+=($!); STARTED+=($!); disown $!
  # start bgpd only once zebra accepts ZAPI clients: if bgpd learns routes before its zclient is
  # connected, nexthop registration fails ("sendmsg_nexthop: zclient_send_message() failed") and
  # the routes sit in bgpd until a ~10 s retry - an artefact, not a property of FRR.
  local i; for i in $(seq 1 500); do [[ -S $F/zserv.api ]] && break; sleep 0.01; done
  ip netns exec $NS_D /usr/lib/frr/bgpd "${common[@]}" -f "$F/bgpd.conf" -i "$F/bgpd.pid" \
    -p 179 -l $A_D >"$WORK/bgpd.out" 2>&1 &
  DUT_PIDS+=($!); STARTED+=($!); disown $!; DUT_PROTO=186    # RTPROT_BGP
}
dut_frr_rib() {
  vtysh --vty_socket "$WORK/frr" -d bgpd -c 'show bgp ipv4 unicast summary json' 2>/dev/null |
    grep -o '"pfxRcd":[0-9]*' | head -1 | cut -d: -f2 | grep . || echo 0
}
dut_frr_check() { grep -iE 'error|warn|overrun|fail' "$WORK/frr/zebra.log" "$WORK/frr/bgpd.log" 2>/dev/null | cut -c1-160 | sort | uniq -c | head -5 >&2; }

# ---- GoBGP (RIB only) --------------------------------------------
dut_gobgp_start() {
  cat >"$WORK/gobgpd.toml" <<EOF
[global.config]
  as = $AS_D
  router-id = "$A_D"
  local-address-list = ["$A_D"]
  port = 179
[[neighbors]]
  [neighbors.config]
    neighbor-address = "$A_F"
    peer-as = $AS_F
  [neighbors.timers.config]
    hold-time = 180
    keepalive-interval = 60
  [neighbors.transport.config]
    passive-mode = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
EOF
  ip netns exec $NS_D gobgpd -f "$WORK/gobgpd.toml" -t toml --api-hosts 127.0.0.1:50051 \
    -l warn -p --pprof-disable >"$WORK/gobgpd.out" 2>&1 &
  DUT_PIDS+=($!); STARTED+=($!); disown $!; DUT_PROTO=""     # no FIB programming
}
dut_gobgp_rib() {
  ip netns exec $NS_D gobgp -u 127.0.0.1 -p 50051 neighbor $A_F -j 2>/dev/null |
    grep -o '"accepted":[0-9]*' | head -1 | cut -d: -f2 | grep . || echo 0
}

# ---- tortie (`tortie node`: RIB + remote-routes stage + route programmer) ----
# The feeder is a configured eBGP peer (the agent gives those an accept-all import policy, as
# Calico's `import all`); no node-to-node mesh; a sqlite datastore in the work directory.
TORTIE_BIN=${TORTIE_BIN:-$(cd "$HERE/.." && pwd)/target/release/tortie}
dut_tortie_start() {
  [[ -x $TORTIE_BIN ]] || { echo "no tortie binary at $TORTIE_BIN (cargo build --release)" >&2; exit 2; }
  cat >"$WORK/tortie.yaml" <<EOF
node:
  name: bench-dut
  address: $A_D/30
datastore:
  type: sqlite
  sqlite_path: $WORK/tortie.db
bgp:
  as_number: $AS_D
  router_id: $A_D
  listen_address: $A_D
  node_to_node_mesh: false
  hold_time_seconds: 180
  peers:
    - address: $A_F
      as_number: $AS_F
      passive: true
dataplane:
  route_protocol: 116
  resync_interval_seconds: 3600    # like BIRD's scan time 3600: no periodic full dump mid-run
  cleanup_on_exit: false           # deleting the namespace flushes the table (BIRD: persist off + kill)
  install_learned_routes: ${TORTIE_INSTALL:-true}
  nexthop_objects: ${TORTIE_NEXTHOP_OBJECTS:-true}
ipam:
  default_ipv4_pool_cidr: ${TORTIE_POOL:-100.64.0.0/10}
  default_ipv4_ipip_mode: Never
api:
  socket: $WORK/tortie.sock
metrics:
  listen: 127.0.0.1:9478
log:
  level: ${TORTIE_LOG:-info}
EOF
  ip netns exec $NS_D "$TORTIE_BIN" node --config "$WORK/tortie.yaml" >"$WORK/tortie.out" 2>&1 &
  DUT_PIDS+=($!); STARTED+=($!); disown $!; DUT_PROTO=116    # tortie's default route protocol
}
dut_tortie_rib() {   # prefixes accepted from the feeder: GET /v1/bgp/stats reads counters, walks nothing
  curl -s --max-time 2 --unix-socket "$WORK/tortie.sock" http://tortie/v1/bgp/stats 2>/dev/null |
    grep -o '"accepted":[0-9]*' | head -1 | cut -d: -f2 | grep . || echo 0
}
# tortierib: the same agent with learned routes not installed (a dedicated route reflector): its
# RIB alone, as birdrib is BIRD's.
dut_tortierib_start() { TORTIE_INSTALL=false dut_tortie_start; DUT_PROTO=""; }
dut_tortierib_rib() { dut_tortie_rib; }
dut_tortierib_check() { dut_tortie_check; }
# tortieplain: the same agent writing "via <gw> dev <if>" routes instead of routes by nexthop object.
dut_tortieplain_start() { TORTIE_NEXTHOP_OBJECTS=false dut_tortie_start; }
dut_tortieplain_rib() { dut_tortie_rib; }
dut_tortieplain_check() { dut_tortie_check; }
dut_tortie_check() { grep -E 'WARN|ERROR' "$WORK/tortie.out" 2>/dev/null | cut -c1-200 | sort | uniq -c | head -5 >&2; }

# ---- any other binary (e.g. our own agent) -----------------------
dut_cmd_start() {
  [[ -n ${DUT_CMD:-} ]] || { echo "DUT=cmd needs DUT_CMD" >&2; exit 2; }
  ip netns exec $NS_D bash -c "exec $DUT_CMD" >"$WORK/cmd.out" 2>&1 &
  DUT_PIDS+=($!); STARTED+=($!); disown $!; DUT_PROTO=$DUT_PROTO_ENV
}
dut_cmd_rib() { if [[ -n ${DUT_RIB_CMD:-} ]]; then bash -c "$DUT_RIB_CMD" 2>/dev/null | tr -dc '0-9' | grep . || echo 0; else echo NA; fi; }

# ================================================================ FEEDERS
feeder_py_start() {
  local mode=()
  [[ $FEEDER_MODE == listen ]] && mode=(--listen)
  [[ $SETTLE != 0 ]] && mode+=(--go-file "$WORK/go")
  ip netns exec $NS_F "$PY" "$HERE/feeder.py" --peer $A_D --bind $A_F --local-as $AS_F \
    --router-id $A_F --nexthop $A_F -n "$N" --start "$START" --plen "$PLEN" \
    --events "$WORK/feeder.ev" --quiet "${mode[@]}" >"$WORK/feeder.out" 2>&1 &
  FEED_PID=$!; STARTED+=($!); disown $!
  local i; for i in $(seq 1 600); do        # wait until messages are pre-built (<= 60 s)
    grep -q '^built' "$WORK/feeder.ev" 2>/dev/null && return 0
    kill -0 $FEED_PID 2>/dev/null || { cat "$WORK/feeder.out" >&2; exit 1; }
    sleep 0.1
  done
  echo "feeder did not finish building messages" >&2; exit 1
}
feeder_py_withdraw() { kill -USR1 "$FEED_PID"; }
feeder_py_established() { ev_time "$WORK/feeder.ev" established; }
feeder_py_feed_done() { ev_time "$WORK/feeder.ev" feed_done; }

# BIRD as feeder: N static blackhole routes exported with next-hop self.
feeder_bird_start() {
  "$PY" - "$START" "$PLEN" "$N" >"$WORK/feed-static.conf" <<'EOF'
import ipaddress, sys
start, plen, n = ipaddress.IPv4Address(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
step = 1 << (32 - plen); base = int(start) & ~(step - 1) & 0xffffffff
w = sys.stdout.write
w("protocol static feed {\n  ipv4;\n")
for i in range(n):
    w("  route %s/%d blackhole;\n" % (ipaddress.IPv4Address(base + i * step), plen))
w("}\n")
EOF
  cat >"$WORK/feedbird.conf" <<EOF
log "$WORK/feedbird.log" all;
router id $A_F;
timeformat protocol iso long ms;
protocol device { }
include "$WORK/feed-static.conf";
protocol bgp dut {
  local $A_F as $AS_F;
  neighbor $A_D as $AS_D;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 2;
  hold time 180;
  ipv4 { import none; export all; next hop self; };
}
EOF
  ip netns exec $NS_F bird -f -c "$WORK/feedbird.conf" -s "$WORK/feedbird.ctl" -P "$WORK/feedbird.pid" \
    >"$WORK/feedbird.out" 2>&1 &
  FEED_PID=$!; STARTED+=($!); disown $!
  local i; for i in $(seq 1 600); do
    birdc -s "$WORK/feedbird.ctl" show route count 2>/dev/null | grep -q "^$N of $N routes" && return 0
    kill -0 $FEED_PID 2>/dev/null || { cat "$WORK/feedbird.out" >&2; exit 1; }
    sleep 0.1
  done
  echo "bird feeder did not load its routes" >&2; exit 1
}
feeder_bird_withdraw() { birdc -s "$WORK/feedbird.ctl" disable feed >/dev/null; }
feeder_bird_established() { # BIRD prints the state-change time with ms ("since" column)
  local l; l=$(birdc -s "$WORK/feedbird.ctl" show protocols dut 2>/dev/null | awk '$1=="dut" && $7=="Established" {print $5" "$6}')
  [[ -n $l ]] && date -d "$l" +%s.%N
}
feeder_bird_feed_done() { echo ""; }

# ExaBGP as feeder: a helper process pushes "announce attributes ... nlri <many prefixes>" lines.
feeder_exabgp_start() {
  cat >"$WORK/exa-api.py" <<'EOF'
import ipaddress, os, sys, time, signal
start, plen, n, nh, evf = ipaddress.IPv4Address(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
step = 1 << (32 - plen); base = int(start) & ~(step - 1) & 0xffffffff
pfx = ["%s/%d" % (ipaddress.IPv4Address(base + i * step), plen) for i in range(n)]
lines = ["announce attributes next-hop %s origin igp nlri %s\n" % (nh, " ".join(pfx[i:i+500])) for i in range(0, n, 500)]
wlines = ["withdraw attributes next-hop %s nlri %s\n" % (nh, " ".join(pfx[i:i+500])) for i in range(0, n, 500)]
wd = [False]
signal.signal(signal.SIGUSR1, lambda *_: wd.__setitem__(0, True))
ev = open(evf, "a", buffering=1)
ev.write("built %.6f\n" % time.time())
for l in lines: sys.stdout.write(l)
sys.stdout.flush()
ev.write("api_done %.6f\n" % time.time())
while True:
    if wd[0]:
        wd[0] = False
        for l in wlines: sys.stdout.write(l)
        sys.stdout.flush()
    time.sleep(0.05)
EOF
  cat >"$WORK/exabgp.conf" <<EOF
process feed {
  run $PY $WORK/exa-api.py $START $PLEN $N $A_F $WORK/feeder.ev;
  encoder text;
}
neighbor $A_D {
  router-id $A_F;
  local-address $A_F;
  local-as $AS_F;
  peer-as $AS_D;
  hold-time 180;
  family { ipv4 unicast; }
  api { processes [ feed ]; }
}
EOF
  env exabgp.daemon.user=root exabgp.log.level=CRIT exabgp.log.routes=false exabgp.log.processes=false exabgp.log.destination="$WORK/exabgp.log" exabgp.api.ack=false exabgp.api.cli=false exabgp.reactor.speed=0.05 \
    exabgp.tcp.delay=0 ip netns exec $NS_F exabgp "$WORK/exabgp.conf" >"$WORK/exabgp.out" 2>&1 &
  FEED_PID=$!; STARTED+=($!); disown $!
}
feeder_exabgp_withdraw() { local p; for p in $(pgrep -P "$FEED_PID" -f exa-api.py); do kill -USR1 "$p"; done; }
feeder_exabgp_established() { echo ""; }
feeder_exabgp_feed_done() { echo ""; }

declare -F "dut_${DUT}_start" >/dev/null || { echo "unknown DUT '$DUT'" >&2; exit 2; }
declare -F "feeder_${FEEDER}_start" >/dev/null || { echo "unknown feeder '$FEEDER'" >&2; exit 2; }

# ================================================================ run
busy_frac_1s() { # fraction of all CPUs busy during the next second
  local a b; a=$(awk '$1=="cpu"{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9; exit}' /proc/stat)
  sleep 1; b=$(awk '$1=="cpu"{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9; exit}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN{split(a,x," "); split(b,y," "); t=y[2]-x[2]; printf "%.2f", (t>0 ? (y[1]-x[1])/t : 0)}'
}
QUIET_FRAC=NA
if [[ $WAIT_QUIET != 0 ]]; then
  qdeadline=$(( ${EPOCHREALTIME%.*} + WAIT_QUIET ))
  while :; do
    QUIET_FRAC=$(busy_frac_1s)
    awk -v f=$QUIET_FRAC -v m=$QUIET_MAX 'BEGIN{exit !(f<m)}' && break
    (( ${EPOCHREALTIME%.*} > qdeadline )) && { log "machine still busy ($QUIET_FRAC), starting anyway"; break; }
  done
fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')
log "dut=$DUT n=$N feeder=$FEEDER work=$WORK load=$LOAD_BEFORE"
"feeder_${FEEDER}_start"
log "feeder ready (pid $FEED_PID)"

# The protocol number must be known before the watcher starts; DUTs set it in _start,
# so start the watcher with the value the DUT will use.
case $DUT in tortie|tortieplain) PROTO_PRE=116;; bird) PROTO_PRE=12;; frr) PROTO_PRE=186;; gobgp|birdrib|tortierib) PROTO_PRE="";; cmd) PROTO_PRE=$DUT_PROTO_ENV;; esac
WATCH_PID=""
if [[ -n $PROTO_PRE && $FIB_COUNT == watch ]]; then
  [[ -x ${WATCH_CMD[0]} || ${WATCH_CMD[0]} != /* ]] || {
    echo "no watcher at ${WATCH_CMD[0]} (cargo build --release --example fibwatch, or --watcher py)" >&2; exit 2; }
  # A timeline needs the watcher's progress events (the last --progress given wins).
  [[ -n $TIMELINE ]] && FIBWATCH_EXTRA="--progress 0.02 ${FIBWATCH_EXTRA:-}"
  ip netns exec $NS_D "${WATCH_CMD[@]}" --proto "$PROTO_PRE" --target "$N" --events "$WORK/fib.ev" ${FIBWATCH_EXTRA:-} &
  WATCH_PID=$!; STARTED+=($!); disown $!
  for i in $(seq 1 100); do grep -q '^ready' "$WORK/fib.ev" 2>/dev/null && break; sleep 0.05; done
fi

# An anchor process inside bb-dut: /proc/<pid>/net/* shows *its* namespace, so we can read
# bb-dut's fib_triestat without forking "ip netns exec" on every poll.
ip netns exec $NS_D sleep 100000 &
ANCHOR=$!; STARTED+=($!); disown $!
for i in $(seq 1 100); do [[ $(cat /proc/$ANCHOR/comm 2>/dev/null) == sleep ]] && break; sleep 0.01; done
trie_prefixes() { awk '$1=="Prefixes:"{print $2; exit}' "/proc/$ANCHOR/net/fib_triestat"; }
FIB_BASE=$(trie_prefixes)
fib_count_poll() {  # routes in bb-dut's main+local trie minus baseline (only the DUT adds routes there)
  local p; p=$(trie_prefixes); echo $(( ${p:-0} - FIB_BASE ))
}

BUSY0=$(sys_busy_ticks)
T0=$EPOCHREALTIME
"dut_${DUT}_start"
[[ -z $DUT_PROTO ]] && DUT_PROTO=$PROTO_PRE
log "DUT started: pids ${DUT_PIDS[*]} proto=${DUT_PROTO:-none}"
if [[ $SETTLE != 0 ]]; then sleep "$SETTLE"; touch "$WORK/go"; log "feeder released after ${SETTLE}s"; fi

T_RIB=""; T_FIB=""; RIB=0; FIB=0; NEXT_LOG=0; T_RIB_PREV=$EPOCHREALTIME
deadline=$(( ${EPOCHREALTIME%.*} + TIMEOUT ))
while :; do
  now=$EPOCHREALTIME
  if ! alive_all "${DUT_PIDS[@]}"; then log "DUT died"; tail -n 5 "$WORK"/*.out >&2; break; fi
  if ! kill -0 "$FEED_PID" 2>/dev/null; then log "feeder died"; tail -n 5 "$WORK"/feeder.* >&2; break; fi
  if [[ -z $T_RIB ]]; then
    RIB=$("dut_${DUT}_rib")
    if [[ $RIB == NA ]]; then T_RIB=NA
    elif (( RIB >= N )); then T_RIB=$EPOCHREALTIME; log "RIB has $RIB prefixes"
    else T_RIB_PREV=$EPOCHREALTIME; fi     # RIB reached N after this (lower bound)
  fi
  if [[ -n $DUT_PROTO && -z $T_FIB ]]; then
    if [[ -n $WATCH_PID ]]; then
      T_FIB=$(ev_time "$WORK/fib.ev" fib_full)
      FIB=$(awk '$1=="progress"||$1=="fib_full"{c=$3} END{sub("count=","",c); print c+0}' "$WORK/fib.ev")
    else
      FIB=$(fib_count_poll); (( FIB >= N )) && T_FIB=$EPOCHREALTIME
    fi
    [[ -n $T_FIB ]] && log "FIB has all $N routes"
  fi
  if [[ -n $T_RIB && ( -z $DUT_PROTO || -n $T_FIB ) ]]; then break; fi
  if (( ${now%.*} > deadline )); then log "TIMEOUT after ${TIMEOUT}s (rib=$RIB fib=$FIB)"; break; fi
  if (( ${now%.*} >= NEXT_LOG )); then log "rib=$RIB fib=$FIB"; NEXT_LOG=$(( ${now%.*} + 5 )); fi
  if [[ -n $DUT_PROTO && -z $WATCH_PID && -n $T_RIB ]]; then sleep 0.1; else sleep "$RIB_POLL"; fi
done
CPU_CONV=$(proc_cpu_s "${DUT_PIDS[@]}"); HWM_CONV=$(proc_hwm_mb "${DUT_PIDS[@]}")
T_CONV_END=$EPOCHREALTIME; BUSY1=$(sys_busy_ticks)
FEED_CPU=$(proc_cpu_s "$FEED_PID"); WATCH_CPU=$( [[ -n $WATCH_PID ]] && proc_cpu_s "$WATCH_PID" || echo 0 )
# CPU used on the whole machine during the convergence phase, and the part not explained by
# DUT + feeder + fibwatch (= other processes, CLI polling, kernel threads): a noise indicator.
BUSY_S=$(awk -v a=$BUSY0 -v b=$BUSY1 -v h=$CLK_TCK 'BEGIN{printf "%.2f", (b-a)/h}')
OTHER_S=$(awk -v b=$BUSY_S -v d=$CPU_CONV -v f=$FEED_CPU -v w=$WATCH_CPU 'BEGIN{o=b-d-f-w; if(o<0)o=0; printf "%.2f", o}')
WALL_S=$(tdiff "$T0" "$T_CONV_END")
FIB_CONV=NA   # independent check of the FIB after convergence (full dump; not timed)
[[ -n $DUT_PROTO ]] && FIB_CONV=$(ip -n $NS_D -4 route show table main proto "$DUT_PROTO" | wc -l)
T_EST=$("feeder_${FEEDER}_established"); T_FEED=$("feeder_${FEEDER}_feed_done")
T_EST_DUT=""; declare -F "dut_${DUT}_est" >/dev/null && T_EST_DUT=$("dut_${DUT}_est")
[[ -z $T_EST ]] && T_EST=$T_EST_DUT

# ---------------------------------------------------------------- withdraw
T_WD=""; T_WD_RIB=""; T_WD_FIB=""
if [[ $WITHDRAW == 1 && -n $T_RIB && $T_RIB != NA ]] || [[ $WITHDRAW == 1 && -n $T_FIB ]]; then
  sleep 1     # let the DUT settle (e.g. FRR's zebra finishing notifications)
  T_WD=$EPOCHREALTIME
  "feeder_${FEEDER}_withdraw"
  log "withdraw sent"
  deadline=$(( ${EPOCHREALTIME%.*} + TIMEOUT ))
  while :; do
    now=$EPOCHREALTIME
    alive_all "${DUT_PIDS[@]}" || { log "DUT died"; break; }
    if [[ -z $T_WD_RIB ]]; then
      RIB=$("dut_${DUT}_rib")
      if [[ $RIB == NA ]]; then T_WD_RIB=NA; elif (( RIB == 0 )); then T_WD_RIB=$EPOCHREALTIME; log "RIB empty"; fi
    fi
    if [[ -n $DUT_PROTO && -z $T_WD_FIB ]]; then
      if [[ -n $WATCH_PID ]]; then
        T_WD_FIB=$(ev_time "$WORK/fib.ev" fib_empty)
        FIB=$(awk '$1=="progress"||$1=="fib_empty"{c=$3} END{sub("count=","",c); print c+0}' "$WORK/fib.ev")
      else
        FIB=$(fib_count_poll); (( FIB <= 0 )) && T_WD_FIB=$EPOCHREALTIME
      fi
      [[ -n $T_WD_FIB ]] && log "FIB empty"
    fi
    if [[ -n $T_WD_RIB && ( -z $DUT_PROTO || -n $T_WD_FIB ) ]]; then break; fi
    if (( ${now%.*} > deadline )); then log "withdraw TIMEOUT (rib=$RIB fib=$FIB)"; break; fi
    if (( ${now%.*} >= NEXT_LOG )); then log "withdrawing: rib=$RIB fib=$FIB"; NEXT_LOG=$(( ${now%.*} + 5 )); fi
    if [[ -n $DUT_PROTO && -z $WATCH_PID && -n $T_WD_RIB ]]; then sleep 0.1; else sleep "$RIB_POLL"; fi
  done
fi
CPU_END=$(proc_cpu_s "${DUT_PIDS[@]}"); HWM_END=$(proc_hwm_mb "${DUT_PIDS[@]}")

# ---------------------------------------------------------------- sanity + report
VERIFY=NA
if [[ -n $DUT_PROTO ]]; then
  VERIFY=$(ip -n $NS_D -4 route show table main proto "$DUT_PROTO" | wc -l)
fi
if [[ -n $WATCH_PID ]]; then kill -TERM "$WATCH_PID" 2>/dev/null; sleep 0.3; grep -E '^(overrun|final)' "$WORK/fib.ev" | sed 's/^/  fibwatch: /' >&2; fi
declare -F "dut_${DUT}_check" >/dev/null && "dut_${DUT}_check"
OVERRUN=0; [[ -n $WATCH_PID ]] && grep -q '^overrun' "$WORK/fib.ev" && OVERRUN=1

rel() { [[ -z $1 || $1 == NA ]] && echo NA || tdiff "$2" "$1"; }
if [[ -n $TIMELINE && -n $WATCH_PID && -n $T_EST ]]; then
  # Route counts from Established until the withdraw was sent.
  awk -v t0="$T_EST" -v wd="$T_WD" -v dut="$DUT" -v n="$N" '
    BEGIN { printf "# dut=%s n=%s: seconds from Established, routes in the FIB\n0.000 0\n", dut, n }
    $1=="progress" || $1=="fib_first" || $1=="fib_full" {
      if (wd != "" && $2 >= wd) exit
      c = $3; sub("count=", "", c); if ($2 >= t0) printf "%.3f %d\n", $2 - t0, c
    }' "$WORK/fib.ev" > "$TIMELINE"
fi
EST_S=$(rel "$T_EST" "$T0"); EST_DUT_S=$(rel "$T_EST_DUT" "$T0")
RIB_EST_S=$( [[ $T_RIB == NA || -z $T_RIB || -z $T_EST ]] && echo NA || tdiff "$T_EST" "$T_RIB" )
FIB_EST_S=$( [[ -z $T_FIB || -z $T_EST || -z $DUT_PROTO ]] && echo NA || tdiff "$T_EST" "$T_FIB" )
RIB_S=$(rel "$T_RIB" "$T0"); RIB_LO_S=$(rel "$T_RIB_PREV" "$T0"); FIB_S=$( [[ -n $DUT_PROTO ]] && rel "$T_FIB" "$T0" || echo NA )
FEED_S=$(rel "$T_FEED" "$T0")
FIB_FIRST_S=NA; [[ -n $WATCH_PID ]] && FIB_FIRST_S=$(rel "$(ev_time "$WORK/fib.ev" fib_first)" "$T0")
# withdraw times are measured from the moment the withdraw was triggered
WD_RIB_S=$(rel "$T_WD_RIB" "$T_WD"); WD_FIB_S=$( [[ -n $DUT_PROTO ]] && rel "$T_WD_FIB" "$T_WD" || echo NA )
[[ -z $T_WD ]] && { WD_RIB_S=NA; WD_FIB_S=NA; }
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')
echo "dut=$DUT n=$N feeder=$FEEDER est_s=$EST_S feed_s=$FEED_S rib_s=$RIB_S fib_s=$FIB_S rib_lo_s=$RIB_LO_S fib_first_s=$FIB_FIRST_S rib_from_est_s=$RIB_EST_S fib_from_est_s=$FIB_EST_S est_dut_s=$EST_DUT_S settle=$SETTLE" \
     "rss_mb=$HWM_CONV cpu_s=$CPU_CONV wd_rib_s=$WD_RIB_S wd_fib_s=$WD_FIB_S cpu_end_s=$CPU_END rss_end_mb=$HWM_END" \
     "feeder_cpu_s=$FEED_CPU watch_cpu_s=$WATCH_CPU wall_s=$WALL_S busy_s=$BUSY_S other_s=$OTHER_S fib_conv=$FIB_CONV fib_left=$VERIFY overrun=$OVERRUN proto=${DUT_PROTO:-none} load=$LOAD_BEFORE busy_before=$QUIET_FRAC"
