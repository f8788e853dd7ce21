/*
 * metrics.c - the process-wide registry that the workers of one process
 * feed (skipq_metrics in skipq.h): per queue and kind, the jobs finished
 * by outcome, timed out and rescued, and histograms of run time and of
 * pickup delay; and, read from the attached workers at render time, the
 * gauges of running jobs, free slots and the connection.
 *
 * The registry outlives the workers: `skipq worker` replaces its worker on
 * SIGHUP and the new one feeds the same counters, so a reload resets
 * nothing. Counts are taken where the worker learns that a completion
 * committed (worker_complete.c), never when the handler returns, so they
 * equal the rows the table gained (test
 * worker_http.metrics_match_the_table_after_a_drain). One mutex guards it
 * all: taken once per completed job and per render, it is uncontended in
 * practice, and a worker without a registry never reaches it.
 */
#include "worker.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bucket bounds in seconds, ascending; +Inf is implied. */
static const double run_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,    2.5,
                                    5,     10,   30,    60,   120, 300,  600, 1800, 3600};
static const double pickup_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                       0.1,   0.25,   0.5,   1,    2.5,   5,
                                       10,    30,     60,    300,  900,   3600};
#define NRUN (sizeof run_bounds / sizeof *run_bounds)
#define NPICKUP (sizeof pickup_bounds / sizeof *pickup_bounds)
#define MAX_BUCKETS 18

typedef struct histogram {
    uint64_t bucket[MAX_BUCKETS + 1]; /* per bucket, not cumulative; last: +Inf */
    uint64_t count;
    double sum;
} histogram;

/* The outcomes, as the label says them (skipq__done_kind's order). */
static const char *const outcome_names[SKIPQ__DONE_N] = {
    [SKIPQ__DONE_SUCCEEDED] = "succeeded", [SKIPQ__DONE_FAILED] = "failed",
    [SKIPQ__DONE_RETRIED] = "retried",     [SKIPQ__DONE_CANCELLED] = "cancelled",
    [SKIPQ__DONE_SNOOZED] = "snoozed",
};

/* One (queue, kind). */
typedef struct series {
    char *queue, *kind;
    uint64_t done[SKIPQ__DONE_N];
    uint64_t timed_out;
    histogram run, pickup;
    struct series *next;
} series;

/* Rescues by kind (the rescue statement does not return the queue). */
typedef struct rescue_series {
    char *kind;
    uint64_t requeued, failed;
    struct rescue_series *next;
} rescue_series;

struct skipq_metrics {
    pthread_mutex_t mu;
    series *series; /* newest first; rendered sorted */
    rescue_series *rescues;
    skipq_worker **workers; /* attached and not yet freed */
    size_t nworkers, cap;
};

skipq_metrics *
skipq_metrics_new(void)
{
    skipq_metrics *m = calloc(1, sizeof *m);
    if (m)
        pthread_mutex_init(&m->mu, NULL);
    return m;
}

