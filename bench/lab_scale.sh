#!/usr/bin/env bash
# Time from `tortie lab up` to every pod reachable, for N nodes on one
# subnet (a generated quickstart-like topology with a pod per node), and the
# agents' peak RSS.
# Usage (root): bash bench/lab_scale.sh [-r FILE] [-p PNG] [-R K] [N ...]  (default N: 3 10 30)
#   -r  the table printed, kept as a file too (default a new /tmp/lab-scale.*.txt)
#   -R  nodes 1..K are route reflectors (one cluster id; the others peer only with them)
#       instead of the full mesh
#   -p  the table as a picture: seconds to reachable and the agents' RSS against N
#       (default docs/scale-lab.png; -p "" for none; needs gnuplot, Debian's gnuplot-nox)
# Columns: N, seconds `up` took, seconds to every pod reachable, the agents' peak RSS
# (mean, largest), the CPU seconds the agents used until every pod was reachable (all
# agents together, and the largest), the 1-minute load average before `up`.
# Reachability: node1's pod pings every other pod and every pod pings node1's;
# each round pings every pair still failing at once (one second to answer).
# The kernel's neighbour (ARP) table is one for the whole machine, every namespace's
# entries counted against net.ipv4.neigh.default.gc_thresh3 (1024 by default): N nodes
# on one bridge need about N * (N + 1) entries, so from about 30 nodes the table
# overflows ("neighbor table overflow!" in dmesg, ENOBUFS on send) and pods stop
# reaching each other. The script raises gc_thresh1..3 for the run when they are
# lower than the largest N needs, and puts the old values back at the end.
# TORTIE_BIN=path uses that binary (e.g. a debug build); default target/release/tortie,
# built here when absent.
# The lab's `up` output, each line with its time since the start, goes to
# $TORTIE_LAB_LOG_DIR/up-N.log when that is set, and the agents' logs to
# $TORTIE_LAB_LOG_DIR/agents-N/.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=""; PLOT=$PWD/docs/scale-lab.png; REFLECTORS=0
while getopts "r:p:R:h" opt; do
  case $opt in
    r) RESULTS=$OPTARG;; p) PLOT=$OPTARG;; R) REFLECTORS=$OPTARG;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2;;
  esac
