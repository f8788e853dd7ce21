/*
 * cmd_serve.c - `skipq serve`: the HTTP API (serve_api.c) and the
 * dashboard's embedded files (web.h) on one address (docs/http.md).
 *
 * Every /api/ request passes, in order: the rate limit of its client
 * address (429), then authentication: a bearer token compared in
 * constant time (401 without a right one, 403 for the read token on a
 * change), or under --no-auth the X-Skipq-Request header and a Host that
 * names the bound address (403 otherwise: a cross-site form cannot send
 * the header, and a rebound DNS name does not match the Host). Then the
 * router's table picks the endpoint (404, 405 with Allow). Each handler
 * thread has a database connection of its own, opened when first needed
 * and again after it was lost (503 with Retry-After meanwhile).
 */
#include "serve.h"
#include "skipq_json.h"
#include "web.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char usage[] =
    "usage: skipq serve [--http ADDR] [--no-auth] [--routes]\n"
    "\n"
    "Serve the HTTP API (under /api/) and the dashboard (at /) until SIGTERM\n"
    "or SIGINT, which finish the requests in flight and exit 0.\n"
    "\n"
    "  --http ADDR   HOST:PORT, [IPV6]:PORT or :PORT to listen on (default\n"
    "                serve.http, else 127.0.0.1:8080; port 0 takes a free one)\n"
    "  --no-auth     no token: allowed on a loopback address only, and every\n"
    "                API request must send \"X-Skipq-Request: 1\" and a Host\n"
    "                naming the address\n"
    "  --routes      print the API's routes and exit\n"
    "\n"
    "Tokens (sent as \"Authorization: Bearer TOKEN\"): SKIPQ_ADMIN_TOKEN or\n"
    "serve.admin_token for everything, SKIPQ_READ_TOKEN or serve.read_token\n"
    "for GET requests only; the environment wins over the config. Without\n"
    "either, serve refuses to start unless --no-auth is given.\n"
    "\n"
    "exit status: 0 stopped by a signal, 1 runtime failure, 2 usage or bad\n"
    "input\n";

enum { OPT_HTTP = CLI_OPT_LOCAL, OPT_NO_AUTH, OPT_ROUTES };

/* Handler threads, and as many database connections. */
#define SERVE_THREADS 4
/* The batch endpoint's body limit: 10,000 jobs of some kilobytes each. */
#define SERVE_BATCH_BODY ((size_t)32 << 20)
/* Rate limit buckets: clients beyond this many share the least recent. */
#define SERVE_BUCKETS 1024
/* At a signal: how long open connections get to finish their requests. */
#define SERVE_DRAIN_MS 10000
/* Seconds a client is told to wait when the database is away. */
#define SERVE_RETRY_AFTER "5"

struct bucket {
    char peer[48]; /* "" when free */
    double tokens;
    double at; /* when tokens was last topped up (monotonic seconds) */
};

struct serve {
    struct cli_ctx *ctx;
    const char *admin_token, *read_token; /* NULL: none */
    bool no_auth;
    char hosts[2][96]; /* the Host values --no-auth accepts */
    size_t max_body;
    double rate, burst; /* per second; 0: no limit */

    pthread_mutex_t lock; /* the connections' busy flags and the buckets */
    skipq_conn *conns[SERVE_THREADS];
    bool busy[SERVE_THREADS];
    struct bucket buckets[SERVE_BUCKETS];
};

/* ---- responses ------------------------------------------------------ */

void
api_json(struct api_req *q, int status, json_object *o)
{
    const char *s = o ? json_object_to_json_string_ext(o,
                                                       JSON_C_TO_STRING_PLAIN |
                                                           JSON_C_TO_STRING_NOSLASHESCAPE)
                      : NULL;
    q->rs->status = status;
    q->rs->content_type = "application/json";
    if (!s || !http_printf(q->rs, "%s\n", s)) {
        q->rs->status = 500;
        http_printf(q->rs, "{\"error\":\"out of memory\"}\n");
    }
    json_object_put(o);
}

