#!/usr/bin/env bash
# lint.sh - clang-tidy (.clang-tidy) and cppcheck over src/, cli/, include/.
# Uses compile_commands.json from its own build dir (build-lint); exits
# non-zero on any finding. See docs/security.md, "Static analysis".
#   scripts/lint.sh            both tools
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
for t in clang-tidy cppcheck; do
    command -v $t >/dev/null || { echo "lint.sh: $t is missing (scripts/deps.sh clang-tidy cppcheck)" >&2; exit 1; }
done
B=$ROOT/build-lint
cmake -S "$ROOT" -B "$B" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DSKIPQ_TESTS=OFF >/dev/null
# sql_embed.c is generated; build it so every translation unit exists
cmake --build "$B" --target skipq_obj -j2 -- --no-print-directory >/dev/null
files=$(ls src/*.c cli/*.c)
status=0
echo "lint.sh: clang-tidy on $(echo "$files" | wc -w) files"
# -j2 at most: the machine is shared
echo "$files" | xargs -P2 -n4 clang-tidy -p "$B" --quiet --extra-arg=-Wno-unknown-warning-option 2>/dev/null >"$B/tidy.log" || status=1
grep -E "(warning|error):" "$B/tidy.log" && status=1
echo "lint.sh: cppcheck"
cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability,performance \
    --inline-suppr --suppress=missingIncludeSystem --suppress=normalCheckLevelMaxBranches \
    -j2 -I include -I src -D__GNUC__ -DSKIPQ_FAILPOINTS=0 \
    src cli include 2>&1 | tee "$B/cppcheck.log" || status=1
[ -s "$B/cppcheck.log" ] && status=1
[ $status -eq 0 ] && echo "lint.sh: clean"
exit $status
