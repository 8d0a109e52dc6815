#!/usr/bin/env bash
# The linker driver rustc runs (.cargo/config.toml). Every link is `cc` with rustc's arguments;
# a link of the tortie binary is then done again with the functions named in
# scripts/hot-functions.txt placed first, in that order, in the text.
#
# Why: the kernel maps a first touch of the executable together with the pages around it, so
# code spread over the whole text makes most of it resident. An agent runs a few MB of its text;
# placed together, those are the pages it keeps resident (docs/scale.md, "The binary's pages").
#
# The list names functions demangled, without crate hashes; they are matched here against the
# first link's symbols (nm, c++filt) and given to the linker (lld: --symbol-ordering-file).
# Names the build no longer has are skipped. scripts/hot-functions.sh makes the list.
#
# The ordering only ever improves a binary that is already linked: when the first link was not
# lld's (rustc older than 1.90, or another linker chosen), when a tool is missing or the
# ordered link fails, the first link's binary stays, with a warning. v0 symbol names come from
# `build.rustflags` in .cargo/config.toml, which RUSTFLAGS in the environment replaces.
set -euo pipefail
here=$(dirname "$(realpath "$0")")
list=$here/hot-functions.txt
out=""
prev=""
for arg in "$@"; do
  [[ $prev == -o ]] && out=$arg
  prev=$arg
done
case $(basename "$out") in
  tortie | tortie-[0-9a-f]*) [[ -s $list ]] || exec cc "$@" ;;
  *) exec cc "$@" ;;
esac
cc "$@"

skip() {
  echo "link-ordered.sh: $1; $out is linked without the hot-function order" >&2
  exit 0
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
readelf -p .comment "$out" 2>/dev/null | grep -q 'Linker: LLD' || skip "the linker is not lld"
# Defined functions, mangled, and the same demangled without crate hashes, tab between.
nm --defined-only "$out" >"$work/nm" || skip "nm failed"
awk '$2 ~ /^[tTwW]$/ {print $3}' "$work/nm" | sort -u >"$work/mangled"
c++filt -s rust <"$work/mangled" >"$work/demangled" || skip "c++filt failed"
sed -E 's/\[[0-9a-f]+\]//g' "$work/demangled" >"$work/names"
paste "$work/names" "$work/mangled" >"$work/table"
# The listed functions' symbols, in the list's order.
awk -F '\t' 'NR == FNR { if (!($0 in rank)) rank[$0] = FNR; next }
             ($1 in rank) { print rank[$1] "\t" $2 }' "$list" "$work/table" |
  sort -n -s -k1,1 | cut -f2 >"$work/order" || skip "matching the list failed"
[[ -s $work/order ]] || skip "no function of the list is in it"
# The ordered link goes to a file of its own: the first link's output stays until it succeeds.
args=()
prev=""
for arg in "$@"; do
  if [[ $prev == -o ]]; then args+=("$work/ordered"); else args+=("$arg"); fi
  prev=$arg
done
cc "${args[@]}" -Wl,--symbol-ordering-file -Wl,"$work/order" -Wl,--no-warn-symbol-ordering ||
  skip "the ordered link failed"
mv -f "$work/ordered" "$out"
