/*
 * test_worker.c - the worker runtime against a real PostgreSQL: draining
 * with several processes (each job exactly once), retries and the dead
 * letter, pickup latency, priority order and bands, shutdown hand-back,
 * a kill -9 rescued, command timeouts, cancels, and the claim statement
 * itself (exactly n rows, the partial index, no row to two claimers), and
 * which commits wait for their WAL flush (completions) and which do not.
 */
#include "testlib.h"
#include "lock_keys.h"
#include "worker_internal.h"

#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static bool
long_mode(void)
{
    const char *v = getenv("SKIPQ_LONG");
    return v && *v && strcmp(v, "0") != 0;
}

static skipq_outcome ok_handler(skipq_job *job, void *ud);
static skipq_outcome ms_handler(skipq_job *job, void *ud); /* 1 ms */

/* A config for tests: fast polls and leases, no jitter. */
static skipq_config *
test_config(int concurrency)
{
    skipq_error err;
    skipq_config *cfg = skipq_config_new();
    ASSERT_TRUE(cfg);
    ASSERT_OK(skipq_config_set_concurrency(cfg, concurrency, &err), &err);
    ASSERT_OK(skipq_config_set_poll_interval(cfg, 200, &err), &err);
    ASSERT_OK(skipq_config_set_heartbeat_interval(cfg, 200, &err), &err);
    ASSERT_OK(skipq_config_set_lease_timeout(cfg, 2000, &err), &err);
    ASSERT_OK(skipq_config_set_shutdown_timeout(cfg, 1000, &err), &err);
    ASSERT_OK(skipq_config_set_backoff(cfg, SKIPQ_BACKOFF_FIXED, 0, 0, 0, &err), &err);
    ASSERT_OK(skipq_config_set_database(cfg, tl_url(), &err), &err);
    return cfg;
}

struct running {
    pthread_t thread;
    skipq_worker *w;
    skipq_rc rc;
    skipq_error err;
};

static void *
run_thread(void *arg)
{
    struct running *r = arg;
    r->rc = skipq_worker_run(r->w, &r->err);
    return NULL;
}

static struct running *
start_worker(skipq_worker *w)
{
    struct running *r = calloc(1, sizeof *r);
    r->w = w;
    ASSERT_EQ(pthread_create(&r->thread, NULL, run_thread, r), 0);
    return r;
}

static void
stop_worker(struct running *r)
{
    skipq_worker_stop(r->w);
    pthread_join(r->thread, NULL);
    if (r->rc != SKIPQ_OK)
        HARNESS_FAIL("worker failed: %s", r->err.message);
    skipq_worker_free(r->w);
    free(r);
}

/* ---- drain with several processes: each job exactly once ---------------- */

static atomic_int *counts; /* shared between processes: runs per job id */
static int64_t counts_max;

static skipq_outcome
count_handler(skipq_job *job, void *ud)
{
    (void)ud;
    int64_t id = skipq_job_id(job);
    if (id > 0 && id <= counts_max)
        atomic_fetch_add(&counts[id], 1);
    return SKIPQ_JOB_OK;
}

TEST(four_processes_drain_each_job_once)
{
    PGconn *pg = tl_db();
    int n = long_mode() ? 50000 : 5000;
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind, payload) "
            "SELECT 'count', jsonb_build_object('i', g) FROM generate_series(1, %d) g",
            n);
    counts_max = tl_int(pg, "SELECT max(id) FROM skipq.jobs");
    counts = mmap(NULL, (size_t)(counts_max + 1) * sizeof *counts, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_TRUE(counts != MAP_FAILED);

    int64_t t0 = tl_now_ms();
    pid_t kids[4];
    for (int k = 0; k < 4; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            skipq_error err;
            skipq_config *cfg = test_config(8);
            skipq_worker *w = NULL;
            if (skipq_worker_new(cfg, &w, &err) ||
                skipq_worker_register(w, "count", count_handler, NULL, &err))
                _exit(3);
            skipq_worker_set_once(w, 1);
            skipq_rc rc = skipq_worker_run(w, &err);
            if (rc != SKIPQ_OK)
                fprintf(stderr, "worker: %s\n", err.message);
            skipq_worker_free(w);
            skipq_config_free(cfg);
            _exit(rc == SKIPQ_OK ? 0 : 1);
        }
    }
    for (int k = 0; k < 4; k++)
        ASSERT_EQ(tl_wait_pid(kids[k], 120000), 0);
    double secs = (double)(tl_now_ms() - t0) / 1000.0;
    printf("drained %d jobs with 4 processes x 8 in %.2f s (%.0f jobs/s)\n", n, secs,
           n / secs);

    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"), n);
    ASSERT_TRUE(tl_wait_int(pg, 5000, 0,
                            "SELECT count(*) FROM skipq.jobs WHERE status <> 'succeeded'"));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE attempts <> 1"), 0);
    for (int64_t id = 1; id <= counts_max; id++)
        if (atomic_load(&counts[id]) != 1)
            HARNESS_FAIL("job %lld ran %d times", (long long)id, atomic_load(&counts[id]));
    /* every worker unregistered */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 0);
}

/* ---- retries, backoff, dead letter ---------------------------------------- */

static skipq_outcome
flaky_handler(skipq_job *job, void *ud)
{
    (void)ud;
    if (strcmp(skipq_job_kind(job), "always") == 0 || skipq_job_attempt(job) < 3)
        return skipq_job_fail(job, "boom %d", skipq_job_attempt(job));
    skipq_job_set_result(job, json_object_new_string("third time"));
    return SKIPQ_JOB_OK;
}

TEST(retries_then_dead_letter_with_backoff)
{
    PGconn *pg = tl_db();
    skipq_error err;
    skipq_config *cfg = test_config(2);
    /* exponential 300 ms: the second retry waits 600 ms */
    ASSERT_OK(skipq_config_set_backoff(cfg, SKIPQ_BACKOFF_EXPONENTIAL, 300, 10000, 0, &err),
              &err);
    ASSERT_OK(skipq_config_set_max_attempts(cfg, 5, &err), &err);
    int64_t a = tl_int(pg, "SELECT skipq.enqueue('flaky')");
    int64_t b = tl_int(pg, "SELECT skipq.enqueue('always', max_attempts => 3)");
    skipq_worker *w;
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "flaky", flaky_handler, NULL, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "always", flaky_handler, NULL, &err), &err);
    struct running *r = start_worker(w);
    ASSERT_TRUE(tl_wait_int(
        pg, 15000, 2,
        "SELECT count(*) FROM skipq.jobs WHERE status IN ('succeeded', 'failed')"));
    stop_worker(r);
    skipq_config_free(cfg);

    char *st =
        tl_str(pg,
               "SELECT status || ' ' || attempts || ' ' || jsonb_array_length(errors)"
               " || ' ' || result::text FROM skipq.jobs WHERE id = %lld",
               (long long)a);
    ASSERT_STREQ(st, "succeeded 3 2 \"third time\"");
    free(st);
    st = tl_str(pg,
                "SELECT status || ' ' || attempts || ' ' || jsonb_array_length(errors)"
                " || ' ' || last_error FROM skipq.jobs WHERE id = %lld",
                (long long)b);
    ASSERT_STREQ(st, "failed 3 3 boom 3");
    free(st);
    /* backoff: the gaps between tries follow 300 ms, 600 ms (exponential) */
    int64_t gap1 = tl_int(pg,
                          "SELECT (extract(epoch FROM (errors->1->>'at')::timestamptz"
                          " - (errors->0->>'at')::timestamptz) * 1000)::int8"
                          " FROM skipq.jobs WHERE id = %lld",
                          (long long)b);
    int64_t gap2 = tl_int(pg,
                          "SELECT (extract(epoch FROM (errors->2->>'at')::timestamptz"
                          " - (errors->1->>'at')::timestamptz) * 1000)::int8"
                          " FROM skipq.jobs WHERE id = %lld",
                          (long long)b);
    printf("backoff gaps: %lld ms, %lld ms (want 300, 600)\n", (long long)gap1,
           (long long)gap2);
    ASSERT_TRUE(gap1 >= 300 && gap1 < 300 + 400);
    ASSERT_TRUE(gap2 >= 600 && gap2 < 600 + 400);
}

/* ---- snooze: run again later, attempt not counted ---------------------------- */

static skipq_outcome
snooze_handler(skipq_job *job, void *ud)
{
    atomic_int *calls = ud;
    if (atomic_fetch_add(calls, 1) == 0)
        return skipq_job_snooze(job, 300);
    return SKIPQ_JOB_OK;
}

TEST(snooze_does_not_count_an_attempt)
{
    PGconn *pg = tl_db();
    skipq_error err;
    atomic_int calls = 0;
    skipq_config *cfg = test_config(1);
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('nap')");
    skipq_worker *w;
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "nap", snooze_handler, &calls, &err), &err);
    struct running *r = start_worker(w);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    stop_worker(r);
    skipq_config_free(cfg);
    ASSERT_EQ(atomic_load(&calls), 2);
    ASSERT_EQ(tl_int(pg, "SELECT attempts FROM skipq.jobs WHERE id = %lld", (long long)id),
              1);
    ASSERT_EQ(tl_int(pg,
                     "SELECT jsonb_array_length(errors) FROM skipq.jobs WHERE id = %lld",
                     (long long)id),
              0);
}

/* ---- pickup latency with an idle worker -------------------------------------- */

static int64_t
realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static _Atomic int64_t lat_us[256];
static atomic_int lat_n;

static skipq_outcome
latency_handler(skipq_job *job, void *ud)
{
    (void)ud;
    json_object *t0 = NULL;
    if (json_object_object_get_ex(skipq_job_payload(job), "t0", &t0)) {
        int i = atomic_fetch_add(&lat_n, 1);
        if (i < 256)
            atomic_store(&lat_us[i], realtime_us() - json_object_get_int64(t0));
    }
    return SKIPQ_JOB_OK;
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

TEST(pickup_latency_far_below_poll_interval)
{
    PGconn *pg = tl_db();
    skipq_error err;
    skipq_config *cfg = test_config(4);
    ASSERT_OK(skipq_config_set_poll_interval(cfg, 5000, &err), &err);
    skipq_worker *w;
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "ping", latency_handler, NULL, &err), &err);
    struct running *r = start_worker(w);
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1, "SELECT count(*) FROM skipq.workers"));
    usleep(300000); /* let its first poll pass: we measure NOTIFY wake-ups */
    const int n = 200;
    for (int i = 0; i < n; i++) {
        tl_exec(pg, "SELECT skipq.enqueue('ping', jsonb_build_object('t0', %lld))",
                (long long)realtime_us());
        int want = i + 1;
        int64_t end = tl_now_ms() + 5000;
        while (atomic_load(&lat_n) < want && tl_now_ms() < end)
            usleep(200);
        ASSERT_EQ(atomic_load(&lat_n), want);
        usleep(5000);
    }
    stop_worker(r);
    skipq_config_free(cfg);
    int64_t v[256];
    for (int i = 0; i < n; i++)
        v[i] = atomic_load(&lat_us[i]);
    qsort(v, (size_t)n, sizeof v[0], cmp_i64);
    double p50 = (double)v[n / 2] / 1000.0, p99 = (double)v[n * 99 / 100] / 1000.0;
    printf("pickup latency over %d jobs: p50 %.2f ms, p99 %.2f ms, max %.2f ms "
           "(poll interval 5000 ms)\n",
           n, p50, p99, (double)v[n - 1] / 1000.0);
    ASSERT_TRUE(p50 < 100.0);
    ASSERT_TRUE(p99 < 1000.0);
}

