/*
 * cmd_stats.c - `skipq stats`: per queue and priority, jobs by status, the
 * oldest runnable job's age and jobs finished in the last minute (view
 * skipq.queue_stats), and the workers with their heartbeat age (view
 * skipq.active_workers). --watch redraws until interrupted.
 */
#include "cli.h"
#include "queries.h"

#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: skipq stats [--watch [D]] [--json]\n"
    "\n"
    "Per queue and priority: waiting (for their parents), runnable, scheduled\n"
    "(future run_at), running, succeeded, failed and cancelled jobs, the oldest runnable job's age,\n"
    "and jobs finished in the last minute; then the registered workers,\n"
    "whether each is alive, and its heartbeat age.\n"
    "\n"
    "  --watch [D]   redraw every D (default 2s) until ctrl-c\n"
    "  --json        one JSON object {\"queues\": [...], \"workers\": [...]}\n"
    "                (per refresh with --watch)\n";

enum { OPT_WATCH = CLI_OPT_LOCAL, OPT_JSON };

/* When the rescuer last ran, and whether that is late: no rescue for two
 * leases while workers are registered (another session holds its turn,
 * the row 'rescue' of skipq.maintenance, without rescuing). NULL age:
 * never ran. */
static const char rescue_sql[] =
    "SELECT extract(epoch FROM now() - m.last_run_at)::float8,"
    "       EXISTS (SELECT FROM skipq.active_workers w)"
    "       AND coalesce(m.last_run_at < now() - 2::float8 * a.lease, true)"
    "       AND a.since < now() - 2::float8 * a.lease"
    " FROM skipq.maintenance m,"
    "      (SELECT coalesce(max(w.lease), interval '30 seconds') AS lease,"
    "              min(w.started_at) AS since FROM skipq.active_workers w) a"
    " WHERE m.task = 'rescue'";

static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static const char *const queue_cols[] = {"queue",     "priority", "waiting",   "runnable",
                                         "scheduled", "running",  "succeeded", "failed",
                                         "cancelled", "oldest",   "done_1m"};
static const char *const worker_cols[] = {
    "id",          "host",    "pid",       "queues", "priorities",
    "concurrency", "running", "heartbeat", "alive",  "version"};

static void
print_rescue(const PGresult *m)
{
    char age[32];
    if (PQntuples(m) != 1)
        return;
    printf("\nrescuer: %s%s\n",
           PQgetisnull(m, 0, 0)
               ? "has not run"
               : cli_format_age(strtod(PQgetvalue(m, 0, 0), NULL), age, sizeof age),
           PQgetvalue(m, 0, 1)[0] == 't'
               ? " (LATE: no rescue for over two leases; another session may hold the row "
                 "'rescue' of skipq.maintenance)"
           : PQgetisnull(m, 0, 0) ? ""
                                  : " ago");
}

static int
print_tables(const PGresult *q, const PGresult *w)
{
    struct cli_table t;
    char age[32];
    int rc = 0;

    cli_table_init(&t, 11);
    rc |= cli_table_add(&t, queue_cols);
    for (int r = 0; r < PQntuples(q) && rc == 0; r++) {
        const char *cells[11];
        char queue[256];
        for (int c = 0; c < 11; c++)
            cells[c] = PQgetvalue(q, r, c);
        /* a paused queue, or one with paused kinds, says so by its name */
        if (PQgetvalue(q, r, 11)[0] == 't' || strcmp(PQgetvalue(q, r, 12), "[]") != 0) {
            snprintf(queue, sizeof queue, "%s (%s)", cells[0],
                     PQgetvalue(q, r, 11)[0] == 't' ? "paused" : "kinds paused");
            cells[0] = queue;
        }
        cells[9] = PQgetisnull(q, r, 9)
                       ? "-"
                       : cli_format_age(strtod(PQgetvalue(q, r, 9), NULL), age, sizeof age);
        rc |= cli_table_add(&t, cells);
    }
    if (rc == 0) {
        if (PQntuples(q) == 0)
            printf("no jobs\n");
        else
            cli_table_print(&t, 0x7feu);
    }
    cli_table_free(&t);
    putchar('\n');

    cli_table_init(&t, 10);
    rc |= cli_table_add(&t, worker_cols);
    for (int r = 0; r < PQntuples(w) && rc == 0; r++) {
        const char *cells[10];
        for (int c = 0; c < 10; c++)
            cells[c] = PQgetvalue(w, r, c);
        cells[7] = cli_format_age(strtod(PQgetvalue(w, r, 7), NULL), age, sizeof age);
        cells[8] = PQgetvalue(w, r, 8)[0] == 't' ? "yes" : "no";
        rc |= cli_table_add(&t, cells);
    }
    if (rc == 0) {
        if (PQntuples(w) == 0)
            printf("no workers\n");
        else
            cli_table_print(&t, 1u << 0 | 1u << 2 | 1u << 5 | 1u << 6 | 1u << 7);
    }
    cli_table_free(&t);
    return rc ? cli_errorf(CLI_EXIT_FAIL, "out of memory") : 0;
}

