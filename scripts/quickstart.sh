#!/usr/bin/env bash
# The quick start: install what is needed, build tortie, bring up the
# three-node lab (containerlab/quickstart.clab.yml) in network namespaces,
# show each node's `tortie status` (a BGP full mesh built from the shared
# datastore) and the nodes reaching each other, then
# take the lab down (KEEP=1 leaves it up).
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
echo
echo "\$ tortie lab exec $topo node1 -- ping -c 3 10.10.0.13"
"$bin" lab exec "$topo" node1 -- ping -c 3 10.10.0.13
echo
echo "\$ tortie lab exec $topo node2 -- tortie status -o json"
"$bin" lab exec "$topo" node2 -- "$bin" status -o json
if [ "${KEEP:-0}" = 1 ]; then
  echo "The lab is up. Take it down with: $bin lab down $topo"
fi
