/*
 * serve_jobs.c - the enqueue endpoints of `skipq serve`: one job
 * (POST /api/jobs) and a batch of up to 10,000 in one transaction, all or
 * nothing (POST /api/jobs/batch). Each job's JSON is checked by the
 * library's validators (the fields: serve_api.c) before the database is
 * touched.
 */
#include "queries.h"
#include "serve.h"
#include "skipq_json.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- jobs: enqueue ------------------------------------------------------ */

/* One job of a request, its options pointing into the request's JSON. */
struct job {
    skipq_enqueue_opts o;
    const char *kind, *payload, *run_at;
    int64_t *deps;
    const char **tags;
};

static void
job_free(struct job *j)
{
    free(j->deps);
    free((void *)j->tags);
}

static bool
job_unique_mode(json_object *v, skipq_unique_mode *out, char *msg, size_t msglen)
{
    const char *s;

    if (!job_string(v, "unique_mode", &s, msg, msglen))
        return false;
    if (strcmp(s, "keep") == 0)
        *out = SKIPQ_UNIQUE_KEEP;
    else if (strcmp(s, "replace") == 0)
        *out = SKIPQ_UNIQUE_REPLACE;
    else if (strcmp(s, "debounce") == 0)
        *out = SKIPQ_UNIQUE_DEBOUNCE;
    else
        return JOB_FAIL(
            "unique_mode: unknown mode \"%.64s\": use keep, replace or debounce", s);
    return true;
}

static bool
job_tags(json_object *v, struct job *j, char *msg, size_t msglen)
{
    skipq_error err = {0};
    size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;

    if (!json_object_is_type(v, json_type_array) || n > API_MAX_LIST)
        return JOB_FAIL("tags must be an array of at most %d strings", API_MAX_LIST);
    if (!(j->tags = calloc(n + 1, sizeof *j->tags)))
        return JOB_FAIL("out of memory");
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(v, i);
        if (!json_object_is_type(e, json_type_string))
            return JOB_FAIL("tags[%zu] must be a string", i);
        if (skipq_check_name("tag", json_object_get_string(e), &err) != SKIPQ_OK)
            return JOB_FAIL("%s", err.message);
        j->tags[i] = json_object_get_string(e);
    }
    j->o.tags = j->tags;
    j->o.n_tags = n;
    return true;
}

/* A JSON object's text (payload, meta), checked as enqueue checks it. */
static bool
job_object(json_object *v, const char *key, size_t max, const char **out, char *msg,
           size_t msglen)
{
    skipq_error err = {0};

    if (!json_object_is_type(v, json_type_object))
        return JOB_FAIL("%s must be a JSON object", key);
    *out = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
                                                 JSON_C_TO_STRING_NOSLASHESCAPE);
    if (skipq_check_payload(*out, strlen(*out), max, &err) != SKIPQ_OK)
        return JOB_FAIL("%s: %s", key, err.message);
    return true;
}

/* One field of a job. */
static bool
job_field(struct job *j, const char *key, json_object *v, size_t max_payload, char *msg,
          size_t msglen)
{
    size_t n;

    if (strcmp(key, "kind") == 0 || strcmp(key, "queue") == 0)
        return job_name(v, key, key[0] == 'k' ? &j->kind : &j->o.queue, msg, msglen);
    if (strcmp(key, "payload") == 0)
        return job_object(v, key, max_payload, &j->payload, msg, msglen);
    if (strcmp(key, "meta") == 0)
        return job_object(v, key, max_payload, &j->o.meta_json, msg, msglen);
    if (strcmp(key, "priority") == 0)
        return job_priority(v, &j->o.priority, msg, msglen);
    if (strcmp(key, "run_at") == 0)
        return job_string(v, key, &j->run_at, msg, msglen);
    if (strcmp(key, "delay") == 0)
        return job_duration(v, key, &j->o.delay_ms, msg, msglen);
    if (strcmp(key, "unique_window") == 0)
        return job_duration(v, key, &j->o.unique_window_ms, msg, msglen);
    if (strcmp(key, "unique_key") == 0)
        return job_string(v, key, &j->o.unique_key, msg, msglen);
    if (strcmp(key, "concurrency_key") == 0)
        return job_string(v, key, &j->o.concurrency_key, msg, msglen);
    if (strcmp(key, "unique_mode") == 0)
        return job_unique_mode(v, &j->o.unique_mode, msg, msglen);
    if (strcmp(key, "tags") == 0)
        return job_tags(v, j, msg, msglen);
    if (strcmp(key, "max_attempts") == 0) {
        if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 1 ||
            json_object_get_int64(v) > INT32_MAX)
            return JOB_FAIL("max_attempts must be from 1 to %d", INT32_MAX);
        j->o.max_attempts = (int32_t)json_object_get_int64(v);
        return true;
    }
    if (strcmp(key, "depends_on") == 0) {
        if (!job_ids(v, key, API_MAX_LIST, &j->deps, &n, msg, msglen))
            return false;
        j->o.depends_on = j->deps;
        j->o.n_depends_on = n;
        return true;
    }
    return JOB_FAIL("unknown field \"%.64s\"", key);
}

