/*
 * queries.c - what a command and `skipq serve` both run and answer with
 * (queries.h): one copy of each statement and of each JSON row, so the
 * API and the CLI cannot drift apart.
 */
#include "cli.h"
#include "queries.h"
#include "skipq_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A timestamptz as ISO 8601 text, whatever the session's DateStyle.
 * to_json is polymorphic: written by schema, as an operand of exactly
 * json #>> text[], nothing planted in public is a better match
 * (docs/security.md). */
#define ISO(col) "pg_catalog.to_json(" col ") #>> '{}'::text[]"

/* ---- enqueue ---- */

/*
 * --run-at: the server parses it, as PostgreSQL would for `run_at =>`
 * in SQL, in the session's time zone. A data exception (22xxx) is the
 * user's input, exit 2; so are "infinity" and a time further out than
 * the longest --in (36500d), which are no time a job could run at.
 */
int
cli_run_at(PGconn *pg, const char *opt, const char *ts, int64_t *us_out, char *msg,
           size_t msglen)
{
    const char *params[1] = {ts};
    PGresult *res;
    int rc = 0;

    res = PQexecParams(pg,
                       "SELECT CASE WHEN NOT pg_catalog.isfinite(t) THEN 'i' "
                       "            WHEN t > pg_catalog.now() "
                       "                     + interval '36500 days' THEN 'f' "
                       "            ELSE (extract(epoch FROM t) "
                       "                  * 1000000.0)::int8::text END "
                       "FROM (SELECT $1::timestamptz AS t) s",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
        PQgetisnull(res, 0, 0)) {
        rc = cli_db_message(pg, res, msg, msglen, "invalid %s \"%.64s\"", opt, ts);
    } else if (strcmp(PQgetvalue(res, 0, 0), "i") == 0) {
        rc = CLI_EXIT_USAGE;
        snprintf(msg, msglen,
                 "invalid %s \"%.64s\": not a point in time; give a date and time "
                 "(2030-01-01T09:00:00Z)",
                 opt, ts);
    } else if (strcmp(PQgetvalue(res, 0, 0), "f") == 0) {
        rc = CLI_EXIT_USAGE;
        snprintf(msg, msglen, "invalid %s \"%.64s\": more than 36500 days from now", opt,
                 ts);
    } else {
        *us_out = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        if (*us_out == 0) /* 0 means "now" to the library: 1970 is past */
            *us_out = 1;
    }
    PQclear(res);
    return rc;
}

/* ---- jobs ls ---- */

/* clang-format off */
#define JOBS_LS_SQL(table)                                                    \
    "SELECT j.id, j.queue, j.kind, j.priority, j.status::text, j.attempts, "    \
    "       j.max_attempts, " ISO("j.run_at") ", " ISO("j.updated_at") ", "     \
    "       " ISO("j.created_at") ", j.last_error, "                            \
    "       j.progress OPERATOR(pg_catalog.->>) 'percent', "                    \
    "       j.progress OPERATOR(pg_catalog.->>) 'message', "                    \
    "       pg_catalog.to_json(j.tags)::text, j.meta::text "                    \
    "FROM " table " j "                                                         \
    "WHERE ($1::text IS NULL "                                                  \
    "       OR j.status::text = ANY (pg_catalog.string_to_array($1, ','))) "    \
    "  AND ($2::text IS NULL OR j.queue = $2) "                                 \
    "  AND ($3::text IS NULL OR j.kind = $3) "                                  \
    "  AND ($5::int8 IS NULL "                                                  \
    "       OR j.updated_at >= now() - $5::float8 * interval '1 millisecond') " \
    "  AND ($6::timestamptz IS NULL OR j.updated_at >= $6::timestamptz) "       \
    "  AND" CLI_FILTER_SQL("$7", "$8")                                          \
    "  AND ($9::int8 IS NULL OR j.id < $9::int8) "                              \
    "ORDER BY j.id DESC "                                                       \
    "LIMIT $4::int8"
const char cli_jobs_ls_sql[] = JOBS_LS_SQL("skipq.jobs");
const char cli_jobs_ls_archived_sql[] = JOBS_LS_SQL("skipq.jobs_done");
/* clang-format on */

static json_object *
json_text_or_null(const PGresult *res, int r, int c)
{
    return PQgetisnull(res, r, c) ? NULL : json_object_new_string(PQgetvalue(res, r, c));
}

