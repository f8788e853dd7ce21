#!/usr/bin/env bash
# bench/compare.sh - skipq beside graphile-worker, pg-boss and raw SQL on
# one private PostgreSQL, in one run, as one table of jobs/s and ratios.
#
#   bench/compare.sh                         # N=20000, REPS=1 (about 10 min)
#   REPS=3 bench/compare.sh                  # medians of 3 (docs/performance.md)
#   QUICK=1 bench/compare.sh                 # a short run: 2,000 jobs (a few minutes)
#   ONLY=raw bench/compare.sh                # skipq and raw SQL only, no node
#   SKIPQ=build/skipq C=32 bench/compare.sh  # another binary, concurrency 32
#   bench/compare.sh --summarize bench/results/<ts>   # print an earlier run again
#
# Needs the packages of scripts/deps.sh (installed when missing) and node
# with npm (Debian's nodejs and npm, installed when missing). In order:
#  1. skipq: $SKIPQ, else build-rel/skipq, built (Release) when missing;
#  2. the peers' node packages: bench/peers/node_modules, from the pinned
#     package-lock.json (npm ci) when missing; node 22 comes with them;
#  3. a private cluster (tests/pg.sh) with fsync, synchronous_commit and
#     full_page_writes on, shared_buffers 256MB, max_wal_size 4GB: every
#     system pays for real commits; destroyed at the end unless KEEP_PG=1;
#  4. REPS times: `skipq bench $MEASURE --json --jobs $N --concurrency $C`
#     (skipq makes and drops its own database), the drain again with two
#     worker processes and with on_success delete (graphile-worker deletes
#     finished jobs too), then PAIRS times, back to back: `skipq bench
#     enqueue` and its yardsticks, pgbench sending skipq's single-job
#     INSERT and skipq_enqueue's own statement from 1 and 8 clients, and
#     psql's \copy of the same rows into skipq.jobs;
#  5. REPS times, each peer in a new database of the same cluster:
#     bench/peers/gw.mjs and boss.mjs (N jobs enqueued and drained at
#     concurrency C, the same pickup-latency protocol) and
#     bench/peers/raw/raw.sh (COPY and pgbench claim cycles);
#  6. the table (bench/summarize.mjs), also in summary.txt and summary.md.
# A peer that fails is noted in the table and the run goes on.
#
# Environment (defaults in brackets; QUICK=1 changes those marked *):
#   SKIPQ [build-rel/skipq]  N* [20000]  C [16]  REPS [1]  PAIRS* [3]
#   LAT_N* [1000]  MEASURE* ["drain latency steady deep command"]
#   DRAINS* ["w2 del delw2"]: the extra skipq drains  SKIPQ_ARGS [""]
#   ONLY ["gw boss raw"]  GW_CONFIGS ["plain lq"]  BOSS_CONFIGS ["b100 b500"]
#   RAW_CLAIMS* [20 x N]  RAW_CLIENTS ["2"]  KEEP_PG [0]  RESULTS [bench/results]
# Results: bench/results/<UTC timestamp>/{results.jsonl, run.log,
# machine.txt, summary.txt, summary.md}.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PEERS=$HERE/peers

need_node() {
    command -v node >/dev/null && command -v npm >/dev/null ||
        "$ROOT/scripts/deps.sh" nodejs npm
}

if [ "${1:-}" = --summarize ]; then
    dir=${2:?usage: bench/compare.sh --summarize RESULTS_DIR}
    need_node
    exec node "$HERE/summarize.mjs" "$dir"
fi

if [ "${QUICK:-0}" = 1 ]; then
    N=${N:-2000} PAIRS=${PAIRS:-1} LAT_N=${LAT_N:-200} MEASURE=${MEASURE:-drain latency}
    DRAINS=${DRAINS-del}
fi
export N=${N:-20000} C=${C:-16} LAT_N=${LAT_N:-1000}
export N_SINGLE=$((N < 2000 ? N : 2000)) INFLIGHT=8 # as skipq bench enqueue
REPS=${REPS:-1} PAIRS=${PAIRS:-3}
MEASURE=${MEASURE:-drain latency steady deep command}
DRAINS=${DRAINS-w2 del delw2}
SKIPQ_ARGS=${SKIPQ_ARGS:-}
ONLY=${ONLY:-gw boss raw}
GW_CONFIGS=${GW_CONFIGS:-plain lq} BOSS_CONFIGS=${BOSS_CONFIGS:-b100 b500}
export RAW_CLAIMS=${RAW_CLAIMS:-$((N * 20))} RAW_CLIENTS=${RAW_CLIENTS:-2}

