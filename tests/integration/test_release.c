/*
 * test_release.c - skipq.release(), the one way a job goes back to the
 * queue: every function that puts jobs back goes through it, and each of
 * its three ways (refund, lost, runnable now with a note) leaves the row
 * as documented in sql/functions.sql and wakes the queue once.
 *
 * The callers are covered end to end elsewhere: the shutdown hand-back by
 * test_worker.sigterm_finishes_short_jobs_and_hands_back_long_ones and
 * prefetch_claims_ahead_and_hands_back_unstarted, the reconcile after a
 * reconnect by test_fault_restart.terminate_mid_completion, the rescue by
 * test_worker.kill_9_worker_job_runs_again_elsewhere and
 * test_recover.recover_running_takes_only_jobs_of_a_gone_worker, recover
 * by test_recover.recovered_failed_jobs_run_to_success, retry by
 * test_cli.jobs_retry_cancel.
 */
#include "skipq.h"
#include "testlib.h"

#include <stdio.h>
#include <unistd.h>

TEST(every_put_back_goes_through_release)
{
    PGconn *pg = tl_db();
    /* each caller's body calls it */
    ASSERT_EQ(
        tl_int(pg,
               "SELECT count(*) FROM pg_proc"
               " WHERE pronamespace = 'skipq'::regnamespace"
               " AND proname IN ('hand_back', 'reconcile', 'rescue', 'recover', 'retry')"
               " AND prosrc LIKE '%%skipq.release(%%'"),
        5);
    /* and no other function sets a job queued on its own (the completion
     * writes the status its handler's outcome chose, as a parameter) */
    ASSERT_EQ(
        tl_int(
            pg,
            "SELECT count(*) FROM pg_proc"
            " WHERE pronamespace = 'skipq'::regnamespace AND proname <> 'release'"
            " AND prosrc ~* 'status\\s*=\\s*''queued''\\s*(,|::skipq\\.job_status\\s*,)'"),
        0);
}

static void
insert_running(PGconn *pg, const char *queue, int attempts, int max_attempts)
{
    tl_exec(
        pg,
        "INSERT INTO skipq.jobs (kind, queue, status, attempts, max_attempts, locked_by,"
        " started_at, run_at, cancel_requested_at)"
        " VALUES ('k', '%s', 'running', %d, %d, 7, now() - interval '1 minute',"
        " '2000-01-01', now())",
        queue, attempts, max_attempts);
}

TEST(refund_keeps_the_place_in_line_and_wakes_the_queue_once)
{
    PGconn *pg = tl_db();
    PGconn *l = tl_connect();
    insert_running(pg, "q1", 2, 5);
    insert_running(pg, "q1", 1, 5);
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind, queue, status) VALUES ('k', 'q1', 'succeeded')");
    tl_exec(l, "LISTEN skipq"); /* after the inserts' own notifications */
    ASSERT_EQ(
        tl_int(pg, "SELECT count(*) FROM skipq.release("
                   "(SELECT array_agg(id) FROM skipq.jobs), '{running}', refund => true)"),
        2);
    /* the attempt never ran: not counted, not started; run_at as it was */
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"
                     " AND locked_by IS NULL AND started_at IS NULL AND finished_at IS NULL"
                     " AND run_at = '2000-01-01' AND attempts IN (0, 1)"
                     " AND cancel_requested_at IS NOT NULL AND errors = '[]'"),
              2);
    /* a row in no status it was asked for is left alone */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"), 1);
    ASSERT_EQ(tl_count_notifies(l, 300, "q1"), 1);
    PQfinish(l);
}

