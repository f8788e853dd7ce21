/*
 * soak.c - the soak measurement (not in `all`): one worker's maximum
 * rate, then a producer at a fixed rate for minutes with retention on,
 * watching the rate and the table's size.
 */
#include "bench.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- soak: a producer at a fixed rate for minutes, retention on ------------- */

struct soak_count {
    atomic_llong handled;
    atomic_llong first_us; /* when the first job started, 0 before */
};

static skipq_outcome
soak_handler(skipq_job *job, void *userdata)
{
    struct soak_count *c = userdata;
    long long zero = 0;
    (void)job;
    if (atomic_load(&c->first_us) == 0)
        atomic_compare_exchange_strong(&c->first_us, &zero, (long long)now_us());
    atomic_fetch_add(&c->handled, 1);
    return SKIPQ_JOB_OK;
}

/* Table and index sizes of skipq.jobs, kB. */
static int
jobs_sizes(struct bench *b, long long *table_kb, long long *index_kb)
{
    *table_kb = sql_int(b->pg, "SELECT pg_table_size('skipq.jobs'::regclass) / 1024");
    *index_kb = sql_int(b->pg, "SELECT pg_indexes_size('skipq.jobs'::regclass) / 1024");
    return *table_kb < 0 || *index_kb < 0 ? CLI_EXIT_FAIL : 0;
}

/* The workers' vacuum_interval: --vacuum-interval, else the library's
 * default (-1 when out of memory). */
static int64_t
effective_vacuum_ms(const struct bench *b)
{
    if (b->vacuum_ms >= 0)
        return b->vacuum_ms;
    skipq_config *cfg = skipq_config_new();
    int64_t ms = cfg ? skipq_config_vacuum_interval(cfg) : -1;
    skipq_config_free(cfg);
    return ms;
}

/* skipq_enqueue_batch of n no-op jobs from spec/payload buffers of SOAK_CHUNK. */
enum { SOAK_CHUNK = 2000, SOAK_TICK_US = 10000, SOAK_WINDOWS = 10 };

static int
soak_enqueue(struct bench *b, long long n, long long first, skipq_job_spec *specs,
             char *payloads)
{
    skipq_error err = {0};
    while (n > 0) {
        size_t m = (size_t)(n < SOAK_CHUNK ? n : SOAK_CHUNK);
        for (size_t i = 0; i < m; i++) {
            snprintf(payloads + i * 24, 24, "{\"i\":%lld}", first + (long long)i);
            specs[i] = (skipq_job_spec){KIND_NOOP, payloads + i * 24};
        }
        if (skipq_enqueue_batch(b->conn, specs, m, NULL, &err) != SKIPQ_OK)
            return fail1(&err);
        n -= (long long)m;
        first += (long long)m;
    }
    return 0;
}

/*
 * One worker (in this process, concurrency C, retention --retention,
 * default 30s), idle, is given --jobs jobs at once (in COPYs of 10,000,
 * far faster than it drains), and its maximum rate is taken from the
 * first job's start to the last one's;
 * then a producer enqueues at --rate (default 80% of that maximum) for
 * --duration (default 10 minutes), in a batch every 10 ms. Ten windows:
 * the jobs handled per second in each, the backlog, and the table's and
 * its indexes' sizes (progress on stderr). Reports the first and last
 * window's rates and the sizes at the middle and the end: with retention
 * on they should plateau.
 */
