/*
 * test_liveness.c - a live worker keeps its jobs, whatever others do.
 *
 * Who judges a worker gone uses the worker's own declared lease; a lock
 * another role holds never stalls a worker or turns rescue off; a row
 * lock on one job delays only that job; a cancel is what the table says,
 * not what a NOTIFY says, and survives a lost connection; a shutdown that
 * cannot write its results says so; a claimed row that cannot be taken
 * goes back; worker ids past 2^31 work. Durations come from each test's
 * config (heartbeats of 0.5-2 s), so every case runs in seconds.
 */
#include "skipq.h"
#include "testlib.h"
#include "lock_keys.h"

#include <signal.h>
#include <unistd.h>

static void
stop_worker(pid_t w)
{
    kill(w, SIGTERM);
    tl_wait_pid(w, 15000);
}

/*
 * A worker that beats every 2 s with a 6 s lease runs jobs for 7 s, while
 * a worker whose own lease is 1 s rescues every 200 ms and an operator
 * runs `recover --status running` with a 1 s lease: neither takes the
 * slow-beating worker's live jobs. (Judged by the caller's lease, each
 * job was rescued at the first late beat and ran again.)
 */
TEST(recover_running_keeps_a_slow_beating_workers_jobs)
{
    PGconn *pg = tl_db();
    const char *slow =
        tl_write_config("worker:\n  heartbeat_interval: 2s\n  lease_timeout: 6s\n"
                        "  concurrency: 2\n  shutdown_timeout: 1s\n");
    const char *fast =
        tl_write_config("worker:\n  heartbeat_interval: 200ms\n  lease_timeout: 1s\n"
                        "  shutdown_timeout: 1s\nrecover:\n  older_than: 0s\n");
    tl_exec(pg, "SELECT skipq.enqueue('slow', queue => 'qs') FROM generate_series(1, 2)");
    pid_t ws = tl_spawn(NULL,
                        "exec %s worker --config %s --queue qs --handler 'slow=sleep 7'",
                        tl_skipq(), slow);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 2,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"));
    pid_t wf = tl_spawn(NULL, "exec %s worker --config %s --queue other --handler 'x=true'",
                        tl_skipq(), fast);
    /* three of the slow worker's beats, with recover run between them */
    for (int i = 0; i < 3; i++) {
        char *out = NULL, *err = NULL;
        int rc = tl_skipq_run(NULL, &out, &err,
                              "recover --status running --config %s --yes", fast);
        if (rc != 0)
            HARNESS_FAIL("recover exited %d: %s", rc, err);
        free(out);
        free(err);
        ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"
                             " AND attempts = 1"),
                  2);
        usleep(1500 * 1000);
    }
    ASSERT_TRUE(tl_wait_int(pg, 15000, 2,
                            "SELECT count(*) FROM skipq.jobs WHERE status ="
                            " 'succeeded' AND attempts = 1 AND errors = '[]'"));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers WHERE lease = '6 s'"
                         " AND heartbeat_interval = '2 s'"),
              1);
    stop_worker(ws);
    stop_worker(wf);
}

/*
 * Another role holds the liveness keys of the first 50 worker ids: the
 * worker does not wait for its lock, runs jobs, says in its row that it
 * holds no lock (so it is judged by its lease), and takes the lock at a
 * heartbeat once it is free.
 */
TEST(liveness_lock_held_by_another_role_does_not_stall)
{
    PGconn *pg = tl_db();
    PGconn *squat = tl_connect();
    const char *log = tl_tmpfile(".log");
    const char *cfg =
        tl_write_config("worker:\n  heartbeat_interval: 300ms\n  lease_timeout: 3s\n");
    tl_exec(squat, "SELECT pg_advisory_lock(" SKIPQ__LOCK_CLASS_WORKER_S
                   ", g) FROM generate_series(1, 50) g");
    tl_exec(pg, "SELECT skipq.enqueue('a') FROM generate_series(1, 3)");
    pid_t w = tl_spawn(log, "exec %s worker --config %s --handler a=true", tl_skipq(), cfg);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 3,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    ASSERT_TRUE(tl_wait_file_has(log, "could not take its liveness lock", 5000));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers WHERE NOT liveness_lock"), 1);
    /* judged by its lease while it holds no lock: alive */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.active_workers WHERE alive"), 1);
    tl_exec(squat, "SELECT pg_advisory_unlock_all()");
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1,
                            "SELECT count(*) FROM skipq.workers WHERE liveness_lock"));
    ASSERT_TRUE(tl_wait_file_has(log, "holds its liveness lock now", 5000));
    PQfinish(squat);
    stop_worker(w);
}

