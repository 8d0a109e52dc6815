#!/usr/bin/env bash
# convergence.sh - BGP convergence of tortie, BIRD and FRR in one run (issue 8, "Performance").
#
# Usage (root):  bash bench/convergence.sh [-r REPS] [-n "100000 1000000"] [-d "tortie birdrib bird frr"]
#                                          [-o RESULTS] [--no-build] [-- extra converge.sh args]
#
# The same feeder (bench/feeder.py: every UPDATE pre-built, ~810 /32s per message) announces N
# IPv4 /32s over one eBGP session to each DUT in turn (birdrib: BIRD without a kernel protocol,
# its RIB alone), in namespaces bb-feed / bb-dut
# (bench/converge.sh does one measurement and cleans up). Repetitions are interleaved
# (rep 1 of every N and DUT, then rep 2, ...) and every run first waits up to 120 s for a quiet
# second, so background load hits all DUTs alike. Per run it records, from the DUT's start:
#   rib_s   all N prefixes accepted in the RIB (tortie: GET /v1/bgp/stats; BIRD: birdc; FRR: vtysh),
#   fib_s   the N-th route of the DUT's protocol in bb-dut's main table (examples/fibwatch.rs,
#           netlink events; `-- --watcher py` for bench/fibwatch.py, `-- --fib-count poll` for none),
#   rss_mb  peak RSS (VmHWM, summed over the DUT's processes), cpu_s  utime+stime until convergence,
# plus the same from Established (*_from_est_s) and the withdraw phase (wd_*).
# Raw lines go to RESULTS (default /tmp/tortie-convergence-<time>.txt); at the end the medians and
# the ratios tortie/BIRD and tortie/FRR are printed (python3 bench/convergence_report.py RESULTS
# re-prints them). Each run's routes in the FIB over time go to RESULTS.timelines/<dut>-<n>-<rep>,
# and bench/plot_convergence.sh draws the first repetition's of the largest N into
# docs/convergence-fib.png (--plot PNG names another file; --no-plot draws none).
#
# Prerequisite for the plot: gnuplot (Debian package gnuplot-nox); checked before any run.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPS=1; DUTS="tortie birdrib bird frr"; NS="100000 1000000"; BUILD=1
OUT=/tmp/tortie-convergence-$(date +%Y%m%d-%H%M%S).txt
PLOT=$HERE/../docs/convergence-fib.png
while [[ $# -gt 0 ]]; do
  case $1 in
    --plot) PLOT=$2; shift 2;; --no-plot) PLOT=""; shift;;
    -r) REPS=$2; shift 2;; -o) OUT=$2; shift 2;; -d) DUTS=$2; shift 2;; -n) NS=$2; shift 2;;
    --no-build) BUILD=0; shift;;
    --) shift; break;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
EXTRA=("$@")
[[ $(id -u) == 0 ]] || { echo "must run as root (namespaces, daemons)" >&2; exit 2; }
if [[ -n $PLOT ]] && ! command -v gnuplot >/dev/null; then
  echo "gnuplot is missing: apt-get install gnuplot-nox (or --no-plot)" >&2; exit 2
fi
mkdir -p "$OUT.timelines"
if [[ $BUILD == 1 ]]; then
  # The route-notification counter every DUT's FIB time is read from (converge.sh --watcher rs).
  (cd "$HERE/.." && cargo build --release --bin tortie --example fibwatch -q) || exit 1
fi
echo "# results -> $OUT" >&2
{ echo "# $(date -Is) kernel=$(uname -r) cpus=$(nproc) mem=$(free -g | awk '/Mem:/{print $2}')G load=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# versions: tortie=$(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null) bird=$(bird --version 2>&1 | awk '{print $3}')" \
       "frr=$(/usr/lib/frr/bgpd --version | awk 'NR==1{print $3}') python=$(python3 -V | awk '{print $2}')"
} >>"$OUT"
for r in $(seq 1 "$REPS"); do
  for n in $NS; do
    for d in $DUTS; do
      echo "# rep $r dut=$d n=$n $(date +%T) load=$(cut -d' ' -f1-3 /proc/loadavg)" >&2
      line=$(timeout 590 "$HERE/converge.sh" -d "$d" -n "$n" -q --wait-quiet 120 \
        --timeline "$OUT.timelines/$d-$n-$r" "${EXTRA[@]}" 2>>"$OUT.log" | tail -n 1)
      [[ -n $line ]] || line="dut=$d n=$n error=1"
      echo "rep=$r $line" | tee -a "$OUT" >&2
    done
  done
done
python3 "$HERE/convergence_report.py" "$OUT"
if [[ -n $PLOT ]]; then
  largest=$(printf '%s\n' $NS | sort -n | tail -n 1)
  "$HERE/plot_convergence.sh" -o "$PLOT" "$OUT.timelines"/*-"$largest"-1
fi
