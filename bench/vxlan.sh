#!/usr/bin/env bash
# VXLAN throughput next to the direct path, in one run.
# Two nodes in two subnets behind a router; a pod on each. "direct": the
# router is given routes to the pod blocks, so pod traffic is routed
# natively. "vxlan": those routes are removed and each node gets the kernel
# VXLAN device exactly as tortie sets it up (vxlan.tortie, VNI 4096, port
# 4789, learning off, no outer UDP checksum, MTU underlay - 50, the tunnel address as a /32, the
# other node's permanent neighbour and FDB entries, the block routed
# `via <tunnel address> dev vxlan.tortie onlink`), and the pods get the MTU
# tortie gives them (1450). iperf3 TCP, 5 s each, REPS (5) runs per mode,
# interleaved. Prints Gbit/s per mode, the ratio, and the CPU seconds per
# Gbit of the whole machine (VXLAN runs in softirq, not in a process).
# Usage (root): bash bench/vxlan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=tt-vb$$ POD_NET=10.245
IPERF_PID=$(mktemp)  # the daemonised iperf3 server, stopped on exit
cleanup() {
  [ -s "$IPERF_PID" ] && kill "$(cat "$IPERF_PID")" 2>/dev/null; rm -f "$IPERF_PID"
  cleanup_namespaces
}
trap cleanup EXIT
source bench/two-subnets.sh
ip netns exec $PB iperf3 -s -D -B 10.245.2.7 -p 5302 --logfile /dev/null -I "$IPERF_PID"
busy() { awk '/^cpu /{print ($2+$3+$4+$7+$8)/100}' /proc/stat; }  # user nice system irq softirq, s

vxlan_node() { # ns local tunnel mac peer_underlay peer_tunnel peer_mac peer_block
  ip -n $1 link add vxlan.tortie address $4 type vxlan id 4096 dstport 4789 local $2 dev eth1 nolearning noudpcsum
  ip -n $1 link set vxlan.tortie mtu 1450 up
  ip -n $1 addr add $3/32 dev vxlan.tortie
  ip -n $1 neigh add $6 lladdr $7 dev vxlan.tortie nud permanent
  bridge -n $1 fdb append $7 dev vxlan.tortie dst $5 self permanent
  ip -n $1 route add $8 via $6 dev vxlan.tortie onlink
}
set_mode() {
  case $1 in
    direct)
      ip -n $A link del vxlan.tortie 2>/dev/null || true; ip -n $B link del vxlan.tortie 2>/dev/null || true
      ip -n $PA link set eth0 mtu 1500; ip -n $PB link set eth0 mtu 1500
      ip -n $R route replace 10.245.1.0/26 via 10.1.0.2; ip -n $R route replace 10.245.2.0/26 via 10.2.0.2
      ip -n $A route replace 10.245.2.0/26 via 10.1.0.1; ip -n $B route replace 10.245.1.0/26 via 10.2.0.1;;
    vxlan)
      ip -n $R route del 10.245.1.0/26 2>/dev/null || true; ip -n $R route del 10.245.2.0/26 2>/dev/null || true
      ip -n $A route del 10.245.2.0/26 2>/dev/null || true; ip -n $B route del 10.245.1.0/26 2>/dev/null || true
      ip -n $PA link set eth0 mtu 1450; ip -n $PB link set eth0 mtu 1450
      vxlan_node $A 10.1.0.2 10.245.1.0 02:74:00:00:00:01 10.2.0.2 10.245.2.0 02:74:00:00:00:02 10.245.2.0/26
      vxlan_node $B 10.2.0.2 10.245.2.0 02:74:00:00:00:02 10.1.0.2 10.245.1.0 02:74:00:00:00:01 10.245.1.0/26;;
  esac
  sleep_until "ip netns exec $PA ping -c1 -W1 -q 10.245.2.7 >/dev/null"
}
out=$(mktemp)
for i in $(seq 1 "${REPS:-5}"); do
  for mode in direct vxlan; do
    set_mode $mode
    c0=$(busy)
    gbps=$(ip netns exec $PA iperf3 -c 10.245.2.7 -p 5302 -t 5 -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')
    c1=$(busy)
    echo "vxlan_bench mode=$mode run=$i gbps=$gbps cpu_s=$(python3 -c "print($c1-$c0)")" | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import sys, re, statistics
d = {}
for l in open(sys.argv[1]):
    kv = dict(re.findall(r'(\w+)=([^\s]+)', l)); d.setdefault(kv['mode'], []).append((float(kv['gbps']), float(kv['cpu_s'])))
med = {m: statistics.median(g for g, _ in v) for m, v in d.items()}
cpg = {m: statistics.median(c / (g * 5) for g, c in v) for m, v in d.items()}
print(f"vxlan_bench direct={med['direct']:.2f}Gbit/s vxlan={med['vxlan']:.2f}Gbit/s ratio={med['vxlan']/med['direct']:.3f} "
      f"cpu_s_per_gbit direct={cpg['direct']:.3f} vxlan={cpg['vxlan']:.3f}")
PY
rm -f "$out"
