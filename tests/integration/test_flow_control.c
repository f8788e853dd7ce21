/*
 * test_flow_control.c - limits shared by every worker (sql/limits.sql,
 * src/worker_claim.c, cli/cmd_queue.c): a queue-wide cap on running jobs
 * and a per-key cap, each decided by the handlers themselves through a
 * counter row whose CHECK fails a job that would exceed it; a killed
 * worker's slots coming back with the rescue; a rate limit that no window
 * exceeds while reaching at least 0.9 of it; aging that lets an old low
 * job go first; `skipq queue set` and skipq.queue_set, and who may use
 * them; and the migration older workers refuse.
 */
#include "../handlers/faultlib.h"
#include "skipq.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
stop_worker(pid_t w)
{
    kill(w, SIGTERM);
    ASSERT_EQ(tl_wait_pid(w, 20000), 0);
}

/*
 * n workers at concurrency conc on queue q run its jobs with the slot
 * handler (tests/handlers/slot.c), each job holding its slot for hold ms,
 * until none is left; then every job succeeded once and no slot is left
 * taken.
 */
static void
drain_with_slots(PGconn *pg, int n, int conc, int hold)
{
    char body[128];
    const char *log = tl_tmpfile(".log");
    pid_t w[16];
    int jobs = (int)tl_int(pg, "SELECT count(*) FROM skipq.jobs");
    snprintf(body, sizeof body, "worker:\n  concurrency: %d\n  poll_interval: 200ms\n",
             conc);
    const char *cfg = tl_write_config(body);
    for (int i = 0; i < n; i++)
        w[i] = tl_spawn(log,
                        "exec %s worker --config %s --queue q --handler 'c=%s/slot %d'",
                        tl_skipq(), cfg, SKIPQ_TEST_HANDLER_DIR, hold);
    bool done = tl_wait_int(pg, 90000, 0,
                            "SELECT count(*) FROM skipq.jobs"
                            " WHERE status IN ('queued', 'running')");
    for (int i = 0; i < n; i++)
        stop_worker(w[i]);
    if (!done)
        fl_dump("workers", log);
    ASSERT_TRUE(done);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"
                         " AND attempts = 1"),
              jobs);
    ASSERT_EQ(tl_int(pg, "SELECT coalesce(sum(n), 0) FROM slots"), 0);
}

/* max_running = 3 for nw workers at concurrency conc running `jobs` jobs:
 * the handlers never hold more than 3 slots at once (a fourth would fail
 * its job on the CHECK), none fails, and the cap is reached. */
static void
max_running_holds(int nw, int conc, int jobs)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "CREATE TABLE slots (k text PRIMARY KEY, n int NOT NULL DEFAULT 0"
                " CHECK (n <= 3), peak int NOT NULL DEFAULT 0)");
    tl_exec(pg, "INSERT INTO slots (k) VALUES ('all')");
    tl_exec(pg, "SELECT skipq.queue_set('q', max_running => '3')");
    tl_exec(pg,
            "SELECT skipq.enqueue('c', queue => 'q', max_attempts => 1)"
            " FROM generate_series(1, %d)",
            jobs);
    drain_with_slots(pg, nw, conc, 200);
    ASSERT_EQ(tl_int(pg, "SELECT peak FROM slots WHERE k = 'all'"), 3);
    printf("max_running 3, %d workers at concurrency %d: %d jobs, peak %lld held at once,"
           " %lld failed\n",
           nw, conc, jobs, (long long)tl_int(pg, "SELECT peak FROM slots"),
           (long long)tl_int(pg,
                             "SELECT count(*) FROM skipq.jobs WHERE status = 'failed'"));
}

/* Four workers at concurrency 8: 32 slots for 3. */
TEST(max_running_holds_across_four_workers)
{
    max_running_holds(4, 8, 45);
}

/* Sixteen workers claiming at once, two slots each. */
TEST(max_running_holds_across_sixteen_workers)
{
    max_running_holds(16, 2, 30);
}

/*
 * A per-key limit of 1 with 50 keys, four workers at concurrency 8: no key
 * ever holds two slots (CHECK n <= 1 per key), none fails, and keys run
 * side by side (the jobs of one key are not all at the head).
 */
