#!/usr/bin/env bash
# service_withdraw.sh - endpoint turning not-ready → service /32 withdrawn at the ToR (FRR), p50/p99.
# Brings up containerlab/tor (needs root), makes an externalTrafficPolicy=Local address on node2,
# then RUNS times (default 200) writes the endpoint not-ready and measures the time to the prefix
# leaving node2's RIB (tortie's share) and on to FRR deleting its kernel route on tor1 (FRR's).
# Results: docs/services.md.
#   RUNS=200 bench/service_withdraw.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-200}" cargo test --test lab_services bench_endpoint_not_ready_to_withdrawn_at_frr -- --ignored --nocapture 2>&1 \
  | grep -E '^(tortie|FRR|total)[ :]'