/* A job object into j, every field checked before the database is
 * touched. false with the reason in msg. */
static bool
job_parse(json_object *obj, size_t max_payload, struct job *j, char *msg, size_t msglen)
{
    *j = (struct job){.o = SKIPQ_ENQUEUE_OPTS_INIT};
    j->o.max_payload = max_payload;
    if (!json_object_is_type(obj, json_type_object))
        return JOB_FAIL("a job must be a JSON object");
    json_object_object_foreach(obj, key, v)
    {
        if (!job_field(j, key, v, max_payload, msg, msglen))
            return false;
    }
    if (!j->kind)
        return JOB_FAIL("kind is required");
    if (j->run_at && j->o.delay_ms)
        return JOB_FAIL("give run_at or delay, not both");
    return true;
}

/* Enqueue j on the request's connection (inside its transaction, if one
 * is open). false after answering, prefix before the message. */
static bool
job_enqueue(struct api_req *q, struct job *j, const char *prefix, int64_t *id,
            int *inserted)
{
    skipq_error err = {0};
    char msg[1024];

    if (j->run_at) {
        int rc = cli_run_at(skipq_conn_pg(q->conn), "run_at", j->run_at, &j->o.run_at_us,
                            msg, sizeof msg);
        if (rc != 0) {
            if (PQstatus(skipq_conn_pg(q->conn)) != CONNECTION_OK) {
                err.code = SKIPQ_ERR_CONNECT;
                snprintf(err.message, sizeof err.message, "%.*s",
                         (int)sizeof err.message - 1, msg);
                api_skipq_error(q, &err, prefix);
            } else {
                api_error(q, rc == CLI_EXIT_USAGE ? 400 : 500, "%s%s", prefix, msg);
            }
            return false;
        }
    }
    if (skipq_enqueue_unique(q->conn, j->kind, j->payload, &j->o, id, inserted, &err) !=
        SKIPQ_OK) {
        api_skipq_error(q, &err, prefix);
        return false;
    }
    return true;
}

void
h_enqueue(struct api_req *q)
{
    json_object *body = api_body(q, false), *o;
    struct job j = {.o = SKIPQ_ENQUEUE_OPTS_INIT};
    char msg[1024];
    int64_t id = 0;
    int inserted = 1;

    if (!body)
        return;
    if (!job_parse(body, skipq_config_max_payload(q->ctx->cfg), &j, msg, sizeof msg))
        api_error(q, 400, "%s", msg);
    else if (job_enqueue(q, &j, "", &id, &inserted) && (o = json_object_new_object())) {
        json_object_object_add(o, "id", json_object_new_int64(id));
        json_object_object_add(o, "inserted", json_object_new_boolean(inserted));
        api_json(q, inserted ? 201 : 200, o);
    }
    job_free(&j);
    json_object_put(body);
}

/*
 * A batch in one statement: the jobs, checked and normalized (numbers
 * for priority and durations, the server's run_at already resolved), go
 * as one JSON array through skipq.enqueue_unique row by row in input
 * order, as the library's own staged batch does (statements.c,
 * copy_stage_each): one round trip for 10,000 jobs instead of 10,000.
 * Every operator is written out as pg_catalog's (docs/security.md).
 */