static void
error_response(struct http_response *rs, int status, const char *msg)
{
    json_object *o = json_object_new_object();
    struct api_req q = {.rs = rs};

    if (o)
        json_object_object_add(o, "error", json_object_new_string(msg));
    api_json(&q, status, o);
}

void
api_error(struct api_req *q, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    error_response(q->rs, status, msg);
}

/* The database is away (or busy past a timeout): come back later. */
static void
unavailable(struct api_req *q, const char *msg)
{
    error_response(q->rs, 503, msg);
    http_add_header(q->rs, "Retry-After", SERVE_RETRY_AFTER);
}

void
api_db_error(struct api_req *q, const PGresult *res, const char *fmt, ...)
{
    PGconn *pg = q->conn ? skipq_conn_pg(q->conn) : NULL;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    int rc = cli_db_vmessage(pg, res, msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* 55P03 lock_not_available, 57014 query_canceled (statement_timeout),
     * 57P01..03 and class 08: the server or the connection went away */
    if (!pg || PQstatus(pg) != CONNECTION_OK ||
        (state && (strcmp(state, "55P03") == 0 || strncmp(state, "57", 2) == 0 ||
                   strncmp(state, "08", 2) == 0)))
        unavailable(q, msg);
    else
        error_response(q->rs, rc == CLI_EXIT_USAGE ? 400 : 500, msg);
}

void
api_skipq_error(struct api_req *q, const skipq_error *err, const char *prefix)
{
    char msg[1024];
    PGconn *pg = q->conn ? skipq_conn_pg(q->conn) : NULL;

    snprintf(msg, sizeof msg, "%s%s", prefix ? prefix : "", err->message);
    if (err->code == SKIPQ_ERR_INVALID)
        error_response(q->rs, 400, msg);
    else if (err->code == SKIPQ_ERR_CONNECT || !pg || PQstatus(pg) != CONNECTION_OK)
        unavailable(q, msg);
    else
        error_response(q->rs, 500, msg);
}

json_object *
api_body(struct api_req *q, bool empty_ok)
{
    json_object *o = NULL;
    skipq_error err = {0};

    if (q->rq->body_len == 0 && empty_ok)
        return json_object_new_object();
    if (skipq_json_parse(q->rq->body, q->rq->body_len, JSON_TOKENER_STRICT, &o, &err) !=
        SKIPQ_OK) {
        api_error(q, 400, "the request body is %s", err.message);
        return NULL;
    }
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        api_error(q, 400, "the request body must be a JSON object");
        return NULL;
    }
    return o;
}

