/*
 * enqueue.c - the enqueue measurement: one job per transaction from 1 and
 * from 8 connections (and beside the plain INSERT it replaces),
 * skipq_enqueue_batch of N jobs, and N JSON lines piped into
 * `skipq enqueue KIND`.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SINGLE_JOBS_MAX 2000
#define SINGLE_THREADS 8

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
 * does (worker_session.c, idle_lock), so that skipq_enqueue notifies. */
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
    /* the worker's own statement: $1 the queues */
    const char *queues = "{default}";
    PGresult *res = PQexecParams(idle, skipq_sql_text("idle_lock"), 1, NULL, &queues, NULL,
                                 NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = cli_db_fail(idle, res, "bench: could not take the idle lock");
        PQclear(res);
        PQfinish(idle);
        return rc;
    }
    PQclear(res);
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
                    if (skipq_enqueue(conn, KIND_NOOP, payload, NULL, NULL, &err) !=
                        SKIPQ_OK)
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
        result_init(&r, "enqueue_single",
                    waiting ? "1conn-vs-insert-waiting" : "1conn-vs-insert");
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

int
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
        (rc = bench_single_vs_insert(b, single, true)) != 0 || (rc = reset_queue(b)) != 0 ||
        (rc = fill_batch(b, b->jobs, KIND_NOOP, &secs)) != 0)
        return rc;
    result_init(&r, "enqueue_bulk", "c-batch");
    r.jobs = b->jobs;
    r.seconds = secs;
    r.jobs_per_s = (double)b->jobs / secs;
    if ((rc = report(b, &r)) != 0)
        return rc;
    return bench_cli_stdin(b, b->jobs);
}
