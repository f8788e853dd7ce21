/*
 * test_fault_restart.c - the database goes away under the workers.
 *
 * restart_fast, restart_immediate: PostgreSQL is restarted (pg_ctl -m
 *   fast, then -m immediate: a crash and recovery) while 3 workers drain
 *   jobs and a producer thread keeps enqueuing through the C API. The
 *   server is a private cluster (tests/pg.sh), never the suite's shared
 *   one, and is destroyed at exit. At the end: every id the producer was
 *   told committed exists, no job is left queued or running, every job
 *   succeeded, its final claim ran its handler exactly once (the side
 *   table `runs` is unique per (job, attempt), so a claim run twice
 *   would have failed its handler with "duplicate key"), and each
 *   worker logged a reconnect and is still running.
 *
 * terminate_mid_completion: one worker's backend is terminated with
 *   pg_terminate_backend every 100 ms while jobs with instant handlers
 *   flow, so completion batches and claims are cut at every stage. A
 *   batch is one transaction: applied or retried, never half-applied.
 *   With one worker nothing is rescued, so the accounting is exact:
 *   every job succeeded with attempts = 1 and exactly one run.
 *
 * listen_killed: the worker's session (its one connection, which holds
 *   the LISTEN) is terminated; with poll_interval 60 s, a job enqueued
 *   while it is gone is picked up by the poll after the reconnect, and a
 *   job enqueued after that is picked up in well under the poll
 *   interval: only a NOTIFY can wake it, so it is listening again.
 */
#include "../handlers/faultlib.h"

#include <pthread.h>
#include <stdatomic.h>

#include "skipq.h"

/* ---- a producer thread: enqueue through the C API, keep what committed --- */

struct producer {
    pthread_t th;
    char url[1024];
    atomic_int stop;
    atomic_long limit;     /* pause at this many: never outrun slow workers */
    atomic_long committed; /* ids[0..committed) are final once joined */
    long errors;           /* failed calls: each may or may not have committed */
    int64_t *ids;
    size_t cap;
};

static void *
produce(void *arg)
{
    struct producer *p = arg;
    skipq_conn *c = NULL;
    skipq_error e;
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;

    while (!atomic_load(&p->stop)) {
        if (atomic_load(&p->committed) >= atomic_load(&p->limit)) {
            usleep(5000);
            continue;
        }
        if (!c && skipq_conn_open(p->url, &c, &e) != SKIPQ_OK) {
            c = NULL; /* the server is restarting: try again soon */
            usleep(20000);
            continue;
        }
        int64_t id = 0;
        if (skipq_enqueue(c, "rec", "{\"from\": \"producer\"}", &o, &id, &e) == SKIPQ_OK) {
            long n = atomic_load(&p->committed);
            if ((size_t)n == p->cap) {
                size_t cap = p->cap ? p->cap * 2 : 1024;
                int64_t *v = realloc(p->ids, cap * sizeof *v);
                if (!v)
                    break;
                p->ids = v;
                p->cap = cap;
            }
            p->ids[n] = id;
            atomic_store(&p->committed, n + 1);
        } else {
            p->errors++;
            skipq_conn_close(c);
            c = NULL;
        }
        usleep(15000);
    }
    skipq_conn_close(c);
    return NULL;
}

static bool
produced_at_least(void *arg)
{
    struct producer *p = ((void **)arg)[0];
    long want = *(long *)((void **)arg)[1];
    return atomic_load(&p->committed) >= want;
}

static int
grep_count(const char *pattern, const char *log)
{
    char *out = NULL;
    tl_run(NULL, &out, NULL, "grep -c '%s' %s || true", pattern, log);
    int n = atoi(out ? out : "0");
    free(out);
    return n;
}

/* The accounting every test here ends with. */
static void
assert_every_job_once(PGconn *pg)
{
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status <> 'succeeded'"
                         " OR locked_by IS NOT NULL OR finished_at IS NULL"),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs j WHERE NOT EXISTS"
                         " (SELECT 1 FROM runs r WHERE r.job_id = j.id)"),
              0);
    /* the claim that completed a job ran its handler exactly once */
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs j WHERE (SELECT count(*) FROM runs r"
                     " WHERE r.job_id = j.id AND r.attempt = j.attempts AND r.ok) <> 1"),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM runs r JOIN skipq.jobs j ON j.id = r.job_id"
                         " WHERE r.attempt > j.attempts OR NOT r.ok"),
              0);
    /* no claim ran twice: the second run would have failed on the
     * unique (job_id, attempt) and left this in the job's history */
    ASSERT_EQ(
        tl_int(pg,
               "SELECT count(*) FROM skipq.jobs WHERE errors::text LIKE"
               " '%%duplicate key%%' OR coalesce(last_error, '') LIKE '%%duplicate key%%'"),
        0);
}