/* ---- skipq_enqueue notifies only while a worker waits --------------------------- */

static atomic_int pings;

static skipq_outcome
ping_handler(skipq_job *job, void *ud)
{
    (void)job;
    (void)ud;
    atomic_fetch_add(&pings, 1);
    return SKIPQ_JOB_OK;
}

static skipq_outcome
hold_handler(skipq_job *job, void *ud)
{
    (void)job;
    (void)ud;
    usleep(800000);
    return SKIPQ_JOB_OK;
}

/* The worker's idle locks on queue q (its backend's, in this database). */
#define IDLE_LOCKS_ON(q)                                                                   \
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"             \
    " WHERE l.locktype = 'advisory' AND l.classid = " SKIPQ__LOCK_CLASS_IDLE_S             \
    "   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())" \
    "   AND l.objid = ((hashtext('" q "')::int8 + 4294967296) %% 4294967296)::oid"         \
    "   AND l.mode = 'ShareLock' AND l.granted AND a.application_name = 'skipq worker'"
#define IDLE_LOCK_HELD IDLE_LOCKS_ON("default")

static bool
pinged(int want, int ms)
{
    int64_t end = tl_now_ms() + ms;
    while (atomic_load(&pings) < want && tl_now_ms() < end)
        usleep(1000);
    return atomic_load(&pings) >= want;
}

/*
 * An idle worker holds its queues' idle locks, and skipq_enqueue's
 * NOTIFY wakes it at once (its poll is 30 s away). A worker busy with
 * full claims gives them up; producers then send no NOTIFY, and the
 * worker still runs their jobs, in turn. Once drained, it takes them
 * again before it sleeps.
 */
TEST(skipq_enqueue_wakes_an_idle_worker_and_spares_a_busy_one)
{
    PGconn *pg = tl_db();
    PGconn *l = tl_connect();
    tl_exec(l, "LISTEN skipq");
    skipq_error err;
    skipq_config *cfg = test_config(2);
    ASSERT_OK(skipq_config_set_poll_interval(cfg, 30000, &err), &err);
    ASSERT_OK(skipq_config_set_prefetch(cfg, 0, &err), &err); /* claims of free slots */
    skipq_worker *w;
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "ping", ping_handler, NULL, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "slow", ms_handler, NULL, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "hold", hold_handler, NULL, &err), &err);
    struct running *r = start_worker(w);
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1, IDLE_LOCK_HELD));
    skipq_conn *conn;
    ASSERT_OK(skipq_conn_open(tl_url(), &conn, &err), &err);
    atomic_store(&pings, 0);
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(skipq_enqueue(conn, "ping", NULL, NULL, NULL, &err), SKIPQ_OK);
        ASSERT_TRUE(pinged(i + 1, 2000));
    }
    ASSERT_EQ(tl_count_notifies(l, 100, "default"), 5);

    /* 2,000 jobs of 1 ms at concurrency 2: a second or more of full claims */
    tl_exec(pg, "SELECT skipq.enqueue('slow', '{}') FROM generate_series(1, 2000)");
    ASSERT_TRUE(tl_wait_int(pg, 3000, 0, IDLE_LOCK_HELD));
    tl_count_notifies(l, 50, NULL); /* the batch's own */
    ASSERT_EQ(skipq_enqueue(conn, "ping", NULL, NULL, NULL, &err), SKIPQ_OK);
    ASSERT_EQ(tl_count_notifies(l, 100, NULL), 0);
    ASSERT_TRUE(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'slow'"
                           " AND status = 'queued'") > 0); /* it was busy */
    ASSERT_TRUE(pinged(6, 10000));
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1, IDLE_LOCK_HELD));
    ASSERT_TRUE(tl_wait_int(pg, 5000, 0,
                            "SELECT count(*) FROM skipq.jobs WHERE status <> 'succeeded'"));

    /* waiting again: woken at once */
    ASSERT_EQ(skipq_enqueue(conn, "ping", NULL, NULL, NULL, &err), SKIPQ_OK);
    ASSERT_TRUE(pinged(7, 2000));
    ASSERT_EQ(tl_count_notifies(l, 100, "default"), 1);

    /* every slot taken by long jobs, no claim to come back full: it gives
     * the lock up all the same, and takes it again once they are done */
    tl_exec(pg, "SELECT skipq.enqueue('hold', '{}') FROM generate_series(1, 2)");
    ASSERT_TRUE(tl_wait_int(pg, 700, 0, IDLE_LOCK_HELD));
    ASSERT_TRUE(tl_wait_int(pg, 3000, 1, IDLE_LOCK_HELD));
    ASSERT_TRUE(tl_wait_int(pg, 3000, 0,
                            "SELECT count(*) FROM skipq.jobs WHERE status <> 'succeeded'"));
    skipq_conn_close(conn);
    stop_worker(r);
    skipq_config_free(cfg);
    PQfinish(l);
}

/*
 * A producer holding an exclusive idle lock (here for a whole transaction,
 * as a hand-written one might) makes the worker wait only a while at a
 * time (IDLE_WAIT_MS): it claims again every few tens of milliseconds
 * until the lock is free, so a job committed meanwhile without a NOTIFY
 * runs at once (the poll is 30 s away), and its heartbeat goes on. All or
 * none: while queue b's lock is taken, the worker keeps none between its
 * waits, not default's alone. Then it holds both as usual.
 */
TEST(worker_waits_for_its_idle_locks_briefly_and_all_or_none)
{
    PGconn *pg = tl_db();
    PGconn *holder = tl_connect();
    skipq_error err;
    tl_exec(holder, "BEGIN; SELECT pg_advisory_xact_lock(" SKIPQ__LOCK_CLASS_IDLE_S
                    ", hashtext('b'))");
    skipq_config *cfg = test_config(2);
    ASSERT_OK(skipq_config_set_poll_interval(cfg, 30000, &err), &err);
    ASSERT_OK(skipq_config_add_queue(cfg, "b", &err), &err); /* default and b */
    skipq_worker *w;
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "ping", ping_handler, NULL, &err), &err);
    atomic_store(&pings, 0);
    struct running *r = start_worker(w);
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1, "SELECT count(*) FROM skipq.workers"));
    usleep(200000);
    /* (a try holds default's lock for an instant: wait for it to be
     * given back, as it is at every try, rather than read one instant) */
    ASSERT_TRUE(tl_wait_int(pg, 1000, 0, IDLE_LOCKS_ON("default")));
    ASSERT_TRUE(tl_wait_int(pg, 1000, 0, IDLE_LOCKS_ON("b")));
    /* it does wait for b's, a while at a time (its heartbeat goes on),
     * on one session: a wait that times out gives back what it took
     * rather than dropping the connection */
    ASSERT_TRUE(tl_wait_int(
        pg, 1000, 1,
        "SELECT count(*) FROM pg_locks l"
        " JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.classid = " SKIPQ__LOCK_CLASS_IDLE_S
        " AND l.objid = hashtext('b')::oid AND l.mode = 'ShareLock'"
        " AND NOT l.granted AND a.application_name = 'skipq worker'"
        " AND a.datname = current_database()"));
    /* (the suite's other tests run their workers in other databases) */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM pg_stat_activity"
                         " WHERE application_name = 'skipq worker'"
                         " AND datname = current_database()"),
              1);
    int64_t session = tl_int(pg, "SELECT pid FROM pg_stat_activity"
                                 " WHERE application_name = 'skipq worker'"
                                 " AND datname = current_database()");
    char *beat = tl_str(pg, "SELECT heartbeat_at::text FROM skipq.workers");
    tl_exec(pg, "BEGIN; SET LOCAL skipq.notify = 'after_commit';"
                " SELECT skipq.enqueue('ping'); COMMIT");
    ASSERT_TRUE(pinged(1, 2000));
    ASSERT_TRUE(tl_wait_int(pg, 2000, 1,
                            "SELECT count(*) FROM skipq.workers"
                            " WHERE heartbeat_at > '%s'",
                            beat));
    free(beat);
    tl_exec(holder, "COMMIT");
    ASSERT_TRUE(tl_wait_int(pg, 2000, 1, IDLE_LOCKS_ON("default")));
    ASSERT_TRUE(tl_wait_int(pg, 2000, 1, IDLE_LOCKS_ON("b")));
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                     " AND classid = " SKIPQ__LOCK_CLASS_IDLE_S
                     " AND granted AND pid = %lld",
                     (long long)session),
              2);
    stop_worker(r);
    skipq_config_free(cfg);
    PQfinish(holder);
}

/*
 * No wake-up lost as a producer's skipq_enqueue moves between its one
 * statement (notifying in it when it is the only producer) and its
 * pipeline (when it is not), and the worker between busy (idle locks
 * given up) and idle. Each round: a burst of 1 ms jobs at concurrency 1
 * keeps the worker's claims full until it gives its lock up; the
 * producer's tries then find no worker waiting, and (in the odd rounds,
 * which took the pipeline) after 64 of them it sends the one statement;
 * then jobs come a little slower than the
 * worker runs them, so it catches up and goes idle between them, many
 * times, while the producer's commits hold the idle lock. The poll is
 * 30 s away: a round whose last jobs lost their wake-up would wait for
 * it, and each round must finish in 5 s.
 */
