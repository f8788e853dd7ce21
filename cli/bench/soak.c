/*
 * soak.c - the soak measurement (not in `all`): one worker's maximum
 * rate, then a producer at a fixed rate for minutes with retention on
 * (and the archive, with --archive-after), watching per window the rate,
 * the pickup latency, and the sizes of the table and of the archive.
 */
#include "bench.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- pickup latency: a histogram the handlers add to without a lock -------- */

/*
 * Microseconds in log-spaced buckets: one per value below 32, then 32 per
 * doubling, so a bucket's midpoint is within 1.6% of every sample in it,
 * well inside the 10% a window's p50 is judged by. Samples of 2^31 us
 * (36 minutes) and more share the last bucket.
 */
enum {
    HIST_SUB_BITS = 5,
    HIST_SUB = 1 << HIST_SUB_BITS,
    HIST_TOP = 30, /* the highest doubling with buckets of its own */
    HIST_N = HIST_SUB + (HIST_TOP - HIST_SUB_BITS + 1) * HIST_SUB,
};

struct hist {
    atomic_llong n[HIST_N];
};

static size_t
hist_bucket(int64_t us)
{
    int e = HIST_SUB_BITS;

    if (us < HIST_SUB)
        return us < 0 ? 0 : (size_t)us;
    while (e <= HIST_TOP && (us >> (e + 1)) != 0)
        e++;
    if (e > HIST_TOP)
        return HIST_N - 1;
    return (size_t)HIST_SUB + (size_t)(e - HIST_SUB_BITS) * HIST_SUB +
           (size_t)((us >> (e - HIST_SUB_BITS)) - HIST_SUB);
}

/* The middle of bucket i, in ms. */
static double
hist_mid_ms(size_t i)
{
    if (i < HIST_SUB)
        return (double)i / 1000.0;
    size_t k = i - HIST_SUB;
    int shift = (int)(k / HIST_SUB);
    double lower = (double)((HIST_SUB + (int64_t)(k % HIST_SUB)) << shift);
    return (lower + ((double)((int64_t)1 << shift) - 1) / 2.0) / 1000.0;
}

/* Any handler thread. */
static void
hist_add(struct hist *h, int64_t us)
{
    atomic_fetch_add_explicit(&h->n[hist_bucket(us)], 1, memory_order_relaxed);
}

/* Empties h and gives the p50 and p99 of what it held: the ceil(p% x n)-th
 * smallest, as pct() takes them, or NAN when it held none. A sample added
 * while it runs counts in this window or the next, never in both. */
static void
hist_take(struct hist *h, double *p50, double *p99)
{
    long long c[HIST_N], n = 0, seen = 0;
    double want[2] = {0.50, 0.99}, *out[2] = {p50, p99};
    int k = 0;

    for (size_t i = 0; i < HIST_N; i++)
        n += c[i] = atomic_exchange_explicit(&h->n[i], 0, memory_order_relaxed);
    *p50 = *p99 = NAN;
    for (size_t i = 0; i < HIST_N && n > 0 && k < 2; i++) {
        seen += c[i];
        while (k < 2 && (double)seen >= ceil(want[k] * (double)n)) {
            *out[k] = hist_mid_ms(i);
            k++;
        }
    }
}

/* ---- soak: a producer at a fixed rate for minutes, retention on ------------- */

struct soak_count {
    atomic_llong handled;
    atomic_llong first_us; /* when the first job started, 0 before */
    struct hist pickup;    /* the producer's jobs: handler start - payload "t" */
};