/* A JSON column's text parsed; NULL for SQL NULL. */
static json_object *
json_column(const PGresult *res, int r, int c)
{
    json_object *o = NULL; /* the depth limit enqueue takes */

    if (!PQgetisnull(res, r, c))
        (void)skipq_json_parse(PQgetvalue(res, r, c), (size_t)-1, 0, &o, NULL);
    return o;
}

/* {"percent": n, "message": text}, either may be missing; NULL: none */
static json_object *
progress_json(const PGresult *res, int r)
{
    if (PQgetisnull(res, r, JLS_PERCENT) && PQgetisnull(res, r, JLS_MESSAGE))
        return NULL;
    json_object *p = json_object_new_object();
    if (p && !PQgetisnull(res, r, JLS_PERCENT))
        json_object_object_add(p, "percent",
                               json_object_new_int(atoi(PQgetvalue(res, r, JLS_PERCENT))));
    if (p && !PQgetisnull(res, r, JLS_MESSAGE))
        json_object_object_add(p, "message", json_text_or_null(res, r, JLS_MESSAGE));
    return p;
}

json_object *
cli_jobs_ls_row(const PGresult *res, int r)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    {
        json_object_object_add(o, "id",
                               json_object_new_int64(strtoll(PQgetvalue(res, r, JLS_ID),
                                                             NULL, 10)));
        json_object_object_add(o, "queue", json_text_or_null(res, r, JLS_QUEUE));
        json_object_object_add(o, "kind", json_text_or_null(res, r, JLS_KIND));
        json_object_object_add(o, "priority",
                               json_object_new_int(atoi(PQgetvalue(res, r, JLS_PRIO))));
        json_object_object_add(o, "status", json_text_or_null(res, r, JLS_STATUS));
        json_object_object_add(o, "attempts",
                               json_object_new_int(atoi(PQgetvalue(res, r, JLS_ATT))));
        json_object_object_add(o, "max_attempts",
                               PQgetisnull(res, r, JLS_MAX)
                                   ? NULL
                                   : json_object_new_int(atoi(PQgetvalue(res, r,
                                                                         JLS_MAX))));
        json_object_object_add(o, "run_at", json_text_or_null(res, r, JLS_RUN_AT));
        json_object_object_add(o, "updated_at", json_text_or_null(res, r, JLS_UPDATED));
        json_object_object_add(o, "created_at", json_text_or_null(res, r, JLS_CREATED));
        json_object_object_add(o, "last_error", json_text_or_null(res, r, JLS_ERROR));
        json_object_object_add(o, "progress", progress_json(res, r));
        json_object_object_add(o, "tags", json_column(res, r, JLS_TAGS));
        json_object_object_add(o, "meta", json_column(res, r, JLS_META));
    }
    return o;
}

/* ---- jobs show ---- */

/* clang-format off */
const char cli_job_show_sql[] =
    "SELECT j.id, j.queue, j.kind, j.priority, j.status::text, j.attempts, "
    "       j.max_attempts, j.backoff_strategy::text, "
    "       (extract(epoch FROM j.backoff_base) * 1000.0)::int8, "
    "       (extract(epoch FROM j.backoff_max) * 1000.0)::int8, "
    "       (extract(epoch FROM j.timeout) * 1000.0)::int8, "
    "       " ISO("j.run_at") ", j.claims, j.locked_by, "
    "       " ISO("j.started_at") ", " ISO("j.finished_at") ", "
    "       " ISO("j.cancel_requested_at") ", "
    "       " ISO("j.created_at") ", " ISO("j.updated_at") ", "
    "       j.created_by, j.last_error, j.unique_key, "
    "       (extract(epoch FROM j.unique_window) * 1000.0)::int8, j.concurrency_key, "
    "       j.payload::text, j.result::text, "
    "       j.errors::text, j.progress::text, pg_catalog.to_json(j.tags)::text, "
    "       j.meta::text, CASE WHEN j.archived THEN 'true' ELSE 'false' END "
    "FROM skipq.all_jobs j WHERE j.id = $1::int8";
/* clang-format on */

