/*
 * test_accounting.c - 8 workers x concurrency 8 drain N jobs (2,000; 600 under ASan;
 * 100,000 with SKIPQ_LONG=1; SKIPQ_ACCOUNTING_JOBS=n for any other size)
 * spread over 4 queues and 3 priorities,
 * while 10% of the handlers fail their first attempt, and the final
 * table is checked against counts computed independently of it.
 *
 * The handler (tests/handlers/record.c -f 10 -e) fails attempt 1 of the
 * jobs whose id hashes below 10 ((id * 2654435761) % 100 < 10) and
 * records every run in the side table `runs`: (job, attempt) is unique,
 * and an exclusion constraint on (job_id, [start, end)) rejects two runs
 * of one job that overlap in time, so a job claimed by two workers at
 * once would make a handler fail and the counts below come out wrong.
 * At the end:
 *   - every job succeeded; the per-(queue, priority) counts are exactly
 *     those enqueued;
 *   - attempts = 2 for the hashed 10%, 1 for the rest; runs = attempts
 *     per job; the one error in history is the planned failure;
 *   - no two runs of a job overlap (checked again by query);
 *   - no deadlock: pg_stat_database.deadlocks is 0 for the test
 *     database, and no worker logged one.
 * Leases are long (60 s), so no rescue can legitimately add an attempt.
 *
 * Each job costs a fork, an exec and two database connections (the
 * handler's, and the backend it starts), about 40 ms of CPU: 2,000 jobs
 * keep the plain suite's budget on a 2-core machine, where 5,000 took
 * over a minute and a half on their own.
 */
#include "../handlers/faultlib.h"

#define NWORKERS 8
#define NHIGH 2 /* of which serve only the high band */

