#!/usr/bin/env bash
# bench/compare.sh - skipq beside graphile-worker, pg-boss and raw SQL: one
# PostgreSQL cluster, one run, one table with the ratios and issue 6's targets.
#
#   bench/compare.sh                       # REPS=1, N=20000, best peer configs
#   REPS=3 N=20000 bench/compare.sh        # medians of 3 (what docs/performance.md wants)
#   ONLY=raw bench/compare.sh              # skipq vs raw SQL only (no node peers)
#   SKIPQ=build/skipq SKIPQ_ARGS="--concurrency 32" bench/compare.sh
#   bench/compare.sh --summarize bench/results/<ts>   # re-print an earlier run
#
# What it does, in order:
#  1. starts the peer cluster (../shared/bench/peers/pg.sh: PostgreSQL 15,
#     fsync and synchronous_commit on, port 55432) unless it is running;
#  2. REPS times: `skipq bench drain latency steady deep command --json
#     --jobs $N` against it (skipq makes and drops its own database),
#     `skipq bench drain --workers 2` (skipq's second drain configuration,
#     as the peers have two), the same two with worker.on_success delete
#     (as graphile-worker, which deletes finished jobs), then PAIRS times,
#     back to back: `skipq bench enqueue`, pgbench doing skipq's single-job
#     INSERT from 1 and 8 clients (the single-enqueue target's yardstick),
#     pgbench sending skipq_enqueue's own statement (like for like), and
#     psql's \copy of the same rows into skipq.jobs (the bulk target's);
#  3. the peer harness, ../shared/bench/peers/run-all.sh, with REPS, N, ONLY,
#     GW_CONFIGS, BOSS_CONFIGS, RAW_*, LAT_N passed through, results under
#     ours;
#     meanwhile the node processes' peak RSS is sampled from /proc;
#  4. prints one table (bench/summarize.py) and writes it to summary.txt and
#     summary.md.
# If the peers' npm install fails, it says so and still compares skipq with
# raw SQL. The cluster is stopped at the end unless KEEP_PG=1.
#
# Environment:
#   PEERS        the peer harness (default: ../shared/bench/peers from the repo)
#   SKIPQ        the skipq binary (default: build/skipq, else build-*/skipq)
#   REPS (1)  PAIRS (3)  N (20000)  SKIPQ_JOBS (N)  SKIPQ_ARGS ("")  SKIPQ_LONG (unset)
#   ONLY ("gw boss raw")  GW_CONFIGS ("c10 tuned")  BOSS_CONFIGS ("b100n b500n")
#   RAW_CLIENTS ("2")  RAW_MODES ("update fused")  RAW_BATCHES ("100")  LAT_N (1000)
#   KEEP_PG (0)  RESULTS (bench/results)
# Results: bench/results/<UTC timestamp>/{skipq.jsonl, peers/<ts>/results.jsonl,
# peer_rss.txt, run.log, summary.txt, summary.md}.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")

if [ "${1:-}" = --summarize ]; then
  dir=${2:?usage: bench/compare.sh --summarize RESULTS_DIR}
  exec python3 "$HERE/summarize.py" "$dir"
fi

PEERS=${PEERS:-$(cd "$ROOT/.." && pwd)/shared/bench/peers}
[ -x "$PEERS/run-all.sh" ] || { echo "compare.sh: no peer harness at $PEERS (set PEERS)" >&2; exit 2; }
if [ -z "${SKIPQ:-}" ]; then
  for c in "$ROOT/build/skipq" "$ROOT"/build-*/skipq; do
    if [ -x "$c" ]; then SKIPQ=$c; break; fi
  done
fi
[ -x "${SKIPQ:-}" ] || { echo "compare.sh: build skipq first (cmake -S . -B build && cmake --build build), or set SKIPQ" >&2; exit 2; }

export REPS=${REPS:-1} N=${N:-20000}
PAIRS=${PAIRS:-3} # enqueue pairs per repetition (below)
export ONLY=${ONLY:-"gw boss raw"}
export GW_CONFIGS=${GW_CONFIGS:-"c10 tuned"}
export BOSS_CONFIGS=${BOSS_CONFIGS:-"b100n b500n"}
export RAW_CLIENTS=${RAW_CLIENTS:-"2"} RAW_MODES=${RAW_MODES:-"update fused"}
export RAW_BATCHES=${RAW_BATCHES:-"100"}
# pickup samples, for skipq and the peers alike: a p99 of 200 samples is
# the second-worst one, which one autovacuum or a scheduling hiccup sets
export LAT_N=${LAT_N:-1000}
SKIPQ_JOBS=${SKIPQ_JOBS:-$N}
SKIPQ_ARGS=${SKIPQ_ARGS:-}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${PEERBENCH_PGPORT:-55432}

