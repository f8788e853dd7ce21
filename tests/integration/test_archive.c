/*
 * test_archive.c - the archive of finished jobs (sql/archive.sql): rows
 * move from skipq.jobs to skipq.jobs_done as they are, into partitions of
 * updated_at that never overlap, a worker with archive_after moves them
 * and drops partitions older than retention, every DDL waits a bounded
 * time, and the commands and dependencies still find archived jobs.
 */
#include "skipq.h"
#include "testlib.h"

#include <signal.h>
#include <unistd.h>

/* The columns of a table in order, with their types. */
#define COLUMNS_SQL                                                                    \
    "SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)"       \
    " || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY a.attnum)" \
    " FROM pg_attribute a WHERE a.attrelid = '%s'::regclass AND a.attnum > 0"          \
    " AND NOT a.attisdropped"

/* A row moves by DELETE ... RETURNING j.* into INSERT ... SELECT *: the
 * two tables must have the same columns in the same order. A migration
 * that adds a column to skipq.jobs and not to skipq.jobs_done fails here. */
TEST(columns_match_the_jobs_table)
{
    PGconn *pg = tl_db();
    char *jobs = tl_str(pg, COLUMNS_SQL, "skipq.jobs");
    char *done = tl_str(pg, COLUMNS_SQL, "skipq.jobs_done");
    ASSERT_STREQ(done, jobs);
    /* and the view that reads both */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM pg_attribute WHERE attrelid ="
                         " 'skipq.all_jobs'::regclass AND attnum > 0"),
              tl_int(pg, "SELECT count(*) + 1 FROM pg_attribute WHERE attrelid ="
                         " 'skipq.jobs'::regclass AND attnum > 0 AND NOT attisdropped"));
    free(jobs);
    free(done);
}

/* Rows of every status, finished on four days, some recently. */
static void
fill(PGconn *pg)
{
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, payload, result, attempts,"
                " updated_at, finished_at, last_error, tags)"
                " SELECT 'k' || (g %% 3), s::skipq.job_status,"
                " jsonb_build_object('g', g), jsonb_build_object('r', g), 1 + g %% 2,"
                " now() - (g %% 4) * interval '1 day' - interval '2 hours',"
                " now() - (g %% 4) * interval '1 day' - interval '2 hours',"
                " CASE WHEN s = 'cancelled' THEN 'stop' END, ARRAY['t' || (g %% 5)]"
                " FROM generate_series(1, 2000) g,"
                " unnest('{succeeded,cancelled,failed,queued}'::text[]) s");
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at, finished_at)"
                " SELECT 'recent', 'succeeded', now(), now() FROM generate_series(1, 100)");
}

/* Every row that should move is in the archive exactly as it was, every
 * other row is where it was, and the archive has one partition per day. */
