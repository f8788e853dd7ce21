#!/usr/bin/env bash
# bench/archive_vs_prune.sh - what removing ROWS finished jobs costs, row by
# row against by partition, on one private PostgreSQL (fsync on):
#   1. ROWS succeeded rows, finished 3 days ago, deleted by `skipq prune
#      --older-than 1d` (skipq.prune, 5,000 a transaction);
#   2. the same rows again, moved to the archive by skipq.archive() (5,000
#      a transaction, into daily partitions), then dropped by `skipq prune
#      --older-than 1d` (skipq.archive_drop, one partition a transaction).
# Prints each step's seconds and the table's dead row versions after it.
# The move costs about what the delete does (it is a delete and an
# insert); what the archive buys is that it happens while the rows are
# recent and skipq.jobs small, and that dropping them costs nothing per row.
#
#   bench/archive_vs_prune.sh [SKIPQ]          (default build/skipq)
#   ROWS=1000000 bench/archive_vs_prune.sh build-rel/skipq
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SKIPQ=$(realpath "${1:-$ROOT/build/skipq}")
ROWS=${ROWS:-1000000}
T=$(mktemp -d /tmp/skipq-archive-bench.XXXXXX)
chmod 755 "$T"
cleanup() { "$ROOT/tests/pg.sh" destroy "$T/pg" >/dev/null 2>&1 || true; rm -rf "$T"; }
trap cleanup EXIT
eval "$("$ROOT/tests/pg.sh" start "$T/pg")"
export SKIPQ_DATABASE_URL=$SKIPQ_TEST_PG
psql -XqAt -c "ALTER SYSTEM SET fsync = on" -c "SELECT pg_reload_conf()" >/dev/null
"$SKIPQ" migrate >/dev/null

fill() {
    psql -XqAt -c "INSERT INTO skipq.jobs (kind, status, payload, result, updated_at, finished_at)
        SELECT 'old', 'succeeded', jsonb_build_object('i', g), '{\"ok\": true}',
               now() - interval '3 days' - g * interval '1 ms',
               now() - interval '3 days' - g * interval '1 ms'
        FROM generate_series(1, $ROWS) g" -c "VACUUM ANALYZE skipq.jobs" >/dev/null
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
dead() {
    psql -XqAt -c "SELECT pg_stat_force_next_flush()" >/dev/null 2>&1 || true
    psql -XqAt -c "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'skipq.jobs'::regclass"
}

echo "archive_vs_prune.sh: $ROWS rows; $SKIPQ"
fill
t0=$(now)
"$SKIPQ" prune --older-than 1d >/dev/null
t1=$(now)
printf 'prune, row by row:        %8.2f s   dead row versions after: %s\n' \
    "$(secs "$t0" "$t1")" "$(dead)"

psql -XqAt -c "VACUUM skipq.jobs" >/dev/null
fill
t0=$(now)
# one connection, one transaction per batch, as a worker's turn does
psql -XqAt -c "DO \$\$ BEGIN LOOP EXIT WHEN skipq.archive('1 day', '1 day', 5000) = 0;
    COMMIT; END LOOP; END \$\$" >/dev/null
t1=$(now)
printf 'archive (move):           %8.2f s   dead row versions after: %s\n' \
    "$(secs "$t0" "$t1")" "$(dead)"
parts=$(psql -XqAt -c "SELECT count(*) FROM skipq.jobs_done_partitions")
t0=$(now)
"$SKIPQ" prune --older-than 1d >/dev/null
t1=$(now)
printf 'drop %s partition(s):      %8.3f s   rows left in the archive: %s\n' "$parts" \
    "$(secs "$t0" "$t1")" "$(psql -XqAt -c "SELECT count(*) FROM skipq.jobs_done")"