TEST(per_key_limit_holds_for_fifty_keys)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "CREATE TABLE slots (k text PRIMARY KEY, n int NOT NULL DEFAULT 0"
                " CHECK (n <= 1), peak int NOT NULL DEFAULT 0)");
    tl_exec(pg, "INSERT INTO slots (k) SELECT 'key' || g FROM generate_series(1, 50) g");
    tl_exec(pg, "SELECT skipq.queue_set('q', max_running_per_key => '1')");
    /* key1's four jobs first, then key2's, ...: claim order alone would
     * take one key's jobs together */
    tl_exec(pg, "SELECT skipq.enqueue('c', queue => 'q', max_attempts => 1,"
                " concurrency_key => 'key' || k) FROM generate_series(1, 50) k,"
                " generate_series(1, 4) j ORDER BY k, j");
    drain_with_slots(pg, 4, 8, 50);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM slots WHERE peak = 1"), 50);
    /* keys overlapped: some two jobs of different keys ran at once */
    ASSERT_TRUE(tl_int(pg, "SELECT count(*) FROM skipq.jobs a JOIN skipq.jobs b"
                           " ON a.concurrency_key < b.concurrency_key"
                           " AND a.started_at < b.finished_at"
                           " AND b.started_at < a.finished_at") > 0);
}

/*
 * max_running = 2: a worker holding both slots is killed; another worker
 * claims nothing until the rescue puts them back, then runs them.
 */
TEST(killed_workers_slots_come_back_with_the_rescue)
{
    PGconn *pg = tl_db();
    const char *log = tl_tmpfile(".log");
    tl_exec(pg, "SELECT skipq.queue_set('q', max_running => '2')");
    tl_exec(pg, "SELECT skipq.enqueue('s', '{\"sleep\": 60}', queue => 'q')"
                " FROM generate_series(1, 2)");
    const char *cfg = tl_write_config("worker:\n  concurrency: 4\n  poll_interval: 200ms\n"
                                      "  lease_timeout: 2s\n  heartbeat_interval: 300ms\n");
    pid_t a = tl_spawn(log, "exec %s worker --config %s --queue q --handler 's=sleep 60'",
                       tl_skipq(), cfg);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 2,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"));
    int64_t first = tl_int(pg, "SELECT min(locked_by) FROM skipq.jobs");
    tl_exec(pg, "SELECT skipq.enqueue('s', '{}', queue => 'q') FROM generate_series(1, 3)");
    pid_t b = tl_spawn(log, "exec %s worker --config %s --queue q --handler 's=true'",
                       tl_skipq(), cfg);
    /* b is up and claims nothing: both slots are a's */
    ASSERT_TRUE(tl_wait_int(pg, 10000, 2, "SELECT count(*) FROM skipq.workers"));
    ASSERT_TRUE(!tl_wait_int(pg, 1000, 1,
                             "SELECT (count(*) > 0)::int FROM skipq.jobs"
                             " WHERE status = 'succeeded'"));
    tl_kill(a, SIGKILL);
    tl_wait_pid(a, 5000);
    bool done = tl_wait_int(pg, 30000, 5,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'");
    stop_worker(b);
    if (!done)
        fl_dump("workers", log);
    ASSERT_TRUE(done);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE locked_by = %lld",
                     (long long)first),
              0);
}

/*
 * One worker serves a busy unlimited queue u and a limited queue q
 * (max_running 2): q's jobs are claimed while u still has a backlog, not
 * after it (jobs of u claimed ahead must not leave q no executor).
 */
