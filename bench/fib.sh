#!/usr/bin/env bash
# Routes programmed per second: tortie's dataplane side by side with the
# kernel reference points of fib_limit.sh (ip -batch, raw pipelined netlink, by
# gateway and by nexthop object as tortie writes them),
# in one run. Usage (root): bash bench/fib.sh [N ...]   (default 100000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
NS_LIST=("$@"); [[ ${#NS_LIST[@]} -gt 0 ]] || NS_LIST=(100000 1000000)
cargo build --release --example route_bench -q
BIN=$PWD/target/release/examples/route_bench
NS=tt-fibbench-$$
cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add bb-fa type veth peer name bb-fb
ip -n "$NS" addr add 10.99.1.2/30 dev bb-fa; ip -n "$NS" addr add 10.99.1.1/30 dev bb-fb
ip -n "$NS" link set bb-fa up; ip -n "$NS" link set bb-fb up

out=$(mktemp)
for n in "${NS_LIST[@]}"; do
  bash bench/fib_limit.sh -r 1 "$n" | grep '^fib_limit_median' | tee -a "$out"
  for rep in 1 2 3; do
    ip netns exec "$NS" "$BIN" "$n" bb-fa 10.99.1.1 | tee -a "$out"
  done
done
echo "# ratios (tortie rate / reference rate, medians)"
python3 - "$out" <<'PY'
import sys, re, statistics
ref, ours, held, peak = {}, {}, {}, {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r'(\w[\w+-]*)=([^\s]+)', line))
    if line.startswith('fib_limit_median'):
        ref[(kv['method'], kv['op'], int(kv['n']))] = float(kv['rate'])
    elif line.startswith('route_bench') and 'rate' in kv:
        ours.setdefault((kv['op'], int(kv['n'])), []).append(float(kv['rate']))
    elif line.startswith('route_bench') and kv.get('op') == 'verify-add' and 'rss_kib' in kv:
        held.setdefault(int(kv['n']), []).append(int(kv['rss_kib']))
    elif line.startswith('route_bench') and kv.get('op') == 'memory':
        peak.setdefault(int(kv['n']), []).append(int(kv['hwm_kib']))
for (op, n), rates in sorted(ours.items()):
    r = statistics.median(rates)
    parts = [f"tortie={r:.0f}/s"]
    for m in ('ipbatch', 'nl-pipe', 'nl-pipe-nh'):
        if (m, op, n) in ref:
            parts.append(f"vs {m} {ref[(m, op, n)]:.0f}/s ratio={r / ref[(m, op, n)]:.2f}")
    print(f"fib op={op} n={n} " + " ".join(parts))
for n in sorted(held):
    print(f"fib memory n={n} rss_holding_kib={statistics.median(held[n]):.0f} peak_kib={statistics.median(peak.get(n, [0])):.0f}")
PY
rm -f "$out"