TEST(lost_counts_the_attempt_and_fails_a_spent_job)
{
    PGconn *pg = tl_db();
    insert_running(pg, "q", 3, 3); /* spent */
    insert_running(pg, "q", 1, 3);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.release("
                     "(SELECT array_agg(id) FROM skipq.jobs), '{running}', lost => true)"),
              2);
    ASSERT_EQ(
        tl_int(
            pg,
            "SELECT count(*) FROM skipq.jobs WHERE status = 'failed'"
            " AND attempts = 3 AND finished_at IS NOT NULL"
            " AND last_error = 'worker 7 lost'"
            " AND errors->-1->>'error' = 'worker 7 lost'"
            " AND (errors->-1->>'worker')::int8 = 7 AND (errors->-1->>'attempt')::int = 3"),
        1);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"
                     " AND attempts = 1 AND finished_at IS NULL AND locked_by IS NULL"
                     " AND run_at > now() - interval '1 minute' AND started_at IS NOT NULL"
                     " AND jsonb_array_length(errors) = 1"),
              1);
    /* a reason given replaces the default one */
    insert_running(pg, "q", 1, 3);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.release("
                         "(SELECT array_agg(id) FROM skipq.jobs WHERE status = 'running'),"
                         " '{running}', lost => true, reason => 'worker lost (SIGSEGV)')"),
              1);
    ASSERT_EQ(
        tl_int(
            pg,
            "SELECT count(*) FROM skipq.jobs WHERE last_error = 'worker lost (SIGSEGV)'"),
        1);
}

TEST(finished_jobs_get_a_note_and_start_over)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, attempts, max_attempts, finished_at,"
                " cancel_requested_at, errors)"
                " VALUES ('f', 'failed', 3, 3, now(), now(), '[{\"error\": \"x\"}]'),"
                "        ('c', 'cancelled', 1, 3, now(), now(), '[]'),"
                "        ('e', 'failed', 3, 3, now(), NULL, '[]')");
    ASSERT_EQ(
        tl_int(
            pg,
            "SELECT count(*) FROM skipq.release("
            "(SELECT array_agg(id) FROM skipq.jobs WHERE kind IN ('f', 'c')),"
            " '{failed,cancelled}', reset_attempts => true, note => '{\"retried\": true}')"
            " WHERE status = 'queued'"),
        2);
    ASSERT_EQ(
        tl_int(pg,
               "SELECT count(*) FROM skipq.jobs WHERE kind = 'f' AND status = 'queued'"
               " AND attempts = 0 AND finished_at IS NULL AND cancel_requested_at IS NULL"
               " AND jsonb_array_length(errors) = 2 AND errors->1->>'from' = 'failed'"
               " AND errors->1->>'retried' = 'true' AND errors->1->>'by' = current_user"),
        1);
    /* only a failed job starts its attempts over */
    ASSERT_EQ(
        tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'c' AND status = 'queued'"
                   " AND attempts = 1 AND errors->0->>'from' = 'cancelled'"),
        1);
    /* extra attempts instead of a fresh start */
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.release("
                     "(SELECT array_agg(id) FROM skipq.jobs WHERE kind = 'e'), '{failed}',"
                     " reset_attempts => true, extra_attempts => 2)"),
              1);
    ASSERT_EQ(
        tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'e' AND status = 'queued'"
                   " AND attempts = 3 AND max_attempts = 5"),
        1);
}

TEST(release_is_not_for_everyone)
{
    PGconn *pg = tl_db();
    char role[64];
    snprintf(role, sizeof role, "trel_%d", (int)getpid());
    tl_exec(pg, "CREATE ROLE %s LOGIN", role);
    tl_exec(pg, "GRANT USAGE ON SCHEMA skipq TO %s", role);
    PGconn *c = tl_connect_as(role);
    PGresult *res = PQexec(c, "SELECT * FROM skipq.release('{1}', '{running}')");
    ASSERT_EQ(PQresultStatus(res), PGRES_FATAL_ERROR);
    ASSERT_CONTAINS(PQresultErrorMessage(res), "permission denied for function release");
    PQclear(res);
    PQfinish(c);
    tl_exec(pg, "REVOKE USAGE ON SCHEMA skipq FROM %s", role);
    tl_exec(pg, "DROP ROLE %s", role);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