/* clang-format off */
static const char batch_sql[] =
    "SELECT u.id, u.inserted FROM pg_catalog.jsonb_array_elements($1::jsonb)"
    "  WITH ORDINALITY AS e(j, n)"
    " CROSS JOIN LATERAL skipq.enqueue_unique("
    "  e.j OPERATOR(pg_catalog.->>) 'kind',"
    "  coalesce(e.j OPERATOR(pg_catalog.->) 'payload', '{}'::jsonb),"
    "  coalesce(e.j OPERATOR(pg_catalog.->>) 'queue', 'default'),"
    "  (e.j OPERATOR(pg_catalog.->>) 'priority')::int2,"
    "  coalesce('epoch'::timestamptz + (e.j OPERATOR(pg_catalog.->>) 'run_at_us')::float8"
    "     * interval '1 microsecond',"
    "   pg_catalog.now() + (e.j OPERATOR(pg_catalog.->>) 'delay_ms')::float8"
    "     * interval '1 millisecond'),"
    "  (e.j OPERATOR(pg_catalog.->>) 'max_attempts')::int4, NULL, NULL, NULL, NULL,"
    "  e.j OPERATOR(pg_catalog.->>) 'unique_key',"
    "  coalesce(e.j OPERATOR(pg_catalog.->>) 'unique_mode', 'keep'),"
    "  (e.j OPERATOR(pg_catalog.->>) 'unique_window_ms')::float8 * interval '1 millisecond',"
    "  CASE WHEN e.j OPERATOR(pg_catalog.?) 'depends_on' THEN ARRAY(SELECT"
    "   pg_catalog.jsonb_array_elements_text(e.j OPERATOR(pg_catalog.->) 'depends_on'))::int8[]"
    "  END, 'cancel', NULL,"
    "  e.j OPERATOR(pg_catalog.->>) 'concurrency_key',"
    "  e.j OPERATOR(pg_catalog.->) 'meta',"
    "  CASE WHEN e.j OPERATOR(pg_catalog.?) 'tags' THEN ARRAY(SELECT"
    "   pg_catalog.jsonb_array_elements_text(e.j OPERATOR(pg_catalog.->) 'tags')) END) u"
    " ORDER BY e.n";
/* clang-format on */

static void
add_int(json_object *o, const char *key, int64_t v)
{
    json_object_object_add(o, key, json_object_new_int64(v));
}

/* A checked job as batch_sql reads it; absent keys are SQL NULLs. */
static json_object *
job_normalized(const struct job *j, json_object *src)
{
    static const char *const copied[] = {
        "payload", "queue", "unique_key", "concurrency_key", "meta", "tags", "depends_on"};
    json_object *o = json_object_new_object(), *v;

    if (!o)
        return NULL;
    json_object_object_add(o, "kind", json_object_new_string(j->kind));
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++)
        if (json_object_object_get_ex(src, copied[i], &v))
            json_object_object_add(o, copied[i], json_object_get(v));
    add_int(o, "priority", j->o.priority);
    add_int(o, "delay_ms", j->o.delay_ms);
    if (j->o.run_at_us)
        add_int(o, "run_at_us", j->o.run_at_us);
    if (j->o.max_attempts)
        add_int(o, "max_attempts", j->o.max_attempts);
    if (j->o.unique_window_ms)
        add_int(o, "unique_window_ms", j->o.unique_window_ms);
    json_object_object_add(
        o, "unique_mode",
        json_object_new_string(j->o.unique_mode == SKIPQ_UNIQUE_REPLACE    ? "replace"
                               : j->o.unique_mode == SKIPQ_UNIQUE_DEBOUNCE ? "debounce"
                                                                           : "keep"));
    return o;
}

/* The run_at of each job that has one, as the server parses it (one
 * round trip each: most batches have none). false after answering. */
static bool
batch_run_ats(struct api_req *q, struct job *js, size_t n)
{
    char msg[1024];

    for (size_t i = 0; i < n; i++) {
        if (!js[i].run_at)
            continue;
        int rc = cli_run_at(skipq_conn_pg(q->conn), "run_at", js[i].run_at,
                            &js[i].o.run_at_us, msg, sizeof msg);
        if (rc != 0) {
            api_error(q, rc == CLI_EXIT_USAGE ? 400 : 500, "jobs[%zu]: %s", i, msg);
            return false;
        }
    }
    return true;
}

