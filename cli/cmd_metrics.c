/*
 * cmd_metrics.c - `skipq metrics`: the database-wide state of the queue
 * once, in the Prometheus text format, for node_exporter's textfile
 * collector or a cron job: jobs by queue and status, the oldest runnable
 * job's age, pauses and limits, workers and their slots, the rescuer's
 * last run and the schedules' next runs. Every family is read in one
 * read-only snapshot, and nothing is printed unless all of it was read,
 * so a failed run never leaves half a file.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: skipq metrics [--config F] [--database URL]\n"
    "\n"
    "Prints the queue's state once in the Prometheus text format (metric\n"
    "names start with skipq_): jobs by queue and status, the oldest\n"
    "runnable job's age, jobs finished in the last minute, paused queues\n"
    "and their limits, workers and their free slots, the rescuer's last\n"
    "run and each schedule's next run. For node_exporter's textfile\n"
    "collector:\n"
    "\n"
    "  skipq metrics > skipq.prom.$$ && mv skipq.prom.$$ skipq.prom\n"
    "\n"
    "It counts the rows of skipq.jobs, as `skipq stats` does: on a large\n"
    "table run it every minute or so, not every few seconds.\n"
    "\n"
    "exit status: 0 printed, 1 the database could not be read (nothing is\n"
    "printed), 2 usage\n";

/* A label value in the text format: backslash, double quote and newline
 * escaped. Written to f. */
