/*
 * serve_api.c - the endpoints of `skipq serve` (docs/http.md), one
 * function each (enqueue's: serve_jobs.c), and the router's table. Input is checked by the
 * library's validators, and what the CLI runs and prints comes from
 * queries.c, so an answer here words its errors and shapes its rows as
 * the matching command does.
 */
#include "queries.h"
#include "serve.h"
#include "skipq_json.h"
#include "web.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small parsers ------------------------------------------------------ */

/* A positive job id from text; false after answering 400. */
static bool
parse_id(struct api_req *q, const char *s, int64_t *out)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (!*s || *end || errno == ERANGE || v < 1 || s[0] == ' ' || s[0] == '+') {
        api_error(q, 400, "invalid job id \"%.64s\": expected a positive whole number", s);
        return false;
    }
    *out = v;
    return true;
}

/* A whole number from a query argument in [min, max]; def when absent. */
static bool
query_int(struct api_req *q, const char *name, long long min, long long max, long long def,
          long long *out)
{
    const char *s = http_query(q->rq, name);
    char *end = NULL;

    *out = def;
    if (!s)
        return true;
    errno = 0;
    *out = strtoll(s, &end, 10);
    if (!*s || *end || errno == ERANGE || *out < min || *out > max) {
        api_error(q, 400, "%s must be from %lld to %lld, not \"%.64s\"", name, min, max, s);
        return false;
    }
    return true;
}

/* A name (queue, kind, ...) by the library's rule; false after 400. */
static bool
check_name(struct api_req *q, const char *what, const char *name)
{
    skipq_error err = {0};

    if (skipq_check_name(what, name, &err) != SKIPQ_OK) {
        api_error(q, 400, "%s", err.message);
        return false;
    }
    return true;
}

/* ---- fields of a request's JSON ----------------------------------------- */

bool
job_string(json_object *v, const char *key, const char **out, char *msg, size_t msglen)
{
    if (!json_object_is_type(v, json_type_string))
        return JOB_FAIL("%s must be a string", key);
    *out = json_object_get_string(v);
    return true;
}

/* A name (kind, queue) by the library's rule. */
bool
job_name(json_object *v, const char *key, const char **out, char *msg, size_t msglen)
{
    skipq_error err = {0};

    if (!job_string(v, key, out, msg, msglen))
        return false;
    if (skipq_check_name(key, *out, &err) != SKIPQ_OK)
        return JOB_FAIL("%s", err.message);
    return true;
}

bool
job_duration(json_object *v, const char *key, int64_t *ms, char *msg, size_t msglen)
{
    skipq_error err = {0};
    const char *s;

    if (!job_string(v, key, &s, msg, msglen))
        return false;
    if (skipq_parse_duration(s, ms, &err) != SKIPQ_OK)
        return JOB_FAIL("%s: %s", key, err.message);
    if (*ms > CLI_MAX_DURATION_MS)
        return JOB_FAIL("%s: invalid duration \"%.64s\": at most 36500d", key, s);
    return true;
}

/* An array of positive ids (depends_on) into *out, malloc'd. */
bool
job_ids(json_object *v, const char *key, size_t max, int64_t **out, size_t *n, char *msg,
        size_t msglen)
{
    size_t len = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;

    if (!json_object_is_type(v, json_type_array))
        return JOB_FAIL("%s must be an array of job ids", key);
    if (len > max)
        return JOB_FAIL("%s: at most %zu ids, not %zu", key, max, len);
    if (!(*out = calloc(len + 1, sizeof **out)))
        return JOB_FAIL("out of memory");
    for (size_t i = 0; i < len; i++) {
        json_object *e = json_object_array_get_idx(v, i);
        if (!json_object_is_type(e, json_type_int) || json_object_get_int64(e) < 1)
            return JOB_FAIL("%s[%zu] must be a positive whole number", key, i);
        (*out)[i] = json_object_get_int64(e);
    }
    *n = len;
    return true;
}

bool
job_priority(json_object *v, int16_t *out, char *msg, size_t msglen)
{
    skipq_error err = {0};
    char buf[32];
    const char *s = buf;

    if (json_object_is_type(v, json_type_int))
        snprintf(buf, sizeof buf, "%lld", (long long)json_object_get_int64(v));
    else if (json_object_is_type(v, json_type_string))
        s = json_object_get_string(v);
    else
        return JOB_FAIL("priority must be a name (high, normal, low) or a number");
    if (skipq_parse_priority(s, out, &err) != SKIPQ_OK)
        return JOB_FAIL("%s", err.message);
    return true;
}

