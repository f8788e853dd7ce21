/*
 * cmd_enqueue.c - `skipq enqueue KIND [JSON]`: one job, or JSON lines from
 * stdin streamed through COPY in one transaction.
 *
 * Everything the user typed is checked before the database is touched
 * (names, priority, durations, numbers, the payload). In stdin mode a bad
 * line anywhere aborts the COPY and rolls the transaction back, so the
 * input lands whole or not at all: a half-enqueued file is the failure
 * this prevents, since re-running it would duplicate the first half.
 */
#include "cli.h"
#include "queries.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: skipq enqueue KIND [JSON] [OPTIONS]\n"
    "       ... | skipq enqueue KIND [-] [OPTIONS]\n"
    "\n"
    "Add a job of KIND with payload JSON (an object; default {}) and print\n"
    "its id. Without JSON (or with -) read one payload object per line from\n"
    "stdin (blank lines skipped) and add them all in one transaction:\n"
    "a bad line anywhere writes nothing. Prints \"enqueued N jobs\".\n"
    "\n"
    "  --queue Q                queue (default \"default\")\n"
    "  --priority P             high, normal, low or -32768..32767\n"
    "  --in D                   run after D (e.g. 10m)\n"
    "  --run-at TS              run at TS (ISO 8601 / PostgreSQL timestamp)\n"
    "  --max-attempts N         attempts before the job fails (default:\n"
    "                           the worker's retry.max_attempts)\n"
    "  --timeout D              handler timeout (default: the kind's)\n"
    "  --backoff S              fixed, linear or exponential\n"
    "  --backoff-base D         first retry delay\n"
    "  --backoff-max D          retry delay cap\n"
    "\n"
    "Job control:\n"
    "  --unique-key K           no second job while one with key K is\n"
    "                           unfinished: prints the existing job's id\n"
    "  --unique-mode M          keep (default), replace (the waiting job\n"
    "                           takes this payload, run time and priority)\n"
    "                           or debounce (its run time moves out)\n"
    "  --unique-window D        the key stays taken for D after the job\n"
    "                           succeeded\n"
    "  --unique-key-from FIELD  stdin mode: each job's key is FIELD of its\n"
    "                           payload\n"
    "  --depends-on ID          wait until job ID succeeded (repeatable)\n"
    "  --run-if-parent-fails    run even if a parent fails or is cancelled\n"
    "                           (default: this job is cancelled)\n"
    "  --batch ID               a member of batch ID\n"
    "  --concurrency-key K      the key a queue's per-key limit counts\n"
    "  --meta JSON              an object of your own, stored with the job\n"
    "  --tag T                  a tag to filter jobs by (repeatable)\n";

enum {
    OPT_QUEUE = CLI_OPT_LOCAL,
    OPT_PRIORITY,
    OPT_IN,
    OPT_RUN_AT,
    OPT_MAX_ATTEMPTS,
    OPT_TIMEOUT,
    OPT_BACKOFF,
    OPT_BACKOFF_BASE,
    OPT_BACKOFF_MAX,
    OPT_UNIQUE_KEY,
    OPT_UNIQUE_MODE,
    OPT_UNIQUE_WINDOW,
    OPT_UNIQUE_KEY_FROM,
    OPT_DEPENDS_ON,
    OPT_RUN_IF_PARENT_FAILS,
    OPT_BATCH,
    OPT_CONCURRENCY_KEY,
    OPT_META,
    OPT_TAG,
};

/* the repeatable options, as the C options point at them */
#define CTL_MAX 256
struct control_args {
    int64_t depends_on[CTL_MAX];
    const char *tags[CTL_MAX];
};

