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
P=tt-tb$$
A=$P-a; R=$P-r; B=$P-b; PA=$P-pa; PB=$P-pb
pids=()
IPERF_PID=$(mktemp)  # the daemonised iperf3 server, stopped on exit
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -s "$IPERF_PID" ] && kill "$(cat "$IPERF_PID")" 2>/dev/null; rm -f "$IPERF_PID"
  for n in $PA $PB $A $B $R; do ip netns del $n 2>/dev/null || true; done
}
trap cleanup EXIT
for n in $A $R $B $PA $PB; do ip netns add $n; ip -n $n link set lo up; done
ip -n $A link add eth1 type veth peer name eth1 netns $R
ip -n $B link add eth1 type veth peer name eth2 netns $R
ip -n $A addr add 10.1.0.2/24 dev eth1; ip -n $R addr add 10.1.0.1/24 dev eth1
ip -n $B addr add 10.2.0.2/24 dev eth1; ip -n $R addr add 10.2.0.1/24 dev eth2
for d in "$A eth1" "$B eth1" "$R eth1" "$R eth2"; do set -- $d; ip -n $1 link set $2 up; done
ip netns exec $R sysctl -qw net.ipv4.ip_forward=1
ip -n $A route add default via 10.1.0.1; ip -n $B route add default via 10.2.0.1
pod() { # node pod hostif addr
  ip -n $1 link add $3 type veth peer name eth0 netns $2
  ip -n $1 link set $3 up; ip -n $2 link set eth0 up
  ip netns exec $1 sysctl -qw net.ipv4.conf.$3.proxy_arp=1 net.ipv4.neigh.$3.proxy_delay=0 net.ipv4.ip_forward=1
  ip -n $1 route add $4/32 dev $3 scope link
  ip -n $2 addr add $4/32 dev eth0
  ip -n $2 route add 169.254.1.1 dev eth0 scope link; ip -n $2 route add default via 169.254.1.1 dev eth0
}
pod $A $PA ttpa 10.244.1.5; pod $B $PB ttpb 10.244.2.7
ip netns exec $PB iperf3 -s -D -B 10.244.2.7 -p 5301 --logfile /dev/null -I "$IPERF_PID"
sleep_until() { for _ in $(seq 1 100); do eval "$1" && return 0; sleep 0.1; done; return 1; }

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
