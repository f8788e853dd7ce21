/*
 * cmd_migrate.c - `skipq migrate`: apply the migrations compiled into this
 * binary that the database lacks, or (--status) list every migration as
 * applied, pending, or unknown to this binary.
 *
 * Two migrate runs at once are safe: skipq_migrate() takes the migration
 * advisory lock and re-reads skipq.schema_migrations under it, so each
 * migration is applied once and the second run reports nothing applied.
 */
#include "cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: skipq migrate [--status | --check | --roles] [--lock-timeout D]\n"
    "                     [--database URL] [--config F]\n"
    "       skipq migrate --print-sql [--from VERSION] [--roles]\n"
    "\n"
    "Apply the schema migrations this skipq knows and the database lacks,\n"
    "each in its own transaction, then (re)create the SQL functions and\n"
    "views. Prints \"applied NNNN_name\" per migration, or \"schema is up\n"
    "to date\".\n"
    "\n"
    "  --status    list every migration: applied, pending, or unknown\n"
    "              (in the database but not in this skipq); changes nothing\n"
    "  --check     exit 0 when the schema is exactly this skipq's (every\n"
    "              migration applied, the functions its own), else 1 and\n"
    "              what differs; changes nothing\n"
    "  --print-sql print the SQL that migrate would run, for psql or your\n"
    "              own migration tool, and connect to nothing: each\n"
    "              migration after --from VERSION (default 0: all) in its\n"
    "              own transaction, then the functions and views (with\n"
    "              --roles, the roles too); then run skipq migrate --check\n"
    "  --roles     then create or update the roles skipq_producer,\n"
    "              skipq_worker and skipq_admin and their grants\n"
    "              (sql/roles.sql; needs CREATEROLE; docs/security.md)\n"
    "  --lock-timeout D  give up (exit 1, nothing changed) after waiting D\n"
    "              for a lock another session holds, such as an open\n"
    "              transaction on skipq.jobs (default 10s): claims queue\n"
    "              behind a migration that waits\n";

static void
print_applied(const skipq_migration_status *m, void *userdata)
{
    (void)userdata;
    printf("applied %s\n", m->name);
    fflush(stdout);
}

static void
add_status(const skipq_migration_status *m, void *userdata)
{
    struct cli_table *t = userdata;
    char version[16];
    const char *row[3];

    snprintf(version, sizeof version, "%04d", m->version);
    row[0] = version;
    row[1] = m->name;
    row[2] = !m->known ? "unknown (not in this skipq)" : m->applied ? "applied" : "pending";
    (void)cli_table_add(t, row);
}

/* --print-sql: the script on stdout; no database. */
static int
print_sql(long long from, int roles)
{
    skipq_error err = {0};
    char *sql = NULL;

    if (skipq_migrate_sql((int)from, roles, &sql, &err) != SKIPQ_OK)
        return cli_fail(&err);
    int ok = fputs(sql, stdout) >= 0 && fflush(stdout) == 0;
    free(sql);
    return ok ? CLI_EXIT_OK
              : cli_errorf(CLI_EXIT_FAIL, "could not write the SQL to stdout");
}

/* --check: is the schema exactly this binary's? */
static int
check_current(skipq_conn *conn)
{
    skipq_error err = {0};

    if (skipq_schema_current(conn, &err) != SKIPQ_OK)
        return cli_errorf(CLI_EXIT_FAIL, "%s", err.message);
    printf("schema is current: every migration of skipq %s is applied and the "
           "functions are its own\n",
           skipq_version());
    return CLI_EXIT_OK;
}

/* Apply, and --roles after. */
static int
apply(skipq_conn *conn, int roles)
{
    skipq_error err = {0};
    int applied = 0, rc;

    if (skipq_migrate(conn, &applied, print_applied, NULL, &err) != SKIPQ_OK) {
        if (strcmp(err.sqlstate, "42501") == 0) /* insufficient_privilege */
            cli_errorf(0,
                       "%s; migrate needs the owner of schema skipq "
                       "(a member of skipq_admin: docs/security.md)",
                       err.message);
        else
            cli_fail(&err);
        return CLI_EXIT_FAIL; /* the request was fine; the database not */
    }
    if (applied == 0)
        printf("schema is up to date\n");
    rc = CLI_EXIT_OK;
    if (roles) {
        if (skipq_migrate_roles(conn, &err) != SKIPQ_OK) {
            cli_fail(&err);
            rc = CLI_EXIT_FAIL;
        } else {
            printf("roles skipq_producer, skipq_worker, skipq_admin "
                   "are up to date\n");
        }
    }
    return rc;
}

