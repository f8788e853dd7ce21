#!/usr/bin/env bash
# demo.sh - skipq in one command: install what is missing, build, start a
# private PostgreSQL under .pg/ (when no database is configured), migrate,
# enqueue sample jobs four ways, run workers on them, show the table.
#
#   scripts/demo.sh                    embedded cluster in .pg/ (kept running)
#   scripts/demo.sh --database URL     your own database instead
#   SKIPQ_DATABASE_URL=... scripts/demo.sh   the same
#   SKIPQ_CONFIG=skipq.yaml scripts/demo.sh  the config's `database:`
#
# Re-runnable: a second run reuses .pg/ and shows only the jobs it made.
# Its jobs go to the queue "demo", so workers of other queues ignore them.
# Exits non-zero when any step fails or a job does not end as expected.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${SKIPQ_DEMO_BUILD_DIR:-$ROOT/build}

database=
while [ $# -gt 0 ]; do
    case "$1" in
        --database) [ $# -ge 2 ] || { echo "demo.sh: --database needs a URL" >&2; exit 2; }
                    database=$2; shift 2 ;;
        --database=*) database=${1#--database=}; shift ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo.sh: unknown argument \"$1\" (try --help)" >&2; exit 2 ;;
    esac
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
# psql, echoing the statement as a user would type it
sql() { printf '$ psql -c "%s"\n' "$1"; q -c "$1"; }

step "1. dependencies (scripts/deps.sh: apt-get only for what is missing)"
scripts/deps.sh

step "2. build ($BUILD)"
cmake -S "$ROOT" -B "$BUILD" >/dev/null
cmake --build "$BUILD" --target skipq -j"$(nproc)" -- --no-print-directory >/dev/null
SKIPQ=$BUILD/skipq
"$SKIPQ" --version

step "3. database"
if [ -n "$database" ]; then
    echo "using --database"
elif [ -n "${SKIPQ_DATABASE_URL:-}" ]; then
    database=$SKIPQ_DATABASE_URL
    echo "using \$SKIPQ_DATABASE_URL"
elif [ -n "${SKIPQ_CONFIG:-}" ]; then
    # skipq reads the config itself; psql needs the URL too. A top-level
    # `database:` line, else libpq's PG* variables (as skipq does).
    database=$(sed -n 's/^database:[[:space:]]*\([^#[:space:]]*\).*/\1/p' "$SKIPQ_CONFIG" | tail -1)
    echo "using the database of \$SKIPQ_CONFIG ($SKIPQ_CONFIG)"
else
    echo "no database configured: starting the embedded cluster in .pg/"
    eval "$(tests/pg.sh start "$ROOT/.pg")"
    database=$SKIPQ_TEST_PG
    echo "PostgreSQL $(psql -XAtc 'SHOW server_version') at $database"
    embedded=1
fi
# Every command below finds it here (skipq: --database wins over the
# config; psql: an empty URL means the PG* variables).
if [ -n "$database" ]; then export SKIPQ_DATABASE_URL=$database; fi
q() { psql -X -v ON_ERROR_STOP=1 -P pager=off ${database:+-d "$database"} "$@"; }

step "4. migrate"
show "$SKIPQ" migrate

# Only this run's jobs are shown and checked, so a second run (or a
# database that already has jobs) works the same.
first=$(q -At -c "SELECT coalesce(max(id), 0) + 1 FROM skipq.jobs")

step "5. enqueue"
echo "-- from SQL, with priorities by name and by number:"
sql "SELECT skipq.enqueue('greet', '{\"name\": \"ada\"}', queue => 'demo', priority => 'high') AS high,
                  skipq.enqueue('greet', '{\"name\": \"grace\"}', queue => 'demo') AS normal,
                  skipq.enqueue('greet', '{\"name\": \"linus\"}', queue => 'demo', priority => -10) AS low"
echo "-- from the CLI, one job (prints its id):"
show "$SKIPQ" enqueue greet '{"name": "ken"}' --queue demo --priority 10
echo "-- JSON lines on stdin, one transaction:"
printf '$ printf ... | %s enqueue count --queue demo\n' "$SKIPQ"
printf '{"n": 1}\n{"n": 2}\n{"n": 3}\n' | "$SKIPQ" enqueue count --queue demo
echo "-- delayed by 2 seconds:"
show "$SKIPQ" enqueue greet '{"name": "later"}' --queue demo --in 2s
echo "-- a job that fails twice, then succeeds (fixed 500ms backoff):"
show "$SKIPQ" enqueue flaky '{}' --queue demo --backoff fixed --backoff-base 500ms
flaky_id=$(q -At -c "SELECT max(id) FROM skipq.jobs WHERE kind = 'flaky' AND id >= $first")

step "6. the jobs, in psql"
sql "SELECT id, kind, queue, priority, status, attempts, run_at FROM skipq.jobs WHERE id >= $first ORDER BY id"

# Handlers are shell one-liners (run by /bin/sh -c): the payload comes on
# stdin, SKIPQ_JOB_ID / _KIND / _ATTEMPT / _QUEUE in the environment; exit
# 0 with JSON on stdout is the result, anything else a failed attempt with
# stderr as the error.
handlers=(
    --handler 'greet=printf "{\"hello\": %s}" "$(cat)"'
    --handler 'count=cat >/dev/null; printf "{\"job\": %s, \"attempt\": %s}" "$SKIPQ_JOB_ID" "$SKIPQ_JOB_ATTEMPT"'
    --handler 'flaky=cat >/dev/null; if [ "$SKIPQ_JOB_ATTEMPT" -lt 3 ]; then echo "flaky: attempt $SKIPQ_JOB_ATTEMPT failed, try again" >&2; exit 1; fi; echo "{\"ok\": true}"'
)

step "7. a worker for the high band only, until nothing runnable is left (--once)"
printf '$ %s worker --queue demo --priority high --once %s\n' "$SKIPQ" "--handler greet=... --handler count=... --handler flaky=..."
"$SKIPQ" worker --queue demo --priority high --once "${handlers[@]}"
q -c "SELECT id, kind, priority, status, attempts FROM skipq.jobs WHERE id >= $first ORDER BY id"

step "8. a worker for every band, until every demo job is finished"
# --once would stop while the delayed job and the flaky job's retries are
# still in the future, so this worker runs in the background and gets
# SIGTERM (a graceful stop) once the table says everything is done.
printf '$ %s worker --queue demo %s &\n' "$SKIPQ" "--handler greet=... --handler count=... --handler flaky=..."
"$SKIPQ" worker --queue demo "${handlers[@]}" &
worker=$!
trap 'kill -TERM $worker 2>/dev/null || true' EXIT
deadline=$((SECONDS + 60))
until [ "$(q -At -c "SELECT count(*) FROM skipq.jobs WHERE id >= $first AND status IN ('queued', 'running')")" = 0 ]; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 $worker 2>/dev/null; then
        echo "demo.sh: the jobs did not finish within 60 s" >&2
        exit 1
    fi
    sleep 0.2
done
kill -TERM $worker
wait $worker
trap - EXIT

step "9. the final table"
sql "SELECT id, kind, status, attempts, last_error, jsonb_array_length(errors) AS errors, result FROM skipq.jobs WHERE id >= $first ORDER BY id"
echo "-- the flaky job's error history:"
sql "SELECT e->>'attempt' AS attempt, e->>'error' AS error FROM skipq.jobs, jsonb_array_elements(errors) e WHERE id = $flaky_id"
show "$SKIPQ" stats

# The demo's own check: every job succeeded, the flaky one on attempt 3
# with two errors recorded.
bad=$(q -At -c "SELECT count(*) FROM skipq.jobs WHERE id >= $first AND status <> 'succeeded'")
flaky=$(q -At -c "SELECT attempts || '/' || jsonb_array_length(errors) FROM skipq.jobs WHERE id = $flaky_id")
if [ "$bad" != 0 ] || [ "$flaky" != 3/2 ]; then
    echo "demo.sh: unexpected outcome: $bad job(s) not succeeded; flaky attempts/errors = $flaky (want 3/2)" >&2
    exit 1
fi

step "done"
echo "Every demo job succeeded; the flaky one on its third attempt."
if [ -n "${embedded:-}" ]; then
    echo "The embedded PostgreSQL keeps running. Connect with:"
    echo "  psql '$database'"
    echo "  export SKIPQ_DATABASE_URL='$database'; $SKIPQ jobs ls"
    echo "Stop it with:   tests/pg.sh stop .pg"
fi