TEST(no_wake_up_lost_while_producer_and_worker_change_modes)
{
    PGconn *pg = tl_db();
    skipq_error err;
    skipq_config *cfg = test_config(1);
    ASSERT_OK(skipq_config_set_poll_interval(cfg, 30000, &err), &err);
    ASSERT_OK(skipq_config_set_prefetch(cfg, 0, &err), &err); /* full claims while busy */
    skipq_worker *w;
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "slow", ms_handler, NULL, &err), &err);
    struct running *r = start_worker(w);
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1, IDLE_LOCK_HELD));
    skipq_conn *conn;
    ASSERT_OK(skipq_conn_open(tl_url(), &conn, &err), &err);
    unsigned seed = 12345;
    long long total = 0;
    for (int round = 0; round < 12; round++) {
        /* odd rounds with a second producer connected, which sends the
         * first one's notifying calls to the pipeline */
        skipq_conn *other = NULL;
        if (round % 2) {
            ASSERT_OK(skipq_conn_open(tl_url(), &other, &err), &err);
            ASSERT_EQ(skipq_enqueue(other, "slow", NULL, NULL, NULL, &err), SKIPQ_OK);
        }
        for (int i = 0; i < 150; i++)
            ASSERT_EQ(skipq_enqueue(conn, "slow", NULL, NULL, NULL, &err), SKIPQ_OK);
        ASSERT_TRUE(tl_wait_int(pg, 3000, 0, IDLE_LOCK_HELD)); /* busy: given up */
        for (int i = 0; i < 100; i++) {
            ASSERT_EQ(skipq_enqueue(conn, "slow", NULL, NULL, NULL, &err), SKIPQ_OK);
            usleep(rand_r(&seed) % 1500);
        }
        total += 250 + (other != NULL);
        skipq_conn_close(other);
        if (!tl_wait_int(pg, 5000, total,
                         "SELECT count(*) FROM skipq.jobs"
                         " WHERE status = 'succeeded'"))
            HARNESS_FAIL("round %d: %lld of %lld done after 5 s", round,
                         (long long)tl_int(pg, "SELECT count(*) FROM skipq.jobs"
                                               " WHERE status = 'succeeded'"),
                         total);
    }
    skipq_conn_close(conn);
    stop_worker(r);
    skipq_config_free(cfg);
}

/* ---- a delayed job starts on time, not at the next poll ------------------------- */

static _Atomic int64_t ran_at_us;

static skipq_outcome
mark_handler(skipq_job *job, void *ud)
{
    (void)job;
    (void)ud;
    atomic_store(&ran_at_us, realtime_us());
    return SKIPQ_JOB_OK;
}

TEST(delayed_job_starts_at_run_at)
{
    PGconn *pg = tl_db();
    skipq_error err;
    skipq_config *cfg = test_config(1);
    ASSERT_OK(skipq_config_set_poll_interval(cfg, 30000, &err), &err);
    skipq_worker *w;
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "later", mark_handler, NULL, &err), &err);
    struct running *r = start_worker(w);
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1, "SELECT count(*) FROM skipq.workers"));
    usleep(200000);
    int64_t t0 = realtime_us();
    tl_exec(
        pg,
        "SELECT skipq.enqueue('later', run_at => now() + interval '1500 milliseconds')");
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    stop_worker(r);
    skipq_config_free(cfg);
    double waited = (double)(atomic_load(&ran_at_us) - t0) / 1000.0;
    printf("delayed 1500 ms, started after %.0f ms (poll interval 30 s)\n", waited);
    ASSERT_TRUE(waited >= 1450 && waited < 2500);
}

/* ---- priorities --------------------------------------------------------------- */

static int order[64];
static atomic_int norder;

static skipq_outcome
order_handler(skipq_job *job, void *ud)
{
    (void)ud;
    int i = atomic_fetch_add(&norder, 1);
    if (i < 64)
        order[i] = skipq_job_priority(job);
    return SKIPQ_JOB_OK;
}

/* One executor; prefetch -1 leaves the default (auto: nothing claimed
 * ahead before 16 runs), else every job is claimed at once and waits. */
static void
runs_in_priority_order(int prefetch)
{
    PGconn *pg = tl_db();
    skipq_error err;
    tl_exec(pg,
            "SELECT skipq.enqueue('p', priority => p) FROM "
            "unnest(ARRAY['low','normal','high','low','high','normal','5','-20','20']) p");
    skipq_config *cfg = test_config(1);
    if (prefetch >= 0)
        ASSERT_OK(skipq_config_set_prefetch(cfg, prefetch, &err), &err);
    skipq_worker *w;
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "p", order_handler, NULL, &err), &err);
    struct running *r = start_worker(w);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 9,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    stop_worker(r);
    skipq_config_free(cfg);
    ASSERT_EQ(atomic_load(&norder), 9);
    int want[9] = {20, 10, 10, 5, 0, 0, -10, -10, -20};
    for (int i = 0; i < 9; i++)
        ASSERT_EQ(order[i], want[i]);
}

TEST(one_worker_runs_high_before_normal_before_low)
{
    runs_in_priority_order(-1);
}

/* All nine claimed in one cycle (three claims, one per band) and parked:
 * the executor starts them in claim order. They used to be queued in
 * reverse (lowest band first). */
TEST(claimed_ahead_jobs_start_in_claim_order)
{
    runs_in_priority_order(20);
}

TEST(high_band_worker_touches_only_high_jobs)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "SELECT skipq.enqueue('p', priority => p) FROM "
                "unnest(ARRAY['low','normal','high','-10','9','10','11']) p");
    char *out = NULL, *err = NULL;
    int rc = tl_skipq_run(NULL, &out, &err,
                          "worker --priority high --once --handler p=true");
    if (rc != 0)
        HARNESS_FAIL("worker exited %d: %s", rc, err);
    free(out);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"), 3);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"
                         " AND priority < 10"),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"
                         " AND attempts = 0 AND priority < 10"),
              4);
    /* a number serves exactly that priority */
    rc = tl_skipq_run(NULL, NULL, NULL, "worker --priority 9 --once --handler p=true");
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"), 4);
}

/* ---- jobs of kinds we have no handler for are left alone -------------------------- */

TEST(unhandled_kind_is_left_for_another_worker)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "SELECT skipq.enqueue('mine'), skipq.enqueue('theirs')");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "worker --once --handler mine=true"), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'mine'"
                         " AND status = 'succeeded'"),
              1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'theirs'"
                         " AND status = 'queued' AND attempts = 0"),
              1);
}

/* ---- the CLI worker's command contract --------------------------------------------- */

TEST(command_handler_gets_payload_and_env)
{
    PGconn *pg = tl_db();
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('env', '{\"x\": 41}', queue => 'q1')");
    int rc = tl_skipq_run(
        NULL, NULL, NULL,
        "worker --queue q1 --once --handler 'env=printf \"{\\\"id\\\":%%s,\\\"kind\\\":\\\"%%s\\\","
        "\\\"attempt\\\":%%s,\\\"in\\\":%%s}\" \"$SKIPQ_JOB_ID\" \"$SKIPQ_JOB_KIND\" "
        "\"$SKIPQ_JOB_ATTEMPT\" \"$(cat)\"'");
    ASSERT_EQ(rc, 0);
    char *res = tl_str(pg, "SELECT result::text FROM skipq.jobs WHERE id = %lld",
                       (long long)id);
    char want[256];
    snprintf(want, sizeof want,
             "{\"id\": %lld, \"in\": {\"x\": 41}, \"kind\": \"env\", \"attempt\": 1}",
             (long long)id);
    ASSERT_STREQ(res, want);
    free(res);
    /* non-JSON stdout is kept as {"output": ...}; a failure keeps stderr's end */
    tl_exec(pg, "SELECT skipq.enqueue('txt', queue => 'q1'), "
                "skipq.enqueue('bad', queue => 'q1', max_attempts => 1)");
    rc = tl_skipq_run(NULL, NULL, NULL,
                      "worker --queue q1 --once --handler 'txt=echo hi' "
                      "--handler 'bad=echo nope >&2; exit 7'");
    ASSERT_EQ(rc, 0); /* failures are in the table, not the exit status */
    res = tl_str(pg, "SELECT result::text FROM skipq.jobs WHERE kind = 'txt'");
    ASSERT_STREQ(res, "{\"output\": \"hi\\n\"}");
    free(res);
    res = tl_str(pg,
                 "SELECT status || ': ' || last_error FROM skipq.jobs WHERE kind = 'bad'");
    ASSERT_STREQ(res, "failed: exit status 7: nope");
    free(res);
}

/* Is any process whose command line contains marker alive? */
static bool
marker_alive(const char *marker)
{
    /* anchored: the marker also appears in the worker's --handler
     * argument and in the shell running pgrep */
    char *out = NULL;
    tl_run(NULL, &out, NULL, "pgrep -f -- '^%s' || true", marker);
    bool alive = out && out[0];
    free(out);
    return alive;
}

static bool
marker_gone(void *arg)
{
    return !marker_alive(arg);
}

static bool
marker_up(void *arg)
{
    return marker_alive(arg);
}

TEST(command_timeout_kills_the_whole_group)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "SELECT skipq.enqueue('slow', max_attempts => 1)");
    int64_t t0 = tl_now_ms();
    /* the handler starts a background child too: both must die */
    int rc = tl_skipq_run(NULL, NULL, NULL,
                          "worker --once --timeout 1s --handler "
                          "'slow=sleep 41.123 & sleep 42.123; echo done'");
    ASSERT_EQ(rc, 0);
    int64_t took = tl_now_ms() - t0;
    char *res = tl_str(pg, "SELECT status || ': ' || last_error FROM skipq.jobs");
    ASSERT_STREQ(res, "failed: timed out after 1s");
    free(res);
    printf("timed out and exited after %lld ms\n", (long long)took);
    ASSERT_TRUE(took < 5000);
    ASSERT_TRUE(wait_until(2000, marker_gone, "sleep 41.123"));
    ASSERT_TRUE(wait_until(2000, marker_gone, "sleep 42.123"));
}

TEST(per_job_timeout_overrides_the_kind)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "SELECT skipq.enqueue('nap', max_attempts => 1, timeout => '300 ms')");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL,
                           "worker --once --timeout 20s --handler 'nap=sleep 5'"),
              0);
    char *res = tl_str(pg, "SELECT status || ': ' || last_error FROM skipq.jobs");
    ASSERT_STREQ(res, "failed: timed out after 300ms");
    free(res);
}

TEST(command_killed_by_signal_is_named)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "SELECT skipq.enqueue('crash', max_attempts => 1)");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL,
                           "worker --once --handler 'crash=kill -SEGV $$'"),
              0);
    char *res = tl_str(pg, "SELECT status || ': ' || last_error FROM skipq.jobs");
    ASSERT_STREQ(res, "failed: killed by SIGSEGV");
    free(res);
}

/* ---- shutdown, kill -9, cancel --------------------------------------------------- */

static bool
four_handlers_run(void *arg)
{
    (void)arg;
    char *out = NULL;
    tl_run(NULL, &out, NULL, "pgrep -fc '^sleep (0\\.71|43\\.5)$' || true");
    bool ok = out && atoi(out) == 4;
    free(out);
    return ok;
}

