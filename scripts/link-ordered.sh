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
set -euo pipefail
here=$(dirname "$(realpath "$0")")
out=""
prev=""
for arg in "$@"; do
  [[ $prev == -o ]] && out=$arg
  prev=$arg
done
list=$here/hot-functions.txt
case $(basename "$out") in
  tortie | tortie-[0-9a-f]*) [[ -s $list ]] || exec cc "$@" ;;
  *) exec cc "$@" ;;
esac
cc "$@"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Defined functions, mangled, and the same demangled without crate hashes, tab between.
nm --defined-only "$out" | awk '$2 ~ /^[tTwW]$/ {print $3}' | sort -u >"$work/mangled"
c++filt -s rust <"$work/mangled" | sed -E 's/\[[0-9a-f]+\]//g' >"$work/names"
paste "$work/names" "$work/mangled" >"$work/table"
# The listed functions' symbols, in the list's order.
awk -F '\t' 'NR == FNR { if (!($0 in rank)) rank[$0] = FNR; next }
             ($1 in rank) { print rank[$1] "\t" $2 }' "$list" "$work/table" |
  sort -n -s -k1,1 | cut -f2 >"$work/order"
if [[ ! -s $work/order ]]; then
  exit 0
fi
cc "$@" -Wl,--symbol-ordering-file="$work/order" -Wl,--no-warn-symbol-ordering