const char *const cli_job_cols[] = {
    "id",
    "queue",
    "kind",
    "priority",
    "status",
    "attempts",
    "max_attempts",
    "backoff_strategy",
    "backoff_base_ms",
    "backoff_max_ms",
    "timeout_ms",
    "run_at",
    "claims",
    "locked_by",
    "started_at",
    "finished_at",
    "cancel_requested_at",
    "created_at",
    "updated_at",
    "created_by",
    "last_error",
    "unique_key",
    "unique_window_ms",
    "concurrency_key",
    "payload",
    "result",
    "errors",
    "progress",
    "tags",
    "meta",
    "archived",
};
/* integer columns (bit per column) */
static const unsigned show_ints = 1u << 0 | 1u << 3 | 1u << 5 | 1u << 6 | 1u << 8 |
                                  1u << 9 | 1u << 10 | 1u << 12 | 1u << 13 | 1u << 22;

/* Parse a jsonb column's text; NULL for SQL NULL (or if it will not
 * parse, which the server's jsonb output never does). */
json_object *
cli_job_column(const PGresult *res, int c)
{
    json_object *o = NULL; /* the depth limit enqueue takes */

    if (!PQgetisnull(res, 0, c))
        (void)skipq_json_parse(PQgetvalue(res, 0, c), (size_t)-1, 0, &o, NULL);
    return o;
}

json_object *
cli_job_json(const PGresult *res)
{
    json_object *o = json_object_new_object();

    if (!o)
        return NULL;
    for (int c = 0; c < CLI_JOB_NCOLS; c++) {
        json_object *v = NULL;
        if (PQgetisnull(res, 0, c))
            v = NULL;
        else if (c >= CLI_JOB_FIRST_JSON)
            v = cli_job_column(res, c); /* and progress, tags, meta */
        else if ((show_ints >> c) & 1u)
            v = json_object_new_int64(strtoll(PQgetvalue(res, 0, c), NULL, 10));
        else
            v = json_object_new_string(PQgetvalue(res, 0, c));
        json_object_object_add(o, cli_job_cols[c], v);
    }
    return o;
}

/* ---- jobs retry, cancel, delete ---- */

const char cli_act_lock_ids_sql[] =
    "SELECT j.id, j.status::text, j.kind, j.queue FROM skipq.jobs j "
    "WHERE j.id = ANY ($1::int8[]) ORDER BY j.id FOR UPDATE";

const char *const cli_act_sql[] = {
    /* a retried child whose parents have not all succeeded waits again */
    [CLI_ACT_RETRY] = "SELECT r, CASE WHEN EXISTS (SELECT FROM skipq.job_waits w"
                      " WHERE w.child OPERATOR(pg_catalog.=) r"
                      " AND w.pending OPERATOR(pg_catalog.>) 0) THEN 'waiting'"
                      " ELSE 'queued' END FROM skipq.retry($1::int8[]) r ORDER BY 1",
    [CLI_ACT_CANCEL] = "SELECT id, outcome FROM skipq.cancel($1::int8[]) ORDER BY 1",
    [CLI_ACT_DELETE] = "SELECT id, deleted::text FROM skipq.delete_jobs($1::int8[])"
                       " ORDER BY 1",
};