/* After a reconnect the worker's key is still held (here by a session
 * that was waiting for it, as a stale backend of the worker's own lost
 * session would hold it): the worker does not block, runs jobs, beats,
 * and takes its lock once the key is free. */
TEST(reconnect_with_a_stale_backend_holding_the_lock)
{
    PGconn *pg = tl_db();
    PGconn *stale = tl_connect();
    const char *log = tl_tmpfile(".log");
    const char *cfg =
        tl_write_config("worker:\n  heartbeat_interval: 300ms\n  lease_timeout: 3s\n");
    pid_t w = tl_spawn(log, "exec %s worker --config %s --handler a=true", tl_skipq(), cfg);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.workers WHERE liveness_lock"));
    int64_t id = tl_int(pg, "SELECT id FROM skipq.workers");
    /* queued behind the worker's lock: it gets the key the moment the
     * worker's backend ends, before the worker reconnects */
    char sql[128];
    snprintf(sql, sizeof sql,
             "SELECT pg_advisory_lock(" SKIPQ__LOCK_CLASS_WORKER_S ", %lld)",
             (long long)id);
    ASSERT_TRUE(PQsendQuery(stale, sql) == 1);
    tl_exec(pg,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'skipq worker' AND datname = current_database()");
    PGresult *res;
    while ((res = PQgetResult(stale)) != NULL) {
        ASSERT_TRUE(PQresultStatus(res) == PGRES_TUPLES_OK);
        PQclear(res);
    }
    ASSERT_TRUE(tl_wait_file_has(log, "reconnected", 5000));
    tl_exec(pg, "SELECT skipq.enqueue('a') FROM generate_series(1, 3)");
    ASSERT_TRUE(tl_wait_int(pg, 10000, 3,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers WHERE NOT liveness_lock"), 1);
    ASSERT_TRUE(tl_wait_int(pg, 3000, 1,
                            "SELECT count(*) FROM skipq.workers"
                            " WHERE heartbeat_at > now() - interval '1 s'"));
    tl_exec(stale, "SELECT pg_advisory_unlock_all()");
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1,
                            "SELECT count(*) FROM skipq.workers WHERE liveness_lock"));
    PQfinish(stale);
    stop_worker(w);
}

/* A worker that died holding a job, while another role holds the old
 * rescuer key: the job is rescued anyway, and the turn is recorded. */
TEST(rescue_runs_while_another_role_holds_old_key)
{
    PGconn *pg = tl_db();
    PGconn *squat = tl_connect();
    const char *cfg =
        tl_write_config("worker:\n  heartbeat_interval: 200ms\n  lease_timeout: 1s\n");
    tl_exec(squat,
            "SELECT pg_advisory_lock(" SKIPQ__LOCK_CLASS_S ", " SKIPQ__LOCK_RESCUER_S ")");
    tl_exec(
        pg,
        "INSERT INTO skipq.workers (host, pid, queues, priorities, concurrency, version,"
        " heartbeat_at, lease) VALUES ('gone', 1, '{default}', 'all', 1, 'x',"
        " now() - interval '1 minute', '2 s')");
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind, status, attempts, claims, locked_by, started_at)"
            " SELECT 'a', 'running', 1, 1, max(id), now() FROM skipq.workers");
    pid_t w = tl_spawn(NULL, "exec %s worker --config %s --handler a=true", tl_skipq(),
                       cfg);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"
                            " AND last_error LIKE 'worker %% lost'"));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.maintenance WHERE task = 'rescue'"
                         " AND last_run_at > now() - interval '10 s'"),
              1);
    PQfinish(squat);
    stop_worker(w);
}

