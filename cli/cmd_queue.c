/*
 * cmd_queue.c - `skipq queue ls|pause|resume|set`: the queues' state
 * and flow control (sql/queues.sql, sql/limits.sql). pause, resume and
 * set are one call each of skipq.queue_pause / queue_resume / queue_set,
 * which only skipq_admin may run; set passes its values as given, so the
 * server's check words the errors; ls reads the view skipq.queue_states.
 */
#include "cli.h"
#include "queries.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: skipq queue ls [--json]\n"
    "       skipq queue pause NAME [--kind K]\n"
    "       skipq queue resume NAME [--kind K]\n"
    "       skipq queue set NAME [--max-running N|none] [--rate N/INTERVAL|none]\n"
    "                            [--rate-by queue|key] [--max-running-per-key N|none]\n"
    "                            [--age-after D|none]\n"
    "\n"
    "A paused queue (or kind in a queue) is claimed from by no worker: running\n"
    "jobs finish, new jobs are accepted and wait until it is resumed.\n"
    "Limits hold for all workers together; jobs over a limit wait.\n"
    "\n"
    "ls:\n"
    "    --json           one JSON object per line\n"
    "pause, resume:\n"
    "    --kind K         only the jobs of kind K in the queue (resume without\n"
    "                     --kind resumes the queue and all of its kinds)\n"
    "set (none clears a setting; those not given stay as they are):\n"
    "    --max-running N  at most N of the queue's jobs run at once\n"
    "    --rate N/INTERVAL\n"
    "                     at most N jobs start per INTERVAL (20/1s, 100/1m)\n"
    "    --rate-by queue|key\n"
    "                     the rate is the queue's (default), or each\n"
    "                     concurrency key's\n"
    "    --max-running-per-key N\n"
    "                     at most N run at once per concurrency key\n"
    "    --age-after D    a job runnable for longer than D (30s, 5m) is claimed\n"
    "                     ahead of newer jobs of higher priority\n"
    "\n"
    "exit status: 0 done, 1 runtime failure, 2 usage or bad input\n";

enum {
    OPT_JSON = CLI_OPT_LOCAL,
    OPT_KIND,
    OPT_MAX_RUNNING,
    OPT_RATE,
    OPT_KEY_MAX,
    OPT_AGE_AFTER,
    OPT_RATE_BY,
};

/* ---- ls ------------------------------------------------------------ */

/* "paused", "paused kinds: a, b" or "running", for people (buf). */
static const char *
state_text(const PGresult *res, int r, char *buf, size_t size)
{
    json_object *a = json_tokener_parse(PQgetvalue(res, r, QLS_KINDS));
    size_t n = a && json_object_is_type(a, json_type_array) ? json_object_array_length(a)
                                                            : 0;
    size_t o = 0;

    if (PQgetvalue(res, r, QLS_PAUSED)[0] == 't')
        snprintf(buf, size, "paused");
    else if (n == 0)
        snprintf(buf, size, "active");
    else
        o = (size_t)snprintf(buf, size, "paused kinds:");
    for (size_t i = 0; n > 0 && PQgetvalue(res, r, QLS_PAUSED)[0] != 't' && i < n; i++) {
        const char *k = json_object_get_string(json_object_array_get_idx(a, i));
        if (o + strlen(k) + 3 >= size)
            break;
        o += (size_t)snprintf(buf + o, size - o, "%s %s", i ? "," : "", k);
    }
    json_object_put(a);
    return buf;
}

static void
print_ls_json(const PGresult *res)
{
    for (int r = 0; r < PQntuples(res); r++) {
        json_object *o = cli_queue_ls_row(res, r);
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
    }
}

static int
print_ls_table(const PGresult *res)
{
    static const char *const header[] = {"queue",     "state",   "runnable",  "scheduled",
                                         "waiting",   "running", "succeeded", "failed",
                                         "cancelled", "limits"};
    struct cli_table t;
    int rc = cli_table_init(&t, 10);

    rc |= cli_table_add(&t, header);
    for (int r = 0; r < PQntuples(res) && rc == 0; r++) {
        char state[1024];
        const char *cells[10];
        const char *limits = PQgetvalue(res, r, QLS_LIMITS);
        cells[0] = PQgetvalue(res, r, QLS_QUEUE);
        cells[1] = state_text(res, r, state, sizeof state);
        for (int c = 0; c < 7; c++)
            cells[2 + c] = PQgetvalue(res, r, QLS_COUNTS + c);
        cells[9] = limits[0] ? limits : "-";
        rc |= cli_table_add(&t, cells);
    }
    if (rc == 0) {
        if (PQntuples(res) == 0)
            printf("no queues\n");
        else
            cli_table_print(&t, 0x1fcu); /* the counts right-aligned */
    }
    cli_table_free(&t);
    return rc ? cli_errorf(CLI_EXIT_FAIL, "out of memory") : CLI_EXIT_OK;
}

static int
queue_ls(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    int json = 0, c, rc;
    skipq_conn *conn = NULL;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        if (c == OPT_JSON)
            json = 1;
        else if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
            return rc;
    }
    if (optind < argc)
        return cli_usage_error("queue ls takes no arguments, got \"%.64s\"", argv[optind]);
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    PGresult *res = PQexec(skipq_conn_pg(conn), cli_queue_ls_sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = cli_db_fail(skipq_conn_pg(conn), res, "could not list queues");
    else if (json)
        print_ls_json(res), rc = CLI_EXIT_OK;
    else
        rc = print_ls_table(res);
    PQclear(res);
    skipq_conn_close(conn);
    return rc;
}