/* ---- jobs: reading ------------------------------------------------------ */

static void
h_jobs_ls(struct api_req *q)
{
    const char *params[CLI_JOBS_LS_NPARAMS] = {NULL};
    const char *status = http_query(q->rq, "status");
    char statuses[96], msg[256], limit_s[24], cursor_s[24];
    long long limit, cursor;
    json_object *rows, *o;

    if (status) {
        if (cli_statuses(status, CLI_ST_ALL, statuses, sizeof statuses, msg, sizeof msg)) {
            api_error(q, 400, "status%s", msg);
            return;
        }
        params[0] = statuses;
    }
    params[1] = http_query(q->rq, "queue");
    params[2] = http_query(q->rq, "kind");
    if ((params[1] && !check_name(q, "queue", params[1])) ||
        (params[2] && !check_name(q, "kind", params[2])) ||
        !query_int(q, "limit", 1, 500, 50, &limit) ||
        !query_int(q, "cursor", 1, INT64_MAX, 0, &cursor))
        return;
    /* archived=true lists the archive, skipq.jobs_done, instead */
    const char *archived = http_query(q->rq, "archived");
    if (archived && strcmp(archived, "true") != 0 && strcmp(archived, "false") != 0) {
        api_error(q, 400, "archived must be true or false");
        return;
    }
    bool in_archive = archived && strcmp(archived, "true") == 0;
    snprintf(limit_s, sizeof limit_s, "%lld", limit + 1); /* one more: is there a next? */
    params[3] = limit_s;
    if (cursor) {
        snprintf(cursor_s, sizeof cursor_s, "%lld", cursor);
        params[8] = cursor_s;
    }
    PGresult *res = PQexecParams(skipq_conn_pg(q->conn),
                                 in_archive ? cli_jobs_ls_archived_sql : cli_jobs_ls_sql,
                                 CLI_JOBS_LS_NPARAMS, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        api_db_error(q, res, "could not list jobs");
    } else if ((o = json_object_new_object()) && (rows = json_object_new_array())) {
        int n = PQntuples(res) > limit ? (int)limit : PQntuples(res);
        for (int r = 0; r < n; r++)
            json_object_array_add(rows, cli_jobs_ls_row(res, r));
        json_object_object_add(o, "jobs", rows);
        json_object_object_add(o, "next_cursor",
                               PQntuples(res) > limit
                                   ? json_object_new_string(PQgetvalue(res, n - 1, JLS_ID))
                                   : NULL);
        api_json(q, 200, o);
    } else {
        api_error(q, 500, "out of memory");
    }
    PQclear(res);
}

/* The parents a job waits for (or waited for). */
static const char parents_sql[] =
    "SELECT pg_catalog.array_to_json(ARRAY(SELECT d.parent FROM skipq.job_dependencies d"
    " WHERE d.child = $1::int8 ORDER BY d.parent))::text";

/* `jobs show --json`'s object, with the running worker's id under the
 * name the dashboard reads (worker_id) and the job's parents. */
static void
job_reply(struct api_req *q, const PGresult *job, const char *const *params)
{
    json_object *o = cli_job_json(job), *v = NULL;
    PGresult *res = PQexecParams(skipq_conn_pg(q->conn), parents_sql, 1, NULL, params, NULL,
                                 NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        api_db_error(q, res, "could not read the parents of job %s", params[0]);
        json_object_put(o);
    } else if (o) {
        json_object_object_get_ex(o, "locked_by", &v);
        json_object_object_add(o, "worker_id", json_object_get(v));
        json_object_object_add(o, "depends_on", cli_cell_json(res, 0, 0, 'j'));
        api_json(q, 200, o);
    }
    PQclear(res);
}

