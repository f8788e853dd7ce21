/*
 * worker_http.c - `skipq worker --http ADDR`: the probes and the metrics
 * page of one worker process, over the shared HTTP server (http.c).
 *
 *   /healthz  200 while the worker in charge turns its main loop (the
 *             last turn within its bound: skipq_worker_health_get), 503
 *             with the reason otherwise: a stuck process to restart.
 *   /readyz   200 when that worker has started, is connected, passed the
 *             schema check and is not stopping or retiring; 503 with the
 *             reason otherwise: a process not to send work to.
 *   /metrics  the process's registry (skipq_metrics_render: outcomes,
 *             run time and pickup histograms, slots) followed by the
 *             database-wide families of `skipq metrics` (metrics_db.c).
 *
 * The database-wide part costs a few aggregate queries over skipq.jobs,
 * so it is read at most once per WORKER_HTTP_DB_CACHE_MS whatever the
 * scrape rate, on a connection of its own opened at the first scrape:
 * the worker's connection belongs to its main loop, and a slow read must
 * never delay a claim. A failed read is cached as long, as skipq_up 0,
 * so a scraper cannot make the process hammer a database that is down.
 * Probes never touch the database and never wait for /metrics: the
 * server has several threads.
 */
#include "worker_http.h"

#include "cli.h"
#include "http.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct worker_http {
    struct http_server *server;
    skipq_metrics *metrics;
    char *database; /* NULL: PG* variables */
    probe_fn probe;
    void *userdata;

    pthread_mutex_t mu;      /* the database-wide read, one at a time */
    pthread_mutex_t text_mu; /* db_text, db_len, db_at_ms */
    PGconn *pg;              /* NULL until the first scrape, or after a failure */
    char *db_text;           /* the last read's families (or skipq_up 0) */
    size_t db_len;
    int64_t db_at_ms; /* monotonic: when it was read; 0 never */
    bool db_failing;  /* the last read failed (warned once per streak) */
};

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the probes ---------------------------------------------------------- */

bool
probe_live(const struct probe_state *s, char *why, size_t n)
{
    if (!s->have) {
        snprintf(why, n, s->ended ? "stopping" : "starting");
        return true; /* nothing to be stuck: the process is starting or ending */
    }
    if (s->h.loop_age_ms > s->h.loop_bound_ms) {
        snprintf(why, n,
                 "the main loop last turned %" PRId64 " ms ago (bound %" PRId64 " ms)",
                 s->h.loop_age_ms, s->h.loop_bound_ms);
        return false;
    }
    snprintf(why, n, "the main loop turned %" PRId64 " ms ago",
             s->h.loop_age_ms < 0 ? 0 : s->h.loop_age_ms);
    return true;
}

bool
probe_ready(const struct probe_state *s, char *why, size_t n)
{
    const char *no = NULL;

    if (!s->have)
        no = s->ended ? "stopping" : "no worker in charge";
    else if (s->h.stopping)
        no = "stopping";
    else if (!s->h.started)
        no = "starting";
    else if (!s->h.schema_ok)
        no = "the schema was not checked";
    else if (!s->h.connected)
        no = "not connected to the database";
    snprintf(why, n, "%s", no ? no : "ready");
    return !no;
}

/* A probe's answer: {"status":"ok"|"unavailable","reason":"..."}. The
 * reasons are ours, with no quote, backslash or control character. */
static void
answer_probe(struct http_response *rs, bool ok, const char *why)
{
    rs->status = ok ? 200 : 503;
    rs->content_type = "application/json";
    http_printf(rs, "{\"status\":\"%s\",\"reason\":\"%s\"}\n", ok ? "ok" : "unavailable",
                why);
}

/* ---- the metrics page ------------------------------------------------------ */

/* The database-wide families, read at most once per cache period. Under
 * wh->mu; the text is swapped in under text_mu, so scrapes meanwhile
 * answer with the last one (answer_metrics). */
