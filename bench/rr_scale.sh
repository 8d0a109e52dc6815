#!/usr/bin/env bash
# Two route reflectors (one cluster id, as operators deploy them) for N
# simulated nodes (examples/cluster_sim: one process, one real BGP session
# per node and reflector), tortie then BIRD 2 configured as Calico's confd
# templates configure a reflector. Per run, one line of key=value:
#   converge_s   simulator start (both reflectors listening) → every session holds every
#                other node's block with the right next hop
#   cpu_s        both reflectors' CPU seconds at that moment (utime + stime)
#   rss_mib      the larger peak RSS of the two (VmHWM) at the end of the run
#   withdraw_s   node 0 withdraws its block → gone from every session
#   flap_s       node 0 announces it again → back in every session
#   restart_s    reflector 1 stopped (SIGTERM) and started again → every session of it full again
# Usage (root): bash bench/rr_scale.sh [-d "tortie bird"] [-r DIR] [-p PNG] [N ...]
#   N      simulated nodes, one run per N and DUT (default 250 500 1000)
#   -r     where the results stay: summary.txt (the lines above) and per run DUT-N.timeline,
#          the initial convergence every 0.25 s: `<seconds from the simulator's start>
#          <% of every session's blocks held> <complete sessions>` (default a new
#          /tmp/rr-scale-results.*)
#   -p     the picture of those timelines, one panel per N, tortie beside BIRD
#          (default docs/scale-rr-convergence.png; -p "" for none; bench/plot_rr_scale.sh)
# TORTIE_BIN / SIM_BIN name the binaries (default target/release/{tortie,examples/cluster_sim},
# built here when absent).
#
#   ns sim: br0 10.100.255.100/24, node i's address 10.101.0.1+i/32 on lo
#   ns rr1: eth0 10.100.255.1/24 ─┐  br0 (in sim)   10.101.0.0/16 via 10.100.255.100
#   ns rr2: eth0 10.100.255.2/24 ─┘                 (one neighbour entry for all nodes)
set -euo pipefail
cd "$(dirname "$0")/.."
DUTS="tortie bird"; RESULTS=""; PLOT=$PWD/docs/scale-rr-convergence.png
while getopts "d:r:p:h" opt; do
  case $opt in
    d) DUTS=$OPTARG;; r) RESULTS=$OPTARG;; p) PLOT=$OPTARG;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2;;
  esac
