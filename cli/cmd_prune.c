/*
 * cmd_prune.c - `skipq prune`: delete finished jobs older than a duration,
 * one bounded batch per transaction (skipq.prune), until a batch deletes
 * nothing.
 *
 * Batches keep each transaction short: one DELETE of a million rows would
 * hold its locks and bloat for its whole run while workers keep claiming
 * from the same table.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: skipq prune --older-than D [--status S[,S]] [--batch N]\n"
    "\n"
    "Delete finished jobs not updated for D (e.g. 7d), in batches of N rows\n"
    "(default 5000), each its own transaction. Prints how many it deleted.\n"
    "\n"
    "  --older-than D    required\n"
    "  --status S        succeeded, cancelled, failed (comma-separated;\n"
    "                    default succeeded,cancelled)\n"
    "  --batch N         rows per transaction (1 to 2147483647)\n"
    "\n"
    "With both succeeded and cancelled, it also drops the partitions of the\n"
    "archive (skipq.jobs_done) that ended D ago or earlier, one per\n"
    "transaction, and says how many.\n";

enum { OPT_OLDER = CLI_OPT_LOCAL, OPT_STATUS, OPT_BATCH };

/* Drop the archive's partitions that ended older_ms ago, oldest first,
 * one per transaction (skipq.archive_drop). */
static int
drop_archive(skipq_conn *conn, const char *older_ms)
{
    long long dropped = 0;
    for (;;) {
        PGresult *res = PQexecParams(skipq_conn_pg(conn),
                                     "SELECT skipq.archive_drop($1::float8"
                                     " * interval '1 millisecond')",
                                     1, NULL, &older_ms, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
            int rc = cli_db_fail(skipq_conn_pg(conn), res,
                                 "could not drop the archive's partitions (after %lld)",
                                 dropped);
            PQclear(res);
            return rc;
        }
        bool none = PQgetisnull(res, 0, 0);
        PQclear(res);
        if (none)
            break;
        dropped++;
    }
    if (dropped > 0)
        printf("dropped %lld archive partition%s (skipq.jobs_done)\n", dropped,
               dropped == 1 ? "" : "s");
    return CLI_EXIT_OK;
}

int
cmd_prune(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        {"older-than", required_argument, NULL, OPT_OLDER},
        {"status", required_argument, NULL, OPT_STATUS},
        {"batch", required_argument, NULL, OPT_BATCH},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    char statuses[64] = "succeeded,cancelled", older_s[24], batch_s[24];
    const char *params[3] = {older_s, statuses, batch_s};
    long long batch = 5000, total = 0, batches = 0;
    int64_t older_ms = -1;
    skipq_conn *conn = NULL;
    int c, rc;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        switch (c) {
        case OPT_OLDER:
            if ((rc = cli_parse_duration("--older-than", optarg, &older_ms)) != 0)
                return rc;
            break;
        case OPT_STATUS:
            if ((rc = cli_parse_statuses("--status", optarg,
                                         CLI_ST_SUCCEEDED | CLI_ST_CANCELLED |
                                             CLI_ST_FAILED,
                                         statuses, sizeof statuses)) != 0)
                return rc;
            break;
        case OPT_BATCH:
            if ((rc = cli_parse_int("--batch", optarg, 1, INT32_MAX, &batch)) != 0)
                return rc;
            break;
        default:
            if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
                return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error("prune takes no arguments, got \"%.64s\"", argv[optind]);
    if (older_ms < 0)
        return cli_usage_error("prune needs --older-than (e.g. 7d)");
    snprintf(older_s, sizeof older_s, "%lld", (long long)older_ms);
    snprintf(batch_s, sizeof batch_s, "%lld", batch);
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    for (;;) {
        /* autocommit: each call is its own transaction */
        PGresult *res = PQexecParams(
            skipq_conn_pg(conn),
            "SELECT skipq.prune($1::float8 * interval '1 millisecond', "
            "pg_catalog.string_to_array($2, ',')::skipq.job_status[], $3::int)",
            3, NULL, params, NULL, NULL, 0);
        long long n;
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
            rc = cli_db_fail(skipq_conn_pg(conn), res,
                             "could not prune (after deleting %lld jobs)", total);
            PQclear(res);
            goto out;
        }
        n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        if (n == 0)
            break;
        total += n;
        batches++;
    }
    printf("deleted %lld job%s in %lld batch%s\n", total, total == 1 ? "" : "s", batches,
           batches == 1 ? "" : "es");
    /* the archive holds succeeded and cancelled rows together */
    if (strstr(statuses, "succeeded") && strstr(statuses, "cancelled") &&
        (rc = drop_archive(conn, older_s)) != CLI_EXIT_OK)
        goto out;
    rc = CLI_EXIT_OK;
out:
    skipq_conn_close(conn);
    return rc;
}