static void
h_job(struct api_req *q)
{
    int64_t id;
    char id_s[24];
    const char *params[1] = {id_s};

    if (!parse_id(q, q->arg, &id))
        return;
    snprintf(id_s, sizeof id_s, "%lld", (long long)id);
    PGresult *res = PQexecParams(skipq_conn_pg(q->conn), cli_job_show_sql, 1, NULL, params,
                                 NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        api_db_error(q, res, "could not read job %lld", (long long)id);
    else if (PQntuples(res) == 0)
        api_error(q, 404, "job %lld does not exist", (long long)id);
    else
        job_reply(q, res, params);
    PQclear(res);
}

/* ---- jobs: retry, cancel ------------------------------------------------ */

/*
 * Lock the jobs, act, commit: what each result says is what the change
 * saw (cmd_jobs_act.c's rule). *rows and *res are the locked rows and
 * the action's; false after answering.
 */
static bool
act(struct api_req *q, enum cli_act a, const int64_t *ids, size_t n, PGresult **rows,
    PGresult **res)
{
    const char *what = a == CLI_ACT_RETRY ? "retry" : "cancel";
    char *lit = NULL;
    bool ok = false;

    *rows = *res = NULL;
    if (cli_ids_literal(ids, n, &lit) != 0) {
        api_error(q, 500, "out of memory");
        return false;
    }
    const char *p[1] = {lit};
    if (!api_begin(q))
        goto out;
    *rows = PQexecParams(skipq_conn_pg(q->conn), cli_act_lock_ids_sql, 1, NULL, p, NULL,
                         NULL, 0);
    if (PQresultStatus(*rows) != PGRES_TUPLES_OK) {
        api_db_error(q, *rows, "could not read jobs");
        goto out;
    }
    *res = PQexecParams(skipq_conn_pg(q->conn), cli_act_sql[a], 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(*res) != PGRES_TUPLES_OK) {
        api_db_error(q, *res, "could not %s jobs", what);
        goto out;
    }
    ok = api_commit(q);
out:
    if (!ok)
        api_rollback(q);
    free(lit);
    return ok;
}

/* {"id", "was", "outcome"}: retry's new status ("queued", "waiting") or
 * "not retried"; cancel's outcome ("cancelled", "requested", or the
 * finished status it kept); "does not exist". */
static json_object *
act_result(enum cli_act a, int64_t id, const PGresult *rows, const PGresult *res)
{
    json_object *o = json_object_new_object();
    const char *was = cli_row_of(rows, id), *now = cli_row_of(res, id);

    if (!o)
        return NULL;
    json_object_object_add(o, "id", json_object_new_int64(id));
    json_object_object_add(o, "was", was ? json_object_new_string(was) : NULL);
    json_object_object_add(o, "outcome",
                           json_object_new_string(!was                 ? "does not exist"
                                                  : now                ? now
                                                  : a == CLI_ACT_RETRY ? "not retried"
                                                                       : was));
    return o;
}

static void
act_one(struct api_req *q, enum cli_act a)
{
    PGresult *rows = NULL, *res = NULL;
    int64_t id;

    if (!parse_id(q, q->arg, &id))
        return;
    if (!act(q, a, &id, 1, &rows, &res)) { /* answered; what it read is ours */
        PQclear(rows);
        PQclear(res);
        return;
    }
    const char *was = cli_row_of(rows, id);
    if (!was)
        api_error(q, 404, "job %lld does not exist", (long long)id);
    else if (a == CLI_ACT_RETRY && !cli_row_of(res, id))
        api_error(q, 409, "job %lld is %s; not retried", (long long)id, was);
    else
        api_json(q, 200, act_result(a, id, rows, res));
    PQclear(rows);
    PQclear(res);
}

static void
act_many(struct api_req *q, enum cli_act a)
{
    json_object *body = api_body(q, false), *list = NULL, *out;
    int64_t *ids = NULL;
    size_t n = 0;
    char msg[256];
    PGresult *rows = NULL, *res = NULL;
    const size_t msglen = sizeof msg;

    if (!body)
        return;
    if (!json_object_object_get_ex(body, "ids", &list) ||
        json_object_object_length(body) != 1)
        api_error(q, 400, "the body must be {\"ids\": [...]}");
    else if (!job_ids(list, "ids", API_MAX_BATCH, &ids, &n, msg, msglen))
        api_error(q, 400, "%s", msg);
    else if (n == 0)
        api_error(q, 400, "ids must name at least one job");
    else if (act(q, a, ids, n, &rows, &res) && (out = json_object_new_object())) {
        json_object *results = json_object_new_array();
        for (size_t i = 0; results && i < n; i++)
            json_object_array_add(results, act_result(a, ids[i], rows, res));
        json_object_object_add(out, "results", results);
        api_json(q, 200, out);
    }
    PQclear(rows);
    PQclear(res);
    free(ids);
    json_object_put(body);
}

static void
h_retry_one(struct api_req *q)
{
    act_one(q, CLI_ACT_RETRY);
}

static void
h_cancel_one(struct api_req *q)
{
    act_one(q, CLI_ACT_CANCEL);
}

static void
h_retry_many(struct api_req *q)
{
    act_many(q, CLI_ACT_RETRY);
}

static void
h_cancel_many(struct api_req *q)
{
    act_many(q, CLI_ACT_CANCEL);
}

/* ---- recover ------------------------------------------------------------ */

/* The body's fields, as `skipq recover` takes its options. */
struct recover_req {
    const char *statuses[3];
    size_t nstatus;
    const char *queue, *kind, *priority;
    char priority_buf[32];
    int64_t older_ms;
    long long limit;
    bool dry_run;
};

static bool
recover_status(json_object *v, struct recover_req *r, char *msg, size_t msglen)
{
    size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 1;

    if (n == 0 || n > 3)
        return JOB_FAIL("status must name one to three of failed, queued, running");
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_is_type(v, json_type_array)
                             ? json_object_array_get_idx(v, i)
                             : v;
        const char *s;
        if (!job_string(e, "status", &s, msg, msglen))
            return false;
        if (strcmp(s, "failed") != 0 && strcmp(s, "queued") != 0 &&
            strcmp(s, "running") != 0)
            return JOB_FAIL("status: unrecognized status \"%.64s\": use failed, queued or "
                            "running",
                            s);
        r->statuses[r->nstatus++] = s;
    }
    return true;
}