const char *
cli_row_of(const PGresult *res, int64_t id)
{
    /* a binary search: a bulk action of 10,000 ids looks each one up */
    int lo = 0, hi = PQntuples(res);
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        long long v = strtoll(PQgetvalue(res, mid, 0), NULL, 10);
        if (v == id)
            return PQgetvalue(res, mid, 1);
        if (v < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- recover ---- */

/* With --tag or --meta ($12, $13), the ids are those of the jobs in the
 * status that match them (and --id's, if given): skipq.recover() takes
 * the rest of its filters as always. */
static const char recover_sql[] =
    "SELECT from_status::text, job_kind, jobs, to_status::text "
    "FROM skipq.recover("
    "  status => $1,"
    "  older_than => $2::float8 * interval '1 millisecond',"
    "  queue => $3, kind => $4, priority => $5,"
    "  ids => CASE WHEN $12::jsonb IS NULL AND $13::jsonb IS NULL THEN $6::int8[]"
    "   ELSE ARRAY(SELECT j.id FROM skipq.jobs j WHERE j.status::text = $1::text"
    "    AND ($6::int8[] IS NULL OR j.id = ANY ($6::int8[])) AND" CLI_FILTER_SQL(
        "$12", "$13") ") END,"
                      "  lim => $7::int, dry_run => $8::boolean,"
                      "  extra_attempts => $9::int,"
                      "  lease => $10::float8 * interval '1 millisecond',"
                      "  default_max_attempts => $11::int)";

PGresult *
cli_recover_run(PGconn *pg, const char *const *params, int dry_run)
{
    const char *p[CLI_RECOVER_NPARAMS];

    memcpy(p, params, sizeof p);
    p[7] = dry_run ? "true" : "false";
    return PQexecParams(pg, recover_sql, CLI_RECOVER_NPARAMS, NULL, p, NULL, NULL, 0);
}

/* ---- queues ---- */

/* The limits are text before they meet ||: text || integer is
 * pg_catalog's anynonarray operator, which one planted in public for the
 * exact types would beat (test_search_path.serve_runs_no_planted_object);
 * text || text is matched exactly by pg_catalog's own. */
const char cli_queue_ls_sql[] =
    "SELECT s.queue, s.paused, pg_catalog.array_to_json(s.paused_kinds)::text,"
    "       s.runnable, s.scheduled, s.waiting, s.running, s.succeeded, s.failed,"
    "       s.cancelled,"
    "       pg_catalog.concat_ws(', ', 'max ' || s.max_running::text,"
    "         s.max_running_per_key::text || '/key',"
    "         s.rate_limit::text || '/' || skipq.duration_text(s.rate_interval)"
    "           || CASE WHEN s.rate_by = 'key' THEN ' per key' ELSE '' END,"
    "         'aging ' || skipq.duration_text(s.age_after)),"
    "       s.max_running, s.max_running_per_key,"
    "       s.rate_limit::text || '/' || skipq.duration_text(s.rate_interval),"
    "       skipq.duration_text(s.age_after), s.rate_by "
    "FROM skipq.queue_states s ORDER BY s.queue";

const char cli_queue_pause_sql[] = "SELECT skipq.queue_pause($1, $2)";
const char cli_queue_resume_sql[] = "SELECT skipq.queue_resume($1, $2)";

static const char *const setting_names[] = {"max_running", "max_running_per_key", "rate",
                                            "age_after", "rate_by"};

static const char *const count_names[] = {"runnable",  "scheduled", "waiting",  "running",
                                          "succeeded", "failed",    "cancelled"};

json_object *
cli_queue_ls_row(const PGresult *res, int r)
{
    {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "queue", json_object_new_string(PQgetvalue(res, r, 0)));
        json_object_object_add(o, "paused",
                               json_object_new_boolean(PQgetvalue(res, r, QLS_PAUSED)[0] ==
                                                       't'));
        json_object_object_add(o, "paused_kinds",
                               json_tokener_parse(PQgetvalue(res, r, QLS_KINDS)));
        for (int c = 0; c < QLS_NCOLS - QLS_COUNTS; c++)
            json_object_object_add(o, count_names[c],
                                   json_object_new_int64(strtoll(
                                       PQgetvalue(res, r, QLS_COUNTS + c), NULL, 10)));
        for (int c = 0; c < 5; c++) {
            const char *v = PQgetvalue(res, r, QLS_SETTINGS + c);
            json_object_object_add(o, setting_names[c],
                                   PQgetisnull(res, r, QLS_SETTINGS + c) ? NULL
                                   : c < 2 ? json_object_new_int64(strtoll(v, NULL, 10))
                                           : json_object_new_string(v));
        }
        return o;
    }
}

/* ---- schedules ---- */

/* The next run times: from the schedule's next slot (due now if it has
 * passed and no worker took it yet); a paused one's from now. */
/* clang-format off */
const char cli_schedule_ls_sql[] =
    "SELECT s.name, s.cron, s.time_zone, s.kind, s.queue, s.priority, s.missed,"
    "       s.paused, s.source, " ISO("s.last_slot") ", s.last_job_id, s.payload::text,"
    "       pg_catalog.array_to_json(ARRAY("
    "         SELECT " ISO("t") " FROM skipq.cron_times(s.cron, s.time_zone,"
    "           CASE WHEN s.paused OR s.next_slot IS NULL THEN pg_catalog.now()"
    "                ELSE s.next_slot - interval '1 microsecond' END, $1::int4) AS t))::text "
    "FROM skipq.schedules s ORDER BY s.name";
/* clang-format on */

const char cli_schedule_pause_sql[] = "SELECT skipq.schedule_pause($1, true)";
const char cli_schedule_resume_sql[] = "SELECT skipq.schedule_pause($1, false)";

static json_object *
text_or_null(const PGresult *res, int r, int c)
{
    return PQgetisnull(res, r, c) ? NULL : json_object_new_string(PQgetvalue(res, r, c));
}

json_object *
cli_schedule_ls_row(const PGresult *res, int r)
{
    static const char *const keys[SLS_NCOLS] = {
        "name",   "cron",   "time_zone", "kind",        "queue",   "priority",  "missed",
        "paused", "source", "last_slot", "last_job_id", "payload", "next_runs",
    };
    {
        json_object *o = json_object_new_object();
        for (int c = 0; c < SLS_NCOLS; c++) {
            json_object *v;
            if (c == SLS_PRIO)
                v = json_object_new_int(atoi(PQgetvalue(res, r, c)));
            else if (c == SLS_PAUSED)
                v = json_object_new_boolean(PQgetvalue(res, r, c)[0] == 't');
            else if (c == SLS_LAST_JOB)
                v = PQgetisnull(res, r, c)
                        ? NULL
                        : json_object_new_int64(strtoll(PQgetvalue(res, r, c), NULL, 10));
            else if (c == SLS_PAYLOAD || c == SLS_NEXT)
                v = cli_cell_json(res, r, c, 'j');
            else
                v = text_or_null(res, r, c);
            json_object_object_add(o, keys[c], v);
        }
        return o;
    }
}

/* ---- stats ---- */

const char cli_stats_queues_sql[] =
    "SELECT queue, priority, waiting, runnable, scheduled, running, succeeded, "
    "       failed, cancelled, "
    "       extract(epoch FROM oldest_runnable_age)::float8, "
    "       finished_last_minute, coalesce(p.paused, false), "
    "       pg_catalog.array_to_json(coalesce(p.paused_kinds, '{}'))::text "
    "FROM skipq.queue_stats s LEFT JOIN skipq.queues p USING (queue) "
    "ORDER BY queue, priority DESC";

const char cli_stats_workers_sql[] =
    "SELECT id, host, pid, pg_catalog.array_to_string(queues, ','), priorities, "
    "       concurrency, running_jobs, "
    "       extract(epoch FROM heartbeat_age)::float8, alive, version "
    "FROM skipq.active_workers ORDER BY id";

json_object *
cli_cell_json(const PGresult *res, int r, int c, char type)
{
    const char *v = PQgetvalue(res, r, c);

    if (PQgetisnull(res, r, c))
        return NULL;
    switch (type) {
    case 'i':
        return json_object_new_int64(strtoll(v, NULL, 10));
    case 'f':
        return cli_json_double(strtod(v, NULL));
    case 'b':
        return json_object_new_boolean(v[0] == 't');
    case 'j':
        return json_tokener_parse(v);
    default:
        return json_object_new_string(v);
    }
}

/* JSON keys, in the queries' column order */
static const char *const queue_keys[] = {"queue",
                                         "priority",
                                         "waiting",
                                         "runnable",
                                         "scheduled",
                                         "running",
                                         "succeeded",
                                         "failed",
                                         "cancelled",
                                         "oldest_runnable_s",
                                         "finished_last_minute",
                                         "paused",
                                         "paused_kinds"};
static const char *const worker_keys[] = {
    "id",         "host",        "pid",          "queues",
    "priorities", "concurrency", "running_jobs", "heartbeat_age_s",
    "alive",      "version"};

json_object *
cli_rows_json(const PGresult *res, const char *const *keys, const char *types)
{
    json_object *a = json_object_new_array();

    for (int r = 0; a && r < PQntuples(res); r++) {
        json_object *o = json_object_new_object();
        if (!o)
            break;
        for (int c = 0; c < PQnfields(res); c++)
            json_object_object_add(o, keys[c], cli_cell_json(res, r, c, types[c]));
        json_object_array_add(a, o);
    }
    return a;
}

json_object *
cli_stats_queues_json(const PGresult *res)
{
    return cli_rows_json(res, queue_keys, "siiiiiiiifibj");
}

json_object *
cli_stats_workers_json(const PGresult *res)
{
    return cli_rows_json(res, worker_keys, "isissiifbs");
}