TEST(moves_finished_rows_as_they_are)
{
    PGconn *pg = tl_db();
    fill(pg);
    const char *digest = "SELECT md5(string_agg(row_to_json(j)::text, '|' ORDER BY j.id))"
                         " FROM %s j WHERE j.status IN ('succeeded', 'cancelled')"
                         " AND j.updated_at < now() - interval '1 hour'";
    char *before = tl_str(pg, digest, "skipq.jobs");
    int64_t total = tl_int(pg, "SELECT count(*) FROM skipq.jobs");
    int64_t moving = tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status IN"
                                " ('succeeded', 'cancelled') AND updated_at <"
                                " now() - interval '1 hour'");
    ASSERT_EQ(moving, 4000);
    int64_t moved = 0, n, calls = 0;
    while ((n = tl_int(pg, "SELECT skipq.archive('1 hour', '1 day', 700)")) > 0) {
        ASSERT_TRUE(n <= 700);
        moved += n;
        calls++;
    }
    ASSERT_EQ(moved, moving);
    ASSERT_EQ(calls, 6); /* 4000 rows, 700 a batch */
    char *after = tl_str(pg, digest, "skipq.jobs_done");
    ASSERT_STREQ(after, before);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), total - moving);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status IN"
                         " ('succeeded', 'cancelled') AND kind <> 'recent'"),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'recent'"), 100);
    /* the rows span four or five UTC days: one partition each, named by
     * its start, and every archived row in the one its day names */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs_done_partitions"),
              tl_int(pg, "SELECT count(DISTINCT date_trunc('day', updated_at AT TIME ZONE"
                         " 'UTC')) FROM skipq.jobs_done"));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs_done d"
                         " WHERE d.tableoid::regclass::text <> 'skipq.jobs_done_'"
                         " || to_char(date_trunc('day', d.updated_at AT TIME ZONE 'UTC'),"
                         " 'YYYYMMDD\"t\"HH24MISS')"),
              0);
    /* the view sees every row once */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.all_jobs"), total);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.all_jobs WHERE archived"), moving);
    /* bad arguments are refused, naming the argument */
    PGresult *res = PQexec(pg, "SELECT skipq.archive('1 hour', '10 seconds')");
    ASSERT_CONTAINS(PQresultErrorMessage(res), "at least 1 minute wide");
    PQclear(res);
    res = PQexec(pg, "SELECT skipq.archive('-1 hour')");
    ASSERT_CONTAINS(PQresultErrorMessage(res), "older_than must not be negative");
    PQclear(res);
    free(before);
    free(after);
}

/* A call makes at most four partitions, oldest first, and moves the rows
 * they cover: a backlog spread over many days takes several calls, never
 * one transaction of many tables. */
TEST(a_call_makes_at_most_four_partitions)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at) SELECT 'd', 'succeeded',"
                " now() - g * interval '1 day' FROM generate_series(2, 11) g");
    ASSERT_EQ(tl_int(pg, "SELECT skipq.archive('1 day', '1 day')"), 4);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs_done_partitions"), 4);
    /* the oldest four days went first */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs_done"
                         " WHERE updated_at < now() - interval '7 days'"),
              4);
    ASSERT_EQ(tl_int(pg, "SELECT skipq.archive('1 day', '1 day')"), 4);
    ASSERT_EQ(tl_int(pg, "SELECT skipq.archive('1 day', '1 day')"), 2);
    ASSERT_EQ(tl_int(pg, "SELECT skipq.archive('1 day', '1 day')"), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs_done_partitions"), 10);
    PGresult *res = PQexec(pg, "SELECT skipq.archive('1 day', '1 day', 50001)");
    ASSERT_CONTAINS(PQresultErrorMessage(res), "batch must be from 1 to 50000");
    PQclear(res);
}

/* A parent stays in skipq.jobs while a child still waits on it (a retry
 * of that child must find it), and a row another session has locked is
 * skipped, not waited for. */
