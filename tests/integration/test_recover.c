/*
 * test_recover.c - recovery with live workers: recovered dead letters run
 * to success, `recover --status running` takes back only the jobs of a
 * worker that is gone (without waiting for its lease), retention prunes
 * in the worker, and a prune of many rows never stalls a busy worker.
 */
#include "skipq.h"
#include "testlib.h"
#include "lock_keys.h"

#include <signal.h>
#include <unistd.h>

static bool
long_mode(void)
{
    const char *v = getenv("SKIPQ_LONG");
    return v && *v && strcmp(v, "0") != 0;
}

TEST(recovered_failed_jobs_run_to_success)
{
    PGconn *pg = tl_db();
    /* 1,000 dead letters of kinds a and b */
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, attempts, max_attempts, updated_at,"
                " last_error, errors) SELECT CASE WHEN g %% 2 = 0 THEN 'a' ELSE 'b' END,"
                " 'failed', 3, 3, now() - interval '1 hour', 'down',"
                " '[{\"error\": \"down\"}]' FROM generate_series(1, 1000) g");
    char *out = NULL, *err = NULL;
    int rc = tl_skipq_run(NULL, &out, &err,
                          "recover --status failed --kind a --limit 300 --yes");
    if (rc != 0)
        HARNESS_FAIL("recover exited %d: %s", rc, err);
    free(out);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 300);
    ASSERT_EQ(
        tl_int(pg,
               "SELECT count(*) FROM skipq.jobs WHERE status = 'queued' AND kind <> 'a'"),
        0);
    ASSERT_EQ(
        tl_int(pg,
               "SELECT count(*) FROM skipq.jobs WHERE status = 'queued' AND attempts = 0"
               " AND jsonb_array_length(errors) = 2"),
        300);
    rc = tl_skipq_run(NULL, NULL, &err, "worker --once --concurrency 8 --handler a=true");
    if (rc != 0)
        HARNESS_FAIL("worker exited %d: %s", rc, err);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"
                         " AND kind = 'a' AND attempts = 1"),
              300);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'failed'"), 700);
}

TEST(recover_running_takes_only_jobs_of_a_gone_worker)
{
    PGconn *pg = tl_db();
    /* a long lease: recover must not wait for it */
    const char *cfg = tl_write_config(
        "worker:\n  lease_timeout: 1h\n  heartbeat_interval: 1s\n  shutdown_timeout: 500ms\n"
        "  concurrency: 2\n");
    tl_exec(pg, "SELECT skipq.enqueue('dead', queue => 'qd') FROM generate_series(1, 2)");
    tl_exec(pg, "SELECT skipq.enqueue('live', queue => 'ql') FROM generate_series(1, 2)");
    pid_t dead = tl_spawn(
        NULL, "exec %s worker --config %s --queue qd --handler 'dead=exec sleep 46.5'",
        tl_skipq(), cfg);
    pid_t live = tl_spawn(
        NULL, "exec %s worker --config %s --queue ql --handler 'live=exec sleep 47.5'",
        tl_skipq(), cfg);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 4,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"));
    int64_t dead_id = tl_int(pg, "SELECT id FROM skipq.workers WHERE pid = %d", (int)dead);
    /* freeze the live worker so its own rescuer cannot beat recover to
     * the dead worker's jobs; it stays alive (session lock, 1h lease) */
    kill(live, SIGSTOP);
    kill(dead, SIGKILL);
    tl_wait_pid(dead, 5000);
    /* the server ends the killed worker's session (and frees its liveness
     * lock) a moment after the process dies, not at once */
    ASSERT_TRUE(tl_wait_int(pg, 10000, 0,
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                            " AND classid = " SKIPQ__LOCK_CLASS_WORKER_S
                            " AND objid = %" PRId64,
                            dead_id));
    tl_run(NULL, NULL, NULL, "pkill -f '^sleep 46.5' || true");

    char *out = NULL, *err = NULL;
    /* --older-than 0: the rows were touched a moment ago */
    int rc = tl_skipq_run(NULL, &out, &err, "recover --status running --config %s --yes",
                          cfg);
    if (rc != 0)
        HARNESS_FAIL("recover exited %d: %s", rc, err);
    ASSERT_CONTAINS(out, "requeued 2 running jobs");
    free(out);
    free(err);
    ASSERT_EQ(
        tl_int(pg,
               "SELECT count(*) FROM skipq.jobs WHERE kind = 'dead' AND status = 'queued'"
               " AND last_error LIKE 'worker %% lost'"),
        2);
    ASSERT_EQ(
        tl_int(
            pg,
            "SELECT count(*) FROM skipq.jobs WHERE kind = 'live' AND status = 'running'"),
        2);
    kill(live, SIGCONT);
    kill(live, SIGTERM);
    tl_wait_pid(live, 10000);
}