bool
api_exec(struct api_req *q, const char *sql)
{
    PGresult *res = PQexec(skipq_conn_pg(q->conn), sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;

    if (!ok)
        api_db_error(q, res, "could not run %s", sql);
    PQclear(res);
    return ok;
}

bool
api_begin(struct api_req *q)
{
    /* a request that changes jobs waits at most 5s for a row lock a
     * worker or another client holds, and runs at most 60s in all */
    return api_exec(q, "BEGIN") &&
           api_exec(q,
                    "SET LOCAL statement_timeout = '60s'; SET LOCAL lock_timeout = '5s'");
}

void
api_rollback(struct api_req *q)
{
    PGconn *pg = skipq_conn_pg(q->conn);
    if (PQstatus(pg) == CONNECTION_OK && PQtransactionStatus(pg) != PQTRANS_IDLE)
        PQclear(PQexec(pg, "ROLLBACK"));
}

bool
api_commit(struct api_req *q)
{
    PGresult *res = PQexec(skipq_conn_pg(q->conn), "COMMIT");
    /* a COMMIT that fails a deferred check reports ROLLBACK, not an error */
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK &&
              strcmp(PQcmdStatus(res), "COMMIT") == 0;

    if (!ok) {
        api_db_error(q, res, "could not commit");
        api_rollback(q);
    }
    PQclear(res);
    return ok;
}

/* ---- database connections ------------------------------------------- */

/* Every connection: timestamps in UTC ("...Z"-equivalent "+00:00"), and
 * reads bounded like the writes (api_begin), so no request hangs. */
static const char conn_setup_sql[] = "SET TimeZone = 'UTC'; SET statement_timeout = '30s';"
                                     " SET lock_timeout = '5s';"
                                     " SET application_name = 'skipq serve'";

/* A free slot, its connection opened if it has none. -1 after answering
 * 503. */
static int
conn_take(struct serve *sv, struct api_req *q)
{
    int slot = -1;
    skipq_error err = {0};

    pthread_mutex_lock(&sv->lock);
    for (int i = 0; i < SERVE_THREADS && slot < 0; i++)
        if (!sv->busy[i])
            slot = i;
    if (slot >= 0)
        sv->busy[slot] = true;
    pthread_mutex_unlock(&sv->lock);
    if (slot < 0) { /* more handlers than slots: not with SERVE_THREADS threads */
        unavailable(q, "no database connection is free");
        return -1;
    }
    if (!sv->conns[slot]) {
        skipq_conn *c = NULL;
        if (skipq_conn_open(sv->ctx->database, &c, &err) != SKIPQ_OK) {
            unavailable(q, err.message);
            goto fail;
        }
        PGresult *res = PQexec(skipq_conn_pg(c), conn_setup_sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            q->conn = c;
            api_db_error(q, res, "could not set up the connection");
            q->conn = NULL;
            PQclear(res);
            skipq_conn_close(c);
            goto fail;
        }
        PQclear(res);
        sv->conns[slot] = c;
        cli_log(SKIPQ_LOG_INFO, "connected to the database (connection %d)", slot + 1);
    }
    q->conn = sv->conns[slot];
    return slot;
fail:
    pthread_mutex_lock(&sv->lock);
    sv->busy[slot] = false;
    pthread_mutex_unlock(&sv->lock);
    return -1;
}

/* Give the slot back: a lost connection is closed, to be opened anew by
 * the next request; a transaction a handler left open is rolled back. */
static void
conn_give(struct serve *sv, int slot)
{
    PGconn *pg = skipq_conn_pg(sv->conns[slot]);

    if (PQstatus(pg) == CONNECTION_OK && PQtransactionStatus(pg) != PQTRANS_IDLE)
        PQclear(PQexec(pg, "ROLLBACK"));
    if (PQstatus(pg) != CONNECTION_OK) {
        cli_log(SKIPQ_LOG_WARN,
                "lost the database connection %d; reconnecting on the "
                "next request",
                slot + 1);
        skipq_conn_close(sv->conns[slot]);
        sv->conns[slot] = NULL;
    }
    pthread_mutex_lock(&sv->lock);
    sv->busy[slot] = false;
    pthread_mutex_unlock(&sv->lock);
}

/* ---- rate limit, authentication --------------------------------------- */

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * A token bucket per client address: rate tokens a second, at most burst.
 * 0 to go on, or the seconds to wait. The table is fixed: a new address
 * takes a free bucket, else the one idle longest (whose client then
 * starts full again, which only errs toward letting requests through).
 */
/* The client a bucket counts: its IPv4 address, or the /64 network of
 * an IPv6 one (a host holds a whole /64, and would otherwise pick a new
 * address, and a new bucket, for every request). */
static void
rate_key(const char *peer, char *out, size_t n)
{
    struct in6_addr a;

    if (strchr(peer, ':') && inet_pton(AF_INET6, peer, &a) == 1) {
        memset(a.s6_addr + 8, 0, 8);
        if (inet_ntop(AF_INET6, &a, out, (socklen_t)n))
            return;
    }
    snprintf(out, n, "%s", peer);
}

static int
rate_wait(struct serve *sv, const char *addr)
{
    double t = now_s();
    struct bucket *b = NULL, *oldest = &sv->buckets[0];
    int wait = 0;
    char peer[INET6_ADDRSTRLEN + 1];

    if (sv->rate <= 0)
        return 0;
    rate_key(addr, peer, sizeof peer);
    pthread_mutex_lock(&sv->lock);
    for (size_t i = 0; i < SERVE_BUCKETS && !b; i++) {
        struct bucket *c = &sv->buckets[i];
        if (strcmp(c->peer, peer) == 0)
            b = c;
        else if (!c->peer[0] || c->at < oldest->at)
            oldest = c;
        if (!c->peer[0])
            break;
    }
    if (!b) {
        b = oldest;
        snprintf(b->peer, sizeof b->peer, "%s", peer);
        b->tokens = sv->burst;
        b->at = t;
    }
    b->tokens += (t - b->at) * sv->rate;
    if (b->tokens > sv->burst)
        b->tokens = sv->burst;
    b->at = t;
    if (b->tokens >= 1)
        b->tokens -= 1;
    else
        wait = (int)((1 - b->tokens) / sv->rate) + 1;
    pthread_mutex_unlock(&sv->lock);
    return wait;
}

/* Equal, in time that depends on the token's length only. */
static bool
token_equal(const char *given, size_t glen, const char *token)
{
    size_t tlen = strlen(token);
    unsigned char d = glen != tlen;

    for (size_t i = 0; i < tlen; i++)
        d |= (unsigned char)(token[i] ^ (i < glen ? given[i] : 0));
    return d == 0;
}

enum access { ACCESS_NONE, ACCESS_READ, ACCESS_ADMIN };

static enum access
token_access(const struct serve *sv, const struct http_request *rq)
{
    const char *h = http_header(rq, "Authorization");
    enum access a = ACCESS_NONE;

    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return ACCESS_NONE;
    h += 7;
    while (*h == ' ')
        h++;
    size_t n = strlen(h);
    /* both compared, whichever matches: the time says nothing of which */
    bool admin = sv->admin_token && token_equal(h, n, sv->admin_token);
    bool read = sv->read_token && token_equal(h, n, sv->read_token);
    if (read)
        a = ACCESS_READ;
    if (admin)
        a = ACCESS_ADMIN;
    return a;
}

/* May this /api/ request go on? false after answering 401 or 403. */
static bool
authorized(const struct serve *sv, const struct http_request *rq, struct http_response *rs)
{
    if (sv->no_auth) {
        const char *xr = http_header(rq, "X-Skipq-Request");
        const char *host = http_header(rq, "Host");
        bool host_ok = false;
        /* set once the server is bound (set_hosts); until then none matches */
        pthread_mutex_lock((pthread_mutex_t *)&sv->lock);
        for (size_t i = 0; host && i < 2; i++)
            host_ok |= sv->hosts[i][0] && strcasecmp(host, sv->hosts[i]) == 0;
        pthread_mutex_unlock((pthread_mutex_t *)&sv->lock);
        if (!xr || strcmp(xr, "1") != 0) {
            error_response(rs, 403,
                           "without a token (--no-auth) every API request must "
                           "send the header \"X-Skipq-Request: 1\"");
            return false;
        }
        if (!host_ok) {
            error_response(rs, 403, "the Host header does not name this server's address");
            return false;
        }
        return true;
    }
    enum access a = token_access(sv, rq);
    if (a == ACCESS_NONE) {
        error_response(rs, 401,
                       http_header(rq, "Authorization")
                           ? "the token is wrong"
                           : "a token is required: send \"Authorization: Bearer TOKEN\"");
        http_add_header(rs, "WWW-Authenticate", "Bearer");
        return false;
    }
    if (a == ACCESS_READ && strcmp(rq->method, "GET") != 0 &&
        strcmp(rq->method, "HEAD") != 0) {
        error_response(rs, 403,
                       "the read token cannot change anything: use the admin token");
        return false;
    }
    return true;
}

/* ---- routing ---------------------------------------------------------- */

static int
hex_digit(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The n bytes at s with their %XX escapes decoded, into buf; false for a
 * bad escape, a NUL, or no room. */
static bool
decode_part(const char *s, size_t n, char *buf, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < n ? hex_digit(s[i + 1]) : -1;
            int lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
            if (lo < 0 || (hi == 0 && lo == 0))
                return false;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= size)
            return false;
        buf[o++] = c;
    }
    buf[o] = '\0';
    return o > 0;
}

