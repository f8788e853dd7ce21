/*
 * cmd_jobs_act.c - `skipq jobs retry|cancel|delete`: acting on jobs
 * named by id, or (retry, cancel) on every job a filter matches.
 *
 * Each run reads the jobs' statuses under a row lock in the same
 * transaction as skipq.retry()/skipq.cancel()/skipq.delete_jobs(), so
 * what it prints ("was failed", "already succeeded") is what the change
 * saw, not a guess from a second query that a worker could have raced.
 * With a filter, the rows are chosen and locked first; --dry-run prints
 * them and rolls back, and a real run changes exactly the rows it
 * locked (test bulk_dry_run_changes_nothing_and_the_run_changes_its_set).
 */
#include "cli.h"
#include "queries.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    OPT_STATUS = CLI_OPT_LOCAL,
    OPT_QUEUE,
    OPT_KIND,
    OPT_LIMIT,
    OPT_DRY_RUN,
    OPT_YES,
};

/* What the command line asked for. */
struct act_opts {
    enum cli_act act;
    const char *what; /* "retry", "cancel", "delete" */
    int64_t *ids;     /* by id: owned */
    size_t nids;
    char statuses[96];
    const char *status_arg, *queue, *kind;
    struct cli_job_filter f;
    long long limit; /* 0: none */
    int dry_run, yes;
};

/* Parse ID... into a malloc'd array. */
static int
parse_ids(int argc, char **argv, struct act_opts *o)
{
    int rc;

    if (argc < 1)
        return 0;
    if (!(o->ids = calloc((size_t)argc, sizeof *o->ids)))
        return cli_errorf(CLI_EXIT_FAIL, "out of memory");
    for (int i = 0; i < argc; i++)
        if ((rc = cli_parse_id(argv[i], &o->ids[i])) != 0)
            return rc;
    o->nids = (size_t)argc;
    return 0;
}

