/*
 * test_fault_kill.c - kill -9 workers at random moments while 4 workers
 * drain N jobs (1,500; 600 under ASan; 20,000 with SKIPQ_LONG=1), start a replacement
 * after each kill, and let the survivors and the rescuer finish.
 *
 * Every invocation of the handler (tests/handlers/record.c) is a row in
 * the side table `runs` (job, attempt, worker pid), unique per (job,
 * attempt). At the end:
 *   - every job succeeded, none is left queued or running;
 *   - the claim that completed a job ran its handler exactly once, and an
 *     earlier attempt ran only on a worker that was then killed;
 *   - a job with attempts = 1 was run exactly once;
 *   - a job run more than once was held by a killed worker: each extra
 *     attempt has an error-history entry "worker N lost" naming a killed
 *     worker, and nothing else.
 * SKIPQ_FAULT_SEED=n replays the kill moments of a failed run.
 */
#include "../handlers/faultlib.h"

#define NWORKERS 4

TEST(kill_workers)
{
    const int n = fl_long() ? 20000 : fl_sanitized() ? 600 : 1500;
    const int kills = fl_long() ? 8 : 3;
    unsigned seed = (unsigned)(getpid() ^ tl_now_ms());
    if (getenv("SKIPQ_FAULT_SEED"))
        seed = (unsigned)strtoul(getenv("SKIPQ_FAULT_SEED"), NULL, 10);
    printf("kill_workers: %d jobs, %d kills, seed %u\n", n, kills, seed);
    srand(seed);
    fl_deadline(fl_long() ? 900 : 240);

    PGconn *pg = tl_db();
    fl_runs_table(pg);
    char rest[512];
    snprintf(rest, sizeof rest,
             "retry:\n  max_attempts: 20\n  base: 100ms\n  max: 1s\n"
             "handlers:\n  rec:\n    command: [%s, -r, 40]\n",
             fl_handler("record"));
    const char *cfg = fl_worker_config(4, "200ms", NULL, rest);
    tl_exec(pg,
            "SELECT count(skipq.enqueue('rec', jsonb_build_object('i', g)))"
            " FROM generate_series(1, %d) g",
            n);

    pid_t w[NWORKERS];
    const char *logs[NWORKERS];
    for (int i = 0; i < NWORKERS; i++) {
        logs[i] = fl_log();
        w[i] = fl_worker(logs[i], cfg, NULL);
    }
    char killed_ids[2048] = "";
    int64_t t0 = tl_now_ms();
    for (int k = 0; k < kills; k++) {
        /* at spread-out points of progress, plus a random moment */
        struct fl_progress p = {pg, (int64_t)n * (k + 1) / (kills + 2)};
        if (!wait_until(120000, fl_done_at_least, &p))
            HARNESS_FAIL("no progress to %" PRId64 " jobs", p.want);
        usleep((useconds_t)(rand() % 300) * 1000);
        int victim = rand() % NWORKERS;
        int64_t wid = fl_worker_id(pg, w[victim]);
        tl_kill(w[victim], SIGKILL);
        ASSERT_EQ(fl_wait_exit(w[victim], 10000), 128 + SIGKILL);
        snprintf(killed_ids + strlen(killed_ids), sizeof killed_ids - strlen(killed_ids),
                 "%s%" PRId64, k ? "," : "", wid);
        printf("  kill %d: worker %" PRId64 " (pid %d) at %" PRId64 " succeeded, %" PRId64
               " running\n",
               k + 1, wid, (int)w[victim],
               tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"),
               tl_int(pg,
                      "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"
                      " AND locked_by = %" PRId64,
                      wid));
        w[victim] = fl_worker(logs[victim], cfg, NULL);
    }
    if (!tl_wait_int(pg, fl_long() ? 600000 : 120000, n,
                     "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'")) {
        for (int i = 0; i < NWORKERS; i++)
            fl_dump("worker", logs[i]);
        HARNESS_FAIL("not every job succeeded");
    }
    int64_t ms = tl_now_ms() - t0;

    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), n);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status <> 'succeeded'"), 0);
    /* every job ran; its final (successful) claim ran the handler exactly
     * once; an earlier attempt ran only on a worker that was then killed
     * (a killed worker may also have completed a job before dying) */
    ASSERT_EQ(tl_int(pg, "SELECT count(DISTINCT job_id) FROM runs"), n);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs j WHERE (SELECT count(*) FROM runs r"
                     " WHERE r.job_id = j.id AND r.attempt = j.attempts AND r.ok) <> 1"),
              0);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM runs r JOIN skipq.jobs j ON j.id = r.job_id"
                     " WHERE r.attempt < j.attempts AND r.worker <> ALL ('{%s}'::bigint[])",
                     killed_ids),
              0);
    /* untouched jobs: one attempt, one run */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs j WHERE j.attempts = 1 AND"
                         " (SELECT count(*) FROM runs r WHERE r.job_id = j.id) <> 1"),
              0);
    /* no run beyond the attempts counted, and no handler failure */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM runs r JOIN skipq.jobs j ON j.id = r.job_id"
                         " WHERE r.attempt > j.attempts OR NOT r.ok"),
              0);
    /* every extra attempt is a "worker N lost" by a killed worker */
    ASSERT_EQ(fl_lost_not_by(pg, killed_ids), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs j WHERE j.attempts = 1"
                         " AND j.errors <> '[]'"),
              0);
    int64_t rerun = tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE attempts > 1");
    int64_t runs = tl_int(pg, "SELECT count(*) FROM runs");
    ASSERT_TRUE(rerun >= 1); /* the kills did hit jobs in flight */
    printf("kill_workers: %d jobs in %.1f s, %d kills, %" PRId64
           " jobs retried after a kill,"
           " %" PRId64 " handler runs\n",
           n, (double)ms / 1000, kills, rerun, runs);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
