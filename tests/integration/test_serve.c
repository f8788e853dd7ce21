/*
 * test_serve.c - `skipq serve`: the HTTP API over a real socket against a
 * real database. Every endpoint answers without a token 401, with a
 * wrong one 401, with the read token on a change 403, and past its body
 * limit 413; bad input gets a JSON error and leaves the tables as they
 * were; a batch is all or nothing; the router's table and openapi.json
 * name the same routes.
 */
#include "testlib.h"

#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ADMIN "admin-token-0123456789abcdef"
#define READ "read-token-0123456789abcdef"
#define AUTH_ADMIN "Authorization: Bearer " ADMIN "\r\n"
#define AUTH_READ "Authorization: Bearer " READ "\r\n"

static char base[64]; /* "http://127.0.0.1:PORT" */
static pid_t server;
static const char *server_log;

static void
serve_start(const char *env, const char *args)
{
    server = tl_serve(env, args, base, sizeof base, &server_log);
}

static void
serve_start_tokens(const char *args)
{
    serve_start("SKIPQ_ADMIN_TOKEN=" ADMIN " SKIPQ_READ_TOKEN=" READ, args);
}

/* A request to base + path; the status, *body (malloc'd; may be NULL). */
static int
req(const char *method, const char *path, const char *headers, const char *body,
    char **resp_body)
{
    char url[512];

    snprintf(url, sizeof url, "%s%s", base, path);
    return tl_http(method, url, headers, body, NULL, resp_body);
}

/* The same as the admin; the body is checked to be JSON, returned. */
static json_object *
admin(const char *method, const char *path, const char *body, int want)
{
    char *text = NULL;
    int status = req(method, path, AUTH_ADMIN, body, &text);

    if (status != want)
        HARNESS_FAIL("%s %s: status %d, not %d: %s", method, path, status, want,
                     text ? text : "");
    json_object *o = json_tokener_parse(text);
    ASSERT_TRUE(o != NULL);
    free(text);
    return o;
}

/* {"error": ...} of a refused request, which must contain needle. */
static void
admin_error(const char *method, const char *path, const char *body, int want,
            const char *needle)
{
    json_object *o = admin(method, path, body, want), *e = NULL;

    ASSERT_TRUE(json_object_object_get_ex(o, "error", &e));
    ASSERT_CONTAINS(json_object_get_string(e), needle);
    json_object_put(o);
}

static int64_t
get_int(json_object *o, const char *key)
{
    json_object *v = NULL;
    ASSERT_TRUE(json_object_object_get_ex(o, key, &v));
    return json_object_get_int64(v);
}

static void
serve_stop(void)
{
    tl_kill(server, SIGTERM);
    ASSERT_EQ(tl_wait_pid(server, 15000), 0);
}

/* ---- starting ---------------------------------------------------------- */

TEST(refuses_without_token_and_no_auth_off_loopback)
{
    char *err = NULL;

    tl_db();
    ASSERT_EQ(tl_run(NULL, NULL, &err,
                     "env -u SKIPQ_ADMIN_TOKEN -u SKIPQ_READ_TOKEN %s serve --http "
                     "127.0.0.1:0",
                     tl_skipq()),
              2);
    ASSERT_CONTAINS(err, "no token is configured");
    free(err);
    ASSERT_EQ(tl_run(NULL, NULL, &err, "%s serve --no-auth --http 0.0.0.0:0", tl_skipq()),
              2);
    ASSERT_CONTAINS(err, "--no-auth is allowed on a loopback address only");
    free(err);
    ASSERT_EQ(tl_run(NULL, NULL, &err,
                     "SKIPQ_ADMIN_TOKEN=short %s serve --http 127.0.0.1:0", tl_skipq()),
              2);
    ASSERT_CONTAINS(err, "SKIPQ_ADMIN_TOKEN: serve.admin_token must be 16 to 1024");
    free(err);
    /* the config's token serves; SIGTERM stops it with status 0 */
    const char *cfg = tl_write_config("serve:\n  admin_token: " ADMIN "\n");
    char env[512];
    snprintf(env, sizeof env, "-u SKIPQ_ADMIN_TOKEN SKIPQ_CONFIG=%s", cfg);
    serve_start(env, "");
    ASSERT_EQ(req("GET", "/api/stats", AUTH_ADMIN, NULL, NULL), 200);
    ASSERT_EQ(req("GET", "/api/stats", AUTH_READ, NULL, NULL), 401);
    serve_stop();
}

