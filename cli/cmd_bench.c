/*
 * cmd_bench.c - `skipq bench`: how fast is skipq on this database?
 *
 * Creates a throwaway database (skipq_bench_<pid>) on the server of the
 * configured URL, migrates it, runs the measurements asked for and drops
 * it again, also after an error or Ctrl-C. Each measurement is one row of
 * the human table, or one JSON object per line with --json, in the shape
 * of the peer harness (../shared/bench/peers) so bench/compare.sh can put
 * them side by side.
 *
 * Drains run in separate worker processes (this binary re-executed as the
 * hidden `bench __worker`), so their CPU time and peak RSS are the
 * worker's alone and not the benchmark's buffers. They count handled jobs
 * in a shared memory page the benchmark polls, instead of polling the
 * table, which would take CPU from the server being measured. Latency and
 * steady state run the worker on a thread of this process, so producer
 * and handler share one monotonic clock, as the peer harness does.
 */
#include "cli.h"

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char usage[] =
    "usage: skipq bench [MEASUREMENT ...] [--jobs N] [--concurrency C] [--prefetch P]\n"
    "                   [--workers K] [--on-success keep|delete] [--rate R]\n"
    "                   [--duration D] [--json]\n"
    "                   [--deep-jobs N] [--latency-jobs N] [--retention D]\n"
    "                   [--vacuum-interval D]\n"
    "                   [--config F] [--database URL] [--quiet]\n"
    "\n"
    "Measures skipq on the server of the configured database, in a new\n"
    "database skipq_bench_<pid> that it creates, migrates and drops at the\n"
    "end (the role needs CREATEDB). MEASUREMENT is one or more of:\n"
    "\n"
    "  enqueue   one job per transaction from 1 and from 8 connections\n"
    "            (min(2000, N) jobs), skipq_enqueue_batch of N jobs, and\n"
    "            N JSON lines piped into `skipq enqueue KIND`\n"
    "  drain     N queued no-op jobs worked by K worker processes at\n"
    "            concurrency C: jobs/s, worker CPU seconds, peak RSS\n"
    "  latency   idle worker; one job every 20 ms; enqueue -> handler start\n"
    "  steady    a producer at R jobs/s for D: end-to-end latency and the\n"
    "            worst stall\n"
    "  deep      drain rate and claim time with 10,000 vs --deep-jobs\n"
    "            waiting (default 100,000; 1,000,000 with SKIPQ_LONG=1),\n"
    "            and with --deep-jobs scheduled for later: the claim with\n"
    "            nothing runnable, the drain of 10,000 runnable among them\n"
    "  command   drain with the command handler /bin/true at concurrency 8\n"
    "  all       all of the above (the default)\n"
    "  soak      not in all: one worker drains --jobs jobs for its maximum,\n"
    "            then a producer runs at --rate (default 80% of it) for\n"
    "            --duration (default 10m) with --retention (default 30s):\n"
    "            jobs/s in the first and last tenth, table and index sizes\n"
    "\n"
    "  --jobs N          jobs to drain and to bulk-enqueue (default 100000)\n"
    "  --concurrency C   worker concurrency (default 16)\n"
    "  --workers K       worker processes for drain (default 1)\n"
    "  --prefetch P      jobs each worker claims beyond C: auto (the default)\n"
    "                    or 0..10000\n"
    "  --on-success W    the workers keep (default) or delete succeeded rows\n"
    "  --rate R          steady: jobs per second (default 200)\n"
    "  --duration D      steady: how long (default 10s); soak: default 10m\n"
    "  --retention D     soak: the worker's retention (default 30s)\n"
    "  --vacuum-interval D  the workers' vacuum_interval (default 10s;\n"
    "                    0 leaves the table to autovacuum alone)\n"
    "  --deep-jobs N     deep: the large backlog (default 100000)\n"
    "  --latency-jobs N  latency: samples (default 1000)\n"
    "  --json            one JSON object per line and measurement\n";

enum {
    OPT_JOBS = CLI_OPT_LOCAL,
    OPT_CONCURRENCY,
    OPT_WORKERS,
    OPT_PREFETCH,
    OPT_ON_SUCCESS,
    OPT_RATE,
    OPT_DURATION,
    OPT_JSON,
    OPT_DEEP_JOBS,
    OPT_LATENCY_JOBS,
    OPT_RETENTION,
    OPT_VACUUM_INTERVAL,
};

enum {
    M_ENQUEUE = 1 << 0,
    M_DRAIN = 1 << 1,
    M_LATENCY = 1 << 2,
    M_STEADY = 1 << 3,
    M_DEEP = 1 << 4,
    M_COMMAND = 1 << 5,
    M_ALL = 0x3f, /* all but soak */
    M_SOAK = 1 << 6,
};

#define KIND_NOOP "bench_noop"
#define KIND_CMD "bench_cmd"
#define SMALL_BACKLOG 10000
#define DEEP_SAMPLE 10000
#define DEEP_REPS 3 /* interleaved draws of each size; the median is reported */
#define COMMAND_JOBS_MAX 10000
#define SINGLE_JOBS_MAX 2000
#define SINGLE_THREADS 8
#define BATCH_CHUNK 1000000
#define WARMUP_JOBS 5
#define LAT_GAP_MS 20

/* One measurement. NAN / -1: does not apply (left out of the JSON). */
struct result {
    char metric[32];
    char config[48];
    long long jobs;
    double seconds, jobs_per_s;
    double p50, p95, p99, max;
    double cpu_s;
    long max_rss_kb;
    /* extras */
    long long backlog;
    double claim_p50, claim_p99;
    int claim_uses_index; /* -1: not measured */
    double stall_ms;
    double rate;
    /* latency: the same pickups timed from the enqueue's return (its
     * commit) rather than from before the call, and the call itself */
    double commit_p50, commit_p99, enqueue_p50;
    long long before_reply; /* samples whose handler started first: 0 ms */
    /* enqueue_single 1conn-vs-insert: the raw INSERT's rate, interleaved */
    double ref_jps;
    /* soak */
    double max_jps, first_jps, last_jps;
    long long table_kb_mid, table_kb_end, index_kb_mid, index_kb_end;
    long long oldest_finished_s; /* soak: the oldest succeeded row, at the end */
};

struct bench {
    struct cli_ctx *ctx;
    int json;
    long long jobs, deep_jobs, latency_jobs;
    int concurrency, workers, prefetch;
    skipq_on_success on_success;
    double rate;
    int64_t duration_ms;
    int rate_set, duration_set;
    int64_t retention_ms; /* soak */
    int64_t vacuum_ms;    /* every worker's vacuum_interval; -1 the default */

    PGconn *admin; /* the configured database: CREATE/DROP DATABASE */
    skipq_conn *admin_conn;
    char dbname[64];
    char *url;       /* conninfo of the bench database */
    skipq_conn *conn; /* to the bench database */
    PGconn *pg;       /* borrowed from conn */

    struct result *res;
    size_t nres;
};

static volatile sig_atomic_t interrupted;
static skipq_worker *volatile inproc_worker;

static void
on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
    if (inproc_worker)
        skipq_worker_stop(inproc_worker); /* async-signal-safe */
}

/* ---- small helpers ------------------------------------------------------ */

static int64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* An error from the library, for a bench that has started: always a
 * runtime failure (exit 1), whatever kind the library says it is. */
static int
fail1(const skipq_error *err)
{
    cli_fail(err);
    return CLI_EXIT_FAIL;
}

