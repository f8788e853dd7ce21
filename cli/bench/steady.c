/*
 * steady.c - the steady measurement: a producer at a fixed rate for a
 * while, the end-to-end latency and the worst stall.
 */
#include "bench.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * The worst stall: the longest time no handler started although a job
 * was waiting (committed and not yet started). Jobs in order of start;
 * waiting_since[k] is the earliest commit among jobs k.. (not yet started
 * when job k-1 started).
 */
static double
worst_stall_ms(const int64_t *commit, const int64_t *start, long long n)
{
    long long *ord = malloc((size_t)n * sizeof *ord);
    int64_t *minc = malloc((size_t)(n + 1) * sizeof *minc);
    double worst = 0;

    if (!ord || !minc)
        goto out;
    for (long long i = 0; i < n; i++)
        ord[i] = i;
    /* insertion sort is too slow for big n: sort indexes by start */
    for (long long gap = n / 2; gap > 0; gap /= 2)
        for (long long i = gap; i < n; i++)
            for (long long j = i; j >= gap && start[ord[j - gap]] > start[ord[j]];
                 j -= gap) {
                long long t = ord[j];
                ord[j] = ord[j - gap];
                ord[j - gap] = t;
            }
    minc[n] = INT64_MAX;
    for (long long k = n - 1; k >= 0; k--)
        minc[k] = commit[ord[k]] < minc[k + 1] ? commit[ord[k]] : minc[k + 1];
    for (long long k = 0; k + 1 < n; k++) {
        int64_t from = start[ord[k]] > minc[k + 1] ? start[ord[k]] : minc[k + 1];
        double gap = (double)(start[ord[k + 1]] - from) / 1000.0;
        if (gap > worst)
            worst = gap;
    }
out:
    free(ord);
    free(minc);
    return worst;
}

int
bench_steady(struct bench *b)
{
    long long n = (long long)(b->rate * (double)b->duration_ms / 1000.0);
    struct inproc ip = {0};
    struct wthread x = {0};
    struct result r;
    int64_t *before = NULL, *after = NULL;
    char cfgname[32];
    int rc;

    result_init(&r, "steady", "");
    if (n < 1)
        n = 1;
    before = calloc((size_t)n, sizeof *before);
    after = calloc((size_t)n, sizeof *after);
    if (!before || !after) {
        free(before);
        free(after);
        return cli_errorf(CLI_EXIT_FAIL, "bench: out of memory");
    }
    if ((rc = reset_queue(b)) != 0 || (rc = inproc_alloc(&ip, n)) != 0)
        goto out;
    if ((rc = inproc_start(b, timing_handler, &ip, NULL, &x)) != 0)
        goto out;
    int64_t t0 = now_us();
    /* Open loop: job i is due at t0 + i/rate, whatever the last took. */
    for (long long i = 0; i < n && rc == 0 && !interrupted; i++) {
        int64_t due = t0 + (int64_t)((double)i * 1e6 / b->rate);
        int64_t wait = due - now_us();
        if (wait > 0)
            sleep_us(wait);
        rc = enqueue_timed(b, i, &before[i], &after[i]);
    }
    double sent_s = (double)(now_us() - t0) / 1e6;
    if (rc == 0)
        rc = wait_handled(&ip, n, 60000000);
    if (rc == 0) {
        snprintf(cfgname, sizeof cfgname, "r%.0fc%d", b->rate, b->concurrency);
        result_init(&r, "steady", cfgname);
        r.jobs = n;
        r.seconds = sent_s;
        r.jobs_per_s = (double)n / sent_s;
        r.rate = b->rate;
        r.stall_ms = worst_stall_ms(after, ip.start_us, n);
        result_latencies(&r, ip.lat_ms, (size_t)n);
    }
out:;
    int rc2 = inproc_stop(&x);
    inproc_free(&ip);
    free(before);
    free(after);
    if (rc == 0)
        rc = rc2;
    return rc == 0 ? report(b, &r) : rc;
}