TEST(no_auth_needs_the_header_and_the_host)
{
    char hdr[256], *body = NULL, *headers = NULL;

    tl_db();
    serve_start("", "--no-auth");
    const char *port = strrchr(base, ':') + 1;
    ASSERT_EQ(req("GET", "/api/stats", NULL, NULL, &body), 403);
    ASSERT_CONTAINS(body, "X-Skipq-Request");
    free(body);
    snprintf(hdr, sizeof hdr, "Host: evil.example:%s\r\nX-Skipq-Request: 1\r\n", port);
    ASSERT_EQ(req("GET", "/api/stats", hdr, NULL, &body), 403);
    ASSERT_CONTAINS(body, "Host");
    free(body);
    ASSERT_EQ(req("POST", "/api/jobs", "X-Skipq-Request: 1\r\n", "{\"kind\": \"k\"}", NULL),
              201);
    snprintf(hdr, sizeof hdr, "Host: localhost:%s\r\nX-Skipq-Request: 1\r\n", port);
    ASSERT_EQ(req("GET", "/api/jobs", hdr, NULL, NULL), 200);
    /* the dashboard: no token, a strict policy */
    char url[128];
    snprintf(url, sizeof url, "%s/", base);
    ASSERT_EQ(tl_http("GET", url, NULL, NULL, &headers, &body), 200);
    ASSERT_CONTAINS(headers,
                    "Content-Security-Policy: default-src 'self'; script-src 'self'");
    ASSERT_CONTAINS(headers, "frame-ancestors 'none'");
    ASSERT_CONTAINS(headers, "Referrer-Policy: no-referrer");
    ASSERT_CONTAINS(body, "<html");
    free(headers);
    free(body);
    ASSERT_EQ(req("GET", "/no-such-file.js", NULL, NULL, NULL), 404);
    serve_stop();
}

/* ---- every route: tokens and limits ------------------------------------ */

/* The routes `skipq serve --routes` prints, {id} and {name} filled in. */
static char *
routes(void)
{
    char *out = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "serve --routes"), 0);
    return out;
}

TEST(every_route_wants_the_right_token_and_a_body_within_the_limit)
{
    PGconn *pg = tl_db();
    char *list = routes(), *line, *save = NULL, *big = malloc((1 << 20) + 64);
    char *headers = NULL;
    int n = 0;

    tl_exec(pg, "SELECT skipq.enqueue('k')");
    serve_start_tokens("");
    /* a JSON body one byte over 1 MiB */
    memset(big, ' ', (1 << 20) + 1);
    big[0] = '{';
    big[(1 << 20)] = '}';
    big[(1 << 20) + 1] = '\0';
    for (line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char method[8], path[256], url[300];
        ASSERT_EQ(sscanf(line, "%7s %255s", method, path), 2);
        char *p = strstr(path, "{id}") ? strstr(path, "{id}") : strstr(path, "{name}");
        if (p) /* job 1, queue and schedule "default" */
            snprintf(url, sizeof url, "%.*s%s%s", (int)(p - path), path,
                     p[1] == 'i' ? "1" : "default", strchr(p, '}') + 1);
        else
            snprintf(url, sizeof url, "%s", path);
        bool change = strcmp(method, "GET") != 0;
        char full[400];
        snprintf(full, sizeof full, "%s%s", base, url);
        ASSERT_EQ(tl_http(method, full, NULL, change ? "{}" : NULL, &headers, NULL), 401);
        ASSERT_CONTAINS(headers, "WWW-Authenticate: Bearer");
        free(headers);
        ASSERT_EQ(req(method, url, "Authorization: Bearer wrong-token-0123456789abcdef\r\n",
                      change ? "{}" : NULL, NULL),
                  401);
        if (change) {
            ASSERT_EQ(req(method, url, AUTH_READ, "{}", NULL), 403);
            /* the batch's own limit is 32 MiB: one byte over 1 MiB passes */
            if (strcmp(url, "/api/jobs/batch") != 0)
                ASSERT_EQ(req(method, url, AUTH_ADMIN, big, NULL), 413);
        } else {
            ASSERT_EQ(req(method, url, AUTH_READ, NULL, NULL), 200);
        }
        n++;
    }
    ASSERT_TRUE(n >= 19);
    ASSERT_EQ(req("DELETE", "/api/jobs", AUTH_ADMIN, NULL, &headers), 405);
    ASSERT_EQ(req("GET", "/api/nothing", AUTH_ADMIN, NULL, NULL), 404);
    /* nothing any of those requests sent changed a job */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 1);
    free(headers);
    free(big);
    free(list);
    serve_stop();
}