static void
sleep_us(int64_t us)
{
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !interrupted)
        ;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The peer harness's percentile: the ceil(p% * n)-th smallest. */
static double
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

static void
result_init(struct result *r, const char *metric, const char *config)
{
    memset(r, 0, sizeof *r);
    snprintf(r->metric, sizeof r->metric, "%s", metric);
    snprintf(r->config, sizeof r->config, "%s", config);
    r->seconds = r->jobs_per_s = r->p50 = r->p95 = r->p99 = r->max = NAN;
    r->cpu_s = r->claim_p50 = r->claim_p99 = r->stall_ms = r->rate = NAN;
    r->max_jps = r->first_jps = r->last_jps = r->ref_jps = NAN;
    r->commit_p50 = r->commit_p99 = r->enqueue_p50 = NAN;
    r->before_reply = -1;
    r->table_kb_mid = r->table_kb_end = r->index_kb_mid = r->index_kb_end = -1;
    r->jobs = r->backlog = r->oldest_finished_s = -1;
    r->max_rss_kb = -1;
    r->claim_uses_index = -1;
}

static void
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
static int
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
    json_add_num(o, "max_jobs_per_s", r->max_jps);
    json_add_num(o, "first_window_jobs_per_s", r->first_jps);
    json_add_num(o, "last_window_jobs_per_s", r->last_jps);
    json_add_int(o, "table_kb_mid", r->table_kb_mid);
    json_add_int(o, "table_kb_end", r->table_kb_end);
    json_add_int(o, "indexes_kb_mid", r->index_kb_mid);
    json_add_int(o, "indexes_kb_end", r->index_kb_end);
    json_add_int(o, "oldest_finished_s", r->oldest_finished_s);
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

static void
print_table(const struct bench *b)
{
    struct cli_table t;
    static const char *const head[] = {"metric", "config", "jobs", "seconds",
                                       "jobs/s", "p50 ms", "p95 ms", "p99 ms",
                                       "max ms", "cpu s", "rss kB", "notes"};
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
                                  "backlog %lld, claim p50/p99 %.2f/%.2f ms%s",
                                  r->backlog, r->claim_p50, r->claim_p99,
                                  r->claim_uses_index == 1
                                      ? ", index scan"
                                      : ", NO claim index");
        else if (r->backlog >= 0) /* soak */
            k += (size_t)snprintf(notes + k, sizeof notes - k,
                                  "backlog %lld, first/last window %.0f/%.0f jobs/s",
                                  r->backlog, r->first_jps, r->last_jps);
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

/* ---- SQL ------------------------------------------------------------------ */

/* Run sql with text parameters; fails the bench (prints, returns 1) on
 * any error. *out (may be NULL) receives a result with rows. */
static int
sqlp(PGconn *pg, PGresult **out, const char *sql, int n,
     const char *const *v)
{
    PGresult *res = PQexecParams(pg, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);

    if (out)
        *out = NULL;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int rc = cli_db_fail(pg, res, "bench: could not run \"%.60s\"", sql);
        PQclear(res);
        return rc == CLI_EXIT_USAGE ? CLI_EXIT_FAIL : rc;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return 0;
}

static int
sql(PGconn *pg, const char *text)
{
    return sqlp(pg, NULL, text, 0, NULL);
}

/* The first column of the first row as an integer, or -1 on error. */
static long long
sql_int(PGconn *pg, const char *text)
{
    PGresult *res;
    long long v = -1;

    if (sqlp(pg, &res, text, 0, NULL) != 0)
        return -1;
    if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
        v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

/* Empty the queue between measurements, and start from a checkpoint so a
 * measurement does not pay for the previous one's full-page writes.
 * CHECKPOINT needs superuser or pg_checkpoint: without, we go on. */
static int
reset_queue(struct bench *b)
{
    if (sql(b->pg, "TRUNCATE skipq.jobs, skipq.workers RESTART IDENTITY") != 0)
        return 1;
    PQclear(PQexec(b->pg, "CHECKPOINT"));
    return 0;
}

/* ---- the bench database ----------------------------------------------- */

/* A conninfo string for the same server as url, database dbname. Values
 * are single-quoted with \ and ' escaped, as libpq's parser expects. */
static char *
conninfo_for(const char *url, const char *dbname)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url ? url : "", &errmsg);
    size_t cap = 256, len = 0;
    char *out;

    if (!opts) {
        cli_errorf(CLI_EXIT_FAIL, "bench: could not parse the database URL: %s",
                   errmsg ? errmsg : "out of memory");
        PQfreemem(errmsg);
        return NULL;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val)
            cap += strlen(o->keyword) + 2 * strlen(o->val) + 4;
    cap += strlen(dbname) + 16;
    out = malloc(cap);
    if (out) {
        for (PQconninfoOption *o = opts; o->keyword; o++) {
            if (!o->val || strcmp(o->keyword, "dbname") == 0)
                continue;
            len += (size_t)snprintf(out + len, cap - len, "%s='", o->keyword);
            for (const char *s = o->val; *s; s++) {
                if (*s == '\'' || *s == '\\')
                    out[len++] = '\\';
                out[len++] = *s;
            }
            out[len++] = '\'';
            out[len++] = ' ';
        }
        snprintf(out + len, cap - len, "dbname='%s'", dbname);
    }
    PQconninfoFree(opts);
    return out;
}

static int
create_db(struct bench *b)
{
    char q[128];
    skipq_error err = {0};
    int applied = 0, rc;

    b->ctx->skip_schema_check = 1;
    rc = cli_connect(b->ctx, &b->admin_conn);
    if (rc != 0)
        return rc;
    b->admin = skipq_conn_pg(b->admin_conn);
    snprintf(b->dbname, sizeof b->dbname, "skipq_bench_%d", (int)getpid());
    /* the name is ours (a pid), so it is safe to format in */
    snprintf(q, sizeof q, "DROP DATABASE IF EXISTS %s", b->dbname);
    PQclear(PQexec(b->admin, "SET client_min_messages = warning"));
    if ((rc = sql(b->admin, q)) != 0)
        return rc;
    snprintf(q, sizeof q, "CREATE DATABASE %s", b->dbname);
    if ((rc = sql(b->admin, q)) != 0) {
        b->dbname[0] = '\0';
        return rc;
    }
    b->url = conninfo_for(b->ctx->database, b->dbname);
    if (!b->url)
        return CLI_EXIT_FAIL;
    /* b->url is freed by cmd_bench on every path; the analyzer loses it
     * in the struct (a false "potential leak") */
    if (skipq_conn_open(b->url, &b->conn, &err) != SKIPQ_OK ||
        skipq_migrate(b->conn, &applied, NULL, NULL, &err) != SKIPQ_OK) { // NOLINT(clang-analyzer-unix.Malloc)
        cli_fail(&err);
        return CLI_EXIT_FAIL;
    }
    b->pg = skipq_conn_pg(b->conn);
    PQclear(PQexec(b->pg, "SET client_min_messages = warning"));
    /* The new database's catalogs took the migration's rows: analyze them
     * now, or autovacuum does it on one of the cores in the middle of a
     * measurement (c-batch enqueue showed two modes, 0.65x and 1.05x of
     * raw COPY, from run to run). */
    return sql(b->pg, "VACUUM (ANALYZE)");
}