done
shift $((OPTIND - 1))
SIZES=("$@"); [[ ${#SIZES[@]} -gt 0 ]] || SIZES=(250 500 1000)
[[ -n $RESULTS ]] || RESULTS=$(mktemp -d /tmp/rr-scale-results.XXXXXX)
mkdir -p "$RESULTS"
TORTIE_BIN=${TORTIE_BIN:-$PWD/target/release/tortie}
SIM_BIN=${SIM_BIN:-$PWD/target/release/examples/cluster_sim}
[[ -x $TORTIE_BIN ]] || cargo build --release -q --bin tortie
[[ -x $SIM_BIN ]] || cargo build --release -q --example cluster_sim
AS=64512
CLUSTER_ID=10.255.0.1
RR=(10.100.255.1 10.100.255.2)
SIM_LAN=10.100.255.100
FIRST=10.101.0.1
POOL=10.244.0.0/16
DEADLINE_S=${DEADLINE_S:-300}

W=$(mktemp -d /tmp/rr-scale.XXXXXX)
NS_SIM=tt-$$-1-sim; NS_RR=(tt-$$-2-rr1 tt-$$-3-rr2)
RR_PID=("" ""); SIM_PID=""
cleanup() {
  for p in "${RR_PID[@]}" "$SIM_PID"; do [[ -n $p ]] && kill "$p" 2>/dev/null || true; done
  for p in "${RR_PID[@]}" "$SIM_PID"; do [[ -n $p ]] && wait "$p" 2>/dev/null || true; done
  for ns in "$NS_SIM" "${NS_RR[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  [[ -n ${KEEP:-} ]] || rm -rf "$W"
}
trap cleanup EXIT

now() { date +%s.%N; }
sub() { python3 -c "print(f'{$1 - $2:.3f}')"; }
# CPU seconds and peak RSS (KiB) of a process.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
hwm_of() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# The node address of client i (0-based).
client_ip() { python3 -c "import ipaddress; print(ipaddress.ip_address('$FIRST') + $1)"; }

topology() {
  local n=$1
  ip netns add "$NS_SIM"
  ip -n "$NS_SIM" link set lo up
  ip -n "$NS_SIM" link add br0 type bridge
  ip -n "$NS_SIM" addr add $SIM_LAN/24 dev br0
  ip -n "$NS_SIM" link set br0 up
  for r in 0 1; do
    ip netns add "${NS_RR[$r]}"
    ip -n "${NS_RR[$r]}" link set lo up
    ip -n "${NS_RR[$r]}" link add eth0 type veth peer name "rr$r" netns "$NS_SIM"
    ip -n "${NS_RR[$r]}" addr add "${RR[$r]}/24" dev eth0
    ip -n "${NS_RR[$r]}" link set eth0 up
    ip -n "${NS_RR[$r]}" route add 10.101.0.0/16 via $SIM_LAN proto static
    ip -n "$NS_SIM" link set "rr$r" master br0 up
  done
  python3 - "$n" "$FIRST" >"$W/addrs.batch" <<'EOF'
import ipaddress, sys
n, first = int(sys.argv[1]), ipaddress.ip_address(sys.argv[2])
for i in range(n):
    print(f"addr add {first + i}/32 dev lo")
EOF
  ip -n "$NS_SIM" -batch "$W/addrs.batch"
}

# ---- tortie: `tortie node` with a cluster id, learned routes not installed (a dedicated
# reflector); its own sqlite datastore holding both reflectors' and every node's Node record.
tortie_prepare() {
  local r=$1 n=$2 dir=$W/rr$r
  mkdir -p "$dir"
  cat >"$dir/tortie.yaml" <<EOF
node:
  name: rr$((r + 1))
  address: ${RR[$r]}/24
datastore:
  type: sqlite
  sqlite_path: $dir/tortie.db
bgp:
  as_number: $AS
  router_id: ${RR[$r]}
  listen_address: ${RR[$r]}
  route_reflector_cluster_id: $CLUSTER_ID
dataplane:
  install_learned_routes: false
ipam:
  default_ipv4_pool_cidr: $POOL
  default_ipv4_ipip_mode: Never
api:
  socket: $dir/tortie.sock
metrics:
  listen: 127.0.0.1:9478
log:
  level: warn
EOF
  python3 - "$n" "$FIRST" "$CLUSTER_ID" "${RR[@]}" >"$dir/nodes.yaml" <<'EOF'
import ipaddress, sys
n, first, cluster, rrs = int(sys.argv[1]), ipaddress.ip_address(sys.argv[2]), sys.argv[3], sys.argv[4:]
print("apiVersion: crd.tortie.io/v1\nkind: List\nitems:")
for i, rr in enumerate(rrs):
    print(f"- kind: Node\n  metadata: {{name: rr{i + 1}}}\n"
          f"  spec: {{bgp: {{ipv4Address: {rr}/24, routeReflectorClusterID: {cluster}}}}}")
for i in range(n):
    print(f"- kind: Node\n  metadata: {{name: sim{i}}}\n  spec: {{bgp: {{ipv4Address: {first + i}/32}}}}")
EOF
  "$TORTIE_BIN" apply -f "$dir/nodes.yaml" --config "$dir/tortie.yaml" >/dev/null
}
tortie_start() {
  local r=$1 dir=$W/rr$1
  ip netns exec "${NS_RR[$r]}" "$TORTIE_BIN" node --config "$dir/tortie.yaml" >>"$dir/out.log" 2>&1 &
  RR_PID[$r]=$!
}

# ---- BIRD 2: Calico's confd output for a reflector (confd/tests/compiled_templates/
# explicit_peering/route_reflector/bird.cfg, bird_ipam.cfg) in BIRD 2 syntax: the same
# template (graceful restart, add paths, connect delay 2, retry 5, error wait 5,30, recursive
# gateway), one protocol per client with `rr client; rr cluster id`, the other reflector a
# plain iBGP peer, the kernel protocol refusing pool routes (Felix's) and the export filter
# passing only pool routes; `debug { states }` as at Calico's default log level.
bird_prepare() {
  local r=$1 n=$2 dir=$W/rr$1
  mkdir -p "$dir"
  {
    cat <<EOF
log "$dir/bird.log" all;
router id ${RR[$r]};
function calico_export_to_bgp_peers(bool internal_peer) {
  if (net ~ $POOL) then { accept; }
}
filter calico_kernel_programming {
  if (defined(source) && (source = RTS_BGP) && !defined(krt_metric)) then {
    krt_metric = 1024;
    if (defined(bgp_local_pref)) then { krt_metric = 2147483647 - bgp_local_pref; }
    if (krt_metric < 1024) then { preference = 200; }
  }
  if (net ~ $POOL) then { reject; }
  accept;
}
protocol kernel {
  ipv4 { import all; export filter calico_kernel_programming; };
  learn; persist; scan time 2; graceful restart; merge paths on;
}
protocol device { scan time 2; }
protocol direct { ipv4; interface -"cali*", -"kube-ipvs*", "*"; }
template bgp bgp_template {
  debug { states };
  description "Connection to BGP peer";
  local as $AS;
  ipv4 {
    gateway recursive;
    add paths on;
    import filter {
      if (defined(bgp_local_pref) && (bgp_local_pref > 2147482623)) then preference = 200;
      accept;
    };
    export filter {
      if (defined(source) && source = RTS_BGP && defined(bgp_local_pref)) then {
        krt_metric = 2147483647 - bgp_local_pref;
      } else {
        if (!defined(krt_metric)) then { krt_metric = 1024; }
        bgp_local_pref = 2147483647 - krt_metric;
      }
      calico_export_to_bgp_peers(true);
      reject;
    };
  };
  graceful restart;
  connect delay time 2;
  connect retry time 5;
  error wait time 5,30;
}
EOF
    local other=${RR[$((1 - r))]}
    echo "protocol bgp Node_${other//./_} from bgp_template {"
    echo "  neighbor $other as $AS; source address ${RR[$r]}; ttl security off; multihop;"
    echo "}"
    python3 - "$n" "$FIRST" "${RR[$r]}" "$CLUSTER_ID" <<'EOF'
import ipaddress, sys
n, first, me, cluster = int(sys.argv[1]), ipaddress.ip_address(sys.argv[2]), sys.argv[3], sys.argv[4]
for i in range(n):
    a = first + i
    print(f"protocol bgp Node_{str(a).replace('.', '_')} from bgp_template {{\n"
          f"  neighbor {a} as 64512; source address {me}; ttl security off; multihop;\n"
          f"  rr client; rr cluster id {cluster};\n}}")
EOF
  } >"$dir/bird.conf"
  bird -p -c "$dir/bird.conf"
}
bird_start() {
  local r=$1 dir=$W/rr$1
  ip netns exec "${NS_RR[$r]}" bird -f -c "$dir/bird.conf" -s "$dir/bird.ctl" >>"$dir/out.log" 2>&1 &
  RR_PID[$r]=$!
}

listening() { ip netns exec "${NS_RR[$1]}" ss -Hltn "sport = :179" | grep -q .; }

# Waits for the simulator's next `$1` event after line $2 of its output; prints its time.
wait_event() {
  local name=$1 after=$2 deadline=$(( $(date +%s) + DEADLINE_S ))
  while (( $(date +%s) < deadline )); do
    local t
    t=$(tail -n +"$((after + 1))" "$W/sim.out" | awk -v e="$name" '$1 == e {print $2; exit}')
    [[ -n $t ]] && { echo "$t"; return 0; }
    kill -0 "$SIM_PID" 2>/dev/null || { echo "simulator died" >&2; tail -5 "$W/sim.err" >&2; return 1; }
    sleep 0.02
  done
  echo "no $name within ${DEADLINE_S}s: $(tail -1 "$W/sim.out")" >&2; return 1
}
lines() { wc -l <"$W/sim.out"; }

# The simulator's progress lines from its start to its first `converged`, as a timeline:
# seconds from $2 (unix time), % of the blocks every session should hold, complete sessions.
timeline() {
  python3 - "$W/sim.out" "$@" <<'PY'
import sys
path, dut, t0, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
rows, sessions = [], 0
for line in open(path):
    words = line.split()
    if len(words) < 2 or words[0] not in ("start", "progress", "converged"):
        continue
    kv = dict(w.split("=", 1) for w in words[2:] if "=" in w)
    complete, sessions = (int(x) for x in kv["complete"].split("/"))
    rows.append(f"{float(words[1]) - t0:.3f} {100 * int(kv['held']) / (sessions * (n - 1)):.2f} {complete}")
    if words[0] == "converged":
        break
print(f"# dut={dut} n={n} sessions={sessions}: seconds from the simulator's start, "
      "% of every session's blocks held, complete sessions")
print("\n".join(rows))
PY
}
sim_command() { echo "$1" >&3; }

run_one() {
  local dut=$1 n=$2
  topology "$n"
  for r in 0 1; do "${dut}_prepare" "$r" "$n"; done
  for r in 0 1; do "${dut}_start" "$r"; done
  local deadline=$(( $(date +%s) + 60 ))
  until listening 0 && listening 1; do
    (( $(date +%s) < deadline )) || { echo "$dut reflectors not listening" >&2; return 1; }
    sleep 0.05
  done
  mkfifo "$W/cmd"
  exec 3<>"$W/cmd"
  local t0; t0=$(now)
  ip netns exec "$NS_SIM" "$SIM_BIN" --clients "$n" --first-address $FIRST --reflector "${RR[0]}" \
    --reflector "${RR[1]}" --as-number $AS --progress-ms 250 <"$W/cmd" >"$W/sim.out" 2>"$W/sim.err" &
  SIM_PID=$!
  local t_conv; t_conv=$(wait_event converged 0)
  local cpu; cpu=$(python3 -c "print(round($(cpu_of "${RR_PID[0]}") + $(cpu_of "${RR_PID[1]}"), 2))")
  timeline "$dut" "$t0" "$n" >"$RESULTS/$dut-$n.timeline"

  local mark; mark=$(lines)
  sim_command "withdraw 0"
  local t_w; t_w=$(wait_event withdraw "$mark")
  local t_wc; t_wc=$(wait_event converged "$mark")
  mark=$(lines)
  sim_command "announce 0"
  local t_a; t_a=$(wait_event announce "$mark")
  local t_ac; t_ac=$(wait_event converged "$mark")

  local hwm0; hwm0=$(hwm_of "${RR_PID[0]}")
  mark=$(lines)
  local t_k; t_k=$(now)
  kill -TERM "${RR_PID[0]}"; wait "${RR_PID[0]}" 2>/dev/null || true
  "${dut}_start" 0
  local t_rc; t_rc=$(wait_event converged "$mark")
  local hwm1; hwm1=$(hwm_of "${RR_PID[1]}")
  local rss; rss=$(python3 -c "print(round(max($hwm0, $hwm1) / 1024, 1))")
  echo "dut=$dut n=$n converge_s=$(sub "$t_conv" "$t0") cpu_s=$cpu rss_mib=$rss" \
    "withdraw_s=$(sub "$t_wc" "$t_w") flap_s=$(sub "$t_ac" "$t_a") restart_s=$(sub "$t_rc" "$t_k")" \
    "wrong_next_hops=$(tail -1 "$W/sim.out" | grep -o 'wrong_next_hops=[0-9]*' | cut -d= -f2)" \
    "load=$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$RESULTS/summary.txt"

  exec 3>&-
  for p in "${RR_PID[@]}" "$SIM_PID"; do kill "$p" 2>/dev/null || true; done
  for p in "${RR_PID[@]}" "$SIM_PID"; do wait "$p" 2>/dev/null || true; done
  RR_PID=("" ""); SIM_PID=""
  for ns in "$NS_SIM" "${NS_RR[@]}"; do ip netns del "$ns"; done
  rm -rf "${W:?}"/*
}

for n in "${SIZES[@]}"; do
  for dut in $DUTS; do run_one "$dut" "$n"; done
done
echo "results in $RESULTS" >&2
if [[ -n $PLOT ]]; then
  timelines=()
  for n in "${SIZES[@]}"; do for dut in $DUTS; do timelines+=("$RESULTS/$dut-$n.timeline"); done; done
  bash bench/plot_rr_scale.sh -o "$PLOT" "${timelines[@]}"
fi