/* ---- pause, resume, set -------------------------------------------------- */

/* Run one call of sql with n parameters v (v[0]: the queue's name) and
 * its one row: NULL and the failure reported (rc in *rc) when it failed.
 * The caller PQclear()s the result. */
static PGresult *
queue_call(skipq_conn *conn, const char *verb, const char *sql, int n, const char *const *v,
           int *rc)
{
    PGresult *res = PQexecParams(skipq_conn_pg(conn), sql, n, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        return res;
    char *shown = cli_escape(v[0], 0);
    *rc = cli_db_fail(skipq_conn_pg(conn), res, "could not %s queue \"%s\"", verb,
                      shown ? shown : "?");
    free(shown);
    PQclear(res);
    return NULL;
}

/* What was done, for people: `queue "q" paused`, `kind "k" in queue "q"
 * resumed`, or `... was not paused` when nothing changed. */
static void
print_done(const char *queue, const char *kind, bool pause, bool changed)
{
    char *q = cli_escape(queue, 0), *k = kind ? cli_escape(kind, 0) : NULL;
    if (kind)
        printf("kind %s in ", k ? k : "?");
    printf("queue %s ", q ? q : "?");
    if (changed)
        printf("%s\n", pause ? "paused" : "resumed");
    else
        printf("%s\n", pause ? "was paused already" : "was not paused");
    free(q);
    free(k);
}

static int
queue_change(int argc, char **argv, struct cli_ctx *ctx, bool pause)
{
    static const struct option longopts[] = {
        {"kind", required_argument, NULL, OPT_KIND},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    const char *v[2] = {NULL, NULL};
    skipq_conn *conn = NULL;
    int c, rc;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        if (c == OPT_KIND) {
            if ((rc = cli_check_name("kind", optarg)) != 0)
                return rc;
            v[1] = optarg;
        } else if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT) {
            return rc;
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("queue %s takes one NAME", argv[0]);
    v[0] = argv[optind];
    if ((rc = cli_check_name("queue", v[0])) != 0)
        return rc;
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    PGresult *res = queue_call(conn, argv[0],
                               pause ? cli_queue_pause_sql : cli_queue_resume_sql, 2, v,
                               &rc);
    if (res) {
        print_done(v[0], v[1], pause, PQgetvalue(res, 0, 0)[0] == 't');
        rc = CLI_EXIT_OK;
    }
    PQclear(res);
    skipq_conn_close(conn);
    return rc;
}

/* The queue's settings as they now are, from skipq.queue_set's row. */
static void
print_settings(const char *queue, PGresult *res)
{
    char *q = cli_escape(queue, 0);
    printf("queue %s: max_running %s, max_running_per_key %s, rate %s%s, age_after %s\n",
           q ? q : "?", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
           strcmp(PQgetvalue(res, 0, 4), "key") == 0 ? " per key" : "",
           PQgetvalue(res, 0, 3));
    free(q);
}

static int
queue_set(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        {"max-running", required_argument, NULL, OPT_MAX_RUNNING},
        {"rate", required_argument, NULL, OPT_RATE},
        {"max-running-per-key", required_argument, NULL, OPT_KEY_MAX},
        {"age-after", required_argument, NULL, OPT_AGE_AFTER},
        {"rate-by", required_argument, NULL, OPT_RATE_BY},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    /* queue, max_running, rate, max_running_per_key, age_after, rate_by: as
     * given */
    const char *v[6] = {NULL};
    skipq_conn *conn = NULL;
    int c, rc;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        if (c >= OPT_MAX_RUNNING && c <= OPT_RATE_BY)
            v[1 + c - OPT_MAX_RUNNING] = optarg;
        else if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
            return rc;
    }
    if (argc - optind != 1)
        return cli_usage_error("queue set takes one NAME");
    if (!v[1] && !v[2] && !v[3] && !v[4] && !v[5])
        return cli_usage_error("queue set needs a setting: --max-running, --rate,"
                               " --rate-by, --max-running-per-key or --age-after");
    v[0] = argv[optind];
    if ((rc = cli_check_name("queue", v[0])) != 0)
        return rc;
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    PGresult *res = queue_call(
        conn, "set",
        "SELECT coalesce(s.max_running::text, 'none'),"
        " coalesce(s.key_max_running::text, 'none'),"
        " coalesce(s.rate_limit::text || '/' || skipq.duration_text(s.rate_interval), 'none'),"
        " coalesce(skipq.duration_text(s.age_after), 'none'), s.rate_by"
        " FROM skipq.queue_set($1, max_running => $2, rate => $3,"
        "  max_running_per_key => $4, age_after => $5, rate_by => $6) AS s",
        6, v, &rc);
    if (res) {
        print_settings(v[0], res);
        rc = CLI_EXIT_OK;
    }
    PQclear(res);
    skipq_conn_close(conn);
    return rc;
}

int
cmd_queue(int argc, char **argv, struct cli_ctx *ctx)
{
    const char *sub;
    int rc = cli_subcommand(&argc, &argv, usage, &sub);

    if (rc != CLI_NEXT)
        return rc;
    if (strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0)
        return queue_ls(argc, argv, ctx);
    if (strcmp(sub, "pause") == 0)
        return queue_change(argc, argv, ctx, true);
    if (strcmp(sub, "resume") == 0)
        return queue_change(argc, argv, ctx, false);
    if (strcmp(sub, "set") == 0)
        return queue_set(argc, argv, ctx);
    return cli_usage_error("unknown queue command \"%.64s\": use ls, pause, resume or set",
                           sub);
}
