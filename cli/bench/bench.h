/*
 * bench.h - what the files of `skipq bench` share: the options and the
 * connections of one run (struct bench), one measurement's result, the
 * private database and its SQL helpers, the worker processes and the
 * worker thread, and one entry point per measurement.
 *
 * bench.c    the command: options, signals, the measurements in order
 * report.c   results: percentiles, JSON lines, the final table
 * db.c       the private database, SQL helpers, filling the queue
 * drain.c    worker processes; the drain and command measurements
 * inproc.c   a worker on a thread of this process, timing each job
 * enqueue.c  latency.c  steady.c  deep.c  soak.c   one measurement each
 */
#ifndef SKIPQ_CLI_BENCH_H
#define SKIPQ_CLI_BENCH_H

#include "cli.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#define KIND_NOOP "bench_noop"
#define KIND_CMD "bench_cmd"

/* Operators named by schema, as the library's own statements name them,
 * so that no operator of the search_path can stand in for them. */
#define SQL_EQ " OPERATOR(pg_catalog.=) "
#define SQL_NE " OPERATOR(pg_catalog.<>) "

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
    /* command, persistent: the same handler forked per job */
    double fork_jps;
    /* soak */
    double max_jps, first_jps, last_jps;
    long long table_kb_mid, table_kb_end, index_kb_mid, index_kb_end;
    long long oldest_finished_s; /* soak: the oldest succeeded row, at the end */
    /* soak: skipq.jobs_done and its partitions (0 without it) */
    long long archive_kb_mid, archive_kb_end, archive_parts_mid, archive_parts_end;
    /* soak: pickup latency per window (payload "t" to handler start) */
    double lat_p50_first, lat_p50_last, lat_p50_drift;
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
    int64_t retention_ms;                           /* soak */
    int64_t archive_after_ms, archive_partition_ms; /* soak; 0, -1: the default */
    int windows;                                    /* soak */
    int64_t vacuum_ms; /* every worker's vacuum_interval; -1 the default */
    char *handler;     /* command: the C example handler, NULL not found */

    PGconn *admin; /* the configured database: CREATE/DROP DATABASE */
    skipq_conn *admin_conn;
    char dbname[64];
    char *url;        /* conninfo of the bench database */
    skipq_conn *conn; /* to the bench database */
    PGconn *pg;       /* borrowed from conn */

    struct result *res;
    size_t nres;
};

/* Set by SIGINT and SIGTERM: every loop of a measurement stops on it. */
extern volatile sig_atomic_t interrupted;
/* The worker on our thread, stopped by the signal handler; NULL: none. */
extern skipq_worker *volatile inproc_worker;

/* bench.c: the clock, and errors */
int64_t now_us(void);
void sleep_us(int64_t us); /* returns early on a signal */
int fail1(const skipq_error *err);

/* report.c */
int cmp_double(const void *a, const void *b);
double pct(const double *sorted, size_t n, double p);
void result_init(struct result *r, const char *metric, const char *config);
void result_latencies(struct result *r, double *ms, size_t n);
int report(struct bench *b, const struct result *r);
void print_table(const struct bench *b);

/* db.c */
int sqlp(PGconn *pg, PGresult **out, const char *sql, int n, const char *const *v);
int sql(PGconn *pg, const char *text);
long long sql_int(PGconn *pg, const char *text);
int reset_queue(struct bench *b);
int create_db(struct bench *b);
void drop_db(struct bench *b);
int fill_batch(struct bench *b, long long n, const char *kind, double *secs);
int fill_series(struct bench *b, long long n);

/* drain.c: worker processes */
struct drain_spec {
    const char *mode; /* "noop"; "command" (/bin/true), "fork" or
                       * "persistent" (the C example handler) */
    long long target; /* handled jobs that end the measurement */
    int concurrency, workers;
    int sql_check; /* wait until the table shows them succeeded */
};

struct drain_out {
    double seconds, cpu_s;
    long max_rss_kb;
};

int worker_child(void);
char **child_env(const struct bench *b, int fd, const char *mode, int conc, size_t *own);
void env_free(char **env, size_t own);
int run_drain(struct bench *b, const struct drain_spec *d, struct drain_out *o);

/* inproc.c: a worker on a thread of ours, and a handler that times jobs */
struct inproc {
    atomic_llong handled;
    long long n;
    int64_t *start_us;             /* handler start, by payload "i" */
    double *lat_ms;                /* handler start - payload "t", by "i" */
    int64_t *before_us, *after_us; /* around the enqueue call, by "i" */
};

struct wthread {
    skipq_worker *w;
    pthread_t th;
    skipq_rc rc;
    skipq_error err;
    int running;
};

/* How long the worker keeps finished rows, and where (soak); 0 and -1:
 * the library's default. */
struct inproc_keep {
    int64_t retention_ms, archive_after_ms, archive_partition_ms;
};

int payload_int(const char *text, const char *key, long long *out);
skipq_outcome timing_handler(skipq_job *job, void *userdata); /* userdata: struct inproc */
int inproc_start(struct bench *b, skipq_handler_fn fn, void *ud,
                 const struct inproc_keep *keep,
                 struct wthread *x); /* keep NULL: the library's defaults */
int inproc_stop(struct wthread *x);
int inproc_alloc(struct inproc *ip, long long n);
void inproc_free(struct inproc *ip);
int enqueue_timed(struct bench *b, long long i, int64_t *before, int64_t *after);
int wait_handled(struct inproc *ip, long long n, int64_t cap_us);

/* the measurements: 0, or the exit status of the failure (reported) */
int bench_enqueue(struct bench *b);
int bench_drain(struct bench *b, int command);
int bench_latency(struct bench *b);
int bench_steady(struct bench *b);
int bench_deep(struct bench *b);
int bench_soak(struct bench *b);

#endif