TEST(sigterm_finishes_short_jobs_and_hands_back_long_ones)
{
    PGconn *pg = tl_db();
    const char *cfg =
        tl_write_config("worker:\n  concurrency: 4\n  shutdown_timeout: 1500ms\n"
                        "  poll_interval: 200ms\n");
    tl_exec(pg, "SELECT skipq.enqueue('long'), skipq.enqueue('short'), "
                "skipq.enqueue('short'), skipq.enqueue('short')");
    const char *log = tl_tmpfile(".log");
    pid_t pid = tl_spawn(log,
                         "exec %s worker --config %s --handler 'long=sleep 43.5' "
                         "--handler 'short=sleep 0.71'",
                         tl_skipq(), cfg);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 4,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"));
    /* claimed is not started: a job no executor has started yet is handed
     * back at once on SIGTERM; wait until all four handlers run */
    ASSERT_TRUE(wait_until(10000, four_handlers_run, NULL));
    kill(pid, SIGTERM);
    int st = tl_wait_pid(pid, 10000);
    ASSERT_EQ(st, 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'short'"
                         " AND status = 'succeeded'"),
              3);
    char *res = tl_str(pg, "SELECT status || ' ' || attempts || ' ' || (locked_by IS NULL)"
                           " FROM skipq.jobs WHERE kind = 'long'");
    ASSERT_STREQ(res, "queued 0 true");
    free(res);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 0);
    ASSERT_TRUE(wait_until(3000, marker_gone, "sleep 43.5"));
}

/* prefetch: claims beyond concurrency wait in the worker; a stop hands
 * them back at once, unstarted and uncounted, while the running one ends */
TEST(prefetch_claims_ahead_and_hands_back_unstarted)
{
    PGconn *pg = tl_db();
    const char *cfg = tl_write_config("worker:\n  concurrency: 1\n  prefetch: 2\n"
                                      "  shutdown_timeout: 20s\n  poll_interval: 100ms\n");
    tl_exec(pg, "SELECT skipq.enqueue('slow') FROM generate_series(1, 6)");
    pid_t pid = tl_spawn(NULL, "exec %s worker --config %s --handler 'slow=sleep 6.5'",
                         tl_skipq(), cfg);
    /* 1 running on the executor + 2 prefetched, and no more */
    ASSERT_TRUE(tl_wait_int(pg, 10000, 3,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 3);
    /* claimed is not started: wait for the executor's handler process, or
     * a stop hands all three back (seen under ASan on a loaded machine) */
    ASSERT_TRUE(wait_until(10000, marker_up, "sleep 6\\.5$"));
    kill(pid, SIGTERM);
    /* the two unstarted ones are back long before the running one ends
     * (within 4 s of the 6.5 s it runs: room for a loaded CI machine) */
    ASSERT_TRUE(tl_wait_int(pg, 4000, 5,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"
                            " AND attempts = 0 AND locked_by IS NULL"));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"), 1);
    ASSERT_EQ(tl_wait_pid(pid, 20000), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"
                         " AND attempts = 1"),
              1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"
                         " AND attempts = 0"),
              5);
}

/* ---- automatic prefetch ------------------------------------------------------------ */

static atomic_int slow_release;

static skipq_outcome
short_or_slow_handler(skipq_job *job, void *ud)
{
    (void)ud;
    if (strcmp(skipq_job_kind(job), "slow") == 0) {
        for (int i = 0; i < 2000 && !atomic_load(&slow_release); i++)
            usleep(5000);
    }
    return SKIPQ_JOB_OK;
}

/*
 * prefetch: auto (the default) claims ahead while jobs are short, so one
 * round trip carries more rows; when long jobs follow, the jobs it parked
 * go back to the queue for other workers within AUTO_STALE_MS, unstarted
 * and uncounted, and it stops claiming ahead.
 */
TEST(auto_prefetch_claims_ahead_for_short_jobs_and_gives_back_parked_ones)
{
    PGconn *pg = tl_db();
    skipq_error err;
    skipq_config *cfg = test_config(2);
    ASSERT_EQ(skipq_config_prefetch(cfg), SKIPQ_PREFETCH_AUTO);
    const int n = 20000;
    tl_exec(pg, "INSERT INTO skipq.jobs (kind) SELECT 'short' FROM generate_series(1, %d)",
            n);
    skipq_worker *w;
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "short", short_or_slow_handler, NULL, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "slow", short_or_slow_handler, NULL, &err), &err);
    atomic_store(&slow_release, 0);
    struct running *r = start_worker(w);

    /* more rows running than executors: claimed ahead */
    ASSERT_TRUE(tl_wait_int(pg, 30000, 1,
                            "SELECT (count(*) > 2)::int FROM skipq.jobs"
                            " WHERE status = 'running'"));
    ASSERT_TRUE(tl_wait_int(pg, 60000, n,
                            "SELECT count(*) FROM skipq.jobs"
                            " WHERE status = 'succeeded'"));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE attempts <> 1"), 0);

    /* long jobs now: all six are claimed at once (the average says short),
     * two start, and the four parked ones go back */
    tl_exec(pg, "SELECT skipq.enqueue('slow') FROM generate_series(1, 6)");
    ASSERT_TRUE(tl_wait_int(pg, 10000, 4,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'slow'"
                            " AND status = 'queued' AND attempts = 0"
                            " AND locked_by IS NULL"));
    /* in their old place: run_at as enqueued */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'slow'"
                         " AND status = 'queued' AND run_at = created_at"),
              4);
    /* and are not claimed ahead again while the two run */
    ASSERT_TRUE(tl_wait_int(pg, 5000, 2,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'slow'"
                            " AND status = 'running'"));
    int64_t until = tl_now_ms() + 500;
    while (tl_now_ms() < until) {
        ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"),
                  2);
        usleep(20000);
    }
    atomic_store(&slow_release, 1);
    ASSERT_TRUE(tl_wait_int(pg, 20000, 6,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'slow'"
                            " AND status = 'succeeded' AND attempts = 1"));
    stop_worker(r);
    skipq_config_free(cfg);
}

static atomic_int two_ms_runs;

static skipq_outcome
two_ms_handler(skipq_job *job, void *ud)
{
    (void)job, (void)ud;
    usleep(2000);
    atomic_fetch_add(&two_ms_runs, 1);
    return SKIPQ_JOB_OK;
}

/* n jobs of 2 ms and a worker at concurrency 8 on them, prefetch fixed
 * at 32 (so that a late wake-up on a loaded machine does not turn
 * claiming ahead, and with it the wait for company, off as `auto`
 * would); two_ms_runs counts the runs from 0. */
static struct running *
start_two_ms_flood(PGconn *pg, int n)
{
    skipq_error err;
    skipq_config *cfg = test_config(8);
    ASSERT_OK(skipq_config_set_prefetch(cfg, 32, &err), &err);
    tl_exec(pg, "INSERT INTO skipq.jobs (kind) SELECT 'two_ms' FROM generate_series(1, %d)",
            n);
    skipq_worker *w;
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    skipq_config_free(cfg); /* the worker keeps its own copy */
    ASSERT_OK(skipq_worker_register(w, "two_ms", two_ms_handler, NULL, &err), &err);
    atomic_store(&two_ms_runs, 0);
    return start_worker(w);
}

/*
 * Short jobs with prefetched ones waiting: a finished job's completion
 * waits (at most AUTO_WAIT_MS) for others, so one round trip and one
 * commit carry several. Jobs completed by one statement share its
 * transaction's now() as finished_at: one distinct value per completion.
 * Completing each job as it finished gave 1.6-1.8 jobs a completion here,
 * and batches of half the executors about 4.
 */
TEST(short_jobs_complete_in_batches)
{
    PGconn *pg = tl_db();
    const int n = 1200;
    struct running *r = start_two_ms_flood(pg, n);
    ASSERT_TRUE(tl_wait_int(pg, 60000, n,
                            "SELECT count(*) FROM skipq.jobs"
                            " WHERE status = 'succeeded'"));
    stop_worker(r);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE attempts <> 1"), 0);
    /* the last 1000, past the start */
    int64_t per100 = tl_int(pg,
                            "SELECT (100 * count(*) / count(DISTINCT finished_at))::int8"
                            " FROM (SELECT finished_at FROM skipq.jobs"
                            "       ORDER BY finished_at DESC LIMIT 1000) t");
    fprintf(stderr, "jobs per completion: %.2f\n", (double)per100 / 100.0);
    ASSERT_TRUE(per100 >= 250);
}

/* A stop in the middle of a flood of short jobs: the completions held
 * back for company are written before the worker returns, the jobs
 * claimed ahead go back unstarted, and nothing is left running. */
TEST(stop_writes_the_completions_it_held_back)
{
    PGconn *pg = tl_db();
    const int n = 5000;
    struct running *r = start_two_ms_flood(pg, n);
    ASSERT_TRUE(tl_wait_int(pg, 30000, 1,
                            "SELECT (count(*) >= 300)::int FROM skipq.jobs"
                            " WHERE status = 'succeeded'"));
    stop_worker(r);
    int64_t ok = tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"
                            " AND attempts = 1");
    ASSERT_TRUE(ok < n); /* stopped in the middle */
    ASSERT_EQ(ok, atomic_load(&two_ms_runs));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"
                         " AND attempts = 0 AND locked_by IS NULL"),
              n - ok);
}

TEST(kill_9_worker_job_runs_again_elsewhere)
{
    PGconn *pg = tl_db();
    const char *cfg =
        tl_write_config("worker:\n  lease_timeout: 2s\n  heartbeat_interval: 300ms\n"
                        "  poll_interval: 200ms\n");
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('once', max_attempts => 5)");
    /* first attempt hangs; a later one succeeds */
    const char *hcmd = "'once=[ \"$SKIPQ_JOB_ATTEMPT\" = 1 ] && exec sleep 44.5; echo ok'";
    pid_t a = tl_spawn(NULL, "exec %s worker --config %s --handler %s", tl_skipq(), cfg,
                       hcmd);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"));
    kill(a, SIGKILL);
    tl_wait_pid(a, 5000);
    tl_run(NULL, NULL, NULL, "pkill -f 'sleep 44.5' || true");
    pid_t b = tl_spawn(NULL, "exec %s worker --config %s --handler %s", tl_skipq(), cfg,
                       hcmd);
    ASSERT_TRUE(tl_wait_int(pg, 15000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    kill(b, SIGTERM);
    ASSERT_EQ(tl_wait_pid(b, 10000), 0);
    char *res =
        tl_str(pg,
               "SELECT attempts || ' ' || jsonb_array_length(errors) || ' ' ||"
               " (last_error LIKE 'worker %% lost') FROM skipq.jobs WHERE id = %lld",
               (long long)id);
    ASSERT_STREQ(res, "2 1 true");
    free(res);
}

TEST(cancel_stops_a_running_command)
{
    PGconn *pg = tl_db();
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('long')");
    int64_t q =
        tl_int(pg, "SELECT skipq.enqueue('never', run_at => now() + interval '1 hour')");
    pid_t pid = tl_spawn(NULL,
                         "exec %s worker --handler 'long=exec sleep 45.5' "
                         "--handler 'never=true'",
                         tl_skipq());
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"));
    char *out = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs cancel %lld %lld", (long long)id,
                           (long long)q),
              0);
    free(out);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE id = %lld"
                            " AND status = 'cancelled'",
                            (long long)id));
    ASSERT_EQ(
        tl_int(pg,
               "SELECT count(*) FROM skipq.jobs WHERE id = %lld AND status = 'cancelled'"
               " AND attempts = 0",
               (long long)q),
        1);
    ASSERT_TRUE(wait_until(3000, marker_gone, "sleep 45.5"));
    kill(pid, SIGTERM);
    ASSERT_EQ(tl_wait_pid(pid, 10000), 0);
}