static bool
recover_field(const char *key, json_object *v, struct recover_req *r, char *msg,
              size_t msglen)
{
    int16_t prio;

    if (strcmp(key, "status") == 0)
        return recover_status(v, r, msg, msglen);
    if (strcmp(key, "older_than") == 0)
        return job_duration(v, key, &r->older_ms, msg, msglen);
    if (strcmp(key, "dry_run") == 0) {
        if (!json_object_is_type(v, json_type_boolean))
            return JOB_FAIL("dry_run must be true or false");
        r->dry_run = json_object_get_boolean(v);
        return true;
    }
    if (strcmp(key, "limit") == 0) {
        if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 1 ||
            json_object_get_int64(v) > INT32_MAX)
            return JOB_FAIL("limit must be from 1 to %d", INT32_MAX);
        r->limit = json_object_get_int64(v);
        return true;
    }
    if (strcmp(key, "priority") == 0) {
        if (!job_priority(v, &prio, msg, msglen))
            return false;
        snprintf(r->priority_buf, sizeof r->priority_buf, "%d", prio);
        r->priority = r->priority_buf;
        return true;
    }
    if (strcmp(key, "queue") == 0 || strcmp(key, "kind") == 0)
        return job_name(v, key, key[0] == 'q' ? &r->queue : &r->kind, msg, msglen);
    return JOB_FAIL("unknown field \"%.64s\"", key);
}

/* One status's run; its rows added to kinds, *count summed. */
static bool
recover_one(struct api_req *q, const struct recover_req *r, const char *status,
            json_object *kinds, int64_t *count)
{
    const skipq_config *cfg = q->ctx->cfg;
    char older_s[24], limit_s[24], lease_s[24], max_s[24];
    const char *p[CLI_RECOVER_NPARAMS] = {NULL};

    snprintf(older_s, sizeof older_s, "%lld", (long long)r->older_ms);
    snprintf(limit_s, sizeof limit_s, "%lld", r->limit);
    snprintf(lease_s, sizeof lease_s, "%lld", (long long)skipq_config_lease_timeout(cfg));
    snprintf(max_s, sizeof max_s, "%d", skipq_config_max_attempts(cfg));
    p[0] = status;
    p[1] = older_s;
    p[2] = r->queue;
    p[3] = r->kind;
    p[4] = r->priority;
    p[6] = limit_s;
    p[9] = lease_s;
    p[10] = max_s;
    PGresult *res = cli_recover_run(skipq_conn_pg(q->conn), p, r->dry_run);
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        api_db_error(q, res, "could not recover %s jobs", status);
    for (int i = 0; ok && i < PQntuples(res); i++) {
        json_object *k = json_object_new_object();
        json_object_object_add(k, "status", cli_cell_json(res, i, 0, 's'));
        json_object_object_add(k, "kind", cli_cell_json(res, i, 1, 's'));
        json_object_object_add(k, "jobs", cli_cell_json(res, i, 2, 'i'));
        json_object_object_add(k, "to", cli_cell_json(res, i, 3, 's'));
        json_object_array_add(kinds, k);
        *count += strtoll(PQgetvalue(res, i, 2), NULL, 10);
    }
    PQclear(res);
    return ok;
}

