#!/usr/bin/env bash
# Builds tortie linked statically against glibc. The agent copies its own binary onto the host as
# the CNI plugin, and the host may run an older glibc than the image it was built in; a static
# binary runs there. (Name lookups through NSS still want the build's glibc at run time, which
# only the agent in its image does; the plugin talks to the agent over a unix socket.)
#   bash scripts/build-static.sh [--release] [OUT]     OUT defaults to target/static/tortie
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
if [ "${1:-}" = --release ]; then
  profile=(--release)
  shift
fi
out=$(realpath -m "${1:-target/static/tortie}")
mkdir -p "$(dirname "$out")"
# `cargo rustc` passes the flag to the final link only: the libraries are the ordinary build's.
cargo rustc --locked "${profile[@]}" --bin tortie -q -- -C target-feature=+crt-static --emit "link=$out"
echo "$out"