OUT="${RESULTS:-$ROOT/bench/results}/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
LOG=$OUT/run.log
export RESULTS_FILE=$OUT/results.jsonl
: >"$RESULTS_FILE"
: >"$OUT/notes.txt"
log() { echo "compare.sh: $*" | tee -a "$LOG" >&2; }
note() { log "$*"; echo "$*" >>"$OUT/notes.txt"; }

# ---- 1. skipq ---------------------------------------------------------------
if [ -z "${SKIPQ:-}" ]; then
    SKIPQ=$ROOT/build-rel/skipq
    if [ ! -x "$SKIPQ" ]; then
        log "building skipq (Release) into build-rel/"
        "$ROOT/scripts/deps.sh"
        cmake -S "$ROOT" -B "$ROOT/build-rel" -DCMAKE_BUILD_TYPE=Release -DSKIPQ_TESTS=OFF \
            -DSKIPQ_WERROR=OFF >>"$LOG" 2>&1
        cmake --build "$ROOT/build-rel" -j"$(nproc)" --target skipq >>"$LOG" 2>&1 ||
            { tail -20 "$LOG" >&2; exit 1; }
    fi
fi
SKIPQ=$(realpath "$SKIPQ")
[ -x "$SKIPQ" ] || { echo "compare.sh: no skipq binary at $SKIPQ" >&2; exit 2; }

# ---- 2. the peers' node packages ---------------------------------------------
NODE=
if [[ " $ONLY " == *" gw "* || " $ONLY " == *" boss "* ]]; then
    need_node
    if [ ! -d "$PEERS/node_modules/graphile-worker" ] || [ ! -d "$PEERS/node_modules/pg-boss" ]; then
        log "installing the peers' node packages (npm ci in bench/peers)"
        (cd "$PEERS" && npm ci --no-audit --no-fund) >>"$LOG" 2>&1 ||
            note "npm ci failed in bench/peers (see run.log): graphile-worker and pg-boss not run"
    fi
    # graphile-worker and pg-boss need node 22; the lock brings it on x64
    for n in "$PEERS/node_modules/.bin/node" "$(command -v node)"; do
        if [ -x "$n" ] && [ "$("$n" -p 'process.versions.node.split(".")[0]')" -ge 22 ]; then
            NODE=$n; break
        fi
    done
    [ -n "$NODE" ] || note "no node 22 or later: graphile-worker and pg-boss not run"
fi
SUMMARIZE_NODE=${NODE:-$(command -v node || true)}
[ -n "$SUMMARIZE_NODE" ] || { need_node; SUMMARIZE_NODE=$(command -v node); }

