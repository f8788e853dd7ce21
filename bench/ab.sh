#!/usr/bin/env bash
# bench/ab.sh - two skipq binaries, alternated, on one private PostgreSQL:
# `skipq bench MEASUREMENTS --json` for OLD, then NEW, PAIRS times, and a
# table of medians and ranges per metric and the NEW/OLD ratio of the
# medians. Alternating in one sitting keeps the machine's drift out of the
# comparison.
#
#   bench/ab.sh OLD_SKIPQ NEW_SKIPQ                  # drain latency, 5 pairs
#   PAIRS=7 JOBS=50000 MEASURE="drain latency enqueue" bench/ab.sh old new
#
# The cluster (tests/pg.sh, under a temporary folder) runs with fsync and
# synchronous_commit on, as a real server would, and is destroyed at the
# end. Results: bench/results/ab-<UTC timestamp>/{old,new}.jsonl.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ $# -eq 2 ] || { echo "usage: bench/ab.sh OLD_SKIPQ NEW_SKIPQ" >&2; exit 2; }
OLD=$(realpath "$1"); NEW=$(realpath "$2")
PAIRS=${PAIRS:-5}; JOBS=${JOBS:-20000}; MEASURE=${MEASURE:-drain latency}
OUT=$ROOT/bench/results/ab-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
PGDIR=$(mktemp -d /tmp/skipq-ab-pg.XXXXXX)
trap '"$ROOT/tests/pg.sh" destroy "$PGDIR" >/dev/null 2>&1 || true' EXIT
eval "$("$ROOT/tests/pg.sh" start "$PGDIR")"
psql -XqAt -c "ALTER SYSTEM SET fsync = on" -c "ALTER SYSTEM SET synchronous_commit = on" \
    -c "SELECT pg_reload_conf()" >/dev/null
export SKIPQ_DATABASE_URL=$SKIPQ_TEST_PG
echo "ab.sh: $PAIRS pairs of '$MEASURE' (jobs $JOBS); old $OLD, new $NEW; $OUT"
for i in $(seq 1 "$PAIRS"); do
    for side in old new; do
        bin=$OLD; [ $side = new ] && bin=$NEW
        # shellcheck disable=SC2086
        "$bin" bench $MEASURE --json --jobs "$JOBS" --quiet \
            | sed "s/^{/{\"pair\":$i,/" >>"$OUT/$side.jsonl"
    done
    echo "ab.sh: pair $i done"
done
python3 - "$OUT" <<'EOF'
import json, statistics, sys, os
out = sys.argv[1]
rows = {}
for side in ("old", "new"):
    for line in open(os.path.join(out, side + ".jsonl")):
        r = json.loads(line)
        for k, v in r.items():
            if k in ("pair", "jobs", "version", "system", "config", "metric") or not isinstance(v, (int, float)):
                continue
            rows.setdefault((r["metric"], r.get("config", ""), k), {}).setdefault(side, []).append(v)
print(f"{'metric':<30} {'old median [range]':>28} {'new median [range]':>28} {'new/old':>8}")
for (m, c, k), d in sorted(rows.items()):
    if len(d) < 2:
        continue
    o, n = d["old"], d["new"]
    mo, mn = statistics.median(o), statistics.median(n)
    ratio = mn / mo if mo else float("nan")
    fmt = lambda xs, md: f"{md:.4g} [{min(xs):.4g}-{max(xs):.4g}]"
    print(f"{m + '.' + k:<30} {fmt(o, mo):>28} {fmt(n, mn):>28} {ratio:>8.3f}")
EOF