static void
drop_db(struct bench *b)
{
    char q[128];

    skipq_conn_close(b->conn);
    b->conn = NULL;
    b->pg = NULL;
    if (b->admin && b->dbname[0]) {
        snprintf(q, sizeof q, "DROP DATABASE IF EXISTS %s WITH (FORCE)", b->dbname);
        PGresult *res = PQexec(b->admin, q);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            cli_db_fail(b->admin, res, "bench: could not drop database \"%s\"",
                        b->dbname);
        PQclear(res);
    }
    skipq_conn_close(b->admin_conn);
    b->admin_conn = NULL;
    b->admin = NULL;
}

/* ---- filling the queue ------------------------------------------------- */

/* N no-op jobs through skipq_enqueue_batch, BATCH_CHUNK per call. */
static int
fill_batch(struct bench *b, long long n, const char *kind, double *secs)
{
    size_t chunk = (size_t)(n < BATCH_CHUNK ? n : BATCH_CHUNK);
    skipq_job_spec *specs = calloc(chunk ? chunk : 1, sizeof *specs);
    char *payloads = malloc((chunk ? chunk : 1) * 24);
    skipq_error err = {0};
    int rc = 0;

    if (!specs || !payloads) {
        rc = cli_errorf(CLI_EXIT_FAIL, "bench: out of memory");
        goto out;
    }
    int64_t t0 = now_us();
    for (long long done = 0; done < n && !interrupted;) {
        size_t m = (size_t)(n - done < (long long)chunk ? n - done : (long long)chunk);
        for (size_t i = 0; i < m; i++) {
            snprintf(payloads + i * 24, 24, "{\"i\":%lld}", done + (long long)i);
            specs[i] = (skipq_job_spec){kind, payloads + i * 24};
        }
        if (skipq_enqueue_batch(b->conn, specs, m, NULL, &err) != SKIPQ_OK) {
            rc = fail1(&err);
            goto out;
        }
        done += (long long)m;
    }
    if (secs)
        *secs = (double)(now_us() - t0) / 1e6;
out:
    free(specs);
    free(payloads);
    return interrupted && rc == 0 ? CLI_EXIT_FAIL : rc;
}

/* N no-op jobs in one INSERT ... SELECT: the fastest fill for a backlog. */
static int
fill_series(struct bench *b, long long n)
{
    char num[24];
    const char *v[1] = {num};

    snprintf(num, sizeof num, "%lld", n);
    return sqlp(b->pg, NULL,
                "INSERT INTO skipq.jobs (kind, payload) SELECT '" KIND_NOOP "',"
                " pg_catalog.jsonb_build_object('i', g)"
                " FROM pg_catalog.generate_series(1, $1::int8) g",
                1, v);
}

/* ---- the worker process --------------------------------------------------- */

/* Shared with the worker processes (a memfd mapped by both). */
struct shm {
    atomic_llong handled;
};

static struct shm *child_shm;
static skipq_worker *child_worker;

static void
child_on_signal(int sig)
{
    (void)sig;
    if (child_worker)
        skipq_worker_stop(child_worker);
}

static skipq_outcome
count_handler(skipq_job *job, void *userdata)
{
    (void)job;
    atomic_fetch_add_explicit(&((struct shm *)userdata)->handled, 1,
                              memory_order_relaxed);
    return SKIPQ_JOB_OK;
}

/*
 * `skipq bench __worker`, started by run_drain(): one worker with the
 * settings in the environment, until SIGTERM. Not for people: it needs
 * the shared page the benchmark passes down.
 */
static int
worker_child(void)
{
    const char *fd_s = getenv("SKIPQ_BENCH_SHM");
    const char *mode = getenv("SKIPQ_BENCH_MODE");
    const char *conc = getenv("SKIPQ_BENCH_CONCURRENCY");
    const char *url = getenv("SKIPQ_DATABASE_URL");
    skipq_config *cfg = NULL;
    skipq_error err = {0};
    skipq_rc rc;
    struct sigaction sa;

    if (!fd_s || !mode || !conc)
        return cli_usage_error("bench: \"__worker\" is internal");
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the benchmark */
    int fd = atoi(fd_s);
    child_shm = mmap(NULL, sizeof *child_shm, PROT_READ | PROT_WRITE,
                     MAP_SHARED, fd, 0);
    close(fd);
    if (child_shm == MAP_FAILED)
        return cli_errorf(CLI_EXIT_FAIL, "bench worker: could not map: %s",
                          strerror(errno));
    if (getenv("SKIPQ_BENCH_NOLOG")) /* profiling: no log hook at all */
        skipq_set_log(NULL, NULL);
    cfg = skipq_config_new();
    if (!cfg) {
        rc = SKIPQ_ERR_NOMEM;
        snprintf(err.message, sizeof err.message, "out of memory");
        goto out;
    }
    rc = skipq_config_set_concurrency(cfg, atoi(conc), &err);
    const char *prefetch = getenv("SKIPQ_BENCH_PREFETCH");
    if (rc == SKIPQ_OK && prefetch)
        rc = skipq_config_set_prefetch(cfg, atoi(prefetch), &err);
    const char *on_success = getenv("SKIPQ_BENCH_ON_SUCCESS");
    if (rc == SKIPQ_OK && on_success)
        rc = skipq_config_set_on_success(cfg, (skipq_on_success)atoi(on_success), &err);
    const char *vacuum = getenv("SKIPQ_BENCH_VACUUM_MS");
    if (rc == SKIPQ_OK && vacuum && atoll(vacuum) >= 0)
        rc = skipq_config_set_vacuum_interval(cfg, atoll(vacuum), &err);
    if (rc == SKIPQ_OK && url)
        rc = skipq_config_set_database(cfg, url, &err);
    if (rc == SKIPQ_OK && strcmp(mode, "command") == 0) {
        static const char *const argv_true[] = {"/bin/true", NULL};
        rc = skipq_config_set_handler_command(cfg, KIND_CMD, argv_true, 0, &err);
    }
    if (rc == SKIPQ_OK)
        rc = skipq_worker_new(cfg, &child_worker, &err);
    if (rc == SKIPQ_OK && strcmp(mode, "command") != 0)
        rc = skipq_worker_register(child_worker, KIND_NOOP, count_handler,
                                   child_shm, &err);
    if (rc == SKIPQ_OK) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = child_on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        rc = skipq_worker_run(child_worker, &err);
    }
out:
    skipq_worker_free(child_worker);
    child_worker = NULL;
    skipq_config_free(cfg);
    munmap(child_shm, sizeof *child_shm);
    return rc == SKIPQ_OK ? CLI_EXIT_OK : cli_fail(&err);
}

/* environ without our own variables, plus ours. Caller frees the array
 * and the strings from index `own` on. */
static char **
child_env(const struct bench *b, int fd, const char *mode, int conc,
          size_t *own)
{
    enum { OURS = 7 }; /* the entries added below */
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + OURS + 1, sizeof *env); /* and the NULL */
    if (!env)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "SKIPQ_BENCH_", 12) != 0 &&
            strncmp(environ[i], "SKIPQ_DATABASE_URL=", 19) != 0)
            env[k++] = environ[i];
    *own = k;
    if (asprintf(&env[k++], "SKIPQ_DATABASE_URL=%s", b->url) < 0 ||
        asprintf(&env[k++], "SKIPQ_BENCH_SHM=%d", fd) < 0 ||
        asprintf(&env[k++], "SKIPQ_BENCH_MODE=%s", mode) < 0 ||
        asprintf(&env[k++], "SKIPQ_BENCH_CONCURRENCY=%d", conc) < 0 ||
        asprintf(&env[k++], "SKIPQ_BENCH_PREFETCH=%d", b->prefetch) < 0 ||
        asprintf(&env[k++], "SKIPQ_BENCH_ON_SUCCESS=%d", (int)b->on_success) < 0 ||
        asprintf(&env[k++], "SKIPQ_BENCH_VACUUM_MS=%lld", (long long)b->vacuum_ms) < 0) {
        for (size_t i = *own; i < k; i++)
            free(env[i]);
        free(env);
        return NULL;
    }
    return env;
}