static void
h_recover(struct api_req *q)
{
    json_object *body = api_body(q, false), *kinds = NULL, *o;
    struct recover_req r = {
        .older_ms = skipq_config_recover_older_than(q->ctx->cfg),
        .limit = skipq_config_recover_limit(q->ctx->cfg),
    };
    int64_t count = 0;
    char msg[1024];
    bool ok = true;

    if (!body)
        return;
    json_object_object_foreach(body, key, v)
    {
        if (ok && !recover_field(key, v, &r, msg, sizeof msg))
            ok = false;
    }
    if (ok && r.nstatus == 0)
        snprintf(msg, sizeof msg, "recover needs status: failed, queued or running"),
            ok = false;
    if (!ok) {
        api_error(q, 400, "%s", msg);
    } else if (!(kinds = json_object_new_array())) {
        api_error(q, 500, "out of memory");
    } else if (api_begin(q)) {
        for (size_t i = 0; ok && i < r.nstatus; i++)
            ok = recover_one(q, &r, r.statuses[i], kinds, &count);
        if (!ok)
            api_rollback(q);
        else if (api_commit(q) && (o = json_object_new_object())) {
            json_object_object_add(o, "dry_run", json_object_new_boolean(r.dry_run));
            json_object_object_add(o, "count", json_object_new_int64(count));
            json_object_object_add(o, "kinds", kinds);
            kinds = NULL;
            api_json(q, 200, o);
        }
    }
    json_object_put(kinds);
    json_object_put(body);
}

/* ---- stats, throughput, workers ----------------------------------------- */

/* A statement whose rows answer as {name: [{cols[c]: ...}]}, typed as
 * cli_cell_json's types say. */
struct api_view {
    const char *sql, *name, *what, *types;
    const char *const *cols;
};

static void
view_reply(struct api_req *q, const struct api_view *v)
{
    PGresult *res = PQexec(skipq_conn_pg(q->conn), v->sql);
    json_object *o;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        api_db_error(q, res, "could not read %s", v->what);
    } else if ((o = json_object_new_object())) {
        json_object_object_add(o, v->name, cli_rows_json(res, v->cols, v->types));
        api_json(q, 200, o);
    }
    PQclear(res);
}

/* Per queue and kind: jobs by status, the oldest runnable one's age. */
static const char *const stats_cols[] = {
    "queue",   "kind",      "queued",
    "running", "waiting",   "succeeded",
    "failed",  "cancelled", "oldest_runnable_age_seconds"};
static const struct api_view stats_view = {
    "SELECT j.queue, j.kind,"
    "  pg_catalog.count(*) FILTER (WHERE j.status::text = 'queued'),"
    "  pg_catalog.count(*) FILTER (WHERE j.status::text = 'running'),"
    "  pg_catalog.count(*) FILTER (WHERE j.status::text = 'waiting'),"
    "  pg_catalog.count(*) FILTER (WHERE j.status::text = 'succeeded'),"
    "  pg_catalog.count(*) FILTER (WHERE j.status::text = 'failed'),"
    "  pg_catalog.count(*) FILTER (WHERE j.status::text = 'cancelled'),"
    "  extract(epoch FROM pg_catalog.now() - pg_catalog.min(j.run_at)"
    "    FILTER (WHERE j.status::text = 'queued' AND j.run_at <= pg_catalog.now()))::float8"
    " FROM skipq.jobs j GROUP BY j.queue, j.kind ORDER BY j.queue, j.kind",
    "queues", "skipq.jobs", "ssiiiiiif", stats_cols};

/* skipq.active_workers, with the heartbeat's time and age. */
static const char *const workers_cols[] = {
    "id",         "host",         "pid",
    "queues",     "priorities",   "concurrency",
    "started_at", "heartbeat_at", "heartbeat_age_seconds",
    "running",    "alive",        "version"};