OUT="${RESULTS:-$ROOT/bench/results}/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT/peers"
LOG="$OUT/run.log"
: >"$OUT/skipq.jsonl"
log() { echo "compare.sh: $*" | tee -a "$LOG" >&2; }

"$PEERS/pg.sh" start | tee -a "$LOG"
cleanup() {
  [ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null || true
  [ "${KEEP_PG:-0}" = 1 ] || "$PEERS/pg.sh" stop | tee -a "$LOG" || true
}
trap cleanup EXIT
URL=$("$PEERS/pg.sh" url postgres)
{
  echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(. /etc/os-release; echo "$PRETTY_NAME")"
  echo "postgres: $("$PGBIN/postgres" --version); fsync=$("$PEERS/pg.sh" psql -XAtc 'show fsync'), synchronous_commit=$("$PEERS/pg.sh" psql -XAtc 'show synchronous_commit')"
  echo "skipq: $SKIPQ ($("$SKIPQ" --version 2>&1 | head -1)); git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "REPS=$REPS PAIRS=$PAIRS N=$N LAT_N=$LAT_N SKIPQ_JOBS=$SKIPQ_JOBS SKIPQ_ARGS=$SKIPQ_ARGS ONLY=$ONLY GW_CONFIGS=$GW_CONFIGS BOSS_CONFIGS=$BOSS_CONFIGS"
  echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/machine.txt" | tee -a "$LOG"

# ---- skipq, and pgbench doing skipq's single-job INSERT --------------------
PGB_SQL="$OUT/pgbench_insert.sql"
cat >"$PGB_SQL" <<'EOF'
INSERT INTO skipq.jobs (kind, payload, queue, priority, run_at, max_attempts, backoff_strategy, backoff_base, backoff_max, timeout) VALUES ('bench_noop', '{"i": 1}'::jsonb, 'default', 0::int2, now(), NULL, NULL, NULL, NULL, NULL) RETURNING id;
EOF
# skipq_enqueue's own statement, as it sends it while no worker waits
# (none here): the insert, its transaction told not to NOTIFY, and the
# try of the queue's idle lock, in one autocommit statement (src/enqueue.c
# and src/worker.c say why; docs/performance.md item 36).
PGB_STMT_SQL="$OUT/pgbench_skipq_statement.sql"
cat >"$PGB_STMT_SQL" <<'EOF'
WITH quiet AS (SELECT set_config('skipq.notify', 'after_commit', true)), ins AS (INSERT INTO skipq.jobs (kind, payload, queue, priority) SELECT 'bench_noop', '{"i": 1}'::jsonb, 'default', 0::int2 FROM quiet RETURNING id) SELECT id, pg_try_advisory_xact_lock(1936421122, hashtext('default')) FROM ins;
EOF
pgbench_insert() { # REP CLIENTS TX_PER_CLIENT [SCRIPT CONFIG]
  local rep=$1 c=$2 t=$3 script=${4:-$PGB_SQL} cfg=${5:-pgbench-insert} out tps
  "$PEERS/pg.sh" fresh-db skipq_pgbench >>"$LOG" 2>&1
  "$SKIPQ" migrate --quiet --database "$("$PEERS/pg.sh" url skipq_pgbench)" >>"$LOG" 2>&1
  out=$("$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -n -M prepared -c "$c" -j 2 -t "$t" \
        -f "$script" skipq_pgbench 2>&1) || { echo "$out" >>"$LOG"; return 1; }
  echo "$out" >>"$LOG"
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
  echo "{\"rep\":\"$rep\",\"system\":\"raw-sql\",\"version\":\"pgbench\",\"config\":\"${cfg}-${c}conn\",\"metric\":\"enqueue_single\",\"jobs\":$((c * t)),\"jobs_per_s\":$tps}" >>"$OUT/skipq.jsonl"
}

# Raw COPY of the rows skipq's bulk enqueue writes, into skipq.jobs itself
# (the bulk target is "80% of raw COPY into the same table"; the peer
# harness's COPY goes into its narrower table, shown beside it).
copy_skipq_jobs() { # REP ROWS
  local rep=$1 rows=$2 url csv ms got
  url=$("$PEERS/pg.sh" url skipq_pgbench)
  csv="$OUT/copy_skipq_jobs.csv"
  "$PEERS/pg.sh" fresh-db skipq_pgbench >>"$LOG" 2>&1
  "$SKIPQ" migrate --quiet --database "$url" >>"$LOG" 2>&1
  seq 1 "$rows" | awk '{printf "bench_noop,\"{\"\"i\"\":%d}\",default,0\n", $1}' >"$csv"
  psql -XAtq "$url" -c CHECKPOINT >>"$LOG" 2>&1
  ms=$(psql -XAtq "$url" -c '\timing on' \
         -c "\\copy skipq.jobs (kind, payload, queue, priority) FROM '$csv' WITH (FORMAT csv)" |
       sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1)
  got=$(psql -XAtq "$url" -c "SELECT count(*) FROM skipq.jobs")
  [ -n "$ms" ] && [ "$got" = "$rows" ] || { rm -f "$csv"; log "raw COPY into skipq.jobs left $got of $rows rows"; return 1; }
  echo "{\"rep\":\"$rep\",\"system\":\"raw-sql\",\"version\":\"psql\",\"config\":\"copy-skipq-jobs\",\"metric\":\"enqueue_bulk\",\"jobs\":$rows,\"seconds\":$(awk -v m="$ms" 'BEGIN{printf "%.3f", m/1000}'),\"jobs_per_s\":$(awk -v r="$rows" -v m="$ms" 'BEGIN{printf "%.1f", r/(m/1000)}')}" >>"$OUT/skipq.jsonl"
  # The CLI's like for like: psql's \copy timed as a whole process (start,
  # connect, COPY, exit), as skipq bench times `skipq enqueue`.
  "$PEERS/pg.sh" fresh-db skipq_pgbench >>"$LOG" 2>&1
  "$SKIPQ" migrate --quiet --database "$url" >>"$LOG" 2>&1
  psql -XAtq "$url" -c CHECKPOINT >>"$LOG" 2>&1
  local t0 t1
  t0=$(date +%s%N)
  psql -XAtq "$url" -c "\\copy skipq.jobs (kind, payload, queue, priority) FROM '$csv' WITH (FORMAT csv)" >>"$LOG" 2>&1
  t1=$(date +%s%N)
  got=$(psql -XAtq "$url" -c "SELECT count(*) FROM skipq.jobs")
  rm -f "$csv"
  [ "$got" = "$rows" ] || { log "psql \\copy as a process left $got of $rows rows"; return 1; }
  ms=$(( (t1 - t0) / 1000000 ))
  echo "{\"rep\":\"$rep\",\"system\":\"raw-sql\",\"version\":\"psql\",\"config\":\"copy-skipq-jobs-process\",\"metric\":\"enqueue_bulk\",\"jobs\":$rows,\"seconds\":$(awk -v m="$ms" 'BEGIN{printf "%.3f", m/1000}'),\"jobs_per_s\":$(awk -v r="$rows" -v m="$ms" 'BEGIN{printf "%.1f", r/(m/1000)}')}" >>"$OUT/skipq.jsonl"
}

# The enqueue figures are compared with pgbench and COPY doing the same
# work, and a single-connection commit rate moves by 2x from one minute
# to the next here: so each comparison is a pair, run back to back
# (skipq, then pgbench and COPY), PAIRS times per repetition, and
# summarize.py judges the target by the median of the pairs' ratios.
enqueue_pairs() { # REP
  local rep=$1 k
  for k in $(seq 1 "$PAIRS"); do
    log "rep $rep pair $k: skipq bench enqueue, then pgbench (the INSERT, and skipq's own statement; 1 and 8 clients) and COPY"
    # shellcheck disable=SC2086
    if ! "$SKIPQ" bench enqueue --json --jobs "$SKIPQ_JOBS" $SKIPQ_ARGS --database "$URL" 2>>"$LOG" |
         sed "s/^{/{\"rep\":\"$rep.$k\",/" | tee -a "$OUT/skipq.jsonl" | cut -c1-200; then
      log "rep $rep pair $k: skipq bench enqueue FAILED (see $LOG)"
    fi
    pgbench_insert "$rep.$k" 1 2000 || log "pgbench 1 client failed"
    pgbench_insert "$rep.$k" 8 250 || log "pgbench 8 clients failed"
    pgbench_insert "$rep.$k" 1 2000 "$PGB_STMT_SQL" pgbench-skipq-stmt || log "pgbench skipq statement 1 client failed"
    pgbench_insert "$rep.$k" 8 250 "$PGB_STMT_SQL" pgbench-skipq-stmt || log "pgbench skipq statement 8 clients failed"
    copy_skipq_jobs "$rep.$k" "$SKIPQ_JOBS" || log "raw COPY into skipq.jobs failed"
  done
}

for rep in $(seq 1 "$REPS"); do
  log "rep $rep: skipq bench drain latency steady deep command --json --jobs $SKIPQ_JOBS $SKIPQ_ARGS"
  # shellcheck disable=SC2086
  if ! "$SKIPQ" bench drain latency steady deep command --json --jobs "$SKIPQ_JOBS" $SKIPQ_ARGS \
       --latency-jobs "$LAT_N" --database "$URL" 2>>"$LOG" |
       sed "s/^{/{\"rep\":\"$rep\",/" | tee -a "$OUT/skipq.jsonl" | cut -c1-200; then
    log "rep $rep: skipq bench FAILED (see $LOG)"
  fi
  log "rep $rep: skipq bench drain --workers 2 --json --jobs $SKIPQ_JOBS $SKIPQ_ARGS"
  # shellcheck disable=SC2086
  if ! "$SKIPQ" bench drain --workers 2 --json --jobs "$SKIPQ_JOBS" $SKIPQ_ARGS --database "$URL" 2>>"$LOG" |
       sed "s/^{/{\"rep\":\"$rep\",/" | tee -a "$OUT/skipq.jsonl" | cut -c1-200; then
    log "rep $rep: skipq bench drain --workers 2 FAILED (see $LOG)"
  fi
  for w in 1 2; do
    log "rep $rep: skipq bench drain --on-success delete --workers $w --json --jobs $SKIPQ_JOBS $SKIPQ_ARGS"
    # shellcheck disable=SC2086
    if ! "$SKIPQ" bench drain --on-success delete --workers "$w" --json --jobs "$SKIPQ_JOBS" $SKIPQ_ARGS \
         --database "$URL" 2>>"$LOG" | sed "s/^{/{\"rep\":\"$rep\",/" | tee -a "$OUT/skipq.jsonl" | cut -c1-200; then
      log "rep $rep: skipq bench drain --on-success delete --workers $w FAILED (see $LOG)"
    fi
  done
  enqueue_pairs "$rep"
done
"$PEERS/pg.sh" psql -XAtqc "DROP DATABASE IF EXISTS skipq_pgbench" >/dev/null 2>&1 || true

# ---- the peers, with their node processes' peak RSS sampled -----------------
: >"$OUT/peer_rss.txt"
sample_rss() {
  # processes come and go under it: a read of a /proc file that is gone
  # must not end the sampler (it runs in a subshell: errexit off there)
  set +e +o pipefail
  while :; do
    for p in $(pgrep -f 'gw\.mjs|boss\.mjs' || true); do
      local hwm cfg sys
      hwm=$(awk '/VmHWM/{print $2}' "/proc/$p/status" 2>/dev/null) || continue
      [ -n "$hwm" ] || continue
      cfg=$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | sed -n 's/^\(GW\|BOSS\)_CONFIG=//p' | head -1)
      if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q gw.mjs; then sys=graphile-worker; else sys=pg-boss; fi
      echo "$sys ${cfg:-?} $hwm" >>"$OUT/peer_rss.txt"
    done
    sleep 0.2
  done
}
sample_rss &
SAMPLER=$!

run_peers() {
  RESULTS_DIR="$OUT/peers" KEEP_PG=1 "$PEERS/run-all.sh" 2>&1 | tee -a "$LOG"
  return "${PIPESTATUS[0]}"
}
PEERS_NOTE=""
log "peers: ONLY=\"$ONLY\" REPS=$REPS N=$N"
if ! run_peers; then
  if ! ls "$OUT"/peers/*/results.jsonl >/dev/null 2>&1 || [ ! -s "$(ls -d "$OUT"/peers/*/ | tail -1)results.jsonl" ]; then
    if [ ! -d "$PEERS/node/node_modules/graphile-worker" ] || [ ! -d "$PEERS/node/node_modules/pg-boss" ]; then
      PEERS_NOTE="the peers' npm install failed: graphile-worker and pg-boss were not run"
      log "$PEERS_NOTE; running raw SQL only"
      ONLY=raw run_peers || log "raw SQL run failed"
    fi
  else
    PEERS_NOTE="run-all.sh reported a failed step (see run.log)"
    log "$PEERS_NOTE"
  fi
fi
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=""
[ -z "$PEERS_NOTE" ] || echo "$PEERS_NOTE" >"$OUT/peers_note.txt"

echo "load after the run: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
python3 "$HERE/summarize.py" "$OUT" | tee "$OUT/summary.txt"
python3 "$HERE/summarize.py" --md "$OUT" >"$OUT/summary.md"
echo "results: $OUT"