/* ---- the claim statement ------------------------------------------------------------ */

/* The text of an EXPLAIN, one line per plan line; the caller frees it. */
static char *
plan_of(PGconn *pg, const char *explain)
{
    PGresult *res = PQexec(pg, explain);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        HARNESS_FAIL("%s: %s", explain, PQresultErrorMessage(res));
    size_t len = 1;
    for (int i = 0; i < PQntuples(res); i++)
        len += strlen(PQgetvalue(res, i, 0)) + 1;
    char *plan = calloc(1, len);
    if (!plan)
        HARNESS_FAIL("out of memory");
    for (int i = 0; i < PQntuples(res); i++) {
        strcat(plan, PQgetvalue(res, i, 0));
        strcat(plan, "\n");
    }
    PQclear(res);
    return plan;
}

static PGconn *
claim_conn(void)
{
    PGconn *c = tl_connect();
    PGresult *res = PQprepare(c, "claim", skipq__claim_sql, 0, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        HARNESS_FAIL("prepare: %s", PQresultErrorMessage(res));
    PQclear(res);
    return c;
}

static PGresult *
claim(PGconn *c, int n, int worker)
{
    char lim[16], wid[16];
    snprintf(lim, sizeof lim, "%d", n);
    snprintf(wid, sizeof wid, "%d", worker);
    const char *v[6] = {"default", "-32768", "32767", "{c}", lim, wid};
    PGresult *res = PQexecPrepared(c, "claim", 6, v, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        HARNESS_FAIL("claim: %s", PQresultErrorMessage(res));
    return res;
}

struct claimer {
    pthread_t t;
    int worker;
    int64_t *ids;
    int n;
};

static void *
claimer_thread(void *arg)
{
    struct claimer *c = arg;
    PGconn *pg = claim_conn();
    /* the plan the worker runs (see cycle()) */
    PGresult *set = PQexec(pg, "SET plan_cache_mode = force_generic_plan");
    if (PQresultStatus(set) != PGRES_COMMAND_OK)
        HARNESS_FAIL("SET: %s", PQresultErrorMessage(set));
    PQclear(set);
    for (;;) {
        PGresult *res = claim(pg, 10, c->worker);
        int n = PQntuples(res);
        if (n > 10)
            HARNESS_FAIL("a claim of 10 returned %d rows", n);
        for (int i = 0; i < n; i++)
            c->ids[c->n++] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        PQclear(res);
        if (n == 0)
            break;
    }
    PQfinish(pg);
    return NULL;
}

/* EXPLAIN of the prepared claim: the partial index, no sequential scan. */
static void
claim_plan_uses_the_index(PGconn *c)
{
    char *plan = plan_of(c,
                         "EXPLAIN EXECUTE claim('default', -32768, 32767, '{c}', 10, 1)");
    ASSERT_CONTAINS(plan, "Index Scan using jobs_runnable_idx");
    if (strstr(plan, "Seq Scan on jobs"))
        HARNESS_FAIL("the claim reads the whole table:\n%s", plan);
    free(plan);
}

/* EXPLAIN ANALYZE of the claim in a transaction, rolled back; `settings`
 * (may be NULL) runs first in it. The caller frees the text. */
static char *
claim_analyzed(PGconn *c, const char *settings)
{
    PGresult *res = PQexec(c, "BEGIN");
    ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    if (settings) {
        res = PQexec(c, settings);
        ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
        PQclear(res);
    }
    char *plan = plan_of(c, "EXPLAIN (ANALYZE) EXECUTE claim('default', -32768, 32767,"
                            " '{c}', 10, 1)");
    res = PQexec(c, "ROLLBACK");
    ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    return plan;
}

/*
 * The generic claim plan does not know its LIMIT and is costed at a tenth
 * of the table: on a million rows that passed jit_above_cost, and every
 * claim was JIT-compiled (13.7 ms a claim instead of 0.4). The worker's
 * transactions turn JIT off; here jit_above_cost 0 stands in for the
 * million rows.
 */
static PGconn *
costly_claim_conn(void)
{
    PGconn *c = claim_conn();
    PGresult *res = PQexec(c, "SET plan_cache_mode = force_generic_plan;"
                              " SET jit_above_cost = 0");
    ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    return c;
}

static void
claim_is_never_jit_compiled(void)
{
    /* planned without the settings (JIT flagged in the plan), then run
     * under them: not compiled */
    PGconn *c = costly_claim_conn();
    PGresult *res = PQexec(c, "SELECT pg_jit_available()");
    ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
    bool jit = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    char *plan = claim_analyzed(c, NULL);
    if (jit) /* so the test can fail: without the settings, JIT */
        ASSERT_CONTAINS(plan, "JIT:");
    free(plan);
    plan = claim_analyzed(c, skipq__cycle_quick_sql);
    if (strstr(plan, "JIT:"))
        HARNESS_FAIL("the claim was JIT-compiled under the worker's settings:\n%s", plan);
    free(plan);
    PQfinish(c);
    /* planned and run under them, as the worker does */
    c = costly_claim_conn();
    plan = claim_analyzed(c, skipq__cycle_sql);
    if (strstr(plan, "JIT:"))
        HARNESS_FAIL("the claim was JIT-compiled under the worker's settings:\n%s", plan);
    free(plan);
    PQfinish(c);
}

/* Shared buffers an EXPLAIN (ANALYZE, BUFFERS) output says its statement
 * read. Frees the plan. */
static int64_t
buffers_in(char *plan)
{
    const char *hit = strstr(plan, "shared hit=");
    const char *rd = strstr(plan, "read=");
    int64_t n = hit ? strtoll(hit + strlen("shared hit="), NULL, 10) : 0;
    /* only the top node's line: it counts its whole tree */
    if (rd && (!hit || rd < strchr(hit, '\n')))
        n += strtoll(rd + strlen("read="), NULL, 10);
    if (!hit && !rd)
        HARNESS_FAIL("no buffer counts in:\n%s", plan);
    free(plan);
    return n;
}

/* Shared buffers an EXPLAIN (ANALYZE, BUFFERS) says its statement read. */
static int64_t
buffers_read(PGconn *c, const char *explain)
{
    return buffers_in(plan_of(c, explain));
}

TEST(claim_returns_exactly_n_uses_the_index_and_never_twice)
{
    PGconn *pg = tl_db();
    const int rows = 100000;
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind, priority, payload) SELECT 'c', (g %% 3) - 1,"
            " '{}' FROM generate_series(1, %d) g",
            rows);
    tl_exec(pg, "ANALYZE skipq.jobs");

    /* the plan of the statement the worker prepares, custom and generic:
     * the partial index, never a scan of the table */
    PGconn *c = claim_conn();
    claim_plan_uses_the_index(c);
    PGresult *set = PQexec(c, "SET plan_cache_mode = force_generic_plan");
    ASSERT_EQ(PQresultStatus(set), PGRES_COMMAND_OK);
    PQclear(set);
    claim_plan_uses_the_index(c);
    claim_is_never_jit_compiled();

    /* exactly n, for several n */
    int total = 0;
    for (int n = 1; n <= 1000; n *= 10) {
        PGresult *res = claim(c, n, 1);
        ASSERT_EQ(PQntuples(res), n);
        total += n;
        PQclear(res);
    }
    PQfinish(c);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"),
              total);

    /* 16 concurrent claimers: every row to exactly one */
    struct claimer cl[16];
    for (int i = 0; i < 16; i++) {
        cl[i] = (struct claimer){.worker = 100 + i,
                                 .ids = calloc((size_t)rows, sizeof(int64_t))};
        ASSERT_EQ(pthread_create(&cl[i].t, NULL, claimer_thread, &cl[i]), 0);
    }
    int64_t *all = calloc((size_t)rows, sizeof *all);
    int nall = 0;
    for (int i = 0; i < 16; i++) {
        pthread_join(cl[i].t, NULL);
        memcpy(all + nall, cl[i].ids, (size_t)cl[i].n * sizeof *all);
        nall += cl[i].n;
        free(cl[i].ids);
    }
    ASSERT_EQ(nall + total, rows);
    qsort(all, (size_t)nall, sizeof *all, cmp_i64);
    for (int i = 1; i < nall; i++)
        if (all[i] == all[i - 1])
            HARNESS_FAIL("row %lld claimed twice", (long long)all[i]);
    free(all);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"
                         " AND attempts = 1 AND claims = 1"),
              rows);
}

/*
 * Jobs scheduled for later must cost a claim nothing. The claim and the
 * next-run-at lookup used to scan the whole priority band of the index,
 * so every claim that came back short read every scheduled row (300,000
 * jobs due tomorrow: 58 ms per claim, 149 ms per lookup, by a
 * sequential scan once the statistics knew). Now they walk the band one
 * priority at a time, where run_at bounds the index range.
 */