static const struct api_view workers_view = {
    "SELECT w.id, w.host, w.pid, pg_catalog.array_to_json(w.queues)::text, w.priorities,"
    "  w.concurrency, pg_catalog.to_json(w.started_at) #>> '{}'::text[],"
    "  pg_catalog.to_json(pg_catalog.now() - w.heartbeat_age) #>> '{}'::text[],"
    "  extract(epoch FROM w.heartbeat_age)::float8, w.running_jobs, w.alive, w.version"
    " FROM skipq.active_workers w ORDER BY w.id",
    "workers", "skipq.active_workers", "isijsissfibs", workers_cols};

static void
h_stats(struct api_req *q)
{
    view_reply(q, &stats_view);
}

static void
h_workers(struct api_req *q)
{
    view_reply(q, &workers_view);
}

/* Jobs finished per minute, from finished_at of the jobs still stored;
 * minutes with none are there with zeros. Every operator is one that
 * matches its operands exactly (statuses compared as text, float8 *
 * interval), so nothing planted in public is a better match
 * (docs/security.md, search_path). */
static const char throughput_sql[] =
    "WITH f AS (SELECT pg_catalog.date_trunc('minute', j.finished_at) AS m,"
    "   pg_catalog.count(*) FILTER (WHERE j.status::text = 'succeeded') AS ok,"
    "   pg_catalog.count(*) FILTER (WHERE j.status::text = 'failed') AS bad"
    "  FROM skipq.jobs j"
    "  WHERE j.finished_at >= pg_catalog.date_trunc('minute', pg_catalog.now())"
    "        - ($1::int - 1)::float8 * interval '1 minute'"
    "    AND j.status::text IN ('succeeded', 'failed') GROUP BY 1)"
    " SELECT pg_catalog.to_json(g.m) #>> '{}'::text[],"
    "   coalesce(f.ok, 0), coalesce(f.bad, 0)"
    " FROM pg_catalog.generate_series("
    "   pg_catalog.date_trunc('minute', pg_catalog.now())"
    "     - ($1::int - 1)::float8 * interval '1 minute',"
    "   pg_catalog.date_trunc('minute', pg_catalog.now()), interval '1 minute') AS g(m)"
    " LEFT JOIN f ON f.m = g.m ORDER BY g.m";

static void
h_throughput(struct api_req *q)
{
    static const char *const keys[] = {"at", "succeeded", "failed"};
    long long minutes;
    char m_s[24];
    const char *p[1] = {m_s};
    json_object *o;

    if (!query_int(q, "minutes", 1, 1440, 60, &minutes))
        return;
    snprintf(m_s, sizeof m_s, "%lld", minutes);
    PGresult *res = PQexecParams(skipq_conn_pg(q->conn), throughput_sql, 1, NULL, p, NULL,
                                 NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        api_db_error(q, res, "could not count finished jobs");
    } else if ((o = json_object_new_object())) {
        json_object_object_add(o, "minutes", cli_rows_json(res, keys, "sii"));
        api_json(q, 200, o);
    }
    PQclear(res);
}

/* ---- queues, schedules --------------------------------------------------- */

/* {key: [row...]} of a statement whose rows the CLI builds one by one. */
static void
each_row_reply(struct api_req *q, const char *sql, const char *param, const char *key,
               const char *what, json_object *(*row)(const PGresult *, int))
{
    PGresult *res = PQexecParams(skipq_conn_pg(q->conn), sql, param ? 1 : 0, NULL, &param,
                                 NULL, NULL, 0);
    json_object *o, *rows;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        api_db_error(q, res, "could not list %s", what);
    } else if ((o = json_object_new_object()) && (rows = json_object_new_array())) {
        for (int r = 0; r < PQntuples(res); r++)
            json_object_array_add(rows, row(res, r));
        json_object_object_add(o, key, rows);
        api_json(q, 200, o);
    }
    PQclear(res);
}

static void
h_queues(struct api_req *q)
{
    each_row_reply(q, cli_queue_ls_sql, NULL, "queues", "queues", cli_queue_ls_row);
}

static void
h_schedules(struct api_req *q)
{
    each_row_reply(q, cli_schedule_ls_sql, "1", "schedules", "schedules",
                   cli_schedule_ls_row);
}

