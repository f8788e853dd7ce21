/*
 * test_privileges.c - sql/roles.sql: a producer can
 * enqueue and read but not UPDATE or DELETE, a worker can run `skipq
 * worker` to completion but not migrate, an admin can recover and prune.
 *
 * Roles are cluster-wide and tests run at once: the login roles get names
 * unique to this process and are dropped at the end; the skipq_* group
 * roles are shared and roles.sql tolerates being applied concurrently.
 */
#include "skipq.h"
#include "testlib.h"

#include <signal.h>
#include <unistd.h>

struct logins {
    char producer[64], worker[64], admin[64];
};

static void
create_logins(PGconn *pg, struct logins *l)
{
    snprintf(l->producer, sizeof l->producer, "tp_producer_%d", (int)getpid());
    snprintf(l->worker, sizeof l->worker, "tp_worker_%d", (int)getpid());
    snprintf(l->admin, sizeof l->admin, "tp_admin_%d", (int)getpid());
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_producer", l->producer);
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_worker", l->worker);
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_admin", l->admin);
}

static void
drop_logins(PGconn *pg, const struct logins *l)
{
    tl_exec(pg, "DROP ROLE IF EXISTS %s, %s, %s", l->producer, l->worker, l->admin);
}

/* sql must fail with "permission denied". */
static void
expect_ok(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);

    if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
        HARNESS_FAIL("%s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
}

/* skipq migrate --roles, twice (re-appliable). */
static void
apply_roles(void)
{
    char *out = NULL, *err = NULL;

    for (int i = 0; i < 2; i++) {
        int st = tl_skipq_run(NULL, &out, &err, "migrate --roles");
        if (st != 0)
            HARNESS_FAIL("migrate --roles: exit %d: %s", st, err);
        ASSERT_CONTAINS(out, "roles skipq_producer, skipq_worker, skipq_admin "
                             "are up to date");
        free(out);
        free(err);
    }
}

TEST(plain_migrate_needs_no_createrole)
{
    PGconn *pg = tl_db();
    char name[64], *url, *err = NULL;

    /* the schema owner without CREATEROLE: plain migrate still works,
     * --roles fails clearly */
    snprintf(name, sizeof name, "tp_owner_%d", (int)getpid());
    tl_exec(pg, "CREATE ROLE %s LOGIN", name);
    tl_exec(pg, "ALTER SCHEMA skipq OWNER TO %s", name);
    tl_exec(pg,
            "DO $$ DECLARE o record; BEGIN "
            "FOR o IN SELECT oid::regprocedure AS s FROM pg_proc "
            "WHERE pronamespace = 'skipq'::regnamespace LOOP "
            "EXECUTE format('ALTER ROUTINE %%s OWNER TO %s', o.s); END LOOP; "
            "FOR o IN SELECT relname FROM pg_class WHERE relnamespace = "
            "'skipq'::regnamespace AND relkind IN ('r','v') LOOP "
            "EXECUTE format('ALTER TABLE skipq.%%I OWNER TO %s', o.relname); "
            "END LOOP; END $$",
            name, name);
    url = tl_url_as(name);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "migrate --database '%s'", url), 0);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "migrate --roles --database '%s'", url), 1);
    /* "permission denied to create role", or when another test made the
     * roles already, "must have admin option on role" */
    ASSERT_CONTAINS(err, "could not apply sql/roles.sql: ");
    free(err);
    free(url);
    tl_exec(pg, "REASSIGN OWNED BY %s TO CURRENT_USER", name);
    tl_exec(pg, "DROP OWNED BY %s", name);
    tl_exec(pg, "DROP ROLE %s", name);
}

