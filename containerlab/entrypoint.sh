#!/bin/sh
# The tortie image's entrypoint under containerlab: wait for the node's
# underlay address (containerlab's `exec` adds it after the container
# starts), run the agent, then make the pods TORTIE_LAB_PODS names — what
# `tortie lab up` does for the same topology file without Docker.
set -eu
config=${TORTIE_CONFIG:-/etc/tortie/tortie.yaml}
iface=${TORTIE_LAB_INTERFACE:-eth1}
for _ in $(seq 1 300); do
  ip -4 -o addr show dev "$iface" 2>/dev/null | grep -q inet && break
  sleep 0.1
done
tortie node --config "$config" &
agent=$!
for pod in ${TORTIE_LAB_PODS:-}; do
  tortie lab pod add "$pod" >/dev/null || echo "pod $pod: not created" >&2
done
trap 'kill -TERM $agent' TERM INT
wait $agent