TEST(leaves_waiting_parents_and_locked_rows)
{
    PGconn *pg = tl_db(), *other = tl_connect();
    int64_t p1 = tl_int(pg, "SELECT skipq.enqueue('p1')");
    int64_t p2 = tl_int(pg, "SELECT skipq.enqueue('p2')");
    int64_t c = tl_int(pg,
                       "SELECT skipq.enqueue('c', depends_on => ARRAY[%lld, %lld]::int8[])",
                       (long long)p1, (long long)p2);
    tl_exec(pg,
            "UPDATE skipq.jobs SET status = 'succeeded', finished_at = now(),"
            " updated_at = now() - interval '2 hours' WHERE id = %lld",
            (long long)p1);
    int64_t locked = tl_int(pg,
                            "INSERT INTO skipq.jobs (kind, status, updated_at) VALUES"
                            " ('l', 'succeeded', now() - interval '2 hours') RETURNING id");
    tl_exec(other, "BEGIN");
    tl_exec(other, "SELECT 1 FROM skipq.jobs WHERE id = %lld FOR UPDATE",
            (long long)locked);
    ASSERT_EQ(tl_int(pg, "SELECT (status = 'waiting')::int FROM skipq.jobs WHERE id = %lld",
                     (long long)c),
              1);
    /* skipped: a wait for it would end in lock_timeout's error */
    ASSERT_EQ(tl_int(pg, "SELECT skipq.archive('1 hour')"), 0);
    tl_exec(other, "COMMIT");
    ASSERT_EQ(tl_int(pg, "SELECT skipq.archive('1 hour')"), 1); /* the unlocked row */
    /* once the child is released, the parent may go */
    tl_exec(pg,
            "UPDATE skipq.jobs SET status = 'succeeded', finished_at = now(),"
            " updated_at = now() - interval '2 hours' WHERE id = %lld",
            (long long)p2);
    ASSERT_EQ(tl_int(pg, "SELECT (status = 'queued')::int FROM skipq.jobs WHERE id = %lld",
                     (long long)c),
              1);
    ASSERT_EQ(tl_int(pg, "SELECT skipq.archive('1 hour')"), 2);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs_done WHERE id IN (%lld, %lld)",
                     (long long)p1, (long long)p2),
              2);
    PQfinish(other);
}

/* A width changed between calls never makes overlapping partitions: a
 * new one is cut short where an older one begins or ends. */
TEST(changing_the_width_never_overlaps)
{
    PGconn *pg = tl_db();
    /* 10:30 on a fixed day, archived with a width of one hour */
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at) VALUES"
                " ('a', 'succeeded', '2026-01-10 10:30:00+00')");
    ASSERT_EQ(tl_int(pg, "SELECT skipq.archive('0', '1 hour')"), 1);
    /* then the same day's other hours, and the next day, a day wide */
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at) VALUES"
                " ('b', 'succeeded', '2026-01-10 03:00:00+00'),"
                " ('c', 'succeeded', '2026-01-10 10:59:59+00'),"
                " ('d', 'cancelled', '2026-01-10 20:00:00+00'),"
                " ('e', 'succeeded', '2026-01-11 05:00:00+00')");
    ASSERT_EQ(tl_int(pg, "SELECT skipq.archive('0', '1 day')"), 4);
    char *parts = tl_str(pg, "SELECT string_agg(to_char(lo AT TIME ZONE 'UTC', 'DD HH24')"
                             " || '-' || to_char(hi AT TIME ZONE 'UTC', 'DD HH24'), ','"
                             " ORDER BY lo) FROM skipq.jobs_done_partitions");
    ASSERT_STREQ(parts, "10 00-10 10,10 10-10 11,10 11-11 00,11 00-12 00");
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs_done d WHERE d.kind = 'c'"
                     " AND d.tableoid::regclass::text = 'skipq.jobs_done_20260110t100000'"),
              1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs_done"), 5);
    free(parts);
}

/* Dropping a partition takes ACCESS EXCLUSIVE on the archive: behind a
 * reader that holds it open, the call fails after lock_timeout (1 s)
 * instead of waiting, and succeeds once the reader is gone. Archiving goes
 * on behind the same reader: attaching a partition does not wait for it. */
