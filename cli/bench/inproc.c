/*
 * inproc.c - a worker on a thread of this process, for the latency,
 * steady and soak measurements: producer and handler share one monotonic
 * clock, as the peer harness's do, and the handler records when each job
 * started.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The integer after "key": in a jsonb text ({"i": 5, "t": 12}). */
int
payload_int(const char *text, const char *key, long long *out)
{
    const char *p = strstr(text, key);
    if (!p)
        return 0;
    p = strchr(p + strlen(key), ':');
    if (!p)
        return 0;
    char *end;
    *out = strtoll(p + 1, &end, 10);
    return end != p + 1;
}

skipq_outcome
timing_handler(skipq_job *job, void *userdata)
{
    int64_t t = now_us();
    struct inproc *ip = userdata;
    const char *text = skipq_job_payload_text(job);
    long long i = -1, t0 = 0;

    if (payload_int(text, "\"i\"", &i) && i >= 0 && i < ip->n) {
        ip->start_us[i] = t;
        if (payload_int(text, "\"t\"", &t0))
            ip->lat_ms[i] = (double)(t - t0) / 1000.0;
        atomic_fetch_add(&ip->handled, 1);
    }
    return SKIPQ_JOB_OK;
}

static void *
wthread_main(void *p)
{
    struct wthread *x = p;
    x->rc = skipq_worker_run(x->w, &x->err);
    return NULL;
}

int
inproc_start(struct bench *b, skipq_handler_fn fn, void *ud, const struct inproc_keep *keep,
             struct wthread *x)
{
    skipq_config *cfg = skipq_config_new();
    skipq_error err = {0};
    skipq_rc rc = cfg ? SKIPQ_OK : SKIPQ_ERR_NOMEM;

    memset(x, 0, sizeof *x);
    if (rc == SKIPQ_OK)
        rc = skipq_config_set_concurrency(cfg, b->concurrency, &err);
    if (rc == SKIPQ_OK)
        rc = skipq_config_set_prefetch(cfg, b->prefetch, &err);
    if (rc == SKIPQ_OK)
        rc = skipq_config_set_on_success(cfg, b->on_success, &err);
    if (rc == SKIPQ_OK)
        rc = skipq_config_set_database(cfg, b->url, &err);
    if (rc == SKIPQ_OK && keep && keep->retention_ms > 0)
        rc = skipq_config_set_retention(cfg, keep->retention_ms, &err);
    if (rc == SKIPQ_OK && keep && keep->archive_after_ms > 0)
        rc = skipq_config_set_archive_after(cfg, keep->archive_after_ms, &err);
    if (rc == SKIPQ_OK && keep && keep->archive_partition_ms >= 0)
        rc = skipq_config_set_archive_partition(cfg, keep->archive_partition_ms, &err);
    if (rc == SKIPQ_OK && b->vacuum_ms >= 0)
        rc = skipq_config_set_vacuum_interval(cfg, b->vacuum_ms, &err);
    if (rc == SKIPQ_OK)
        rc = skipq_worker_new(cfg, &x->w, &err);
    if (rc == SKIPQ_OK)
        rc = skipq_worker_register(x->w, KIND_NOOP, fn, ud, &err);
    skipq_config_free(cfg);
    if (rc != SKIPQ_OK) {
        skipq_worker_free(x->w);
        x->w = NULL;
        if (rc == SKIPQ_ERR_NOMEM)
            return cli_errorf(CLI_EXIT_FAIL, "bench: out of memory");
        return fail1(&err);
    }
    inproc_worker = x->w;
    if (pthread_create(&x->th, NULL, wthread_main, x) != 0) {
        inproc_worker = NULL;
        skipq_worker_free(x->w);
        x->w = NULL;
        return cli_errorf(CLI_EXIT_FAIL, "bench: could not start the worker thread");
    }
    x->running = 1;
    /* ready once registered (it LISTENs before it registers); then let
     * it settle into its idle wait, as the peer harness does */
    for (int64_t t0 = now_us(); sql_int(b->pg, "SELECT count(*) FROM skipq.workers") < 1;) {
        if (interrupted || now_us() - t0 > 10000000)
            return cli_errorf(CLI_EXIT_FAIL, "bench: the worker did not start");
        sleep_us(5000);
    }
    sleep_us(500000);
    return 0;
}

int
inproc_stop(struct wthread *x)
{
    int rc = 0;
    if (!x->running)
        return 0;
    skipq_worker_stop(x->w);
    pthread_join(x->th, NULL);
    inproc_worker = NULL;
    if (x->rc != SKIPQ_OK)
        rc = fail1(&x->err);
    skipq_worker_free(x->w);
    x->w = NULL;
    x->running = 0;
    return rc;
}

int
inproc_alloc(struct inproc *ip, long long n)
{
    memset(ip, 0, sizeof *ip);
    ip->n = n;
    ip->start_us = calloc((size_t)n, sizeof *ip->start_us);
    ip->lat_ms = calloc((size_t)n, sizeof *ip->lat_ms);
    ip->before_us = calloc((size_t)n, sizeof *ip->before_us);
    ip->after_us = calloc((size_t)n, sizeof *ip->after_us);
    return ip->start_us && ip->lat_ms && ip->before_us && ip->after_us
               ? 0
               : cli_errorf(CLI_EXIT_FAIL, "bench: out of memory");
}

void
inproc_free(struct inproc *ip)
{
    free(ip->start_us);
    free(ip->lat_ms);
    free(ip->before_us);
    free(ip->after_us);
}

int
enqueue_timed(struct bench *b, long long i, int64_t *before, int64_t *after)
{
    char payload[64];
    skipq_error err = {0};
    int64_t t = now_us();

    snprintf(payload, sizeof payload, "{\"i\":%lld,\"t\":%lld}", i, (long long)t);
    if (skipq_enqueue(b->conn, KIND_NOOP, payload, NULL, NULL, &err) != SKIPQ_OK)
        return fail1(&err);
    if (before)
        *before = t;
    if (after)
        *after = now_us();
    return 0;
}

int
wait_handled(struct inproc *ip, long long n, int64_t cap_us)
{
    for (int64_t t0 = now_us(); atomic_load(&ip->handled) < n;) {
        if (interrupted)
            return cli_errorf(CLI_EXIT_FAIL, "bench: interrupted");
        if (now_us() - t0 > cap_us)
            return cli_errorf(CLI_EXIT_FAIL, "bench: only %lld of %lld jobs ran in time",
                              (long long)atomic_load(&ip->handled), n);
        sleep_us(1000);
    }
    return 0;
}
