#!/usr/bin/env bash
# plot_convergence.sh - routes in the FIB over time, one line per DUT, as a PNG (gnuplot).
#
# Usage:  bench/plot_convergence.sh [-o OUT.png] [-t TITLE] TIMELINE...
#   TIMELINE  files written by `bench/converge.sh --timeline FILE` (bench/convergence.sh keeps one
#             per run in RESULTS.timelines/<dut>-<n>-<rep>): a `# dut=D n=N: ...` header, then
#             `<seconds from Established> <routes in the FIB>` lines.
#   -o        the picture (default docs/convergence-fib.png)
#   -t        its title (default: the routes' count, the commit and the date)
#
# Prerequisite: gnuplot (Debian package gnuplot-nox).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$HERE/../docs/convergence-fib.png; TITLE=""
while getopts "o:t:h" opt; do
  case $opt in
    o) OUT=$OPTARG;; t) TITLE=$OPTARG;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2;;
  esac
done
shift $((OPTIND - 1))
[[ $# -gt 0 ]] || { echo "plot_convergence.sh: no timeline files given" >&2; exit 2; }
command -v gnuplot >/dev/null || { echo "plot_convergence.sh: gnuplot is missing: apt-get install gnuplot-nox" >&2; exit 2; }

label() {   # the DUT's name as the docs write it
  case $1 in
    tortie) echo tortie;; tortieplain) echo "tortie (plain routes)";; bird) echo "BIRD 2";;
    frr) echo FRR;; *) echo "$1";;
  esac
}
plots=(); n=""
for f in "$@"; do
  [[ -s $f ]] || { echo "plot_convergence.sh: $f is empty or missing (was the FIB counted?)" >&2; exit 1; }
  dut=$(sed -n '1s/^# dut=\([^ ]*\) .*/\1/p' "$f"); n=$(sed -n '1s/.* n=\([0-9]*\).*/\1/p' "$f")
  plots+=("'$f' using 1:(\$2/1000) with lines linewidth 2 title '$(label "$dut")'")
done
if [[ -z $TITLE ]]; then
  TITLE="$n routes from one eBGP peer into the kernel (tortie $(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null), $(date -u +%F))"
fi
{
  echo "set terminal pngcairo size 900,500 font 'DejaVu Sans,10' noenhanced"
  echo "set output '$OUT'"
  echo "set title '$TITLE'"
  echo "set xlabel 'seconds from Established'"
  echo "set ylabel 'routes in the FIB (thousands)'"
  echo "set key left top"
  echo "set grid"
  echo "set yrange [0:*]"
  echo "set xrange [0:*]"
  IFS=,; echo "plot ${plots[*]}"
} | gnuplot
echo "wrote $OUT" >&2
