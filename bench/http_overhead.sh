#!/usr/bin/env bash
# bench/http_overhead.sh - what `skipq worker --http` costs a drain: the
# same worker drains JOBS jobs with the endpoints off, then on and scraped
# once a second (/metrics, as Prometheus would), PAIRS times alternated in
# one sitting on one private PostgreSQL. The handler is persistent (a python3
# loop answering each job at once), so the worker's own path, not
# process start-up, sets the pace. Prints jobs/s per run, the medians and
# ranges, and the on/off ratio of the medians.
#
#   bench/http_overhead.sh [SKIPQ]        (default build/skipq)
#   PAIRS=7 JOBS=50000 bench/http_overhead.sh build-rel/skipq
#   SCRAPE=0 ...   the endpoints on but never scraped
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SKIPQ=$(realpath "${1:-$ROOT/build/skipq}")
PAIRS=${PAIRS:-5}; JOBS=${JOBS:-20000}
T=$(mktemp -d /tmp/skipq-http-bench.XXXXXX)
chmod 755 "$T"
cleanup() { "$ROOT/tests/pg.sh" destroy "$T/pg" >/dev/null 2>&1 || true; rm -rf "$T"; }
trap cleanup EXIT
eval "$("$ROOT/tests/pg.sh" start "$T/pg")"
export SKIPQ_DATABASE_URL=$SKIPQ_TEST_PG
"$SKIPQ" migrate >/dev/null

# the persistent handler: one request line in, one answer line out
# (python3, unbuffered: mawk would wait to fill its input buffer)
cat >"$T/answer.py" <<'PY'
import re, sys
for line in sys.stdin:
    m = re.search(r'"id": *(\d+)', line)
    sys.stdout.write('{"id": %s, "outcome": "ok"}\n' % m.group(1))
    sys.stdout.flush()
PY
cat >"$T/worker.yaml" <<YAML
worker:
  concurrency: 8
handlers:
  bench:
    command: ["$(command -v python3)", "$T/answer.py"]
    persistent: true
    processes: 4
YAML

run() { # run off|on: jobs/s of one drain
    local mode=$1 port t0 t1 scraper=
    psql -XqAt -c "TRUNCATE skipq.jobs" \
        -c "SELECT count(skipq.enqueue('bench')) FROM generate_series(1, $JOBS)" >/dev/null
    if [ "$mode" = on ]; then
        port=$("$ROOT/tests/pg.sh" free-port)
        if [ "${SCRAPE:-1}" != 0 ]; then
            ( while sleep 1; do curl -s -o /dev/null "http://127.0.0.1:$port/metrics" || true; done ) &
            scraper=$!
        fi
        set -- --http "127.0.0.1:$port"
    else
        set --
    fi
    t0=$(date +%s.%N)
    "$SKIPQ" worker --config "$T/worker.yaml" --once --quiet "$@" 2>"$T/worker.log" ||
        { cat "$T/worker.log" >&2; exit 1; }
    t1=$(date +%s.%N)
    [ -z "$scraper" ] || kill "$scraper" 2>/dev/null || true
    [ "$(psql -XAt -c "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'")" = "$JOBS" ] ||
        { cat "$T/worker.log" >&2; echo "http_overhead.sh: the drain did not finish" >&2; exit 1; }
    python3 -c "print(round($JOBS / ($t1 - $t0)))"
}

echo "http_overhead.sh: $PAIRS pairs of $JOBS jobs; $SKIPQ"
off=(); on=()
for i in $(seq 1 "$PAIRS"); do
    off+=("$(run off)"); on+=("$(run on)")
    echo "pair $i: off ${off[-1]} jobs/s, on$([ "${SCRAPE:-1}" = 0 ] || echo ' (scraped 1/s)') ${on[-1]} jobs/s"
done
python3 - "${off[*]}" "${on[*]}" <<'PY'
import statistics, sys
off = [float(x) for x in sys.argv[1].split()]
on = [float(x) for x in sys.argv[2].split()]
mo, mn = statistics.median(off), statistics.median(on)
print(f"off: median {mo:.0f} jobs/s [{min(off):.0f}-{max(off):.0f}]")
print(f"on:  median {mn:.0f} jobs/s [{min(on):.0f}-{max(on):.0f}]")
print(f"on/off: {mn / mo:.3f}")
PY
