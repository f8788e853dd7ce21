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
#include <string.h>

static const char usage[] =
    "usage: skipq migrate [--status | --roles] [--lock-timeout D] [--database URL]\n"
    "                     [--config F]\n"
    "\n"
    "Apply the schema migrations this skipq knows and the database lacks,\n"
    "each in its own transaction, then (re)create the SQL functions and\n"
    "views. Prints \"applied NNNN_name\" per migration, or \"schema is up\n"
    "to date\".\n"
    "\n"
    "  --status    list every migration: applied, pending, or unknown\n"
    "              (in the database but not in this skipq); changes nothing\n"
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

int
cmd_migrate(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        {"status", no_argument, NULL, 's'},
        {"roles", no_argument, NULL, 'r'},
        {"lock-timeout", required_argument, NULL, 'L'},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    skipq_error err = {0};
    skipq_conn *conn = NULL;
    int status = 0, roles = 0, c, rc;
    int64_t lock_ms = 0;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == 's' || c == 'r') {
            *(c == 's' ? &status : &roles) = 1;
            continue;
        }
        if (c == 'L') {
            if ((rc = cli_parse_duration("--lock-timeout", optarg, &lock_ms)) != 0)
                return rc;
            if (lock_ms <= 0)
                return cli_usage_error("--lock-timeout must be more than 0");
            continue;
        }
        if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
            return rc;
    }
    if (optind < argc)
        return cli_usage_error("migrate takes no arguments, got \"%.64s\"", argv[optind]);
    if (status && roles)
        return cli_usage_error("give --status or --roles, not both");

    ctx->skip_schema_check = 1;
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    if (lock_ms > 0) { /* skipq_migrate waits for locks up to lock_timeout */
        char set[64];
        snprintf(set, sizeof set, "SET lock_timeout = '%lldms'", (long long)lock_ms);
        PGresult *res = PQexec(skipq_conn_pg(conn), set);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (!ok) {
            rc = cli_errorf(CLI_EXIT_FAIL, "could not set lock_timeout: %s",
                            PQerrorMessage(skipq_conn_pg(conn)));
            skipq_conn_close(conn);
            return rc;
        }
    }

    if (status) {
        struct cli_table t;
        static const char *const header[] = {"version", "name", "status"};

        cli_table_init(&t, 3);
        (void)cli_table_add(&t, header);
        if (skipq_migrate_status(conn, add_status, &t, &err) != SKIPQ_OK) {
            rc = cli_fail(&err);
        } else {
            cli_table_print(&t, 0);
            rc = CLI_EXIT_OK;
        }
        cli_table_free(&t);
    } else {
        int applied = 0;
        if (skipq_migrate(conn, &applied, print_applied, NULL, &err) != SKIPQ_OK) {
            if (strcmp(err.sqlstate, "42501") == 0) /* insufficient_privilege */
                cli_errorf(0,
                           "%s; migrate needs the owner of schema skipq "
                           "(a member of skipq_admin: docs/security.md)",
                           err.message);
            else
                cli_fail(&err);
            rc = CLI_EXIT_FAIL; /* the request was fine; the database not */
        } else {
            if (applied == 0)
                printf("schema is up to date\n");
            rc = CLI_EXIT_OK;
        }
        if (rc == CLI_EXIT_OK && roles) {
            if (skipq_migrate_roles(conn, &err) != SKIPQ_OK) {
                cli_fail(&err);
                rc = CLI_EXIT_FAIL;
            } else {
                printf("roles skipq_producer, skipq_worker, skipq_admin "
                       "are up to date\n");
            }
        }
    }
    skipq_conn_close(conn);
    return rc;
}