/* ---- restart under load ------------------------------------------------------ */

#define RWORKERS 3

static void
restart_under_load(const char *mode)
{
    const int preload = 200;
    int64_t tstart = tl_now_ms();
    fl_deadline(280); /* under CTest's 300 s: its kill skips our clean-up */
    fl_private_cluster();
    printf("restart_%s: private cluster ready in %.1f s\n", mode,
           (double)(tl_now_ms() - tstart) / 1000);
    fflush(stdout);
    /*
     * The test clusters run with synchronous_commit = off, which lets an
     * immediate shutdown drop the last commits it acknowledged: a loss the
     * server made, not skipq. Acknowledged must mean durable here.
     */
    tl_run(NULL, NULL, NULL,
           "psql -Xq '%s' -c 'ALTER SYSTEM SET synchronous_commit = on'"
           " -c 'SELECT pg_reload_conf()'",
           getenv("SKIPQ_TEST_PG"));
    PGconn *pg = tl_db();
    char *sc = tl_str(pg, "SHOW synchronous_commit");
    ASSERT_STREQ(sc, "on");
    free(sc);
    fl_runs_table(pg);

    char rest[512];
    snprintf(rest, sizeof rest,
             "retry:\n  max_attempts: 20\n  base: 100ms\n  max: 1s\n"
             "handlers:\n  rec:\n    command: [%s, -r, 20]\n",
             fl_handler("record"));
    const char *cfg = fl_worker_config(4, "200ms", NULL, rest);
    tl_exec(pg,
            "SELECT count(skipq.enqueue('rec', jsonb_build_object('i', g)))"
            " FROM generate_series(1, %d) g",
            preload);

    pid_t w[RWORKERS];
    const char *logs[RWORKERS];
    for (int i = 0; i < RWORKERS; i++) {
        logs[i] = fl_log();
        w[i] = fl_worker(logs[i], cfg, NULL);
    }
    static struct producer prod;
    memset(&prod, 0, sizeof prod);
    snprintf(prod.url, sizeof prod.url, "%s", tl_url());
    atomic_store(&prod.limit, 300);
    ASSERT_EQ(pthread_create(&prod.th, NULL, produce, &prod), 0);
    bool joined = false;

    /* under load: jobs done, more arriving */
    if (!tl_wait_int(pg, 60000, 1,
                     "SELECT (count(*) >= 60)::int FROM skipq.jobs"
                     " WHERE status = 'succeeded'"))
        HARNESS_FAIL("no progress before the restart");
    long at_restart = atomic_load(&prod.committed);
    ASSERT_TRUE(at_restart > 0);
    int64_t done_before =
        tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'");
    printf("restart_%s: restarting at %" PRId64 " jobs done, %ld produced\n", mode,
           done_before, at_restart);
    fflush(stdout);
    int64_t t0 = tl_now_ms();
    pid_t r = fl_restart_async(mode);
    ASSERT_EQ(fl_wait_exit(r, 90000), 0);
    int64_t restart_ms = tl_now_ms() - t0;
    fl_reconnect(pg, 30000);
    printf("restart_%s: server back after %.1f s\n", mode, (double)restart_ms / 1000);
    fflush(stdout);

    /* after it: the producer commits again, the workers finish again */
    long want = at_restart + 100;
    atomic_store(&prod.limit, want);
    void *arg[2] = {&prod, &want};
    if (!wait_until(60000, produced_at_least, arg))
        HARNESS_FAIL("the producer did not recover: %ld committed",
                     atomic_load(&prod.committed));
    if (!tl_wait_int(pg, 60000, 1,
                     "SELECT (count(*) > %" PRId64 " + 100)::int FROM skipq.jobs"
                     " WHERE status = 'succeeded'",
                     done_before))
        HARNESS_FAIL("the workers did not recover");
    atomic_store(&prod.stop, 1);
    pthread_join(prod.th, NULL);
    joined = true;
    long committed = atomic_load(&prod.committed);

    int64_t total = tl_int(pg, "SELECT count(*) FROM skipq.jobs");
    if (!tl_wait_int(pg, 90000, total,
                     "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'")) {
        for (int i = 0; i < RWORKERS; i++)
            fl_dump("worker", logs[i]);
        /* what the missing ones look like, and who holds them */
        char *left = tl_str(pg,
                            "SELECT coalesce(string_agg(format('%%s x%%s (ids %%s..%%s,"
                            " attempts <= %%s, holders %%s, run_at - now() <= %%s, %%s)',"
                            " status, n, lo, hi, att, holders, due, err), '; '), '-')"
                            " FROM (SELECT status, count(*) n, min(id) lo, max(id) hi,"
                            " max(attempts) att, array_agg(DISTINCT locked_by) holders,"
                            " max(run_at - now()) due, max(last_error) err"
                            " FROM skipq.jobs WHERE status <> 'succeeded' GROUP BY 1) s");
        char *wk =
            tl_str(pg, "SELECT coalesce(string_agg(format('%%s alive=%%s running=%%s',"
                       " id, alive, running_jobs), '; '), '-') FROM skipq.active_workers");
        fprintf(stderr, "not succeeded: %s\nworkers: %s\n", left, wk);
        free(left);
        free(wk);
        HARNESS_FAIL("not every job succeeded");
    }
    int64_t ms = tl_now_ms() - t0;

    /* nothing the producer was told committed is missing; a call that
     * failed may have committed (its reply lost), no more than that */
    char *list = malloc((size_t)committed * 21 + 3);
    ASSERT_TRUE(list != NULL);
    size_t len = 0;
    list[len++] = '{';
    for (long i = 0; i < committed; i++)
        len += (size_t)sprintf(list + len, "%s%" PRId64, i ? "," : "", prod.ids[i]);
    list[len++] = '}';
    list[len] = '\0';
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM unnest('%s'::bigint[]) a(id)"
                     " WHERE NOT EXISTS (SELECT 1 FROM skipq.jobs j WHERE j.id = a.id)",
                     list),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(DISTINCT id) FROM unnest('%s'::bigint[]) a(id)",
                     list),
              committed);
    free(list);
    ASSERT_TRUE(total >= preload + committed);
    ASSERT_TRUE(total <= preload + committed + prod.errors);
    assert_every_job_once(pg);

    /* every worker lived through it and reconnected by itself */
    for (int i = 0; i < RWORKERS; i++) {
        ASSERT_TRUE(fl_alive(w[i]));
        if (grep_count("reconnected", logs[i]) < 1) {
            fl_dump("worker", logs[i]);
            HARNESS_FAIL("worker %d did not log a reconnect", i);
        }
    }
    int64_t retried = tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE attempts > 1");
    printf("restart_%s: restart took %.1f s; %" PRId64 " jobs (%d preloaded, %ld from the"
           " producer, %ld producer calls failed) all succeeded in %.1f s; %" PRId64
           " retried (rescued or failed while the server was down), %" PRId64
           " handler runs\n",
           mode, (double)restart_ms / 1000, total, preload, committed, prod.errors,
           (double)ms / 1000, retried, tl_int(pg, "SELECT count(*) FROM runs"));
    for (int i = 0; i < RWORKERS; i++)
        tl_kill(w[i], SIGTERM);
    for (int i = 0; i < RWORKERS; i++)
        ASSERT_EQ(fl_wait_exit(w[i], 20000), 0);
    if (joined)
        free(prod.ids);
}