TEST(worker_retention_prunes_old_finished_rows)
{
    PGconn *pg = tl_db();
    const char *cfg = tl_write_config("worker:\n  retention: 1h\n  poll_interval: 200ms\n");
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind, status, updated_at, finished_at) SELECT 'old',"
            " 'succeeded', now() - interval '2 hours', now() - interval '2 hours'"
            " FROM generate_series(1, 30000)");
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at) SELECT 'old', 'failed',"
                " now() - interval '2 hours' FROM generate_series(1, 10)");
    tl_exec(pg, "SELECT skipq.enqueue('new') FROM generate_series(1, 10)");
    pid_t w = tl_spawn(NULL, "exec %s worker --config %s --handler new=true", tl_skipq(),
                       cfg);
    /* retention starts 5 s after the worker; a turn that leaves rows is
     * followed by the next after as long again, so 30,000 rows are gone in
     * well under 13 s (at a fixed 20,000 rows per 10 s they took 15) */
    ASSERT_TRUE(tl_wait_int(pg, 13000, 0,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'old'"
                            " AND status = 'succeeded'"));
    ASSERT_TRUE(tl_wait_int(pg, 10000, 10,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'new'"
                            " AND status = 'succeeded'"));
    /* failed rows stay for inspection */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'failed'"), 10);
    kill(w, SIGTERM);
    ASSERT_EQ(tl_wait_pid(w, 10000), 0);
}

/*
 * The worker vacuums skipq.jobs itself when dead row versions pile up
 * (autovacuum visits a database once a minute by default, and a busy
 * queue's table grows past the server's buffers in that time). Here
 * autovacuum is off for the table, so only the worker can have done it.
 */
/* 12,000 dead row versions in skipq.jobs, counted in the statistics;
 * autovacuum off for the table, so only a worker vacuums it. */
static void
make_dead_rows(PGconn *pg)
{
    tl_exec(pg, "ALTER TABLE skipq.jobs SET (autovacuum_enabled = false)");
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind) SELECT 'gone' FROM generate_series(1, 12000)");
    tl_exec(pg, "DELETE FROM skipq.jobs WHERE kind = 'gone'");
    if (PQserverVersion(pg) >= 150000) { /* before 15, the collector's lag */
        tl_exec(pg, "SELECT pg_stat_force_next_flush()");
        tl_exec(pg, "SELECT 1"); /* the statistics of the delete reach the server's */
    }
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1,
                            "SELECT (n_dead_tup >= 12000)::int FROM"
                            " pg_stat_user_tables WHERE relid = 'skipq.jobs'::regclass"));
    ASSERT_EQ(tl_int(pg, "SELECT vacuum_count FROM pg_stat_user_tables"
                         " WHERE relid = 'skipq.jobs'::regclass"),
              0);
}

