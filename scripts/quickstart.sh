#!/usr/bin/env bash
# The quick start: install what is needed, build tortie, run an agent in a
# network namespace of its own, show `tortie status`, and clean up.
# Run as root on Debian 12: `bash scripts/quickstart.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/setup
cargo build --release
bin=$PWD/target/release/tortie

ns="tt-quickstart-$$"
work=$(mktemp -d)
agent_pid=
cleanup() {
  [ -n "$agent_pid" ] && kill -TERM "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$ns"
ip -n "$ns" link set lo up
cat > "$work/node.yaml" <<YAML
node: {name: quickstart-node}
api: {socket: $work/tortie.sock}
metrics: {enabled: false}
YAML
"$bin" config check "$work/node.yaml"
ip netns exec "$ns" "$bin" node --config "$work/node.yaml" &
agent_pid=$!

for _ in $(seq 1 100); do
  [ -S "$work/tortie.sock" ] && break
  sleep 0.1
done
echo
echo "\$ tortie status"
"$bin" status --socket "$work/tortie.sock"
echo
echo "\$ tortie status -o json"
"$bin" status --socket "$work/tortie.sock" -o json
