/*
 * test_pooler.c - skipq behind a real PgBouncer in transaction pooling
 * mode (tests/pgbouncer.sh), where each transaction may run on another
 * server session and no session state lasts:
 *   - producers (SQL, the C API, the CLI) enqueue through it and lose
 *     nothing; the C API falls back to unnamed statements when it meets
 *     another client's prepared statement;
 *   - two workers in pooler mode (claims and completions through it,
 *     LISTEN and their locks on worker.listen_database) drain it all,
 *     and a new job is picked up by its NOTIFY, long before a poll;
 *   - a worker with worker.listen: false polls through it alone, and its
 *     row says it holds no liveness lock;
 *   - a worker that is not told of the pooler refuses, naming it (exit 2);
 *   - a worker through a session pooler works, and is warned that its
 *     connection is not direct (a pooler that keeps prepared statements
 *     would give no other sign).
 */
#include "../handlers/faultlib.h"
#include "skipq.h"

#include <stdlib.h>
#include <sys/stat.h>

static char bouncer_dir[256];
static int bouncer_port;

static void
stop_bouncer(void)
{
    if (bouncer_dir[0])
        (void)tl_run(NULL, NULL, NULL, "%s/tests/pgbouncer.sh stop %s",
                     SKIPQ_TEST_SOURCE_DIR, bouncer_dir);
}

/* A PgBouncer in front of the test database; "one" is the same database
 * in a pool of one server session. Stopped at exit. */
static void
start_bouncer(PGconn *pg)
{
    char *out = NULL, *dbname = tl_str(pg, "SELECT current_database()");
    const char *pgport = getenv("PGPORT");

    ASSERT_TRUE(pgport != NULL);
    snprintf(bouncer_dir, sizeof bouncer_dir, "/tmp/skipq-bouncer.XXXXXX");
    ASSERT_TRUE(mkdtemp(bouncer_dir) != NULL);
    ASSERT_EQ(chmod(bouncer_dir, 0777), 0);
    atexit(stop_bouncer);
    ASSERT_EQ(tl_run(NULL, &out, NULL, "%s/tests/pgbouncer.sh start %s %s %s",
                     SKIPQ_TEST_SOURCE_DIR, bouncer_dir, pgport, dbname),
              0);
    bouncer_port = atoi(out);
    ASSERT_TRUE(bouncer_port > 0);
    free(out);
    free(dbname);
}

/* The test database through the pooler ("one": its pool of one). */
static char *
pooled_url(PGconn *pg, const char *db)
{
    char *url = NULL, *name = tl_str(pg, "SELECT current_database()");
    ASSERT_TRUE(asprintf(&url, "postgresql://postgres@127.0.0.1:%d/%s", bouncer_port,
                         db ? db : name) > 0);
    free(name);
    return url;
}

/* A worker config: the job connection through the pooler, and `extra`
 * (the pooler settings) under worker:. */
static const char *
pooled_config(const char *url, const char *poll, const char *extra)
{
    return fl_file(".yaml",
                   "database: \"%s\"\n"
                   "worker:\n"
                   "  concurrency: 8\n"
                   "  poll_interval: %s\n"
                   "  heartbeat_interval: 500ms\n"
                   "  lease_timeout: 5s\n"
                   "%s"
                   "handlers:\n"
                   "  p:\n"
                   "    command: [\"/bin/true\"]\n",
                   url, poll, extra);
}

TEST(producers_through_pgbouncer_lose_nothing)
{
    PGconn *pg = tl_db();
    start_bouncer(pg);
    char *url = pooled_url(pg, NULL), *one = pooled_url(pg, "one");
    char *qurl = tl_shq(url), *qone = tl_shq(one);

    /* SQL */
    ASSERT_EQ(
        tl_run(NULL, NULL, NULL,
               "psql -X -q -v ON_ERROR_STOP=1 -d %s -c \"SELECT count(skipq.enqueue("
               "'p', jsonb_build_object('sql', g))) FROM generate_series(1, 2000) g\"",
               qurl),
        0);
    /* the C API, where another client's statement of the same name is on
     * the one server session: it falls back to unnamed statements */
    ASSERT_EQ(tl_run(NULL, NULL, NULL,
                     "psql -X -q -v ON_ERROR_STOP=1 -d %s -c "
                     "\"PREPARE skipq_enqueue AS SELECT 1\"",
                     qone),
              0);
    skipq_conn *conn = NULL;
    skipq_error err = {0};
    ASSERT_EQ(skipq_conn_open(one, &conn, &err), SKIPQ_OK);
    for (int i = 0; i < 2000; i++) {
        char payload[32];
        snprintf(payload, sizeof payload, "{\"c\": %d}", i);
        if (skipq_enqueue(conn, "p", payload, NULL, NULL, &err) != SKIPQ_OK)
            HARNESS_FAIL("enqueue %d through the pooler: %s", i, err.message);
    }
    skipq_conn_close(conn);
    /* the CLI, a batch on stdin */
    char *lines = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&lines, &len);
    for (int i = 0; i < 1000; i++)
        fprintf(f, "{\"cli\": %d}\n", i);
    fclose(f);
    ASSERT_EQ(tl_skipq_run(lines, NULL, NULL, "enqueue p - --database %s", qurl), 0);
    free(lines);

    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 5000);
    ASSERT_EQ(tl_int(pg, "SELECT count(DISTINCT payload) FROM skipq.jobs"), 5000);
    /* no session lock of the producers' was left on a server session */
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                     " AND granted AND pid <> pg_backend_pid() AND database ="
                     " (SELECT oid FROM pg_database WHERE datname = current_database())"),
              0);
    free(url);
    free(one);
    free(qurl);
    free(qone);
}