static int
show_once(PGconn *pg, int json, int watch, const char *shown)
{
    PGresult *q = PQexec(pg, cli_stats_queues_sql);
    PGresult *w = NULL, *m = NULL;
    int rc = 0;

    if (PQresultStatus(q) != PGRES_TUPLES_OK) {
        rc = cli_db_fail(pg, q, "could not read skipq.queue_stats");
        goto out;
    }
    w = PQexec(pg, cli_stats_workers_sql);
    if (PQresultStatus(w) != PGRES_TUPLES_OK) {
        rc = cli_db_fail(pg, w, "could not read skipq.active_workers");
        goto out;
    }
    m = PQexec(pg, rescue_sql);
    if (PQresultStatus(m) != PGRES_TUPLES_OK) {
        rc = cli_db_fail(pg, m, "could not read skipq.maintenance");
        goto out;
    }
    if (json) {
        json_object *o = json_object_new_object();
        if (!o) {
            rc = cli_errorf(CLI_EXIT_FAIL, "out of memory");
            goto out;
        }
        json_object_object_add(o, "queues", cli_stats_queues_json(q));
        json_object_object_add(o, "workers", cli_stats_workers_json(w));
        if (PQntuples(m) == 1) {
            json_object *r = json_object_new_object();
            if (r) {
                json_object_object_add(r, "last_run_age_s", cli_cell_json(m, 0, 0, 'f'));
                json_object_object_add(r, "late", cli_cell_json(m, 0, 1, 'b'));
            }
            json_object_object_add(o, "rescue", r);
        }
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
    } else {
        if (watch) {
            char when[48];
            /* home and clear: redraw in place (our own escape, the
             * only one stats writes) */
            printf("\033[H\033[2J%s  ", cli_format_local_now(when, sizeof when));
            cli_print_escaped(shown, 0);
            printf("  (ctrl-c to stop)\n\n");
        }
        rc = print_tables(q, w);
        if (rc == 0)
            print_rescue(m);
    }
    fflush(stdout);
out:
    PQclear(q);
    PQclear(w);
    PQclear(m);
    return rc;
}

int
cmd_stats(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        {"watch", optional_argument, NULL, OPT_WATCH},
        {"json", no_argument, NULL, OPT_JSON},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    int watch = 0, json = 0, c, rc;
    const char *every = NULL;
    int64_t every_ms = 2000;
    skipq_conn *conn = NULL;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        switch (c) {
        case OPT_WATCH:
            watch = 1;
            every = optarg;
            break;
        case OPT_JSON:
            json = 1;
            break;
        default:
            if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
                return rc;
        }
    }
    /* `--watch 5s` as well as `--watch=5s` */
    if (watch && !every && optind < argc)
        every = argv[optind++];
    if (optind < argc)
        return cli_usage_error("stats takes no arguments, got \"%.64s\"", argv[optind]);
    if (every && (rc = cli_parse_duration("--watch", every, &every_ms)) != 0)
        return rc;
    if (watch && every_ms < 100)
        return cli_usage_error("--watch: refresh every 100ms or more, not "
                               "\"%s\"",
                               every);
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    if (watch) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal; /* no SA_RESTART: wake the sleep */
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    for (;;) {
        rc = show_once(skipq_conn_pg(conn), json, watch, ctx->database_shown);
        if (rc != 0 || !watch || interrupted)
            break;
        struct timespec ts = {every_ms / 1000, (long)(every_ms % 1000) * 1000000};
        while (!interrupted && nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        if (interrupted)
            break;
        if (PQstatus(skipq_conn_pg(conn)) != CONNECTION_OK)
            PQreset(skipq_conn_pg(conn));
    }
    skipq_conn_close(conn);
    return rc;
}