TEST(limited_queue_is_served_beside_a_busy_unlimited_one)
{
    PGconn *pg = tl_db();
    const char *log = tl_tmpfile(".log");
    tl_exec(pg, "SELECT skipq.queue_set('q', max_running => '2')");
    tl_exec(pg, "SELECT skipq.enqueue('t', queue => 'u') FROM generate_series(1, 400)");
    tl_exec(pg, "SELECT skipq.enqueue('t', queue => 'q') FROM generate_series(1, 6)");
    const char *cfg = tl_write_config("worker:\n  concurrency: 4\n");
    pid_t w = tl_spawn(log,
                       "exec %s worker --config %s --queue u --queue q"
                       " --handler 't=sleep 0.02'",
                       tl_skipq(), cfg);
    bool done = tl_wait_int(pg, 60000, 406,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'");
    stop_worker(w);
    if (!done)
        fl_dump("worker", log);
    ASSERT_TRUE(done);
    /* q's last job started before u's last third did */
    ASSERT_EQ(tl_int(pg, "SELECT (max(started_at) FILTER (WHERE queue = 'q')"
                         " < percentile_disc(0.67) WITHIN GROUP (ORDER BY started_at)"
                         " FILTER (WHERE queue = 'u'))::int FROM skipq.jobs"),
              1);
}

/*
 * A per-key limit with 300 keys and a flood: key a has 2,000 jobs,
 * enqueued first, and 299 other keys one job each. A worker at
 * concurrency 4 runs every other key's job while most of a's wait: a's
 * backlog hides no key, and a claim's bounded walk over the keys goes
 * round all of them.
 */
TEST(a_flooding_key_hides_no_other_key)
{
    PGconn *pg = tl_db();
    const char *log = tl_tmpfile(".log");
    tl_exec(pg, "SELECT skipq.queue_set('q', max_running_per_key => '1')");
    tl_exec(pg, "SELECT skipq.enqueue('t', queue => 'q', concurrency_key => 'a')"
                " FROM generate_series(1, 2000)");
    tl_exec(pg, "SELECT skipq.enqueue('t', queue => 'q', concurrency_key => 'k' || g)"
                " FROM generate_series(1, 299) g");
    const char *cfg = tl_write_config("worker:\n  concurrency: 4\n");
    pid_t w = tl_spawn(log, "exec %s worker --config %s --queue q --handler 't=sleep 0.01'",
                       tl_skipq(), cfg);
    bool done = tl_wait_int(pg, 60000, 299,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"
                            " AND concurrency_key <> 'a'");
    stop_worker(w);
    if (!done)
        fl_dump("worker", log);
    ASSERT_TRUE(done);
    /* a ran one at a time meanwhile: far fewer than the others */
    ASSERT_TRUE(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE concurrency_key = 'a'"
                           " AND status = 'succeeded'") < 299);
}

/*
 * A session holds the limited queue's row (an operator's open
 * transaction): the worker's claims from it give up after half a second
 * and claim nothing, its other queue's jobs run and complete meanwhile,
 * and once the session ends the limited queue's jobs run too.
 */
TEST(a_held_queue_row_stalls_only_that_queue)
{
    PGconn *pg = tl_db();
    PGconn *holder = tl_connect();
    const char *log = tl_tmpfile(".log");
    tl_exec(pg, "SELECT skipq.queue_set('q', max_running => '2')");
    tl_exec(pg, "SELECT skipq.enqueue('t', queue => 'q') FROM generate_series(1, 5)");
    tl_exec(holder, "BEGIN");
    tl_exec(holder, "SELECT 1 FROM skipq.queues WHERE queue = 'q' FOR UPDATE");
    tl_exec(pg, "SELECT skipq.enqueue('t', queue => 'u') FROM generate_series(1, 50)");
    const char *cfg =
        tl_write_config("worker:\n  concurrency: 2\n  poll_interval: 200ms\n");
    pid_t w = tl_spawn(log,
                       "exec %s worker --config %s --queue q --queue u --handler 't=true'",
                       tl_skipq(), cfg);
    bool others = tl_wait_int(pg, 30000, 50,
                              "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"
                              " AND queue = 'u'");
    int64_t held_back = tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE queue = 'q'"
                                   " AND status = 'queued'");
    tl_exec(holder, "COMMIT");
    bool all = tl_wait_int(pg, 30000, 55,
                           "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'");
    stop_worker(w);
    PQfinish(holder);
    if (!others || !all)
        fl_dump("worker", log);
    ASSERT_TRUE(others);
    ASSERT_EQ(held_back, 5);
    ASSERT_TRUE(all);
}

/*
 * A rate of 20 jobs a second, four workers: in no one-second window (the
 * limiter's own, aligned to the epoch on the database clock) do more
 * than 20 jobs start, and over the full windows at least 0.9 of the rate
 * is reached. 4 s here, 20 s with SKIPQ_LONG=1.
 */