/* Does path, as sent (escapes not decoded), match pattern ("{x}" takes
 * one non-empty part)? *arg gets the part, decoded (in buf): a name
 * holding '/' is sent as %2F and stays one part. */
static bool
route_match(const char *pattern, const char *path, char *buf, size_t size, const char **arg)
{
    const char *p = pattern, *s = path;

    while (*p && *s) {
        if (*p == '{') {
            size_t n = strcspn(s, "/");
            if (n == 0 || !decode_part(s, n, buf, size))
                return false;
            *arg = buf;
            s += n;
            p = strchr(p, '}') + 1;
        } else if (*p++ != *s++) {
            return false;
        }
    }
    return !*p && !*s;
}

static void
route_api(struct serve *sv, const struct http_request *rq, struct http_response *rs)
{
    char allow[64] = "", part[256];
    const struct api_route *hit = NULL;
    const char *arg = NULL;

    for (size_t i = 0; i < serve_nroutes && !hit; i++) {
        const char *a = NULL;
        if (!route_match(serve_routes[i].path, rq->raw_path, part, sizeof part, &a))
            continue;
        if (strcmp(serve_routes[i].method, rq->method) == 0) {
            hit = &serve_routes[i];
            arg = a;
        } else if (!strstr(allow, serve_routes[i].method)) {
            size_t n = strlen(allow);
            snprintf(allow + n, sizeof allow - n, "%s%s", n ? ", " : "",
                     serve_routes[i].method);
        }
    }
    if (!hit) {
        if (allow[0]) {
            char msg[128];
            snprintf(msg, sizeof msg, "method %s is not allowed here: use %s", rq->method,
                     allow);
            error_response(rs, 405, msg);
            /* the header's value must outlive this call: a static one */
            http_add_header(rs, "Allow",
                            strchr(allow, ',')          ? "GET, POST"
                            : strcmp(allow, "GET") == 0 ? "GET"
                                                        : "POST");
        } else {
            error_response(rs, 404, "no such API endpoint");
        }
        return;
    }
    struct api_req q = {.ctx = sv->ctx, .rq = rq, .rs = rs, .arg = arg};
    int slot = -1;
    if (hit->db && (slot = conn_take(sv, &q)) < 0)
        return;
    hit->fn(&q);
    if (slot >= 0)
        conn_give(sv, slot);
}