static void
refresh_db(struct worker_http *wh)
{
    int64_t now = now_ms();
    char *text = NULL;
    size_t len = 0;
    PGresult *failed = NULL;
    char why[512] = "";

    pthread_mutex_lock(&wh->text_mu);
    bool fresh = wh->db_at_ms && now - wh->db_at_ms < WORKER_HTTP_DB_CACHE_MS;
    pthread_mutex_unlock(&wh->text_mu);
    if (fresh)
        return;
    if (!wh->pg) {
        /* bounded: a scrape must not hang on a database that does not answer */
        const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
        const char *vals[] = {wh->database ? wh->database : "", "5", "skipq worker metrics",
                              NULL};
        wh->pg = PQconnectdbParams(keys, vals, 1);
        if (PQstatus(wh->pg) == CONNECTION_OK)
            PQclear(PQexec(wh->pg,
                           "SET statement_timeout = '5s'; SET lock_timeout = '2s'"));
    }
    FILE *f = open_memstream(&text, &len);
    bool ok = f && PQstatus(wh->pg) == CONNECTION_OK &&
              cli_metrics_db_write(wh->pg, f, &failed) == 0;
    if (!ok) {
        const char *msg = failed ? PQresultErrorMessage(failed) : PQerrorMessage(wh->pg);
        snprintf(why, sizeof why, "%s", msg && *msg ? msg : "out of memory");
        why[strcspn(why, "\n")] = '\0';
        if (f) /* the read wrote nothing: it writes all or none */
            fprintf(f, "# HELP skipq_up 1: the database was read\n"
                       "# TYPE skipq_up gauge\nskipq_up 0\n");
    }
    if (f && fclose(f) != 0) {
        free(text);
        text = NULL;
    }
    PQclear(failed);
    if (!ok && !wh->db_failing)
        cli_log(SKIPQ_LOG_WARN, "/metrics: could not read the database-wide metrics: %s",
                why);
    else if (ok && wh->db_failing)
        cli_log(SKIPQ_LOG_INFO, "/metrics: the database-wide metrics are read again");
    wh->db_failing = !ok;
    if (!ok && wh->pg && PQstatus(wh->pg) != CONNECTION_OK) {
        PQfinish(wh->pg); /* connect again at the next read */
        wh->pg = NULL;
    }
    pthread_mutex_lock(&wh->text_mu);
    free(wh->db_text);
    wh->db_text = text;
    wh->db_len = text ? len : 0;
    wh->db_at_ms = now;
    pthread_mutex_unlock(&wh->text_mu);
}

static void
answer_metrics(struct worker_http *wh, struct http_response *rs)
{
    size_t plen = 0;
    char *process = skipq_metrics_render(wh->metrics, &plen);

    /* One scrape reads the database (up to its timeouts); the others
     * meanwhile answer with the last read at once, so a slow database
     * never holds every server thread, and /healthz with them. */
    if (pthread_mutex_trylock(&wh->mu) == 0) {
        refresh_db(wh);
        pthread_mutex_unlock(&wh->mu);
    }
    pthread_mutex_lock(&wh->text_mu);
    char *body = process ? malloc(plen + wh->db_len + 1) : NULL;
    if (body) {
        memcpy(body, process, plen);
        if (wh->db_len)
            memcpy(body + plen, wh->db_text, wh->db_len);
        body[plen + wh->db_len] = '\0';
    }
    size_t blen = plen + wh->db_len;
    pthread_mutex_unlock(&wh->text_mu);
    free(process);
    if (!body) {
        rs->status = 500;
        http_printf(rs, "out of memory\n");
        return;
    }
    rs->body = body;
    rs->len = blen;
    rs->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

static void
on_request(const struct http_request *rq, struct http_response *rs, void *userdata)
{
    struct worker_http *wh = userdata;
    bool get = strcmp(rq->method, "GET") == 0 || strcmp(rq->method, "HEAD") == 0;
    struct probe_state st = {0};
    char why[256];

    if (!get) {
        rs->status = 405;
        http_add_header(rs, "Allow", "GET, HEAD");
        http_printf(rs, "only GET and HEAD\n");
    } else if (strcmp(rq->path, "/healthz") == 0) {
        wh->probe(&st, wh->userdata);
        answer_probe(rs, probe_live(&st, why, sizeof why), why);
    } else if (strcmp(rq->path, "/readyz") == 0) {
        wh->probe(&st, wh->userdata);
        answer_probe(rs, probe_ready(&st, why, sizeof why), why);
    } else if (strcmp(rq->path, "/metrics") == 0) {
        answer_metrics(wh, rs);
    } else {
        rs->status = 404;
        http_printf(rs, "not found: this worker serves /healthz, /readyz and /metrics\n");
    }
}

int
worker_http_start(const char *addr, skipq_metrics *m, const char *database, probe_fn probe,
                  void *userdata, struct worker_http **out, char *err, size_t errlen)
{
    /* several threads: a probe never waits behind a scrape's database read */
    static const struct http_options opt = {.max_body = 4096, .threads = 4};
    struct worker_http *wh = calloc(1, sizeof *wh);

    *out = NULL;
    if (!wh || (database && !(wh->database = strdup(database)))) {
        free(wh);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    wh->metrics = m;
    wh->probe = probe;
    wh->userdata = userdata;
    pthread_mutex_init(&wh->mu, NULL);
    pthread_mutex_init(&wh->text_mu, NULL);
    if (http_start(addr, &opt, on_request, wh, &wh->server, err, errlen) != 0) {
        pthread_mutex_destroy(&wh->mu);
        pthread_mutex_destroy(&wh->text_mu);
        free(wh->database);
        free(wh);
        return -1;
    }
    *out = wh;
    return 0;
}

const char *
worker_http_bound(const struct worker_http *wh)
{
    return http_bound(wh->server);
}

void
worker_http_stop(struct worker_http *wh)
{
    if (!wh)
        return;
    http_stop(wh->server);
    if (wh->pg)
        PQfinish(wh->pg);
    free(wh->db_text);
    free(wh->database);
    pthread_mutex_destroy(&wh->mu);
    pthread_mutex_destroy(&wh->text_mu);
    free(wh);
}
