#!/usr/bin/env bash
# Network policy on a real data path, on a three-node tortie lab (one subnet, BGP, no
# encapsulation) in namespaces of its own, taken down on exit.
#
# (1) Change -> enforced latency on every node: CHANGES (200; 0 skips this) changes, alternately
#     `tortie apply` and `tortie delete` of one Kubernetes policy denying ingress to the pods
#     labelled role=server (one per node, in namespace bench). Probes c1 -> s2, c2 -> s3 and
#     c3 -> s1 (each node enforces one) start a TCP connect every 5 ms on 8 threads, 40 ms
#     timeout (examples/policy_probe.rs); a flip is timed from just before `tortie apply|delete`
#     is spawned to the first attempt with the new verdict after the last with the old one.
#     Per node and for the slowest node of each change (enforced on every node): p50, p99, max.
#     LATENCY_POLICIES (0) of the generated policies (without the three that allow the measured
#     pair) are loaded during these changes.
# (2) The data path with POLICIES generated policies loaded against none, for each count given
#     as an argument (default 1000): iperf3 TCP c1 (node1) -> s2 (node2), IPERF_SECONDS (5) s,
#     and new TCP connections per second (connect, then close with an RST, CPS_SECONDS (5) s),
#     REPS (3; 0 skips this) rounds of [none, loaded], the policies applied and deleted between
#     them; each state measured once the policies are programmed and the agents idle (what an
#     agent defers after a write, the table read back and its fingerprint, is the cost of
#     programming, printed as idle_s and idle_cpu_s, not the steady state). The policies are
#     world.rs's kinds (benches/policy_scale/world.rs: 60 % Kubernetes, 30 % Calico namespaced,
#     10 % global, pod and namespace selectors, ports, ranges, named ports, nets) over
#     namespaces ns-0..ns-99; they select the FILLER (6) pods per node on node1 and node2
#     (ns-J, app-J, tier web/api/db), not the measured pair, except three that allow it (a
#     Kubernetes ingress policy on s2, a Calico egress policy on c1, a global one ordered first).
#     Each state is measured twice: with the agents running, and with the three agents (and
#     any `nft` they run) stopped by SIGSTOP: the rules in the kernel alone, without the
#     agents' work in the steady state (reading the counters, a netlink dump, every 5 s).
#     The agents' CPU seconds (with their children's) during each measurement are printed.
# Needs iperf3 (.ci/setup installs it). Builds and runs `target/debug/tortie` and the probes
# (PROFILE=release for the release build).
# Usage (root): [PROFILE=dev] [CHANGES=200] [REPS=3] [LATENCY_POLICIES=0] bash bench/policy_datapath.sh [POLICIES ...]
# Output: key=value lines (`policy_latency ...`, `policy_datapath ...`), then the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=("$@"); [[ ${#COUNTS[@]} -gt 0 ]] || COUNTS=(1000)
CHANGES=${CHANGES:-200} REPS=${REPS:-3} FILLER=${FILLER:-6} LATENCY_POLICIES=${LATENCY_POLICIES:-0}
IPERF_SECONDS=${IPERF_SECONDS:-5} CPS_SECONDS=${CPS_SECONDS:-5}
command -v iperf3 >/dev/null || { echo "policy_datapath: iperf3 is missing (.ci/setup installs it)" >&2; exit 1; }
PROFILE=${PROFILE:-dev} dir=debug; [[ $PROFILE == dev ]] || dir=$PROFILE
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build -q --profile "$PROFILE" --bin tortie --example policy_probe
BIN=$PWD/target/$dir/tortie PROBE=$PWD/target/$dir/examples/policy_probe
work=$(mktemp -d) lab=tpd$$ pids=()
cleanup() {
  agents CONT 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  "$BIN" lab down "$work/pd.clab.yml" --name "$lab" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- the lab -------------------------------------------------------------------------------
mkdir -p "$work/pd"
cat > "$work/pd/node.yaml" <<'EOF'
node:
  address_autodetection: interface=eth1
bgp:
  as_number: 64512
ipam:
  default_ipv4_pool_cidr: 10.246.0.0/16
EOF
tiers=(web api db)
pods_of() { # node number -> TORTIE_LAB_PODS entries
  local n=$1 j e="c$1,namespace=bench,label=role=client s$1,namespace=bench,label=role=server"
  if [[ $n -le 2 ]]; then
    for k in $(seq 0 $((FILLER - 1))); do
      j=$(( (n - 1) * FILLER + k ))
      e+=" f$j,namespace=ns-$j,label=app=app-$((j % 20)),label=tier=${tiers[j % 3]},port=http:tcp:$((8080 + j % 2))"
    done
  fi
  echo "$e"
}
{
  echo "name: pd"
  echo "topology:"
  echo "  kinds:"
  echo "    linux: {image: tortie:latest, binds: [pd/node.yaml:/etc/tortie/tortie.yaml]}"
  echo "  nodes:"
  echo "    lan: {kind: bridge}"
  for i in 1 2 3; do
    echo "    node$i: {kind: linux, env: {TORTIE_LAB_PODS: \"$(pods_of $i)\"}, exec: [ip addr add 10.16.0.1$i/24 dev eth1]}"
  done
  echo "  links:"
  for i in 1 2 3; do echo "    - endpoints: [node$i:eth1, lan:node$i]"; done
} > "$work/pd.clab.yml"
"$BIN" lab up "$work/pd.clab.yml" --name "$lab" >/dev/null
export TORTIE_DATASTORE_SQLITE_PATH=$work/clab-$lab/tortie.db
pod_ns() { echo "clab-$lab-node$1-$2"; }
ip_of() {
  ip -n "$(pod_ns "$1" "$2")" -j -4 addr show dev eth0 scope global |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["addr_info"][0]["local"])'
}
declare -A IP=()
for i in 1 2 3; do IP[s$i]=$(ip_of $i s$i); IP[c$i]=$(ip_of $i c$i); done
for i in 1 2 3; do ip netns exec "$(pod_ns $i s$i)" "$PROBE" serve --port 80 & pids+=($!); done
ip netns exec "$(pod_ns 2 s2)" iperf3 -s -p 5201 >/dev/null 2>&1 & pids+=($!)
# Every probe pair reaches its server before anything is measured.
reach() { ip netns exec "$(pod_ns "$1" "$2")" "$PROBE" cps --to "$3:80" --seconds 0.05 | grep -qv 'connections=0 '; }
for pair in "1 c1 ${IP[s2]}" "2 c2 ${IP[s3]}" "3 c3 ${IP[s1]}"; do
  for _ in $(seq 600); do reach $pair && break; sleep 0.1; done
  reach $pair || { echo "policy_datapath: $pair never reachable" >&2; exit 1; }
