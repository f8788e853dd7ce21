#!/usr/bin/env bash
# package.sh - build the Debian packages from an existing build, install
# them with apt on this machine, use them as an operator and a C
# programmer would, and remove them again:
#   1. cmake --build BUILD --target package   (BUILD/*.deb, cmake/packaging.cmake)
#   2. apt-get install ./BUILD/*.deb
#   3. /usr/bin/skipq migrate, enqueue, worker --once against a throwaway
#      database: the job succeeded
#   4. man skipq-worker and skipq.yaml(5), the bash completion, the
#      systemd units (systemd-analyze verify, where there is one), the
#      skipq user
#   5. a C program built with pkg-config --cflags --libs skipq runs
#      against /usr/lib's libskipq
#   6. apt-get purge the packages and whatever the install pulled in
#
#   scripts/package.sh BUILD_DIR
# Needs root (or sudo), dpkg-dev and man-db (scripts/deps.sh), and a
# PostgreSQL in the PG* environment (scripts/test.sh --package starts one).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ $# -eq 1 ] || { echo "usage: scripts/package.sh BUILD_DIR" >&2; exit 2; }
B=$(realpath "$1")
[ -f "$B/CMakeCache.txt" ] || { echo "package.sh: $B is not a build directory" >&2; exit 2; }
t0=$SECONDS
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
pkgs=(libskipq0 libskipq-dev skipq)

T=$(mktemp -d /tmp/skipq-package.XXXXXX)
log=$T/log
db=skipq_package_$$
step() { echo "package.sh: [$((SECONDS - t0)) s] $*"; }
fail() { cat "$log" >&2; echo "package.sh: FAILED: $*" >&2; exit 1; }
installed() { dpkg-query -W -f='${binary:Package} ${Status}\n' 2>/dev/null |
    awk '$NF == "installed" { sub(/:.*/, "", $1); print $1 }' | sort; }
# is_installed PKG (not `installed | grep -q`: grep's early exit would
# fail the pipeline under pipefail)
is_installed() { installed >"$T/now"; grep -qx "$1" "$T/now"; }

for p in "${pkgs[@]}"; do
    if is_installed "$p"; then
        echo "package.sh: $p is installed already: this test installs and purges" \
            "it, so remove it first (apt-get purge ${pkgs[*]})" >&2
        exit 1
    fi
done
installed >"$T/before"
# Whatever happens, leave the machine as it was: the packages and what
# apt pulled in for them purged, the database dropped.
cleanup() {
    installed >"$T/after" || true
    mapfile -t new < <(comm -13 "$T/before" "$T/after")
    if [ ${#new[@]} -gt 0 ]; then
        $SUDO apt-get purge -y -qq "${new[@]}" >"$T/purge.log" 2>&1 ||
            { cat "$T/purge.log" >&2; echo "package.sh: could not purge ${new[*]}" >&2; }
    fi
    psql -XqAt -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
}
trap 'cleanup; rm -rf "$T"' EXIT

step "cmake --build $B --target package"
rm -f "$B"/*.deb
cmake --build "$B" --target package >"$log" 2>&1 || fail "cmake --build --target package"
debs=("$B"/*.deb)
[ ${#debs[@]} -eq 3 ] || { ls "$B"/*.deb >"$log" 2>&1; fail "expected 3 packages"; }

step "apt-get install ${debs[*]##*/}"
$SUDO apt-get install -y -qq --no-install-recommends "${debs[@]}" >"$log" 2>&1 ||
    fail "apt-get install"
for p in "${pkgs[@]}"; do is_installed "$p" || fail "$p is not installed"; done

step "the skipq user and /etc/skipq"
getent passwd skipq >"$log" || fail "postinst made no skipq user"
[ "$(stat -c '%U:%G %a' /etc/skipq)" = "root:skipq 750" ] ||
    { stat /etc/skipq >"$log" 2>&1; fail "/etc/skipq is not root:skipq 750"; }

step "/usr/bin/skipq: migrate, enqueue, worker --once"
psql -XqAt -c "CREATE DATABASE $db" >"$log" 2>&1 || fail "create database $db"
url="${SKIPQ_TEST_PG%/*}/$db"
[ "$(command -v skipq)" = /usr/bin/skipq ] || { command -v skipq >"$log"; fail "skipq is not /usr/bin/skipq"; }
/usr/bin/skipq migrate --database "$url" >"$log" 2>&1 || fail "skipq migrate"
id=$(/usr/bin/skipq enqueue k '{"n": 1}' --database "$url" 2>"$log") || fail "skipq enqueue"
/usr/bin/skipq worker --once --handler k=true --database "$url" >"$log" 2>&1 ||
    fail "skipq worker --once"
/usr/bin/skipq jobs show "$id" --json --database "$url" >"$log" 2>&1 || fail "skipq jobs show"
grep -q '"status": *"succeeded"' "$log" || fail "job $id did not succeed"

step "man pages, completion, systemd units"
if grep -qs '^path-exclude.*/usr/share/man' /etc/dpkg/dpkg.cfg.d/*; then
    # slim images tell dpkg to drop every man page: read the package's
    step "(dpkg here excludes /usr/share/man: the pages are read from the .deb)"
    dpkg-deb -x "$B"/skipq_*.deb "$T/x"
    worker_page=(-l "$T/x/usr/share/man/man1/skipq-worker.1")
    yaml_page=(-l "$T/x/usr/share/man/man5/skipq.yaml.5")
else
    man -w skipq skipq-worker skipq-migrate skipq.yaml >"$log" 2>&1 || fail "man -w"
    worker_page=(skipq-worker)
    yaml_page=(5 skipq.yaml)
fi
# every page, as groff sees it: no warning (a stray control character, a
# broken escape from a help text)
for page in $(dpkg-deb -c "$B"/skipq_*.deb | awk '$6 ~ /\/man\/man[1-9]\/.*\.[1-9]$/ { print $6 }'); do
    [ -d "$T/x" ] || dpkg-deb -x "$B"/skipq_*.deb "$T/x"
    groff -man -ww -z -Tutf8 "$T/x/${page#./}" >"$log" 2>&1 && [ ! -s "$log" ] ||
        fail "groff warns about ${page##*/}"