static void
queue_change(struct api_req *q, bool pause)
{
    json_object *body = api_body(q, true), *kind = NULL, *o;
    const char *v[2] = {q->arg, NULL};

    if (!body)
        return;
    json_object_object_get_ex(body, "kind", &kind);
    if (json_object_object_length(body) > (kind ? 1 : 0))
        api_error(q, 400, "the body may hold \"kind\" only");
    else if (kind && !json_object_is_type(kind, json_type_string))
        api_error(q, 400, "kind must be a string");
    else if (check_name(q, "queue", v[0]) &&
             (!kind || check_name(q, "kind", v[1] = json_object_get_string(kind)))) {
        PGresult *res = PQexecParams(skipq_conn_pg(q->conn),
                                     pause ? cli_queue_pause_sql : cli_queue_resume_sql, 2,
                                     NULL, v, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
            api_db_error(q, res, "could not %s queue \"%s\"", pause ? "pause" : "resume",
                         v[0]);
        } else if ((o = json_object_new_object())) {
            json_object_object_add(o, "queue", json_object_new_string(v[0]));
            json_object_object_add(o, "kind", v[1] ? json_object_new_string(v[1]) : NULL);
            json_object_object_add(o, "paused", json_object_new_boolean(pause));
            json_object_object_add(o, "changed",
                                   json_object_new_boolean(PQgetvalue(res, 0, 0)[0] ==
                                                           't'));
            api_json(q, 200, o);
        }
        PQclear(res);
    }
    json_object_put(body);
}

static void
schedule_change(struct api_req *q, bool pause)
{
    const char *name = q->arg;
    json_object *o;

    if (!check_name(q, "schedule name", name))
        return;
    PGresult *res = PQexecParams(skipq_conn_pg(q->conn),
                                 pause ? cli_schedule_pause_sql : cli_schedule_resume_sql,
                                 1, NULL, &name, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        api_db_error(q, res, "could not %s schedule \"%s\"", pause ? "pause" : "resume",
                     name);
    } else if (PQgetvalue(res, 0, 0)[0] != 't') {
        api_error(q, 404, "schedule \"%s\" does not exist", name);
    } else if ((o = json_object_new_object())) {
        json_object_object_add(o, "name", json_object_new_string(name));
        json_object_object_add(o, "paused", json_object_new_boolean(pause));
        api_json(q, 200, o);
    }
    PQclear(res);
}

static void
h_queue_pause(struct api_req *q)
{
    queue_change(q, true);
}

static void
h_queue_resume(struct api_req *q)
{
    queue_change(q, false);
}

static void
h_schedule_pause(struct api_req *q)
{
    schedule_change(q, true);
}

static void
h_schedule_resume(struct api_req *q)
{
    schedule_change(q, false);
}

/* ---- the description ----------------------------------------------------- */

static void
h_openapi(struct api_req *q)
{
    const struct web_asset *a = web_asset_find("/openapi.json");

    if (!a || !(q->rs->body = malloc(a->len + 1))) {
        api_error(q, 500, "the API description is missing");
        return;
    }
    memcpy(q->rs->body, a->data, a->len);
    q->rs->len = a->len;
    q->rs->content_type = "application/json";
}

/* ---- the router's table ---------------------------------------------------- */

/* Matched in order: a fixed path before a {param} one that would take it. */
const struct api_route serve_routes[] = {
    {"GET", "/api/openapi.json", h_openapi, false},
    {"GET", "/api/jobs", h_jobs_ls, true},
    {"POST", "/api/jobs", h_enqueue, true},
    {"POST", "/api/jobs/batch", h_batch, true},
    {"POST", "/api/jobs/retry", h_retry_many, true},
    {"POST", "/api/jobs/cancel", h_cancel_many, true},
    {"GET", "/api/jobs/{id}", h_job, true},
    {"POST", "/api/jobs/{id}/retry", h_retry_one, true},
    {"POST", "/api/jobs/{id}/cancel", h_cancel_one, true},
    {"POST", "/api/recover", h_recover, true},
    {"GET", "/api/stats", h_stats, true},
    {"GET", "/api/throughput", h_throughput, true},
    {"GET", "/api/workers", h_workers, true},
    {"GET", "/api/queues", h_queues, true},
    {"POST", "/api/queues/{name}/pause", h_queue_pause, true},
    {"POST", "/api/queues/{name}/resume", h_queue_resume, true},
    {"GET", "/api/schedules", h_schedules, true},
    {"POST", "/api/schedules/{name}/pause", h_schedule_pause, true},
    {"POST", "/api/schedules/{name}/resume", h_schedule_resume, true},
};
const size_t serve_nroutes = sizeof serve_routes / sizeof serve_routes[0];
