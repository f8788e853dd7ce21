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
#include "queries.h"

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
    "  --tag T              only jobs with tag T (repeatable: every one)\n"
    "  --meta KEY=VALUE     only jobs whose meta contains it (repeatable)\n"
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

    snprintf(what, sizeof what, "%s %lld %s job%s", dry_run ? "would requeue" : "requeued",
             queued, status, queued == 1 ? "" : "s");
    print_line(res, "queued", what);
    if (failed > 0) {
        snprintf(what, sizeof what, "%s %lld %s job%s failed (no attempts left)",
                 dry_run ? "would mark" : "marked", failed, status, failed == 1 ? "" : "s");
        print_line(res, "failed", what);
    }
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

/* What the command line asked for, validated by parse_options() and
 * check_options(); ids and ids_lit are owned. */
struct recover_opts {
    const char *status, *queue, *kind, *prio, *older;
    int64_t older_ms;
    int64_t *ids;
    size_t nids;
    char *ids_lit; /* ids as an int8[] literal; NULL: no --id */
    struct cli_job_filter f;
    long long limit, extra;
    int dry_run, yes;
};

/* recover_sql's parameters; v points into the buffers, so fill in place */
struct recover_params {
    char older_s[24], limit_s[24], extra_s[24], lease_s[24], max_s[24];
    const char *v[13];
};

/* One more --id (repeatable). 0, or the exit status after printing. */
static int
add_id(struct recover_opts *o, const char *arg)
{
    int64_t id, *more;
    int rc;

    if ((rc = cli_parse_id(arg, &id)) != 0)
        return rc;
    more = realloc(o->ids, (o->nids + 1) * sizeof *o->ids);
    if (!more)
        return cli_errorf(CLI_EXIT_FAIL, "out of memory");
    o->ids = more;
    o->ids[o->nids++] = id;
    return 0;
}

/* The options, each checked on its own. CLI_NEXT: go on; otherwise the
 * exit status to return now (0 after --help or --version). */