TEST(claim_and_next_run_at_skip_scheduled_rows)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, priority, run_at) SELECT 'c', g %% 3,"
                " now() + interval '1 day' + g * interval '1 second'"
                " FROM generate_series(1, 100000) g");
    /* runnable ones, ids 100001..100006; the last is of a kind this
     * claimer has no handler for */
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, priority, run_at) VALUES"
                " ('c', 2, now() - interval '5 s'), ('c', -1, now() - interval '9 s'),"
                " ('c', 2, now() - interval '7 s'), ('c', 0, now() - interval '3 s'),"
                " ('c', -2, now() - interval '1 s'), ('x', 5, now() - interval '1 s')");
    tl_exec(pg, "ANALYZE skipq.jobs");
    int64_t pages = tl_int(pg, "SELECT pg_relation_size('skipq.jobs') / 8192");
    ASSERT_TRUE(pages > 1000);

    PGconn *c = claim_conn();
    for (int generic = 0; generic < 2; generic++) {
        if (generic) {
            PGresult *res = PQexec(c, "SET plan_cache_mode = force_generic_plan");
            ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
            PQclear(res);
        }
        PGresult *res = PQexec(c, "BEGIN");
        ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
        int64_t n = buffers_read(c, "EXPLAIN (ANALYZE, BUFFERS) EXECUTE"
                                    " claim('default', -32768, 32767, '{c}', 10, 1)");
        if (n > 200)
            HARNESS_FAIL("a claim of 5 rows read %lld buffers of a %lld-page table",
                         (long long)n, (long long)pages);
        res = PQexec(c, "ROLLBACK");
        ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
    }

    /* what it claims: the runnable rows, priority first, then run_at */
    PGresult *res = claim(c, 10, 1);
    ASSERT_EQ(PQntuples(res), 5);
    const char *want[] = {"100003", "100001", "100004", "100002", "100005"};
    for (int i = 0; i < 5; i++)
        ASSERT_STREQ(PQgetvalue(res, i, 0), want[i]);
    PQclear(res);
    /* a band is a range: only its priorities */
    tl_exec(pg,
            "UPDATE skipq.jobs SET status = 'queued' WHERE id BETWEEN 100001 AND 100005");
    const char *band[6] = {"default", "-1", "0", "{c}", "10", "1"};
    res = PQexecPrepared(c, "claim", 6, band, NULL, NULL, 0);
    ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
    ASSERT_EQ(PQntuples(res), 2);
    ASSERT_STREQ(PQgetvalue(res, 0, 0), "100004");
    ASSERT_STREQ(PQgetvalue(res, 1, 0), "100002");
    PQclear(res);

    /* the next run_at: the earliest scheduled row, not a runnable one */
    res = PQprepare(c, "next", skipq__next_run_at_sql, 0, NULL);
    ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    const char *all[4] = {"{other,default}", "-32768", "32767", NULL};
    res = PQexecPrepared(c, "next", 4, all, NULL, NULL, 0);
    ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
    int64_t in_ms = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (in_ms < 86400000 - 60000 || in_ms > 86400000 + 1000)
        HARNESS_FAIL("next run_at in %lld ms, want about a day and a second",
                     (long long)in_ms);
    int64_t n = buffers_read(c, "EXPLAIN (ANALYZE, BUFFERS) EXECUTE"
                                " next('{other,default}', -32768, 32767, NULL)");
    if (n > 200)
        HARNESS_FAIL("the next-run-at lookup read %lld buffers of a %lld-page table",
                     (long long)n, (long long)pages);
    /* none scheduled: NULL, though runnable rows wait (one of a kind we
     * cannot run): they are no reason to wake up */
    tl_exec(pg, "DELETE FROM skipq.jobs WHERE run_at > now()");
    res = PQexecPrepared(c, "next", 4, all, NULL, NULL, 0);
    ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
    ASSERT_TRUE(PQgetisnull(res, 0, 0));
    PQclear(res);
    /* but a row that became due after the claim's transaction began
     * ($4) and before the lookup: due now, claim again at once */
    char *t0 = tl_str(pg, "SELECT (now() - interval '2 s')::text");
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind, run_at) VALUES ('c', now() - interval '1 s')");
    const char *since[4] = {"{default}", "-32768", "32767", t0};
    res = PQexecPrepared(c, "next", 4, since, NULL, NULL, 0);
    ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
    ASSERT_TRUE(!PQgetisnull(res, 0, 0));
    in_ms = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    if (in_ms > 0 || in_ms < -60000)
        HARNESS_FAIL("a row due 1 s ago, after the claim: next run_at in %lld ms",
                     (long long)in_ms);
    PQclear(res);
    free(t0);
    PQfinish(c);
}

/* claim_after(floor, n): the claim from the floor (priority, run_at, id)
 * in the default queue, whole band, kind c, as worker 1. */
static PGresult *
claim_after(PGconn *c, const char *pri, const char *run_at, const char *id, int n)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", n);
    const char *v[9] = {"default", "-32768", "32767", "{c}", lim, "1", pri, run_at, id};
    PGresult *res = PQexecPrepared(c, "after", 9, v, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        HARNESS_FAIL("claim after: %s", PQresultErrorMessage(res));
    return res;
}

/* The ids a claim returned, as "a,b,c" (static storage). */
static const char *
ids_of(PGresult *res)
{
    static char out[512];
    size_t k = 0;
    out[0] = '\0';
    for (int i = 0; i < PQntuples(res) && k + 24 < sizeof out; i++)
        k += (size_t)snprintf(out + k, sizeof out - k, "%s%s", i ? "," : "",
                              PQgetvalue(res, i, 0));
    return out;
}

/*
 * Every claimed job leaves a dead entry at the head of jobs_runnable_idx
 * until vacuum, and a claim from the head reads past all of them: under
 * a steady load, 200 buffers just after an autovacuum and 2,900 a minute
 * later. The claim from the floor (the last row the previous full claim
 * took) starts after them, in claim order, and leaves to the next claim
 * from the head what it cannot see: a row behind the floor, and any row
 * of a higher priority.
 */
TEST(claim_after_the_floor_skips_the_dead_head_and_nothing_else)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "ALTER TABLE skipq.jobs SET (autovacuum_enabled = false)");
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, run_at) SELECT 'c',"
                " now() - interval '1 hour' + g * interval '1 ms'"
                " FROM generate_series(1, 60000) g");
    tl_exec(pg, "ANALYZE skipq.jobs");
    PGconn *c = claim_conn();
    PGresult *res = PQprepare(c, "after", skipq__claim_after_sql, 0, NULL);
    ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    tl_exec(c, "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off");

    /* 50,000 claimed from the head: the dead head */
    res = claim(c, 50000, 1);
    ASSERT_EQ(PQntuples(res), 50000);
    char *run_at = strdup(PQgetvalue(res, 49999, 13));
    ASSERT_STREQ(PQgetvalue(res, 49999, 0), "50000");
    PQclear(res);
    char explain[512];
    snprintf(explain, sizeof explain,
             "EXPLAIN (ANALYZE, BUFFERS) EXECUTE after('default', -32768, 32767, '{c}', 1,"
             " 1, 0, '%s', 50000)",
             run_at);
    int64_t from_head = 0, from_floor = 0;
    for (int i = 0; i < 2; i++) { /* the second time, with the entries marked dead */
        tl_exec(c, "BEGIN");
        from_head = buffers_read(c, "EXPLAIN (ANALYZE, BUFFERS) EXECUTE"
                                    " claim('default', -32768, 32767, '{c}', 1, 1)");
        tl_exec(c, "ROLLBACK");
        tl_exec(c, "BEGIN");
        from_floor = buffers_read(c, explain);
        tl_exec(c, "ROLLBACK");
    }
    if (from_floor > 60 || from_head < 5 * from_floor)
        HARNESS_FAIL("a claim of 1 after 50,000 claimed rows read %lld buffers from the"
                     " floor, %lld from the head",
                     (long long)from_floor, (long long)from_head);

    /* in claim order after the floor */
    res = claim_after(c, "0", run_at, "50000", 10);
    ASSERT_STREQ(ids_of(res),
                 "50001,50002,50003,50004,50005,50006,50007,50008,50009,50010");
    free(run_at);
    run_at = strdup(PQgetvalue(res, 9, 13));
    PQclear(res);

    /* a row behind the floor is not seen from it, but first from the head */
    int64_t behind = tl_int(pg, "INSERT INTO skipq.jobs (kind, run_at)"
                                " VALUES ('c', now() - interval '1 day') RETURNING id");
    res = claim_after(c, "0", run_at, "50010", 3);
    ASSERT_STREQ(ids_of(res), "50011,50012,50013");
    PQclear(res);
    res = claim(c, 1, 1);
    ASSERT_EQ(strtoll(PQgetvalue(res, 0, 0), NULL, 10), behind);
    PQclear(res);

    /* a queued row of a higher priority stops the claim from the floor */
    int64_t high = tl_int(pg, "INSERT INTO skipq.jobs (kind, priority, run_at)"
                              " VALUES ('c', 5, now() + interval '1 hour') RETURNING id");
    res = claim_after(c, "0", run_at, "50013", 3);
    ASSERT_EQ(PQntuples(res), 0);
    PQclear(res);
    tl_exec(pg, "UPDATE skipq.jobs SET run_at = now() WHERE id = %lld", (long long)high);
    res = claim(c, 1, 1);
    ASSERT_EQ(strtoll(PQgetvalue(res, 0, 0), NULL, 10), high);
    PQclear(res);
    res = claim_after(c, "0", run_at, "50013", 3);
    ASSERT_STREQ(ids_of(res), "50014,50015,50016");
    PQclear(res);
    free(run_at);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"
                         " AND claims = 1"),
              50000 + 10 + 3 + 1 + 1 + 3);
    PQfinish(c);
}

static skipq_outcome
ms_handler(skipq_job *job, void *ud)
{
    (void)job;
    (void)ud;
    usleep(1000);
    return SKIPQ_JOB_OK;
}

/* Claims from the floor, counted by their debug log event. */
static atomic_int floor_claims;

static void
count_floor_claims(const skipq_log_event *ev, void *ud)
{
    (void)ud;
    if (ev->event && strcmp(ev->event, "claim_floor") == 0)
        atomic_fetch_add(&floor_claims, 1);
}

/* A worker on kind b, concurrency 4, no prefetch (no give-backs), its
 * claims from the floor counted. */
static struct running *
start_floor_worker(skipq_config **cfg_out)
{
    skipq_error err;
    skipq_config *cfg = test_config(4);
    skipq_worker *w = NULL;
    skipq_set_log(count_floor_claims, NULL);
    ASSERT_OK(skipq_config_set_prefetch(cfg, 0, &err), &err);
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "b", ms_handler, NULL, &err), &err);
    *cfg_out = cfg;
    return start_worker(w);
}

/* A worker draining a backlog claims from its floor; a job that appears
 * behind it (here: enqueued with a past run_at) is claimed within about
 * FLOOR_MS (1 s), not when the backlog is gone. */
