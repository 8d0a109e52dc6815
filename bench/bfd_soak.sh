#!/bin/sh
# BFD soak (issue #24): a tortie agent's BFD session to FRR's bfdd at 300 ms x 3 for
# BFD_SOAK_SECONDS (default 300) while busy loops saturate every CPU; prints the BFD
# state changes on both sides after the first Up (expected 0). Not in CI: it takes minutes.
# Needs root (network namespaces) and FRR. Result lines start with "SOAK".
set -eu
cd "$(dirname "$0")/.."
cargo test --test bfd_bench --no-run
cpus=$(nproc)
load=""
stop_load() {
  for pid in $load; do kill "$pid" 2>/dev/null || true; done
}
trap stop_load EXIT INT TERM
# Two busy loops per CPU: the agent and bfdd compete with them for every core.
i=0
while [ "$i" -lt $((cpus * 2)) ]; do
  yes >/dev/null &
  load="$load $!"
  i=$((i + 1))
done
echo "load: $((cpus * 2)) busy loops on $cpus CPUs (pids$load)"
cargo test --test bfd_bench -- --ignored --exact soak_bfd_at_300ms_x3_with_frr --nocapture