done
MANPAGER=cat MANWIDTH=80 man "${worker_page[@]}" 2>"$log" | grep -q -- '--concurrency' ||
    fail "man skipq-worker shows no --concurrency"
MANPAGER=cat MANWIDTH=80 man "${yaml_page[@]}" 2>"$log" | grep -q 'worker.shutdown_timeout' ||
    fail "man 5 skipq.yaml shows no worker.shutdown_timeout"
bash -c '. /usr/share/bash-completion/completions/skipq; complete -p skipq' >"$log" 2>&1 &&
    grep -q -- '-F _skipq skipq' "$log" || fail "no bash completion for skipq"
bash -c '. /usr/share/bash-completion/completions/skipq
    COMP_WORDS=(skipq wor); COMP_CWORD=1; _skipq; echo "${COMPREPLY[*]}"' >"$log" 2>&1 &&
    grep -qx worker "$log" || fail "skipq wor<TAB> does not complete to worker"
[ -f /usr/share/zsh/vendor-completions/_skipq ] || fail "no zsh completion"
if command -v systemd-analyze >/dev/null; then
    # units under test, by path: the template as an instance of itself
    cp /usr/lib/systemd/system/skipq-worker@.service "$T/skipq-worker@default.service"
    systemd-analyze verify "$T/skipq-worker@default.service" \
        /usr/lib/systemd/system/skipq-serve.service >"$log" 2>&1 || fail "systemd-analyze verify"
    if [ -s "$log" ]; then fail "systemd-analyze verify warns"; fi
else
    step "(no systemd-analyze here: the units are not verified)"
fi

step "a C program built with pkg-config --cflags --libs skipq"
cat >"$T/v.c" <<'EOF'
#include <skipq.h>
#include <stdio.h>
#include <string.h>

int
main(void)
{
    printf("%s\n", skipq_version());
    return strcmp(skipq_version(), SKIPQ_VERSION) != 0;
}
EOF
# shellcheck disable=SC2046 # pkg-config's output is a list of words
cc -std=c11 -Wall -Wextra -Werror "$T/v.c" $(pkg-config --cflags --libs skipq) -o "$T/v" \
    >"$log" 2>&1 || fail "cc \$(pkg-config --cflags --libs skipq)"
"$T/v" >"$log" 2>&1 || fail "the program built against libskipq-dev"
got=$(ldd "$T/v" | awk '$1 ~ /^libskipq\.so/ { print $3 }')
want=$(dpkg -L libskipq0 | grep 'libskipq\.so\.0$')
[ -n "$got" ] && [ "$(realpath "$got")" = "$(realpath "$want")" ] ||
    { ldd "$T/v" >"$log"; fail "the program loads libskipq from \"$got\", not libskipq0's $want"; }

step "apt-get purge"
trap 'rm -rf "$T"' EXIT
cleanup
for p in "${pkgs[@]}"; do
    ! is_installed "$p" || { echo "$p still installed" >"$log"; fail "purge"; }
done
! getent passwd skipq >/dev/null || { echo "user skipq left" >"$log"; fail "purge"; }
echo "package.sh: passed in $((SECONDS - t0)) s"
