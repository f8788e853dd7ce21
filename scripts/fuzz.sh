#!/usr/bin/env bash
# fuzz.sh - build the libFuzzer targets (clang) and run each one for a
# bounded time from its seed corpus. CI runs it with 20 s per target.
#   scripts/fuzz.sh [SECONDS]      default 20
# A crash fails the run and leaves crash-* in build-fuzz/ (docs/fuzzing.md).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
secs=${1:-20}
B=$ROOT/build-fuzz
CC=clang cmake -S "$ROOT" -B "$B" -DSKIPQ_FUZZ=ON -DSKIPQ_TESTS=OFF >/dev/null
targets=(fuzz_config fuzz_parse fuzz_jsonl)
cmake --build "$B" -j2 --target "${targets[@]}" -- --no-print-directory >/dev/null 2>"$B.build.log" ||
    { cat "$B.build.log" >&2; echo "fuzz.sh: build failed" >&2; exit 1; }
for t in "${targets[@]}"; do
    corpus=${t#fuzz_}
    work=$(mktemp -d)  # grown corpus: thrown away, the seeds stay clean
    echo "fuzz.sh: $t for ${secs}s"
    (cd "$B" && "$B/tests/fuzz/$t" -max_total_time="$secs" -max_len=8192 \
        -print_final_stats=1 "$work" "$ROOT/tests/fuzz/corpus/$corpus" 2>"$B/$t.log") ||
        { tail -40 "$B/$t.log" >&2; rm -rf "$work"; echo "fuzz.sh: $t failed" >&2; exit 1; }
    grep -E "stat::number_of_executed_units" "$B/$t.log" || true
    rm -rf "$work"
done