/* The dashboard's files: no token (they hold no data), GET only. */
static void
serve_asset(const struct http_request *rq, struct http_response *rs)
{
    const struct web_asset *a = web_asset_find(rq->path);

    if (!a) {
        error_response(rs, 404, "not found");
        return;
    }
    if (strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "HEAD") != 0) {
        error_response(rs, 405, "method not allowed: use GET");
        http_add_header(rs, "Allow", "GET");
        return;
    }
    if (!(rs->body = malloc(a->len ? a->len : 1))) {
        error_response(rs, 500, "out of memory");
        return;
    }
    memcpy(rs->body, a->data, a->len);
    rs->len = a->len;
    rs->content_type = a->type;
    if (strncmp(a->type, "text/html", 9) == 0)
        http_add_header(rs, "Content-Security-Policy",
                        "default-src 'self'; script-src 'self'; style-src 'self'; "
                        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                        "base-uri 'none'; form-action 'none'");
}

static bool
is_api(const char *path)
{
    return strncmp(path, "/api/", 5) == 0 || strcmp(path, "/api") == 0;
}

/*
 * On a request's headers, before its body is read (http.h): the rate
 * limit and the token come first, so a client without one cannot make
 * the server read or buffer a body, and only an admin's batch may send
 * the batch's larger one (test serve.refused_requests_send_no_body).
 */
