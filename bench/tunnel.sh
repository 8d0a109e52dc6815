#!/usr/bin/env bash
# Userspace IP-in-IP throughput next to the direct path, in one run.
# Two nodes in two subnets behind a router; a pod on each. "direct": the
# router is given routes to the pod blocks, so pod traffic is routed
# natively. "tunnel": those routes are removed and tortie's userspace
# encapsulator carries the traffic. iperf3 TCP, 5 s each, 3 runs.
# Prints Gbit/s per mode, the ratio, and the tunnel's CPU seconds per Gbit.
# Usage (root): bash bench/tunnel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example ipip_tunnel -q
BIN=$PWD/target/release/examples/ipip_tunnel
PREFIX=tt-tb$$ POD_NET=10.244
pids=()
IPERF_PID=$(mktemp)  # the daemonised iperf3 server, stopped on exit
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -s "$IPERF_PID" ] && kill "$(cat "$IPERF_PID")" 2>/dev/null; rm -f "$IPERF_PID"
  cleanup_namespaces
}
trap cleanup EXIT
source bench/two-subnets.sh
ip netns exec $PB iperf3 -s -D -B 10.244.2.7 -p 5301 --logfile /dev/null -I "$IPERF_PID"

run() { # label -> prints "label gbps cpu_seconds"
  local label=$1 best=() cpu0 cpu1
  for i in 1 2 3; do
    cpu0=$(cpu)
    gbps=$(ip netns exec $PA iperf3 -c 10.244.2.7 -p 5301 -t 5 -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')
    cpu1=$(cpu)
    echo "tunnel_bench mode=$label run=$i gbps=$gbps cpu_s=$(python3 -c "print($cpu1-$cpu0)")"
  done
}
cpu() { # utime+stime (s) of the tunnel processes
  python3 - "${pids[@]}" <<'PY'
import os, sys
hz = os.sysconf('SC_CLK_TCK'); t = 0
for p in sys.argv[1:]:
    try:
        f = open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()
        t += (int(f[11]) + int(f[12])) / hz
    except OSError: pass
print(t)
PY
}

# Direct: the router learns the pod blocks.
ip -n $R route add 10.244.1.0/26 via 10.1.0.2; ip -n $R route add 10.244.2.0/26 via 10.2.0.2
ip -n $A route add 10.244.2.0/26 via 10.1.0.1; ip -n $B route add 10.244.1.0/26 via 10.2.0.1
sleep_until "ip netns exec $PA ping -c1 -W1 -q 10.244.2.7 >/dev/null"
out=$(mktemp)
run direct | tee -a "$out"
ip -n $R route del 10.244.1.0/26; ip -n $R route del 10.244.2.0/26
ip -n $A route del 10.244.2.0/26; ip -n $B route del 10.244.1.0/26

# Tunnel: tortie's userspace encapsulator on both nodes.
ip netns exec $A "$BIN" ttipip0 10.244.1.1 10.244.2.0/26 10.2.0.2 >/dev/null & pids+=($!)
ip netns exec $B "$BIN" ttipip0 10.244.2.1 10.244.1.0/26 10.1.0.2 >/dev/null & pids+=($!)
sleep_until "ip netns exec $PA ping -c1 -W1 -q 10.244.2.7 >/dev/null"
run tunnel | tee -a "$out"
python3 - "$out" <<'PY'
import sys, re, statistics
d = {}
for l in open(sys.argv[1]):
    kv = dict(re.findall(r'(\w+)=([^\s]+)', l)); d.setdefault(kv['mode'], []).append((float(kv['gbps']), float(kv['cpu_s'])))
direct = statistics.median(g for g, _ in d['direct']); tunnel = statistics.median(g for g, _ in d['tunnel'])
cpu_per_gbit = statistics.median(c / (g * 5) for g, c in d['tunnel'])
print(f"tunnel_bench direct={direct:.2f}Gbit/s tunnel={tunnel:.2f}Gbit/s ratio={tunnel/direct:.3f} tunnel_cpu_s_per_gbit={cpu_per_gbit:.3f}")
PY
rm -f "$out"