TEST(eight_workers_exact_counts)
{
    const char *size = getenv("SKIPQ_ACCOUNTING_JOBS");
    const int n = size && atoi(size) >= 100 ? atoi(size)
                  : fl_long()               ? 100000
                  : fl_sanitized()          ? 600
                                            : 2000;
    const bool big = n > 10000;
    const int batches = 10;
    fl_deadline(big ? 7200 : 280); /* under CTest's 300 s */

    PGconn *pg = tl_db();
    fl_runs_table(pg);
    tl_exec(pg, "CREATE EXTENSION IF NOT EXISTS btree_gist");
    tl_exec(pg, "ALTER TABLE runs ADD done_at timestamptz,"
                " ADD CONSTRAINT runs_one_at_a_time EXCLUDE USING gist"
                " (job_id WITH =, tstzrange(at, done_at) WITH &&)");
    /* what we enqueue, computed from the series, not read back */
    tl_exec(pg,
            "CREATE TABLE expected AS SELECT 'q' || (g %% 4) AS queue,"
            " ((ARRAY[10, 0, -10])[1 + (g / 4) %% 3])::smallint AS priority,"
            " count(*) AS n FROM generate_series(1, %d) g GROUP BY 1, 2",
            n);

    const char *cfg =
        fl_file(".yaml",
                "worker:\n"
                "  queues: [q0, q1, q2, q3]\n"
                "  concurrency: 8\n"
                "  poll_interval: 500ms\n"
                "  heartbeat_interval: 1s\n"
                "  lease_timeout: 60s\n"
                "  shutdown_timeout: 10s\n"
                "retry:\n  max_attempts: 5\n  strategy: fixed\n  base: 50ms\n  max: 1s\n"
                "handlers:\n  rec:\n    command: [%s, -f, 10, -e]\n",
                fl_handler("record"));

    /* a first batch waiting, the rest arrives while the workers run */
    const char *enq = "SELECT count(skipq.enqueue('rec', jsonb_build_object('i', g),"
                      " 'q' || (g %% 4), (ARRAY[10, 0, -10])[1 + (g / 4) %% 3]))"
                      " FROM generate_series(%d, %d) g";
    tl_exec(pg, enq, 1, n / batches);
    pid_t w[NWORKERS];
    const char *logs[NWORKERS];
    int64_t t0 = tl_now_ms();
    for (int i = 0; i < NWORKERS; i++) {
        logs[i] = fl_log();
        w[i] = fl_worker(logs[i], cfg, i < NHIGH ? "--priority high" : NULL);
    }
    for (int b = 1; b < batches; b++)
        tl_exec(pg, enq, n / batches * b + 1, b == batches - 1 ? n : n / batches * (b + 1));

    if (!tl_wait_int(pg, big ? 7000000 : 240000, n,
                     "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'")) {
        for (int i = 0; i < NWORKERS; i++)
            fl_dump("worker", logs[i]);
        HARNESS_FAIL("not every job succeeded: %" PRId64 " of %d",
                     tl_int(pg,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"),
                     n);
    }
    int64_t ms = tl_now_ms() - t0;
    char high_ids[64] = "";
    for (int i = 0; i < NHIGH; i++)
        snprintf(high_ids + strlen(high_ids), sizeof high_ids - strlen(high_ids),
                 "%s%" PRId64, i ? "," : "", fl_worker_id(pg, w[i]));
    /* stop them (their backends flush their statistics as they go) */
    for (int i = 0; i < NWORKERS; i++)
        tl_kill(w[i], SIGTERM);
    for (int i = 0; i < NWORKERS; i++)
        ASSERT_EQ(fl_wait_exit(w[i], 20000), 0);

    /* every job, exactly the counts enqueued per queue and priority */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), n);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status <> 'succeeded'"
                         " OR locked_by IS NOT NULL OR finished_at IS NULL"),
              0);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM expected e FULL JOIN"
                     " (SELECT queue, priority, count(*) AS n FROM skipq.jobs"
                     "  WHERE status = 'succeeded' GROUP BY 1, 2) a USING (queue, priority)"
                     " WHERE e.n IS DISTINCT FROM a.n"),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM expected"), 12);

    /* attempts: 2 for the hashed 10%, 1 for the others */
    int64_t nfail = tl_int(pg, "SELECT count(*) FROM skipq.jobs"
                               " WHERE (id * 2654435761) %% 100 < 10");
    ASSERT_TRUE(nfail > n / 20 && nfail < n / 5);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE attempts <>"
                         " CASE WHEN (id * 2654435761) %% 100 < 10 THEN 2 ELSE 1 END"),
              0);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE jsonb_array_length(errors)"
                     " <> attempts - 1 OR (attempts = 2 AND"
                     " errors->0->>'error' NOT LIKE '%%planned failure of attempt 1%%')"),
              0);

    /* runs: one per attempt, the failing ones exactly the planned ones */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM runs"), n + nfail);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs j LEFT JOIN"
                         " (SELECT job_id, count(*) AS c, max(attempt) AS m FROM runs"
                         "  GROUP BY job_id) r ON r.job_id = j.id"
                         " WHERE r.c IS DISTINCT FROM j.attempts::bigint"
                         "  OR r.m IS DISTINCT FROM j.attempts"),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM runs WHERE ok <>"
                         " NOT (attempt = 1 AND (job_id * 2654435761) %% 100 < 10)"),
              0);

    /* never two runs of a job at once (the constraint held them off;
     * this says so again, and that every run recorded its end) */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM runs WHERE done_at IS NULL OR done_at < at"),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM runs a JOIN runs b ON a.job_id = b.job_id"
                         " AND a.attempt < b.attempt WHERE b.at < a.done_at"),
              0);
    /* the high-band workers ran high jobs only */
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM runs r JOIN skipq.jobs j ON j.id = r.job_id"
                     " WHERE r.worker = ANY ('{%s}'::bigint[]) AND j.priority <> 10",
                     high_ids),
              0);

    /* no deadlock, seen by the server or by a worker */
    tl_exec(pg, "SELECT pg_stat_clear_snapshot()");
    ASSERT_EQ(tl_int(pg, "SELECT deadlocks FROM pg_stat_database"
                         " WHERE datname = current_database()"),
              0);
    for (int i = 0; i < NWORKERS; i++) {
        char *out = NULL;
        tl_run(NULL, &out, NULL, "grep -ci deadlock %s || true", logs[i]);
        ASSERT_EQ(atoi(out ? out : "0"), 0);
        free(out);
    }
    int64_t high_by_high = tl_int(pg,
                                  "SELECT count(*) FROM runs"
                                  " WHERE worker = ANY ('{%s}'::bigint[])",
                                  high_ids);
    printf("accounting: %d jobs (%" PRId64 " failing once) by %d workers x 8 in %.1f s"
           " (%.0f jobs/s), %" PRId64 " runs (%" PRId64 " by the high-only workers),"
           " 0 deadlocks, 0 overlapping runs\n",
           n, nfail, NWORKERS, (double)ms / 1000, (double)n * 1000 / (double)ms, n + nfail,
           high_by_high);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