static skipq_outcome
soak_handler(skipq_job *job, void *userdata)
{
    int64_t t = now_us();
    struct soak_count *c = userdata;
    long long zero = 0, t0;

    if (atomic_load(&c->first_us) == 0)
        atomic_compare_exchange_strong(&c->first_us, &zero, (long long)t);
    /* the jobs that measured the maximum carry no "t" */
    if (payload_int(skipq_job_payload_text(job), "\"t\"", &t0))
        hist_add(&c->pickup, t - (int64_t)t0);
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

/* The archive: whether skipq.jobs_done exists (a schema before it has
 * none), its partitions (the leaves), and its size with theirs, tables
 * and indexes, kB. */
static int
archive_sizes(struct bench *b, int *exists, long long *kb, long long *parts)
{
    PGresult *res;
    int rc = sqlp(b->pg, &res,
                  "SELECT (to_regclass('skipq.jobs_done') IS NOT NULL)::int,"
                  " coalesce(sum(pg_total_relation_size(relid)), 0)::int8 / 1024,"
                  " count(*) FILTER (WHERE isleaf)"
                  " FROM pg_partition_tree(to_regclass('skipq.jobs_done'))",
                  0, NULL);
    if (rc != 0)
        return rc;
    *exists = atoi(PQgetvalue(res, 0, 0));
    *kb = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    *parts = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    PQclear(res);
    return 0;
}

/* The age of the oldest succeeded row, s: retention keeps up while it
 * stays near --retention, plus one partition's width with the archive
 * (a partition is dropped only once all of it is older). The archive has
 * no index on updated_at: only its oldest partition (the lowest bounds in
 * skipq.jobs_done_partitions) is read, not every row of every one. */
static long long
oldest_succeeded(struct bench *b, int archive)
{
    if (!archive)
        return sql_int(b->pg, "SELECT coalesce(extract(epoch FROM now() -"
                              " min(updated_at))::int8, 0) FROM skipq.jobs"
                              " WHERE status" SQL_EQ "'succeeded'");
    return sql_int(b->pg, "SELECT coalesce(extract(epoch FROM now() - min(m))::int8, 0)"
                          " FROM (SELECT min(updated_at) m FROM skipq.jobs"
                          " WHERE status" SQL_EQ "'succeeded'"
                          " UNION ALL SELECT min(updated_at) FROM skipq.jobs_done"
                          " WHERE status" SQL_EQ "'succeeded' AND updated_at <"
                          " (SELECT min(hi) FROM skipq.jobs_done_partitions)) o");
}

/* The worker's vacuum_interval and archive_partition: the options, else
 * the library's defaults (-1 when out of memory). */
static void
effective_settings(const struct bench *b, int64_t *vacuum_ms, int64_t *partition_ms)
{
    skipq_config *cfg = skipq_config_new();
    *vacuum_ms = b->vacuum_ms >= 0 ? b->vacuum_ms
                 : cfg             ? skipq_config_vacuum_interval(cfg)
                                   : -1;
    *partition_ms = b->archive_partition_ms >= 0 ? b->archive_partition_ms
                    : cfg                        ? skipq_config_archive_partition(cfg)
                                                 : -1;
    skipq_config_free(cfg);
}

/* skipq_enqueue_batch of n no-op jobs in batches of at most SOAK_CHUNK
 * (specs holds that many), each job's payload {"t": the time just before
 * its batch is sent}, the same text for the whole batch. */
enum { SOAK_CHUNK = 2000, SOAK_TICK_US = 10000 };

static int
soak_enqueue(struct bench *b, long long n, skipq_job_spec *specs)
{
    skipq_error err = {0};
    char payload[32];

    while (n > 0) {
        size_t m = (size_t)(n < SOAK_CHUNK ? n : SOAK_CHUNK);
        snprintf(payload, sizeof payload, "{\"t\":%lld}", (long long)now_us());
        for (size_t i = 0; i < m; i++)
            specs[i] = (skipq_job_spec){KIND_NOOP, payload};
        if (skipq_enqueue_batch(b->conn, specs, m, NULL, &err) != SKIPQ_OK)
            return fail1(&err);
        n -= (long long)m;
    }
    return 0;
}

/*
 * One worker (in this process, concurrency C, retention --retention,
 * default 30s, and the archive with --archive-after), idle, is given
 * --jobs jobs at once (in COPYs of 10,000, far faster than it drains),
 * and its maximum rate is taken from the first job's start to the last
 * one's; then a producer enqueues at --rate (default 80% of that maximum)
 * for --duration (default 10 minutes), in a batch every 10 ms. Per window
 * (--windows, default 10): the jobs handled per second, the pickup
 * latency's p50 and p99, the backlog, the sizes of the table, its indexes
 * and the archive (progress on stderr). Reports the first and last
 * window's rates and p50s, the p50's largest drift from the first, and
 * the sizes at the middle and the end: with retention on they should
 * plateau.
 */
int
bench_soak(struct bench *b)
{
    const long long fill = b->jobs;
    const int windows = b->windows;
    int64_t duration_ms = b->duration_set ? b->duration_ms : 600000;
    struct inproc_keep keep = {b->retention_ms, b->archive_after_ms,
                               b->archive_partition_ms};
    struct soak_count *count = calloc(1, sizeof *count); /* its histogram: 7 kB */
    struct wthread x = {0};
    struct result r;
    skipq_job_spec *specs = calloc(SOAK_CHUNK, sizeof *specs);
    double rate = b->rate, max_jps, p50, p99;
    char cfgname[48];
    int rc, k;

    result_init(&r, "soak", "");
    if (!specs || !count) {
        rc = cli_errorf(CLI_EXIT_FAIL, "bench: out of memory");
        goto out;
    }
    if ((rc = reset_queue(b)) != 0 ||
        (rc = inproc_start(b, soak_handler, count, &keep, &x)) != 0 ||
        (rc = fill_batch(b, fill, KIND_NOOP, NULL)) != 0)
        goto out;
    int64_t t0 = now_us();
    while (atomic_load(&count->handled) < fill && !interrupted) {
        if (now_us() - t0 > 120000000) {
            rc = cli_errorf(CLI_EXIT_FAIL,
                            "bench: soak: %lld jobs did not drain in 2 minutes", fill);
            goto out;
        }
        sleep_us(1000);
    }
    max_jps = (double)fill / ((double)(now_us() - atomic_load(&count->first_us)) / 1e6);
    if (!b->rate_set)
        rate = 0.8 * max_jps;
    if (!b->ctx->quiet) {
        int64_t vacuum_ms, partition_ms;
        effective_settings(b, &vacuum_ms, &partition_ms);
        fprintf(stderr,
                "skipq: bench: soak: max %.0f jobs/s; producing %.0f jobs/s for %llds "
                "in %d windows, retention %llds, vacuum_interval %lldms",
                max_jps, rate, (long long)(duration_ms / 1000), windows,
                (long long)(b->retention_ms / 1000), (long long)vacuum_ms);
        if (b->archive_after_ms > 0)
            fprintf(stderr, ", archive_after %llds, archive_partition %llds",
                    (long long)(b->archive_after_ms / 1000),
                    (long long)(partition_ms / 1000));
        fputc('\n', stderr);
    }

    int64_t start = now_us(), window_us = duration_ms * 1000 / windows;
    long long sent = 0, win_h = atomic_load(&count->handled);
    int64_t win_t = start;
    int win = 0, mid = (windows > 1 ? windows / 2 : 1) - 1;
    hist_take(&count->pickup, &p50, &p99);
    r.lat_p50_drift = 0;
    while (win < windows && !interrupted) {
        int64_t now = now_us();
        long long due = (long long)(rate * (double)(now - start) / 1e6);
        if (due > sent) {
            if ((rc = soak_enqueue(b, due - sent, specs)) != 0)
                goto out;
            sent = due;
        }
        if (now - win_t >= window_us) {
            long long h = atomic_load(&count->handled), tkb, ikb, akb, aparts;
            double jps = (double)(h - win_h) / ((double)(now - win_t) / 1e6);
            int archive;
            hist_take(&count->pickup, &p50, &p99);
            if ((rc = jobs_sizes(b, &tkb, &ikb)) != 0 ||
                (rc = archive_sizes(b, &archive, &akb, &aparts)) != 0)
                goto out;
            long long backlog = sql_int(b->pg, "SELECT count(*) FROM skipq.jobs"
                                               " WHERE status" SQL_EQ "'queued'");
            long long oldest = oldest_succeeded(b, archive);
            if (!b->ctx->quiet) {
                fprintf(stderr,
                        "skipq: bench: soak: window %d: %.0f jobs/s, pickup p50/p99 "
                        "%.2f/%.2f ms, backlog %lld, table %lld kB, indexes %lld kB, ",
                        win + 1, jps, p50, p99, backlog, tkb, ikb);
                if (archive)
                    fprintf(stderr, "archive %lld kB in %lld partition%s, ", akb, aparts,
                            aparts == 1 ? "" : "s");
                else
                    fprintf(stderr, "no archive table, ");
                fprintf(stderr, "oldest succeeded %llds\n", oldest);
            }
            if (win == 0)
                r.first_jps = jps;
            r.last_jps = jps;
            /* the first window with pickups is the reference */
            if (isnan(r.lat_p50_first))
                r.lat_p50_first = p50;
            else if (!isnan(p50) && r.lat_p50_first > 0 &&
                     fabs(p50 / r.lat_p50_first - 1) > r.lat_p50_drift)
                r.lat_p50_drift = fabs(p50 / r.lat_p50_first - 1);
            if (!isnan(p50))
                r.lat_p50_last = p50;
            if (win == mid) {
                r.table_kb_mid = tkb;
                r.index_kb_mid = ikb;
                r.archive_kb_mid = akb;
                r.archive_parts_mid = aparts;
            }
            r.table_kb_end = tkb;
            r.index_kb_end = ikb;
            r.archive_kb_end = akb;
            r.archive_parts_end = aparts;
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
    if (isnan(r.lat_p50_first))
        r.lat_p50_drift = NAN;
    k = snprintf(cfgname, sizeof cfgname, "r%.0fc%d", rate, b->concurrency);
    if (b->vacuum_ms >= 0) /* not the default: say so */
        k += snprintf(cfgname + k, sizeof cfgname - (size_t)k, "v%lld",
                      (long long)b->vacuum_ms);
    if (b->archive_after_ms > 0) /* the archive on */
        snprintf(cfgname + k, sizeof cfgname - (size_t)k, "a%lld",
                 (long long)b->archive_after_ms);
    snprintf(r.config, sizeof r.config, "%s", cfgname);
    r.jobs = sent;
    r.seconds = (double)(now_us() - start) / 1e6;
    r.jobs_per_s = (double)sent / r.seconds;
    r.rate = rate;
    r.max_jps = max_jps;
out:;
    int rc2 = inproc_stop(&x);
    free(specs);
    free(count);
    if (rc == 0)
        rc = rc2;
    return rc == 0 ? report(b, &r) : rc;
}
