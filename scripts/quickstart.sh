#!/usr/bin/env bash
# The quick start: install what is needed, build tortie, bring up the
# three-node lab (containerlab/quickstart.clab.yml) in network namespaces
# with a pod on each node (addresses from tortie's IPAM through its CNI
# plugin), show each node's `tortie status` (a BGP full mesh built from the
# shared datastore), the pods pinging each other across nodes over routes
# learned with BGP, then take the lab down (KEEP=1 leaves it up).
# Run as root on Debian 12: `bash scripts/quickstart.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/setup
cargo build --release ${QUICKSTART_CARGO_FLAGS:-}
bin=$PWD/target/release/tortie
topo=containerlab/quickstart.clab.yml

if [ "${KEEP:-0}" != 1 ]; then
  trap '"$bin" lab down "$topo" >/dev/null 2>&1 || true' EXIT
fi
"$bin" lab up "$topo"

for node in node1 node2 node3; do
  # `tortie status` exits 0 once the node is ready: its BGP mesh is established.
  for _ in $(seq 1 300); do
    "$bin" lab exec "$topo" "$node" -- "$bin" status >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo
  echo "\$ tortie lab exec $topo $node -- tortie status"
  "$bin" lab exec "$topo" "$node" -- "$bin" status
done
pod_ip() { "$bin" lab exec "$topo" "$1" -- "$bin" lab pod exec pod1 -- ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1; }
for pair in "node1 node2" "node2 node3" "node3 node1"; do
  set -- $pair
  dst=$(pod_ip "$2")
  # Routes learned a moment ago: wait for the first answer, then show three.
  for _ in $(seq 1 50); do
    "$bin" lab exec "$topo" "$1" -- "$bin" lab pod exec pod1 -- ping -c 1 -W 1 "$dst" >/dev/null 2>&1 && break
  done
  echo
  echo "\$ tortie lab exec $topo $1 -- tortie lab pod exec pod1 -- ping -c 3 $dst    # $1/pod1 -> $2/pod1"
  "$bin" lab exec "$topo" "$1" -- "$bin" lab pod exec pod1 -- ping -c 3 "$dst"
done
echo
echo "\$ tortie lab exec $topo node1 -- tortie bgp routes"
"$bin" lab exec "$topo" node1 -- "$bin" bgp routes
echo
echo "\$ tortie lab exec $topo node1 -- ip route show proto 116"
"$bin" lab exec "$topo" node1 -- ip route show proto 116
echo
echo "\$ tortie lab exec $topo node2 -- tortie status -o json"
"$bin" lab exec "$topo" node2 -- "$bin" status -o json
if [ "${KEEP:-0}" = 1 ]; then
  echo "The lab is up. Take it down with: $bin lab down $topo"
fi
