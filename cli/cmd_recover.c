/*
 * cmd_recover.c - `skipq recover`: put failed, stale queued, or orphaned
 * running jobs back to queued, runnable now, through skipq.recover().
 *
 * Everything is validated before the database is touched. A dry run comes
 * first: it is what --dry-run prints, and its count decides whether to ask
 * (a terminal) or refuse (no terminal, no --yes) before a large change.
 * skipq.recover() locks rows with SKIP LOCKED and re-checks their status,
 * so two runs at once never re-queue a row twice and a row a worker is
 * completing is left alone; the real run reports what it actually changed.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: skipq recover --status failed|queued|running [OPTIONS]\n"
    "\n"
    "Put jobs back to queued, runnable now:\n"
    "  failed    dead-letter jobs not updated for --older-than; attempts\n"
    "            reset to 0 (or --extra-attempts N), noted in their errors\n"
    "  queued    queued jobs not updated for --older-than (e.g. pushed far\n"
    "            out by backoff) become runnable now\n"
    "  running   running jobs whose worker is gone (now, not after the\n"
    "            lease); those with no attempts left become failed\n"
    "\n"
    "  --older-than D       default: the config's recover.older_than (5m)\n"
    "  --queue Q, --kind K  only these\n"
    "  --priority P         only this band (high, normal, low) or number\n"
    "  --id N               only this job (repeatable)\n"
    "  --limit N            at most N rows (default: recover.limit, 1000)\n"
    "  --extra-attempts N   failed: keep attempts, allow N more (1..1000000)\n"
    "  --dry-run            print what would change, change nothing\n"
    "  --yes                do not ask before changing more than 100 jobs\n"
    "                       (without a terminal, refuse unless given)\n";

/* --extra-attempts at most: far beyond any retry policy, and far from
 * overflowing attempts + N */
#define CLI_MAX_EXTRA_ATTEMPTS 1000000

enum {
    OPT_STATUS = CLI_OPT_LOCAL,
    OPT_OLDER,
    OPT_QUEUE,
    OPT_KIND,
    OPT_PRIORITY,
    OPT_ID,
    OPT_LIMIT,
    OPT_EXTRA,
    OPT_DRY_RUN,
    OPT_YES,
};

static const char recover_sql[] =
    "SELECT from_status::text, job_kind, jobs, to_status::text "
    "FROM skipq.recover("
    "  status => $1,"
    "  older_than => $2::float8 * interval '1 millisecond',"
    "  queue => $3, kind => $4, priority => $5,"
    "  ids => $6::int8[], lim => $7::int, dry_run => $8::boolean,"
    "  extra_attempts => $9::int,"
    "  lease => $10::float8 * interval '1 millisecond',"
    "  default_max_attempts => $11::int)";

/* Total rows in a recover() result. */
static long long
total_of(const PGresult *res)
{
    long long n = 0;
    for (int r = 0; r < PQntuples(res); r++)
        n += strtoll(PQgetvalue(res, r, 2), NULL, 10);
    return n;
}

/* Rows of a recover() result that went to (or would go to) `to`. */
static long long
total_to(const PGresult *res, const char *to)
{
    long long n = 0;
    for (int r = 0; r < PQntuples(res); r++)
        if (strcmp(PQgetvalue(res, r, 3), to) == 0)
            n += strtoll(PQgetvalue(res, r, 2), NULL, 10);
    return n;
}

/* "requeued 300 failed jobs: a 300, b 20": the rows that went to `to`,
 * per kind (kinds are a producer's text: printed escaped) */
static void
print_line(const PGresult *res, const char *to, const char *what)
{
    int first = 1;

    printf("%s", what);
    for (int r = 0; r < PQntuples(res); r++) {
        if (strcmp(PQgetvalue(res, r, 3), to) != 0)
            continue;
        fputs(first ? ": " : ", ", stdout);
        cli_print_escaped(PQgetvalue(res, r, 1), 0);
        printf(" %s", PQgetvalue(res, r, 2));
        first = 0;
    }
    putchar('\n');
}