TEST(job_behind_the_claim_floor_waits_at_most_about_a_second)
{
    PGconn *pg = tl_db();
    skipq_config *cfg;
    tl_exec(pg, "INSERT INTO skipq.jobs (kind) SELECT 'b' FROM generate_series(1, 12000)");
    struct running *r = start_floor_worker(&cfg);
    ASSERT_TRUE(tl_wait_int(pg, 30000, 1,
                            "SELECT (count(*) >= 500)::int FROM skipq.jobs"
                            " WHERE status = 'succeeded'"));
    int64_t past = tl_int(pg,
                          "SELECT skipq.enqueue('b', run_at => now() - interval '1 hour')");
    ASSERT_TRUE(tl_wait_int(pg, 30000, 1,
                            "SELECT (status <> 'queued')::int FROM skipq.jobs"
                            " WHERE id = %lld",
                            (long long)past));
    ASSERT_TRUE(tl_wait_int(pg, 60000, 12001,
                            "SELECT count(*) FROM skipq.jobs"
                            " WHERE status = 'succeeded' AND claims = 1"));
    /* claimed after it: the backlog it did not wait for */
    int64_t left = tl_int(pg,
                          "SELECT count(*) FROM skipq.jobs WHERE kind = 'b'"
                          " AND started_at > (SELECT started_at FROM skipq.jobs"
                          " WHERE id = %lld)",
                          (long long)past);
    stop_worker(r);
    skipq_config_free(cfg);
    skipq_set_log(NULL, NULL);
    if (left < 1000)
        HARNESS_FAIL("the job behind the floor was claimed with only %lld of 12,000 left",
                     (long long)left);
    /* most of the ~3,000 claims were from the floor */
    if (atomic_load(&floor_claims) < 1000)
        HARNESS_FAIL("only %d claims from the floor", atomic_load(&floor_claims));
}

/* A queued row of a higher priority that is not due stops every claim
 * from the floor (it takes nothing, and a claim from the head follows).
 * After one such claim floors are off for FLOOR_MS: not two claims for
 * every one. */
TEST(claims_from_the_floor_pause_when_they_come_back_short)
{
    PGconn *pg = tl_db();
    skipq_config *cfg;
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, priority, run_at)"
                " VALUES ('b', 5, now() + interval '1 day')");
    tl_exec(pg, "INSERT INTO skipq.jobs (kind) SELECT 'b' FROM generate_series(1, 6000)");
    int64_t t0 = skipq__now_ms();
    struct running *r = start_floor_worker(&cfg);
    ASSERT_TRUE(tl_wait_int(pg, 60000, 6000,
                            "SELECT count(*) FROM skipq.jobs"
                            " WHERE status = 'succeeded' AND claims = 1"));
    int64_t secs = (skipq__now_ms() - t0) / 1000;
    stop_worker(r);
    skipq_config_free(cfg);
    skipq_set_log(NULL, NULL);
    /* at most one a second (and one at the start) */
    if (atomic_load(&floor_claims) > secs + 2)
        HARNESS_FAIL("%d claims from the floor in %lld s", atomic_load(&floor_claims),
                     (long long)secs);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 1);
}

/*
 * A job of a kind this worker cannot run, due now, is no reason to wake
 * up: the next-run-at lookup counted it, and the idle worker claimed
 * again every millisecond (1,200 transactions a second) for as long as it
 * waited. Counted here with a statement trigger on the claim's UPDATE.
 */
TEST(idle_worker_does_not_spin_on_a_job_it_cannot_run)
{
    PGconn *pg = tl_db();
    skipq_error err;
    tl_exec(pg, "CREATE TABLE claim_statements (at timestamptz DEFAULT clock_timestamp())");
    /* claims only: rescue and retention update the table too. (It runs
     * inside skipq.claim, whose search_path is pg_catalog, pg_temp: a
     * trigger on skipq.jobs names its objects by schema.) */
    tl_exec(
        pg,
        "CREATE FUNCTION count_claim() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN IF current_query() LIKE '%%skipq.claim%%' THEN"
        " INSERT INTO public.claim_statements DEFAULT VALUES; END IF; RETURN NULL; END $$");
    tl_exec(pg, "CREATE TRIGGER count_claim AFTER UPDATE ON skipq.jobs"
                " FOR EACH STATEMENT EXECUTE FUNCTION count_claim()");
    tl_exec(pg, "SELECT skipq.enqueue('theirs', '{}')");
    skipq_config *cfg = test_config(2); /* polls every 200 ms */
    skipq_worker *w;
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "mine", ok_handler, NULL, &err), &err);
    struct running *r = start_worker(w);
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1, "SELECT count(*) FROM skipq.workers"));
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1,
                            "SELECT least(count(*), 1) FROM claim_statements"));
    /* two seconds of an idle worker: about ten polls (200 ms), not
     * thousands */
    int64_t t0 = tl_int(pg, "SELECT count(*) FROM claim_statements");
    struct timespec two = {2, 0};
    nanosleep(&two, NULL);
    int64_t claims = tl_int(pg, "SELECT count(*) FROM claim_statements") - t0;
    if (claims > 30)
        HARNESS_FAIL("an idle worker sent %lld claims in 2 s", (long long)claims);
    /* and it is awake for its own kind */
    tl_exec(pg, "SELECT skipq.enqueue('mine', '{}')");
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1,
                            "SELECT count(*) FROM skipq.jobs"
                            " WHERE kind = 'mine' AND status = 'succeeded'"));
    stop_worker(r);
    skipq_config_free(cfg);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'theirs'"
                         " AND status = 'queued' AND attempts = 0"),
              1);
}

/* `verb` complete(...) for the 100 rows from `first`, by worker 1 with
 * claim token 1, all succeeded. */
static void
complete_call(char *sql, size_t n, const char *verb, int first)
{
    int k = snprintf(sql, n, "%s complete ('{", verb);
    for (int i = 0; i < 100; i++)
        k += snprintf(sql + k, n - (size_t)k, "%s%d", i ? "," : "", first + i);
    snprintf(sql + k, n - (size_t)k,
             "}', 1, array_fill(1, ARRAY[100]), array_fill('succeeded'::text, ARRAY[100]),"
             " array_fill(NULL::text, ARRAY[100]), array_fill(NULL::text, ARRAY[100]),"
             " array_fill(0::int8, ARRAY[100]), array_fill(0, ARRAY[100]))");
}

/*
 * The completion finds its rows by primary key whatever the statistics
 * say. With the ownership check written as `locked_by = $2 AND status =
 * 'running'`, the generic plan walked jobs_running_idx instead: every row
 * the worker held and every dead entry since the last vacuum, once per
 * completed batch (drain 2.6x slower). The shape here is the one that
 * fooled the planner: few running rows in the statistics, thousands of
 * dead index entries.
 */
static void
completion_by_primary_key(const char *statement, bool deletes)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "INSERT INTO skipq.jobs (kind) SELECT 'c' FROM generate_series(1, 20000)");
    tl_exec(pg, "UPDATE skipq.jobs SET status = 'running', locked_by = 1, claims = 1,"
                " attempts = 1 WHERE id <= 5000");
    tl_exec(pg, "UPDATE skipq.jobs SET status = 'succeeded', locked_by = NULL"
                " WHERE id <= 4800");
    tl_exec(pg, "ANALYZE skipq.jobs");

    PGconn *c = tl_connect();
    PGresult *res = PQprepare(c, "complete", statement, 0, NULL);
    ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    res = PQexec(c, "SET plan_cache_mode = force_generic_plan");
    ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);

    /* rows 4801..4900 succeed */
    char sql[4096];
    complete_call(sql, sizeof sql, "EXPLAIN EXECUTE", 4801);
    char *plan = plan_of(c, sql);
    ASSERT_CONTAINS(plan, "Index Scan using jobs_pkey");
    if (strstr(plan, "jobs_running_idx") || strstr(plan, "Seq Scan on jobs"))
        HARNESS_FAIL("the completion plan does not go by primary key:\n%s", plan);
    free(plan);

    /* and it does what it says: 100 rows once, then none (no longer
     * running), and a stale claim token never matches */
    complete_call(sql, sizeof sql, "EXECUTE", 4801);
    res = PQexec(c, sql);
    ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
    ASSERT_EQ(PQntuples(res), 100);
    PQclear(res);
    res = PQexec(c, sql);
    ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
    ASSERT_EQ(PQntuples(res), 0);
    PQclear(res);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"
                         " AND id BETWEEN 4801 AND 4900 AND locked_by IS NULL"),
              deletes ? 0 : 100);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE id BETWEEN 4801 AND 4900"),
              deletes ? 0 : 100);
    tl_exec(pg, "UPDATE skipq.jobs SET claims = 2 WHERE id BETWEEN 4901 AND 5000");
    complete_call(sql, sizeof sql, "EXECUTE", 4901);
    res = PQexec(c, sql);
    ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
    ASSERT_EQ(PQntuples(res), 0);
    PQclear(res);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"), 100);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), deletes ? 19900 : 20000);
    PQfinish(c);
}

TEST(completion_goes_by_primary_key)
{
    completion_by_primary_key(skipq__complete_sql, false);
}

/* worker.on_success: delete: the same plan, ownership check and result,
 * except that the rows that succeeded are gone. */
TEST(completion_that_deletes_goes_by_primary_key)
{
    completion_by_primary_key(skipq__complete_delete_sql, true);
}

/*
 * A worker usually starts on an empty queue, and its claim and completion
 * are planned at their first execution, once a connection. Planned on an
 * empty table, the claim's update found its rows by a sequential scan and
 * the completion by a nested loop over one, and the plans stayed when the
 * jobs came: 20,000 jobs enqueued at once drained at 4,100 a second
 * instead of 15,000 until autovacuum's next analyze replanned them (see
 * skipq__cycle_sql). Here the plans
 * are made as the worker makes them (its settings first, then the first
 * execution) on a table that has never held a row, and then run on one
 * with 50,000 jobs.
 */
static char *
planned_in_cycle(PGconn *c, const char *explain)
{
    PGresult *res = PQexec(c, "BEGIN");
    ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    res = PQexec(c, skipq__cycle_sql);
    ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    char *plan = plan_of(c, explain);
    res = PQexec(c, "ROLLBACK");
    ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    if (strstr(plan, "Seq Scan on jobs"))
        HARNESS_FAIL("%s reads the whole table:\n%s", explain, plan);
    return plan;
}

TEST(plans_made_on_an_empty_queue_go_by_index)
{
    PGconn *pg = tl_db();
    /* no analyze in between to replan them */
    tl_exec(pg, "ALTER TABLE skipq.jobs SET (autovacuum_enabled = false)");
    ASSERT_EQ(tl_int(pg, "SELECT pg_relation_size('skipq.jobs')"), 0);
    const char *completions[2] = {skipq__complete_sql, skipq__complete_delete_sql};
    PGconn *cc[2];
    char sql[4096];

    /* planned on the empty table */
    PGconn *c = claim_conn();
    free(planned_in_cycle(c,
                          "EXPLAIN EXECUTE claim('default', -32768, 32767, '{c}', 10, 1)"));
    complete_call(sql, sizeof sql, "EXPLAIN EXECUTE", 1);
    for (int i = 0; i < 2; i++) {
        cc[i] = tl_connect();
        PGresult *res = PQprepare(cc[i], "complete", completions[i], 0, NULL);
        ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
        free(planned_in_cycle(cc[i], sql));
    }

    /* the same plans, cached, on 50,000 jobs: a claim of 10 and a
     * completion of 100 read a few dozen pages, not the table's */
    tl_exec(pg, "INSERT INTO skipq.jobs (kind) SELECT 'c' FROM generate_series(1, 50000)");
    int64_t pages = tl_int(pg, "SELECT pg_relation_size('skipq.jobs') / 8192");
    ASSERT_TRUE(pages > 500);
    char *plan = planned_in_cycle(c, "EXPLAIN (ANALYZE, BUFFERS) EXECUTE"
                                     " claim('default', -32768, 32767, '{c}', 10, 1)");
    ASSERT_CONTAINS(plan, "rows=10 loops=1");
    int64_t n = buffers_in(plan);
    if (n > 200)
        HARNESS_FAIL("a claim of 10 read %lld buffers of a %lld-page table", (long long)n,
                     (long long)pages);
    PQfinish(c);
    complete_call(sql, sizeof sql, "EXPLAIN (ANALYZE, BUFFERS) EXECUTE", 1);
    for (int i = 0; i < 2; i++) {
        n = buffers_in(planned_in_cycle(cc[i], sql));
        if (n > 500)
            HARNESS_FAIL("a completion of 100 read %lld buffers of a %lld-page table",
                         (long long)n, (long long)pages);
        PQfinish(cc[i]);
    }
}