/* A rescue that cannot run for longer than the lease shows in stats. */
TEST(stats_says_when_rescue_is_late)
{
    PGconn *pg = tl_db();
    tl_exec(
        pg,
        "INSERT INTO skipq.workers (host, pid, queues, priorities, concurrency, version,"
        " started_at, heartbeat_at, lease) VALUES ('h', 1, '{default}', 'all', 1, 'x',"
        " now() - interval '1 hour', now(), '1 s')");
    char *out = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "stats"), 0);
    ASSERT_CONTAINS(out, "rescuer: has not run (LATE");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "stats --json"), 0);
    ASSERT_CONTAINS(out, "\"late\":true");
    free(out);
    tl_exec(pg, "UPDATE skipq.maintenance SET last_run_at = now()");
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "stats"), 0);
    ASSERT_CONTAINS(out, "rescuer: ");
    ASSERT_TRUE(strstr(out, "LATE") == NULL);
    free(out);
}

/* Any role may NOTIFY skipq_control: a forged cancel is ignored, and the
 * job runs to success. A real cancel (skipq jobs cancel) still works. */
TEST(forged_cancel_notify_is_ignored)
{
    PGconn *pg = tl_db();
    const char *cfg = tl_write_config("worker:\n  concurrency: 2\n");
    tl_exec(pg, "SELECT skipq.enqueue('s') FROM generate_series(1, 2)");
    pid_t w = tl_spawn(NULL, "exec %s worker --config %s --handler 's=sleep 2'", tl_skipq(),
                       cfg);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 2,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"));
    int64_t wid = tl_int(pg, "SELECT min(locked_by) FROM skipq.jobs");
    tl_exec(pg,
            "SELECT pg_notify('skipq_control', format('cancel %%s %%s', id, %lld))"
            " FROM skipq.jobs WHERE id = 1",
            (long long)wid);
    char *out = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs cancel 2"), 0);
    free(out);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 2,
                            "SELECT count(*) FROM skipq.jobs WHERE status IN"
                            " ('succeeded', 'cancelled')"));
    ASSERT_EQ(
        tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE id = 1 AND status = 'succeeded'"),
        1);
    ASSERT_EQ(
        tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE id = 2 AND status = 'cancelled'"),
        1);
    stop_worker(w);
}

/* The cancel is written while the worker's connection is gone (so its
 * NOTIFY reaches no one): the worker reads it after reconnecting. */
