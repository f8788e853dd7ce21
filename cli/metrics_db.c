/*
 * metrics_db.c - the database-wide state of the queue in the Prometheus
 * text format: jobs by queue and status, the oldest runnable job's age,
 * pauses and limits, workers and their slots, the rescuer's last run and
 * the schedules' next runs. `skipq metrics` prints it once; `skipq worker
 * --http` serves it under its own families on /metrics (worker_http.c).
 * Every family is read in one read-only snapshot, and nothing is written
 * unless all of it was read, so a failed read never leaves half a page.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    "       q.rate_limit::float8 / extract(epoch FROM q.rate_interval)::float8"
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

/* Read every family in one read-only snapshot into res. 0, or -1 with
 * the result that failed in *failed (NULL: the connection's error). */
static int
read_all(PGconn *pg, PGresult **res, PGresult **failed)
{
    static const char *const sql[N_QUERIES] = {queues_sql, settings_sql, workers_sql,
                                               schedules_sql};
    int rc = 0;
    PGresult *b = PQexec(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");

    *failed = NULL;
    if (PQresultStatus(b) != PGRES_COMMAND_OK) {
        *failed = b;
        b = NULL;
        rc = -1;
    }
    PQclear(b);
    for (int i = 0; rc == 0 && i < N_QUERIES; i++) {
        res[i] = PQexec(pg, sql[i]);
        if (PQresultStatus(res[i]) != PGRES_TUPLES_OK) {
            *failed = res[i];
            res[i] = NULL;
            rc = -1;
        }
    }
    PQclear(PQexec(pg, "ROLLBACK"));
    return rc;
}

int
cli_metrics_db_write(PGconn *pg, FILE *f, PGresult **failed)
{
    PGresult *res[N_QUERIES] = {NULL};
    int rc = read_all(pg, res, failed);

    if (rc == 0)
        put_all(f, res);
    for (int i = 0; i < N_QUERIES; i++)
        PQclear(res[i]);
    return rc;
}