static int
parse_options(int argc, char **argv, struct cli_ctx *ctx, const char *usage,
              struct act_opts *o)
{
    static const struct option longopts[] = {
        {"status", required_argument, NULL, OPT_STATUS},
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"kind", required_argument, NULL, OPT_KIND},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"yes", no_argument, NULL, OPT_YES},
        CLI_FILTER_LONGOPTS,
        CLI_COMMON_LONGOPTS,
        {0},
    };
    int c, rc;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c != CLI_OPT_TAG && c != CLI_OPT_META && (rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        if ((rc = cli_filter_opt(&o->f, c, optarg)) != CLI_NEXT) {
            if (rc != 0)
                return rc;
            continue;
        }
        switch (c) {
        case OPT_STATUS:
            o->status_arg = optarg;
            break;
        case OPT_QUEUE:
            o->queue = optarg;
            break;
        case OPT_KIND:
            o->kind = optarg;
            break;
        case OPT_LIMIT:
            if ((rc = cli_parse_int("--limit", optarg, 1, INT32_MAX, &o->limit)) != 0)
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
    return CLI_NEXT;
}

/* Ids or a filter, not both; retry by filter names the statuses, none
 * of them running. 0, or the exit status after printing. */
static int
check_options(struct act_opts *o)
{
    int filter = o->status_arg || o->queue || o->kind || cli_filter_any(&o->f);
    int rc;

    if (o->act == CLI_ACT_DELETE && (filter || o->limit))
        return cli_usage_error("jobs delete takes job ids only");
    if (o->nids && (filter || o->limit))
        return cli_usage_error("jobs %s takes job ids or filters, not both", o->what);
    if (!o->nids && !filter)
        return cli_usage_error("jobs %s needs at least one job id (or a filter: "
                               "--status, --queue, --kind, --tag, --meta)",
                               o->what);
    if (o->act == CLI_ACT_RETRY && !o->nids && !o->status_arg)
        return cli_usage_error("jobs retry with a filter needs --status (failed, "
                               "cancelled, succeeded or queued)");
    if (o->status_arg &&
        (rc = cli_parse_statuses("--status", o->status_arg,
                                 o->act == CLI_ACT_RETRY
                                     ? CLI_ST_ALL & ~CLI_ST_RUNNING
                                     : CLI_ST_WAITING | CLI_ST_QUEUED | CLI_ST_RUNNING,
                                 o->statuses, sizeof o->statuses)) != 0)
        return rc;
    if (o->queue && (rc = cli_check_name("queue", o->queue)) != 0)
        return rc;
    if (o->kind && (rc = cli_check_name("kind", o->kind)) != 0)
        return rc;
    return 0;
}

/* The rows to act on, locked: by id, or by the filter (a cancel takes
 * only unfinished rows: a finished one has nothing to cancel). */
/* clang-format off */
static const char lock_filter_sql[] =
    "SELECT j.id, j.status::text, j.kind, j.queue FROM skipq.jobs j "
    "WHERE ($1::text IS NULL "
    "       OR j.status::text = ANY (pg_catalog.string_to_array($1, ','))) "
    "  AND ($2::boolean IS FALSE OR j.status::text NOT IN ('succeeded', 'failed', "
    "       'cancelled')) "
    "  AND ($3::text IS NULL OR j.queue = $3) "
    "  AND ($4::text IS NULL OR j.kind = $4) "
    "  AND" CLI_FILTER_SQL("$5", "$6")
    "ORDER BY j.id LIMIT $7::int8 FOR UPDATE";
/* clang-format on */

static const char *
status_of(const PGresult *res, int64_t id)
{
    return cli_row_of(res, id);
}

static PGresult *
lock_rows(PGconn *pg, const struct act_opts *o, const char *ids_lit)
{
    char limit_s[24];
    if (o->nids) {
        const char *p[1] = {ids_lit};
        return PQexecParams(pg, cli_act_lock_ids_sql, 1, NULL, p, NULL, NULL, 0);
    }
    snprintf(limit_s, sizeof limit_s, "%lld", o->limit);
    const char *p[7] = {o->status_arg ? o->statuses : NULL,
                        o->act == CLI_ACT_CANCEL ? "true" : "false",
                        o->queue,
                        o->kind,
                        cli_filter_tags(&o->f),
                        cli_filter_meta(&o->f),
                        o->limit ? limit_s : NULL};
    return PQexecParams(pg, lock_filter_sql, 7, NULL, p, NULL, NULL, 0);
}

/* What the dry run says of one locked row. */
static void
print_would(const struct act_opts *o, const PGresult *rows, int r)
{
    const char *st = PQgetvalue(rows, r, 1);
    bool running = strcmp(st, "running") == 0;
    bool finished = strcmp(st, "succeeded") == 0 || strcmp(st, "failed") == 0 ||
                    strcmp(st, "cancelled") == 0;
    const char *to = o->act == CLI_ACT_RETRY    ? "queued"
                     : o->act == CLI_ACT_DELETE ? "deleted"
                     : running                  ? "cancel requested"
                                                : "cancelled";
    if ((o->act == CLI_ACT_DELETE && running) ||
        (o->act == CLI_ACT_RETRY && !finished && strcmp(st, "queued") != 0))
        to = "unchanged";
    if (o->act == CLI_ACT_CANCEL && finished)
        to = "unchanged";
    printf("job %s: %s -> %s (queue ", PQgetvalue(rows, r, 0), st, to);
    cli_print_escaped(PQgetvalue(rows, r, 3), 0);
    fputs(", kind ", stdout);
    cli_print_escaped(PQgetvalue(rows, r, 2), 0);
    puts(")");
}

/* What the real run did to id, which was `was` (NULL: missing), going by
 * the action's result. Returns 1 when the id counts as a failure. */
static int
print_done(const struct act_opts *o, int64_t id, const char *was, const char *now)
{
    long long i = (long long)id;

    if (!was) {
        cli_errorf(0, "job %lld does not exist", i);
        return 1;
    }
    if (o->act == CLI_ACT_DELETE) {
        if (now && strcmp(now, "true") == 0) {
            printf("job %lld: deleted (was %s)\n", i, was);
            return 0;
        }
        printf("job %lld: %s; not deleted (cancel it first)\n", i, was);
        return 1;
    }
    if (o->act == CLI_ACT_RETRY && now)
        printf("job %lld: %s -> %s\n", i, was, now); /* waiting: for its parents */
    else if (o->act == CLI_ACT_RETRY)
        printf("job %lld: %s; not retried\n", i, was);
    else if (now && strcmp(was, "running") == 0)
        printf("job %lld: cancel requested (running)\n", i); /* its worker stops it */
    else if (now && strcmp(now, "cancelled") == 0 && strcmp(was, "cancelled") != 0)
        printf("job %lld: cancelled\n", i);
    else
        printf("job %lld: already %s\n", i, now ? now : was);
    return 0;
}

/* Over CLI_CONFIRM_THRESHOLD rows by a filter, without --yes: ask on a
 * terminal, refuse without one. 0 to go on. */
static int
confirm_many(const struct act_opts *o, int n)
{
    char answer[16] = "";

    if (o->nids || o->dry_run || o->yes || n <= CLI_CONFIRM_THRESHOLD)
        return 0;
    if (!isatty(STDIN_FILENO))
        return cli_errorf(CLI_EXIT_FAIL,
                          "jobs %s would change %d jobs, more than %d: pass --yes to "
                          "confirm (nothing changed)",
                          o->what, n, CLI_CONFIRM_THRESHOLD);
    fprintf(stderr, "%s %d jobs? [y/N] ", o->what, n);
    fflush(stderr);
    if (fgets(answer, sizeof answer, stdin) &&
        (strcmp(answer, "y\n") == 0 || strcmp(answer, "yes\n") == 0))
        return 0;
    return cli_errorf(CLI_EXIT_FAIL, "not confirmed; nothing changed");
}

/* The ids of the locked rows, as an int8[] literal. */
static int
rows_literal(const PGresult *rows, char **lit)
{
    int n = PQntuples(rows);
    int64_t *ids = calloc((size_t)n + 1, sizeof *ids);
    int rc;

    if (!ids)
        return cli_errorf(CLI_EXIT_FAIL, "out of memory");
    for (int r = 0; r < n; r++)
        ids[r] = strtoll(PQgetvalue(rows, r, 0), NULL, 10);
    rc = cli_ids_literal(ids, (size_t)n, lit);
    free(ids);
    return rc;
}

/* Lock, then act (or, dry, print and roll back), then report. */
static int
act(PGconn *pg, const struct act_opts *o, const char *ids_lit)
{
    PGresult *rows = NULL, *res = PQexec(pg, "BEGIN");
    char *lit = NULL;
    int rc, failed = 0, n;

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = cli_db_fail(pg, res, "could not begin");
        goto out;
    }
    PQclear(res);
    res = NULL;
    rows = lock_rows(pg, o, ids_lit);
    if (PQresultStatus(rows) != PGRES_TUPLES_OK) {
        rc = cli_db_fail(pg, rows, "could not read jobs");
        goto rollback;
    }
    n = PQntuples(rows);
    if (o->dry_run || (!o->nids && n == 0)) {
        for (int r = 0; r < n; r++)
            print_would(o, rows, r);
        if (!o->nids)
            printf("%s %d job%s; nothing changed\n",
                   n == 0 ? "no job matches: would change" : "would change", n,
                   n == 1 ? "" : "s");
        for (size_t i = 0; i < o->nids; i++) {
            if (!status_of(rows, o->ids[i])) {
                cli_errorf(0, "job %lld does not exist", (long long)o->ids[i]);
                failed++;
            }
        }
        rc = failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
        goto rollback;
    }
    if ((rc = confirm_many(o, n)) != 0 || (rc = rows_literal(rows, &lit)) != 0)
        goto rollback;
    const char *p[1] = {o->nids ? ids_lit : lit};
    res = PQexecParams(pg, cli_act_sql[o->act], 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = cli_db_fail(pg, res, "could not %s jobs", o->what);
        goto rollback;
    }
    /* nothing is reported done before the commit says so */
    char commit_what[16];
    snprintf(commit_what, sizeof commit_what, "the %s", o->what);
    if ((rc = cli_commit(pg, commit_what)) != 0)
        goto out;
    if (o->nids) {
        for (size_t i = 0; i < o->nids; i++)
            failed += print_done(o, o->ids[i], status_of(rows, o->ids[i]),
                                 cli_row_of(res, o->ids[i]));
    } else {
        for (int r = 0; r < n; r++) {
            int64_t id = strtoll(PQgetvalue(rows, r, 0), NULL, 10);
            failed += print_done(o, id, PQgetvalue(rows, r, 1), cli_row_of(res, id));
        }
    }
    rc = failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
    goto out;
rollback:
    PQclear(PQexec(pg, "ROLLBACK"));
out:
    PQclear(rows);
    PQclear(res);
    free(lit);
    return rc;
}