static void
env_free(char **env, size_t own)
{
    if (!env)
        return;
    for (size_t i = own; env[i]; i++)
        free(env[i]);
    free(env);
}

static int
children_alive(pid_t *pids, int n)
{
    for (int i = 0; i < n; i++) {
        int st;
        if (pids[i] > 0 && waitpid(pids[i], &st, WNOHANG) == pids[i]) {
            pids[i] = -1;
            return 0;
        }
    }
    return 1;
}

struct drain_spec {
    const char *mode;   /* "noop" or "command" */
    long long target;   /* handled jobs that end the measurement */
    int concurrency, workers;
    int sql_check;      /* wait until the table shows them succeeded */
};

struct drain_out {
    double seconds, cpu_s;
    long max_rss_kb;
};

/*
 * A worker process's peak RSS: VmHWM of its own address space. Not
 * wait4's ru_maxrss: posix_spawn borrows the bench's address space until
 * the exec (vfork), and the kernel counts that space's high-water mark in
 * the child's maxrss, so the worker was charged the bench's own memory
 * (its 100,000-job fill buffers: 12.8 MB reported for a worker whose
 * VmHWM was 8.8 MB).
 */
static long
peak_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* How many jobs have succeeded, by the table: those that show it, and
 * with on_success delete those that are gone (ids handed out less the
 * rows left; the bench deletes nothing else before it counts). */
static long long
succeeded(struct bench *b)
{
    if (b->on_success == SKIPQ_ON_SUCCESS_KEEP)
        return sql_int(b->pg, "SELECT count(*) FROM skipq.jobs"
                              " WHERE status" SKIPQ__EQ "'succeeded'");
    return sql_int(b->pg,
                   "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END"
                   " FROM skipq.jobs_id_seq)"
                   " - count(*) FILTER (WHERE status" SKIPQ__NE "'succeeded')"
                   " FROM skipq.jobs");
}

/* Are jobs still queued or running? 1 yes, 0 no, -1 error. Each scalar
 * subquery stops at the first live entry of its partial index (in its
 * order: EXISTS would lose the ORDER BY, and the planner then scanned the
 * table): cheap enough to ask every few milliseconds, where counting the
 * succeeded rows took 12% of this machine's CPU from the command drain it
 * was timing. */
static int
jobs_left(struct bench *b)
{
    return (int)sql_int(b->pg,
                        "SELECT ((SELECT 1 FROM skipq.jobs WHERE status" SKIPQ__EQ "'queued'"
                        "   ORDER BY queue, priority DESC, run_at, id LIMIT 1) IS NOT NULL"
                        " OR (SELECT 1 FROM skipq.jobs WHERE status" SKIPQ__EQ "'running'"
                        "   ORDER BY locked_by LIMIT 1) IS NOT NULL)::int");
}

/*
 * Start `workers` worker processes on the queued jobs and time them until
 * `target` jobs are done: by the shared counter (no-op handler), by the
 * table for command handlers, then (sql_check) until the table agrees.
 */
static int
run_drain(struct bench *b, const struct drain_spec *d, struct drain_out *o)
{
    pid_t pids[64];
    int fd = -1, rc = 0, started = 0;
    struct shm *shm = MAP_FAILED;
    char **env = NULL;
    size_t own = 0;
    static char a0[] = "skipq", a1[] = "bench", a2[] = "__worker";
    char *argv[] = {a0, a1, a2, NULL};
    int64_t cap_us = (120 + d->target / 500) * 1000000LL;

    memset(o, 0, sizeof *o);
    fd = memfd_create("skipq-bench", 0);
    if (fd < 0 || ftruncate(fd, sizeof *shm) != 0 ||
        (shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                    0)) == MAP_FAILED) {
        rc = cli_errorf(CLI_EXIT_FAIL, "bench: could not share memory: %s",
                        strerror(errno));
        goto out;
    }
    atomic_store(&shm->handled, 0);
    env = child_env(b, fd, d->mode, d->concurrency, &own);
    if (!env) {
        rc = cli_errorf(CLI_EXIT_FAIL, "bench: out of memory");
        goto out;
    }
    fflush(NULL);
    int64_t t0 = now_us();
    for (; started < d->workers; started++) {
        int e = posix_spawn(&pids[started], "/proc/self/exe", NULL, NULL, argv, env);
        if (e != 0) {
            rc = cli_errorf(CLI_EXIT_FAIL, "bench: could not start a worker: %s",
                            strerror(e));
            goto stop;
        }
    }
    close(fd);
    fd = -1;
    /* Wait for the handlers: poll the counter (cheap) or, for command
     * handlers that cannot count, the table every 20 ms, until nothing is
     * queued or running (sql_check then counts the succeeded rows). */
    for (long long n = 0, spins = 0;; spins++) {
        if (strcmp(d->mode, "command") == 0) {
            int left = jobs_left(b);
            if (left < 0) {
                rc = CLI_EXIT_FAIL;
                goto stop;
            }
            n = left ? 0 : d->target;
        } else {
            n = atomic_load(&shm->handled);
        }
        if (n >= d->target)
            break;
        if (interrupted || now_us() - t0 > cap_us ||
            (spins % 64 == 0 && !children_alive(pids, started))) {
            if (strcmp(d->mode, "command") == 0)
                n = succeeded(b);
            rc = cli_errorf(CLI_EXIT_FAIL,
                            interrupted ? "bench: interrupted"
                            : now_us() - t0 > cap_us
                                ? "bench: drain did not finish in time (%lld of %lld)"
                                : "bench: a worker process died (%lld of %lld done)",
                            n, d->target);
            goto stop;
        }
        sleep_us(strcmp(d->mode, "command") == 0 ? 20000 : 1000);
    }
    if (d->sql_check) {
        for (long long n; (n = succeeded(b)) < d->target;) {
            if (n < 0 || interrupted || now_us() - t0 > cap_us) {
                rc = cli_errorf(CLI_EXIT_FAIL, "bench: jobs did not all succeed");
                goto stop;
            }
            sleep_us(2000);
        }
    }
    o->seconds = (double)(now_us() - t0) / 1e6;
