#!/usr/bin/env bash
# plot_rr_scale.sh - the route reflectors' initial convergence (bench/rr_scale.sh) as a PNG
# (gnuplot): one panel per node count, one line per DUT, the share of every client session's
# blocks held against seconds from the simulator's start.
#
# Usage:  bench/plot_rr_scale.sh [-o OUT.png] [-t TITLE] TIMELINE...
#   TIMELINE  files written by bench/rr_scale.sh (-r DIR: DIR/<dut>-<n>.timeline): a
#             `# dut=D n=N sessions=S: ...` header, then `<seconds> <% held> <complete sessions>`
#             lines up to the moment every session holds every block
#   -o        the picture (default docs/scale-rr-convergence.png)
#   -t        its title (default: the commit and the date)
#
# Prerequisite: gnuplot (Debian package gnuplot-nox).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$HERE/../docs/scale-rr-convergence.png; TITLE=""
while getopts "o:t:h" opt; do
  case $opt in
    o) OUT=$OPTARG;; t) TITLE=$OPTARG;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2;;
  esac
done
shift $((OPTIND - 1))
[[ $# -gt 0 ]] || { echo "plot_rr_scale.sh: no timeline files given" >&2; exit 2; }
command -v gnuplot >/dev/null || { echo "plot_rr_scale.sh: gnuplot is missing: apt-get install gnuplot-nox" >&2; exit 2; }

label() {   # the DUT's name as the docs write it, and its colour
  case $1 in
    tortie) echo "tortie|#d95f02";; bird) echo "BIRD 2|#1b9e77";; *) echo "$1|#7570b3";;
  esac
}
declare -A panel=()   # node count -> plot clauses
sizes=()
for f in "$@"; do
  [[ -s $f ]] || { echo "plot_rr_scale.sh: $f is empty or missing" >&2; exit 1; }
  dut=$(sed -n '1s/^# dut=\([^ ]*\) .*/\1/p' "$f"); n=$(sed -n '1s/.* n=\([0-9]*\).*/\1/p' "$f")
  [[ -n $dut && -n $n ]] || { echo "plot_rr_scale.sh: $f: no '# dut=D n=N' header" >&2; exit 1; }
  IFS='|' read -r name colour <<<"$(label "$dut")"
  end=$(printf '%.1f' "$(tail -1 "$f" | cut -d' ' -f1)")
  [[ -n ${panel[$n]:-} ]] || sizes+=("$n")
  panel[$n]+="${panel[$n]:+, }'$f' using 1:2 with lines linewidth 2 linecolor rgb '$colour' title '$name ($end s)'"
done
if [[ -z $TITLE ]]; then
  TITLE="Two route reflectors, N simulated nodes: blocks held by every client session (tortie $(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null), $(date -u +%F))"
fi
mapfile -t sizes < <(printf '%s\n' "${sizes[@]}" | sort -n)
{
  echo "set terminal pngcairo size $((420 * ${#sizes[@]} + 60)),460 font 'DejaVu Sans,10' noenhanced"
  echo "set output '$OUT'"
  echo "set multiplot layout 1,${#sizes[@]} title '$TITLE'"
  echo "set xlabel 'seconds from the simulator start'"
  echo "set ylabel '% of every session''s blocks held'"
  echo "set key right bottom"
  echo "set grid"
  echo "set yrange [0:105]"
  echo "set xrange [0:*]"
  for n in "${sizes[@]}"; do
    echo "set title '$n nodes ($((2 * n)) client sessions)'"
    echo "plot ${panel[$n]}"
  done
  echo "unset multiplot"
} | gnuplot
echo "wrote $OUT" >&2