int
cmd_jobs_act(int argc, char **argv, struct cli_ctx *ctx)
{
    static const char usage[] =
        "usage: skipq jobs retry|cancel ID... [--dry-run]\n"
        "       skipq jobs retry|cancel FILTERS [--limit N] [--dry-run] [--yes]\n"
        "       skipq jobs delete ID... [--dry-run]\n"
        "\n"
        "  FILTERS (all must match):\n"
        "    --status S[,S]   retry: failed, cancelled, succeeded, queued\n"
        "                     (required); cancel: waiting, queued, running\n"
        "    --queue Q, --kind K\n"
        "    --tag T          has tag T (repeatable: every one)\n"
        "    --meta KEY=VALUE meta contains it (repeatable; VALUE is JSON\n"
        "                     when it parses as JSON, else a string)\n"
        "  --limit N          at most N jobs, lowest ids first\n"
        "  --dry-run          print what would change, change nothing\n"
        "  --yes              do not ask before changing more than 100 jobs\n"
        "                     by a filter (without a terminal, refuse unless\n"
        "                     given)\n"
        "\n"
        "delete removes jobs for good; a running job is not deleted (cancel\n"
        "it first). exit status 1 when an id does not exist or was not\n"
        "deleted\n";
    struct act_opts o = {.act = strcmp(argv[0], "retry") == 0    ? CLI_ACT_RETRY
                                : strcmp(argv[0], "cancel") == 0 ? CLI_ACT_CANCEL
                                                                 : CLI_ACT_DELETE,
                         .what = argv[0]};
    char *lit = NULL;
    skipq_conn *conn = NULL;
    int rc;

    if ((rc = parse_options(argc, argv, ctx, usage, &o)) != CLI_NEXT)
        goto out;
    if ((rc = parse_ids(argc - optind, argv + optind, &o)) != 0 ||
        (rc = check_options(&o)) != 0)
        goto out;
    if (o.nids && (rc = cli_ids_literal(o.ids, o.nids, &lit)) != 0)
        goto out;
    if ((rc = cli_connect(ctx, &conn)) != 0)
        goto out;
    rc = act(skipq_conn_pg(conn), &o, lit);
out:
    skipq_conn_close(conn);
    cli_filter_free(&o.f);
    free(lit);
    free(o.ids);
    return rc;
}
