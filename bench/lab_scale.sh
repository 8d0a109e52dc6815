#!/usr/bin/env bash
# Time from `tortie lab up` to every pod reachable, for N nodes on one
# subnet (a generated quickstart-like topology with a pod per node), and the
# agents' peak RSS.
# Usage (root): bash bench/lab_scale.sh [-r FILE] [-p PNG] [N ...]  (default N: 3 10 30)
#   -r  the table printed, kept as a file too (default a new /tmp/lab-scale.*.txt)
#   -p  the table as a picture: seconds to reachable and the agents' RSS against N
#       (default docs/scale-lab.png; -p "" for none; needs gnuplot, Debian's gnuplot-nox)
# Reachability: node1's pod pings every other pod and every pod pings node1's;
# each round pings every pair still failing at once (one second to answer).
# TORTIE_BIN=path uses that binary (e.g. a debug build); default target/release/tortie,
# built here when absent.
# The lab's `up` output, each line with its time since the start, goes to
# $TORTIE_LAB_LOG_DIR/up-N.log when that is set.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=""; PLOT=$PWD/docs/scale-lab.png
while getopts "r:p:h" opt; do
  case $opt in
    r) RESULTS=$OPTARG;; p) PLOT=$OPTARG;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2;;
  esac
done
shift $((OPTIND - 1))
SIZES=("$@"); [[ ${#SIZES[@]} -gt 0 ]] || SIZES=(3 10 30)
[[ -n $RESULTS ]] || RESULTS=$(mktemp /tmp/lab-scale.XXXXXX.txt)
BIN=${TORTIE_BIN:-$PWD/target/release/tortie}
[[ -x $BIN ]] || cargo build --release -q --bin tortie
work=$(mktemp -d)
lab=""
cleanup() { [[ -n "$lab" ]] && "$BIN" lab down "$work/scale.clab.yml" --name "$lab" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/scale"
cp containerlab/quickstart/node.yaml "$work/scale/node.yaml"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }

printf '%-6s %-10s %-22s %-18s %-18s\n' nodes up_s up_to_all_reachable_s rss_mean_mib rss_max_mib | tee "$RESULTS"
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
      echo "    node$i: {kind: linux, exec: [ip addr add 10.10.$((i / 250)).$((i % 250 + 1))/16 dev eth1]}"
    done
    echo "  links:"
    for i in $(seq 1 "$n"); do echo "    - endpoints: [node$i:eth1, lan:node$i]"; done
  } > "$work/scale.clab.yml"
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
  rss=$(for i in $(seq 1 "$n"); do
    pid=$(cat "$work/clab-$lab/node$i/process-0.pid")
    awk '/VmHWM/ {print $2}' "/proc/$pid/status"
  done | awk '{s+=$1; if ($1>m) m=$1} END {printf "%.1f %.1f", s/NR/1024, m/1024}')
  printf '%-6s %-10s %-22s %-18s %-18s\n' "$n" "$up" "$reachable" "${rss% *}" "${rss#* }" | tee -a "$RESULTS"
  "$BIN" lab down "$work/scale.clab.yml" --name "$lab" >/dev/null 2>&1
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
