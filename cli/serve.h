/*
 * serve.h - what the parts of `skipq serve` share: cmd_serve.c (the
 * command, authentication, the rate limit, the database connections and
 * the router), serve_api.c (one function per endpoint of the API,
 * docs/http.md, and the fields of a request's JSON) and serve_jobs.c
 * (the enqueue endpoints).
 */
#ifndef SKIPQ_CLI_SERVE_H
#define SKIPQ_CLI_SERVE_H

#include "cli.h"
#include "http.h"

#include <json-c/json.h>
#include <stdbool.h>

/* One API request being answered. */
struct api_req {
    struct cli_ctx *ctx;
    const struct http_request *rq;
    struct http_response *rs;
    const char *arg;  /* the path's {id} or {name}; NULL: none */
    const char *verb; /* the path's last part for ".../retry" style routes */
    skipq_conn *conn; /* the request's database connection */
};

typedef void (*api_fn)(struct api_req *q);

/* A route: the router's table is data (serve_routes[]), printed by
 * `skipq serve --routes`, which test_serve compares with openapi.json. */
struct api_route {
    const char *method;
    const char *path; /* "/api/jobs/{id}/retry" */
    api_fn fn;
    bool db; /* needs a database connection */
};
extern const struct api_route serve_routes[];
extern const size_t serve_nroutes;

/* Answer with the JSON value o (taken), or {"error": msg}. */
void api_json(struct api_req *q, int status, json_object *o);
void api_error(struct api_req *q, int status, const char *fmt, ...) CLI_PRINTF(3, 4);
/* A failed statement: 400 for input the server refused, 503 (Retry-After)
 * when the database went away or a lock or statement timed out, else 500.
 * The message is "<what>: <server's message>", as the CLI's. */
void api_db_error(struct api_req *q, const PGresult *res, const char *fmt, ...)
    CLI_PRINTF(3, 4);
/* A library error: 400 for SKIPQ_ERR_INVALID, 503 for a lost database,
 * else 500; prefix (may be NULL) goes before the message. */
void api_skipq_error(struct api_req *q, const skipq_error *err, const char *prefix);

/* The request's body as a JSON object; NULL after answering 400 (bad
 * JSON names the byte offset, as the CLI's messages do). An empty body
 * is {} when empty_ok. Caller puts it. */
json_object *api_body(struct api_req *q, bool empty_ok);

/* Run a statement that needs no result; false after answering. */
bool api_exec(struct api_req *q, const char *sql);
/* BEGIN with the write statements' timeouts set (a held row lock fails
 * the request after lock_timeout instead of hanging it); false after
 * answering. */
bool api_begin(struct api_req *q);
/* COMMIT, checked; false after answering (and rolling back). */
bool api_commit(struct api_req *q);
void api_rollback(struct api_req *q);

/* The most jobs one batch, and ids one retry or cancel, may name. */
#define API_MAX_BATCH 10000
/* The most parents or tags of one job: the CLI's. */
#define API_MAX_LIST 256

/* Fields of a request's JSON (serve_api.c): each checks v, names key in
 * its message (into msg, msglen) and returns false when it is wrong. */
#define JOB_FAIL(...) (snprintf(msg, msglen, __VA_ARGS__), false)
bool job_string(json_object *v, const char *key, const char **out, char *msg,
                size_t msglen);
/* A name (kind, queue) by the library's rule. */
bool job_name(json_object *v, const char *key, const char **out, char *msg, size_t msglen);
bool job_duration(json_object *v, const char *key, int64_t *ms, char *msg, size_t msglen);
/* An array of at most max positive ids into *out (malloc'd), *n. */
bool job_ids(json_object *v, const char *key, size_t max, int64_t **out, size_t *n,
             char *msg, size_t msglen);
/* A priority name or number. */
bool job_priority(json_object *v, int16_t *out, char *msg, size_t msglen);

/* The enqueue endpoints (serve_jobs.c). */
void h_enqueue(struct api_req *q);
void h_batch(struct api_req *q);

#endif /* SKIPQ_CLI_SERVE_H */