TEST(restart_fast)
{
    restart_under_load("fast");
}

TEST(restart_immediate)
{
    restart_under_load("immediate");
}

/* ---- backends terminated mid-completion -------------------------------------- */

TEST(terminate_mid_completion)
{
    const int n = fl_long() ? 10000 : 400;
    fl_deadline(fl_long() ? 900 : 250);
    PGconn *pg = tl_db();
    fl_runs_table(pg);
    char rest[512];
    snprintf(rest, sizeof rest, "handlers:\n  rec:\n    command: [%s]\n",
             fl_handler("record"));
    const char *cfg = fl_worker_config(8, "200ms", NULL, rest);
    tl_exec(pg,
            "SELECT count(skipq.enqueue('rec', jsonb_build_object('i', g)))"
            " FROM generate_series(1, %d) g",
            n);

    const char *log = fl_log();
    pid_t w = fl_worker(log, cfg, NULL);
    (void)fl_worker_id(pg, w);
    /* a bounded number of cuts, then the rest drains undisturbed: on a
     * loaded machine the jobs are slower, not the test longer */
    const int64_t max_kills = fl_long() ? 400 : 60;
    int64_t t0 = tl_now_ms(), next = t0;
    int64_t kills = 0, mid = 0, succeeded = 0;
    while (kills < max_kills &&
           (succeeded = tl_int(pg, "SELECT count(*) FROM skipq.jobs"
                                   " WHERE status = 'succeeded'")) < n) {
        if (tl_now_ms() < next) {
            usleep(5000);
            continue;
        }
        /* Every ~150 ms: aim at a completion statement that is running
         * (spinning up to 50 ms for one), else cut the session wherever
         * it is. */
        int64_t hit = 0, aim_until = tl_now_ms() + 50;
        while (hit == 0 && tl_now_ms() < aim_until)
            hit = tl_int(pg, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                             " FROM pg_stat_activity WHERE datname = current_database()"
                             " AND application_name = 'skipq worker' AND state <> 'idle'"
                             " AND query LIKE '%%AS r(id, claims, status%%'");
        mid += hit;
        if (hit == 0)
            hit = tl_int(pg, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                             " FROM pg_stat_activity WHERE datname = current_database()"
                             " AND application_name = 'skipq worker'");
        kills += hit;
        next = tl_now_ms() + 150;
    }
    if (!tl_wait_int(pg, fl_long() ? 500000 : 100000, n,
                     "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'")) {
        fl_dump("worker", log);
        HARNESS_FAIL("not every job succeeded after %" PRId64 " cuts", kills);
    }
    int64_t ms = tl_now_ms() - t0;
    ASSERT_TRUE(fl_alive(w));

    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), n);
    assert_every_job_once(pg);
    /* one worker, so nothing was rescued: exactly one claim and one run
     * per job; claims whose reply was cut were put back uncounted */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE attempts <> 1"
                         " OR errors <> '[]'"),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM runs"), n);
    int lost = grep_count("lost its database connection", log);
    ASSERT_TRUE(kills >= 5 && lost >= 5); /* the cuts did land */
    printf(
        "terminate_mid_completion: %d jobs in %.1f s, %" PRId64 " backends terminated"
        " (%" PRId64
        " during a completion), %d connection losses seen, %d claims put back after a reconnect,"
        " %d completions found already applied\n",
        n, (double)ms / 1000, kills, mid, lost, grep_count("put back", log),
        grep_count("no longer held", log));
    tl_kill(w, SIGTERM);
    ASSERT_EQ(fl_wait_exit(w, 20000), 0);
}

