#!/usr/bin/env bash
# Userspace IP-in-IP throughput next to the direct path, in one run.
# Two nodes in two subnets behind a router; a pod on each. "direct": the
# router is given routes to the pod blocks, so pod traffic is routed
# natively. "tun": those routes are removed and tortie's userspace
# encapsulator carries the traffic, every packet through its TUN device
# (the route `<block> dev <tun>`; also what `ipip.userspace_bpf:
# false` does). "tx": the same with the in-kernel transmit program on the
# route (`<block> encap bpf xmit tipip<node> dev <tun>`), receiving through
# the raw socket. "bpf": both in-kernel programs, the transmit one and the
# receive one on the underlay device's ingress, as the agent runs them when
# the kernel takes them. OLD_BIN (optional): another
# build of examples/ipip_tunnel (e.g. main's), run as mode "old" the way
# "tun" runs. iperf3 TCP, 5 s each, REPS (3) rounds of every mode, interleaved.
# Prints per mode the median Gbit/s, the ratio to direct, the tunnel
# processes' CPU seconds per Gbit, and the CPU seconds per Gbit of
# everything the traffic runs in (both iperf3 processes, whose system time
# includes the kernel's forwarding and encapsulation on their sends, plus
# the tunnel processes).
# Usage (root): [OLD_BIN=path] [REPS=3] bash bench/tunnel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example ipip_tunnel -q
BIN=$PWD/target/release/examples/ipip_tunnel
REPS=${REPS:-3}
PREFIX=tt-tb$$ POD_NET=10.244
pids=()
IPERF_PID=$(mktemp)  # the daemonised iperf3 server, stopped on exit
stop_tunnels() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; pids=(); }
cleanup() {
  stop_tunnels
  [ -s "$IPERF_PID" ] && kill "$(cat "$IPERF_PID")" 2>/dev/null; rm -f "$IPERF_PID"
  cleanup_namespaces
}
trap cleanup EXIT
source bench/two-subnets.sh
ip netns exec $PB iperf3 -s -D -B 10.244.2.7 -p 5301 --logfile /dev/null -I "$IPERF_PID"

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

set_mode() {
  stop_tunnels
  ip -n $R route del 10.244.1.0/26 2>/dev/null || true; ip -n $R route del 10.244.2.0/26 2>/dev/null || true
  ip -n $A route del 10.244.2.0/26 2>/dev/null || true; ip -n $B route del 10.244.1.0/26 2>/dev/null || true
  case $1 in
    direct)
      ip -n $R route add 10.244.1.0/26 via 10.1.0.2; ip -n $R route add 10.244.2.0/26 via 10.2.0.2
      ip -n $A route add 10.244.2.0/26 via 10.1.0.1; ip -n $B route add 10.244.1.0/26 via 10.2.0.1 ;;
    tun|old)
      local bin=$BIN; [ "$1" = old ] && bin=$OLD_BIN
      ip netns exec $A "$bin" ttipip0 10.244.1.1 10.244.2.0/26 10.2.0.2 >/dev/null & pids+=($!)
      ip netns exec $B "$bin" ttipip0 10.244.2.1 10.244.1.0/26 10.1.0.2 >/dev/null & pids+=($!) ;;
    tx)
      ip netns exec $A "$BIN" ttipip0 10.244.1.1 10.244.2.0/26 10.2.0.2 10.1.0.2 >/dev/null & pids+=($!)
      ip netns exec $B "$BIN" ttipip0 10.244.2.1 10.244.1.0/26 10.1.0.2 10.2.0.2 >/dev/null & pids+=($!) ;;
    bpf)
      ip netns exec $A "$BIN" ttipip0 10.244.1.1 10.244.2.0/26 10.2.0.2 10.1.0.2 eth1 >/dev/null & pids+=($!)
      ip netns exec $B "$BIN" ttipip0 10.244.2.1 10.244.1.0/26 10.1.0.2 10.2.0.2 eth1 >/dev/null & pids+=($!) ;;
  esac
  sleep_until "ip netns exec $PA ping -c1 -W1 -q 10.244.2.7 >/dev/null"
}

run() { # mode round -> prints one result line
  local cpu0 cpu1 json
  cpu0=$(cpu)
  json=$(ip netns exec $PA iperf3 -c 10.244.2.7 -p 5301 -t 5 -J)
  cpu1=$(cpu)
  python3 - "$1" "$2" "$cpu0" "$cpu1" "$json" <<'PY'
import json, sys
mode, rnd, c0, c1, j = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5])
end = j["end"]; secs = end["sum_received"]["seconds"]
iperf_cpu = (end["cpu_utilization_percent"]["host_total"] + end["cpu_utilization_percent"]["remote_total"]) / 100 * secs
print(f"tunnel_bench mode={mode} run={rnd} gbps={end['sum_received']['bits_per_second']/1e9:.3f} tunnel_cpu_s={c1-c0:.3f} all_cpu_s={iperf_cpu + c1 - c0:.3f} seconds={secs:.2f}")
PY
}

modes="direct tun tx bpf"; [ -n "${OLD_BIN:-}" ] && modes="direct old tun tx bpf"
out=$(mktemp)
for i in $(seq 1 "$REPS"); do
  for m in $modes; do set_mode $m; run $m $i | tee -a "$out"; done
done
stop_tunnels
python3 - "$out" <<'PY'
import sys, re, statistics
d = {}
for l in open(sys.argv[1]):
    kv = dict(re.findall(r'(\w+)=([^\s]+)', l)); d.setdefault(kv['mode'], []).append(kv)
med = lambda xs: statistics.median(xs)
direct = med(float(k['gbps']) for k in d['direct'])
for mode, ks in d.items():
    g = med(float(k['gbps']) for k in ks)
    per = lambda key: med(float(k[key]) / (float(k['gbps']) * float(k['seconds'])) for k in ks)
    print(f"tunnel_bench {mode}={g:.2f}Gbit/s ratio={g/direct:.3f} tunnel_cpu_s_per_gbit={per('tunnel_cpu_s'):.3f} all_cpu_s_per_gbit={per('all_cpu_s'):.3f}")
PY
rm -f "$out"