TEST(worker_vacuums_its_table_when_dead_rows_pile_up)
{
    PGconn *pg = tl_db();
    const char *cfg =
        tl_write_config("worker:\n  vacuum_interval: 1s\n  poll_interval: 200ms\n");
    make_dead_rows(pg);
    pid_t w = tl_spawn(NULL, "exec %s worker --config %s --handler new=true", tl_skipq(),
                       cfg);
    /* its first look is vacuum_interval (1 s) after the start */
    ASSERT_TRUE(tl_wait_int(pg, 15000, 1,
                            "SELECT vacuum_count FROM pg_stat_user_tables"
                            " WHERE relid = 'skipq.jobs'::regclass"));
    ASSERT_EQ(tl_int(pg, "SELECT n_dead_tup FROM pg_stat_user_tables"
                         " WHERE relid = 'skipq.jobs'::regclass"),
              0);
    /* and the worker works on */
    tl_exec(pg, "SELECT skipq.enqueue('new')");
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'new'"
                            " AND status = 'succeeded'"));
    tl_kill(w, SIGTERM);
    ASSERT_EQ(tl_wait_pid(w, 10000), 0);
}

/* Dead rows that an old snapshot still needs survive a vacuum: the worker
 * says so and waits longer before the next, instead of scanning the table
 * for nothing every interval. */
TEST(worker_backs_off_when_an_old_snapshot_keeps_the_dead_rows)
{
    PGconn *pg = tl_db(), *old = tl_connect();
    const char *cfg =
        tl_write_config("worker:\n  vacuum_interval: 1s\n  poll_interval: 200ms\n");
    const char *log = tl_tmpfile(".log");
    tl_exec(old, "BEGIN ISOLATION LEVEL REPEATABLE READ");
    tl_exec(old, "SELECT count(*) FROM skipq.jobs"); /* its snapshot, from now on */
    make_dead_rows(pg);
    pid_t w = tl_spawn(log, "exec %s worker --config %s --handler new=true", tl_skipq(),
                       cfg);
    ASSERT_TRUE(tl_wait_file_has(log,
                                 "an old snapshot still needs them (a long transaction,"
                                 " pg_dump, a replication slot); next try in 2 s",
                                 15000));
    ASSERT_EQ(tl_int(pg, "SELECT vacuum_count FROM pg_stat_user_tables"
                         " WHERE relid = 'skipq.jobs'::regclass"),
              1);
    tl_exec(old, "COMMIT");
    tl_kill(w, SIGTERM);
    ASSERT_EQ(tl_wait_pid(w, 10000), 0);
    PQfinish(old);
}

/*
 * The rescuer and retention run on a connection of their own (their scans
 * held up the claims on the worker's one): it exists, it comes back when
 * it is cut, retention goes on through it, and the connection that claims
 * is the same all along.
 */
