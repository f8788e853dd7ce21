/*
 * report.c - the results of `skipq bench`: percentiles, one JSON line per
 * measurement as it ends (--json), and the table printed at the end.
 */
#include "bench.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The peer harness's percentile: the ceil(p% * n)-th smallest. */
double
pct(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return NAN;
    double k = ceil(p / 100.0 * (double)n) - 1;
    if (k < 0)
        k = 0;
    if (k > (double)(n - 1))
        k = (double)(n - 1);
    return sorted[(size_t)k];
}

void
result_init(struct result *r, const char *metric, const char *config)
{
    memset(r, 0, sizeof *r);
    snprintf(r->metric, sizeof r->metric, "%s", metric);
    snprintf(r->config, sizeof r->config, "%s", config);
    r->seconds = r->jobs_per_s = r->p50 = r->p95 = r->p99 = r->max = NAN;
    r->cpu_s = r->claim_p50 = r->claim_p99 = r->stall_ms = r->rate = NAN;
    r->max_jps = r->first_jps = r->last_jps = r->ref_jps = NAN;
    r->fork_jps = NAN;
    r->lat_p50_first = r->lat_p50_last = r->lat_p50_drift = NAN;
    r->commit_p50 = r->commit_p99 = r->enqueue_p50 = NAN;
    r->before_reply = -1;
    r->table_kb_mid = r->table_kb_end = r->index_kb_mid = r->index_kb_end = -1;
    r->jobs = r->backlog = r->oldest_finished_s = -1;
    r->archive_kb_mid = r->archive_kb_end = r->archive_parts_mid = r->archive_parts_end =
        -1;
    r->max_rss_kb = -1;
    r->claim_uses_index = -1;
}

void
result_latencies(struct result *r, double *ms, size_t n)
{
    qsort(ms, n, sizeof *ms, cmp_double);
    r->p50 = pct(ms, n, 50);
    r->p95 = pct(ms, n, 95);
    r->p99 = pct(ms, n, 99);
    r->max = n ? ms[n - 1] : NAN;
}

static void
json_add_num(json_object *o, const char *key, double v)
{
    char text[48];

    if (!isfinite(v))
        return;
    /* six significant digits, serialized as printed: json-c's own %.17g
     * shows 0.87 as 0.87000000000000002, and a fixed two decimals showed
     * a 4 ms measurement as 0.00 seconds */
    snprintf(text, sizeof text, "%.6g", v);
    json_object_object_add(o, key, json_object_new_double_s(strtod(text, NULL), text));
}

static void
json_add_int(json_object *o, const char *key, long long v)
{
    if (v >= 0)
        json_object_object_add(o, key, json_object_new_int64(v));
}

/* Keep r, and with --json print it at once so a later failure loses
 * nothing. Returns 0, or 1 when out of memory. */
int
report(struct bench *b, const struct result *r)
{
    struct result *n = realloc(b->res, (b->nres + 1) * sizeof *n);
    if (!n)
        return 1;
    b->res = n;
    b->res[b->nres++] = *r;
    if (!b->json) {
        if (!b->ctx->quiet)
            fprintf(stderr, "skipq: bench: %s %s done\n", r->metric, r->config);
        return 0;
    }
    json_object *o = json_object_new_object();
    if (!o)
        return 1;
    json_object_object_add(o, "system", json_object_new_string("skipq"));
    json_object_object_add(o, "version", json_object_new_string(skipq_version()));
    json_object_object_add(o, "config", json_object_new_string(r->config));
    json_object_object_add(o, "metric", json_object_new_string(r->metric));
    json_add_int(o, "jobs", r->jobs);
    json_add_num(o, "seconds", r->seconds);
    json_add_num(o, "jobs_per_s", r->jobs_per_s);
    json_add_num(o, "p50_ms", r->p50);
    json_add_num(o, "p95_ms", r->p95);
    json_add_num(o, "p99_ms", r->p99);
    json_add_num(o, "max_ms", r->max);
    json_add_int(o, "max_rss_kb", r->max_rss_kb);
    json_add_num(o, "cpu_s", r->cpu_s);
    json_add_int(o, "backlog", r->backlog);
    json_add_num(o, "claim_p50_ms", r->claim_p50);
    json_add_num(o, "claim_p99_ms", r->claim_p99);
    if (r->claim_uses_index >= 0)
        json_object_object_add(o, "claim_uses_index",
                               json_object_new_boolean(r->claim_uses_index));
    json_add_num(o, "worst_stall_ms", r->stall_ms);
    json_add_num(o, "from_commit_p50_ms", r->commit_p50);
    json_add_num(o, "from_commit_p99_ms", r->commit_p99);
    json_add_num(o, "enqueue_p50_ms", r->enqueue_p50);
    json_add_int(o, "from_commit_before_reply", r->before_reply);
    json_add_num(o, "rate", r->rate);
    json_add_num(o, "insert_jobs_per_s", r->ref_jps);
    json_add_num(o, "fork_jobs_per_s", r->fork_jps);
    json_add_num(o, "max_jobs_per_s", r->max_jps);
    json_add_num(o, "first_window_jobs_per_s", r->first_jps);
    json_add_num(o, "last_window_jobs_per_s", r->last_jps);
    json_add_int(o, "table_kb_mid", r->table_kb_mid);
    json_add_int(o, "table_kb_end", r->table_kb_end);
    json_add_int(o, "indexes_kb_mid", r->index_kb_mid);
    json_add_int(o, "indexes_kb_end", r->index_kb_end);
    json_add_int(o, "oldest_finished_s", r->oldest_finished_s);
    json_add_int(o, "archive_kb_mid", r->archive_kb_mid);
    json_add_int(o, "archive_kb_end", r->archive_kb_end);
    json_add_int(o, "archive_partitions_mid", r->archive_parts_mid);
    json_add_int(o, "archive_partitions_end", r->archive_parts_end);
    json_add_num(o, "latency_p50_first_ms", r->lat_p50_first);
    json_add_num(o, "latency_p50_last_ms", r->lat_p50_last);
    json_add_num(o, "latency_p50_max_drift", r->lat_p50_drift);
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    fflush(stdout);
    json_object_put(o);
    return 0;
}