# ---- 3. the private cluster --------------------------------------------------
PGDIR=$(mktemp -d /tmp/skipq-compare-pg.XXXXXX)
cleanup() {
    if [ "${KEEP_PG:-0}" = 1 ]; then
        log "the cluster still runs: $("$ROOT/tests/pg.sh" url "$PGDIR"); stop it with tests/pg.sh destroy $PGDIR"
    else
        "$ROOT/tests/pg.sh" destroy "$PGDIR" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
eval "$("$ROOT/tests/pg.sh" start "$PGDIR")"
psql -XqAt -c "ALTER SYSTEM SET fsync = on" -c "ALTER SYSTEM SET synchronous_commit = on" \
    -c "ALTER SYSTEM SET full_page_writes = on" -c "ALTER SYSTEM SET shared_buffers = '256MB'" \
    -c "ALTER SYSTEM SET max_wal_size = '4GB'" -c "ALTER SYSTEM SET checkpoint_timeout = '15min'" \
    >/dev/null
"$ROOT/tests/pg.sh" restart "$PGDIR" fast
URL=$("$ROOT/tests/pg.sh" url "$PGDIR" postgres)
url_of() { "$ROOT/tests/pg.sh" url "$PGDIR" "$1"; }
fresh_db() { # NAME
    PGOPTIONS="-c client_min_messages=warning" psql -XqAt -v ON_ERROR_STOP=1 -d postgres \
        -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" -c "CREATE DATABASE \"$1\""
}
{
    echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(. /etc/os-release; echo "$PRETTY_NAME")"
    echo "postgres: $(psql -XAtc 'SHOW server_version'); fsync=$(psql -XAtc 'SHOW fsync'), synchronous_commit=$(psql -XAtc 'SHOW synchronous_commit'), shared_buffers=$(psql -XAtc 'SHOW shared_buffers')"
    echo "skipq: $SKIPQ ($("$SKIPQ" --version 2>&1 | head -1)); git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); node: ${NODE:+$("$NODE" -v)}"
    echo "N=$N C=$C REPS=$REPS PAIRS=$PAIRS LAT_N=$LAT_N MEASURE=\"$MEASURE\" DRAINS=\"$DRAINS\" ONLY=\"$ONLY\" SKIPQ_ARGS=\"$SKIPQ_ARGS\""
    echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/machine.txt" | tee -a "$LOG"

# ---- 4. skipq and its yardsticks -----------------------------------------------
skipq_bench() { # REP ARGS...: skipq bench --json, each line labelled with REP
    local rep=$1; shift
    log "rep $rep: skipq bench $*"
    # shellcheck disable=SC2086
    "$SKIPQ" bench "$@" --json --jobs "$N" --concurrency "$C" --latency-jobs "$LAT_N" \
        $SKIPQ_ARGS --database "$URL" 2>>"$LOG" | sed "s/^{/{\"rep\":\"$rep\",/" >>"$RESULTS_FILE" ||
        note "skipq bench $* failed (rep $rep; see run.log)"
}

PGB_INSERT=$OUT/pgbench_insert.sql
cat >"$PGB_INSERT" <<'SQL'
INSERT INTO skipq.jobs (kind, payload, queue, priority, run_at, max_attempts, backoff_strategy, backoff_base, backoff_max, timeout) VALUES ('bench_noop', '{"i": 1}'::jsonb, 'default', 0::int2, now(), NULL, NULL, NULL, NULL, NULL) RETURNING id;
SQL
# skipq_enqueue's own statement while no worker waits: the insert, told
# not to notify, and the try of the queue's idle lock, in one autocommit
# statement (src/enqueue.c)
PGB_STMT=$OUT/pgbench_skipq_statement.sql
IDLE_CLASS=$(sed -n 's/^#define SKIPQ__LOCK_CLASS_IDLE \([0-9]*\).*/\1/p' "$ROOT/src/lock_keys.h")
cat >"$PGB_STMT" <<SQL
WITH quiet AS (SELECT set_config('skipq.notify', 'after_commit', true)), ins AS (INSERT INTO skipq.jobs (kind, payload, queue, priority) SELECT 'bench_noop', '{"i": 1}'::jsonb, 'default', 0::int2 FROM quiet RETURNING id) SELECT id, pg_try_advisory_xact_lock($IDLE_CLASS, hashtext('default')) FROM ins;
SQL
raw_line() { # REP VERSION CONFIG METRIC JOBS SECONDS
    awk -v rep="$1" -v v="$2" -v c="$3" -v m="$4" -v n="$5" -v s="$6" 'BEGIN {
        printf "{\"rep\":\"%s\",\"system\":\"raw-sql\",\"version\":\"%s\",\"config\":\"%s\",\"metric\":\"%s\",\"jobs\":%d,\"seconds\":%.3f,\"jobs_per_s\":%.1f}\n",
               rep, v, c, m, n, s, n / s }' >>"$RESULTS_FILE"
}
skipq_db() { fresh_db skipq_yardstick && "$SKIPQ" migrate --quiet --database "$(url_of skipq_yardstick)" >>"$LOG" 2>&1; }
pgbench_single() { # REP CLIENTS SCRIPT CONFIG
    local tx=$((N_SINGLE / $2)) out tps
    skipq_db
    out=$(pgbench -n -M prepared -c "$2" -j 2 -t "$tx" -f "$3" skipq_yardstick 2>&1) ||
        { echo "$out" >>"$LOG"; note "pgbench $4 failed (rep $1)"; return 0; }
    echo "$out" >>"$LOG"
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
    raw_line "$1" pgbench "$4-$2conn" enqueue_single $(($2 * tx)) "$(awk -v n=$(($2 * tx)) -v t="$tps" 'BEGIN{print n / t}')"
}
# psql's \copy of the rows skipq's bulk enqueue writes, into skipq.jobs:
# timed by psql (the statement), and as a whole process as skipq bench
# times `skipq enqueue`
copy_skipq_jobs() { # REP
    local csv=$OUT/copy.csv url ms t0 t1 got
    url=$(url_of skipq_yardstick)
    seq 1 "$N" | awk '{printf "bench_noop,\"{\"\"i\"\":%d}\",default,0\n", $1}' >"$csv"
    local copy="\\copy skipq.jobs (kind, payload, queue, priority) FROM '$csv' WITH (FORMAT csv)"
    skipq_db && psql -XAtq "$url" -c CHECKPOINT >>"$LOG"
    ms=$(psql -XAtq "$url" -c '\timing on' -c "$copy" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1)
    got=$(psql -XAtq "$url" -c "SELECT count(*) FROM skipq.jobs")
    if [ "$got" = "$N" ]; then raw_line "$1" psql copy-skipq-jobs enqueue_bulk "$N" "$(awk -v m="$ms" 'BEGIN{print m / 1000}')"
    else note "psql \\copy into skipq.jobs left $got of $N rows (rep $1)"; fi
    skipq_db && psql -XAtq "$url" -c CHECKPOINT >>"$LOG"
    t0=$(date +%s%N)
    psql -XAtq "$url" -c "$copy" >>"$LOG" 2>&1 || true
    t1=$(date +%s%N)
    got=$(psql -XAtq "$url" -c "SELECT count(*) FROM skipq.jobs")
    if [ "$got" = "$N" ]; then raw_line "$1" psql copy-skipq-jobs-process enqueue_bulk "$N" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print (b - a) / 1e9}')"
    else note "psql \\copy as a process left $got of $N rows (rep $1)"; fi
    rm -f "$csv"
}