/* The token and the rate are checked on a request's headers: a request
 * that may not go on is answered before any of its body is read, so a
 * client without a token cannot make the server buffer one (the body
 * announced here is never sent: answering needs none of it). */
TEST(refused_requests_send_no_body)
{
    tl_db();
    serve_start_tokens("");
    int64_t t0 = tl_now_ms();
    ASSERT_EQ(req("POST", "/api/jobs/batch", "Content-Length: 1000000\r\n", NULL, NULL),
              401);
    ASSERT_EQ(req("POST", "/api/jobs/batch", AUTH_READ "Content-Length: 1000000\r\n", NULL,
                  NULL),
              403);
    /* an admin's announced body over the batch's limit: 413, unread */
    ASSERT_EQ(req("POST", "/api/jobs/batch", AUTH_ADMIN "Content-Length: 40000000\r\n",
                  NULL, NULL),
              413);
    ASSERT_TRUE(tl_now_ms() - t0 < 10000); /* none waited for a body */
    serve_stop();
}

TEST(openapi_describes_every_route_and_nothing_else)
{
    char *list = routes(), *line, *save = NULL;
    int n = 0;

    tl_db();
    serve_start_tokens("");
    json_object *doc = admin("GET", "/api/openapi.json", NULL, 200), *paths = NULL, *ops;
    ASSERT_TRUE(json_object_object_get_ex(doc, "paths", &paths));
    for (line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char method[8], path[256];
        ASSERT_EQ(sscanf(line, "%7s %255s", method, path), 2);
        for (char *c = method; *c; c++)
            *c = (char)(*c - 'A' + 'a');
        if (!json_object_object_get_ex(paths, path, &ops) ||
            !json_object_object_get_ex(ops, method, NULL))
            HARNESS_FAIL("openapi.json does not describe %s %s", method, path);
        n++;
    }
    /* and every operation it describes is a route */
    int described = 0;
    json_object_object_foreach(paths, p, o)
    {
        json_object_object_foreach(o, m, v)
        {
            (void)v;
            if (strcmp(m, "parameters") == 0)
                continue;
            char want[300];
            snprintf(want, sizeof want, "%s %s\n", m, p);
            for (char *c = want; *c != ' '; c++)
                *c = (char)(*c - 'a' + 'A');
            char *all = routes();
            if (!strstr(all, want))
                HARNESS_FAIL("openapi.json describes %s, which is no route", want);
            free(all);
            described++;
        }
    }
    ASSERT_EQ(described, n);
    json_object_put(doc);
    free(list);
    serve_stop();
}

/* ---- jobs -------------------------------------------------------------- */