TEST(rate_limit_holds_in_every_window)
{
    PGconn *pg = tl_db();
    const char *log = tl_tmpfile(".log");
    int secs = getenv("SKIPQ_LONG") ? 20 : 4;
    pid_t w[4];
    tl_exec(pg, "SELECT skipq.queue_set('q', rate => '20/1s')");
    tl_exec(pg, "SELECT skipq.enqueue('t', queue => 'q') FROM generate_series(1, %d)",
            20 * (secs + 2));
    const char *cfg = tl_write_config("worker:\n  concurrency: 8\n  poll_interval: 5s\n");
    for (int i = 0; i < 4; i++)
        w[i] = tl_spawn(log, "exec %s worker --config %s --queue q --handler 't=true'",
                        tl_skipq(), cfg);
    bool ran = tl_wait_int(pg, (secs + 10) * 1000, 1,
                           "SELECT (count(DISTINCT skipq.rate_window(started_at, '1s'))"
                           " >= %d)::int FROM skipq.jobs WHERE started_at IS NOT NULL",
                           secs + 2);
    for (int i = 0; i < 4; i++)
        stop_worker(w[i]);
    if (!ran)
        fl_dump("workers", log);
    ASSERT_TRUE(ran);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM (SELECT FROM skipq.jobs"
                         " WHERE started_at IS NOT NULL"
                         " GROUP BY skipq.rate_window(started_at, '1s')"
                         " HAVING count(*) > 20) over"),
              0);
    /* the windows strictly between the first and the last were full
     * windows of work: their mean is the achieved rate */
    char *rate = tl_str(pg,
                        "WITH w AS (SELECT skipq.rate_window(started_at, '1s') AS w,"
                        " count(*) AS n FROM skipq.jobs WHERE started_at IS NOT NULL"
                        " GROUP BY 1)"
                        " SELECT round(avg(n), 2) FROM w"
                        " WHERE w > (SELECT min(w) FROM w) AND w < (SELECT max(w) FROM w)");
    printf("rate 20/1s, four workers: %s jobs a second in the full windows\n", rate);
    ASSERT_TRUE(atof(rate) >= 18.0);
    free(rate);
}

/*
 * A rate of 5 a second per key: key a floods the queue with 100 jobs
 * enqueued first, keys b and c have 15 each. In no window does a key
 * start more than 5, and b and c are not held back by a's backlog: each
 * starts 5 in every full window until it runs out.
 */
TEST(rate_per_key_holds_and_a_flooding_key_holds_back_no_other)
{
    PGconn *pg = tl_db();
    const char *log = tl_tmpfile(".log");
    pid_t w[4];
    tl_exec(pg, "SELECT skipq.queue_set('q', rate => '5/1s', rate_by => 'key')");
    tl_exec(pg, "SELECT skipq.enqueue('t', queue => 'q', concurrency_key => 'a')"
                " FROM generate_series(1, 100)");
    tl_exec(pg, "SELECT skipq.enqueue('t', queue => 'q', concurrency_key => k)"
                " FROM generate_series(1, 15), unnest(ARRAY['b', 'c']) AS k");
    const char *cfg = tl_write_config("worker:\n  concurrency: 8\n  poll_interval: 5s\n");
    for (int i = 0; i < 4; i++)
        w[i] = tl_spawn(log, "exec %s worker --config %s --queue q --handler 't=true'",
                        tl_skipq(), cfg);
    bool ran = tl_wait_int(pg, 15000, 30,
                           "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"
                           " AND concurrency_key IN ('b', 'c')");
    for (int i = 0; i < 4; i++)
        stop_worker(w[i]);
    if (!ran)
        fl_dump("workers", log);
    ASSERT_TRUE(ran);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM (SELECT FROM skipq.jobs"
                         " WHERE started_at IS NOT NULL"
                         " GROUP BY concurrency_key, skipq.rate_window(started_at, '1s')"
                         " HAVING count(*) > 5) over"),
              0);
    /* b and c: 15 jobs in at most four windows (three full ones, and
     * the one the workers started in) */
    ASSERT_EQ(tl_int(pg,
                     "SELECT max(n) FROM (SELECT count(DISTINCT"
                     " skipq.rate_window(started_at, '1s')) AS n FROM skipq.jobs"
                     " WHERE concurrency_key IN ('b', 'c') GROUP BY concurrency_key) k") <=
                  4,
              1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.rate_windows WHERE queue = 'q'"
                         " AND used > 5"),
              0);
}

/*
 * Aging after 1 minute: with 200 high-priority jobs runnable for 30 s, a
 * low job runnable for 2 minutes is the next one claimed; without aging
 * (the default) strict order puts it last.
 */
TEST(aging_claims_an_old_low_job_first)
{
    PGconn *pg = tl_db();
    const char *cfg = tl_write_config("worker:\n  concurrency: 1\n  prefetch: 0\n");
    for (int aged = 1; aged >= 0; aged--) {
        tl_exec(pg, "DELETE FROM skipq.jobs");
        tl_exec(pg, "SELECT skipq.queue_set('q', age_after => '%s', max_running => '50')",
                aged ? "1 minute" : "none");
        tl_exec(pg,
                "SELECT skipq.enqueue('t', queue => 'q', priority => 10,"
                " run_at => now() - interval '30 seconds') FROM generate_series(1, 200)");
        int64_t low = tl_int(pg, "SELECT skipq.enqueue('t', queue => 'q', priority => -10,"
                                 " run_at => now() - interval '2 minutes')");
        int rc = tl_skipq_run(NULL, NULL, NULL,
                              "worker --once --config %s --queue q"
                              " --handler 't=true'",
                              cfg);
        ASSERT_EQ(rc, 0);
        int64_t first = tl_int(pg, "SELECT id FROM skipq.jobs"
                                   " ORDER BY started_at, id LIMIT 1");
        int64_t last = tl_int(pg, "SELECT id FROM skipq.jobs"
                                  " ORDER BY started_at DESC, id DESC LIMIT 1");
        ASSERT_EQ(aged ? first : last, low);
    }
}