/*
 * What recover did, or would do: the rows put back to queued, then (for
 * running jobs) those that had no attempts left and became failed, which
 * are not "requeued" and must not be counted so.
 */
static void
print_counts(const PGresult *res, const char *status, int dry_run)
{
    long long queued = total_to(res, "queued");
    long long failed = total_to(res, "failed");
    char what[160];

    snprintf(what, sizeof what, "%s %lld %s job%s",
             dry_run ? "would requeue" : "requeued", queued, status,
             queued == 1 ? "" : "s");
    print_line(res, "queued", what);
    if (failed > 0) {
        snprintf(what, sizeof what,
                 "%s %lld %s job%s failed (no attempts left)",
                 dry_run ? "would mark" : "marked", failed, status,
                 failed == 1 ? "" : "s");
        print_line(res, "failed", what);
    }
}

static PGresult *
run_recover(PGconn *pg, const char *const *params, int dry_run)
{
    const char *p[11];

    memcpy(p, params, sizeof p);
    p[7] = dry_run ? "true" : "false";
    return PQexecParams(pg, recover_sql, 11, NULL, p, NULL, NULL, 0);
}

/* Ask on the terminal; true for y/yes. */
static int
confirm(long long n)
{
    char answer[16] = "";

    fprintf(stderr, "requeue %lld jobs? [y/N] ", n);
    fflush(stderr);
    if (!fgets(answer, sizeof answer, stdin))
        return 0;
    return strcmp(answer, "y\n") == 0 || strcmp(answer, "yes\n") == 0 ||
           strcmp(answer, "Y\n") == 0;
}