TEST(enqueue_show_and_list)
{
    PGconn *pg = tl_db();
    json_object *o;

    serve_start_tokens("");
    o = admin("POST", "/api/jobs",
              "{\"kind\": \"email\", \"payload\": {\"to\": \"a@example.com\"}, \"queue\": "
              "\"mail\", \"priority\": \"high\", \"delay\": \"30s\", \"max_attempts\": 3,"
              " \"tags\": [\"t1\"], \"meta\": {\"k\": \"v\"}, \"unique_key\": \"u1\"}",
              201);
    int64_t id = get_int(o, "id");
    json_object_put(o);
    ASSERT_EQ(
        tl_int(pg,
               "SELECT count(*) FROM skipq.jobs WHERE id = %lld AND queue = 'mail' AND "
               "priority = 10 AND max_attempts = 3 AND run_at > now() + interval '20s' "
               "AND tags = '{t1}' AND meta = '{\"k\": \"v\"}' AND unique_key = 'u1'",
               (long long)id),
        1);
    /* the unique key is taken: the same job, 200, not inserted */
    o = admin("POST", "/api/jobs", "{\"kind\": \"email\", \"unique_key\": \"u1\"}", 200);
    ASSERT_EQ(get_int(o, "id"), id);
    json_object_put(o);
    admin("POST", "/api/jobs",
          "{\"kind\": \"other\", \"run_at\": \"2030-01-01T00:00:00Z\"}", 201);

    /* bad input: a JSON error, the CLI's words, no row */
    admin_error("POST", "/api/jobs", "{\"kind\": \"email\", \"priority\": \"urgent\"}", 400,
                "unrecognized priority \"urgent\"");
    admin_error("POST", "/api/jobs", "{\"kind\": \"email\",", 400,
                "invalid JSON at offset");
    admin_error("POST", "/api/jobs", "{\"payload\": {}}", 400, "kind is required");
    admin_error("POST", "/api/jobs", "{\"kind\": \"\"}", 400, "kind");
    admin_error("POST", "/api/jobs", "{\"kind\": \"k\", \"delay\": \"5x\"}", 400,
                "delay: ");
    admin_error("POST", "/api/jobs",
                "{\"kind\": \"k\", \"delay\": \"5s\", \"run_at\": \"now\"}", 400,
                "give run_at or delay, not both");
    admin_error("POST", "/api/jobs", "{\"kind\": \"k\", \"run_at\": \"someday\"}", 400,
                "invalid run_at \"someday\"");
    admin_error("POST", "/api/jobs", "{\"kind\": \"k\", \"colour\": 1}", 400,
                "unknown field \"colour\"");
    admin_error("POST", "/api/jobs", "{\"kind\": \"k\", \"depends_on\": [999999]}", 400,
                "parent job 999999 does not exist");
    admin_error("POST", "/api/jobs", "[1]", 400, "must be a JSON object");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 2);

    /* one job, as `jobs show --json` */
    char path[64];
    snprintf(path, sizeof path, "/api/jobs/%lld", (long long)id);
    o = admin("GET", path, NULL, 200);
    json_object *v = NULL;
    ASSERT_TRUE(json_object_object_get_ex(o, "kind", &v));
    ASSERT_STREQ(json_object_get_string(v), "email");
    ASSERT_TRUE(json_object_object_get_ex(o, "payload", &v));
    ASSERT_TRUE(json_object_object_get_ex(v, "to", NULL));
    ASSERT_TRUE(json_object_object_get_ex(o, "worker_id", &v) && !v);
    ASSERT_TRUE(json_object_object_get_ex(o, "depends_on", &v));
    ASSERT_EQ(json_object_array_length(v), 0);
    json_object_put(o);
    /* a child names its parent */
    char body[128];
    snprintf(body, sizeof body, "{\"kind\": \"child\", \"depends_on\": [%lld]}",
             (long long)id);
    o = admin("POST", "/api/jobs", body, 201);
    snprintf(path, sizeof path, "/api/jobs/%lld", (long long)get_int(o, "id"));
    json_object_put(o);
    o = admin("GET", path, NULL, 200);
    ASSERT_TRUE(json_object_object_get_ex(o, "depends_on", &v));
    ASSERT_EQ(json_object_get_int64(json_object_array_get_idx(v, 0)), id);
    json_object_put(o);
    snprintf(path, sizeof path, "/api/jobs/%lld", (long long)id);
    admin_error("GET", "/api/jobs/999999", NULL, 404, "job 999999 does not exist");
    admin_error("GET", "/api/jobs/abc", NULL, 400, "invalid job id \"abc\"");

    /* pages of 2: newest first, the cursor is the last id; 3 jobs */
    json_object *jobs = NULL, *next = NULL;
    int64_t seen[4] = {0}, n = 0;
    snprintf(path, sizeof path, "/api/jobs?limit=2");
    for (int page = 0; page < 3; page++) {
        o = admin("GET", path, NULL, 200);
        ASSERT_TRUE(json_object_object_get_ex(o, "jobs", &jobs));
        for (size_t i = 0; i < json_object_array_length(jobs) && n < 4; i++)
            seen[n++] = get_int(json_object_array_get_idx(jobs, i), "id");
        ASSERT_TRUE(json_object_object_get_ex(o, "next_cursor", &next));
        if (next)
            snprintf(path, sizeof path, "/api/jobs?limit=2&cursor=%s",
                     json_object_get_string(next));
        json_object_put(o);
        if (!next)
            break;
    }
    ASSERT_EQ(n, 3);
    ASSERT_TRUE(seen[0] > seen[1] && seen[1] > seen[2]);
    ASSERT_EQ(seen[2], id);
    o = admin("GET", "/api/jobs?status=queued&queue=mail&kind=email", NULL, 200);
    ASSERT_TRUE(json_object_object_get_ex(o, "jobs", &jobs));
    ASSERT_EQ(json_object_array_length(jobs), 1);
    json_object_put(o);
    admin_error("GET", "/api/jobs?status=bogus", NULL, 400, "status: unrecognized status");
    admin_error("GET", "/api/jobs?limit=0", NULL, 400, "limit must be from 1 to 500");
    serve_stop();
}