/* skipq.queue_set: values as the CLI takes them, 'none' clears, bad
 * values are refused naming them; only skipq_admin may call it. */
TEST(queue_set_validates_and_clears)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "SELECT skipq.queue_set('q', max_running => '3', rate => '20/1s',"
                " max_running_per_key => '2', age_after => '5m')");
    char *s = tl_str(pg, "SELECT concat_ws(' ', max_running, max_running_per_key,"
                         " rate_limit, rate_interval, age_after)"
                         " FROM skipq.queue_states WHERE queue = 'q'");
    ASSERT_STREQ(s, "3 2 20 00:00:01 00:05:00");
    free(s);
    tl_exec(pg, "SELECT skipq.queue_set('q', rate => '5/250ms', max_running => 'none')");
    s = tl_str(pg, "SELECT concat_ws(' ', coalesce(max_running::text, '-'), rate_limit,"
                   " rate_interval) FROM skipq.queue_states WHERE queue = 'q'");
    ASSERT_STREQ(s, "- 5 00:00:00.25");
    free(s);
    tl_exec(pg, "SELECT skipq.queue_set('q', rate_by => 'key')");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.queue_states WHERE queue = 'q'"
                         " AND rate_by = 'key' AND rate_limit = 5"),
              1);
    const char *bad[] = {"max_running => '0'",
                         "max_running => 'x'",
                         "rate => '20'",
                         "rate => '0/1s'",
                         "rate => '20/1mon'",
                         "age_after => 'soon'",
                         "max_running_per_key => '-1'",
                         "rate_by => 'kind'"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT skipq.queue_set('q', %s)", bad[i]);
        PGresult *r = PQexec(pg, sql);
        ASSERT_EQ(PQresultStatus(r), PGRES_FATAL_ERROR);
        ASSERT_STREQ(PQresultErrorField(r, PG_DIAG_SQLSTATE), "22023");
        ASSERT_TRUE(strstr(PQresultErrorMessage(r), "invalid ") != NULL);
        PQclear(r);
    }
    /* unchanged by the refused calls */
    ASSERT_EQ(tl_int(pg, "SELECT rate_limit FROM skipq.queues WHERE queue = 'q'"), 5);
    tl_apply_roles();
    const char *groups[] = {"skipq_producer", "skipq_worker"};
    for (int i = 0; i < 2; i++) {
        char role[64];
        snprintf(role, sizeof role, "fc_%d_%d", i, (int)getpid());
        tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE %s", role, groups[i]);
        PGconn *c = tl_connect_as(role);
        tl_expect_denied(c, "SELECT skipq.queue_set('q', max_running => '1')");
        tl_expect_denied(c, "UPDATE skipq.queues SET max_running = 1");
        PQfinish(c);
    }
}

/* skipq queue set and queue ls through the CLI. */
TEST(cli_queue_set_and_ls)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "queue set api --max-running 3 --rate 20/1s"
                           " --max-running-per-key 1 --age-after 10m"),
              0);
    ASSERT_TRUE(strstr(out, "api") != NULL);
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "queue ls"), 0);
    ASSERT_TRUE(strstr(out, "20/1s") != NULL);
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "queue set api --rate none --max-running none"),
              0);
    free(out);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.queues WHERE queue = 'api'"
                         " AND rate_limit IS NULL AND max_running IS NULL"
                         " AND key_max_running = 1"),
              1);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "queue set api --rate fast"), 2);
    ASSERT_TRUE(strstr(err, "invalid rate: \"fast\"") != NULL);
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "queue set api"), 2);
    free(out);
    free(err);
}

/* The migration that adds limits is not marked compatible: a worker
 * that predates it refuses to run rather than ignore the limits. (That a
 * binary refuses a schema with an incompatible migration it does not
 * know is test_fault_schema.newer_schema_refused.) */
TEST(older_workers_refuse_the_limits)
{
    PGconn *pg = tl_db();
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.schema_migrations"
                         " WHERE name = '0009_flow_control' AND NOT compatible"),
              1);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
