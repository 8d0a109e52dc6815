#!/usr/bin/env bash
# What one agent makes etcd send it, idle and while other nodes register, in a cluster of N
# nodes: the reads that multiply by the number of agents.
# Usage (root): bash bench/datastore_reads.sh [-n N] [-i SECONDS] [-w W] [BIN ...]
#   -n  other Nodes in the store, each with one /26 IPAM block of 10 pods' allocations
#       (2.9 KB of JSON, as benches/etcd_watchers.rs writes them) (default 1000)
#   -i  the idle window (default 65: two 30 s periods and some)
#   -w  Nodes registering after the idle window, in one `tortie apply` (default 200)
#   BIN tortie binaries to compare, one run each (default target/release/tortie)
# Per run, one line of key=value:
#   idle_bytes / idle_ranges   etcd's sent bytes (etcd_network_client_grpc_sent_bytes_total)
#                              and Range calls over the idle window, 15 s after the agent
#                              started
#   wave_bytes / wave_ranges   the same from the registrations' start to 10 s after them
#                              (the `tortie apply` client's own reads included)
#   hwm_mib / anon_mib         the agent's peak RSS (VmHWM) and its anonymous RSS at the end
# etcd and the agent run in a namespace of their own (tt-<pid>-reads); the agent is a node
# agent with BGP (the other nodes' addresses lead nowhere) and the load-balancer lease, as the
# only agent.
set -euo pipefail
cd "$(dirname "$0")/.."
N=1000; IDLE=65; WAVE=200
while getopts "n:i:w:h" opt; do
  case $opt in
    n) N=$OPTARG;; i) IDLE=$OPTARG;; w) WAVE=$OPTARG;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2;;
  esac
done
shift $((OPTIND - 1))
BINS=("$@")
if [[ ${#BINS[@]} -eq 0 ]]; then
  [[ -x target/release/tortie ]] || cargo build --release -q --bin tortie
  BINS=("$PWD/target/release/tortie")
fi
command -v etcd >/dev/null || { echo "etcd (etcd-server) is needed" >&2; exit 1; }

W=$(mktemp -d /tmp/datastore-reads.XXXXXX)
NS=tt-$$-reads; ETCD_PID=""; AGENT_PID=""
stop() {
  for p in "$AGENT_PID" "$ETCD_PID"; do [[ -n $p ]] && kill "$p" 2>/dev/null || true; done
  for p in "$AGENT_PID" "$ETCD_PID"; do [[ -n $p ]] && wait "$p" 2>/dev/null || true; done
  AGENT_PID=""; ETCD_PID=""
  ip netns del "$NS" 2>/dev/null || true
}
cleanup() { stop; rm -rf "$W"; }
trap cleanup EXIT

python3 - "$N" "$WAVE" "$W" <<'PY'
import ipaddress, json, sys
n, wave, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
head = "apiVersion: crd.tortie.io/v1\nkind: List\nitems:\n"
def node(name, addr):
    return f"- kind: Node\n  metadata: {{name: {name}}}\n  spec: {{bgp: {{ipv4Address: {addr}/32}}}}\n"
with open(f"{out}/store.yaml", "w") as f:
    f.write(head)
    f.write("- kind: Node\n  metadata: {name: n0}\n  spec: {bgp: {ipv4Address: 10.100.255.1/24}}\n")
    first = ipaddress.ip_address("10.101.0.1")
    for i in range(n):
        f.write(node(f"sim{i}", first + i))
        net = ipaddress.ip_network(f"{ipaddress.ip_address('10.0.0.0') + 64 * i}/26")
        attrs = [{"handle_id": f"k8s-pod-network.{i:04}{o:02}0123456789abcdef0123456789abcdef0123456789abcdef",
                  "secondary": {"namespace": "default", "node": f"sim{i}", "pod": f"web-{i}-{o}-7d9f8c6b5-x2k4q",
                                "timestamp": "2026-12-07 06:00:00.000000000 +0000 UTC"}} for o in range(10)]
        spec = {"cidr": str(net), "affinity": f"host:sim{i}", "allocations": list(range(10)) + [None] * 54,
                "unallocated": list(range(10, 64)), "attributes": attrs, "sequenceNumber": 10,
                "sequenceNumberForAllocation": {str(o): o for o in range(10)}, "deleted": False,
                "strictAffinity": False}
        name = str(net).replace(".", "-").replace("/", "-")
        f.write(f"- kind: IPAMBlock\n  metadata: {{name: {name}}}\n  spec: {json.dumps(spec)}\n")
with open(f"{out}/wave.yaml", "w") as f:
    f.write(head)
    first = ipaddress.ip_address("10.102.0.1")
    for i in range(wave):
        f.write(node(f"wave{i}", first + i))
PY

ETCD_URL=http://127.0.0.1:23790
metrics() {
  ip netns exec "$NS" curl -s "$ETCD_URL/metrics" | awk '
    /^etcd_network_client_grpc_sent_bytes_total/ {b = $2}
    /^grpc_server_handled_total.*grpc_method="Range"/ {r += $2}
    END {printf "%d %d\n", b, r}'
}

for bin in "${BINS[@]}"; do
  D=$W/run; rm -rf "$D"; mkdir -p "$D"
  ip netns add "$NS"
  ip -n "$NS" link set lo up
  ip -n "$NS" addr add 10.100.255.1/32 dev lo
  ip netns exec "$NS" etcd --name reads --data-dir "$D/etcd" \
    --listen-client-urls $ETCD_URL --advertise-client-urls $ETCD_URL \
    --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
    --initial-cluster reads=http://127.0.0.1:23800 >"$D/etcd.log" 2>&1 &
  ETCD_PID=$!
  for _ in $(seq 100); do ip netns exec "$NS" curl -sf $ETCD_URL/health >/dev/null && break; sleep 0.1; done
  cat >"$D/tortie.yaml" <<YAML
node: {name: n0, address: 10.100.255.1/24}
datastore: {type: etcd, etcd_endpoints: ["$ETCD_URL"]}
bgp: {as_number: 64512, router_id: 10.100.255.1, listen_address: 10.100.255.1}
dataplane: {install_learned_routes: false}
ipam: {default_ipv4_pool_cidr: 10.244.0.0/16, default_ipv4_ipip_mode: Never}
api: {socket: $D/tortie.sock}
metrics: {enabled: false}
log: {level: warn}
YAML
  ip netns exec "$NS" "$bin" apply -f "$W/store.yaml" --config "$D/tortie.yaml" >/dev/null
  ip netns exec "$NS" "$bin" node --config "$D/tortie.yaml" >"$D/agent.log" 2>&1 &
  AGENT_PID=$!
  sleep 15
  read -r b0 r0 < <(metrics)
  sleep "$IDLE"
  read -r b1 r1 < <(metrics)
  ip netns exec "$NS" "$bin" apply -f "$W/wave.yaml" --config "$D/tortie.yaml" >/dev/null
  sleep 10
  read -r b2 r2 < <(metrics)
  kill -0 "$AGENT_PID" 2>/dev/null || { echo "the agent ended early:" >&2; tail "$D/agent.log" >&2; exit 1; }
  mib() { awk -v k="$1:" '$1 == k {printf "%.1f", $2 / 1024}' "/proc/$AGENT_PID/status"; }
  echo "bin=$bin nodes=$N idle_s=$IDLE idle_bytes=$((b1 - b0)) idle_ranges=$((r1 - r0))" \
    "wave=$WAVE wave_bytes=$((b2 - b1)) wave_ranges=$((r2 - r1)) hwm_mib=$(mib VmHWM) anon_mib=$(mib RssAnon)"
  stop
done