static size_t
precheck(const struct http_request *rq, struct http_response *rs, void *userdata)
{
    struct serve *sv = userdata;

    if (!is_api(rq->path))
        return sv->max_body;
    http_add_header(rs, "Referrer-Policy", "no-referrer");
    int wait = rate_wait(sv, rq->peer);
    if (wait > 0) {
        error_response(rs, 429, "too many requests from this address: slow down");
        static const char *const secs[] = {"1", "2", "3", "4", "5",
                                           "6", "7", "8", "9", "10"};
        http_add_header(rs, "Retry-After", secs[(wait > 10 ? 10 : wait) - 1]);
        return 0;
    }
    if (!authorized(sv, rq, rs))
        return 0;
    /* the path as routed: as sent */
    if (strcmp(rq->method, "POST") == 0 && strcmp(rq->raw_path, "/api/jobs/batch") == 0)
        return SERVE_BATCH_BODY > sv->max_body ? SERVE_BATCH_BODY : sv->max_body;
    return sv->max_body;
}

static void
on_request(const struct http_request *rq, struct http_response *rs, void *userdata)
{
    struct serve *sv = userdata;

    http_add_header(rs, "Referrer-Policy", "no-referrer");
    if (!is_api(rq->path)) {
        serve_asset(rq, rs);
        return;
    }
    /* precheck() let it in: rate and token checked on its headers */
    route_api(sv, rq, rs);
}

/* ---- the command ------------------------------------------------------ */

/* The tokens: the environment's, else the config's; each checked by the
 * config's own setter. 0, or the exit status after printing. */
static int
load_tokens(struct cli_ctx *ctx)
{
    skipq_error err = {0};
    const char *admin = getenv("SKIPQ_ADMIN_TOKEN"), *read = getenv("SKIPQ_READ_TOKEN");

    if (admin && *admin &&
        skipq_config_set_serve_admin_token(ctx->cfg, admin, &err) != SKIPQ_OK)
        return cli_errorf(CLI_EXIT_USAGE, "SKIPQ_ADMIN_TOKEN: %s", err.message);
    if (read && *read &&
        skipq_config_set_serve_read_token(ctx->cfg, read, &err) != SKIPQ_OK)
        return cli_errorf(CLI_EXIT_USAGE, "SKIPQ_READ_TOKEN: %s", err.message);
    return 0;
}

/* The Host values a browser sends for the bound address under --no-auth:
 * "127.0.0.1:PORT" or "[::1]:PORT" as bound, or "localhost:PORT". */
static void
set_hosts(struct serve *sv, const char *bound)
{
    const char *port = strrchr(bound, ':');

    pthread_mutex_lock(&sv->lock); /* the server's threads may be reading */
    snprintf(sv->hosts[0], sizeof sv->hosts[0], "%s", bound);
    snprintf(sv->hosts[1], sizeof sv->hosts[1], "localhost%s", port ? port : "");
    pthread_mutex_unlock(&sv->lock);
}

static void
print_routes(void)
{
    for (size_t i = 0; i < serve_nroutes; i++)
        printf("%s %s\n", serve_routes[i].method, serve_routes[i].path);
}

/* Serve until SIGTERM or SIGINT. The signals are blocked before the
 * server's threads start (they inherit the mask) and taken here. */