/* Enqueue the jobs one call each, to name the one the server refuses.
 * Always answers (the refusal, or the statement's own failure). */
static void
batch_find_refused(struct api_req *q, struct job *js, size_t n, const PGresult *failed)
{
    char prefix[32];
    int64_t id;
    int ins;

    api_rollback(q);
    if (!api_begin(q))
        return;
    for (size_t i = 0; i < n; i++) {
        snprintf(prefix, sizeof prefix, "jobs[%zu]: ", i);
        js[i].run_at = NULL; /* resolved already */
        if (!job_enqueue(q, &js[i], prefix, &id, &ins)) {
            api_rollback(q);
            return;
        }
    }
    api_rollback(q);
    api_db_error(q, failed, "could not enqueue the jobs");
}

/*
 * All or nothing: every job is checked first (the first bad one names
 * its index), then all go in one transaction, which any failure rolls
 * back (test_serve: a batch with one bad job inserts nothing).
 */
void
h_batch(struct api_req *q)
{
    json_object *body = api_body(q, false), *jobs = NULL, *norm = NULL, *ids = NULL, *o;
    struct job *js = NULL;
    size_t n = 0, parsed = 0, max_payload = skipq_config_max_payload(q->ctx->cfg);
    int64_t inserted = 0;
    char msg[1024];
    PGresult *res = NULL;

    if (!body)
        return;
    if (!json_object_object_get_ex(body, "jobs", &jobs) ||
        !json_object_is_type(jobs, json_type_array) ||
        json_object_object_length(body) != 1) {
        api_error(q, 400, "the body must be {\"jobs\": [...]}");
        goto out;
    }
    if ((n = json_object_array_length(jobs)) > API_MAX_BATCH) {
        api_error(q, 400, "a batch holds at most %d jobs, not %zu", API_MAX_BATCH, n);
        goto out;
    }
    if (!(js = calloc(n + 1, sizeof *js)) || !(ids = json_object_new_array()) ||
        !(norm = json_object_new_array())) {
        api_error(q, 500, "out of memory");
        goto out;
    }
    for (; parsed < n; parsed++) {
        json_object *src = json_object_array_get_idx(jobs, parsed);
        if (!job_parse(src, max_payload, &js[parsed], msg, sizeof msg)) {
            api_error(q, 400, "jobs[%zu]: %s", parsed, msg);
            parsed++; /* its lists are freed too */
            goto out;
        }
    }
    if (!api_begin(q) || !batch_run_ats(q, js, n))
        goto out;
    for (size_t i = 0; i < n; i++)
        json_object_array_add(norm,
                              job_normalized(&js[i], json_object_array_get_idx(jobs, i)));
    const char *p[1] = {json_object_to_json_string_ext(norm, JSON_C_TO_STRING_PLAIN)};
    res = PQexecParams(skipq_conn_pg(q->conn), batch_sql, 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || (size_t)PQntuples(res) != n) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (skipq_rc_from_sqlstate(state) == SKIPQ_ERR_INVALID)
            batch_find_refused(q, js, n, res);
        else
            api_db_error(q, res, "could not enqueue the jobs");
        goto out;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        json_object_array_add(ids, json_object_new_int64(strtoll(PQgetvalue(res, r, 0),
                                                                 NULL, 10)));
        inserted += PQgetvalue(res, r, 1)[0] == 't';
    }
    if (api_commit(q) && (o = json_object_new_object())) {
        json_object_object_add(o, "ids", ids);
        add_int(o, "inserted", inserted);
        add_int(o, "existing", (int64_t)n - inserted);
        ids = NULL;
        api_json(q, 201, o);
    }
out:
    api_rollback(q);
    PQclear(res);
    for (size_t i = 0; i < parsed; i++)
        job_free(&js[i]);
    free(js);
    json_object_put(norm);
    json_object_put(ids);
    json_object_put(body);
}