/* ---- worker.on_success: delete -------------------------------------------- */

/* Rows of jobs that succeeded are gone, also the one that failed twice
 * first (retried, then deleted on its third try); a job that ran out of
 * attempts stays `failed` with its errors. */
TEST(on_success_delete_removes_only_succeeded_rows)
{
    PGconn *pg = tl_db();
    skipq_error err;
    skipq_config *cfg = test_config(4);
    ASSERT_OK(skipq_config_set_backoff(cfg, SKIPQ_BACKOFF_FIXED, 50, 50, 0, &err), &err);
    ASSERT_OK(skipq_config_set_max_attempts(cfg, 5, &err), &err);
    ASSERT_OK(skipq_config_set_on_success(cfg, SKIPQ_ON_SUCCESS_DELETE, &err), &err);
    ASSERT_EQ(skipq_config_on_success(cfg), SKIPQ_ON_SUCCESS_DELETE);
    tl_exec(
        pg,
        "SELECT skipq.enqueue('ok', jsonb_build_object('i', g)) FROM generate_series(1, 200) g");
    int64_t flaky = tl_int(pg, "SELECT skipq.enqueue('flaky')");
    int64_t dead = tl_int(pg, "SELECT skipq.enqueue('always', max_attempts => 2)");
    skipq_worker *w;
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "ok", ok_handler, NULL, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "flaky", flaky_handler, NULL, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "always", flaky_handler, NULL, &err), &err);
    struct running *r = start_worker(w);
    ASSERT_TRUE(tl_wait_int(pg, 15000, 1, "SELECT count(*) FROM skipq.jobs"));
    stop_worker(r);
    skipq_config_free(cfg);
    char *st = tl_str(pg, "SELECT id || ' ' || status || ' ' || attempts || ' '"
                          " || jsonb_array_length(errors) FROM skipq.jobs");
    char want[64];
    snprintf(want, sizeof want, "%lld failed 2 2", (long long)dead);
    ASSERT_STREQ(st, want);
    free(st);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE id = %lld",
                     (long long)flaky),
              0);
}

/* ---- a claim lost with the server: the token is not handed out twice ------ */

static atomic_int token_runs;

/* Run 1 takes 1 s, run 2 takes 3 s; each reports its number. */
static skipq_outcome
numbered_handler(skipq_job *job, void *ud)
{
    (void)ud;
    int n = atomic_fetch_add(&token_runs, 1) + 1;
    usleep(n == 1 ? 1000000 : 3000000);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "run", json_object_new_int(n));
    skipq_job_set_result(job, o);
    return SKIPQ_JOB_OK;
}

/*
 * A claim committed asynchronously and lost in a server crash rolls the
 * row back to queued with the old `claims`; the worker reconnects with the
 * same id and claims the row again: same (claims, locked_by). Simulated
 * here: while run 1 sleeps, the row is put back as the crash would leave
 * it and the worker's session is ended. Run 1's completion must then
 * match nothing (it would otherwise finish run 2's claim while run 2
 * still runs); run 2's result is the one kept.
 */
TEST(claim_lost_with_the_server_is_not_completed_by_the_old_run)
{
    PGconn *pg = tl_db();
    skipq_error err;
    skipq_config *cfg = test_config(2);
    skipq_worker *w;
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "n", numbered_handler, NULL, &err), &err);
    atomic_store(&token_runs, 0);
    struct running *r = start_worker(w);
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1, "SELECT count(*) FROM skipq.workers"));
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('n')");
    int64_t end = tl_now_ms() + 5000;
    while (atomic_load(&token_runs) < 1 && tl_now_ms() < end)
        usleep(1000);
    ASSERT_EQ(atomic_load(&token_runs), 1);
    tl_exec(pg, "BEGIN");
    tl_exec(pg,
            "UPDATE skipq.jobs SET status = 'queued', claims = claims - 1,"
            " attempts = attempts - 1, locked_by = NULL, started_at = NULL"
            " WHERE id = %lld",
            (long long)id);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                         " FROM pg_stat_activity WHERE application_name = 'skipq worker'"
                         " AND datname = current_database()"),
              1);
    tl_exec(pg, "COMMIT");
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    stop_worker(r);
    skipq_config_free(cfg);
    ASSERT_EQ(atomic_load(&token_runs), 2);
    char *st = tl_str(pg, "SELECT result->>'run' FROM skipq.jobs WHERE id = %lld",
                      (long long)id);
    ASSERT_STREQ(st, "2");
    free(st);
}

/* ---- only a claim-only transaction commits asynchronously --------------- */

static skipq_outcome
ok_handler(skipq_job *job, void *ud)
{
    (void)job;
    (void)ud;
    return SKIPQ_JOB_OK;
}

/*
 * A row trigger records, in the worker's own transaction, the
 * synchronous_commit its commit will use. An idle worker's claim of a lone
 * job is claim-only: off. The completion: on (it must be durable when the
 * worker says so), and the setting must not leak into the session. Both
 * run with plan_cache_mode force_generic_plan.
 */
TEST(claim_only_commit_is_async_completion_is_not)
{
    PGconn *pg = tl_db();
    skipq_error err;
    /* the test cluster runs with it off; the worker's sessions get on */
    tl_exec(pg,
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %%I SET synchronous_commit = on',"
            " current_database()); END $$");
    tl_exec(pg,
            "CREATE TABLE commit_modes (job_id int8, status text, mode text, plans text)");
    tl_exec(pg,
            "CREATE FUNCTION record_mode() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN INSERT INTO public.commit_modes VALUES (NEW.id, NEW.status,"
            " current_setting('synchronous_commit'), current_setting('plan_cache_mode'));"
            " RETURN NEW; END $$");
    tl_exec(pg, "CREATE TRIGGER record_mode AFTER UPDATE OF status ON skipq.jobs"
                " FOR EACH ROW EXECUTE FUNCTION record_mode()");
    skipq_config *cfg = test_config(2);
    skipq_worker *w;
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    ASSERT_OK(skipq_worker_register(w, "m", ok_handler, NULL, &err), &err);
    struct running *r = start_worker(w);
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1, "SELECT count(*) FROM skipq.workers"));
    for (int i = 1; i <= 3; i++) {
        tl_exec(pg, "SELECT skipq.enqueue('m', '{}')");
        ASSERT_TRUE(tl_wait_int(
            pg, 10000, i, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    }
    stop_worker(r);
    skipq_config_free(cfg);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM commit_modes WHERE status = 'running'"
                         " AND mode = 'off'"),
              3);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM commit_modes WHERE status = 'succeeded'"
                         " AND mode = 'on'"),
              3);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM commit_modes"), 6);
    /* claim and completion on their generic plans (see cycle()) */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM commit_modes"
                         " WHERE plans = 'force_generic_plan'"),
              6);
}

/* Drain n jobs of two queues and two bands with one worker, its
 * statements unnamed or not; returns the most statements a row trigger
 * saw prepared in the worker's session meanwhile. */
static int64_t
drain_counting_prepared(PGconn *pg, int n, bool unnamed)
{
    skipq_error err;
    tl_exec(pg, "TRUNCATE prepared_seen");
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind, queue, priority)"
            " SELECT 'm', CASE WHEN g %% 2 = 0 THEN 'a' ELSE 'b' END,"
            " CASE WHEN g %% 3 = 0 THEN 10 ELSE -10 END FROM generate_series(1, %d) g",
            n);
    skipq_config *cfg = test_config(4);
    ASSERT_OK(skipq_config_set_queue(cfg, "a", &err), &err);
    ASSERT_OK(skipq_config_add_queue(cfg, "b", &err), &err);
    ASSERT_OK(skipq_config_set_priorities(cfg, "high,low", &err), &err);
    ASSERT_OK(skipq_config_set_prefetch(cfg, 16, &err), &err);
    if (unnamed)
        setenv("SKIPQ_UNNAMED_STATEMENTS", "1", 1);
    skipq_worker *w;
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    unsetenv("SKIPQ_UNNAMED_STATEMENTS");
    ASSERT_OK(skipq_worker_register(w, "m", ok_handler, NULL, &err), &err);
    skipq_worker_set_once(w, 1);
    ASSERT_OK(skipq_worker_run(w, &err), &err);
    skipq_worker_free(w);
    skipq_config_free(cfg);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status <> 'succeeded'"
                         " OR attempts <> 1"),
              0);
    ASSERT_TRUE(tl_int(pg, "SELECT count(*) FROM prepared_seen") >= 2 * n);
    return tl_int(pg, "SELECT coalesce(max(n), 0) FROM prepared_seen");
}

/*
 * SKIPQ_UNNAMED_STATEMENTS=1 (what a transaction pooler needs): the
 * worker prepares no statement by name and sends each with its text, and
 * a drain through two queues and two bands (claim floors, the rotation,
 * batched completions) still runs every job once. A row trigger counts,
 * in the worker's own session, the statements prepared there: some by
 * default, none with the variable set.
 */
TEST(drain_with_unnamed_statements)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "CREATE TABLE prepared_seen (n int8)");
    tl_exec(pg,
            "CREATE FUNCTION record_prepared() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN INSERT INTO public.prepared_seen"
            " SELECT count(*) FROM pg_catalog.pg_prepared_statements; RETURN NEW; END $$");
    tl_exec(pg, "CREATE TRIGGER record_prepared AFTER UPDATE OF status ON skipq.jobs"
                " FOR EACH ROW EXECUTE FUNCTION record_prepared()");
    ASSERT_TRUE(drain_counting_prepared(pg, 100, false) > 0);
    tl_exec(pg, "DELETE FROM skipq.jobs");
    ASSERT_EQ(drain_counting_prepared(pg, 2000, true), 0);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