done

# --- generated policies ----------------------------------------------------------------------
gen_policies() { # count file [pair]: with "pair", also the three that allow the measured pair
  python3 - "$1" "${3:-}" > "$2" <<'PY'
import json, sys
n = int(sys.argv[1]); pair = sys.argv[2] == "pair"; API = "crd.tortie.io/v1"
kube, calico = n * 6 // 10, n * 3 // 10
TIERS, ENVS, TEAMS = ["web", "api", "db"], ["prod", "dev", "stage"], 20
ns = lambda i: f"ns-{i % 100}"
app = lambda i: f"app-{i % 20}"
docs = [{"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": ns(i), "labels": {"team": f"t{i % TEAMS}", "env": ENVS[i % 3]}}} for i in range(100)]
for i in range(n):
    if i < kube:
        spec = {"podSelector": {"matchLabels": {"app": app(i)}},
                "policyTypes": ["Ingress", "Egress"] if i % 3 == 0 else ["Ingress"],
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {"tier": "web"}}}],
                     "ports": [{"port": 80, "protocol": "TCP"}, {"port": "http"}]},
                    {"from": [{"namespaceSelector": {"matchLabels": {"team": f"t{i % TEAMS}"}},
                               "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["api", "web"]}]}}],
                     "ports": [{"port": 8000, "endPort": 8100, "protocol": "TCP"}]},
                    {"from": [{"ipBlock": {"cidr": f"172.{16 + i % 16}.0.0/16", "except": [f"172.{16 + i % 16}.1.0/24"]}}]}],
                "egress": [
                    {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.255.0.0/16"]}}],
                     "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                    {"to": [{"podSelector": {"matchLabels": {"tier": "db"}}}], "ports": [{"port": 5432}]}]}
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": f"knp-{i}", "namespace": ns(i)}, "spec": spec})
    elif i < kube + calico:
        spec = {"order": float(i % 50), "selector": f"app == '{app(i)}' && tier in {{'api', 'db'}}",
                "types": ["Ingress", "Egress"],
                "ingress": [
                    {"action": "Deny", "source": {"nets": [f"192.168.{i % 256}.0/24"]}},
                    {"action": "Allow", "protocol": "TCP",
                     "source": {"selector": "tier == 'web'", "namespaceSelector": f"env == '{ENVS[i % 3]}'"},
                     "destination": {"ports": ["443", "9000:9100"]}},
                    {"action": "Log", "protocol": "TCP", "source": {"selector": "has(app) && tier != 'db'"}},
                    {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http"]}}],
                "egress": [
                    {"action": "Allow", "protocol": "UDP", "destination": {"ports": ["53"]}},
                    {"action": "Allow", "destination": {"selector": f"app == '{app(i + 1)}'"}},
                    {"action": "Deny", "destination": {"notNets": ["10.0.0.0/8"]}}]}
        docs.append({"apiVersion": API, "kind": "NetworkPolicy",
                     "metadata": {"name": f"cnp-{i}", "namespace": ns(i)}, "spec": spec})
    else:
        spec = {"order": float(i % 100),
                "selector": f"tier == '{TIERS[i % 3]}' && app in {{'{app(i)}', '{app(i + 7)}'}}",
                "namespaceSelector": f"team == 't{i % TEAMS}' || env == 'prod'",
                "types": ["Ingress"],
                "ingress": [
                    {"action": "Pass", "source": {"namespaceSelector": "env == 'prod'", "selector": "tier == 'web'"}},
                    {"action": "Deny", "protocol": "TCP", "source": {"nets": ["0.0.0.0/0"], "notNets": ["10.0.0.0/8"]}},
                    {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}}]}
        docs.append({"apiVersion": API, "kind": "GlobalNetworkPolicy", "metadata": {"name": f"gnp-{i}"}, "spec": spec})
if n and pair:
    # The three that apply to the measured pair, and allow it.
    docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "server-from-client", "namespace": "bench"},
                 "spec": {"podSelector": {"matchLabels": {"role": "server"}},
                          "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                                       "ports": [{"port": 80}, {"port": 5201}]}]}})
    docs.append({"apiVersion": API, "kind": "NetworkPolicy", "metadata": {"name": "client-egress", "namespace": "bench"},
                 "spec": {"selector": "role == 'client'", "types": ["Egress"],
                          "egress": [{"action": "Allow", "protocol": "TCP", "destination": {"selector": "role == 'server'"}}]}})
    docs.append({"apiVersion": API, "kind": "GlobalNetworkPolicy", "metadata": {"name": "bench-first"},
                 "spec": {"order": 0.0, "selector": "role == 'server'", "types": ["Ingress"],
                          "ingress": [{"action": "Pass", "source": {"selector": "role == 'client'"}}]}})
print("".join(f"---\n{json.dumps(d)}\n" for d in docs))
PY
}
# The number of rules in a node's tortie table.
rules() { ip netns exec "clab-$lab-node$1" nft -j list table inet tortie 2>/dev/null |
  python3 -c 'import json,sys; print(sum("rule" in o for o in json.load(sys.stdin)["nftables"]))' 2>/dev/null || echo 0; }
# Waits until nodes 1 and 2 have programmed `want` policies: each agent's last `policy changed`
# log line says `policies=<want>`, neither runs an `nft -f` write, and their rule counts stayed
# the same over two polls; prints seconds.
settle() { # want
  local start last="" now same=0 ok n p
  start=$(date +%s.%N)
  for _ in $(seq 1200); do
    ok=1
    for n in 1 2; do
      p=$(<"$work/clab-$lab/node$n/process-0.pid")
      [[ $(grep -o 'policy changed.* policies=[0-9]*' "$work/clab-$lab/node$n/process-0.log" | tail -n1) == *" policies=$1" ]] || ok=0
      pgrep -P "$p" -f 'nft .*-f -' >/dev/null && ok=0
    done
    now="$(rules 1) $(rules 2)"
    if [[ $ok == 1 && "$now" == "$last" ]]; then same=$((same + 1)); else same=0; fi
    last=$now
    [[ $same -ge 2 ]] && break
    sleep 0.5
  done
  python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')"
}
# Stops (STOP) or resumes (CONT) the three agents and the `nft` runs they have under way.
agents() {
  local f p
  for f in "$work/clab-$lab"/node{1,2,3}/process-0.pid; do
    p=$(<"$f")
    kill -"$1" "$p" $(pgrep -P "$p" -x nft) 2>/dev/null || true
  done
}
load() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' /; }
echo "policy_datapath commit=$(git rev-parse --short HEAD) build=$PROFILE date=$(date -u +%FT%TZ) nproc=$(nproc)"

# --- (1) change -> enforced ------------------------------------------------------------------
out=$work/out.txt
if [[ $CHANGES -gt 0 ]]; then
if [[ $LATENCY_POLICIES -gt 0 ]]; then
  # Without the three that allow the measured pair: the deny below must flip it.
  gen_policies "$LATENCY_POLICIES" "$work/bg.yaml"; "$BIN" apply -f "$work/bg.yaml" >/dev/null
  settle "$LATENCY_POLICIES" >/dev/null
fi
cat > "$work/deny.yaml" <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-servers, namespace: bench}
spec: {podSelector: {matchLabels: {role: server}}, policyTypes: [Ingress]}
EOF
load_before=$(load)
"$PROBE" flips --tortie "$BIN" --policy "$work/deny.yaml" --changes "$CHANGES" \
  --probe "node2,$(pod_ns 1 c1),${IP[s2]}:80" --probe "node3,$(pod_ns 2 c2),${IP[s3]}:80" \
  --probe "node1,$(pod_ns 3 c3),${IP[s1]}:80" > "$work/flips.txt"
echo "policy_latency changes=$CHANGES background_policies=$LATENCY_POLICIES load=$load_before..$(load)" | tee -a "$out"
python3 - "$work/flips.txt" <<'PY' | tee -a "$out"
import re, sys, collections
by = collections.defaultdict(list); worst = collections.defaultdict(float); cmd = []; verb = {}
for l in open(sys.argv[1]):
    kv = dict(re.findall(r'(\w+)=(\S+)', l))
    if l.startswith("flip"):
        by[kv["probe"]].append(float(kv["ms"])); worst[kv["change"]] = max(worst[kv["change"]], float(kv["ms"]))
        verb[kv["change"]] = kv["verb"]
    else:
        cmd.append(float(kv["ms"]))
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
rows = sorted(by.items()) + [("every_node", list(worst.values()))]
rows += [(f"every_node verb={v}", [w for c, w in worst.items() if verb[c] == v]) for v in ("apply", "delete")]
for name, xs in rows + [("command", cmd)]:
    print(f"policy_latency at={name} n={len(xs)} p50_ms={pct(xs, 50):.1f} p99_ms={pct(xs, 99):.1f} max_ms={max(xs):.1f}")
PY
if [[ $LATENCY_POLICIES -gt 0 ]]; then "$BIN" delete -f "$work/bg.yaml" >/dev/null; settle 0 >/dev/null; fi
fi
[[ $REPS -gt 0 ]] || exit 0

# --- (2) data path ---------------------------------------------------------------------------
# CPU seconds of the three agents and their finished children (their `nft` runs).
agents_cpu() {
  local f
  for f in "$work/clab-$lab"/node{1,2,3}/process-0.pid; do echo "$(<"$f")"; done | python3 -c '
import os, sys
hz, t = os.sysconf("SC_CLK_TCK"), 0
for p in sys.stdin.read().split():
    f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
    t += sum(int(x) for x in f[11:15]) / hz
print(f"{t:.2f}")'
}
# Waits until the three agents are idle (under 0.05 CPU-seconds a second over the last 5 s, at
# most 60 s): the work an agent defers after a write (the table read back once no write came
# for four times as long as the last reading took, then its fingerprint saved) is the cost of
# programming, not of the steady state the data path is measured in; the steady state's own
# work (the counters read every 5 s) stays under that rate. Prints the seconds and the agents'
# CPU seconds until then.
idle() {
  local start first c n
  local -a seen
  start=$(date +%s.%N); first=$(agents_cpu); c=$first; seen=("$first")
  for _ in $(seq 60); do
    sleep 1; c=$(agents_cpu); seen+=("$c"); n=${#seen[@]}
    [[ $n -gt 5 ]] && python3 -c "import sys; sys.exit(0 if ${seen[n-1]} - ${seen[n-6]} < 0.25 else 1)" && break
  done
  python3 -c "print(f'{$(date +%s.%N) - $start:.1f} idle_cpu_s={$c - $first:.2f}')"
}
measure() { # label count round
  local g c cpu0
  cpu0=$(agents_cpu)
  g=$(ip netns exec "$(pod_ns 1 c1)" iperf3 -c "${IP[s2]}" -p 5201 -t "$IPERF_SECONDS" -J |
    python3 -c 'import json,sys; j = json.load(sys.stdin); print("%.3f" % (j["end"]["sum_received"]["bits_per_second"] / 1e9))')
  c=$(ip netns exec "$(pod_ns 1 c1)" "$PROBE" cps --to "${IP[s2]}:80" --seconds "$CPS_SECONDS" | sed 's/^cps //')
  echo "policy_datapath state=$1 policies=$2 round=$3 gbps=$g $c agents_cpu_s=$(python3 -c "print(f'{$(agents_cpu) - $cpu0:.2f}')") rules_node1=$(rules 1) rules_node2=$(rules 2) load=$(load)" | tee -a "$out"
}
for n in "${COUNTS[@]}"; do
  gen_policies "$n" "$work/p$n.yaml" pair
  for r in $(seq 1 "$REPS"); do
    measure none "$n" "$r"
    agents STOP; measure none-agents-stopped "$n" "$r"; agents CONT
    t0=$(date +%s.%N); "$BIN" apply -f "$work/p$n.yaml" >/dev/null
    apply_s=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')")
    echo "policy_datapath event=applied policies=$n round=$r apply_s=$apply_s programmed_s=$(settle $((n + 3))) idle_s=$(idle)" | tee -a "$out"
    measure loaded "$n" "$r"
    agents STOP; measure loaded-agents-stopped "$n" "$r"; agents CONT
    "$BIN" delete -f "$work/p$n.yaml" >/dev/null
    echo "policy_datapath event=deleted policies=$n round=$r programmed_s=$(settle 0) idle_s=$(idle)" | tee -a "$out"
  done
done
echo
python3 - "$out" <<'PY'
import re, sys, statistics, collections
med = statistics.median
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    if l.startswith("policy_datapath state="):
        kv = dict(re.findall(r'(\w+)=(\S+)', l)); d[(kv["policies"], kv["state"])].append(kv)
# Ratios of the medians, and the median (lowest-highest) of each round's own ratio: the two
# states of one round are measured within a minute of each other, so a round's ratio is
# spared the machine's slower drifts between rounds.
print("| policies | agents | rounds | Gbit/s none | Gbit/s loaded | ratio | per round | conn/s none | conn/s loaded | ratio | per round | agents' CPU s none / loaded | rules node1/node2 loaded |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for n in sorted({k[0] for k in d}, key=int):
    for agents, suffix in (("running", ""), ("stopped", "-agents-stopped")):
        a, b = d[(n, "none" + suffix)], d[(n, "loaded" + suffix)]
        g = lambda ks, k: med(float(x[k]) for x in ks)
        def rounds(k):
            by_round = {x["round"]: float(x[k]) for x in a}
            r = sorted(float(y[k]) / by_round[y["round"]] for y in b if y["round"] in by_round)
            return f"{med(r):.3f} ({r[0]:.2f}-{r[-1]:.2f})" if r else "-"
        print(f"| {n} | {agents} | {len(a)} | {g(a,'gbps'):.2f} | {g(b,'gbps'):.2f} | {g(b,'gbps')/g(a,'gbps'):.3f} | {rounds('gbps')} "
              f"| {g(a,'per_second'):.0f} | {g(b,'per_second'):.0f} | {g(b,'per_second')/g(a,'per_second'):.3f} | {rounds('per_second')} "
              f"| {g(a,'agents_cpu_s'):.1f} / {g(b,'agents_cpu_s'):.1f} | {b[-1]['rules_node1']}/{b[-1]['rules_node2']} |")
PY