static void
fmt_num(char *buf, size_t n, double v, int digits)
{
    if (isnan(v))
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, "%.*f", digits, v);
}

void
print_table(const struct bench *b)
{
    struct cli_table t;
    static const char *const head[] = {"metric", "config", "jobs",   "seconds",
                                       "jobs/s", "p50 ms", "p95 ms", "p99 ms",
                                       "max ms", "cpu s",  "rss kB", "notes"};
    if (cli_table_init(&t, 12) != 0 || cli_table_add(&t, head) != 0)
        goto out;
    for (size_t i = 0; i < b->nres; i++) {
        const struct result *r = &b->res[i];
        char c[11][48], notes[160] = "";
        const char *cells[12];
        size_t k = 0;

        if (r->jobs >= 0)
            snprintf(c[0], sizeof c[0], "%lld", r->jobs);
        else
            snprintf(c[0], sizeof c[0], "-");
        fmt_num(c[1], sizeof c[1], r->seconds, 2);
        fmt_num(c[2], sizeof c[2], r->jobs_per_s, 0);
        fmt_num(c[3], sizeof c[3], r->p50, 2);
        fmt_num(c[4], sizeof c[4], r->p95, 2);
        fmt_num(c[5], sizeof c[5], r->p99, 2);
        fmt_num(c[6], sizeof c[6], r->max, 2);
        fmt_num(c[7], sizeof c[7], r->cpu_s, 2);
        if (r->max_rss_kb >= 0)
            snprintf(c[8], sizeof c[8], "%ld", r->max_rss_kb);
        else
            snprintf(c[8], sizeof c[8], "-");
        if (r->backlog >= 0 && r->claim_uses_index >= 0) /* deep */
            k += (size_t)snprintf(notes + k, sizeof notes - k,
                                  "backlog %lld, claim p50/p99 %.2f/%.2f ms%s", r->backlog,
                                  r->claim_p50, r->claim_p99,
                                  r->claim_uses_index == 1 ? ", index scan"
                                                           : ", NO claim index");
        else if (r->backlog >= 0) /* soak */
            k += (size_t)snprintf(notes + k, sizeof notes - k,
                                  "backlog %lld, first/last window %.0f/%.0f jobs/s,"
                                  " pickup p50 %.2f/%.2f ms (drift %.1f%%),"
                                  " archive %lld kB",
                                  r->backlog, r->first_jps, r->last_jps, r->lat_p50_first,
                                  r->lat_p50_last, r->lat_p50_drift * 100,
                                  r->archive_kb_end);
        if (k >= sizeof notes)
            k = sizeof notes - 1;
        if (!isnan(r->stall_ms))
            k += (size_t)snprintf(notes + k, sizeof notes - k,
                                  "rate %.0f/s, worst stall %.1f ms", r->rate, r->stall_ms);
        if (k >= sizeof notes)
            k = sizeof notes - 1;
        if (!isnan(r->ref_jps))
            k += (size_t)snprintf(notes + k, sizeof notes - k,
                                  "raw INSERT %.0f jobs/s, interleaved: %.2fx", r->ref_jps,
                                  r->jobs_per_s / r->ref_jps);
        if (k >= sizeof notes)
            k = sizeof notes - 1;
        if (!isnan(r->fork_jps))
            k += (size_t)snprintf(notes + k, sizeof notes - k,
                                  "fork per job %.0f jobs/s: %.1fx", r->fork_jps,
                                  r->jobs_per_s / r->fork_jps);
        if (k >= sizeof notes)
            k = sizeof notes - 1;
        if (!isnan(r->commit_p50))
            snprintf(notes + k, sizeof notes - k,
                     "from commit p50/p99 %.2f/%.2f ms (%lld before the reply);"
                     " enqueue p50 %.2f ms",
                     r->commit_p50, r->commit_p99, r->before_reply, r->enqueue_p50);
        cells[0] = r->metric;
        cells[1] = r->config;
        for (int j = 0; j < 9; j++)
            cells[2 + j] = c[j];
        cells[11] = notes;
        if (cli_table_add(&t, cells) != 0)
            goto out;
    }
    cli_table_print(&t, 0x7fcu);
out:
    cli_table_free(&t);
}