static void
put_label(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fputc('\\', f), fputc(*v, f);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

/* One family: its HELP and TYPE lines. */
static void
put_family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label and the result column that holds its value. */
struct label {
    const char *name;
    int col;
};

/* One sample: name{label="value",...} value. labels: ending in a NULL
 * name, or NULL for none; value: the result column holding it (as the
 * server printed it, so integers stay integers). */
static void
put_sample(FILE *f, const char *name, const PGresult *res, int r,
           const struct label *labels, int value)
{
    fputs(name, f);
    for (int i = 0; labels && labels[i].name; i++) {
        fprintf(f, "%s%s=\"", i ? "," : "{", labels[i].name);
        put_label(f, PQgetvalue(res, r, labels[i].col));
        fputc('"', f);
    }
    fprintf(f, "%s %s\n", labels && labels[0].name ? "}" : "", PQgetvalue(res, r, value));
}

/* A family whose samples are the rows of res, the value in column value,
 * skipping rows where it is NULL. */
static void
put_rows(FILE *f, const char *name, const char *type, const char *help, const PGresult *res,
         const struct label *labels, int value)
{
    put_family(f, name, type, help);
    for (int r = 0; r < PQntuples(res); r++)
        if (!PQgetisnull(res, r, value))
            put_sample(f, name, res, r, labels, value);
}

/* Per queue: jobs by status, seven rows a queue (in this order), each also
 * carrying the queue's oldest runnable job's age and the jobs finished in
 * the last minute. */
static const char queues_sql[] =
    "SELECT s.queue, st.status, st.n,"
    "       extract(epoch FROM s.oldest)::float8, s.done_1m"
    " FROM (SELECT queue, sum(waiting) AS waiting, sum(runnable) AS runnable,"
    "              sum(scheduled) AS scheduled, sum(running) AS running,"
    "              sum(succeeded) AS succeeded, sum(failed) AS failed,"
    "              sum(cancelled) AS cancelled, max(oldest_runnable_age) AS oldest,"
    "              sum(finished_last_minute) AS done_1m"
    "       FROM skipq.queue_stats GROUP BY queue) s"
    " CROSS JOIN LATERAL (VALUES ('waiting', s.waiting), ('runnable', s.runnable),"
    "   ('scheduled', s.scheduled), ('running', s.running), ('succeeded', s.succeeded),"
    "   ('failed', s.failed), ('cancelled', s.cancelled)) AS st(status, n)"
    " ORDER BY s.queue, st.status";

/* Per queue with settings: paused, and each limit that is set. */
static const char settings_sql[] =
    "SELECT q.queue, q.paused::int, q.max_running, q.key_max_running,"
    "       q.rate_limit / extract(epoch FROM q.rate_interval)::float8"
    " FROM skipq.queues q ORDER BY q.queue";

/* Workers by state, their slots, and the rescuer's last run. */
static const char workers_sql[] =
    "SELECT st.state, count(w.id), coalesce(sum(w.concurrency), 0),"
    "       coalesce(sum(w.running_jobs), 0),"
    "       (SELECT extract(epoch FROM now() - m.last_run_at)::float8"
    "          FROM skipq.maintenance m WHERE m.task = 'rescue')"
    " FROM (VALUES ('alive', true), ('gone', false)) AS st(state, alive)"
    " LEFT JOIN skipq.active_workers w ON w.alive = st.alive"
    " GROUP BY st.state ORDER BY st.state";

static const char schedules_sql[] =
    "SELECT s.name, extract(epoch FROM s.next_slot)::float8, s.paused::int"
    " FROM skipq.schedules s ORDER BY s.name";

enum { N_QUERIES = 4 };

/* Write every family to f from the results. */
static void
put_all(FILE *f, PGresult *const *res)
{
    static const struct label by_status[] = {{"queue", 0}, {"status", 1}, {NULL, 0}};
    static const struct label by_queue[] = {{"queue", 0}, {NULL, 0}};
    static const struct label by_state[] = {{"state", 0}, {NULL, 0}};
    static const struct label by_schedule[] = {{"schedule", 0}, {NULL, 0}};
    PGresult *per_queue = res[0];
    const int nstatus = 7; /* rows a queue in queues_sql */

    put_family(f, "skipq_up", "gauge", "1: the database was read");
    fputs("skipq_up 1\n", f);
    put_rows(f, "skipq_jobs", "gauge", "Jobs by queue and status.", per_queue, by_status,
             2);
    /* one sample per queue, not per (queue, status) row */
    put_family(f, "skipq_oldest_runnable_age_seconds", "gauge",
               "Age of the oldest runnable job, per queue (none: nothing runnable).");
    for (int r = 0; r < PQntuples(per_queue); r += nstatus)
        if (!PQgetisnull(per_queue, r, 3))
            put_sample(f, "skipq_oldest_runnable_age_seconds", per_queue, r, by_queue, 3);
    put_family(f, "skipq_jobs_finished_last_minute", "gauge",
               "Jobs that finished in the last minute, per queue.");
    for (int r = 0; r < PQntuples(per_queue); r += nstatus)
        put_sample(f, "skipq_jobs_finished_last_minute", per_queue, r, by_queue, 4);
    put_rows(f, "skipq_queue_paused", "gauge", "1: the queue is paused.", res[1], by_queue,
             1);
    put_rows(f, "skipq_queue_max_running", "gauge",
             "The queue's cap on running jobs, where set.", res[1], by_queue, 2);
    put_rows(f, "skipq_queue_max_running_per_key", "gauge",
             "The queue's cap on running jobs per concurrency key, where set.", res[1],
             by_queue, 3);
    put_rows(f, "skipq_queue_rate_limit_per_second", "gauge",
             "The queue's rate limit in jobs a second, where set.", res[1], by_queue, 4);
    put_rows(f, "skipq_workers", "gauge", "Registered workers, alive or gone.", res[2],
             by_state, 1);
    put_rows(f, "skipq_worker_slots", "gauge", "Concurrency of the workers, by state.",
             res[2], by_state, 2);
    put_rows(f, "skipq_worker_running_jobs", "gauge", "Jobs the workers hold, by state.",
             res[2], by_state, 3);
    put_family(f, "skipq_rescue_last_run_age_seconds", "gauge",
               "Time since the rescuer last ran (none: never).");
    if (PQntuples(res[2]) > 0 && !PQgetisnull(res[2], 0, 4))
        put_sample(f, "skipq_rescue_last_run_age_seconds", res[2], 0, NULL, 4);
    put_rows(f, "skipq_schedule_next_run_timestamp_seconds", "gauge",
             "When each schedule next enqueues a job (Unix time).", res[3], by_schedule, 1);
    put_rows(f, "skipq_schedule_paused", "gauge", "1: the schedule is paused.", res[3],
             by_schedule, 2);
}

/* Read every family in one read-only snapshot into res. */
static int
read_all(PGconn *pg, PGresult **res)
{
    static const char *const sql[N_QUERIES] = {queues_sql, settings_sql, workers_sql,
                                               schedules_sql};
    int rc = CLI_EXIT_OK;
    PGresult *b = PQexec(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");

    if (PQresultStatus(b) != PGRES_COMMAND_OK)
        rc = cli_db_fail(pg, b, "could not read the metrics");
    PQclear(b);
    for (int i = 0; rc == CLI_EXIT_OK && i < N_QUERIES; i++) {
        res[i] = PQexec(pg, sql[i]);
        if (PQresultStatus(res[i]) != PGRES_TUPLES_OK)
            rc = cli_db_fail(pg, res[i], "could not read the metrics");
    }
    PQclear(PQexec(pg, "ROLLBACK"));
    return rc;
}

int
cmd_metrics(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {0},
    };
    PGresult *res[N_QUERIES] = {NULL};
    skipq_conn *conn = NULL;
    char *text = NULL;
    size_t len = 0;
    int c, rc;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
            return rc;
    }
    if (optind < argc)
        return cli_usage_error("metrics takes no arguments, got \"%.64s\"", argv[optind]);
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    rc = read_all(skipq_conn_pg(conn), res);
    if (rc == CLI_EXIT_OK) {
        FILE *f = open_memstream(&text, &len);
        if (!f)
            rc = cli_errorf(CLI_EXIT_FAIL, "out of memory");
        else {
            put_all(f, res);
            if (fclose(f) != 0)
                rc = cli_errorf(CLI_EXIT_FAIL, "out of memory");
        }
    }
    if (rc == CLI_EXIT_OK && fwrite(text, 1, len, stdout) != len)
        rc = cli_errorf(CLI_EXIT_FAIL, "could not write the metrics");
    free(text);
    for (int i = 0; i < N_QUERIES; i++)
        PQclear(res[i]);
    skipq_conn_close(conn);
    return rc;
}