/* One option of job control into o (and c, which o points into). */
static int
control_opt(int opt, const char *arg, skipq_enqueue_opts *o, struct control_args *c)
{
    long long n;
    int rc;

    switch (opt) {
    case OPT_UNIQUE_KEY:
        o->unique_key = arg;
        return 0;
    case OPT_UNIQUE_MODE:
        if (strcmp(arg, "keep") == 0)
            o->unique_mode = SKIPQ_UNIQUE_KEEP;
        else if (strcmp(arg, "replace") == 0)
            o->unique_mode = SKIPQ_UNIQUE_REPLACE;
        else if (strcmp(arg, "debounce") == 0)
            o->unique_mode = SKIPQ_UNIQUE_DEBOUNCE;
        else
            return cli_usage_error("--unique-mode: unknown mode \"%.64s\": "
                                   "use keep, replace or debounce",
                                   arg);
        return 0;
    case OPT_UNIQUE_WINDOW:
        return cli_parse_duration("--unique-window", arg, &o->unique_window_ms);
    case OPT_UNIQUE_KEY_FROM:
        o->unique_key_field = arg;
        return 0;
    case OPT_DEPENDS_ON:
        if (o->n_depends_on == CTL_MAX)
            return cli_usage_error("--depends-on: at most %d parents", CTL_MAX);
        if ((rc = cli_parse_int("--depends-on", arg, 1, INT64_MAX, &n)) != 0)
            return rc;
        c->depends_on[o->n_depends_on++] = n;
        o->depends_on = c->depends_on;
        return 0;
    case OPT_RUN_IF_PARENT_FAILS:
        o->run_if_parent_fails = 1;
        return 0;
    case OPT_BATCH:
        if ((rc = cli_parse_int("--batch", arg, 1, INT64_MAX, &n)) != 0)
            return rc;
        o->batch = n;
        return 0;
    case OPT_CONCURRENCY_KEY:
        o->concurrency_key = arg;
        return 0;
    case OPT_META:
        o->meta_json = arg;
        return 0;
    case OPT_TAG:
        if (o->n_tags == CTL_MAX)
            return cli_usage_error("--tag: at most %d tags", CTL_MAX);
        c->tags[o->n_tags++] = arg;
        o->tags = c->tags;
        return 0;
    default:
        return CLI_NEXT;
    }
}

static int
resolve_run_at(PGconn *pg, const char *ts, int64_t *us_out)
{
    char msg[1024];
    int rc = cli_run_at(pg, "--run-at", ts, us_out, msg, sizeof msg);

    return rc ? cli_errorf(rc, "%s", msg) : 0;
}

static int
exec_simple(PGconn *pg, const char *sql)
{
    PGresult *res = PQexec(pg, sql);
    int rc = 0;

    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = cli_db_fail(pg, res, "could not run %s", sql);
    PQclear(res);
    return rc;
}

/*
 * Stream stdin through one COPY inside BEGIN ... COMMIT. A bad line aborts
 * the COPY (the server fails it: no row) and rolls back. Lines are read by
 * skipq_jsonl_next, which never buffers more than the payload limit.
 */
static int
enqueue_stdin(PGconn *pg, skipq_conn *conn, const char *kind,
              const skipq_enqueue_opts *opts)
{
    skipq_error err = {0};
    skipq_copy *cp = NULL;
    skipq_jsonl *in = NULL;
    const char *line;
    size_t len;
    int64_t count = 0, existing = 0;
    int rc;

    if (isatty(STDIN_FILENO))
        fprintf(stderr, "skipq: reading one JSON object per line from stdin "
                        "(end with ctrl-d)\n");
    if ((rc = exec_simple(pg, "BEGIN")) != 0)
        return rc;
    if (skipq_jsonl_new(stdin, opts->max_payload, &in, &err) != SKIPQ_OK ||
        skipq_copy_begin(conn, opts, &cp, &err) != SKIPQ_OK) {
        rc = cli_fail(&err);
        goto rollback;
    }
    for (;;) {
        if (skipq_jsonl_next(in, &line, &len, &err) != SKIPQ_OK ||
            (line && skipq_copy_add(cp, kind, line, len, &err) != SKIPQ_OK)) {
            skipq_copy_abort(cp, "invalid input line");
            cp = NULL;
            if (err.code == SKIPQ_ERR_INVALID)
                rc = cli_errorf(CLI_EXIT_USAGE, "line %lld: %s", skipq_jsonl_lineno(in),
                                err.message);
            else
                rc = cli_fail(&err);
            goto rollback;
        }
        if (!line)
            break;
    }
    skipq_jsonl_free(in);
    in = NULL;
    rc = skipq_copy_end_counts(cp, &count, &existing, &err);
    cp = NULL;
    if (rc != SKIPQ_OK) {
        rc = cli_fail(&err);
        goto rollback;
    }
    if ((rc = cli_commit(pg, "the jobs")) != 0)
        return rc;
    printf("enqueued %lld job%s", (long long)count, count == 1 ? "" : "s");
    if (opts->unique_key_field)
        printf("; %lld unique key%s taken already", (long long)existing,
               existing == 1 ? " was" : "s were");
    printf("\n");
    return CLI_EXIT_OK;

rollback:
    skipq_jsonl_free(in);
    PQclear(PQexec(pg, "ROLLBACK"));
    return rc;
}