int
bench_soak(struct bench *b)
{
    const long long fill = b->jobs;
    int64_t duration_ms = b->duration_set ? b->duration_ms : 600000;
    struct soak_count count = {0};
    struct wthread x = {0};
    struct result r;
    skipq_job_spec *specs = calloc(SOAK_CHUNK, sizeof *specs);
    char *payloads = malloc((size_t)SOAK_CHUNK * 24);
    double rate = b->rate, max_jps;
    char cfgname[48];
    int rc;

    result_init(&r, "soak", "");
    if (!specs || !payloads) {
        rc = cli_errorf(CLI_EXIT_FAIL, "bench: out of memory");
        goto out;
    }
    if ((rc = reset_queue(b)) != 0 ||
        (rc = inproc_start(b, soak_handler, &count, b->retention_ms, &x)) != 0 ||
        (rc = fill_batch(b, fill, KIND_NOOP, NULL)) != 0)
        goto out;
    int64_t t0 = now_us();
    while (atomic_load(&count.handled) < fill && !interrupted) {
        if (now_us() - t0 > 120000000) {
            rc = cli_errorf(CLI_EXIT_FAIL,
                            "bench: soak: %lld jobs did not drain in 2 minutes", fill);
            goto out;
        }
        sleep_us(1000);
    }
    max_jps = (double)fill / ((double)(now_us() - atomic_load(&count.first_us)) / 1e6);
    if (!b->rate_set)
        rate = 0.8 * max_jps;
    if (!b->ctx->quiet)
        fprintf(stderr,
                "skipq: bench: soak: max %.0f jobs/s; producing %.0f jobs/s for %llds, "
                "retention %llds, vacuum_interval %lldms\n",
                max_jps, rate, (long long)(duration_ms / 1000),
                (long long)(b->retention_ms / 1000), (long long)effective_vacuum_ms(b));

    int64_t start = now_us(), window_us = duration_ms * 1000 / SOAK_WINDOWS;
    long long sent = 0, base = fill, win_h = atomic_load(&count.handled);
    int64_t win_t = start;
    int win = 0;
    while (win < SOAK_WINDOWS && !interrupted) {
        int64_t now = now_us();
        long long due = (long long)(rate * (double)(now - start) / 1e6);
        if (due > sent) {
            if ((rc = soak_enqueue(b, due - sent, base + sent, specs, payloads)) != 0)
                goto out;
            sent = due;
        }
        if (now - win_t >= window_us) {
            long long h = atomic_load(&count.handled), tkb, ikb;
            double jps = (double)(h - win_h) / ((double)(now - win_t) / 1e6);
            if ((rc = jobs_sizes(b, &tkb, &ikb)) != 0)
                goto out;
            long long backlog = sql_int(b->pg, "SELECT count(*) FROM skipq.jobs"
                                               " WHERE status" SQL_EQ "'queued'");
            /* retention keeps up while this stays near --retention */
            long long oldest = sql_int(b->pg, "SELECT coalesce(extract(epoch FROM now() -"
                                              " min(updated_at))::int8, 0) FROM skipq.jobs"
                                              " WHERE status" SQL_EQ "'succeeded'");
            if (!b->ctx->quiet)
                fprintf(stderr,
                        "skipq: bench: soak: window %d: %.0f jobs/s, backlog %lld, "
                        "table %lld kB, indexes %lld kB, oldest succeeded %llds\n",
                        win + 1, jps, backlog, tkb, ikb, oldest);
            if (win == 0)
                r.first_jps = jps;
            r.last_jps = jps;
            if (win == SOAK_WINDOWS / 2 - 1) {
                r.table_kb_mid = tkb;
                r.index_kb_mid = ikb;
            }
            r.table_kb_end = tkb;
            r.index_kb_end = ikb;
            r.backlog = backlog;
            r.oldest_finished_s = oldest;
            win_h = h;
            win_t = now;
            win++;
        }
        int64_t next = now_us();
        if (SOAK_TICK_US > next - now)
            sleep_us(SOAK_TICK_US - (next - now));
    }
    if (interrupted) {
        rc = cli_errorf(CLI_EXIT_FAIL, "bench: interrupted");
        goto out;
    }
    if (b->vacuum_ms >= 0) /* not the default: say so */
        snprintf(cfgname, sizeof cfgname, "r%.0fc%dv%lld", rate, b->concurrency,
                 (long long)b->vacuum_ms);
    else
        snprintf(cfgname, sizeof cfgname, "r%.0fc%d", rate, b->concurrency);
    snprintf(r.config, sizeof r.config, "%s", cfgname);
    r.jobs = sent;
    r.seconds = (double)(now_us() - start) / 1e6;
    r.jobs_per_s = (double)sent / r.seconds;
    r.rate = rate;
    r.max_jps = max_jps;
out:;
    int rc2 = inproc_stop(&x);
    free(specs);
    free(payloads);
    if (rc == 0)
        rc = rc2;
    return rc == 0 ? report(b, &r) : rc;
}
