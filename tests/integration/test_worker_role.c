/*
 * test_worker_role.c - what a skipq_worker login may not do (sql/roles.sql):
 * touch another worker's row in skipq.workers, read the workers' secrets,
 * re-queue, cancel or recover jobs, prune failed jobs or prune with a
 * negative age. Its own worker still runs end to end.
 *
 * Roles are cluster-wide and tests run at once: login roles get names
 * unique to this process and are dropped at the end.
 */
#include "skipq.h"
#include "testlib.h"

#include <unistd.h>

static char worker_login[64], admin_login[64];

static void
setup_roles(PGconn *pg)
{
    char *err = NULL;
    int st = tl_skipq_run(NULL, NULL, &err, "migrate --roles");
    if (st != 0)
        HARNESS_FAIL("migrate --roles: exit %d: %s", st, err);
    free(err);
    snprintf(worker_login, sizeof worker_login, "twr_worker_%d", (int)getpid());
    snprintf(admin_login, sizeof admin_login, "twr_admin_%d", (int)getpid());
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_worker", worker_login);
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_admin", admin_login);
}

static void
drop_roles(PGconn *pg)
{
    tl_exec(pg, "DROP ROLE IF EXISTS %s, %s", worker_login, admin_login);
}

/* sql must fail, its message containing want. */
static void
expect_error(PGconn *c, const char *sql, const char *want)
{
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_FATAL_ERROR ||
        !strstr(PQresultErrorMessage(res), want))
        HARNESS_FAIL("%s: wanted an error with \"%s\", got %s %s", sql, want,
                     PQresStatus(PQresultStatus(res)), PQresultErrorMessage(res));
    PQclear(res);
}

TEST(worker_role_cannot_touch_another_workers_row)
{
    PGconn *pg = tl_db();
    setup_roles(pg);
    tl_exec(
        pg,
        "INSERT INTO skipq.workers (host, pid, queues, priorities, concurrency, version,"
        " secret) VALUES ('other', 1, '{default}', 'all', 1, 'x', gen_random_uuid())");
    int64_t other = tl_int(pg, "SELECT max(id) FROM skipq.workers");
    PGconn *c = tl_connect_as(worker_login);
    expect_error(c,
                 "INSERT INTO skipq.workers (host, pid, queues, priorities, concurrency,"
                 " version) VALUES ('x', 1, '{q}', 'all', 1, 'x')",
                 "permission denied");
    expect_error(c, "UPDATE skipq.workers SET heartbeat_at = now()", "permission denied");
    expect_error(c, "DELETE FROM skipq.workers", "permission denied");
    expect_error(c, "SELECT secret FROM skipq.workers", "permission denied");
    /* the functions want the worker's secret: a guess changes nothing */
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT skipq.worker_beat(%lld, gen_random_uuid())"
             " OR skipq.worker_unregister(%lld, gen_random_uuid())"
             " OR (skipq.worker_liveness(%lld, gen_random_uuid())).got",
             (long long)other, (long long)other, (long long)other);
    PGresult *res = PQexec(c, sql);
    ASSERT_TRUE(PQresultStatus(res) == PGRES_TUPLES_OK);
    ASSERT_STREQ(PQgetvalue(res, 0, 0), "f");
    PQclear(res);
    snprintf(sql, sizeof sql,
             "SELECT skipq.worker_register('x', 1, '{q}', 'all', 1, 'x',"
             " '1s', '3s', %lld, gen_random_uuid())",
             (long long)other);
    expect_error(c, sql, "registered by another session");
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.workers WHERE id = %lld AND host = 'other'"
                     " AND heartbeat_at = started_at",
                     (long long)other),
              1);
    PQfinish(c);

    /* its own worker runs end to end through the same functions */
    char *url = tl_url_as(worker_login), *err = NULL;
    tl_exec(pg, "SELECT skipq.enqueue('ok') FROM generate_series(1, 3)");
    int st = tl_skipq_run(NULL, NULL, &err,
                          "worker --once --handler ok=true --database '%s'", url);
    if (st != 0)
        HARNESS_FAIL("worker as skipq_worker: exit %d: %s", st, err);
    free(err);
    free(url);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"), 3);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 1); /* only "other" */
    drop_roles(pg);
}

/* A worker role changes jobs only through the checked functions: no
 * direct UPDATE, no completion under another worker's id, and its own
 * completion of a job another worker holds changes nothing. */