stop:
    for (int i = 0; i < started; i++) {
        long hwm = pids[i] > 0 ? peak_rss_kb(pids[i]) : -1;
        if (hwm > o->max_rss_kb)
            o->max_rss_kb = hwm;
        if (pids[i] > 0)
            kill(pids[i], SIGTERM);
    }
    for (int i = 0; i < started; i++) {
        struct rusage ru;
        int st;
        if (pids[i] <= 0)
            continue;
        if (wait4(pids[i], &st, 0, &ru) != pids[i])
            continue;
        o->cpu_s += (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
        if (rc == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
            rc = cli_errorf(CLI_EXIT_FAIL, "bench: a worker process failed (status %d)",
                            WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
out:
    env_free(env, own);
    if (shm != MAP_FAILED)
        munmap(shm, sizeof *shm);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ---- enqueue ---------------------------------------------------------------- */

/* The start line for the enqueue threads: all connect first, then go. */
struct start_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
};

struct single_arg {
    skipq_conn *conn;
    long long from, n;
    struct start_gate *gate;
    skipq_error err;
    int failed;
};

static void *
single_thread(void *p)
{
    struct single_arg *a = p;
    char payload[32];

    pthread_mutex_lock(&a->gate->mu);
    while (!a->gate->open)
        pthread_cond_wait(&a->gate->cv, &a->gate->mu);
    pthread_mutex_unlock(&a->gate->mu);
    for (long long i = 0; i < a->n && !interrupted; i++) {
        snprintf(payload, sizeof payload, "{\"i\":%lld}", a->from + i);
        if (skipq_enqueue(a->conn, KIND_NOOP, payload, NULL, NULL, &a->err) != SKIPQ_OK) {
            a->failed = 1;
            break;
        }
    }
    return NULL;
}

/* A connection holding queue default's idle lock, as an idle worker
 * does (worker.c, idle_lock), so that skipq_enqueue notifies. */
static int
hold_idle_lock(struct bench *b, PGconn **out)
{
    PGconn *idle = PQconnectdb(b->url);
    int rc;

    if (PQstatus(idle) != CONNECTION_OK) {
        rc = cli_db_fail(idle, NULL, "bench: could not connect");
        PQfinish(idle);
        return rc;
    }
    if ((rc = sql(idle, "SELECT pg_advisory_lock_shared(1936421122,"
                        " pg_catalog.hashtext('default'))"))) {
        PQfinish(idle);
        return rc;
    }
    *out = idle;
    return 0;
}

/* One job per transaction from `threads` connections, `n` jobs in all.
 * With `waiting`, another connection holds the idle lock of queue
 * default as an idle worker does, so every skipq_enqueue notifies. */
static int
bench_single(struct bench *b, int threads, long long n, bool waiting)
{
    struct single_arg args[SINGLE_THREADS];
    PGconn *idle = NULL;
    pthread_t th[SINGLE_THREADS];
    struct start_gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    int rc = 0, opened = 0, started = 0;
    struct result r;
    char cfgname[16];

    if ((rc = reset_queue(b)) != 0)
        return rc;
    if (waiting && (rc = hold_idle_lock(b, &idle)) != 0)
        return rc;
    memset(args, 0, sizeof args);
    for (; opened < threads; opened++) {
        args[opened].gate = &gate;
        args[opened].from = n * opened / threads;
        args[opened].n = n * (opened + 1) / threads - args[opened].from;
        if (skipq_conn_open(b->url, &args[opened].conn, &args[opened].err) != SKIPQ_OK) {
            rc = fail1(&args[opened].err);
            break;
        }
    }
    for (; rc == 0 && started < threads; started++)
        if (pthread_create(&th[started], NULL, single_thread, &args[started]) != 0) {
            rc = cli_errorf(CLI_EXIT_FAIL, "bench: could not start threads");
            interrupted = 1; /* the started ones stop at once */
        }
    int64_t t0 = now_us();
    pthread_mutex_lock(&gate.mu);
    gate.open = 1;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    int64_t t1 = now_us();
    for (int i = 0; i < opened; i++) {
        if (rc == 0 && args[i].failed)
            rc = fail1(&args[i].err);
        skipq_conn_close(args[i].conn);
    }
    PQfinish(idle);
    if (rc == 0 && interrupted)
        rc = cli_errorf(CLI_EXIT_FAIL, "bench: interrupted");
    if (rc != 0)
        return rc;
    snprintf(cfgname, sizeof cfgname, "%dconn%s", threads, waiting ? "-waiting" : "");
    result_init(&r, "enqueue_single", cfgname);
    r.jobs = n;
    r.seconds = (double)(t1 - t0) / 1e6;
    r.jobs_per_s = (double)n / r.seconds;
    return report(b, &r);
}

/*
 * skipq_enqueue from one connection against the yardstick's INSERT (the
 * statement compare.sh gives pgbench: one job per transaction, the
 * trigger's NOTIFY at its commit) from another, interleaved 100 calls at
 * a time, in alternating order, n jobs each. A single connection's
 * commit rate moves by 2x from one second to the next on a shared
 * machine; taken in turns this close, both see the same disk.
 * skipq_enqueue notifies only while a worker waits: with `waiting`, a
 * third connection holds the idle lock of queue default, as an idle
 * worker does, so it notifies for every job as the INSERT does.
 */
enum { VS_INSERT_CHUNK = 100 };
static const char vs_insert_sql[] =
    "INSERT INTO skipq.jobs (kind, payload, queue, priority, run_at, max_attempts,"
    " backoff_strategy, backoff_base, backoff_max, timeout) VALUES ('" KIND_NOOP "',"
    " '{\"i\": 1}'::jsonb, 'default', 0::int2, now(), NULL, NULL, NULL, NULL, NULL)"
    " RETURNING id";

static int
bench_single_vs_insert(struct bench *b, long long n, bool waiting)
{
    skipq_conn *conn = NULL;
    skipq_error err = {0};
    PGconn *raw = NULL, *idle = NULL;
    PGresult *res;
    int64_t took[2] = {0, 0}; /* [0] skipq, [1] the INSERT */
    long long done[2] = {0, 0};
    char payload[32];
    struct result r;
    int rc;

    if ((rc = reset_queue(b)) != 0)
        return rc;
    if (skipq_conn_open(b->url, &conn, &err) != SKIPQ_OK)
        return fail1(&err);
    raw = PQconnectdb(b->url);
    if (PQstatus(raw) != CONNECTION_OK) {
        rc = cli_db_fail(raw, NULL, "bench: could not connect");
        goto out;
    }
    res = PQprepare(raw, "vs_insert", vs_insert_sql, 0, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = cli_db_fail(raw, res, "bench: could not prepare the INSERT");
        PQclear(res);
        goto out;
    }
    PQclear(res);
    if (waiting && (rc = hold_idle_lock(b, &idle)) != 0)
        goto out;
    for (int round = 0; rc == 0 && done[1] < n; round++) {
        for (int turn = 0; rc == 0 && turn < 2; turn++) {
            int who = (round + turn) % 2;
            long long m = n - done[who] < VS_INSERT_CHUNK ? n - done[who] : VS_INSERT_CHUNK;
            int64_t t0 = now_us();
            for (long long i = 0; i < m && rc == 0; i++) {
                if (interrupted) {
                    rc = cli_errorf(CLI_EXIT_FAIL, "bench: interrupted");
                } else if (who == 0) {
                    snprintf(payload, sizeof payload, "{\"i\":%lld}", done[0] + i);
                    if (skipq_enqueue(conn, KIND_NOOP, payload, NULL, NULL, &err) != SKIPQ_OK)
                        rc = fail1(&err);
                } else {
                    res = PQexecPrepared(raw, "vs_insert", 0, NULL, NULL, NULL, 0);
                    if (PQresultStatus(res) != PGRES_TUPLES_OK)
                        rc = cli_db_fail(raw, res, "bench: the INSERT failed");
                    PQclear(res);
                }
            }
            took[who] += now_us() - t0;
            done[who] += m;
        }
    }
    if (rc == 0) {
        result_init(&r, "enqueue_single", waiting ? "1conn-vs-insert-waiting" : "1conn-vs-insert");
        r.jobs = n;
        r.seconds = (double)took[0] / 1e6;
        r.jobs_per_s = (double)n / r.seconds;
        r.ref_jps = (double)n / ((double)took[1] / 1e6);
        rc = report(b, &r);
    }
out:
    PQfinish(idle);
    PQfinish(raw);
    skipq_conn_close(conn);
    return rc == CLI_EXIT_USAGE ? CLI_EXIT_FAIL : rc;
}

/* Pipe n JSON lines into `skipq enqueue bench_noop` (this binary). */
static int
bench_cli_stdin(struct bench *b, long long n)
{
    static char a0[] = "skipq", a1[] = "enqueue", a2[] = KIND_NOOP, a3[] = "-",
                a4[] = "--quiet";
    char *argv[] = {a0, a1, a2, a3, a4, NULL};
    posix_spawn_file_actions_t fa;
    int fds[2] = {-1, -1}, rc = 0, st = 0;
    pid_t pid = -1;
    size_t own = 0;
    char **env = NULL;
    struct result r;
    char buf[65536];
    size_t len = 0;

    if ((rc = reset_queue(b)) != 0)
        return rc;
    env = child_env(b, -1, "enqueue", 0, &own);
    if (!env || pipe2(fds, O_CLOEXEC) != 0) {
        env_free(env, own);
        return cli_errorf(CLI_EXIT_FAIL, "bench: could not set up the enqueue pipe");
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    fflush(NULL);
    int64_t t0 = now_us();
    int e = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[0]);
    if (e != 0) {
        close(fds[1]);
        env_free(env, own);
        return cli_errorf(CLI_EXIT_FAIL, "bench: could not run skipq enqueue: %s",
                          strerror(e));
    }
    /* a closed pipe means the child failed: its status says why */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigaction(SIGPIPE, &ign, &old);
    for (long long i = 0; i <= n && rc == 0; i++) {
        if (i < n)
            len += (size_t)snprintf(buf + len, sizeof buf - len, "{\"i\":%lld}\n", i);
        if (len > sizeof buf - 64 || (i == n && len > 0)) {
            for (size_t off = 0; off < len;) {
                ssize_t w = write(fds[1], buf + off, len - off);
                if (w < 0 && errno == EINTR && !interrupted)
                    continue;
                if (w <= 0) {
                    rc = CLI_EXIT_FAIL;
                    break;
                }
                off += (size_t)w;
            }
            len = 0;
        }
    }
    close(fds[1]);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    int64_t t1 = now_us();
    sigaction(SIGPIPE, &old, NULL);
    env_free(env, own);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        return cli_errorf(CLI_EXIT_FAIL, "bench: skipq enqueue from stdin failed");
    if (rc != 0)
        return cli_errorf(CLI_EXIT_FAIL, "bench: could not write to skipq enqueue");
    long long got = sql_int(b->pg, "SELECT count(*) FROM skipq.jobs");
    if (got != n)
        return cli_errorf(CLI_EXIT_FAIL, "bench: skipq enqueue wrote %lld of %lld jobs",
                          got, n);
    result_init(&r, "enqueue_bulk", "cli-stdin");
    r.jobs = n;
    r.seconds = (double)(t1 - t0) / 1e6;
    r.jobs_per_s = (double)n / r.seconds;
    return report(b, &r);
}

static int
bench_enqueue(struct bench *b)
{
    long long single = b->jobs < SINGLE_JOBS_MAX ? b->jobs : SINGLE_JOBS_MAX;
    struct result r;
    double secs = 0;
    int rc;

    if ((rc = bench_single(b, 1, single, false)) != 0 ||
        (rc = bench_single(b, SINGLE_THREADS, single, false)) != 0 ||
        (rc = bench_single(b, SINGLE_THREADS, single, true)) != 0 ||
        (rc = bench_single_vs_insert(b, single, false)) != 0 ||
        (rc = bench_single_vs_insert(b, single, true)) != 0 ||
        (rc = reset_queue(b)) != 0 || (rc = fill_batch(b, b->jobs, KIND_NOOP, &secs)) != 0)
        return rc;
    result_init(&r, "enqueue_bulk", "c-batch");
    r.jobs = b->jobs;
    r.seconds = secs;
    r.jobs_per_s = (double)b->jobs / secs;
    if ((rc = report(b, &r)) != 0)
        return rc;
    return bench_cli_stdin(b, b->jobs);
}

/* ---- drain -------------------------------------------------------------------- */

static int
bench_drain(struct bench *b, int command)
{
    long long n = command ? (b->jobs < COMMAND_JOBS_MAX ? b->jobs : COMMAND_JOBS_MAX)
                          : b->jobs;
    struct drain_spec d = {
        .mode = command ? "command" : "noop", .target = n,
        .concurrency = command ? 8 : b->concurrency,
        .workers = command ? 1 : b->workers, .sql_check = 1,
    };
    struct drain_out o;
    struct result r;
    char cfgname[48];
    int rc;

    if ((rc = reset_queue(b)) != 0 ||
        (rc = fill_batch(b, n, command ? KIND_CMD : KIND_NOOP, NULL)) != 0 ||
        (rc = sql(b->pg, "ANALYZE skipq.jobs")) != 0 || (rc = run_drain(b, &d, &o)) != 0)
        return rc;
    /* c16 (prefetch auto), c16p200 (prefetch 200), c16p200w2 (and worker
     * processes), c16del (on_success delete) */
    int k = snprintf(cfgname, sizeof cfgname, "c%d", d.concurrency);
    if (b->prefetch != SKIPQ_PREFETCH_AUTO)
        k += snprintf(cfgname + k, sizeof cfgname - (size_t)k, "p%d", b->prefetch);
    if (b->on_success == SKIPQ_ON_SUCCESS_DELETE)
        k += snprintf(cfgname + k, sizeof cfgname - (size_t)k, "del");
    if (d.workers > 1)
        snprintf(cfgname + k, sizeof cfgname - (size_t)k, "w%d", d.workers);
    result_init(&r, command ? "command_drain" : "drain", cfgname);
    r.jobs = n;
    r.seconds = o.seconds;
    r.jobs_per_s = (double)n / o.seconds;
    r.cpu_s = o.cpu_s;
    r.max_rss_kb = o.max_rss_kb;
    return report(b, &r);
}

/* Time the worker's claim (16 rows, rolled back) and check its plan. */
static int
claim_probe(struct bench *b, struct result *r)
{
    static const char *const v[6] = {"default", "-32768", "32767",
                                     "{" KIND_NOOP "}", /* NOLINT: one literal */
                                     "16", "0"};
    enum { PROBES = 30 };
    double ms[PROBES];
    PGresult *res = PQprepare(b->pg, "bench_claim",
                              /* exactly what the worker runs */ skipq_sql_text("claim"), 0, NULL);
    int rc = 0;

    /* what the worker runs: prepared once, in a transaction opened by
     * its settings statement (generic plan, no JIT: worker.c cycle()) */
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = cli_db_fail(b->pg, res, "bench: could not prepare the claim");
        PQclear(res);
        return rc;
    }
    PQclear(res);
    if ((rc = sql(b->pg, "BEGIN")) != 0 || (rc = sql(b->pg, skipq_sql_text("cycle_quick"))) != 0 ||
        (rc = sqlp(b->pg, &res, "EXPLAIN EXECUTE bench_claim('default', -32768, 32767,"
                                " '{" KIND_NOOP "}', 16, 0)", 0, NULL)) != 0)
        goto out;
    r->claim_uses_index = 0;
    for (int i = 0; i < PQntuples(res); i++)
        if (strstr(PQgetvalue(res, i, 0), "jobs_runnable_idx"))
            r->claim_uses_index = 1;
    PQclear(res);
    PQclear(PQexec(b->pg, "ROLLBACK"));
    for (int i = 0; i < PROBES && rc == 0; i++) {
        if ((rc = sql(b->pg, "BEGIN")) != 0 || (rc = sql(b->pg, skipq_sql_text("cycle_quick"))) != 0)
            break;
        int64_t t0 = now_us();
        res = PQexecPrepared(b->pg, "bench_claim", 6, v, NULL, NULL, 0);
        ms[i] = (double)(now_us() - t0) / 1000.0;
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            rc = cli_db_fail(b->pg, res, "bench: the claim failed");
        PQclear(res);
        PQclear(PQexec(b->pg, "ROLLBACK"));
    }
    if (rc == 0) {
        qsort(ms, PROBES, sizeof ms[0], cmp_double);
        r->claim_p50 = pct(ms, PROBES, 50);
        r->claim_p99 = pct(ms, PROBES, 99);
    }
out:
    if (PQtransactionStatus(b->pg) != PQTRANS_IDLE) /* left by an error */
        PQclear(PQexec(b->pg, "ROLLBACK"));
    PQclear(PQexec(b->pg, "DEALLOCATE bench_claim"));
    return rc;
}

/* N jobs scheduled for tomorrow, in three priorities. */
static int
fill_scheduled(struct bench *b, long long n)
{
    char num[24];
    const char *v[1] = {num};

    snprintf(num, sizeof num, "%lld", n);
    return sqlp(b->pg, NULL,
                "INSERT INTO skipq.jobs (kind, priority, run_at, payload)"
                " SELECT '" KIND_NOOP "', (g % 3::int8)::int2, now() + interval '1 day',"
                " pg_catalog.jsonb_build_object('i', g)"
                " FROM pg_catalog.generate_series(1, $1::int8) g",
                1, v);
}

/*
 * Drain rate and claim time with 10,000 and with --deep-jobs runnable
 * jobs waiting; then with --deep-jobs jobs scheduled for tomorrow, where
 * the claim is timed with nothing runnable (every claim of an idle worker
 * is such a short claim) and the drain is of 10,000 runnable jobs among
 * them.
 */
static int
bench_deep(struct bench *b)
{
    long long sizes[3] = {SMALL_BACKLOG, b->deep_jobs, b->deep_jobs};
    long long sample = b->jobs < DEEP_SAMPLE ? b->jobs : DEEP_SAMPLE;
    struct result r[3];
    double secs[3][DEEP_REPS], cpu[3][DEEP_REPS];
    int rc;

    if (sample > SMALL_BACKLOG)
        sample = SMALL_BACKLOG;
    /* The sizes in turn, DEEP_REPS times: a sample drains in a fraction
     * of a second, so one draw of each said more about that second than
     * about the backlog (0.79x and 1.66x in one sitting). The median of
     * the interleaved draws is reported. */
    for (int rep = 0; rep < DEEP_REPS; rep++) {
        for (int i = 0; i < 3; i++) {
            struct drain_spec d = {.mode = "noop", .target = sample,
                                   .concurrency = b->concurrency, .workers = 1};
            struct drain_out o;
            int scheduled = i == 2;

            if (rep == 0) {
                char cfgname[48];
                snprintf(cfgname, sizeof cfgname, "%s%lld", scheduled ? "scheduled" : "backlog",
                         sizes[i]);
                result_init(&r[i], "deep", cfgname);
            }
            if (!b->ctx->quiet && !b->json)
                fprintf(stderr, "skipq: bench: deep: filling %lld %sjobs (%d of %d)\n",
                        sizes[i], scheduled ? "scheduled " : "", rep + 1, DEEP_REPS);
            if ((rc = reset_queue(b)) != 0 ||
                (rc = (scheduled ? fill_scheduled : fill_series)(b, sizes[i])) != 0 ||
                (rc = sql(b->pg, "VACUUM ANALYZE skipq.jobs")) != 0 ||
                (rep == 0 && (rc = claim_probe(b, &r[i])) != 0) ||
                (scheduled && (rc = fill_series(b, sample)) != 0) ||
                (rc = run_drain(b, &d, &o)) != 0)
                return rc;
            secs[i][rep] = o.seconds;
            cpu[i][rep] = o.cpu_s;
            if (o.max_rss_kb > r[i].max_rss_kb)
                r[i].max_rss_kb = o.max_rss_kb;
        }
    }
    for (int i = 0; i < 3; i++) {
        qsort(secs[i], DEEP_REPS, sizeof secs[i][0], cmp_double);
        qsort(cpu[i], DEEP_REPS, sizeof cpu[i][0], cmp_double);
        r[i].backlog = sizes[i];
        r[i].jobs = sample;
        r[i].seconds = secs[i][DEEP_REPS / 2];
        r[i].jobs_per_s = (double)sample / r[i].seconds;
        r[i].cpu_s = cpu[i][DEEP_REPS / 2];
        if ((rc = report(b, &r[i])) != 0)
            return rc;
    }
    return 0;
}

/* ---- latency and steady state: a worker on a thread of ours ----------------- */

struct inproc {
    atomic_llong handled;
    long long n;
    int64_t *start_us;   /* handler start, by payload "i" */
    double *lat_ms;      /* handler start - payload "t", by "i" */
    int64_t *before_us, *after_us; /* around the enqueue call, by "i" */
};

/* The integer after "key": in a jsonb text ({"i": 5, "t": 12}). */
static int
json_int(const char *text, const char *key, long long *out)
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

static skipq_outcome
timing_handler(skipq_job *job, void *userdata)
{
    int64_t t = now_us();
    struct inproc *ip = userdata;
    const char *text = skipq_job_payload_text(job);
    long long i = -1, t0 = 0;

    if (json_int(text, "\"i\"", &i) && i >= 0 && i < ip->n) {
        ip->start_us[i] = t;
        if (json_int(text, "\"t\"", &t0))
            ip->lat_ms[i] = (double)(t - t0) / 1000.0;
        atomic_fetch_add(&ip->handled, 1);
    }
    return SKIPQ_JOB_OK;
}

struct wthread {
    skipq_worker *w;
    pthread_t th;
    skipq_rc rc;
    skipq_error err;
    int running;
};

static void *
wthread_main(void *p)
{
    struct wthread *x = p;
    x->rc = skipq_worker_run(x->w, &x->err);
    return NULL;
}

static int
inproc_start(struct bench *b, skipq_handler_fn fn, void *ud, int64_t retention_ms,
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
    if (rc == SKIPQ_OK && retention_ms > 0)
        rc = skipq_config_set_retention(cfg, retention_ms, &err);
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

static int
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

static int
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

static void
inproc_free(struct inproc *ip)
{
    free(ip->start_us);
    free(ip->lat_ms);
    free(ip->before_us);
    free(ip->after_us);
}

static int
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

static int
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

static int
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
    if ((rc = inproc_start(b, timing_handler, &ip, 0, &x)) != 0)
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
            for (long long j = i; j >= gap && start[ord[j - gap]] > start[ord[j]]; j -= gap) {
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

static int
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
    if ((rc = inproc_start(b, timing_handler, &ip, 0, &x)) != 0)
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
static int
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
            rc = cli_errorf(CLI_EXIT_FAIL, "bench: soak: %lld jobs did not drain in 2 minutes",
                            fill);
            goto out;
        }
        sleep_us(1000);
    }
    max_jps = (double)fill / ((double)(now_us() - atomic_load(&count.first_us)) / 1e6);
    if (!b->rate_set)
        rate = 0.8 * max_jps;
    if (!b->ctx->quiet)
        fprintf(stderr, "skipq: bench: soak: max %.0f jobs/s; producing %.0f jobs/s for %llds, "
                        "retention %llds, vacuum_interval %lldms\n", max_jps, rate,
                        (long long)(duration_ms / 1000), (long long)(b->retention_ms / 1000),
                        (long long)effective_vacuum_ms(b));

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
                                               " WHERE status" SKIPQ__EQ "'queued'");
            /* retention keeps up while this stays near --retention */
            long long oldest = sql_int(b->pg, "SELECT coalesce(extract(epoch FROM now() -"
                                              " min(updated_at))::int8, 0) FROM skipq.jobs"
                                              " WHERE status" SKIPQ__EQ "'succeeded'");
            if (!b->ctx->quiet)
                fprintf(stderr, "skipq: bench: soak: window %d: %.0f jobs/s, backlog %lld, "
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

/* ---- the command ------------------------------------------------------------- */

static int
parse_measurement(const char *s, unsigned *m)
{
    static const struct { const char *name; unsigned bit; } names[] = {
        {"enqueue", M_ENQUEUE}, {"drain", M_DRAIN}, {"latency", M_LATENCY},
        {"steady", M_STEADY},   {"deep", M_DEEP},   {"command", M_COMMAND},
        {"all", M_ALL},         {"soak", M_SOAK},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) {
            *m |= names[i].bit;
            return 0;
        }
    return cli_usage_error("bench: unknown measurement \"%.64s\" (enqueue, drain, "
                           "latency, steady, deep, command, all or soak)", s);
}

int
cmd_bench(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option opts[] = {
        {"jobs", required_argument, NULL, OPT_JOBS},
        {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"prefetch", required_argument, NULL, OPT_PREFETCH},
        {"on-success", required_argument, NULL, OPT_ON_SUCCESS},
        {"rate", required_argument, NULL, OPT_RATE},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"json", no_argument, NULL, OPT_JSON},
        {"deep-jobs", required_argument, NULL, OPT_DEEP_JOBS},
        {"latency-jobs", required_argument, NULL, OPT_LATENCY_JOBS},
        {"retention", required_argument, NULL, OPT_RETENTION},
        {"vacuum-interval", required_argument, NULL, OPT_VACUUM_INTERVAL},
        CLI_COMMON_LONGOPTS,
        {0, 0, 0, 0},
    };
    struct bench b = {
        .ctx = ctx, .jobs = 100000, .concurrency = 16, .workers = 1,
        .prefetch = SKIPQ_PREFETCH_AUTO,
        .rate = 200, .duration_ms = 10000, .latency_jobs = 1000, .retention_ms = 30000,
        .vacuum_ms = -1,
    };
    const char *lng = getenv("SKIPQ_LONG");
    unsigned which = 0;
    long long v;
    int c, rc = 0;

    b.deep_jobs = lng && strcmp(lng, "1") == 0 ? 1000000 : 100000;
    /* per-job INFO lines would flood stderr and slow the worker down */
    if (ctx->log_level < SKIPQ_LOG_WARN)
        ctx->log_level = SKIPQ_LOG_WARN;
    if (argc >= 2 && strcmp(argv[1], "__worker") == 0)
        return worker_child();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if ((rc = cli_once(ctx, opts, c)) != 0)
            return rc;
        switch (c) {
        case OPT_JOBS:
            if ((rc = cli_parse_int("--jobs", optarg, 1, 100000000, &v)) != 0)
                return rc;
            b.jobs = v;
            break;
        case OPT_CONCURRENCY:
            if ((rc = cli_parse_int("--concurrency", optarg, 1, 1024, &v)) != 0)
                return rc;
            b.concurrency = (int)v;
            break;
        case OPT_WORKERS:
            if ((rc = cli_parse_int("--workers", optarg, 1, 64, &v)) != 0)
                return rc;
            b.workers = (int)v;
            break;
        case OPT_PREFETCH:
            if ((rc = cli_parse_prefetch("--prefetch", optarg, &b.prefetch)) != 0)
                return rc;
            break;
        case OPT_ON_SUCCESS:
            if ((rc = cli_parse_on_success("--on-success", optarg, &b.on_success)) != 0)
                return rc;
            break;
        case OPT_RATE:
            if ((rc = cli_parse_int("--rate", optarg, 1, 1000000, &v)) != 0)
                return rc;
            b.rate = (double)v;
            b.rate_set = 1;
            break;
        case OPT_DURATION:
            if ((rc = cli_parse_duration("--duration", optarg, &b.duration_ms)) != 0)
                return rc;
            if (b.duration_ms <= 0)
                return cli_usage_error("--duration must be more than 0");
            b.duration_set = 1;
            break;
        case OPT_RETENTION:
            if ((rc = cli_parse_duration("--retention", optarg, &b.retention_ms)) != 0)
                return rc;
            if (b.retention_ms <= 0)
                return cli_usage_error("--retention must be more than 0");
            break;
        case OPT_VACUUM_INTERVAL:
            if ((rc = cli_parse_duration("--vacuum-interval", optarg, &b.vacuum_ms)) != 0)
                return rc;
            break;
        case OPT_JSON:
            b.json = 1;
            break;
        case OPT_DEEP_JOBS:
            if ((rc = cli_parse_int("--deep-jobs", optarg, 1, 100000000, &v)) != 0)
                return rc;
            b.deep_jobs = v;
            break;
        case OPT_LATENCY_JOBS:
            if ((rc = cli_parse_int("--latency-jobs", optarg, 1, 100000, &v)) != 0)
                return rc;
            b.latency_jobs = v;
            break;
        default:
            if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
                return rc;
        }
    }
    for (int i = optind; i < argc; i++)
        if ((rc = parse_measurement(argv[i], &which)) != 0)
            return rc;
    if (which == 0)
        which = M_ALL;

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    /* output piped into `head` must not kill us before drop_db() */
    struct sigaction ign, old_pipe;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old_pipe);

    rc = create_db(&b);
    if (rc == 0 && (which & M_ENQUEUE))
        rc = bench_enqueue(&b);
    if (rc == 0 && (which & M_DRAIN))
        rc = bench_drain(&b, 0);
    if (rc == 0 && (which & M_LATENCY))
        rc = bench_latency(&b);
    if (rc == 0 && (which & M_STEADY))
        rc = bench_steady(&b);
    if (rc == 0 && (which & M_DEEP))
        rc = bench_deep(&b);
    if (rc == 0 && (which & M_COMMAND))
        rc = bench_drain(&b, 1);
    if (rc == 0 && (which & M_SOAK))
        rc = bench_soak(&b);
    drop_db(&b);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    if (!b.json && b.nres > 0)
        print_table(&b);
    free(b.res);
    free(b.url);
    if (rc == 0 && interrupted)
        rc = cli_errorf(CLI_EXIT_FAIL, "bench: interrupted");
    return rc;
}
