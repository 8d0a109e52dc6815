#!/bin/sh
# BFD cut benchmark (issue #24): time from a BFD cut to the learned route leaving the kernel
# of the surviving node, tortie (agent) beside FRR (zebra + bfdd + bgpd with `neighbor ... bfd`)
# cut at the same moment in the same run, at 100 ms x 3 and 300 ms x 3, BFD_CUTS (default
# 50) cuts each; p50 and p99 (nearest rank). Not in CI. Needs root and FRR.
# Result lines start with "CUT".
set -eu
cd "$(dirname "$0")/.."
cargo test --test bfd_bench --no-run
for ms in 100 300; do
  BFD_MS=$ms cargo test --test bfd_bench -- --ignored --exact \
    cut_to_kernel_route_removed_tortie_beside_frr --nocapture
done
