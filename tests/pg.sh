#!/usr/bin/env bash
# pg.sh - a private, throwaway PostgreSQL cluster for tests and the demo.
#
#   tests/pg.sh start DIR    initdb DIR (first time), start it on a free port,
#                            print "export SKIPQ_TEST_PG=...; export PG...=..."
#   tests/pg.sh stop DIR     immediate shutdown (no-op when not running)
#   tests/pg.sh restart DIR [fast|immediate]
#   tests/pg.sh url DIR [DB] the libpq URL of the running cluster
#   tests/pg.sh log DIR      print the server log
#   tests/pg.sh destroy DIR  stop and delete DIR
#   tests/pg.sh free-port    print a TCP port no one listens on
#   tests/pg.sh standby DIR PRIMARY_DIR
#                            a streaming replica of the cluster in PRIMARY_DIR
#                            (pg_basebackup -R) in DIR, started on a free
#                            port; prints the exports as start does
#   tests/pg.sh promote DIR  promote the standby in DIR to a primary
#
# The server refuses to run as root, so as root every server-side command
# runs as the unprivileged 'postgres' user (created by Debian's
# postgresql-common; created here if missing) through runuser. Clients
# connect over TCP on 127.0.0.1 with trust authentication.
# fsync is off: these clusters hold nothing worth keeping, and tests run
# several times faster. Benchmarks use their own settings (bench/).
set -euo pipefail

PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
RUNAS=postgres

die() { echo "pg.sh: $*" >&2; exit 1; }
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL server found under /usr/lib/postgresql (install postgresql)"

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u "$RUNAS" -- "$@"; else "$@"; fi
}

ensure_user() {
    [ "$(id -u)" -eq 0 ] || return 0
    id "$RUNAS" >/dev/null 2>&1 ||
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash "$RUNAS"
}

# A port no one listens on, below the kernel's ephemeral range: a port in
# that range can be taken at any moment as the local end of an outgoing
# connection (the suite opens hundreds), and then the server cannot bind
# it, at start or after a restart (seen in CI: "Address already in use").
free_port() {
    local p low
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$low" -gt 12000 ] 2>/dev/null || low=32768
    for _ in $(seq 1 200); do
        p=$(( 10000 + RANDOM % (low - 10000) ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    die "could not find a free TCP port"
}

port_of() { sed -n 's/^port = \([0-9]*\)$/\1/p' "$1/data/postgresql.conf" | tail -1; }

running() { [ -f "$1/data/PG_VERSION" ] && as_pg "$PGBIN/pg_ctl" -D "$1/data" status >/dev/null 2>&1; }

cmd_start() {
    local dir=$1 port
    ensure_user
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        mkdir -p "$dir/sock"
        [ "$(id -u)" -ne 0 ] || chown -R "$RUNAS": "$dir"
        chmod 700 "$dir"
        # the postgres user must be able to reach DIR through its parents
        [ "$(id -u)" -ne 0 ] || { local d=$dir; while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done; }
        as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
            --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
        port=$(free_port)
        cat >>"$dir/data/postgresql.conf" <<EOF
# ---- skipq test cluster ----
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
max_connections = 300
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 2GB
log_min_messages = warning
log_checkpoints = off
log_line_prefix = '%m [%p] '
EOF
    fi
    if ! running "$dir"; then
        as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
            { cat "$dir/server.log" >&2; die "could not start the server in $dir"; }
    fi
    port=$(port_of "$dir")
    echo "export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres"
    echo "export SKIPQ_TEST_PG=postgresql://postgres@127.0.0.1:$port/postgres"
}

cmd_standby() {
    local dir=$1 primary=$2 port
    ensure_user
    mkdir -p "$dir/sock"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" -ne 0 ] || chown -R "$RUNAS": "$dir"
    chmod 700 "$dir"
    [ "$(id -u)" -ne 0 ] || { local d=$dir; while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done; }
    as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$(port_of "$primary")" -U postgres \
        -D "$dir/data" -R -X stream -c fast >"$dir/basebackup.log" 2>&1 ||
        { cat "$dir/basebackup.log" >&2; die "pg_basebackup failed"; }
    port=$(free_port)
    printf "# ---- the standby's own ----\nport = %s\nunix_socket_directories = '%s/sock'\n" \
        "$port" "$dir" | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
        { cat "$dir/server.log" >&2; die "could not start the standby in $dir"; }
    echo "export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres"
    echo "export SKIPQ_TEST_PG=postgresql://postgres@127.0.0.1:$port/postgres"
}

cmd_stop() {
    local dir=$1
    if running "$dir"; then as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m "${2:-immediate}" -w stop >/dev/null; fi
}

cmd_restart() {
    local dir=$1 mode=${2:-fast}
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m "$mode" -w stop >/dev/null
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
}

cmd=${1:-}; dir=${2:-}
if [ "$cmd" = free-port ]; then free_port; exit 0; fi  # for tests/pgbouncer.sh
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: pg.sh start|stop|restart|url|log|destroy|standby|promote DIR"
case "$cmd" in
    start) cmd_start "$dir" ;;
    stop) cmd_stop "$dir" "${3:-immediate}" ;;
    restart) cmd_restart "$dir" "${3:-fast}" ;;
    url) echo "postgresql://postgres@127.0.0.1:$(port_of "$dir")/${3:-postgres}" ;;
    log) cat "$dir/server.log" 2>/dev/null || true ;;
    destroy) cmd_stop "$dir"; rm -rf "$dir" ;;
    standby) cmd_standby "$dir" "${3:?pg.sh standby DIR PRIMARY_DIR}" ;;
    promote) as_pg "$PGBIN/pg_ctl" -D "$dir/data" -w -t 60 promote >/dev/null ;;
    *) die "unknown command '$cmd'" ;;
esac