static json_object *
batch_of(int n)
{
    json_object *o = json_object_new_object(), *jobs = json_object_new_array();
    for (int i = 0; i < n; i++) {
        json_object *j = json_object_new_object(), *p = json_object_new_object();
        json_object_object_add(p, "i", json_object_new_int(i));
        json_object_object_add(j, "kind", json_object_new_string("bulk"));
        json_object_object_add(j, "payload", p);
        json_object_array_add(jobs, j);
    }
    json_object_object_add(o, "jobs", jobs);
    return o;
}

TEST(batch_is_all_or_nothing)
{
    PGconn *pg = tl_db();

    serve_start_tokens("");
    /* 10,000 jobs in one request */
    json_object *b = batch_of(10000);
    json_object *o = admin("POST", "/api/jobs/batch", json_object_to_json_string(b), 201),
                *ids;
    ASSERT_EQ(get_int(o, "inserted"), 10000);
    ASSERT_EQ(get_int(o, "existing"), 0);
    ASSERT_TRUE(json_object_object_get_ex(o, "ids", &ids));
    ASSERT_EQ(json_object_array_length(ids), 10000);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'bulk'"), 10000);
    json_object_put(o);
    json_object_put(b);

    /* one bad job, found before the database: nothing */
    b = batch_of(100);
    json_object *jobs;
    json_object_object_get_ex(b, "jobs", &jobs);
    json_object_object_add(json_object_array_get_idx(jobs, 17), "priority",
                           json_object_new_string("x"));
    admin_error("POST", "/api/jobs/batch", json_object_to_json_string(b), 400,
                "jobs[17]: unrecognized priority \"x\"");
    json_object_put(b);
    /* one the server refuses, after 57 went in: rolled back, nothing */
    b = batch_of(100);
    json_object_object_get_ex(b, "jobs", &jobs);
    json_object *deps = json_object_new_array();
    json_object_array_add(deps, json_object_new_int64(99999999));
    json_object_object_add(json_object_array_get_idx(jobs, 57), "depends_on", deps);
    admin_error("POST", "/api/jobs/batch", json_object_to_json_string(b), 400,
                "jobs[57]: ");
    json_object_put(b);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 10000);
    admin_error("POST", "/api/jobs/batch", "{\"jobs\": 1}", 400, "{\"jobs\": [...]}");
    serve_stop();
}

TEST(retry_and_cancel)
{
    PGconn *pg = tl_db();
    char path[64];
    json_object *o, *v;

    int64_t a = tl_int(pg, "SELECT skipq.enqueue('k')");
    int64_t b = tl_int(pg, "SELECT skipq.enqueue('k')");
    serve_start_tokens("");
    snprintf(path, sizeof path, "/api/jobs/%lld/cancel", (long long)a);
    o = admin("POST", path, NULL, 200);
    ASSERT_TRUE(json_object_object_get_ex(o, "outcome", &v));
    ASSERT_STREQ(json_object_get_string(v), "cancelled");
    json_object_put(o);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'cancelled'"), 1);
    snprintf(path, sizeof path, "/api/jobs/%lld/retry", (long long)a);
    o = admin("POST", path, NULL, 200);
    ASSERT_TRUE(json_object_object_get_ex(o, "outcome", &v));
    ASSERT_STREQ(json_object_get_string(v), "queued");
    json_object_put(o);
    admin_error("POST", "/api/jobs/999999/retry", NULL, 404, "job 999999 does not exist");
    admin_error("POST", "/api/jobs/x/cancel", NULL, 400, "invalid job id \"x\"");

    char body[128];
    snprintf(body, sizeof body, "{\"ids\": [%lld, %lld, 999999]}", (long long)a,
             (long long)b);
    o = admin("POST", "/api/jobs/cancel", body, 200);
    json_object *results;
    ASSERT_TRUE(json_object_object_get_ex(o, "results", &results));
    ASSERT_EQ(json_object_array_length(results), 3);
    json_object_object_get_ex(json_object_array_get_idx(results, 2), "outcome", &v);
    ASSERT_STREQ(json_object_get_string(v), "does not exist");
    json_object_put(o);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'cancelled'"), 2);
    admin_error("POST", "/api/jobs/retry", "{\"ids\": [\"x\"]}", 400,
                "ids[0] must be a positive whole number");
    admin_error("POST", "/api/jobs/retry", "{\"ids\": []}", 400, "at least one job");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'cancelled'"), 2);
    o = admin("POST", "/api/jobs/retry", body, 200);
    json_object_put(o);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 2);
    serve_stop();
}

/* ---- recover, stats, queues, schedules ------------------------------------ */