/* --backoff, --backoff-base, --backoff-max (any may be NULL) into o;
 * what is not given comes from the config's retry section. */
static int
backoff_opts(struct cli_ctx *ctx, const char *backoff, const char *base, const char *cap,
             skipq_enqueue_opts *o)
{
    int64_t ms;
    int rc;

    o->has_backoff = 1;
    skipq_config_get_backoff(ctx->cfg, &o->backoff, &o->backoff_base_ms, &o->backoff_max_ms,
                             NULL);
    if (backoff) {
        if (strcmp(backoff, "fixed") == 0)
            o->backoff = SKIPQ_BACKOFF_FIXED;
        else if (strcmp(backoff, "linear") == 0)
            o->backoff = SKIPQ_BACKOFF_LINEAR;
        else if (strcmp(backoff, "exponential") == 0)
            o->backoff = SKIPQ_BACKOFF_EXPONENTIAL;
        else
            return cli_usage_error("--backoff: unknown strategy \"%.64s\": "
                                   "use fixed, linear or exponential",
                                   backoff);
    }
    if (base && (rc = cli_parse_duration("--backoff-base", base, &ms)) != 0)
        return rc;
    if (base)
        o->backoff_base_ms = ms;
    if (cap && (rc = cli_parse_duration("--backoff-max", cap, &ms)) != 0)
        return rc;
    if (cap)
        o->backoff_max_ms = ms;
    return 0;
}

static const struct option longopts[] = {
    {"queue", required_argument, NULL, OPT_QUEUE},
    {"priority", required_argument, NULL, OPT_PRIORITY},
    {"in", required_argument, NULL, OPT_IN},
    {"run-at", required_argument, NULL, OPT_RUN_AT},
    {"max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"backoff", required_argument, NULL, OPT_BACKOFF},
    {"backoff-base", required_argument, NULL, OPT_BACKOFF_BASE},
    {"backoff-max", required_argument, NULL, OPT_BACKOFF_MAX},
    {"unique-key", required_argument, NULL, OPT_UNIQUE_KEY},
    {"unique-mode", required_argument, NULL, OPT_UNIQUE_MODE},
    {"unique-window", required_argument, NULL, OPT_UNIQUE_WINDOW},
    {"unique-key-from", required_argument, NULL, OPT_UNIQUE_KEY_FROM},
    {"depends-on", required_argument, NULL, OPT_DEPENDS_ON},
    {"run-if-parent-fails", no_argument, NULL, OPT_RUN_IF_PARENT_FAILS},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"concurrency-key", required_argument, NULL, OPT_CONCURRENCY_KEY},
    {"meta", required_argument, NULL, OPT_META},
    {"tag", required_argument, NULL, OPT_TAG},
    CLI_COMMON_LONGOPTS,
    {0},
};

/* One job: its id on stdout, and on stderr whether a unique key was
 * taken (test_unique.cli_says_which_happened). */