TEST(cancel_sent_while_disconnected_is_honoured)
{
    PGconn *pg = tl_db();
    const char *cfg =
        tl_write_config("worker:\n  heartbeat_interval: 10s\n  lease_timeout: 60s\n");
    tl_exec(pg, "SELECT skipq.enqueue('s')");
    pid_t w = tl_spawn(NULL, "exec %s worker --config %s --handler 's=sleep 8'", tl_skipq(),
                       cfg);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"));
    /* as skipq.cancel does, without the NOTIFY the worker would miss */
    tl_exec(pg, "UPDATE skipq.jobs SET cancel_requested_at = now()");
    tl_exec(pg,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'skipq worker' AND datname = current_database()");
    int64_t t0 = tl_now_ms();
    ASSERT_TRUE(tl_wait_int(pg, 6000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'cancelled'"));
    ASSERT_TRUE(tl_now_ms() - t0 < 6000);
    stop_worker(w);
}

/*
 * An operator holds one running job's row locked for three leases: that
 * job's completion waits, the worker keeps beating, and no other job of
 * it is rescued or run twice; the others complete meanwhile.
 */
TEST(a_row_lock_on_one_job_delays_only_that_job)
{
    PGconn *pg = tl_db();
    PGconn *op = tl_connect();
    const char *cfg =
        tl_write_config("worker:\n  heartbeat_interval: 500ms\n  lease_timeout: 2s\n"
                        "  concurrency: 4\n  shutdown_timeout: 2s\n");
    const char *rescuer =
        tl_write_config("worker:\n  heartbeat_interval: 200ms\n  lease_timeout: 2s\n");
    tl_exec(pg, "SELECT skipq.enqueue('short', queue => 'q')");
    tl_exec(pg, "SELECT skipq.enqueue('long', queue => 'q') FROM generate_series(1, 3)");
    pid_t other = tl_spawn(NULL,
                           "exec %s worker --config %s --queue elsewhere --handler x=true",
                           tl_skipq(), rescuer);
    pid_t w = tl_spawn(NULL,
                       "exec %s worker --config %s --queue q --handler 'short=true'"
                       " --handler 'long=sleep 4'",
                       tl_skipq(), cfg);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 3,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"
                            " AND kind = 'long'"));
    /* the short job's row, locked before its completion arrives */
    tl_exec(op, "BEGIN");
    tl_exec(op, "SELECT 1 FROM skipq.jobs WHERE kind = 'short' FOR UPDATE");
    int64_t t0 = tl_now_ms();
    ASSERT_TRUE(tl_wait_int(pg, 10000, 3,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'long'"
                            " AND status = 'succeeded'"));
    /* hold it for three leases in all */
    int64_t left = 6000 - (tl_now_ms() - t0);
    if (left > 0)
        usleep((useconds_t)left * 1000);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"
                         " WHERE heartbeat_at > now() - interval '1.5 s'"),
              2);
    tl_exec(op, "COMMIT");
    ASSERT_TRUE(tl_wait_int(pg, 15000, 4,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    ASSERT_EQ(
        tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE attempts <> 1 OR errors <> '[]'"),
        0);
    PQfinish(op);
    stop_worker(w);
    stop_worker(other);
}

/* migrate behind an open transaction on skipq.jobs gives up with a
 * clear error instead of queueing every claim behind its DDL. */
TEST(migrate_behind_a_row_lock_gives_up)
{
    PGconn *pg = tl_db();
    PGconn *op = tl_connect();
    tl_exec(pg, "SELECT skipq.enqueue('a')");
    tl_exec(op, "BEGIN");
    tl_exec(op, "UPDATE skipq.jobs SET payload = payload");
    char *out = NULL, *err = NULL;
    int64_t t0 = tl_now_ms();
    int rc = tl_skipq_run(NULL, &out, &err, "migrate --lock-timeout 1s");
    ASSERT_EQ(rc, 1);
    ASSERT_CONTAINS(err, "lock");
    ASSERT_CONTAINS(err, "skipq.jobs");
    ASSERT_TRUE(tl_now_ms() - t0 < 10000);
    free(out);
    free(err);
    tl_exec(op, "ROLLBACK");
    PQfinish(op);
}

/*
 * SIGTERM while the database is unreachable: the job that finished
 * meanwhile cannot be recorded. The worker names it and exits non-zero
 * instead of a clean exit that hides a re-run.
 */
TEST(shutdown_during_an_outage_names_unrecorded_jobs)
{
    PGconn *pg = tl_db();
    const char *log = tl_tmpfile(".log");
    const char *cfg = tl_write_config("worker:\n  shutdown_timeout: 2s\n");
    char *db = tl_str(pg, "SELECT current_database()");
    PGconn *admin = PQconnectdb(getenv("SKIPQ_TEST_PG")); /* the postgres database */
    ASSERT_TRUE(PQstatus(admin) == CONNECTION_OK);
    tl_exec(pg, "SELECT skipq.enqueue('s')");
    pid_t w = tl_spawn(log, "exec %s worker --config %s --handler 's=sleep 1'", tl_skipq(),
                       cfg);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"));
    int64_t id = tl_int(pg, "SELECT id FROM skipq.jobs");
    tl_exec(admin, "ALTER DATABASE \"%s\" ALLOW_CONNECTIONS false", db);
    tl_exec(pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()");
    kill(w, SIGTERM);
    int st = tl_wait_pid(w, 15000);
    tl_exec(admin, "ALTER DATABASE \"%s\" ALLOW_CONNECTIONS true", db);
    PQfinish(admin);
    ASSERT_EQ(st, 1);
    char needle[64];
    snprintf(needle, sizeof needle, "job %lld finished", (long long)id);
    ASSERT_TRUE(tl_wait_file_has(log, needle, 1000));
    ASSERT_TRUE(tl_wait_file_has(log, "could not be written", 1000));
    free(db);
}

/* A WARNING from the server (here a site's trigger; in real life "the
 * connection will be terminated") reaches the operator through the log,
 * escaped, not as libpq's raw line. */
TEST(server_warnings_go_through_the_log)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "CREATE FUNCTION public.warn() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN RAISE WARNING E'\\x1b[2Jdisk nearly full'; RETURN NULL; END $$");
    tl_exec(pg, "CREATE TRIGGER warn AFTER INSERT ON skipq.jobs"
                " FOR EACH STATEMENT EXECUTE FUNCTION public.warn()");
    char *out = NULL, *err = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "enqueue k"), 0);
    ASSERT_CONTAINS(err, "server WARNING: \\u001b[2Jdisk nearly full");
    ASSERT_TRUE(strchr(err, 0x1b) == NULL);
    free(out);
    free(err);
}

