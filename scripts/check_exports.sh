#!/usr/bin/env bash
# check_exports.sh - the exported symbols of libskipq.so are exactly the
# functions the public headers declare, and libskipq.map lists each of
# them (docs/abi.md). Run by tests/unit/test_abi.c; also by hand:
#   scripts/check_exports.sh build/libskipq.so
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
so=${1:?usage: scripts/check_exports.sh path/to/libskipq.so}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Declared: every skipq_ name directly followed by "(" once the headers
# are preprocessed (comments and macros gone), but for the function
# pointer types, "(*skipq_..._fn)(".
cc=${CC:-cc}
printf '#include "skipq_json.h"\n' |
    "$cc" -E -P -I "$ROOT/include" $(pkg-config --cflags json-c) -x c - |
    grep -oE '(\(\*)?skipq_[a-z0-9_]+\(' | grep -v '^(\*' |
    tr -d '(' | sort -u >"$tmp/declared"
# Listed: one name per line in the version nodes of the map.
grep -oE '^[[:space:]]+skipq_[a-z0-9_]+;' "$ROOT/libskipq.map" |
    tr -d ' \t;' | sort >"$tmp/listed"
# Exported: what the library defines for others to link (the version
# node itself shows as an absolute symbol, type A).
nm -D --defined-only "$so" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' |
    sort -u >"$tmp/exported"

status=0
if [ "$(uniq -d "$tmp/listed")" ]; then
    echo "listed twice in libskipq.map: $(uniq -d "$tmp/listed" | tr '\n' ' ')"; status=1
fi
sort -u -o "$tmp/listed" "$tmp/listed"
report() { # report FILE MESSAGE
    if [ -s "$1" ]; then echo "$2: $(tr '\n' ' ' <"$1")"; status=1; fi
}
comm -23 "$tmp/declared" "$tmp/listed" >"$tmp/a"; report "$tmp/a" "declared but not in libskipq.map"
comm -13 "$tmp/declared" "$tmp/listed" >"$tmp/b"; report "$tmp/b" "in libskipq.map but declared nowhere"
comm -13 "$tmp/listed" "$tmp/exported" >"$tmp/c"; report "$tmp/c" "exported but not in libskipq.map"
comm -23 "$tmp/listed" "$tmp/exported" >"$tmp/d"; report "$tmp/d" "in libskipq.map but not exported"
[ $status -eq 0 ] && echo "check_exports.sh: $(wc -l <"$tmp/listed") symbols, headers, map and library agree"
exit $status