done
shift $((OPTIND - 1))
n=0
SIZES=("$@"); [[ ${#SIZES[@]} -gt 0 ]] || SIZES=(3 10 30)
[[ -n $RESULTS ]] || RESULTS=$(mktemp /tmp/lab-scale.XXXXXX.txt)
BIN=${TORTIE_BIN:-$PWD/target/release/tortie}
[[ -x $BIN ]] || cargo build --release -q --bin tortie
work=$(mktemp -d)
lab=""
neigh=net.ipv4.neigh.default
saved_neigh=""
# The agents' logs of lab $lab with $1 nodes, kept in $TORTIE_LAB_LOG_DIR/agents-$1/ (after
# `lab down`, which keeps them).
save_logs() {
  [[ -n ${TORTIE_LAB_LOG_DIR:-} ]] || return 0
  mkdir -p "$TORTIE_LAB_LOG_DIR/agents-$1"
  for i in $(seq 1 "$1"); do
    cp "$work/clab-$lab/node$i/process-0.log" "$TORTIE_LAB_LOG_DIR/agents-$1/node$i.log" 2>/dev/null || true
  done
}
cleanup() {
  [[ -n "$lab" ]] && { "$BIN" lab down "$work/scale.clab.yml" --name "$lab" >/dev/null 2>&1; save_logs "$n"; } || true
  rm -rf "$work"
  [[ -z $saved_neigh ]] || sysctl -qw $saved_neigh
}
trap cleanup EXIT
largest=$(printf '%s\n' "${SIZES[@]}" | sort -n | tail -1)
need=$(( largest * (largest + 1) * 2 ))
if [[ $(sysctl -n $neigh.gc_thresh3) -lt $need ]]; then
  saved_neigh="$neigh.gc_thresh1=$(sysctl -n $neigh.gc_thresh1) $neigh.gc_thresh2=$(sysctl -n $neigh.gc_thresh2) $neigh.gc_thresh3=$(sysctl -n $neigh.gc_thresh3)"
  echo "lab_scale.sh: raising the machine's neighbour table limit to $need for the run (was: $saved_neigh)" >&2
  sysctl -qw $neigh.gc_thresh1=$((need / 4)) $neigh.gc_thresh2=$((need / 2)) $neigh.gc_thresh3=$need
fi
mkdir -p "$work/scale"
cp containerlab/quickstart/node.yaml "$work/scale/node.yaml"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }

row() { printf '%-6s %-8s %-22s %-13s %-12s %-14s %-13s %s\n' "$@"; }
row nodes up_s up_to_all_reachable_s rss_mean_mib rss_max_mib cpu_all_agents_s cpu_max_agent_s load1_before | tee "$RESULTS"
for n in "${SIZES[@]}"; do
  lab="tts$$n$n"
  {
    echo "name: scale"
    echo "topology:"
    echo "  kinds:"
    echo "    linux: {image: tortie:latest, binds: [scale/node.yaml:/etc/tortie/tortie.yaml], env: {TORTIE_LAB_PODS: pod1}}"
    echo "  nodes:"
    echo "    lan: {kind: bridge}"
    for i in $(seq 1 "$n"); do
      env=""
      [[ $i -le $REFLECTORS ]] && env=", env: {TORTIE_BGP_ROUTE_REFLECTOR_CLUSTER_ID: 244.0.0.1}"
      echo "    node$i: {kind: linux, exec: [ip addr add 10.10.$((i / 250)).$((i % 250 + 1))/16 dev eth1]$env}"
    done
    echo "  links:"
    for i in $(seq 1 "$n"); do echo "    - endpoints: [node$i:eth1, lan:node$i]"; done
  } > "$work/scale.clab.yml"
  load=$(cut -d' ' -f1 /proc/loadavg)
  start=$(now)
  log=${TORTIE_LAB_LOG_DIR:+$TORTIE_LAB_LOG_DIR/up-$n.log}
  "$BIN" lab up "$work/scale.clab.yml" --name "$lab" 2>&1 \
    | perl -MTime::HiRes=time -ne 'BEGIN { $| = 1; $s = shift } printf "%.2f %s", time - $s, $_' "$start" \
    > "${log:-/dev/null}"
  up=$(since "$start")
  ns() { echo "clab-$lab-node$1-pod1"; }
  declare -A ips=()
  for i in $(seq 1 "$n"); do
    ips[$i]=$(ip -n "$(ns "$i")" -4 -o addr show dev eth0 | awk '{split($4, a, "/"); print a[1]; exit}')
  done
  pending=()
  for i in $(seq 2 "$n"); do pending+=("1:$i" "$i:1"); done
  deadline=$(( $(date +%s) + 300 ))
  while [[ ${#pending[@]} -gt 0 && $(date +%s) -lt $deadline ]]; do
    pids=()
    for pair in "${pending[@]}"; do
      a=${pair%%:*}; b=${pair##*:}
      nsenter --net="/run/netns/$(ns "$a")" ping -c1 -W1 "${ips[$b]}" >/dev/null 2>&1 &
      pids+=($!)
    done
    left=()
    for k in "${!pending[@]}"; do wait "${pids[$k]}" || left+=("${pending[$k]}"); done
    pending=("${left[@]+"${left[@]}"}")
  done
  reachable=$(since "$start")
  [[ ${#pending[@]} -eq 0 ]] || echo "# $n nodes: ${#pending[@]} pairs still unreachable after 300 s" >&2
  # Per agent: peak RSS in KiB, CPU (user + system) in clock ticks.
  usage=$(for i in $(seq 1 "$n"); do
    pid=$(cat "$work/clab-$lab/node$i/process-0.pid")
    echo "$(awk '/VmHWM/ {print $2}' "/proc/$pid/status") $(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$pid/stat")"
  done)
  rss=$(awk '{s+=$1; if ($1>m) m=$1} END {printf "%.1f %.1f", s/NR/1024, m/1024}' <<<"$usage")
  cpu=$(awk -v hz="$(getconf CLK_TCK)" '{s+=$2; if ($2>m) m=$2} END {printf "%.1f %.2f", s/hz, m/hz}' <<<"$usage")
  row "$n" "$up" "$reachable" "${rss% *}" "${rss#* }" "${cpu% *}" "${cpu#* }" "$load" | tee -a "$RESULTS"
  "$BIN" lab down "$work/scale.clab.yml" --name "$lab" >/dev/null 2>&1
  save_logs "$n"
  lab=""
  unset ips
done
echo "results in $RESULTS" >&2
[[ -n $PLOT ]] || exit 0
command -v gnuplot >/dev/null || { echo "lab_scale.sh: gnuplot is missing: apt-get install gnuplot-nox" >&2; exit 2; }
{
  echo "set terminal pngcairo size 800,460 font 'DejaVu Sans,10' noenhanced"
  echo "set output '$PLOT'"
  echo "set title 'tortie lab up, N nodes with a pod each: time to every pod reachable, agents'' peak RSS (tortie $(git rev-parse --short HEAD), $(date -u +%F))'"
  echo "set xlabel 'nodes'"
  echo "set ylabel 'seconds from lab up to every pod reachable'"
  echo "set y2label 'agent peak RSS (MiB)'"
  echo "set ytics nomirror"
  echo "set y2tics"
  echo "set yrange [0:*]"
  echo "set y2range [0:*]"
  echo "set xrange [0:*]"
  echo "set key below horizontal"
  echo "set offsets 0, graph 0.03, 0, 0"
  echo "set grid"
  echo "plot '$RESULTS' using 1:3 every ::1 with linespoints linewidth 2 pointtype 7 linecolor rgb '#d95f02' title 'seconds to reachable', \\"
  echo "  '' using 1:5 every ::1 axes x1y2 with linespoints linewidth 2 pointtype 5 linecolor rgb '#1b9e77' title 'RSS, largest agent', \\"
  echo "  '' using 1:4 every ::1 axes x1y2 with linespoints linewidth 1 dashtype 2 pointtype 4 linecolor rgb '#1b9e77' title 'RSS, mean agent'"
} | gnuplot
echo "wrote $PLOT" >&2