/* A claimed row the worker cannot take (out of memory, by failpoint)
 * goes back at once and runs, instead of staying running under a live
 * worker for ever. */
TEST(claimed_job_that_cannot_be_allocated_goes_back)
{
#ifndef SKIPQ_FAILPOINTS
    printf(
        "SKIPPED claimed_job_that_cannot_be_allocated_goes_back: no failpoints in this build\n");
#else
    PGconn *pg = tl_db();
    tl_exec(pg, "SELECT skipq.enqueue('a') FROM generate_series(1, 3)");
    char *err = NULL;
    int rc = tl_run(NULL, NULL, &err,
                    "SKIPQ_FAILPOINT=claim_oom %s worker --once --handler a=true",
                    tl_skipq());
    if (rc != 0)
        HARNESS_FAIL("worker exited %d: %s", rc, err);
    ASSERT_CONTAINS(err, "it goes back");
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"
                         " AND attempts = 1"),
              3);
#endif
}

/* Worker ids past 2^31: the worker registers and takes its lock, and a
 * recover of a killed one works (SQL once raised "integer out of range",
 * and C truncated the key). */
TEST(worker_ids_past_two_to_the_31)
{
    PGconn *pg = tl_db();
    const char *cfg =
        tl_write_config("worker:\n  heartbeat_interval: 1s\n  lease_timeout: 1h\n"
                        "recover:\n  older_than: 0s\n");
    tl_exec(pg, "ALTER TABLE skipq.workers ALTER COLUMN id RESTART WITH 3000000005");
    tl_exec(pg, "SELECT skipq.enqueue('s')");
    pid_t w = tl_spawn(NULL, "exec %s worker --config %s --handler 's=exec sleep 30'",
                       tl_skipq(), cfg);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"
                            " AND locked_by = 3000000005"));
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1,
                            "SELECT count(*) FROM skipq.active_workers WHERE alive"
                            " AND liveness_lock"));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                         " AND classid = " SKIPQ__LOCK_CLASS_WORKER_S
                         " AND objid = (3000000005 & 2147483647)::oid"),
              1);
    kill(w, SIGKILL);
    tl_wait_pid(w, 5000);
    tl_run(NULL, NULL, NULL, "pkill -f '^sleep 30$' || true");
    ASSERT_TRUE(tl_wait_int(pg, 10000, 0,
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                            " AND classid = " SKIPQ__LOCK_CLASS_WORKER_S));
    char *out = NULL, *err = NULL;
    int rc = tl_skipq_run(NULL, &out, &err, "recover --status running --config %s --yes",
                          cfg);
    if (rc != 0)
        HARNESS_FAIL("recover exited %d: %s", rc, err);
    free(out);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 1);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