int
cmd_recover(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        {"status", required_argument, NULL, OPT_STATUS},
        {"older-than", required_argument, NULL, OPT_OLDER},
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"kind", required_argument, NULL, OPT_KIND},
        {"priority", required_argument, NULL, OPT_PRIORITY},
        {"id", required_argument, NULL, OPT_ID},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"extra-attempts", required_argument, NULL, OPT_EXTRA},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"yes", no_argument, NULL, OPT_YES},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    const char *status = NULL, *queue = NULL, *kind = NULL, *prio = NULL;
    const char *older = NULL;
    int64_t older_ms = 0, *ids = NULL;
    size_t nids = 0;
    long long limit = -1, extra = 0, n;
    int dry_run = 0, yes = 0, c, rc;
    int16_t prio_value;
    char older_s[24], limit_s[24], extra_s[24], lease_s[24], max_s[24];
    char *ids_lit = NULL;
    skipq_conn *conn = NULL;
    PGresult *res = NULL;
    PGconn *pg;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c != OPT_ID && (rc = cli_once(ctx, longopts, c)) != 0)
            goto out;
        switch (c) {
        case OPT_STATUS:
            status = optarg;
            break;
        case OPT_OLDER:
            older = optarg;
            break;
        case OPT_QUEUE:
            queue = optarg;
            break;
        case OPT_KIND:
            kind = optarg;
            break;
        case OPT_PRIORITY:
            prio = optarg;
            break;
        case OPT_ID: {
            int64_t id, *more;
            if ((rc = cli_parse_id(optarg, &id)) != 0)
                goto out;
            more = realloc(ids, (nids + 1) * sizeof *ids);
            if (!more) {
                rc = cli_errorf(CLI_EXIT_FAIL, "out of memory");
                goto out;
            }
            ids = more;
            ids[nids++] = id;
            break;
        }
        case OPT_LIMIT:
            if ((rc = cli_parse_int("--limit", optarg, 1, INT32_MAX, &limit)) !=
                0)
                goto out;
            break;
        case OPT_EXTRA:
            /* max_attempts becomes attempts + N, an int: a bound here
             * refuses what only the real run would have failed on */
            if ((rc = cli_parse_int("--extra-attempts", optarg, 1,
                                    CLI_MAX_EXTRA_ATTEMPTS, &extra)) != 0)
                goto out;
            break;
        case OPT_DRY_RUN:
            dry_run = 1;
            break;
        case OPT_YES:
            yes = 1;
            break;
        default:
            if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
                goto out;
        }
    }
    if (optind < argc) {
        rc = cli_usage_error("recover takes no arguments, got \"%.64s\"",
                             argv[optind]);
        goto out;
    }
    if (!status) {
        rc = cli_usage_error("recover needs --status failed, queued or "
                             "running");
        goto out;
    }
    if (strcmp(status, "failed") != 0 && strcmp(status, "queued") != 0 &&
        strcmp(status, "running") != 0) {
        rc = cli_usage_error("--status: unrecognized status \"%.64s\": use "
                             "failed, queued or running",
                             status);
        goto out;
    }
    if (extra && strcmp(status, "failed") != 0) {
        rc = cli_usage_error("--extra-attempts applies to --status failed "
                             "only");
        goto out;
    }
    if (older && (rc = cli_parse_duration("--older-than", older,
                                          &older_ms)) != 0)
        goto out;
    if (prio && (rc = cli_parse_priority("--priority", prio, &prio_value)) !=
                    0)
        goto out;
    if (queue && (rc = cli_check_name("queue", queue)) != 0)
        goto out;
    if (kind && (rc = cli_check_name("kind", kind)) != 0)
        goto out;
    if ((rc = cli_load(ctx)) != 0)
        goto out;
    if (!older)
        older_ms = skipq_config_recover_older_than(ctx->cfg);
    if (limit < 0)
        limit = skipq_config_recover_limit(ctx->cfg);
    if (nids && (rc = cli_ids_literal(ids, nids, &ids_lit)) != 0)
        goto out;

    snprintf(older_s, sizeof older_s, "%lld", (long long)older_ms);
    snprintf(limit_s, sizeof limit_s, "%lld", limit);
    snprintf(extra_s, sizeof extra_s, "%lld", extra);
    snprintf(lease_s, sizeof lease_s, "%lld",
             (long long)skipq_config_lease_timeout(ctx->cfg));
    snprintf(max_s, sizeof max_s, "%d", skipq_config_max_attempts(ctx->cfg));
    const char *params[11] = {status, older_s, queue,  kind,
                              prio,   ids_lit, limit_s, NULL,
                              extra ? extra_s : NULL, lease_s, max_s};

    if ((rc = cli_connect(ctx, &conn)) != 0)
        goto out;
    pg = skipq_conn_pg(conn);

    res = run_recover(pg, params, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = cli_db_fail(pg, res, "could not recover %s jobs", status);
        goto out;
    }
    n = total_of(res);
    if (dry_run || n == 0) {
        print_counts(res, status, dry_run);
        rc = CLI_EXIT_OK;
        goto out;
    }
    if (n > CLI_CONFIRM_THRESHOLD && !yes) {
        if (!isatty(STDIN_FILENO)) {
            rc = cli_errorf(CLI_EXIT_FAIL,
                            "recover would requeue %lld %s jobs, more than %d: "
                            "pass --yes to confirm (nothing changed)",
                            n, status, CLI_CONFIRM_THRESHOLD);
            goto out;
        }
        if (!confirm(n)) {
            rc = cli_errorf(CLI_EXIT_FAIL, "not confirmed; nothing changed");
            goto out;
        }
    }
    PQclear(res);
    res = run_recover(pg, params, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = cli_db_fail(pg, res, "could not recover %s jobs", status);
        goto out;
    }
    print_counts(res, status, 0);
    rc = CLI_EXIT_OK;
out:
    PQclear(res);
    skipq_conn_close(conn);
    free(ids_lit);
    free(ids);
    return rc;
}
