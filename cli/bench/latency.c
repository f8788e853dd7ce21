/*
 * latency.c - the latency measurement: an idle worker, one job every
 * 20 ms, the time from the enqueue to the handler's start.
 */
#include "bench.h"

#include <stdio.h>
#include <string.h>

#define WARMUP_JOBS 5
#define LAT_GAP_MS 20

int
bench_latency(struct bench *b)
{
    long long n = b->latency_jobs;
    struct inproc ip = {0};
    struct wthread x = {0};
    struct result r;
    char cfgname[16];
    int rc;

    result_init(&r, "latency", "");
    if ((rc = reset_queue(b)) != 0 || (rc = inproc_alloc(&ip, n)) != 0)
        goto out;
    if ((rc = inproc_start(b, timing_handler, &ip, NULL, &x)) != 0)
        goto out;
    for (int i = 0; i < WARMUP_JOBS && rc == 0; i++) {
        rc = enqueue_timed(b, -1, NULL, NULL);
        sleep_us(LAT_GAP_MS * 1000);
    }
    for (long long i = 0; i < n && rc == 0 && !interrupted; i++) {
        rc = enqueue_timed(b, i, &ip.before_us[i], &ip.after_us[i]);
        sleep_us(LAT_GAP_MS * 1000);
    }
    if (rc == 0)
        rc = wait_handled(&ip, n, 30000000);
    if (rc == 0) {
        snprintf(cfgname, sizeof cfgname, "c%d", b->concurrency);
        result_init(&r, "latency", cfgname);
        r.jobs = n;
        /* From before the call, as the peer harness times it; then from
         * the call's return (its commit; a handler that started before the
         * reply was read counts 0: the NOTIFY leaves in the same round
         * trip, right after the commit), and the call itself. ip.lat_ms is the scratch array for each. */
        struct result c;
        result_init(&c, "", "");
        for (long long i = 0; i < n; i++)
            ip.lat_ms[i] = (double)(ip.after_us[i] - ip.before_us[i]) / 1000.0;
        result_latencies(&c, ip.lat_ms, (size_t)n);
        r.enqueue_p50 = c.p50;
        r.before_reply = 0;
        for (long long i = 0; i < n; i++) {
            double d = (double)(ip.start_us[i] - ip.after_us[i]) / 1000.0;
            ip.lat_ms[i] = d > 0 ? d : 0;
            r.before_reply += d < 0;
        }
        result_latencies(&c, ip.lat_ms, (size_t)n);
        r.commit_p50 = c.p50;
        r.commit_p99 = c.p99;
        for (long long i = 0; i < n; i++)
            ip.lat_ms[i] = (double)(ip.start_us[i] - ip.before_us[i]) / 1000.0;
        result_latencies(&r, ip.lat_ms, (size_t)n);
    }
out:;
    int rc2 = inproc_stop(&x);
    inproc_free(&ip);
    if (rc == 0)
        rc = rc2;
    return rc == 0 ? report(b, &r) : rc;
}
