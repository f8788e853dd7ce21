#!/usr/bin/env bash
# pgbouncer.sh - a private PgBouncer in transaction pooling mode in front
# of a test cluster (tests/pg.sh), for the pooler tests.
#
#   tests/pgbouncer.sh start DIR PGPORT [DB]  start it on a free port and
#       print that port. Databases: every name maps to the same database
#       of the cluster, in pools of 4 server sessions; DB (if given) is
#       also reachable as "one", a pool of a single server session that
#       every client shares (a test can make a client meet another's
#       prepared statements there), and as "session", in session pooling.
#   tests/pgbouncer.sh stop DIR               stop it (no-op if not running)
#
# PgBouncer refuses to run as root: as root it runs as 'postgres', as the
# cluster does. Clients connect to 127.0.0.1 as user postgres (trust).
set -euo pipefail
RUNAS=postgres
die() { echo "pgbouncer.sh: $*" >&2; exit 1; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u "$RUNAS" -- "$@"; else "$@"; fi; }
command -v pgbouncer >/dev/null || die "pgbouncer is not installed (Debian package pgbouncer)"

case "${1:-}" in
start)
    dir=$2 pgport=$3 db=${4:-}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    port=$("$(dirname "$0")/pg.sh" free-port)
    printf '"postgres" ""\n' >"$dir/userlist.txt"
    cat >"$dir/pgbouncer.ini" <<INI
[databases]
${db:+one = host=127.0.0.1 port=$pgport dbname=$db pool_size=1}
${db:+session = host=127.0.0.1 port=$pgport dbname=$db pool_mode=session}
* = host=127.0.0.1 port=$pgport
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 500
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
    [ "$(id -u)" -ne 0 ] || chown -R "$RUNAS": "$dir"
    as_pg pgbouncer -d "$dir/pgbouncer.ini" || { cat "$dir/pgbouncer.log" >&2 || true; die "could not start"; }
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; exit 0; fi
        sleep 0.05
    done
    cat "$dir/pgbouncer.log" >&2 || true
    die "not listening on port $port"
    ;;
stop)
    dir=$2
    if [ -f "$dir/pgbouncer.pid" ]; then
        kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true
        rm -f "$dir/pgbouncer.pid"
    fi
    ;;
*) die "usage: pgbouncer.sh start DIR PGPORT [DB] | stop DIR" ;;
esac