for rep in $(seq 1 "$REPS"); do
    # shellcheck disable=SC2086
    skipq_bench "$rep" $MEASURE
    for d in $DRAINS; do
        case $d in
            w2) skipq_bench "$rep" drain --workers 2 ;;
            del) skipq_bench "$rep" drain --on-success delete ;;
            delw2) skipq_bench "$rep" drain --on-success delete --workers 2 ;;
            *) echo "compare.sh: unknown drain \"$d\" in DRAINS (w2, del, delw2)" >&2; exit 2 ;;
        esac
    done
    # a single connection's commit rate moves by 2x from one minute to the
    # next: each comparison is a pair, skipq and at once its yardsticks
    for k in $(seq 1 "$PAIRS"); do
        skipq_bench "$rep.$k" enqueue
        pgbench_single "$rep.$k" 1 "$PGB_INSERT" pgbench-insert
        pgbench_single "$rep.$k" 8 "$PGB_INSERT" pgbench-insert
        pgbench_single "$rep.$k" 1 "$PGB_STMT" pgbench-skipq-stmt
        pgbench_single "$rep.$k" 8 "$PGB_STMT" pgbench-skipq-stmt
        copy_skipq_jobs "$rep.$k"
    done
done
psql -XqAt -d postgres -c "DROP DATABASE IF EXISTS skipq_yardstick" >/dev/null 2>&1 || true

# ---- 5. the peers ----------------------------------------------------------------
peer() { # REP SYSTEM CONFIG COMMAND...
    local rep=$1 sys=$2 cfg=$3; shift 3
    log "rep $rep: $sys $cfg"
    fresh_db peer
    if ! env DATABASE_URL="$(url_of peer)" RAW_URL="$(url_of peer)" REP="$rep" CONFIG="$cfg" \
         "$@" >>"$LOG" 2>&1; then
        note "$sys $cfg failed (rep $rep; see run.log)"
    fi
}
for rep in $(seq 1 "$REPS"); do
    for sys in $ONLY; do
        case $sys in
            gw) [ -z "$NODE" ] || for cfg in $GW_CONFIGS; do peer "$rep" graphile-worker "$cfg" "$NODE" "$PEERS/gw.mjs"; done ;;
            boss) [ -z "$NODE" ] || for cfg in $BOSS_CONFIGS; do peer "$rep" pg-boss "$cfg" "$NODE" "$PEERS/boss.mjs"; done ;;
            raw) peer "$rep" raw-sql "" "$PEERS/raw/raw.sh" ;;
            *) echo "compare.sh: unknown system \"$sys\" in ONLY (gw, boss, raw)" >&2; exit 2 ;;
        esac
    done
done
psql -XqAt -d postgres -c "DROP DATABASE IF EXISTS peer WITH (FORCE)" >/dev/null 2>&1 || true

# ---- 6. the table ------------------------------------------------------------------
echo "load after the run: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
"$SUMMARIZE_NODE" "$HERE/summarize.mjs" "$OUT" | tee "$OUT/summary.txt"
"$SUMMARIZE_NODE" "$HERE/summarize.mjs" --md "$OUT" >"$OUT/summary.md"
echo "results: $OUT"