static int
enqueue_one(skipq_conn *conn, const char *kind, const char *payload,
            const skipq_enqueue_opts *opts)
{
    skipq_error err = {0};
    int64_t id = 0;
    int inserted = 1;

    if (opts->unique_key_field)
        return cli_usage_error("--unique-key-from is for stdin mode; give --unique-key");
    if (skipq_enqueue_unique(conn, kind, payload, opts, &id, &inserted, &err) != SKIPQ_OK)
        return cli_fail(&err);
    printf("%lld\n", (long long)id);
    if (!inserted) {
        char *key = skipq_escape_text(opts->unique_key, 0);
        fprintf(stderr, "skipq: job %lld holds unique key \"%.200s\": no new job (%s)\n",
                (long long)id, key ? key : "?",
                opts->unique_mode == SKIPQ_UNIQUE_REPLACE    ? "replaced it if waiting"
                : opts->unique_mode == SKIPQ_UNIQUE_DEBOUNCE ? "debounced it if waiting"
                                                             : "kept it");
        free(key);
    }
    return CLI_EXIT_OK;
}

int
cmd_enqueue(int argc, char **argv, struct cli_ctx *ctx)
{
    skipq_enqueue_opts opts = SKIPQ_ENQUEUE_OPTS_INIT;
    struct control_args ctl;
    const char *run_at = NULL, *in = NULL, *backoff = NULL;
    const char *base = NULL, *cap = NULL, *kind, *payload = NULL;
    skipq_error err = {0};
    skipq_conn *conn = NULL;
    long long n;
    int c, rc;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c != OPT_DEPENDS_ON && c != OPT_TAG && (rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        if ((rc = control_opt(c, optarg, &opts, &ctl)) != CLI_NEXT) {
            if (rc != 0)
                return rc;
            continue;
        }
        switch (c) {
        case OPT_QUEUE:
            opts.queue = optarg;
            break;
        case OPT_PRIORITY:
            if ((rc = cli_parse_priority("--priority", optarg, &opts.priority)) != 0)
                return rc;
            break;
        case OPT_IN:
            in = optarg;
            if ((rc = cli_parse_duration("--in", optarg, &opts.delay_ms)) != 0)
                return rc;
            break;
        case OPT_RUN_AT:
            run_at = optarg;
            break;
        case OPT_MAX_ATTEMPTS:
            if ((rc = cli_parse_int("--max-attempts", optarg, 1, INT32_MAX, &n)) != 0)
                return rc;
            opts.max_attempts = (int32_t)n;
            break;
        case OPT_TIMEOUT:
            if ((rc = cli_parse_duration("--timeout", optarg, &opts.timeout_ms)) != 0)
                return rc;
            break;
        case OPT_BACKOFF:
            backoff = optarg;
            break;
        case OPT_BACKOFF_BASE:
            base = optarg;
            break;
        case OPT_BACKOFF_MAX:
            cap = optarg;
            break;
        default:
            if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
                return rc;
        }
    }
    if (optind >= argc)
        return cli_usage_error("enqueue needs a job kind");
    kind = argv[optind++];
    if (optind < argc)
        payload = argv[optind++];
    if (optind < argc)
        return cli_usage_error("enqueue takes KIND and at most one JSON "
                               "argument, got also \"%.64s\"",
                               argv[optind]);
    if (payload && strcmp(payload, "-") == 0)
        payload = NULL;
    if (in && run_at)
        return cli_usage_error("give --in or --run-at, not both");
    if ((rc = cli_check_name("kind", kind)) != 0)
        return rc;
    if (opts.queue && (rc = cli_check_name("queue", opts.queue)) != 0)
        return rc;
    if ((rc = cli_load(ctx)) != 0)
        return rc;

    if ((backoff || base || cap) &&
        (rc = backoff_opts(ctx, backoff, base, cap, &opts)) != 0)
        return rc;
    opts.max_payload = skipq_config_max_payload(ctx->cfg);
    if (payload &&
        skipq_check_payload(payload, (size_t)-1, opts.max_payload, &err) != SKIPQ_OK)
        return cli_fail(&err);

    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    if (run_at && (rc = resolve_run_at(skipq_conn_pg(conn), run_at, &opts.run_at_us)) != 0)
        goto out;
    if (!payload) {
        rc = enqueue_stdin(skipq_conn_pg(conn), conn, kind, &opts);
        goto out;
    }
    rc = enqueue_one(conn, kind, payload, &opts);
out:
    skipq_conn_close(conn);
    return rc;
}