TEST(producer_enqueues_and_reads_only)
{
    PGconn *pg = tl_db();
    struct logins l;
    char *url, *out = NULL, *err = NULL;

    apply_roles();
    create_logins(pg, &l);
    tl_exec(pg, "SELECT skipq.enqueue('other')");
    url = tl_url_as(l.producer);

    /* the CLI, one job and JSON lines (COPY) */
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "enqueue k '{\"a\":1}' --priority high --database '%s'", url),
              0);
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run("{\"b\":1}\n{\"b\":2}\n", NULL, &err,
                           "enqueue k --queue q --in 1m --max-attempts 2 "
                           "--database '%s'",
                           url),
              0);
    free(err);
    ASSERT_EQ(tl_skipq_run("{\"key\":1}\n{\"key\":1}\n", &out, &err,
                           "enqueue k --unique-key-from key --tag t --database '%s'", url),
              0);
    ASSERT_CONTAINS(out, "enqueued 1 job; 1 unique key was taken already");
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs ls --database '%s'", url), 0);
    ASSERT_CONTAINS(out, "other");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "stats --database '%s'", url), 0);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE created_by = "
                     "'%s'",
                     l.producer),
              4);

    PGconn *c = tl_connect_as(l.producer);
    expect_ok(c, "SELECT skipq.enqueue('k', '{\"c\":1}', 'q', 'low')");
    /* unique keys in every mode, though the producer may not UPDATE */
    expect_ok(c, "SELECT skipq.enqueue('u', unique_key => 'u1', meta => '{\"m\":1}', "
                 "tags => '{t}', concurrency_key => 'c')");
    expect_ok(c, "SELECT skipq.enqueue('u', '{\"v\":2}', unique_key => 'u1', "
                 "unique_mode => 'replace')");
    expect_ok(c,
              "SELECT skipq.enqueue('u', unique_key => 'u1', unique_mode => 'debounce')");
    expect_ok(c, "SELECT skipq.enqueue_unique('u', unique_key => 'u2', "
                 "unique_window => '1h')");
    tl_expect_denied(c, "SELECT skipq.unique_window_open()");
    expect_ok(c, "SELECT count(*) FROM skipq.jobs");
    expect_ok(c, "SELECT * FROM skipq.queue_stats");
    tl_expect_denied(c, "UPDATE skipq.jobs SET status = 'succeeded'");
    tl_expect_denied(c, "UPDATE skipq.jobs SET payload = '{}'");
    tl_expect_denied(c, "DELETE FROM skipq.jobs");
    tl_expect_denied(c, "TRUNCATE skipq.jobs");
    /* no forged rows: state columns are not the producer's */
    tl_expect_denied(c, "INSERT INTO skipq.jobs (kind, status) VALUES ('k', 'running')");
    tl_expect_denied(c, "INSERT INTO skipq.jobs (kind, created_by) VALUES ('k', 'x')");
    tl_expect_denied(c, "SELECT skipq.prune('0')");
    tl_expect_denied(c, "SELECT * FROM skipq.recover('failed', '0')");
    tl_expect_denied(c, "SELECT skipq.retry('{1}')");
    tl_expect_denied(c, "DELETE FROM skipq.workers");
    PQfinish(c);

    /* the C API: the four-parameter insert, the full one, and the NOTIFY
     * after the commit (a worker of queue default waits: the lock) */
    skipq_conn *sc;
    skipq_error e;
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    o.delay_ms = 60000;
    o.max_attempts = 2;
    PGconn *ln = tl_connect();
    tl_exec(ln, "LISTEN skipq");
    tl_idle_lock(pg, "default", true);
    ASSERT_EQ(skipq_conn_open(url, &sc, &e), SKIPQ_OK);
    ASSERT_EQ(skipq_enqueue(sc, "k", "{\"d\":1}", NULL, NULL, &e), SKIPQ_OK);
    ASSERT_EQ(skipq_enqueue(sc, "k", NULL, &o, NULL, &e), SKIPQ_OK);
    skipq_conn_close(sc);
    ASSERT_EQ(tl_count_notifies(ln, 300, "default"), 2);
    tl_idle_lock(pg, "default", false);
    PQfinish(ln);

    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 10);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = "
                         "'queued'"),
              10);

    /* prune as the producer: refused, exit 1, nothing deleted */
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err,
                           "prune --older-than 0 --database "
                           "'%s'",
                           url),
              1);
    ASSERT_CONTAINS(err, "permission denied");
    free(err);
    free(url);
    drop_logins(pg, &l);
}

TEST(worker_works_but_cannot_migrate)
{
    PGconn *pg = tl_db();
    struct logins l;
    char *url, *out = NULL, *err = NULL;

    apply_roles();
    create_logins(pg, &l);
    tl_exec(pg, "SELECT skipq.enqueue('ok', jsonb_build_object('i', g)) "
                "FROM generate_series(1, 5) g");
    tl_exec(pg, "SELECT skipq.enqueue('bad')");
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, finished_at, "
                "updated_at) VALUES ('old', 'succeeded', now() - interval "
                "'2 days', now() - interval '2 days')");
    url = tl_url_as(l.worker);

    const char *cfg = tl_tmpfile(".yaml");
    tl_write_file(cfg, "worker:\n  retention: 1d\nretry:\n  max_attempts: 1\n");
    int st = tl_skipq_run(NULL, &out, &err,
                          "worker --once --config %s --handler ok=true "
                          "--handler 'bad=exit 3' --database '%s'",
                          cfg, url);
    if (st != 0)
        HARNESS_FAIL("worker as skipq_worker: exit %d: %s", st, err);
    ASSERT_TRUE(strstr(err, "permission denied") == NULL);
    free(out);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'ok' "
                         "AND status = 'succeeded'"),
              5);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'bad' "
                         "AND status = 'failed'"),
              1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 0);

    /* migrate: refused clearly, exit 1 */
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "migrate --database '%s'", url), 1);
    ASSERT_CONTAINS(err, "could not apply sql/functions.sql: permission denied "
                         "for schema skipq; migrate needs the owner of schema "
                         "skipq (a member of skipq_admin: docs/security.md)");
    free(err);
    PGconn *c = tl_connect_as(l.worker);
    /* retention's prune works without DELETE: SECURITY DEFINER, and it
     * deletes succeeded and cancelled rows only (failed ones are the
     * admin's: test_worker_role.c) */
    expect_ok(c, "SELECT skipq.prune('1 day')");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'old'"), 0);
    tl_expect_denied(c, "DELETE FROM skipq.jobs");
    tl_expect_denied(c, "UPDATE skipq.jobs SET payload = '{}'");
    tl_expect_denied(c, "INSERT INTO skipq.jobs (kind) VALUES ('k')");
    tl_expect_denied(c, "SELECT * FROM skipq.recover('failed', '0')");
    tl_expect_denied(c, "CREATE TABLE skipq.x (a int)");
    PQfinish(c);
    free(url);
    drop_logins(pg, &l);
}