void
skipq_metrics_free(skipq_metrics *m)
{
    if (!m)
        return;
    for (series *s = m->series, *n; s; s = n) {
        n = s->next;
        free(s->queue);
        free(s->kind);
        free(s);
    }
    for (rescue_series *r = m->rescues, *n; r; r = n) {
        n = r->next;
        free(r->kind);
        free(r);
    }
    free(m->workers);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* ---- attaching workers ------------------------------------------------- */

void
skipq__metrics_detach(skipq_metrics *m, skipq_worker *w)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->nworkers; i++) {
        if (m->workers[i] == w) {
            m->workers[i] = m->workers[--m->nworkers];
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
}

void
skipq_worker_set_metrics(skipq_worker *w, skipq_metrics *m)
{
    skipq__metrics_detach(w->metrics, w);
    w->metrics = NULL;
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    if (m->nworkers == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 4;
        skipq_worker **nw = realloc(m->workers, cap * sizeof(skipq_worker *));
        if (!nw) { /* its gauges are left out; its counts still go in */
            pthread_mutex_unlock(&m->mu);
            w->metrics = m;
            return;
        }
        m->workers = nw;
        m->cap = cap;
    }
    m->workers[m->nworkers++] = w;
    pthread_mutex_unlock(&m->mu);
    w->metrics = m;
}

/* ---- counting (under m->mu) --------------------------------------------- */

static series *
find_series(skipq_metrics *m, const char *queue, const char *kind)
{
    for (series *s = m->series; s; s = s->next)
        if (strcmp(s->kind, kind) == 0 && strcmp(s->queue, queue) == 0)
            return s;
    series *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->queue = strdup(queue);
    s->kind = strdup(kind);
    if (!s->queue || !s->kind) {
        free(s->queue);
        free(s->kind);
        free(s);
        return NULL;
    }
    s->next = m->series;
    m->series = s;
    return s;
}

static void
observe(histogram *h, const double *bounds, size_t n, double v)
{
    size_t i = 0;
    while (i < n && v > bounds[i])
        i++;
    h->bucket[i]++;
    h->count++;
    h->sum += v;
}

void
skipq__metrics_note_done(skipq_metrics *m, const skipq_job *j)
{
    pthread_mutex_lock(&m->mu);
    series *s = find_series(m, j->queue, j->kind);
    if (s) {
        s->done[j->decided]++;
        if (j->timed_out)
            s->timed_out++;
        if (j->run_us > 0)
            observe(&s->run, run_bounds, NRUN, (double)j->run_us / 1e6);
    }
    pthread_mutex_unlock(&m->mu);
}

void
skipq__metrics_note_pickup(skipq_metrics *m, const char *queue, const char *kind,
                           double seconds)
{
    pthread_mutex_lock(&m->mu);
    series *s = find_series(m, queue, kind);
    if (s)
        observe(&s->pickup, pickup_bounds, NPICKUP, seconds < 0 ? 0 : seconds);
    pthread_mutex_unlock(&m->mu);
}

void
skipq__metrics_note_rescue(skipq_metrics *m, const char *kind, bool failed)
{
    rescue_series *r;

    pthread_mutex_lock(&m->mu);
    for (r = m->rescues; r && strcmp(r->kind, kind) != 0; r = r->next)
        ;
    if (!r && (r = calloc(1, sizeof *r)) != NULL) {
        if (!(r->kind = strdup(kind))) {
            free(r);
            r = NULL;
        } else {
            r->next = m->rescues;
            m->rescues = r;
        }
    }
    if (r && failed)
        r->failed++;
    else if (r)
        r->requeued++;
    pthread_mutex_unlock(&m->mu);
}

/* ---- rendering ------------------------------------------------------------- */

/* A label value: backslash, double quote and newline escaped, as the
 * text format asks. (cli/metrics_db.c applies the same rule: the command
 * links only the public API, so the two cannot share it.) */
static void
put_label(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fputc('\\', f), fputc(*v, f);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

static void
put_family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{queue="..",kind=".." (then more labels, or the closing brace) */
static void
put_qk(FILE *f, const char *name, const series *s)
{
    fprintf(f, "%s{queue=\"", name);
    put_label(f, s->queue);
    fputs("\",kind=\"", f);
    put_label(f, s->kind);
    fputc('"', f);
}

static void
put_histogram(FILE *f, const char *name, const series *s, const histogram *h,
              const double *bounds, size_t n)
{
    char bucket[96], sum[96], count[96];
    uint64_t cum = 0;

    snprintf(bucket, sizeof bucket, "%s_bucket", name);
    snprintf(sum, sizeof sum, "%s_sum", name);
    snprintf(count, sizeof count, "%s_count", name);
    for (size_t i = 0; i <= n; i++) {
        cum += h->bucket[i];
        put_qk(f, bucket, s);
        if (i < n)
            fprintf(f, ",le=\"%g\"} %" PRIu64 "\n", bounds[i], cum);
        else
            fprintf(f, ",le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    put_qk(f, sum, s);
    fprintf(f, "} %.9g\n", h->sum);
    put_qk(f, count, s);
    fprintf(f, "} %" PRIu64 "\n", h->count);
}

static int
series_cmp(const void *a, const void *b)
{
    const series *x = *(series *const *)a, *y = *(series *const *)b;
    int c = strcmp(x->queue, y->queue);
    return c ? c : strcmp(x->kind, y->kind);
}

/* The attached workers' gauges, summed over the process. */
static void
put_gauges(FILE *f, skipq_metrics *m)
{
    int64_t running = 0, free_slots = 0;
    int live = 0, connected = 0;

    for (size_t i = 0; i < m->nworkers; i++) {
        skipq_worker_health h;
        skipq_worker *w = m->workers[i];
        skipq_worker_health_get(w, &h);
        if (!h.started || h.ended)
            continue;
        int held = atomic_load(&w->gauge_held);
        running += held;
        if (!h.stopping && w->cfg->concurrency > held)
            free_slots += w->cfg->concurrency - held;
        live++;
        connected += h.connected != 0;
    }
    put_family(f, "skipq_process_running_jobs", "gauge",
               "Jobs the workers of this process hold (claimed, not yet completed).");
    fprintf(f, "skipq_process_running_jobs %" PRId64 "\n", running);
    put_family(f, "skipq_process_free_slots", "gauge",
               "Executors of this process free for a new job (0 while stopping).");
    fprintf(f, "skipq_process_free_slots %" PRId64 "\n", free_slots);
    put_family(f, "skipq_process_connected", "gauge",
               "1: every running worker of this process has its database connection.");
    fprintf(f, "skipq_process_connected %d\n", live > 0 && connected == live);
}

/* Write put_qk's families and the rescues from the sorted series. */
static void
put_counts(FILE *f, skipq_metrics *m, series **v, size_t n)
{
    put_family(f, "skipq_jobs_processed_total", "counter",
               "Jobs whose completion this process committed, by outcome (retried: "
               "failed with attempts left; snoozed: put back by the handler).");
    for (size_t i = 0; i < n; i++)
        for (int o = 0; o < SKIPQ__DONE_N; o++) {
            put_qk(f, "skipq_jobs_processed_total", v[i]);
            fprintf(f, ",outcome=\"%s\"} %" PRIu64 "\n", outcome_names[o], v[i]->done[o]);
        }
    put_family(f, "skipq_jobs_timed_out_total", "counter",
               "Jobs stopped at their timeout (also counted as failed or retried).");
    for (size_t i = 0; i < n; i++) {
        put_qk(f, "skipq_jobs_timed_out_total", v[i]);
        fprintf(f, "} %" PRIu64 "\n", v[i]->timed_out);
    }
    put_family(f, "skipq_jobs_rescued_total", "counter",
               "Running jobs of lost workers this process's rescuer put back (queued) or "
               "failed (attempts spent).");
    for (rescue_series *r = m->rescues; r; r = r->next) {
        fputs("skipq_jobs_rescued_total{kind=\"", f);
        put_label(f, r->kind);
        fprintf(f, "\",status=\"queued\"} %" PRIu64 "\n", r->requeued);
        fputs("skipq_jobs_rescued_total{kind=\"", f);
        put_label(f, r->kind);
        fprintf(f, "\",status=\"failed\"} %" PRIu64 "\n", r->failed);
    }
    put_family(f, "skipq_job_run_seconds", "histogram",
               "Time the handler ran, per job run to its end.");
    for (size_t i = 0; i < n; i++)
        put_histogram(f, "skipq_job_run_seconds", v[i], &v[i]->run, run_bounds, NRUN);
    put_family(f, "skipq_job_pickup_delay_seconds", "histogram",
               "From when a job became runnable (its run_at) to its claim.");
    for (size_t i = 0; i < n; i++)
        put_histogram(f, "skipq_job_pickup_delay_seconds", v[i], &v[i]->pickup,
                      pickup_bounds, NPICKUP);
}

char *
skipq_metrics_render(skipq_metrics *m, size_t *len_out)
{
    char *text = NULL;
    size_t len = 0, n = 0;
    series **v = NULL;
    FILE *f = open_memstream(&text, &len);

    if (!f)
        return NULL;
    pthread_mutex_lock(&m->mu);
    for (series *s = m->series; s; s = s->next)
        n++;
    v = calloc(n ? n : 1, sizeof(series *));
    if (v) {
        n = 0;
        for (series *s = m->series; s; s = s->next)
            v[n++] = s;
        qsort(v, n, sizeof(series *), series_cmp);
        put_counts(f, m, v, n);
        put_gauges(f, m);
    }
    pthread_mutex_unlock(&m->mu);
    bool ok = v && !ferror(f);
    free(v);
    if (fclose(f) != 0 || !ok) {
        free(text);
        return NULL;
    }
    if (len_out)
        *len_out = len;
    return text;
}