static int
run(struct serve *sv, const char *addr, skipq_conn *first)
{
    struct http_options opt = {
        .max_body = sv->max_body,
        .threads = SERVE_THREADS,
        .body_limit = precheck,
        .max_connections = 256,
        .per_ip_connections = 64,
    };
    struct http_server *http = NULL;
    char err[512];
    sigset_t set;
    int sig = 0;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    sv->conns[0] = first;
    PGresult *res = PQexec(skipq_conn_pg(first), conn_setup_sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        int rc = cli_db_fail(skipq_conn_pg(first), res, "could not set up the connection");
        PQclear(res);
        return rc;
    }
    PQclear(res);
    if (http_start(addr, &opt, on_request, sv, &http, err, sizeof err) != 0)
        return cli_errorf(CLI_EXIT_FAIL, "%s", err);
    set_hosts(sv, http_bound(http));
    cli_log(SKIPQ_LOG_INFO, "serving the API and dashboard on http://%s%s",
            http_bound(http), sv->no_auth ? " (no token: --no-auth)" : "");
    while (sigwait(&set, &sig) != 0)
        ;
    cli_log(SKIPQ_LOG_INFO, "stopping: finishing the requests in flight");
    http_drain(http, SERVE_DRAIN_MS);
    http_stop(http); /* waits for the handlers */
    return CLI_EXIT_OK;
}

int
cmd_serve(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        {"http", required_argument, NULL, OPT_HTTP},
        {"no-auth", no_argument, NULL, OPT_NO_AUTH},
        {"routes", no_argument, NULL, OPT_ROUTES},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    struct serve *sv = NULL;
    skipq_conn *conn = NULL;
    const char *addr = NULL;
    bool no_auth = false;
    int c, rc;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        if (c == OPT_HTTP) {
            addr = optarg;
        } else if (c == OPT_NO_AUTH) {
            no_auth = true;
        } else if (c == OPT_ROUTES) {
            print_routes();
            return CLI_EXIT_OK;
        } else if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT) {
            return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error("serve takes no arguments, got \"%.64s\"", argv[optind]);
    if ((rc = cli_load(ctx)) != 0 || (rc = load_tokens(ctx)) != 0)
        return rc;
    if (!addr)
        addr = skipq_config_serve_http(ctx->cfg);
    if (!addr)
        addr = "127.0.0.1:8080";
    const char *admin = skipq_config_serve_admin_token(ctx->cfg);
    const char *read = skipq_config_serve_read_token(ctx->cfg);
    if (no_auth && !http_addr_is_loopback(addr))
        return cli_errorf(CLI_EXIT_USAGE,
                          "--no-auth is allowed on a loopback address only, not \"%.64s\": "
                          "set serve.admin_token (or SKIPQ_ADMIN_TOKEN) to serve it",
                          addr);
    if (!no_auth && !admin && !read)
        return cli_errorf(CLI_EXIT_USAGE,
                          "no token is configured: set serve.admin_token (or "
                          "SKIPQ_ADMIN_TOKEN), or pass --no-auth to serve a loopback "
                          "address without one");
    /* a database host that does not answer fails a request's connect in
     * 5s (503), not in the minutes of TCP's own timeout; a URL's own
     * connect_timeout wins. Set before any thread starts. */
    setenv("PGCONNECT_TIMEOUT", "5", 0);
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    if (!(sv = calloc(1, sizeof *sv))) {
        skipq_conn_close(conn);
        return cli_errorf(CLI_EXIT_FAIL, "out of memory");
    }
    sv->ctx = ctx;
    sv->no_auth = no_auth;
    sv->admin_token = no_auth ? NULL : admin;
    sv->read_token = no_auth ? NULL : read;
    sv->max_body = skipq_config_serve_max_body(ctx->cfg);
    sv->rate = skipq_config_serve_rate_limit(ctx->cfg);
    sv->burst = 2 * sv->rate;
    pthread_mutex_init(&sv->lock, NULL);
    rc = run(sv, addr, conn);
    for (int i = 0; i < SERVE_THREADS; i++)
        skipq_conn_close(sv->conns[i]);
    pthread_mutex_destroy(&sv->lock);
    free(sv);
    return rc;
}
