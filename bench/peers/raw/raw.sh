#!/usr/bin/env bash
# raw.sh - raw SQL baselines on a new database: COPY of N rows into a bare
# job table, and claim cycles with pgbench (claim_*.sql: B rows a batch,
# from each of RAW_CLIENTS clients), one JSON line each on stdout and in
# $RESULTS_FILE, in the shape of `skipq bench --json`.
#
#   RAW_URL=postgresql://.../raw N=20000 RAW_CLAIMS=400000 bench/peers/raw/raw.sh
#
# RAW_URL must name an empty database. RAW_CLAIMS rows are claimed per
# run; RAW_MODES ("update fused"), RAW_CLIENTS ("2"), RAW_BATCH (100).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
: "${RAW_URL:?RAW_URL is not set}"
N=${N:-20000}
CLAIMS=${RAW_CLAIMS:-$((N * 20))}
MODES=${RAW_MODES:-"update fused"}
CLIENTS=${RAW_CLIENTS:-2}
B=${RAW_BATCH:-100}
REP=${REP:-1}
PGBENCH=${PGBENCH:-pgbench}
VERSION=$(psql -XAtq "$RAW_URL" -c 'SHOW server_version')

q() { PGOPTIONS="-c client_min_messages=warning" psql -XAtq -v ON_ERROR_STOP=1 "$RAW_URL" "$@"; }
emit() { # CONFIG METRIC FIELDS
    local line="{\"rep\":\"$REP\",\"system\":\"raw-sql\",\"version\":\"postgres $VERSION\",\"config\":\"$1\",\"metric\":\"$2\",$3}"
    echo "$line"
    [ -z "${RESULTS_FILE:-}" ] || echo "$line" >>"$RESULTS_FILE"
}
rate() { awk -v n="$1" -v ms="$2" 'BEGIN { printf "\"jobs\":%d,\"seconds\":%.3f,\"jobs_per_s\":%.1f", n, ms / 1000, n / (ms / 1000) }'; }
# ROWS queued rows in an emptied table, checkpointed first so that the run
# after it does not pay the first change of every page in full
fill() {
    q -c "TRUNCATE jobs RESTART IDENTITY" -c CHECKPOINT \
      -c "INSERT INTO jobs (payload) SELECT jsonb_build_object('i', g) FROM generate_series(1, $1) g" \
      -c "VACUUM ANALYZE jobs"
}

q -f "$HERE/schema.sql"

CSV=$(mktemp /tmp/skipq-raw-copy.XXXXXX)
trap 'rm -f "$CSV"' EXIT
seq 1 "$N" | awk '{ printf "\"{\"\"i\"\": %d}\"\n", $1 }' >"$CSV"
q -c CHECKPOINT
ms=$(q -c '\timing on' -c "\\copy jobs (payload) FROM '$CSV' WITH (FORMAT csv)" |
     sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1)
got=$(q -c "SELECT count(*) FROM jobs")
[ "$got" = "$N" ] || { echo "raw.sh: COPY left $got of $N rows" >&2; exit 1; }
emit copy enqueue_bulk "$(rate "$N" "$ms")"

for mode in $MODES; do
    for c in $CLIENTS; do
        t=$((CLAIMS / (c * B)))
        [ "$t" -ge 1 ] || t=1
        want=$((c * t * B))
        fill $((want + want / 10)) # spare rows: SKIP LOCKED never runs dry
        out=$("$PGBENCH" -n -M simple -c "$c" -j "$c" -t "$t" -D B="$B" -f "$HERE/claim_$mode.sql" "$RAW_URL" 2>&1) ||
            { echo "$out" >&2; exit 1; }
        secs=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
        tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
        [ -n "$tps" ] || { echo "$out" >&2; exit 1; }
        if [ "$mode" = update ]; then
            done_rows=$(q -c "SELECT count(*) FROM jobs WHERE status = 'done'")
        else
            done_rows=$(( want + want / 10 - $(q -c "SELECT count(*) FROM jobs") ))
        fi
        # rows over the run's wall time: transactions / tps
        ms=$(awk -v tx="$((c * t))" -v tps="$tps" 'BEGIN { printf "%.3f", tx / tps * 1000 }')
        emit "claim-$mode-b$B-${c}cl" drain "$(rate "$done_rows" "$ms"),\"batch\":$B,\"clients\":$c,\"latency_avg_ms\":${secs:-0}"
    done
done