TEST(drop_waits_a_bounded_time)
{
    PGconn *pg = tl_db(), *reader = tl_connect();
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at) VALUES"
                " ('old', 'succeeded', now() - interval '3 days')");
    ASSERT_EQ(tl_int(pg, "SELECT skipq.archive('1 day')"), 1);
    tl_exec(reader, "BEGIN");
    ASSERT_EQ(tl_int(reader, "SELECT count(*) FROM skipq.jobs_done"), 1);

    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at) VALUES"
                " ('older', 'succeeded', now() - interval '6 days')");
    /* a new partition, attached behind the reader: it would fail, 55P03,
     * had it waited for the reader's lock */
    ASSERT_EQ(tl_int(pg, "SELECT skipq.archive('1 day')"), 1);

    int64_t t0 = tl_now_ms();
    PGresult *res = PQexec(pg, "SELECT skipq.archive_drop('1 day')");
    int64_t took = tl_now_ms() - t0;
    ASSERT_EQ(PQresultStatus(res), PGRES_FATAL_ERROR);
    ASSERT_STREQ(PQresultErrorField(res, PG_DIAG_SQLSTATE),
                 "55P03"); /* lock_not_available */
    PQclear(res);
    ASSERT_TRUE(took >= 900 && took < 5000);
    tl_exec(reader, "COMMIT");
    char *first = tl_str(pg, "SELECT skipq.archive_drop('1 day')");
    char *second = tl_str(pg, "SELECT skipq.archive_drop('1 day')");
    ASSERT_TRUE(first && second && strcmp(first, second) != 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs_done"), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs_done_partitions"), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM pg_inherits WHERE inhparent ="
                         " 'skipq.jobs_done'::regclass"),
              0);
    /* nothing left: NULL */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.archive_drop('0') d WHERE d IS NULL"),
              1);
    free(first);
    free(second);
    PQfinish(reader);
}

/* A worker with archive_after moves finished rows in its retention turn
 * and drops the partitions that ended longer than retention ago; failed,
 * queued and recent rows stay in skipq.jobs. */
TEST(worker_moves_rows_and_drops_old_partitions)
{
    PGconn *pg = tl_db();
    const char *cfg = tl_write_config("worker:\n  retention: 2d\n  archive_after: 1m\n"
                                      "  poll_interval: 200ms\n");
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at, finished_at)"
                " SELECT 'old', 'succeeded', now() - interval '5 days',"
                " now() - interval '5 days' FROM generate_series(1, 12000)");
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind, status, updated_at, finished_at)"
            " SELECT 'hour', CASE WHEN g %% 2 = 0 THEN 'succeeded' ELSE 'cancelled'"
            " END::skipq.job_status, now() - interval '1 hour', now() - interval '1 hour'"
            " FROM generate_series(1, 3000) g");
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at) SELECT 'dead', 'failed',"
                " now() - interval '5 days' FROM generate_series(1, 10)");
    tl_exec(pg, "SELECT skipq.enqueue('new') FROM generate_series(1, 10)");
    const char *log = tl_tmpfile(".log");
    pid_t w = tl_spawn(log, "exec %s worker --config %s --handler new=/bin/true",
                       tl_skipq(), cfg);
    /* the turn starts 5 s after the worker */
    ASSERT_TRUE(tl_wait_int(
        pg, 20000, 0, "SELECT count(*) FROM skipq.jobs WHERE kind IN ('old', 'hour')"));
    /* the 5-day-old rows moved, then their partition was dropped */
    ASSERT_TRUE(tl_wait_int(pg, 20000, 0,
                            "SELECT count(*) FROM skipq.jobs_done_partitions"
                            " WHERE hi <= now() - interval '2 days'"));
    ASSERT_TRUE(tl_wait_file_has(log, "dropped archive partition skipq.jobs_done_", 5000));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs_done WHERE kind = 'old'"), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs_done WHERE kind = 'hour'"), 3000);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 10,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'new'"
                            " AND status = 'succeeded'"));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'failed'"), 10);
    tl_kill(w, SIGTERM);
    ASSERT_EQ(tl_wait_pid(w, 10000), 0);
}

/* An archive that cannot run (here its list is held by another session
 * past lock_timeout) leaves the rows older than retention to the prune:
 * skipq.jobs stays bounded as without the archive. */
