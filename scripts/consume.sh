#!/usr/bin/env bash
# consume.sh - use skipq the ways a user does, from an existing build:
#   1. install it to a temporary prefix (cmake --install)
#   2. build examples/ and the command (cli/) against that prefix with
#      find_package(skipq), then with plain cc and pkg-config
#   3. embed the source tree in a project (tests/consume/) with
#      add_subdirectory and with FetchContent
# Every program built against the prefix must load the prefix's libskipq.
# No database is needed: tests/integration/test_examples.c runs the
# examples themselves.
#
#   scripts/consume.sh [BUILD_DIR]    (default build/, built if missing)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
B=$(realpath -m "${1:-$ROOT/build}")
t0=$SECONDS

if [ ! -f "$B/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$B" -DSKIPQ_WERROR=ON >/dev/null
fi
cmake --build "$B" -j2 -- --no-print-directory >/dev/null

T=$(mktemp -d /tmp/skipq-consume.XXXXXX)
trap 'rm -rf "$T"' EXIT
P=$T/prefix
log=$T/log
step() { echo "consume.sh: [$((SECONDS - t0)) s] $*"; }
fail() { cat "$log" >&2; echo "consume.sh: FAILED: $*" >&2; exit 1; }

step "install to a temporary prefix"
cmake --install "$B" --prefix "$P" >"$log" 2>&1 || fail "cmake --install"
libdir=$(dirname "$(find "$P" -name 'libskipq.so' | head -1)")
export PKG_CONFIG_PATH=$libdir/pkgconfig
CFLAGS_STRICT="-Wall -Wextra -Werror"

# loads_prefix BINARY: the libskipq it loads is the prefix's
loads_prefix() {
    local got
    got=$(ldd "$1" | awk '$1 ~ /^libskipq\.so/ { print $3 }')
    [ "$(realpath "$got")" = "$(realpath "$libdir/libskipq.so.0")" ] ||
        { echo "$1 loads libskipq from \"$got\", not $libdir" >"$log"; fail "wrong libskipq"; }
}

step "find_package(skipq): examples/"
cmake -S examples -B "$T/examples" -DCMAKE_PREFIX_PATH="$P" \
    -DCMAKE_C_FLAGS="$CFLAGS_STRICT" >"$log" 2>&1 || fail "configure examples/"
cmake --build "$T/examples" -j2 >"$log" 2>&1 || fail "build examples/"
for x in "$T"/examples/example_*; do
    # a persistent handler links json-c alone: no libskipq to check
    [ "${x##*/}" = example_persistent ] || loads_prefix "$x"
done
step "find_package(skipq): cli/"
cmake -S cli -B "$T/cli" -DCMAKE_PREFIX_PATH="$P" \
    -DCMAKE_C_FLAGS="$CFLAGS_STRICT" >"$log" 2>&1 || fail "configure cli/"
cmake --build "$T/cli" -j2 >"$log" 2>&1 || fail "build cli/"
loads_prefix "$T/cli/skipq"
"$T/cli/skipq" --version >"$log" 2>&1 || fail "skipq --version"

step "pkg-config: examples/"
# json-c: the command and examples/worker.c use skipq_json.h
pc=$(pkg-config --cflags --libs skipq json-c) || fail "pkg-config skipq json-c"
mkdir -p "$T/pc"
for src in examples/*.c; do
    out=$T/pc/$(basename "$src" .c)
    # shellcheck disable=SC2086 # pkg-config's output is a list of words
    cc -std=c11 $CFLAGS_STRICT "$src" $pc -Wl,-rpath,"$libdir" -o "$out" >"$log" 2>&1 ||
        fail "cc $src \$(pkg-config --cflags --libs skipq json-c)"
    loads_prefix "$out"
done
step "pkg-config: cli/"
# the dashboard's files as C, as cli/CMakeLists.txt makes them
web=$(cd cli/web && ls | paste -sd'|')
cmake -DOUT="$T/pc/web_assets.c" -DDIR=cli/web "-DFILES=$web" -P cli/embed.cmake >"$log" 2>&1 ||
    fail "cmake -P cli/embed.cmake"
mhd=$(pkg-config --cflags --libs libmicrohttpd) || fail "pkg-config libmicrohttpd"
# shellcheck disable=SC2046,SC2086
cc -std=c11 -D_GNU_SOURCE $CFLAGS_STRICT -I cli $(find cli -name '*.c' | sort) \
    "$T/pc/web_assets.c" $pc $mhd -pthread -lm -Wl,-rpath,"$libdir" -o "$T/pc/skipq" \
    >"$log" 2>&1 || fail "cc cli/*.c \$(pkg-config --cflags --libs skipq json-c libmicrohttpd)"
loads_prefix "$T/pc/skipq"
"$T/pc/skipq" --version >"$log" 2>&1 || fail "skipq --version"

# Embedding compiles the library again, inside the user's project.
step "add_subdirectory: tests/consume/"
cmake -S tests/consume -B "$T/sub" >"$log" 2>&1 || fail "configure tests/consume"
cmake --build "$T/sub" -j2 >"$log" 2>&1 || fail "build tests/consume"
"$T/sub/consume_shared" >"$log" 2>&1 && "$T/sub/consume_static" >"$log" 2>&1 ||
    fail "run tests/consume"
step "FetchContent: tests/consume/"
cmake -S tests/consume -B "$T/fetch" -DCONSUME_FETCHCONTENT=ON >"$log" 2>&1 ||
    fail "configure tests/consume with FetchContent"
cmake --build "$T/fetch" -j2 --target consume_shared >"$log" 2>&1 ||
    fail "build tests/consume with FetchContent"
"$T/fetch/consume_shared" >"$log" 2>&1 || fail "run tests/consume (FetchContent)"

echo "consume.sh: passed in $((SECONDS - t0)) s"