TEST(retention_and_rescue_have_their_own_connection)
{
    PGconn *pg = tl_db();
    const char *cfg = tl_write_config("worker:\n  retention: 1h\n  poll_interval: 200ms\n");
    pid_t w = tl_spawn(NULL, "exec %s worker --config %s --handler new=true", tl_skipq(),
                       cfg);
    /* the rescuer's first turn, 1 s after the start, opens it */
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE datname = current_database()"
                            " AND application_name = 'skipq maintenance'"));
    int64_t claimer =
        tl_int(pg, "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                   " AND application_name = 'skipq worker'");
    int64_t maint =
        tl_int(pg, "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                   " AND application_name = 'skipq maintenance'");
    ASSERT_TRUE(claimer > 0 && maint > 0);
    tl_exec(pg, "SELECT pg_terminate_backend(%lld)", (long long)maint);
    /* back at its next turn (the rescuer's, every 5 s by default) */
    ASSERT_TRUE(tl_wait_int(pg, 15000, 1,
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE datname = current_database()"
                            " AND application_name = 'skipq maintenance'"
                            " AND pid <> %lld",
                            (long long)maint));
    /* and doing both jobs: a running row whose worker is gone goes back,
     * old finished rows go */
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, locked_by, attempts, started_at)"
                " VALUES ('orphan', 'running', 424242, 1, now())");
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind, status, updated_at, finished_at) SELECT 'old',"
            " 'succeeded', now() - interval '2 hours', now() - interval '2 hours'"
            " FROM generate_series(1, 20000)");
    tl_exec(pg, "SELECT skipq.enqueue('new') FROM generate_series(1, 10)");
    ASSERT_TRUE(tl_wait_int(pg, 15000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'orphan'"
                            " AND status = 'queued' AND locked_by IS NULL"));
    ASSERT_TRUE(tl_wait_int(pg, 20000, 0,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'old'"));
    ASSERT_TRUE(tl_wait_int(pg, 10000, 10,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'new'"
                            " AND status = 'succeeded'"));
    ASSERT_EQ(
        tl_int(pg,
               "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
               " AND application_name = 'skipq maintenance'"),
        1);
    ASSERT_EQ(tl_int(pg,
                     "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                     " AND application_name = 'skipq worker'"),
              claimer);
    kill(w, SIGTERM);
    ASSERT_EQ(tl_wait_pid(w, 10000), 0);
    /* and it goes with the worker */
    ASSERT_TRUE(tl_wait_int(pg, 5000, 0,
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE datname = current_database()"
                            " AND application_name = 'skipq maintenance'"));
}

/* skipq.rescue() in SQL: running rows without a holder always go back;
 * with only_worker, of the lost workers' rows only that worker's do. */
TEST(rescue_sql_takes_holderless_rows_and_only_the_named_worker)
{
    PGconn *pg = tl_db();
    tl_exec(
        pg,
        "INSERT INTO skipq.jobs (kind, status, locked_by, attempts, started_at) VALUES"
        " ('nobody', 'running', NULL, 1, now()),"
        " ('gone1', 'running', 900001, 1, now()), ('gone2', 'running', 900002, 1, now())");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.rescue(only_worker => 900002)"), 2);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"
                         " AND kind = 'gone1'"),
              1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"
                         " AND kind IN ('gone2', 'nobody')"),
              2);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.rescue()"), 1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"), 0);
    /* nothing left: the early way out */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.rescue()"), 0);
}

TEST(prune_in_batches_does_not_stall_a_worker)
{
    PGconn *pg = tl_db();
    int rows = long_mode() ? 1000000 : 100000;
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind, status, updated_at, finished_at) SELECT 'old',"
            " 'succeeded', now() - interval '30 days', now() - interval '30 days'"
            " FROM generate_series(1, %d)",
            rows);
    tl_exec(pg, "ANALYZE skipq.jobs");
    /* a steady trickle of jobs; the worker's started_at - created_at is
     * the claim latency each saw */
    const char *cfg =
        tl_write_config("worker:\n  poll_interval: 100ms\n  concurrency: 2\n");
    pid_t w = tl_spawn(NULL, "exec %s worker --config %s --handler tick=true", tl_skipq(),
                       cfg);
    PGconn *prod = tl_connect();
    pid_t pr = tl_spawn(NULL, "%s prune --older-than 7d --batch 5000", tl_skipq());
    int64_t t0 = tl_now_ms();
    int ticks = 0, prune_rc;
    while ((prune_rc = tl_wait_pid(pr, 0)) < 0 && tl_now_ms() - t0 < 120000) {
        tl_exec(prod, "SELECT skipq.enqueue('tick')");
        ticks++;
        usleep(50000);
    }
    double secs = (double)(tl_now_ms() - t0) / 1000.0;
    PQfinish(prod);
    ASSERT_EQ(prune_rc, 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'old'"), 0);
    ASSERT_TRUE(tl_wait_int(pg, 60000, ticks,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'tick'"
                            " AND status = 'succeeded'"));
    /* worst end-to-end latency of a tick enqueued during the prune */
    int64_t worst =
        tl_int(pg, "SELECT (extract(epoch FROM max(started_at - created_at)) * 1000)::int8"
                   " FROM skipq.jobs WHERE kind = 'tick'");
    printf("pruned %d rows in %.1f s; %d jobs ran meanwhile, worst claim latency %lld ms\n",
           rows, secs, ticks, (long long)worst);
    ASSERT_TRUE(worst < 2000);
    kill(w, SIGTERM);
    ASSERT_EQ(tl_wait_pid(w, 10000), 0);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