TEST(recover_stats_queues_and_schedules)
{
    PGconn *pg = tl_db();
    json_object *o, *v;

    tl_exec(pg, "SELECT skipq.enqueue('k', queue => 'q1')");
    tl_exec(pg, "UPDATE skipq.jobs SET status = 'failed', attempts = 1, "
                "finished_at = now(), updated_at = now() - interval '1 hour'");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "schedule add nightly '0 3 * * *' report"), 0);
    serve_start_tokens("");

    o = admin("POST", "/api/recover",
              "{\"dry_run\": true, \"status\": [\"failed\"], \"older_than\": \"10m\"}",
              200);
    ASSERT_EQ(get_int(o, "count"), 1);
    json_object_put(o);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'failed'"), 1);
    admin_error("POST", "/api/recover", "{\"status\": \"done\"}", 400,
                "status: unrecognized status \"done\"");
    admin_error("POST", "/api/recover", "{}", 400, "recover needs status");
    admin_error("POST", "/api/recover", "{\"status\": \"failed\", \"older_than\": \"x\"}",
                400, "older_than: ");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'failed'"), 1);
    o = admin("POST", "/api/recover", "{\"status\": \"failed\"}", 200);
    ASSERT_EQ(get_int(o, "count"), 1);
    json_object_put(o);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 1);

    o = admin("GET", "/api/stats", NULL, 200);
    ASSERT_TRUE(json_object_object_get_ex(o, "queues", &v));
    ASSERT_EQ(json_object_array_length(v), 1); /* per queue and kind */
    ASSERT_EQ(get_int(json_object_array_get_idx(v, 0), "queued"), 1);
    ASSERT_TRUE(json_object_object_get_ex(json_object_array_get_idx(v, 0), "kind", NULL));
    json_object_put(o);
    tl_exec(pg, "UPDATE skipq.jobs SET status = 'succeeded', finished_at = now()");
    o = admin("GET", "/api/throughput?minutes=3", NULL, 200);
    ASSERT_TRUE(json_object_object_get_ex(o, "minutes", &v));
    ASSERT_EQ(json_object_array_length(v), 3);
    ASSERT_EQ(get_int(json_object_array_get_idx(v, 2), "succeeded"), 1);
    json_object_put(o);
    admin_error("GET", "/api/throughput?minutes=5000", NULL, 400,
                "minutes must be from 1 to 1440");
    json_object_put(admin("GET", "/api/workers", NULL, 200));

    o = admin("POST", "/api/queues/q1/pause", "{\"kind\": \"k\"}", 200);
    json_object_put(o);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.queues WHERE queue = 'q1' "
                         "AND paused_kinds = '{k}'"),
              1);
    admin_error("POST", "/api/queues/q1/pause", "{\"colour\": 1}", 400, "\"kind\" only");
    json_object_put(admin("POST", "/api/queues/q1/resume", NULL, 200));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.queues WHERE queue = 'q1' "
                         "AND paused_kinds = '{}' AND NOT paused"),
              1);
    o = admin("GET", "/api/queues", NULL, 200);
    ASSERT_TRUE(json_object_object_get_ex(o, "queues", &v));
    ASSERT_TRUE(json_object_array_length(v) >= 1);
    json_object_put(o);

    json_object_put(admin("POST", "/api/schedules/nightly/pause", NULL, 200));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.schedules WHERE paused"), 1);
    admin_error("POST", "/api/schedules/nope/resume", NULL, 404,
                "schedule \"nope\" does not exist");
    o = admin("GET", "/api/schedules", NULL, 200);
    ASSERT_TRUE(json_object_object_get_ex(o, "schedules", &v));
    ASSERT_EQ(json_object_array_length(v), 1);
    json_object_put(o);
    serve_stop();
}

/* A name may hold '/': sent as %2F it stays one part of the path, and the
 * route acts on that queue alone; a bad escape matches no route. */
TEST(names_with_a_slash_are_reachable)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "SELECT skipq.enqueue('k', queue => 'team/a')");
    tl_exec(pg, "SELECT skipq.enqueue('k', queue => 'team')");
    serve_start_tokens("");
    json_object_put(admin("POST", "/api/queues/team%2Fa/pause", NULL, 200));
    char *paused = tl_str(pg,
                          "SELECT string_agg(queue, ',') FROM skipq.queues WHERE paused");
    ASSERT_STREQ(paused, "team/a");
    free(paused);
    json_object_put(admin("POST", "/api/queues/team%2fa/resume", NULL, 200));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.queues WHERE paused"), 0);
    ASSERT_EQ(req("POST", "/api/queues/team/a/pause", AUTH_ADMIN, NULL, NULL), 404);
    ASSERT_EQ(req("POST", "/api/queues/bad%zz/pause", AUTH_ADMIN, NULL, NULL), 404);
    ASSERT_EQ(req("POST", "/api/queues/nul%00/pause", AUTH_ADMIN, NULL, NULL), 404);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.queues WHERE paused"), 0);
    serve_stop();
}