static int
parse_options(int argc, char **argv, struct cli_ctx *ctx, struct recover_opts *o)
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
        CLI_FILTER_LONGOPTS,
        CLI_COMMON_LONGOPTS,
        {0},
    };
    int c, rc;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c != OPT_ID && c != CLI_OPT_TAG && c != CLI_OPT_META &&
            (rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        if ((rc = cli_filter_opt(&o->f, c, optarg)) != CLI_NEXT) {
            if (rc != 0)
                return rc;
            continue;
        }
        switch (c) {
        case OPT_STATUS:
            o->status = optarg;
            break;
        case OPT_OLDER:
            o->older = optarg;
            break;
        case OPT_QUEUE:
            o->queue = optarg;
            break;
        case OPT_KIND:
            o->kind = optarg;
            break;
        case OPT_PRIORITY:
            o->prio = optarg;
            break;
        case OPT_ID:
            if ((rc = add_id(o, optarg)) != 0)
                return rc;
            break;
        case OPT_LIMIT:
            if ((rc = cli_parse_int("--limit", optarg, 1, INT32_MAX, &o->limit)) != 0)
                return rc;
            break;
        case OPT_EXTRA:
            /* max_attempts becomes attempts + N, an int: a bound here
             * refuses what only the real run would have failed on */
            if ((rc = cli_parse_int("--extra-attempts", optarg, 1, CLI_MAX_EXTRA_ATTEMPTS,
                                    &o->extra)) != 0)
                return rc;
            break;
        case OPT_DRY_RUN:
            o->dry_run = 1;
            break;
        case OPT_YES:
            o->yes = 1;
            break;
        default:
            if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
                return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error("recover takes no arguments, got \"%.64s\"", argv[optind]);
    return CLI_NEXT;
}

/*
 * The options together, then the config's defaults for those not given:
 * all before the database is touched. 0, or the exit status after
 * printing.
 */
static int
check_options(struct cli_ctx *ctx, struct recover_opts *o)
{
    int16_t prio_value;
    int rc;

    if (!o->status)
        return cli_usage_error("recover needs --status failed, queued or "
                               "running");
    if (strcmp(o->status, "failed") != 0 && strcmp(o->status, "queued") != 0 &&
        strcmp(o->status, "running") != 0)
        return cli_usage_error("--status: unrecognized status \"%.64s\": use "
                               "failed, queued or running",
                               o->status);
    if (o->extra && strcmp(o->status, "failed") != 0)
        return cli_usage_error("--extra-attempts applies to --status failed "
                               "only");
    if (o->older && (rc = cli_parse_duration("--older-than", o->older, &o->older_ms)) != 0)
        return rc;
    if (o->prio && (rc = cli_parse_priority("--priority", o->prio, &prio_value)) != 0)
        return rc;
    if (o->queue && (rc = cli_check_name("queue", o->queue)) != 0)
        return rc;
    if (o->kind && (rc = cli_check_name("kind", o->kind)) != 0)
        return rc;
    if ((rc = cli_load(ctx)) != 0)
        return rc;
    if (!o->older)
        o->older_ms = skipq_config_recover_older_than(ctx->cfg);
    if (o->limit < 0)
        o->limit = skipq_config_recover_limit(ctx->cfg);
    if (o->nids && (rc = cli_ids_literal(o->ids, o->nids, &o->ids_lit)) != 0)
        return rc;
    return 0;
}

static void
fill_params(struct recover_params *p, const struct recover_opts *o,
            const struct cli_ctx *ctx)
{
    snprintf(p->older_s, sizeof p->older_s, "%lld", (long long)o->older_ms);
    snprintf(p->limit_s, sizeof p->limit_s, "%lld", o->limit);
    snprintf(p->extra_s, sizeof p->extra_s, "%lld", o->extra);
    snprintf(p->lease_s, sizeof p->lease_s, "%lld",
             (long long)skipq_config_lease_timeout(ctx->cfg));
    snprintf(p->max_s, sizeof p->max_s, "%d", skipq_config_max_attempts(ctx->cfg));
    p->v[0] = o->status;
    p->v[1] = p->older_s;
    p->v[2] = o->queue;
    p->v[3] = o->kind;
    p->v[4] = o->prio;
    p->v[5] = o->ids_lit;
    p->v[6] = p->limit_s;
    p->v[7] = NULL; /* dry_run: run_recover() sets it */
    p->v[8] = o->extra ? p->extra_s : NULL;
    p->v[9] = p->lease_s;
    p->v[10] = p->max_s;
    p->v[11] = cli_filter_tags(&o->f);
    p->v[12] = cli_filter_meta(&o->f);
}

/*
 * More than CLI_CONFIRM_THRESHOLD rows and no --yes: ask on a terminal,
 * refuse without one. 0 to go on, or the exit status after printing.
 */
static int
confirm_large(long long n, const struct recover_opts *o)
{
    if (n <= CLI_CONFIRM_THRESHOLD || o->yes)
        return 0;
    if (!isatty(STDIN_FILENO))
        return cli_errorf(CLI_EXIT_FAIL,
                          "recover would requeue %lld %s jobs, more than %d: "
                          "pass --yes to confirm (nothing changed)",
                          n, o->status, CLI_CONFIRM_THRESHOLD);
    if (!confirm(n))
        return cli_errorf(CLI_EXIT_FAIL, "not confirmed; nothing changed");
    return 0;
}

/*
 * The dry run (all of it with --dry-run or nothing to do), the
 * confirmation, then the real run, reporting what it actually changed.
 */
static int
recover_jobs(PGconn *pg, const char *const *params, const struct recover_opts *o)
{
    PGresult *res = cli_recover_run(pg, params, 1);
    long long n;
    int rc;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = cli_db_fail(pg, res, "could not recover %s jobs", o->status);
        goto out;
    }
    n = total_of(res);
    if (o->dry_run || n == 0) {
        print_counts(res, o->status, o->dry_run);
        rc = CLI_EXIT_OK;
        goto out;
    }
    if ((rc = confirm_large(n, o)) != 0)
        goto out;
    PQclear(res);
    res = cli_recover_run(pg, params, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = cli_db_fail(pg, res, "could not recover %s jobs", o->status);
        goto out;
    }
    print_counts(res, o->status, 0);
    rc = CLI_EXIT_OK;
out:
    PQclear(res);
    return rc;
}

int
cmd_recover(int argc, char **argv, struct cli_ctx *ctx)
{
    struct recover_opts o = {.limit = -1};
    struct recover_params p;
    skipq_conn *conn = NULL;
    int rc;

    if ((rc = parse_options(argc, argv, ctx, &o)) != CLI_NEXT)
        goto out;
    if ((rc = check_options(ctx, &o)) != 0)
        goto out;
    fill_params(&p, &o, ctx);
    if ((rc = cli_connect(ctx, &conn)) != 0)
        goto out;
    rc = recover_jobs(skipq_conn_pg(conn), p.v, &o);
out:
    skipq_conn_close(conn);
    free(o.ids_lit);
    free(o.ids);
    cli_filter_free(&o.f);
    return rc;
}
