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
P=tt-vb$$
A=$P-a; R=$P-r; B=$P-b; PA=$P-pa; PB=$P-pb
cleanup() { for n in $PA $PB $A $B $R; do ip netns del $n 2>/dev/null || true; done; }
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
pod $A $PA ttpa 10.245.1.5; pod $B $PB ttpb 10.245.2.7
ip netns exec $PB iperf3 -s -D -B 10.245.2.7 -p 5302 --logfile /dev/null
sleep_until() { for _ in $(seq 1 100); do eval "$1" && return 0; sleep 0.1; done; return 1; }
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