/* An archived job (sql/archive.sql) is found by id, marked archived, and
 * listed with archived=true only. */
TEST(archived_jobs_are_found_and_listed_apart)
{
    PGconn *pg = tl_db();
    int64_t id = tl_int(pg,
                        "INSERT INTO skipq.jobs (kind, status, updated_at) VALUES"
                        " ('gone', 'succeeded', now() - interval '2 days') RETURNING id");
    tl_exec(pg, "SELECT skipq.enqueue('live')");
    ASSERT_EQ(tl_int(pg, "SELECT skipq.archive('1 day')"), 1);
    serve_start_tokens("");
    char path[64];
    snprintf(path, sizeof path, "/api/jobs/%lld", (long long)id);
    json_object *o = admin("GET", path, NULL, 200), *v = NULL;
    ASSERT_TRUE(json_object_object_get_ex(o, "archived", &v));
    ASSERT_TRUE(json_object_get_boolean(v));
    json_object_put(o);
    o = admin("GET", "/api/jobs?archived=true", NULL, 200);
    ASSERT_TRUE(json_object_object_get_ex(o, "jobs", &v));
    ASSERT_EQ(json_object_array_length(v), 1);
    ASSERT_EQ(get_int(json_object_array_get_idx(v, 0), "id"), id);
    json_object_put(o);
    o = admin("GET", "/api/jobs", NULL, 200);
    ASSERT_TRUE(json_object_object_get_ex(o, "jobs", &v));
    ASSERT_EQ(json_object_array_length(v), 1);
    ASSERT_TRUE(get_int(json_object_array_get_idx(v, 0), "id") != id);
    json_object_put(o);
    admin_error("GET", "/api/jobs?archived=yes", NULL, 400,
                "archived must be true or false");
    serve_stop();
}

/* ---- limits -------------------------------------------------------------- */

TEST(rate_limit_answers_429)
{
    char *headers = NULL, url[128];
    int status = 0;

    tl_db();
    const char *cfg = tl_write_config("serve:\n  rate_limit: 1\n");
    char env[512];
    snprintf(env, sizeof env,
             "SKIPQ_ADMIN_TOKEN=" ADMIN " SKIPQ_READ_TOKEN=" READ " SKIPQ_CONFIG=%s", cfg);
    serve_start(env, "");
    snprintf(url, sizeof url, "%s/api/stats", base);
    /* a burst of 2, then 1 a second: the third at once is refused */
    for (int i = 0; i < 5 && status != 429; i++) {
        free(headers);
        status = tl_http("GET", url, AUTH_ADMIN, NULL, &headers, NULL);
    }
    ASSERT_EQ(status, 429);
    ASSERT_CONTAINS(headers, "Retry-After: ");
    free(headers);
    serve_stop();
}

TEST(lost_database_connection_answers_503_then_recovers)
{
    PGconn *pg = tl_db();
    char *headers = NULL, url[128];

    serve_start_tokens("");
    ASSERT_EQ(req("GET", "/api/stats", AUTH_ADMIN, NULL, NULL), 200);
    /* the server ends serve's connections (this database's only: other
     * tests run beside this one), as a restart of the database does */
    ASSERT_TRUE(tl_int(pg, "SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM "
                           "pg_stat_activity WHERE application_name = 'skipq serve' "
                           "AND datname = pg_catalog.current_database()") >= 1);
    snprintf(url, sizeof url, "%s/api/stats", base);
    ASSERT_EQ(tl_http("GET", url, AUTH_ADMIN, NULL, &headers, NULL), 503);
    ASSERT_CONTAINS(headers, "Retry-After: ");
    free(headers);
    /* the next request opens a new connection */
    ASSERT_EQ(req("GET", "/api/stats", AUTH_ADMIN, NULL, NULL), 200);
    ASSERT_EQ(req("POST", "/api/jobs", AUTH_ADMIN, "{\"kind\": \"k\"}", NULL), 201);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 1);
    serve_stop();
}

/* ---- the roles docs/security.md names ------------------------------------ */

static char reader[64], admin_role[64];

static void
drop_roles(void)
{
    PGconn *pg = tl_connect();
    tl_exec(pg, "DROP ROLE IF EXISTS %s, %s", reader, admin_role);
    PQfinish(pg);
}

