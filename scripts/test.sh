#!/usr/bin/env bash
# test.sh - install what is missing, build, and run the whole test suite
# against a private PostgreSQL started for this run (tests/pg.sh).
#
#   scripts/test.sh            everything: plain build, ASan+UBSan build, and
#                              the CLI paths under valgrind (what CI runs)
#   scripts/test.sh --quick    the plain build only
#   scripts/test.sh --sanitize the ASan+UBSan build only
#   scripts/test.sh --valgrind the CLI tests under valgrind only
#   scripts/test.sh --fuzz     the fuzz targets, 20 s each (scripts/fuzz.sh)
#   scripts/test.sh --consume  install, then build cli/ and examples/ against
#                              the installed library (scripts/consume.sh)
#   scripts/test.sh --package  the Debian packages of the plain build,
#                              installed with apt, used, and purged
#                              (scripts/package.sh; root or sudo)
#   TESTS=regex scripts/test.sh --quick   only the ctest cases matching regex
#   SKIPQ_LONG=1 ...           also the long variants (100k accounting, ...)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
mode=${1:---all}
case "$mode" in --all|--quick|--sanitize|--valgrind|--fuzz|--consume|--package) ;; *)
    echo "usage: scripts/test.sh [--all|--quick|--sanitize|--valgrind|--fuzz|--consume|--package]" >&2; exit 2 ;; esac

extra=()
[ "$mode" = --all ] || [ "$mode" = --valgrind ] && extra+=(valgrind)
[ "$mode" = --all ] || [ "$mode" = --fuzz ] && extra+=(clang libclang-rt-14-dev) # libFuzzer
[ "$mode" = --all ] && extra+=(clang-format)
if [ "$mode" = --all ] || [ "$mode" = --quick ]; then # the browser test (tests/browser/)
    [ -x /usr/bin/chromium ] || extra+=(chromium)
    command -v node >/dev/null || extra+=(nodejs) # Debian's is 18: enough
    command -v npm >/dev/null || extra+=(npm)
fi
# dpkg-shlibdeps (the packages' Depends) and man (package.sh reads the pages)
[ "$mode" = --all ] || [ "$mode" = --package ] && extra+=(dpkg-dev man-db)
scripts/deps.sh "${extra[@]}"
if [ "$mode" = --fuzz ]; then exec scripts/fuzz.sh 20; fi
if [ "$mode" = --consume ]; then exec scripts/consume.sh "$ROOT/build"; fi
# The C follows .clang-format (scripts/format.sh --fix rewrites it).
if [ "$mode" = --all ]; then scripts/format.sh --check; fi

PGDIR=$(mktemp -d /tmp/skipq-test-pg.XXXXXX)
cleanup() { tests/pg.sh destroy "$PGDIR" || true; }
trap cleanup EXIT
eval "$(tests/pg.sh start "$PGDIR")"
export SKIPQ_TEST_PGDIR=$PGDIR  # fault tests restart this cluster
echo "test.sh: PostgreSQL $(psql -XAtc 'SHOW server_version') on port $PGPORT ($PGDIR)"

build() { # build DIR cmake-args...
    local dir=$1; shift
    # -Werror, the tests and the failpoints are OFF by default (a user's
    # build needs none of them): a test build names each one
    cmake -S "$ROOT" -B "$dir" -DSKIPQ_WERROR=ON -DSKIPQ_TESTS=ON -DSKIPQ_FAILPOINTS=ON "$@" >/dev/null
    cmake --build "$dir" -j2 -- --no-print-directory >/dev/null 2>"$dir.build.log" ||
        { cat "$dir.build.log" >&2; echo "test.sh: build failed ($dir)" >&2; exit 1; }
}

run_suite() { # run_suite LABEL BUILDDIR [ctest args...]
    local label=$1 dir=$2; shift 2
    psql -XqAt -c "DROP DATABASE IF EXISTS skipq_template" -c "CREATE DATABASE skipq_template"
    "$dir/skipq" migrate --database "${SKIPQ_TEST_PG%/*}/skipq_template" >/dev/null
    local t0=$SECONDS
    echo "== $label"
    if ! ctest --test-dir "$dir" --output-on-failure --timeout 600 -j2 ${TESTS:+-R "$TESTS"} "$@"; then
        echo "== $label FAILED; last lines of the server log:" >&2
        tail -40 "$PGDIR/server.log" >&2
        return 1
    fi
    echo "== $label passed in $((SECONDS - t0)) s"
}

status=0
if [ "$mode" = --all ] || [ "$mode" = --quick ]; then
    build "$ROOT/build"
    shot=$ROOT/tests/browser/out/dashboard.png # integration.test_browser.dashboard
    rm -f "$shot"
    run_suite "plain suite" "$ROOT/build" || status=1
    [ ! -f "$shot" ] || echo "test.sh: the dashboard's screenshot (keep it as an artefact): $shot"
fi
if [ "$mode" = --all ]; then  # the plain build, installed and used as a user would
    scripts/consume.sh "$ROOT/build" || status=1
fi
if [ "$mode" = --all ] || [ "$mode" = --package ]; then  # ... and as Debian packages
    [ -x "$ROOT/build/skipq" ] || build "$ROOT/build"
    scripts/package.sh "$ROOT/build" || status=1
fi
if [ "$mode" = --all ] || [ "$mode" = --sanitize ]; then
    build "$ROOT/build-asan" -DSKIPQ_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_suite "ASan+UBSan suite" "$ROOT/build-asan" -LE once || status=1
fi
if [ "$mode" = --all ] || [ "$mode" = --valgrind ]; then
    [ -x "$ROOT/build/skipq" ] || build "$ROOT/build"
    SKIPQ_CLI_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect" \
        run_suite "CLI under valgrind" "$ROOT/build" -L valgrind || status=1
fi
if [ "$mode" = --all ]; then  # a short bounded run per target; no database
    scripts/fuzz.sh 20 || status=1
fi
exit $status
