#!/usr/bin/env bash
# format.sh - the C layout of .clang-format, over src/ cli/ include/ tests/
# and examples/.
#   scripts/format.sh --check   list the files that differ, and how many
#                               lines; exit 1 if any does (nothing is written)
#   scripts/format.sh --fix     rewrite them in place
#   scripts/format.sh --check FILE...   only those files
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
mode=${1:-}
case "$mode" in --check|--fix) shift ;; *)
    echo "usage: scripts/format.sh --check|--fix [FILE...]" >&2; exit 2 ;; esac
CF=${CLANG_FORMAT:-clang-format}
command -v "$CF" >/dev/null ||
    { echo "format.sh: $CF is missing (scripts/deps.sh clang-format)" >&2; exit 2; }

if [ $# -gt 0 ]; then
    files=("$@")
else
    mapfile -t files < <(find src cli include tests examples -name '*.[ch]' | sort)
fi

if [ "$mode" = --fix ]; then
    "$CF" -i --style=file "${files[@]}"
    exit 0
fi
bad=0 lines=0
for f in "${files[@]}"; do
    n=$("$CF" --style=file "$f" | diff "$f" - | grep -c '^<' || true)
    if [ "$n" -gt 0 ]; then
        echo "$f: $n lines differ from .clang-format"
        bad=$((bad + 1)) lines=$((lines + n))
    fi
done
if [ $bad -gt 0 ]; then
    echo "format.sh: $bad of ${#files[@]} files, $lines lines; scripts/format.sh --fix rewrites them" >&2
    exit 1
fi
echo "format.sh: ${#files[@]} files follow .clang-format"