TEST(failing_archive_falls_back_to_prune)
{
    PGconn *pg = tl_db(), *holder = tl_connect();
    const char *cfg = tl_write_config("worker:\n  retention: 2d\n  archive_after: 1m\n"
                                      "  poll_interval: 200ms\n");
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind, status, updated_at) SELECT 'old', 'succeeded',"
            " now() - interval '5 days' FROM generate_series(1, 3000)");
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind, status, updated_at) SELECT 'hour', 'succeeded',"
            " now() - interval '1 hour' FROM generate_series(1, 1000)");
    tl_exec(holder, "BEGIN");
    tl_exec(holder, "LOCK TABLE skipq.jobs_done_partitions IN ROW EXCLUSIVE MODE");
    const char *log = tl_tmpfile(".log");
    pid_t w = tl_spawn(log, "exec %s worker --config %s --handler new=/bin/true",
                       tl_skipq(), cfg);
    ASSERT_TRUE(tl_wait_int(pg, 20000, 0,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'old'"));
    ASSERT_TRUE(tl_wait_file_has(log, "retention: ", 5000));
    ASSERT_TRUE(tl_wait_file_has(log, "lock timeout", 5000));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'hour'"), 1000);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs_done"), 0);
    tl_exec(holder, "COMMIT");
    ASSERT_TRUE(tl_wait_int(pg, 20000, 1000, "SELECT count(*) FROM skipq.jobs_done"));
    tl_kill(w, SIGTERM);
    ASSERT_EQ(tl_wait_pid(w, 10000), 0);
    PQfinish(holder);
}

/* A worker with archive_after whose role may not call the archive's
 * functions (roles not re-applied after an upgrade) says so and exits 2,
 * instead of warning at every turn. */
TEST(worker_without_the_grant_says_so)
{
    PGconn *pg = tl_db();
    tl_apply_roles();
    char role[64];
    snprintf(role, sizeof role, "ta_nogrant_%d", (int)getpid());
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_worker", role);
    tl_exec(pg, "REVOKE EXECUTE ON FUNCTION skipq.archive(interval, interval, int)"
                " FROM skipq_worker");
    char *url = tl_url_as(role), *qurl = tl_shq(url);
    const char *cfg = tl_write_config("worker:\n  archive_after: 1h\n");
    char *out = NULL, *err = NULL;
    int rc = tl_skipq_run(NULL, &out, &err,
                          "worker --config %s --handler a=/bin/true --once --database %s",
                          cfg, qurl);
    ASSERT_EQ(rc, 2);
    ASSERT_CONTAINS(err, "worker.archive_after needs EXECUTE on skipq.archive()");
    ASSERT_CONTAINS(err, role);
    ASSERT_CONTAINS(err, "skipq migrate --roles");
    free(out), free(err), free(url), free(qurl);
    tl_exec(pg, "DROP OWNED BY %s", role);
    tl_exec(pg, "DROP ROLE %s", role);
}

/* archive_after must be shorter than retention: rows pruned first would
 * never reach the archive. The worker says so and exits 2. */
TEST(archive_after_longer_than_retention_is_refused)
{
    (void)tl_db();
    const char *cfg = tl_write_config("worker:\n  retention: 1h\n  archive_after: 2h\n");
    char *out = NULL, *err = NULL;
    int rc = tl_skipq_run(NULL, &out, &err,
                          "worker --config %s --handler a=/bin/true --once", cfg);
    ASSERT_EQ(rc, 2);
    ASSERT_CONTAINS(err, "archive_after (7200000 ms) must be shorter than retention");
    free(out);
    free(err);
    cfg = tl_write_config("worker:\n  archive_partition: 30s\n");
    rc = tl_skipq_run(NULL, &out, &err, "worker --config %s --handler a=/bin/true --once",
                      cfg);
    ASSERT_EQ(rc, 2);
    ASSERT_CONTAINS(err, "archive_partition");
    free(out);
    free(err);
}

/* A parent moved to the archive finished: a child enqueued on it later
 * runs at once, with the parent's result, instead of failing with
 * "parent job does not exist". */