/* ---- the LISTEN session killed ----------------------------------------------- */

static int64_t
pickup_ms(PGconn *pg, int timeout_ms)
{
    int64_t t0 = tl_now_ms();
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('rec')");
    if (!tl_wait_int(pg, timeout_ms, 1, "SELECT count(*) FROM runs WHERE job_id = %" PRId64,
                     id))
        return -1;
    return tl_now_ms() - t0;
}

static int64_t
backend_pid(PGconn *pg)
{
    if (!tl_wait_int(pg, 20000, 1,
                     "SELECT count(*) FROM pg_stat_activity WHERE"
                     " datname = current_database() AND"
                     " application_name = 'skipq worker'"))
        HARNESS_FAIL("the worker has no session");
    return tl_int(pg, "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                      " AND application_name = 'skipq worker'");
}

TEST(listen_killed)
{
    fl_deadline(50); /* shorter than the poll interval: a poll cannot pass */
    PGconn *pg = tl_db();
    fl_runs_table(pg);
    char rest[512];
    snprintf(rest, sizeof rest, "handlers:\n  rec:\n    command: [%s]\n",
             fl_handler("record"));
    const char *cfg = fl_worker_config(2, "60s", NULL, rest);
    const char *log = fl_log();
    pid_t w = fl_worker(log, cfg, NULL);
    (void)fl_worker_id(pg, w);

    /* listening: a NOTIFY wakes it */
    int64_t before = pickup_ms(pg, 10000);
    ASSERT_TRUE(before >= 0);
    for (int round = 1; round <= 2; round++) {
        int64_t old = backend_pid(pg);
        ASSERT_EQ(tl_int(pg, "SELECT pg_terminate_backend(%" PRId64 ")::int", old), 1);
        /* a job enqueued right after the kill: its NOTIFY is lost with
         * the session (or the worker is back already); either way the
         * worker must run it, through the poll it makes on reconnect */
        int64_t gap = pickup_ms(pg, 15000);
        if (gap < 0) {
            fl_dump("worker", log);
            HARNESS_FAIL("round %d: a job enqueued while the worker was away was not run",
                         round);
        }
        ASSERT_TRUE(backend_pid(pg) != old);
        /* listening again: woken at once, not at the next poll (60 s) */
        int64_t after = pickup_ms(pg, 10000);
        if (after < 0 || after > 5000) {
            fl_dump("worker", log);
            HARNESS_FAIL("round %d: pickup after the reconnect took %" PRId64 " ms", round,
                         after);
        }
        printf("listen_killed round %d: pickup %" PRId64 " ms before, %" PRId64
               " ms while away (reconnect + poll), %" PRId64 " ms after the re-LISTEN\n",
               round, before, gap, after);
        before = after;
    }
    ASSERT_TRUE(fl_alive(w));
    ASSERT_EQ(grep_count("reconnected", log), 2);
    /* pickup_ms saw the handlers start; their completions follow */
    ASSERT_TRUE(tl_wait_int(pg, 10000, 0,
                            "SELECT count(*) FROM skipq.jobs"
                            " WHERE status <> 'succeeded'"));
    tl_kill(w, SIGTERM);
    ASSERT_EQ(fl_wait_exit(w, 20000), 0);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
