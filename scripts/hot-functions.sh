#!/usr/bin/env bash
# Writes scripts/hot-functions.txt: the functions of the tortie binary that run while it is a
# route reflector for N simulated nodes (bench/rr_scale.sh -d tortie N under callgrind),
# demangled without crate hashes, sorted. scripts/link-ordered.sh places them first in the text.
# Run as root after changes that move the work (new tasks, new paths on the session or RIB);
# a stale list costs resident memory, never correctness.
#   bash scripts/hot-functions.sh [N]      N simulated nodes, default 30
# Needs valgrind (callgrind) and binutils (nm, c++filt).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-30}
cargo build --release --locked -q --bin tortie --example cluster_sim
release=$(realpath "${CARGO_TARGET_DIR:-target}")/release
work=$(mktemp -d /tmp/hot-functions.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat >"$work/tortie" <<WRAP
#!/usr/bin/env bash
# The reflectors run under callgrind; every other tortie command as it is.
if [[ \$1 == node ]]; then
  exec valgrind --tool=callgrind --demangle=no --compress-strings=no --dump-instr=no \
    --callgrind-out-file="$work/callgrind.%p" "$release/tortie" "\$@"
fi
exec "$release/tortie" "\$@"
WRAP
chmod +x "$work/tortie"
DEADLINE_S=600 TORTIE_BIN="$work/tortie" SIM_BIN="$release/examples/cluster_sim" bash bench/rr_scale.sh -d tortie -p "" -r "$work/results" "$n" >&2
# Every function callgrind saw run or called, by its symbol (entries by address are not symbols).
sed -n 's/^c\{0,1\}fn=//p' "$work"/callgrind.* | grep -v '^0x' | sort -u |
  c++filt -s rust | sed -E 's/\[[0-9a-f]+\]//g' | LC_ALL=C sort -u >scripts/hot-functions.txt
wc -l scripts/hot-functions.txt