TEST(archived_parent_counts)
{
    PGconn *pg = tl_db();
    int64_t parent = tl_int(pg, "INSERT INTO skipq.jobs (kind, status, result, updated_at)"
                                " VALUES ('p', 'succeeded', '{\"answer\": 42}',"
                                " now() - interval '2 hours') RETURNING id");
    ASSERT_EQ(tl_int(pg, "SELECT skipq.archive('1 hour')"), 1);
    int64_t child = tl_int(pg,
                           "SELECT skipq.enqueue('c', depends_on => ARRAY[%lld]::int8[])",
                           (long long)parent);
    char *st =
        tl_str(pg,
               "SELECT status::text || ' ' || (payload #>> '{skipq_parents,%lld,answer}')"
               " FROM skipq.jobs WHERE id = %lld",
               (long long)parent, (long long)child);
    ASSERT_STREQ(st, "queued 42");
    free(st);
}

/* `skipq jobs show` finds an archived job and says it is archived; `jobs
 * ls` lists skipq.jobs, and `jobs ls --archived` the archive; `skipq
 * prune` drops the archive's old partitions too. */
TEST(commands_find_archived_jobs)
{
    PGconn *pg = tl_db();
    int64_t id = tl_int(pg, "INSERT INTO skipq.jobs (kind, status, updated_at)"
                            " VALUES ('gone', 'succeeded', now() - interval '3 days')"
                            " RETURNING id");
    tl_exec(pg, "SELECT skipq.enqueue('live')");
    ASSERT_EQ(tl_int(pg, "SELECT skipq.archive('1 day')"), 1);
    char *out = NULL, *err = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs show %lld", (long long)id), 0);
    ASSERT_CONTAINS(out, "archived             yes");
    ASSERT_CONTAINS(out, "gone");
    free(out), free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs show %lld --json", (long long)id), 0);
    ASSERT_CONTAINS(out, "\"archived\":true");
    free(out), free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs ls --json"), 0);
    ASSERT_CONTAINS(out, "\"kind\":\"live\"");
    ASSERT_TRUE(strstr(out, "gone") == NULL);
    free(out), free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs ls --archived --json"), 0);
    ASSERT_CONTAINS(out, "\"kind\":\"gone\"");
    ASSERT_TRUE(strstr(out, "live") == NULL);
    free(out), free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "prune --older-than 1d"), 0);
    ASSERT_CONTAINS(out, "dropped 1 archive partition (skipq.jobs_done)");
    free(out), free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs show %lld", (long long)id), 1);
    free(out), free(err);
}

/* The worker's role moves and drops through the two functions only: it
 * cannot write the archive or make tables in the schema itself. */
TEST(worker_role_archives_through_the_functions_only)
{
    PGconn *pg = tl_db();
    tl_apply_roles();
    char role[64];
    snprintf(role, sizeof role, "ta_worker_%d", (int)getpid());
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_worker", role);
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at)"
                " VALUES ('x', 'succeeded', now() - interval '3 days')");
    PGconn *c = tl_connect_as(role);
    ASSERT_EQ(tl_int(c, "SELECT skipq.archive('1 day')"), 1);
    ASSERT_EQ(tl_int(c, "SELECT count(*) FROM skipq.all_jobs WHERE archived"), 1);
    tl_expect_denied(c, "DELETE FROM skipq.jobs_done");
    tl_expect_denied(c, "INSERT INTO skipq.jobs_done (id, kind, updated_at)"
                        " VALUES (1, 'x', now())");
    tl_expect_denied(c,
                     "CREATE TABLE skipq.jobs_done_20300101t000000 (LIKE skipq.jobs_done)");
    tl_expect_denied(c, "SELECT skipq.archive_partition_for(now(), '1 day')");
    ASSERT_EQ(tl_int(c,
                     "SELECT count(*) FROM skipq.archive_drop('0') d WHERE d IS NOT NULL"),
              1);
    PQfinish(c);
    tl_exec(pg, "DROP OWNED BY %s", role);
    tl_exec(pg, "DROP ROLE %s", role);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