/* --status: every migration, applied or pending or unknown. */
static int
show_status(skipq_conn *conn)
{
    skipq_error err = {0};
    struct cli_table t;
    static const char *const header[] = {"version", "name", "status"};
    int rc;

    cli_table_init(&t, 3);
    (void)cli_table_add(&t, header);
    if (skipq_migrate_status(conn, add_status, &t, &err) != SKIPQ_OK) {
        rc = cli_fail(&err);
    } else {
        cli_table_print(&t, 0);
        rc = CLI_EXIT_OK;
    }
    cli_table_free(&t);
    return rc;
}

/* lock_timeout for this session: migrate waits for locks up to it. */
static int
set_lock_timeout(skipq_conn *conn, int64_t lock_ms)
{
    char set[64];

    snprintf(set, sizeof set, "SET lock_timeout = '%lldms'", (long long)lock_ms);
    PGresult *res = PQexec(skipq_conn_pg(conn), set);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    return ok ? 0
              : cli_errorf(CLI_EXIT_FAIL, "could not set lock_timeout: %s",
                           PQerrorMessage(skipq_conn_pg(conn)));
}

enum {
    OPT_STATUS = CLI_OPT_LOCAL,
    OPT_ROLES,
    OPT_CHECK,
    OPT_PRINT_SQL,
    OPT_FROM,
    OPT_LOCK
};

int
cmd_migrate(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        {"status", no_argument, NULL, OPT_STATUS},
        {"roles", no_argument, NULL, OPT_ROLES},
        {"check", no_argument, NULL, OPT_CHECK},
        {"print-sql", no_argument, NULL, OPT_PRINT_SQL},
        {"from", required_argument, NULL, OPT_FROM},
        {"lock-timeout", required_argument, NULL, OPT_LOCK},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    skipq_conn *conn = NULL;
    int status = 0, roles = 0, check = 0, print = 0, c, rc;
    long long from = -1;
    int64_t lock_ms = 0;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_STATUS:
            status = 1;
            break;
        case OPT_ROLES:
            roles = 1;
            break;
        case OPT_CHECK:
            check = 1;
            break;
        case OPT_PRINT_SQL:
            print = 1;
            break;
        case OPT_FROM:
            if ((rc = cli_once(ctx, longopts, c)) != 0 ||
                (rc = cli_parse_int("--from", optarg, 0, 9999, &from)) != 0)
                return rc;
            break;
        case OPT_LOCK:
            if ((rc = cli_once(ctx, longopts, c)) != 0 ||
                (rc = cli_parse_duration("--lock-timeout", optarg, &lock_ms)) != 0)
                return rc;
            if (lock_ms <= 0)
                return cli_usage_error("--lock-timeout must be more than 0");
            break;
        default:
            if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
                return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error("migrate takes no arguments, got \"%.64s\"", argv[optind]);
    if (status + check + print + (roles && !print) > 1)
        return cli_usage_error("--status, --check and --print-sql each go alone (--roles "
                               "goes with a plain migrate or --print-sql)");
    if (from >= 0 && !print)
        return cli_usage_error("--from goes with --print-sql");
    if (print)
        return lock_ms > 0 ? cli_usage_error("--lock-timeout does not go with --print-sql")
                           : print_sql(from < 0 ? 0 : from, roles);

    ctx->skip_schema_check = 1;
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    if (lock_ms > 0 && (rc = set_lock_timeout(conn, lock_ms)) != 0) {
        skipq_conn_close(conn);
        return rc;
    }
    rc = status ? show_status(conn) : check ? check_current(conn) : apply(conn, roles);
    skipq_conn_close(conn);
    return rc;
}
