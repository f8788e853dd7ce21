/*
 * test_fault_hosts.c - many hosts on one database: 8 worker processes,
 * each registered under a host name of its own (SKIPQ_HOSTNAME), drain N
 * jobs (20,000; 4,000 under ASan; 200,000 with SKIPQ_LONG=1) through a
 * persistent handler, and two of them are killed with SIGKILL mid-drain
 * and not replaced: the six left, and their rescuers, finish the work.
 *
 * The handler (tests/handlers/persist.c) writes one line per claim it is
 * given, "<job> <attempt> <pid>", before it answers. At the end:
 *   - every job succeeded, and no claim ran twice: each (job, attempt)
 *     is one line;
 *   - the final attempt of every job ran, and no attempt beyond it;
 *   - an attempt before the last was held by a killed worker: it is a
 *     "worker N lost" in the job's history naming one of the two, and
 *     nothing else is;
 *   - skipq.workers shows the eight host names.
 */
#include "../handlers/faultlib.h"

#define NHOSTS 8

/* `skipq worker` as host "host-i" (exec'd: the pid is the worker's). */
static pid_t
host_worker(const char *log, const char *cfg, int i)
{
    return fl_spawn(log, "SKIPQ_HOSTNAME=host-%d exec %s worker --config %s", i, tl_skipq(),
                    cfg);
}

TEST(eight_hosts_two_killed_exactly_once_per_claim)
{
    const int n = fl_long() ? 200000 : fl_sanitized() ? 4000 : 20000;
    fl_deadline(fl_long() ? 1800 : 300);

    PGconn *pg = tl_db();
    const char *claims = fl_file(".claims", "%s", "");
    unlink(claims);
    setenv("PERSIST_CLAIMS", claims, 1);
    char rest[512];
    snprintf(rest, sizeof rest,
             "retry:\n  max_attempts: 20\n  base: 100ms\n  max: 1s\n"
             "handlers:\n  p:\n    command: [%s]\n    persistent: true\n    processes: 4\n",
             fl_handler("persist"));
    const char *cfg = fl_worker_config(8, "200ms", NULL, rest);
    tl_exec(pg,
            "SELECT count(skipq.enqueue('p', jsonb_build_object('i', g)))"
            " FROM generate_series(1, %d) g",
            n);

    pid_t w[NHOSTS];
    const char *logs[NHOSTS];
    int64_t t0 = tl_now_ms();
    for (int i = 0; i < NHOSTS; i++) {
        logs[i] = fl_log();
        w[i] = host_worker(logs[i], cfg, i + 1);
    }
    char killed[64] = "";
    for (int k = 0; k < 2; k++) {
        struct fl_progress p = {pg, (int64_t)n * (k + 1) / 3};
        if (!wait_until(120000, fl_done_at_least, &p))
            HARNESS_FAIL("no progress to %" PRId64 " jobs", p.want);
        int victim = k * 5; /* host-1, then host-6 */
        int64_t wid = fl_worker_id(pg, w[victim]);
        int64_t held = tl_int(pg,
                              "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"
                              " AND locked_by = %" PRId64,
                              wid);
        tl_kill(w[victim], SIGKILL);
        ASSERT_EQ(fl_wait_exit(w[victim], 10000), 128 + SIGKILL);
        snprintf(killed + strlen(killed), sizeof killed - strlen(killed), "%s%" PRId64,
                 k ? "," : "", wid);
        printf("  killed host-%d (worker %" PRId64 ") holding %" PRId64 " jobs\n",
               victim + 1, wid, held);
    }
    if (!tl_wait_int(pg, fl_long() ? 1200000 : 240000, n,
                     "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'")) {
        for (int i = 0; i < NHOSTS; i++)
            fl_dump("worker", logs[i]);
        HARNESS_FAIL("not every job succeeded");
    }
    int64_t ms = tl_now_ms() - t0;

    ASSERT_EQ(tl_int(pg, "SELECT count(DISTINCT host) FROM skipq.workers"
                         " WHERE host LIKE 'host-%%'"),
              NHOSTS);
    for (int i = 0; i < NHOSTS; i++) {
        if (i != 0 && i != 5) {
            tl_kill(w[i], SIGTERM);
            ASSERT_EQ(fl_wait_exit(w[i], 20000), 0);
        }
    }
    /* every claim a handler was given, loaded once the handlers are gone */
    tl_exec(pg, "CREATE TABLE claims (job_id bigint, attempt int, pid int)");
    char *url = tl_shq(tl_url());
    ASSERT_EQ(tl_run(NULL, NULL, NULL,
                     "psql -X -q -v ON_ERROR_STOP=1 -d %s"
                     " -c \"\\copy claims FROM '%s' (DELIMITER ' ')\"",
                     url, claims),
              0);
    free(url);

    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), n);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status <> 'succeeded'"), 0);
    /* exactly once per claim */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM (SELECT FROM claims"
                         " GROUP BY job_id, attempt HAVING count(*) > 1) d"),
              0);
    /* the final claim of every job ran, and none beyond it */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs j WHERE NOT EXISTS ("
                         " SELECT FROM claims c WHERE c.job_id = j.id"
                         " AND c.attempt = j.attempts)"),
              0);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM claims c JOIN skipq.jobs j ON j.id = c.job_id"
                     " WHERE c.attempt > j.attempts"),
              0);
    /* an earlier attempt is a "worker N lost" naming a killed worker */
    ASSERT_EQ(fl_lost_not_by(pg, killed), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE attempts = 1"
                         " AND errors <> '[]'"),
              0);
    int64_t rerun = tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE attempts > 1");
    ASSERT_TRUE(rerun >= 1); /* the kills did hit jobs in flight */
    printf("eight_hosts: %d jobs in %.1f s on %d hosts, 2 killed, %" PRId64
           " jobs run again after a kill, %" PRId64 " claims\n",
           n, (double)ms / 1000, NHOSTS, rerun, tl_int(pg, "SELECT count(*) FROM claims"));
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