TEST(two_pooled_workers_drain_through_pgbouncer)
{
    PGconn *pg = tl_db();
    start_bouncer(pg);
    char *url = pooled_url(pg, NULL), *extra = NULL;
    ASSERT_TRUE(asprintf(&extra, "  listen_database: \"%s\"\n", tl_url()) > 0);
    /* a minute between polls: only a NOTIFY brings a job in time */
    const char *cfg = pooled_config(url, "60s", extra);
    tl_exec(pg, "SELECT count(skipq.enqueue('p', jsonb_build_object('i', g)))"
                " FROM generate_series(1, 5000) g");

    const char *logs[2] = {fl_log(), fl_log()};
    pid_t w[2];
    for (int i = 0; i < 2; i++)
        w[i] = fl_worker(logs[i], cfg, NULL);
    if (!tl_wait_int(pg, 120000, 5000,
                     "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'")) {
        fl_dump("worker", logs[0]);
        fl_dump("worker", logs[1]);
        HARNESS_FAIL("the pooled workers did not drain the queue");
    }
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE attempts <> 1"), 0);
    /* their locks are on the direct connections */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers WHERE liveness_lock"), 2);

    /* both idle now: a job enqueued through the pooler wakes one by NOTIFY */
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT (count(*) > 0)::int FROM pg_locks WHERE"
                            " locktype = 'advisory' AND granted AND mode = 'ShareLock'"
                            " AND database = (SELECT oid FROM pg_database"
                            "                 WHERE datname = current_database())"));
    char *qurl = tl_shq(url);
    int64_t t0 = tl_now_ms();
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "enqueue --database %s p '{\"late\": 1}'",
                           qurl),
              0);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 5001,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    int64_t ms = tl_now_ms() - t0;
    printf("pooled workers: a job enqueued through the pooler ran after %" PRId64 " ms\n",
           ms);
    ASSERT_TRUE(ms < 10000); /* the poll is a minute away */
    for (int i = 0; i < 2; i++) {
        tl_kill(w[i], SIGTERM);
        ASSERT_EQ(fl_wait_exit(w[i], 20000), 0);
    }
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 0);
    free(url);
    free(qurl);
    free(extra);
}

TEST(poll_only_worker_through_pgbouncer)
{
    PGconn *pg = tl_db();
    start_bouncer(pg);
    char *url = pooled_url(pg, NULL);
    const char *cfg = pooled_config(url, "200ms", "  listen: false\n");
    tl_exec(pg, "SELECT count(skipq.enqueue('p')) FROM generate_series(1, 300) g");
    const char *log = fl_log();
    pid_t w = fl_worker(log, cfg, NULL);
    if (!tl_wait_int(pg, 60000, 300,
                     "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'")) {
        fl_dump("worker", log);
        HARNESS_FAIL("the polling worker did not drain the queue");
    }
    /* no lock held anywhere: judged by its heartbeat and lease */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers WHERE NOT liveness_lock"), 1);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                     " AND granted AND pid <> pg_backend_pid() AND database ="
                     " (SELECT oid FROM pg_database WHERE datname = current_database())"),
              0);
    tl_exec(pg, "SELECT skipq.enqueue('p')");
    ASSERT_TRUE(tl_wait_int(pg, 10000, 301,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    tl_kill(w, SIGTERM);
    ASSERT_EQ(fl_wait_exit(w, 20000), 0);
    free(url);
}

TEST(worker_behind_a_pooler_without_settings_says_so)
{
    PGconn *pg = tl_db();
    start_bouncer(pg);
    char *one = pooled_url(pg, "one"), *qone = tl_shq(one);
    tl_exec(pg, "SELECT skipq.enqueue('p')");
    /* another client's statement of the worker's name is on the one
     * server session every client of "one" shares */
    ASSERT_EQ(tl_run(NULL, NULL, NULL,
                     "psql -X -q -v ON_ERROR_STOP=1 -d %s -c "
                     "\"PREPARE skipq_claim AS SELECT 1\"",
                     qone),
              0);
    char *err = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "worker --once --handler p=true --database %s",
                           qone),
              2);
    ASSERT_CONTAINS(err, "goes through a transaction pooler");
    ASSERT_CONTAINS(err, "worker.listen_database");
    ASSERT_CONTAINS(err, "worker.listen: false");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 0);
    free(err);
    free(one);
    free(qone);
}

TEST(worker_through_a_session_pooler_is_warned)
{
    PGconn *pg = tl_db();
    start_bouncer(pg);
    char *session = pooled_url(pg, "session"), *qs = tl_shq(session);
    tl_exec(pg, "SELECT skipq.enqueue('p') FROM generate_series(1, 20)");
    char *err = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err,
                           "worker --once --handler p=/bin/true --database %s", qs),
              0);
    ASSERT_CONTAINS(err, "the worker's connection reports backend");
    ASSERT_CONTAINS(err, "a pooler or proxy is in between");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"), 20);
    free(err);
    /* a direct connection: no such warning */
    tl_exec(pg, "SELECT skipq.enqueue('p')");
    char *direct = tl_shq(tl_url());
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err,
                           "worker --once --handler p=/bin/true --database %s", direct),
              0);
    ASSERT_TRUE(!err || strstr(err, "pooler or proxy") == NULL);
    free(err);
    free(direct);
    free(session);
    free(qs);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