TEST(worker_role_cannot_complete_another_workers_job)
{
    PGconn *pg = tl_db();
    setup_roles(pg);
    tl_exec(
        pg,
        "INSERT INTO skipq.workers (host, pid, queues, priorities, concurrency, version,"
        " secret) VALUES ('other', 1, '{default}', 'all', 1, 'x', gen_random_uuid())");
    int64_t other = tl_int(pg, "SELECT max(id) FROM skipq.workers");
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind, status, attempts, claims, locked_by)"
            " VALUES ('k', 'running', 1, 1, %lld)",
            (long long)other);
    tl_exec(pg, "SELECT skipq.enqueue('k')");
    PGconn *c = tl_connect_as(worker_login);
    expect_error(c, "UPDATE skipq.jobs SET status = 'succeeded' WHERE id = 1",
                 "permission denied");
    expect_error(c, "DELETE FROM skipq.jobs WHERE id = 1", "permission denied");
    char sql[512];
    snprintf(
        sql, sizeof sql,
        "SELECT * FROM skipq.complete('{1}', %lld, '{1}', '{succeeded}', '{null}', '{null}',"
        " '{0}', '{0}', gen_random_uuid())",
        (long long)other);
    expect_error(c, sql, "not registered with this secret");
    /* registered as itself: it claims a queued job, and its completion
     * of the other worker's job matches no row */
    PGresult *res =
        PQexec(c, "SELECT id, secret FROM skipq.worker_register('me', 2, '{default}',"
                  " 'all', 1, 'x', '1s', '3s')");
    ASSERT_TRUE(PQresultStatus(res) == PGRES_TUPLES_OK);
    long long me = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    char secret[64];
    snprintf(secret, sizeof secret, "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    snprintf(
        sql, sizeof sql,
        "SELECT count(*) FROM skipq.claim('default', (-32768)::int2, 32767::int2, '{k}', 5,"
        " %lld, '%s')",
        me, secret);
    res = PQexec(c, sql);
    ASSERT_TRUE(PQresultStatus(res) == PGRES_TUPLES_OK);
    ASSERT_STREQ(PQgetvalue(res, 0, 0), "1");
    PQclear(res);
    snprintf(
        sql, sizeof sql,
        "SELECT count(*) FROM skipq.complete('{1}', %lld, '{1}', '{succeeded}', '{null}',"
        " '{null}', '{0}', '{0}', '%s')",
        me, secret);
    res = PQexec(c, sql);
    ASSERT_TRUE(PQresultStatus(res) == PGRES_TUPLES_OK);
    ASSERT_STREQ(PQgetvalue(res, 0, 0), "0");
    PQclear(res);
    PQfinish(c);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = 1 AND status = 'running'"
                     " AND locked_by = %lld",
                     (long long)other),
              1);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = 2 AND status = 'running'"
                     " AND locked_by = %lld",
                     me),
              1);
    drop_roles(pg);
}

TEST(worker_role_cannot_retry_cancel_or_recover)
{
    PGconn *pg = tl_db();
    setup_roles(pg);
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, attempts, max_attempts)"
                " VALUES ('k', 'failed', 3, 3)");
    tl_exec(pg, "SELECT skipq.enqueue('k')");
    PGconn *c = tl_connect_as(worker_login);
    expect_error(c, "SELECT skipq.retry('{1}')", "permission denied");
    expect_error(c, "SELECT * FROM skipq.cancel('{2}')", "permission denied");
    expect_error(c, "SELECT * FROM skipq.recover('failed', '0')", "permission denied");
    PQfinish(c);
    char *url = tl_url_as(worker_login), *err = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "jobs retry 1 --database '%s'", url), 1);
    ASSERT_CONTAINS(err, "permission denied");
    free(err);
    free(url);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = 1 AND status = 'failed'"
                     " AND attempts = 3"),
              1);
    /* the admin may */
    url = tl_url_as(admin_login);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "jobs retry 1 --database '%s'", url), 0);
    free(url);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = 1 AND status = 'queued'"),
              1);
    drop_roles(pg);
}

TEST(worker_role_cannot_prune_failed_jobs)
{
    PGconn *pg = tl_db();
    setup_roles(pg);
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at) VALUES"
                " ('k', 'failed', now() - interval '1 day'),"
                " ('k', 'succeeded', now() - interval '1 day')");
    PGconn *c = tl_connect_as(worker_login);
    expect_error(c, "SELECT skipq.prune('-1000 years')", "must not be negative");
    expect_error(c, "SELECT skipq.prune('0', '{failed}')", "owner of schema skipq");
    PGresult *res = PQexec(c, "SELECT skipq.prune('1 hour')");
    ASSERT_TRUE(PQresultStatus(res) == PGRES_TUPLES_OK);
    ASSERT_STREQ(PQgetvalue(res, 0, 0), "1");
    PQclear(res);
    PQfinish(c);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'failed'"), 1);
    c = tl_connect_as(admin_login);
    res = PQexec(c, "SELECT skipq.prune('1 hour', '{failed}')");
    ASSERT_TRUE(PQresultStatus(res) == PGRES_TUPLES_OK);
    ASSERT_STREQ(PQgetvalue(res, 0, 0), "1");
    PQclear(res);
    PQfinish(c);
    drop_roles(pg);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