/* A worker may vacuum skipq.jobs only as its owner (or the database's, a
 * superuser; PostgreSQL 17: MAINTAIN). skipq_worker is none of these: it
 * says once that autovacuum alone keeps the table, and works on. */
TEST(worker_role_leaves_the_vacuum_to_autovacuum)
{
    PGconn *pg = tl_db();
    struct logins l;

    apply_roles();
    create_logins(pg, &l);
    /* enough dead rows that a worker that may would vacuum at its first look */
    tl_exec(pg, "ALTER TABLE skipq.jobs SET (autovacuum_enabled = false)");
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind) SELECT 'gone' FROM generate_series(1, 12000)");
    tl_exec(pg, "DELETE FROM skipq.jobs WHERE kind = 'gone'");
    char *url = tl_url_as(l.worker);
    const char *cfg = tl_tmpfile(".yaml"), *log = tl_tmpfile(".log");
    tl_write_file(cfg, "worker:\n  vacuum_interval: 1s\n  poll_interval: 200ms\n");
    pid_t w = tl_spawn(log, "exec %s worker --config %s --handler ok=true --database '%s'",
                       tl_skipq(), cfg, url);
    ASSERT_TRUE(tl_wait_file_has(log, "vacuum: this role may not vacuum skipq.jobs",
                                 10000));
    tl_exec(pg, "SELECT skipq.enqueue('ok')");
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    tl_kill(w, SIGTERM);
    ASSERT_EQ(tl_wait_pid(w, 10000), 0);
    /* it tried no VACUUM (the server would have refused with a warning) */
    ASSERT_TRUE(!tl_wait_file_has(log, " warning skipq: ", 0));
    ASSERT_EQ(tl_int(pg, "SELECT vacuum_count FROM pg_stat_user_tables"
                         " WHERE relid = 'skipq.jobs'::regclass"),
              0);
    free(url);
    drop_logins(pg, &l);
}

/* worker.on_success: delete needs DELETE, which skipq_worker lacks on
 * purpose: the worker refuses to start (it would otherwise fail every
 * completion, forever), and works once the role is granted it. */
TEST(on_success_delete_needs_the_delete_privilege)
{
    PGconn *pg = tl_db();
    struct logins l;
    char *url, *err = NULL;

    apply_roles();
    create_logins(pg, &l);
    tl_exec(pg, "SELECT skipq.enqueue('ok')");
    url = tl_url_as(l.worker);
    int st = tl_skipq_run(
        NULL, NULL, &err,
        "worker --once --on-success delete --handler ok=true --database '%s'", url);
    ASSERT_EQ(st, 2); /* a setting this role cannot honour: bad configuration */
    char want[256];
    snprintf(want, sizeof want,
             "worker.on_success: delete needs DELETE on skipq.jobs, which role \"%s\""
             " does not have",
             l.worker);
    ASSERT_CONTAINS(err, want);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 1);
    tl_exec(pg, "GRANT DELETE ON skipq.jobs TO %s", l.worker);
    st = tl_skipq_run(NULL, NULL, &err,
                      "worker --once --on-success delete --handler ok=true --database '%s'",
                      url);
    if (st != 0)
        HARNESS_FAIL("worker with DELETE granted: exit %d: %s", st, err);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 0);
    tl_exec(pg, "REVOKE DELETE ON skipq.jobs FROM %s", l.worker);
    free(url);
    drop_logins(pg, &l);
}

TEST(admin_recovers_prunes_and_migrates)
{
    PGconn *pg = tl_db();
    struct logins l;
    char *url, *out = NULL, *err = NULL;

    apply_roles();
    create_logins(pg, &l);
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, attempts, max_attempts, "
                "finished_at, updated_at) SELECT 'f', 'failed', 3, 3, "
                "now() - interval '1 hour', now() - interval '1 hour' "
                "FROM generate_series(1, 3)");
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, finished_at, "
                "updated_at) SELECT 's', 'succeeded', now() - interval '2 days', "
                "now() - interval '2 days' FROM generate_series(1, 4)");
    url = tl_url_as(l.admin);

    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "recover --status failed "
                           "--older-than 1m --yes --database "
                           "'%s'",
                           url),
              0);
    free(out);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'f' "
                         "AND status = 'queued' AND attempts = 0"),
              3);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "prune --older-than 1d --database "
                           "'%s'",
                           url),
              0);
    free(out);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 's'"), 0);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "migrate --database '%s'", url), 0);
    ASSERT_CONTAINS(out, "schema is up to date");
    free(out);
    free(err);
    free(url);
    drop_logins(pg, &l);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