/* A read-only deployment as a skipq_producer login answers every GET;
 * one as a skipq_admin login can do every change. */
TEST(runs_as_the_roles_security_md_names)
{
    PGconn *pg = tl_db();
    char *list = routes(), *line, *save = NULL, args[512];

    tl_apply_roles();
    snprintf(reader, sizeof reader, "ts_reader_%d", (int)getpid());
    snprintf(admin_role, sizeof admin_role, "ts_admin_%d", (int)getpid());
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_producer", reader);
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_admin", admin_role);
    atexit(drop_roles);
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('k')");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "schedule add nightly '0 3 * * *' report"), 0);

    snprintf(args, sizeof args, "--database '%s'", tl_url_as(reader));
    serve_start("-u SKIPQ_ADMIN_TOKEN SKIPQ_READ_TOKEN=" READ, args);
    for (line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char method[8], path[256], url[300], *body = NULL;
        ASSERT_EQ(sscanf(line, "%7s %255s", method, path), 2);
        char *p = strstr(path, "{id}") ? strstr(path, "{id}") : strstr(path, "{name}");
        if (p)
            snprintf(url, sizeof url, "%.*s%lld%s", (int)(p - path), path, (long long)id,
                     strchr(p, '}') + 1);
        else
            snprintf(url, sizeof url, "%s", path);
        if (strcmp(method, "GET") == 0) {
            int st = req(method, url, AUTH_READ, NULL, &body);
            if (st != 200)
                HARNESS_FAIL("GET %s as %s: %d %s", url, reader, st, body ? body : "");
        } else {
            ASSERT_EQ(req(method, url, AUTH_READ, "{}", NULL), 403);
        }
        free(body);
    }
    serve_stop();

    snprintf(args, sizeof args, "--database '%s'", tl_url_as(admin_role));
    serve_start("SKIPQ_ADMIN_TOKEN=" ADMIN, args);
    char path[64];
    json_object_put(admin("POST", "/api/jobs", "{\"kind\": \"k\", \"unique_key\": \"u\"}",
                          201));
    json_object_put(admin("POST", "/api/jobs/batch", "{\"jobs\": [{\"kind\": \"k\"}]}",
                          201));
    snprintf(path, sizeof path, "/api/jobs/%lld/cancel", (long long)id);
    json_object_put(admin("POST", path, NULL, 200));
    snprintf(path, sizeof path, "/api/jobs/%lld/retry", (long long)id);
    json_object_put(admin("POST", path, NULL, 200));
    json_object_put(admin("POST", "/api/jobs/cancel", "{\"ids\": [1]}", 200));
    json_object_put(admin("POST", "/api/recover", "{\"status\": \"queued\"}", 200));
    json_object_put(admin("POST", "/api/queues/default/pause", NULL, 200));
    json_object_put(admin("POST", "/api/queues/default/resume", NULL, 200));
    json_object_put(admin("POST", "/api/schedules/nightly/pause", NULL, 200));
    json_object_put(admin("POST", "/api/schedules/nightly/resume", NULL, 200));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 3);
    serve_stop();
    free(list);
}

/* SIGTERM waits for a request in flight, which still gets its answer. */
TEST(sigterm_finishes_the_request_in_flight)
{
    PGconn *pg = tl_db(), *holder = tl_connect();
    char path[64];

    int64_t id = tl_int(pg, "SELECT skipq.enqueue('k')");
    serve_start_tokens("");
    /* the cancel waits for this row lock (lock_timeout 5s) */
    tl_exec(holder, "BEGIN");
    tl_exec(holder, "SELECT 1 FROM skipq.jobs WHERE id = %lld FOR UPDATE", (long long)id);
    snprintf(path, sizeof path, "/api/jobs/%lld/cancel", (long long)id);
    pid_t child = fork();
    if (child == 0)
        _exit(req("POST", path, AUTH_ADMIN, NULL, NULL) == 200 ? 0 : 1);
    ASSERT_TRUE(
        tl_wait_int(pg, 5000, 1,
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                    "'skipq serve' AND datname = pg_catalog.current_database() "
                    "AND wait_event_type = 'Lock'"));
    tl_kill(server, SIGTERM);
    ASSERT_TRUE(tl_wait_file_has(server_log, "stopping", 5000));
    tl_exec(holder, "COMMIT");
    ASSERT_EQ(tl_wait_pid(child, 10000), 0);
    ASSERT_EQ(tl_wait_pid(server, 15000), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'cancelled'"), 1);
    PQfinish(holder);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
