#!/usr/bin/env bash
# CNI ADD/DEL latency (p50/p99 over N sequential pods) and the wall time of N concurrent ADDs:
# tortie (plugin + a real `tortie node` agent, sqlite datastore) next to Debian's `bridge` +
# `host-local` (/usr/lib/cni), in the same run, on the same freshly made pod namespaces.
# Each plugin runs as a runtime runs it (CNI_* variables, config on stdin) from the node's
# namespace. Prints one line per measure and the ratios tortie / bridge.
# Usage (root): bash bench/cni.sh [N=100] [debug|release]   (release builds with cargo first)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
PROFILE=${2:-release}
if [ "$PROFILE" = release ]; then cargo build --release -q; else cargo build -q; fi
BIN=$PWD/target/$PROFILE/tortie
# Namespaces carry this process's id, so a crashed run is reaped by the next Topology.
P=tt-$$-0-cnibench
NODE=$P-n; UP=$P-up
DIR=$(mktemp -d)
agent=""
cleanup() {
  [ -n "$agent" ] && kill "$agent" 2>/dev/null && wait "$agent" 2>/dev/null || true
  for i in $(seq 1 "$N"); do ip netns del $P-p$i 2>/dev/null || true; done
  ip netns del $NODE 2>/dev/null || true; ip netns del $UP 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
for n in $NODE $UP; do ip netns add $n; ip -n $n link set lo up; done
ip -n $NODE link add eth1 type veth peer name eth1 netns $UP
ip -n $NODE addr add 10.78.0.5/24 dev eth1; ip -n $UP addr add 10.78.0.1/24 dev eth1
ip -n $NODE link set eth1 up; ip -n $UP link set eth1 up
ip -n $NODE route add default via 10.78.0.1
for i in $(seq 1 "$N"); do ip netns add $P-p$i; done
cat > "$DIR/tortie.yaml" <<EOF
node: {name: bench-node, address: "10.78.0.5/24"}
datastore: {sqlite_path: $DIR/tortie.db}
api: {socket: $DIR/api.sock}
metrics: {enabled: false}
bgp: {enabled: false}
log: {level: warn}
ipam: {default_ipv4_pool_cidr: "10.244.0.0/16"}
EOF
ip netns exec $NODE "$BIN" node --config "$DIR/tortie.yaml" > "$DIR/agent.log" 2>&1 &
agent=$!
for _ in $(seq 1 300); do "$BIN" status --socket "$DIR/api.sock" >/dev/null 2>&1 && break; sleep 0.1; done

# As a runtime finds it: a file named after the configuration's type.
mkdir -p "$DIR/bin"; ln -s "$BIN" "$DIR/bin/tortie-cni"
ip netns exec $NODE python3 - "$BIN" "$P" "$N" "$DIR" <<'PY'
import json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
binary, prefix, n, d = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
tortie = {"cniVersion": "1.0.0", "name": "bench-net", "type": "tortie-cni", "api_socket": f"{d}/api.sock"}
bridge = {"cniVersion": "1.0.0", "name": "bench-br", "type": "bridge", "bridge": "ttbr0", "isGateway": True,
          "ipam": {"type": "host-local", "subnet": "10.99.0.0/16", "dataDir": f"{d}/host-local"}}
plugins = {"tortie": ([f"{d}/bin/tortie-cni"], tortie), "bridge": (["/usr/lib/cni/bridge"], bridge)}

def call(plugin, command, i):
    argv, conf = plugins[plugin]
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": f"bench{i}", "CNI_NETNS": f"/run/netns/{prefix}-p{i}",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni", "PATH": os.environ["PATH"],
           "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod{i}"}
    start = time.perf_counter()
    out = subprocess.run(argv, input=json.dumps(conf).encode(), env=env, capture_output=True)
    took = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{plugin} {command} pod {i} failed: {out.stdout.decode()} {out.stderr.decode()}")
    return took

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000

results = {}
for plugin in plugins:
    adds = [call(plugin, "ADD", i) for i in range(1, n + 1)]
    dels = [call(plugin, "DEL", i) for i in range(1, n + 1)]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        list(pool.map(lambda i: call(plugin, "ADD", i), range(1, n + 1)))
    wall = time.perf_counter() - start
    with ThreadPoolExecutor(max_workers=n) as pool:
        list(pool.map(lambda i: call(plugin, "DEL", i), range(1, n + 1)))
    r = {"add_p50_ms": pct(adds, 50), "add_p99_ms": pct(adds, 99), "del_p50_ms": pct(dels, 50),
         "del_p99_ms": pct(dels, 99), "concurrent_adds_per_s": n / wall, "concurrent_wall_s": wall}
    results[plugin] = r
    print(f"cni_bench plugin={plugin} pods={n} " + " ".join(f"{k}={v:.1f}" if 'wall' not in k else f"{k}={v:.2f}" for k, v in r.items()))
t, b = results["tortie"], results["bridge"]
print("cni_bench ratio tortie/bridge " + " ".join(f"{k}={t[k] / b[k]:.2f}" for k in t))
PY
