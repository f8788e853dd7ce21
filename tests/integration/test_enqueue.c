/*
 * test_enqueue.c - the C and SQL ways in, against the real PostgreSQL:
 * options land in the row, a 10,000-job batch is one COPY and one NOTIFY,
 * skipq_enqueue_tx follows the caller's transaction, bad input writes
 * nothing and says what and where, priority names and numbers both work
 * in SQL.
 */
#include "harness.h"
#include "skipq_json.h"
#include "testlib.h"
#include "lock_keys.h"

#include <skipq.h>

#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static skipq_conn *
open_conn(void)
{
    skipq_conn *conn = NULL;
    skipq_error err;
    if (skipq_conn_open(tl_url(), &conn, &err) != SKIPQ_OK)
        HARNESS_FAIL("skipq_conn_open: %s", err.message);
    return conn;
}

/*
 * skipq_enqueue on its own commits the insert with the trigger's NOTIFY
 * turned off and sends the NOTIFY itself: in the insert's statement when
 * it is the only producer connection (as here, until "other" connects),
 * else in a transaction of its own after the commit (a notifying commit
 * holds a database-wide lock through its WAL flush).
 * One notification per job, after the commit, for the job's queue, while
 * a worker of that queue may be waiting (holds the queue's idle lock,
 * as the listener does here) and none otherwise; the trigger is quiet
 * for that transaction only; inside the caller's transaction the
 * trigger notifies at the caller's commit, idle lock or not; a failed
 * insert leaves the connection as it was and writes nothing (while a
 * worker waits and another producer is connected, the notify transaction
 * after it still wakes it).
 */
TEST(single_enqueue_notifies_once_after_its_commit)
{
    PGconn *pg = tl_db();
    PGconn *l = tl_connect();
    tl_exec(l, "LISTEN skipq");
    tl_idle_lock(l, "mail", true);
    tl_idle_lock(l, "after", true);
    skipq_conn *conn = open_conn();
    PGconn *raw = skipq_conn_pg(conn);
    skipq_error err;
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    int64_t id = 0;

    o.queue = "mail";
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, &id, &err), SKIPQ_OK);
        ASSERT_EQ(tl_count_notifies(l, 300, "mail"), 1);
        ASSERT_EQ(tl_int(pg,
                         "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                         " AND queue = 'mail'",
                         id),
                  1);
    }
    /* no worker of the queue waits (no idle lock, or given up): the job
     * is in, and no notification goes out */
    o.queue = "busy";
    ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, &id, &err), SKIPQ_OK);
    ASSERT_EQ(tl_count_notifies(l, 200, NULL), 0);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND queue = 'busy'",
                     id),
              1);
    tl_idle_lock(l, "busy", true);
    ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, &id, &err), SKIPQ_OK);
    ASSERT_EQ(tl_count_notifies(l, 300, "busy"), 1);
    tl_idle_lock(l, "busy", false);
    ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, &id, &err), SKIPQ_OK);
    ASSERT_EQ(tl_count_notifies(l, 200, NULL), 0);
    o.queue = "mail";
    ASSERT_EQ(PQpipelineStatus(raw), PQ_PIPELINE_OFF);
    ASSERT_EQ(PQtransactionStatus(raw), PQTRANS_IDLE);
    /* the insert did tell the trigger (the setting exists in the session,
     * reset to empty after its transaction; never set, it would be NULL),
     * and the one notification above was therefore skipq_enqueue's own */
    ASSERT_EQ(tl_int(raw, "SELECT (current_setting('skipq.notify', true) = '')::int"), 1);

    /* the setting behind it, as SQL producers can use it */
    tl_exec(pg, "BEGIN; SET LOCAL skipq.notify = 'after_commit';"
                " SELECT skipq.enqueue('k', '{}', queue => 'sqlq'); COMMIT");
    ASSERT_EQ(tl_count_notifies(l, 200, NULL), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE queue = 'sqlq'"), 1);

    /* the quiet trigger was for that transaction alone */
    tl_exec(raw, "INSERT INTO skipq.jobs (kind, queue) VALUES ('k', 'raw')");
    ASSERT_EQ(tl_count_notifies(l, 300, "raw"), 1);

    /* in the caller's transaction: nothing until the caller commits */
    o.queue = "txq";
    tl_exec(raw, "BEGIN");
    ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, &id, &err), SKIPQ_OK);
    tl_exec(raw, "INSERT INTO skipq.jobs (kind, queue) VALUES ('k', 'raw2')");
    ASSERT_EQ(tl_count_notifies(l, 200, NULL), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE queue = 'txq'"), 0);
    tl_exec(raw, "COMMIT");
    ASSERT_EQ(tl_count_notifies(l, 300, NULL), 2); /* "txq" and "raw2" */

    /* an error from the server: no row, no notification, a usable conn */
    int64_t before = tl_int(pg, "SELECT count(*) FROM skipq.jobs");
    o.queue = "bad";
    o.run_at_us = INT64_MAX;
    ASSERT_TRUE(skipq_enqueue(conn, "k", "{}", &o, &id, &err) != SKIPQ_OK);
    ASSERT_TRUE(strstr(err.message, "out of range") != NULL);
    ASSERT_EQ(tl_count_notifies(l, 200, NULL), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), before);
    ASSERT_EQ(PQpipelineStatus(raw), PQ_PIPELINE_OFF);
    ASSERT_EQ(PQtransactionStatus(raw), PQTRANS_IDLE);
    /* the same while a worker of the queue waits, the only producer:
     * the statement fails before its NOTIFY, and a lone producer does
     * not take the pipeline, so none goes out */
    tl_idle_lock(l, "bad", true);
    ASSERT_TRUE(skipq_enqueue(conn, "k", "{}", &o, &id, &err) != SKIPQ_OK);
    ASSERT_TRUE(strstr(err.message, "out of range") != NULL);
    ASSERT_EQ(tl_count_notifies(l, 200, NULL), 0);
    /* with another producer connected, a try that finds the worker
     * waiting sends this one to the pipeline, where the insert's
     * transaction fails alone and the notify transaction after it still
     * runs: that worker is woken once for nothing (documented) */
    skipq_conn *other = open_conn();
    o.run_at_us = 0;
    ASSERT_EQ(skipq_enqueue(other, "k", "{}", &o, &id, &err), SKIPQ_OK);
    ASSERT_EQ(tl_count_notifies(l, 300, "bad"), 1);
    ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, &id, &err), SKIPQ_OK);
    ASSERT_EQ(tl_count_notifies(l, 300, "bad"), 1);
    o.run_at_us = INT64_MAX;
    ASSERT_TRUE(skipq_enqueue(conn, "k", "{}", &o, &id, &err) != SKIPQ_OK);
    ASSERT_TRUE(strstr(err.message, "out of range") != NULL);
    ASSERT_EQ(tl_count_notifies(l, 300, "bad"), 1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), before + 2);
    ASSERT_EQ(PQpipelineStatus(raw), PQ_PIPELINE_OFF);
    ASSERT_EQ(PQtransactionStatus(raw), PQTRANS_IDLE);
    skipq_conn_close(other);
    tl_idle_lock(l, "bad", false);
    o.run_at_us = 0;
    o.queue = "after";
    ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, &id, &err), SKIPQ_OK);
    ASSERT_EQ(tl_count_notifies(l, 300, "after"), 1);

    /* the commit itself fails (a deferred constraint trigger, at the
     * insert's sync point): an error,
     * no id, no row, no notification, the connection idle */
    tl_exec(pg, "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN IF NEW.queue = 'boom' THEN RAISE 'no boom at commit'; END IF;"
                " RETURN NULL; END $$");
    tl_exec(pg, "CREATE CONSTRAINT TRIGGER boom AFTER INSERT ON skipq.jobs"
                " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION boom()");
    o.queue = "boom";
    id = -7;
    ASSERT_TRUE(skipq_enqueue(conn, "k", "{}", &o, &id, &err) != SKIPQ_OK);
    ASSERT_TRUE(strstr(err.message, "no boom at commit") != NULL);
    ASSERT_EQ(id, -7);
    ASSERT_EQ(tl_count_notifies(l, 200, NULL), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE queue = 'boom'"), 0);
    ASSERT_EQ(PQpipelineStatus(raw), PQ_PIPELINE_OFF);
    ASSERT_EQ(PQtransactionStatus(raw), PQTRANS_IDLE);

    /* a connection the caller left in pipeline mode is refused */
    ASSERT_EQ(PQenterPipelineMode(raw), 1);
    o.queue = "mail";
    ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, &id, &err), SKIPQ_ERR_STATE);
    ASSERT_TRUE(strstr(err.message, "pipeline") != NULL);
    ASSERT_EQ(PQexitPipelineMode(raw), 1);
    skipq_conn_close(conn);
    PQfinish(l);
}

/*
 * skipq_enqueue's own inserts, which send their NOTIFY themselves, do not
 * even call the trigger's function: the trigger's WHEN reads the setting
 * (about 3% of a single enqueue). Any other insert still calls it once
 * per statement. Counted with track_functions on the producer's session.
 */
TEST(quiet_inserts_skip_the_trigger_function)
{
    PGconn *pg = tl_db();
    skipq_conn *conn = open_conn();
    PGconn *raw = skipq_conn_pg(conn);
    PGconn *l = tl_connect();
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    skipq_error err;
    int64_t id = 0;

    if (PQserverVersion(pg) < 150000) { /* pg_stat_force_next_flush() is 15's */
        printf("SKIPPED: needs PostgreSQL 15 to flush a session's statistics\n");
        skipq_conn_close(conn);
        PQfinish(l);
        return;
    }
    tl_exec(raw, "SET track_functions = 'pl'");
    o.queue = "quiet";
    /* every form: the one statement, the one that notifies (a worker
     * waiting), then (another producer connected) the pipeline */
    ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, &id, &err), SKIPQ_OK);
    tl_idle_lock(l, "quiet", true);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, &id, &err), SKIPQ_OK);
    skipq_conn *other = open_conn();
    ASSERT_EQ(skipq_enqueue(other, "k", "{}", &o, &id, &err), SKIPQ_OK);
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, &id, &err), SKIPQ_OK);
    skipq_conn_close(other);
    tl_idle_lock(l, "quiet", false);
    tl_exec(raw, "INSERT INTO skipq.jobs (kind, queue) VALUES ('k', 'loud')");
    /* the session's pending counts, all of them, are in the shared
     * statistics before this statement's reply comes back */
    tl_exec(raw, "SELECT pg_stat_force_next_flush()");
    ASSERT_EQ(tl_int(pg, "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions"
                         " WHERE funcname = 'notify_inserted'"),
              1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE queue = 'quiet'"), 7);
    skipq_conn_close(conn);
    PQfinish(l);
}

/*
 * A producer whose connection the server ended: the call fails, writes
 * nothing, and every call after it says the connection is lost (not that
 * the caller left it in pipeline mode, as a cut-off pipeline would),
 * after the one statement (no worker waits, or the only producer) and
 * after the pipeline (a worker waits, another producer connected).
 */
TEST(single_enqueue_on_a_lost_connection_says_so)
{
    PGconn *pg = tl_db();
    PGconn *l = tl_connect();
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    skipq_error err;
    int64_t id = 0;

    o.queue = "lost";
    for (int form = 0; form < 3; form++) {
        skipq_conn *conn = open_conn();
        skipq_conn *other = form == 2 ? open_conn() : NULL;
        if (form == 1)
            tl_idle_lock(l, "lost", true);
        if (other) /* connected and prepared */
            ASSERT_EQ(skipq_enqueue(other, "k", "{}", &o, &id, &err), SKIPQ_OK);
        /* with the other: this call finds the worker, so the next take
         * the pipeline */
        ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, &id, &err), SKIPQ_OK);
        int pid = PQbackendPID(skipq_conn_pg(conn));
        ASSERT_EQ(tl_int(pg, "SELECT pg_terminate_backend(%d)::int", pid), 1);
        ASSERT_TRUE(tl_wait_int(pg, 5000, 0,
                                "SELECT count(*) FROM pg_stat_activity"
                                " WHERE pid = %d",
                                pid));
        int64_t before = tl_int(pg, "SELECT count(*) FROM skipq.jobs");
        ASSERT_TRUE(skipq_enqueue(conn, "k", "{}", &o, &id, &err) != SKIPQ_OK);
        ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, &id, &err), SKIPQ_ERR_CONNECT);
        ASSERT_CONTAINS(err.message, "could not enqueue job");
        ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), before);
        skipq_conn_close(conn);
        skipq_conn_close(other);
    }
    tl_idle_lock(l, "lost", false);
    PQfinish(l);
}

/*
 * Where skipq_enqueue tries the idle lock. While its connection's last
 * try found no worker waiting, the try is in the insert's own statement,
 * so it holds the lock until the insert's commit has ended: a worker
 * cannot take its shared lock (and claim again without the job) in
 * between. When a try finds a worker waiting, the only producer
 * connection notifies in that transaction (it holds the producers' lock
 * through the commit); with another producer connected, the NOTIFY
 * follows the commit and the next 64 calls try in a transaction after
 * their commit, which holds no idle lock. A deferred trigger holds each
 * commit here until the test lets it go.
 */
struct held_enqueue {
    skipq_conn *conn;
    skipq_rc rc;
};

static void *
held_enqueue_thread(void *arg)
{
    struct held_enqueue *h = arg;
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    skipq_error err;
    o.queue = "held";
    h->rc = skipq_enqueue(h->conn, "k", "{}", &o, NULL, &err);
    return NULL;
}

/* The producer's idle locks on queue held, in mode m. */
#define HELD_IDLE_LOCKS(pid, m)                                 \
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'" \
    " AND classid = " SKIPQ__LOCK_CLASS_IDLE_S                  \
    " AND objid = hashtext('held')::oid AND objsubid = 2"       \
    " AND pid = %d AND mode = '" m "' AND granted",             \
        pid

/* The producer's exclusive hold of the producers' lock. */
#define HELD_PRODUCER_LOCK(pid)                                                  \
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"                  \
    " AND classid = " SKIPQ__LOCK_CLASS_S " AND objid = " SKIPQ__LOCK_PRODUCER_S \
    " AND objsubid = 2"                                                          \
    " AND pid = %d AND mode = 'ExclusiveLock' AND granted",                      \
        pid

/* 1 if the commit held the idle lock, 2 if it held the producers' lock */
static int
enqueue_while_commit_held(PGconn *pg, skipq_conn *conn)
{
    PGconn *gate = tl_connect();
    struct held_enqueue h = {conn, SKIPQ_ERR_STATE};
    pthread_t t;
    int pid = PQbackendPID(skipq_conn_pg(conn)), held_then;

    tl_exec(gate, "BEGIN; SELECT pg_advisory_xact_lock(4242)");
    ASSERT_EQ(pthread_create(&t, NULL, held_enqueue_thread, &h), 0);
    /* the commit has begun: the deferred trigger waits for the gate */
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1,
                            "SELECT count(*) FROM pg_locks"
                            " WHERE locktype = 'advisory' AND objid = 4242"
                            " AND pid = %d AND NOT granted",
                            pid));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE queue = 'held'"), 0);
    held_then = (int)tl_int(pg, HELD_IDLE_LOCKS(pid, "ExclusiveLock")) +
                2 * (int)tl_int(pg, HELD_PRODUCER_LOCK(pid));
    tl_exec(gate, "COMMIT");
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(h.rc, SKIPQ_OK);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE queue = 'held'"), 1);
    ASSERT_EQ(tl_int(pg, HELD_IDLE_LOCKS(pid, "ExclusiveLock")), 0);
    ASSERT_EQ(tl_int(pg, HELD_PRODUCER_LOCK(pid)), 0);
    tl_exec(pg, "DELETE FROM skipq.jobs WHERE queue = 'held'");
    PQfinish(gate);
    return held_then;
}

TEST(single_enqueue_tries_the_idle_lock_in_its_commit_until_a_worker_waits)
{
    PGconn *pg = tl_db();
    PGconn *l = tl_connect();
    skipq_conn *conn = open_conn();
    skipq_error err;
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;

    tl_exec(pg, "CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN IF NEW.queue = 'held' THEN"
                "  PERFORM pg_advisory_xact_lock_shared(4242); END IF;"
                " RETURN NULL; END $$");
    tl_exec(pg, "CREATE CONSTRAINT TRIGGER gate AFTER INSERT ON skipq.jobs"
                " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gate()");
    tl_exec(l, "LISTEN skipq");

    /* no worker waits: the try is in the insert's transaction */
    ASSERT_EQ(enqueue_while_commit_held(pg, conn), 1);
    ASSERT_EQ(tl_count_notifies(l, 200, NULL), 0);

    /* a worker waits, this the only producer: that try fails, and the
     * commit holds the producers' lock and delivers the NOTIFY */
    tl_idle_lock(l, "held", true);
    ASSERT_EQ(enqueue_while_commit_held(pg, conn), 2);
    ASSERT_EQ(tl_count_notifies(l, 300, "held"), 1);
    ASSERT_EQ(enqueue_while_commit_held(pg, conn), 2); /* and stays so */
    ASSERT_EQ(tl_count_notifies(l, 300, "held"), 1);

    /* another producer connected: the try fails, and the NOTIFY follows
     * the commit */
    skipq_conn *other = open_conn();
    o.queue = "other";
    ASSERT_EQ(skipq_enqueue(other, "k", "{}", &o, NULL, &err), SKIPQ_OK);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                     " AND classid = " SKIPQ__LOCK_CLASS_S
                     " AND objid = " SKIPQ__LOCK_PRODUCER_S " AND mode = 'ShareLock'"
                     " AND granted AND pid IN (%d, %d)",
                     PQbackendPID(skipq_conn_pg(conn)), PQbackendPID(skipq_conn_pg(other))),
              2);
    ASSERT_EQ(enqueue_while_commit_held(pg, conn), 0);
    ASSERT_EQ(tl_count_notifies(l, 300, "held"), 1);
    tl_idle_lock(l, "held", false);

    /* so its next 64 try after their commit, which holds no idle lock;
     * those tries succeed (the worker is gone): no NOTIFY */
    ASSERT_EQ(enqueue_while_commit_held(pg, conn), 0);
    o.queue = "other"; /* the count is the connection's */
    for (int i = 1; i < 63; i++)
        ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, NULL, &err), SKIPQ_OK);
    ASSERT_EQ(enqueue_while_commit_held(pg, conn), 0);
    ASSERT_EQ(tl_count_notifies(l, 200, NULL), 0);

    /* and the one after them tries in its commit again */
    ASSERT_EQ(enqueue_while_commit_held(pg, conn), 1);
    ASSERT_EQ(tl_count_notifies(l, 200, NULL), 0);

    /* on the pipeline again (the worker back, the other producer still
     * there), a producer that finds itself alone as it notifies goes back
     * to the one statement at once, which notifies in its transaction */
    tl_idle_lock(l, "held", true);
    o.queue = "held";
    ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, NULL, &err), SKIPQ_OK);
    ASSERT_EQ(tl_count_notifies(l, 300, "held"), 1);
    int other_pid = PQbackendPID(skipq_conn_pg(other));
    skipq_conn_close(other);
    ASSERT_TRUE(
        tl_wait_int(pg, 5000, 0,
                    "SELECT count(*) FROM pg_locks"
                    " WHERE locktype = 'advisory' AND classid = " SKIPQ__LOCK_CLASS_S
                    " AND objid = 4 AND pid = %d",
                    other_pid));
    ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, NULL, &err), SKIPQ_OK); /* the pipeline */
    ASSERT_EQ(tl_count_notifies(l, 300, "held"), 1);
    tl_exec(pg, "DELETE FROM skipq.jobs WHERE queue = 'held'");
    ASSERT_EQ(enqueue_while_commit_held(pg, conn), 2);
    ASSERT_EQ(tl_count_notifies(l, 300, "held"), 1);
    tl_idle_lock(l, "held", false);
    skipq_conn_close(conn);
    PQfinish(l);
}

/* This session's grants of the producers' lock in mode m. */
#define PRODUCER_LOCKS(pid, m)                                                   \
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"                  \
    " AND classid = " SKIPQ__LOCK_CLASS_S " AND objid = " SKIPQ__LOCK_PRODUCER_S \
    " AND objsubid = 2"                                                          \
    " AND pid = %d AND mode = '" m "' AND granted",                              \
        pid

/*
 * The producers' lock is only a speed-up, so skipq_enqueue takes it
 * outside any transaction (never in the caller's, which a failure would
 * abort), with a try, and goes on without it: a try that finds it taken
 * is made again at the next call.
 */
TEST(the_producers_lock_is_tried_outside_transactions)
{
    PGconn *pg = tl_db();
    PGconn *l = tl_connect();
    skipq_conn *conn = open_conn();
    PGconn *raw = skipq_conn_pg(conn);
    int pid = PQbackendPID(raw);
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    skipq_error err;

    o.queue = "pl";
    tl_exec(l, "LISTEN skipq");
    tl_idle_lock(l, "pl", true);
    /* the first call in the caller's transaction: no lock taken */
    tl_exec(raw, "BEGIN");
    ASSERT_EQ(skipq_enqueue(conn, "k", NULL, &o, NULL, &err), SKIPQ_OK);
    ASSERT_EQ(tl_int(pg, PRODUCER_LOCKS(pid, "ShareLock")), 0);
    tl_exec(raw, "ROLLBACK");
    ASSERT_EQ(tl_count_notifies(l, 200, NULL), 0);
    /* held exclusively elsewhere: the try fails, the call does not wait,
     * and the worker is notified all the same (after the commit) */
    PGconn *x = tl_connect();
    tl_exec(x,
            "SELECT pg_advisory_lock(" SKIPQ__LOCK_CLASS_S ", " SKIPQ__LOCK_PRODUCER_S ")");
    ASSERT_EQ(skipq_enqueue(conn, "k", NULL, &o, NULL, &err), SKIPQ_OK);
    ASSERT_EQ(tl_count_notifies(l, 300, "pl"), 1);
    ASSERT_EQ(tl_int(pg, PRODUCER_LOCKS(pid, "ShareLock")), 0);
    tl_exec(x, "SELECT pg_advisory_unlock(" SKIPQ__LOCK_CLASS_S ", " SKIPQ__LOCK_PRODUCER_S
               ")"); /* now, not at its exit */
    PQfinish(x);
    /* the next call outside a transaction takes it */
    ASSERT_EQ(skipq_enqueue(conn, "k", NULL, &o, NULL, &err), SKIPQ_OK);
    ASSERT_EQ(tl_count_notifies(l, 300, "pl"), 1);
    ASSERT_EQ(tl_int(pg, PRODUCER_LOCKS(pid, "ShareLock")), 1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE queue = 'pl'"), 2);
    tl_idle_lock(l, "pl", false);
    skipq_conn_close(conn);
    PQfinish(l);
}

/*
 * The only producer's NOTIFY is in its insert's transaction, so a commit
 * that fails takes both: no row and no wake-up for nothing. But a NOTIFY
 * that cannot be queued (SQLSTATE 54000: PostgreSQL's notification queue
 * is full) must not cost the job: the call commits it again without the
 * NOTIFY in its transaction. A deferred trigger raises each at commit
 * (54000 once only: a sequence is not rolled back).
 */
TEST(a_lone_producers_failed_commit_and_full_notify_queue)
{
    PGconn *pg = tl_db();
    PGconn *l = tl_connect();
    skipq_conn *conn = open_conn();
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    skipq_error err;
    int64_t id = -7;

    tl_exec(pg, "CREATE SEQUENCE once");
    tl_exec(pg,
            "CREATE FUNCTION at_commit() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN"
            "  IF NEW.queue = 'boom' THEN RAISE 'no boom at commit'; END IF;"
            "  IF NEW.queue = 'full' AND nextval('once') = 1 THEN"
            "   RAISE 'too many notifications in the NOTIFY queue' USING ERRCODE = '54000';"
            "  END IF;"
            "  RETURN NULL; END $$");
    tl_exec(pg, "CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON skipq.jobs"
                " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION at_commit()");
    tl_exec(l, "LISTEN skipq");
    tl_idle_lock(l, "boom", true);
    tl_idle_lock(l, "full", true);

    o.queue = "boom";
    ASSERT_TRUE(skipq_enqueue(conn, "k", "{}", &o, &id, &err) != SKIPQ_OK);
    ASSERT_CONTAINS(err.message, "no boom at commit");
    ASSERT_EQ(id, -7);
    ASSERT_EQ(tl_count_notifies(l, 200, NULL), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE queue = 'boom'"), 0);

    o.queue = "full";
    ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, &id, &err), SKIPQ_OK);
    ASSERT_TRUE(id > 0);
    ASSERT_EQ(
        tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE queue = 'full' AND id = %" PRId64,
               id),
        1);
    ASSERT_EQ(tl_int(pg, "SELECT last_value FROM once"), 2); /* tried twice */
    ASSERT_EQ(tl_count_notifies(l, 300, "full"), 1);
    ASSERT_EQ(PQpipelineStatus(skipq_conn_pg(conn)), PQ_PIPELINE_OFF);
    ASSERT_EQ(PQtransactionStatus(skipq_conn_pg(conn)), PQTRANS_IDLE);
    tl_idle_lock(l, "boom", false);
    tl_idle_lock(l, "full", false);
    skipq_conn_close(conn);
    PQfinish(l);
}

TEST(single_enqueue_options_land_in_the_row)
{
    PGconn *pg = tl_db();
    skipq_conn *conn = open_conn();
    skipq_error err;
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    o.queue = "mail";
    o.priority = 10;
    o.delay_ms = 60000;
    o.max_attempts = 7;
    o.has_backoff = 1;
    o.backoff = SKIPQ_BACKOFF_LINEAR;
    o.backoff_base_ms = 2000;
    o.backoff_max_ms = 60000;
    o.timeout_ms = 5000;
    int64_t id = 0;
    ASSERT_EQ(skipq_enqueue(conn, "send_email",
                            "{\"to\": \"ada@example.com\", \"n\": [1, 2]}", &o, &id, &err),
              SKIPQ_OK);
    ASSERT_TRUE(id > 0);
    ASSERT_EQ(
        tl_int(pg,
               "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
               " AND kind = 'send_email' AND queue = 'mail' AND priority = 10"
               " AND status = 'queued' AND attempts = 0 AND max_attempts = 7"
               " AND backoff_strategy = 'linear' AND backoff_base = '2 s'"
               " AND backoff_max = '1 min' AND timeout = '5 s'"
               " AND payload = '{\"to\": \"ada@example.com\", \"n\": [1, 2]}'"
               " AND run_at BETWEEN now() + interval '55 s' AND now() + interval '61 s'",
               id),
        1);
    /* defaults: queue default, priority 0, payload {}, runnable now (the
     * four-parameter statement of a job with no other option) */
    ASSERT_EQ(skipq_enqueue(conn, "plain", NULL, NULL, &id, &err), SKIPQ_OK);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND queue = 'default' AND priority = 0 AND payload = '{}'"
                     " AND max_attempts IS NULL AND backoff_strategy IS NULL"
                     " AND backoff_base IS NULL AND backoff_max IS NULL"
                     " AND timeout IS NULL AND run_at <= now()",
                     id),
              1);
    /* queue and priority alone keep to that statement, in and out of the
     * caller's transaction and through skipq_enqueue_tx */
    skipq_enqueue_opts qp = SKIPQ_ENQUEUE_OPTS_INIT;
    qp.queue = "qp";
    qp.priority = -3;
    ASSERT_EQ(skipq_enqueue(conn, "plain", "{\"a\": 1}", &qp, &id, &err), SKIPQ_OK);
    tl_exec(skipq_conn_pg(conn), "BEGIN");
    ASSERT_EQ(skipq_enqueue(conn, "plain", "{\"a\": 1}", &qp, &id, &err), SKIPQ_OK);
    ASSERT_EQ(skipq_enqueue_tx(skipq_conn_pg(conn), "plain", "{\"a\": 1}", &qp, &id, &err),
              SKIPQ_OK);
    tl_exec(skipq_conn_pg(conn), "COMMIT");
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE queue = 'qp' AND priority = -3"
                     " AND payload = '{\"a\": 1}' AND max_attempts IS NULL"
                     " AND timeout IS NULL AND run_at <= now()"),
              3);
    /* any one option alone takes the full statement, and lands */
    const char *const checks[] = {"run_at > now() + interval '50 s'",
                                  "run_at = '2030-01-01 00:00:00+00'", "max_attempts = 3",
                                  "backoff_strategy = 'exponential'", "timeout = '7 s'"};
    for (int i = 0; i < 5; i++) {
        skipq_enqueue_opts one = SKIPQ_ENQUEUE_OPTS_INIT;
        one.queue = "one";
        if (i == 0)
            one.delay_ms = 60000;
        else if (i == 1)
            one.run_at_us = INT64_C(1893456000000000); /* 2030-01-01 UTC */
        else if (i == 2)
            one.max_attempts = 3;
        else if (i == 3)
            one.has_backoff = 1, one.backoff = SKIPQ_BACKOFF_EXPONENTIAL;
        else
            one.timeout_ms = 7000;
        ASSERT_EQ(skipq_enqueue(conn, "plain", NULL, &one, &id, &err), SKIPQ_OK);
        ASSERT_EQ(tl_int(pg,
                         "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64 " AND %s",
                         id, checks[i]),
                  1);
    }
    skipq_conn_close(conn);
}

TEST(batch_of_10000_is_one_copy_and_one_notify)
{
    PGconn *pg = tl_db();
    PGconn *l = tl_connect();
    tl_exec(l, "LISTEN skipq");
    skipq_conn *conn = open_conn();
    skipq_error err;
    enum { N = 10000 };
    skipq_job_spec *jobs = calloc(N, sizeof *jobs);
    char **texts = calloc(N, sizeof *texts);
    for (int i = 0; i < N; i++) {
        ASSERT_TRUE(asprintf(&texts[i], "{\"i\": %d, \"s\": \"tab\\tquote\\\"back\\\\\"}",
                             i) > 0);
        jobs[i].kind = i % 2 ? "odd" : "even";
        jobs[i].payload_json = texts[i];
    }
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    o.queue = "bulk";
    o.priority = -10;
    int64_t t0 = tl_now_ms();
    ASSERT_EQ(skipq_enqueue_batch(conn, jobs, N, &o, &err), SKIPQ_OK);
    int64_t ms = tl_now_ms() - t0;
    printf("C batch: %d jobs in %" PRId64 " ms\n", N, ms);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE queue = 'bulk'"
                         " AND priority = -10 AND status = 'queued'"),
              N);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'odd'"
                         " AND (payload->>'i')::int %% 2 = 1"),
              N / 2);
    /* the payload survived COPY's escaping byte for byte */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"
                         " WHERE payload->>'s' = E'tab\\tquote\"back\\\\'"),
              N);
    ASSERT_EQ(tl_count_notifies(l, 500, NULL), 1);

    /* the streaming form, and an SQL INSERT ... SELECT: one each */
    skipq_copy *cp = NULL;
    ASSERT_EQ(skipq_copy_begin(conn, &o, &cp, &err), SKIPQ_OK);
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(skipq_copy_add(cp, "stream", texts[i], strlen(texts[i]), &err), SKIPQ_OK);
    int64_t count = 0;
    ASSERT_EQ(skipq_copy_end(cp, &count, &err), SKIPQ_OK);
    ASSERT_EQ(count, 100);
    ASSERT_EQ(tl_count_notifies(l, 500, NULL), 1);
    tl_exec(pg, "SELECT skipq.enqueue('sql', jsonb_build_object('i', g), queue => 'bulk')"
                " FROM generate_series(1, 10000) g");
    ASSERT_EQ(tl_count_notifies(l, 500, NULL), 1);
    for (int i = 0; i < N; i++)
        free(texts[i]);
    free(texts);
    free(jobs);
    skipq_conn_close(conn);
    PQfinish(l);
}

TEST(batch_with_one_bad_payload_writes_nothing)
{
    PGconn *pg = tl_db();
    skipq_conn *conn = open_conn();
    skipq_error err;
    skipq_job_spec jobs[3] = {{"k", "{}"}, {"k", "{\"a\": 1,}"}, {"k", "{}"}};
    ASSERT_EQ(skipq_enqueue_batch(conn, jobs, 3, NULL, &err), SKIPQ_ERR_INVALID);
    printf("error: %s\n", err.message);
    ASSERT_TRUE(strstr(err.message, "job 1: invalid JSON at offset 8") != NULL);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 0);
    skipq_conn_close(conn);
}

TEST(bad_single_input_is_invalid_and_writes_nothing)
{
    PGconn *pg = tl_db();
    skipq_conn *conn = open_conn();
    skipq_error err;
    int64_t id = 0;
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;

    ASSERT_EQ(skipq_enqueue(conn, "k", "{\"a\": tru}", NULL, &id, &err), SKIPQ_ERR_INVALID);
    ASSERT_TRUE(strstr(err.message, "offset") != NULL);
    ASSERT_EQ(skipq_enqueue(conn, "k", "[1, 2]", NULL, &id, &err), SKIPQ_ERR_INVALID);
    ASSERT_TRUE(strstr(err.message, "object") != NULL);
    ASSERT_EQ(skipq_enqueue(conn, "k", "{\"a\": \"\xff\"}", NULL, &id, &err),
              SKIPQ_ERR_INVALID);
    ASSERT_EQ(skipq_enqueue(conn, "", "{}", NULL, &id, &err), SKIPQ_ERR_INVALID);
    o.max_attempts = -1;
    ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, &id, &err), SKIPQ_ERR_INVALID);
    ASSERT_TRUE(strstr(err.message, "max_attempts") != NULL);
    o.max_attempts = 0;
    o.max_payload = 64;
    ASSERT_EQ(skipq_enqueue(conn, "k",
                            "{\"a\": \"0123456789012345678901234567890123456789"
                            "0123456789012345678901234567890123456789\"}",
                            &o, &id, &err),
              SKIPQ_ERR_INVALID);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 0);
    skipq_conn_close(conn);
}

TEST(enqueue_tx_follows_the_callers_transaction)
{
    PGconn *pg = tl_db();
    PGconn *mine = tl_connect();
    skipq_error err;
    int64_t id = 0;
    tl_exec(mine, "BEGIN");
    ASSERT_EQ(skipq_enqueue_tx(mine, "receipt", "{\"order\": 1}", NULL, &id, &err),
              SKIPQ_OK);
    /* not visible before the commit */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 0);
    tl_exec(mine, "ROLLBACK");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 0);
    tl_exec(mine, "BEGIN");
    ASSERT_EQ(skipq_enqueue_tx(mine, "receipt", "{\"order\": 2}", NULL, &id, &err),
              SKIPQ_OK);
    tl_exec(mine, "COMMIT");
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND payload->>'order' = '2'",
                     id),
              1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 1);
    PQfinish(mine);
}

TEST(sql_enqueue_names_numbers_and_defaults)
{
    PGconn *pg = tl_db();
    PGconn *l = tl_connect();
    tl_exec(l, "LISTEN skipq");
    int64_t a = tl_int(pg, "SELECT skipq.enqueue('k', priority => 'high')");
    int64_t b = tl_int(pg, "SELECT skipq.enqueue('k', priority => 10)");
    int64_t c = tl_int(pg,
                       "SELECT skipq.enqueue(kind => 'k', payload => '{\"x\": 1}',"
                       " queue => 'q', priority => 'low', run_at => now() + interval '1 h',"
                       " max_attempts => 3)");
    int64_t d = tl_int(pg, "SELECT skipq.enqueue('k')");
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id IN (%" PRId64 ", %" PRId64
                     ") AND priority = 10",
                     a, b),
              2);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND queue = 'q' AND priority = -10 AND max_attempts = 3"
                     " AND payload = '{\"x\": 1}' AND run_at > now() + interval '59 min'",
                     c),
              1);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND payload = '{}' AND priority = 0 AND queue = 'default'",
                     d),
              1);
    ASSERT_TRUE(tl_count_notifies(l, 300, NULL) >= 1);

    /* an unknown name is an error naming it, and writes nothing */
    PGresult *r = PQexec(pg, "SELECT skipq.enqueue('k', priority => 'urgent')");
    ASSERT_EQ(PQresultStatus(r), PGRES_FATAL_ERROR);
    ASSERT_TRUE(strstr(PQresultErrorMessage(r), "urgent") != NULL);
    PQclear(r);
    r = PQexec(pg, "SELECT skipq.enqueue('k', '[1]')");
    ASSERT_EQ(PQresultStatus(r), PGRES_FATAL_ERROR);
    PQclear(r);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 4);
    PQfinish(l);
}

/*
 * SKIPQ_UNNAMED_STATEMENTS=1 when the connection opens (what a
 * transaction pooler needs): skipq_enqueue prepares nothing and sends
 * each statement with its text, by every path (the one statement, the
 * pipeline with its NOTIFY after the commit, the full statement, the
 * caller's transaction), and the jobs still go in and wake the waiting
 * worker. A row trigger counts, in the producer's own session, the
 * statements prepared there as each row is written: none with the
 * variable set, the enqueue statements without it.
 */
TEST(enqueue_with_unnamed_statements_prepares_nothing)
{
    PGconn *pg = tl_db();
    PGconn *l = tl_connect();
    skipq_error err;
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    int64_t id = 0;

    tl_exec(pg, "CREATE TABLE prepared_seen (kind text, n int8)");
    tl_exec(pg, "CREATE FUNCTION record_prepared() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN INSERT INTO public.prepared_seen SELECT NEW.kind, count(*)"
                " FROM pg_catalog.pg_prepared_statements; RETURN NEW; END $$");
    tl_exec(pg, "CREATE TRIGGER record_prepared AFTER INSERT ON skipq.jobs"
                " FOR EACH ROW EXECUTE FUNCTION record_prepared()");
    tl_exec(l, "LISTEN skipq");
    tl_idle_lock(l, "u", true); /* a worker of queue u waits */
    setenv("SKIPQ_UNNAMED_STATEMENTS", "1", 1);
    skipq_conn *conn = open_conn();
    unsetenv("SKIPQ_UNNAMED_STATEMENTS");
    PGconn *raw = skipq_conn_pg(conn);
    /* another producer, with the default: it prepares its statements */
    skipq_conn *other = open_conn();
    o.queue = "u";
    ASSERT_OK(skipq_enqueue(other, "named", "{}", &o, &id, &err), &err);
    ASSERT_EQ(tl_count_notifies(l, 300, "u"), 1);
    ASSERT_EQ(tl_int(skipq_conn_pg(other), "SELECT count(*) FROM pg_prepared_statements"
                                           " WHERE name = 'skipq_enqueue'"),
              1);

    /* the one statement, then (another producer is connected and a
     * worker waits) the pipeline: each job notifies once */
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(skipq_enqueue(conn, "unnamed", "{}", &o, &id, &err), &err);
        ASSERT_EQ(tl_count_notifies(l, 300, "u"), 1);
        ASSERT_EQ(tl_int(pg,
                         "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                         " AND kind = 'unnamed'",
                         id),
                  1);
    }
    o.max_attempts = 3; /* the full statement */
    ASSERT_OK(skipq_enqueue(conn, "unnamed", "{}", &o, &id, &err), &err);
    tl_exec(raw, "BEGIN");
    ASSERT_OK(skipq_enqueue(conn, "unnamed", "{}", &o, &id, &err), &err);
    o.max_attempts = 0;
    ASSERT_OK(skipq_enqueue(conn, "unnamed", "{}", &o, &id, &err), &err);
    tl_exec(raw, "COMMIT");
    ASSERT_EQ(PQpipelineStatus(raw), PQ_PIPELINE_OFF);
    ASSERT_EQ(tl_int(raw, "SELECT count(*) FROM pg_prepared_statements"), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'unnamed'"), 7);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM prepared_seen WHERE kind = 'unnamed'"), 7);
    ASSERT_EQ(tl_int(pg, "SELECT max(n) FROM prepared_seen WHERE kind = 'unnamed'"), 0);
    ASSERT_TRUE(tl_int(pg, "SELECT min(n) FROM prepared_seen WHERE kind = 'named'") > 0);
    tl_idle_lock(l, "u", false);
    skipq_conn_close(other);
    skipq_conn_close(conn);
    PQfinish(l);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}

/* ---- JSON depth: one limit, in and out ------------------------------------ */

/* A payload whose values nest `levels` deep, as json-c and the docs count
 * them: objects {"d": ...} around a 1 ({"d": 1} is 2 levels). Malloc'd. */
static char *
nested_payload(int levels)
{
    size_t n = (size_t)levels * 7 + 2;
    char *s = malloc(n), *p = s;
    ASSERT_TRUE(s);
    for (int i = 1; i < levels; i++)
        p += sprintf(p, "{\"d\":");
    *p++ = '1';
    for (int i = 1; i < levels; i++)
        *p++ = '}';
    *p = '\0';
    return s;
}

/* Echo the payload back as the result; fail when it did not parse. */
static skipq_outcome
echo_payload_handler(skipq_job *job, void *ud)
{
    (void)ud;
    json_object *payload = skipq_job_payload(job);
    if (!payload)
        return skipq_job_fail(job, "skipq_job_payload() gave NULL");
    skipq_job_set_result(job, json_object_get(payload));
    return SKIPQ_JOB_OK;
}

/* Run a C worker over queue q until it is empty. */
static void
run_c_worker_once(const char *q, const char *kind, skipq_handler_fn fn)
{
    skipq_error err;
    skipq_config *cfg = skipq_config_new();
    skipq_worker *w = NULL;
    ASSERT_TRUE(cfg);
    ASSERT_OK(skipq_config_set_database(cfg, tl_url(), &err), &err);
    ASSERT_OK(skipq_config_set_queue(cfg, q, &err), &err);
    ASSERT_OK(skipq_config_set_poll_interval(cfg, 200, &err), &err);
    ASSERT_OK(skipq_worker_new(cfg, &w, &err), &err);
    ASSERT_OK(skipq_worker_register(w, kind, fn, NULL, &err), &err);
    skipq_worker_set_once(w, 1);
    ASSERT_OK(skipq_worker_run(w, &err), &err);
    skipq_worker_free(w);
    skipq_config_free(cfg);
}

/*
 * Enqueue took 512 levels while everything reading a payload back used
 * json-c's default of 32: a 41-level payload went in, then showed as "-"
 * (null with --json) in `jobs show`, reached a C handler as NULL, and a
 * command that printed it back had it stored as {"output": "..."}.
 */
TEST(deep_payload_reads_back_everywhere)
{
    PGconn *pg = tl_db();
    skipq_conn *conn = open_conn();
    skipq_error err;
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    char *payload = nested_payload(41); /* 40 objects around a number */
    int64_t id = 0, cid = 0, sid = 0;

    o.queue = "deep_c";
    ASSERT_OK(skipq_enqueue(conn, "deep", payload, &o, &id, &err), &err);

    /* jobs show, as JSON and as text */
    char *out = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs show %" PRId64 " --json", id), 0);
    char want[64];
    snprintf(want, sizeof want, "\"payload\":%.20s", payload);
    ASSERT_TRUE(strstr(out, want) != NULL);
    ASSERT_TRUE(strstr(out, payload) != NULL);
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs show %" PRId64, id), 0);
    snprintf(want, sizeof want, "%-20s -\n", "payload");
    ASSERT_TRUE(strstr(out, want) == NULL);
    ASSERT_TRUE(strstr(out, "\"d\": 1") != NULL);
    free(out);

    /* a C handler gets it parsed, and its result is stored whole */
    run_c_worker_once("deep_c", "deep", echo_payload_handler);
    char *got = tl_str(pg,
                       "SELECT status || ' ' || coalesce(last_error, '')"
                       " || (result = payload)::text FROM skipq.jobs WHERE id = %" PRId64,
                       id);
    ASSERT_STREQ(got, "succeeded true");
    free(got);

    /* a command printing it back: stored as is, not as {"output": ...} */
    o.queue = "deep_cmd";
    ASSERT_OK(skipq_enqueue(conn, "deep", payload, &o, &cid, &err), &err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL,
                           "worker --queue deep_cmd --once --handler deep=cat"),
              0);
    got = tl_str(pg,
                 "SELECT status || ' ' || (result = payload)::text"
                 " FROM skipq.jobs WHERE id = %" PRId64,
                 cid);
    ASSERT_STREQ(got, "succeeded true");
    free(got);

    /* the JSON log shows it as JSON too (--log-payloads) */
    o.queue = "deep_log";
    ASSERT_OK(skipq_enqueue(conn, "deep", payload, &o, &sid, &err), &err);
    char *log = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &log,
                           "worker --queue deep_log --once --log-payloads "
                           "--log-format json --handler deep=true"),
              0);
    snprintf(want, sizeof want, "\"payload\":%.20s", payload);
    ASSERT_TRUE(strstr(log, want) != NULL);
    free(log);
    free(payload);
    skipq_conn_close(conn);
}

/*
 * The limit is SKIPQ_JSON_MAX_DEPTH levels exactly, and a payload one
 * level deeper is refused by every way in, with the same message naming
 * the limit, and nothing is written.
 */
TEST(payload_deeper_than_the_limit_is_refused_everywhere)
{
    PGconn *pg = tl_db();
    skipq_conn *conn = open_conn();
    skipq_error err;
    int64_t id = 0;
    char *max = nested_payload(SKIPQ_JSON_MAX_DEPTH);
    char *over = nested_payload(SKIPQ_JSON_MAX_DEPTH + 1);
    char want[64];
    snprintf(want, sizeof want, ": nesting deeper than %d levels", SKIPQ_JSON_MAX_DEPTH);

    /* at the limit: in, and read back whole by a C handler */
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    o.queue = "at_limit";
    ASSERT_OK(skipq_enqueue(conn, "deep", max, &o, &id, &err), &err);
    run_c_worker_once("at_limit", "deep", echo_payload_handler);
    char *got = tl_str(pg,
                       "SELECT status || ' ' || (result = payload)::text"
                       " FROM skipq.jobs WHERE id = %" PRId64,
                       id);
    ASSERT_STREQ(got, "succeeded true");
    free(got);
    tl_exec(pg, "DELETE FROM skipq.jobs");

    /* one deeper: refused by each way in, with one message */
    ASSERT_EQ(skipq_enqueue(conn, "deep", over, NULL, &id, &err), SKIPQ_ERR_INVALID);
    printf("skipq_enqueue: %s\n", err.message);
    ASSERT_TRUE(strstr(err.message, want) != NULL);
    ASSERT_EQ(skipq_enqueue_tx(skipq_conn_pg(conn), "deep", over, NULL, &id, &err),
              SKIPQ_ERR_INVALID);
    ASSERT_TRUE(strstr(err.message, want) != NULL);
    skipq_job_spec jobs[2] = {{"deep", "{}"}, {"deep", over}};
    ASSERT_EQ(skipq_enqueue_batch(conn, jobs, 2, NULL, &err), SKIPQ_ERR_INVALID);
    ASSERT_TRUE(strstr(err.message, "job 1: invalid JSON at offset") != NULL);
    ASSERT_TRUE(strstr(err.message, want) != NULL);
    skipq_copy *cp = NULL;
    ASSERT_OK(skipq_copy_begin(conn, NULL, &cp, &err), &err);
    ASSERT_EQ(skipq_copy_add(cp, "deep", over, strlen(over), &err), SKIPQ_ERR_INVALID);
    ASSERT_TRUE(strstr(err.message, want) != NULL);
    skipq_copy_abort(cp, NULL);

    /* the CLI, from an argument and from stdin: bad input, exit 2 */
    char *cli_err = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &cli_err, "enqueue deep '%s'", over), 2);
    printf("skipq enqueue: %s", cli_err);
    ASSERT_TRUE(strstr(cli_err, want) != NULL);
    free(cli_err);
    char *lines = NULL;
    ASSERT_TRUE(asprintf(&lines, "{}\n%s\n", over) > 0);
    ASSERT_EQ(tl_skipq_run(lines, NULL, &cli_err, "enqueue deep -"), 2);
    ASSERT_TRUE(strstr(cli_err, "line 2: ") != NULL);
    ASSERT_TRUE(strstr(cli_err, want) != NULL);
    free(cli_err);
    free(lines);

    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 0);
    free(max);
    free(over);
    skipq_conn_close(conn);
}

/* ---- COPY: rows of any size, each send within libpq's int length ---------- */

/*
 * A payload far larger than the COPY buffer, made of the bytes COPY
 * escapes (backslashes, and newlines and tabs as whitespace), goes to the
 * server in pieces, split inside the row, and comes back byte for byte,
 * between two ordinary rows.
 */
TEST(copy_streams_a_row_larger_than_its_buffer)
{
    PGconn *pg = tl_db();
    skipq_conn *conn = open_conn();
    skipq_error err;
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    size_t n = 3u << 20; /* 3 MiB: twelve buffers once escaped */
    char *big = malloc(n + 1);
    ASSERT_TRUE(big);
    /* {"s":"\\\\...\\","t":[1\n\t\n\t...\r\n]} */
    size_t half = n / 2 & ~(size_t)1, i = 0;
    i += (size_t)sprintf(big, "{\"s\":\"");
    while (i < half)
        big[i++] = '\\';
    i += (size_t)sprintf(big + i, "\",\"t\":[1");
    while (i + 8 < n) {
        memcpy(big + i, "\n\t", 2);
        i += 2;
    }
    i += (size_t)sprintf(big + i, "\r\n]}");
    n = i;

    o.max_payload = n;
    o.queue = "big";
    skipq_copy *cp = NULL;
    int64_t count = 0;
    ASSERT_OK(skipq_copy_begin(conn, &o, &cp, &err), &err);
    ASSERT_OK(skipq_copy_add(cp, "k\t1", "{\"i\": 1}", (size_t)-1, &err), &err);
    ASSERT_OK(skipq_copy_add(cp, "k\\2", big, n, &err), &err);
    ASSERT_OK(skipq_copy_add(cp, "k\n3", "{\"i\": 3}", (size_t)-1, &err), &err);
    ASSERT_OK(skipq_copy_end(cp, &count, &err), &err);
    ASSERT_EQ(count, 3);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE queue = 'big'"), 3);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = E'k\\t1'"
                         " AND payload = '{\"i\": 1}'"),
              1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = E'k\\n3'"
                         " AND payload = '{\"i\": 3}'"),
              1);
    /* the big one, compared as JSON with what was sent */
    PGresult *r = PQexecParams(pg,
                               "SELECT count(*) FROM skipq.jobs WHERE kind = E'k\\\\2'"
                               " AND payload = $1::jsonb",
                               1, NULL, (const char *const[]){big}, NULL, NULL, 0);
    ASSERT_EQ(PQresultStatus(r), PGRES_TUPLES_OK);
    ASSERT_STREQ(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    ASSERT_EQ(tl_int(pg,
                     "SELECT length(payload->>'s') FROM skipq.jobs WHERE kind = E'k\\\\2'"),
              (int64_t)(half - 6) / 2);
    free(big);
    skipq_conn_close(conn);
}

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/*
 * A payload of n bytes, {"s":"\\\\...\\"}, and a backslash and more after
 * it, without writing n bytes of memory: one MiB of backslashes in a
 * memfd, mapped over and over (privately: only the pages written to are
 * copied). n is a multiple of 1 MiB; munmap(p, n + 1 MiB) frees it.
 */
static char *
big_payload(size_t n)
{
    const size_t mib = (size_t)1 << 20;
    int fd = memfd_create("payload", 0);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(ftruncate(fd, (off_t)mib), 0);
    char *fill = mmap(NULL, mib, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ASSERT_TRUE(fill != MAP_FAILED);
    memset(fill, '\\', mib);
    munmap(fill, mib);
    char *p = mmap(NULL, n + mib, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_TRUE(p != MAP_FAILED);
    for (size_t off = 0; off < n + mib; off += mib)
        ASSERT_TRUE(mmap(p + off, mib, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd,
                         0) != MAP_FAILED);
    close(fd);
    memcpy(p, "{\"s\":\"", 6);
    memcpy(p + n - 2, "\"}", 2);
    return p;
}

/*
 * At max_payload's maximum, 1 GB, a payload of backslashes is 2 GB once
 * escaped for COPY. The whole row used to be buffered and sent with its
 * length cast to int: negative, so libpq sent nothing and said it had,
 * and the COPY committed without the rows in that buffer (here all).
 * PostgreSQL cannot read a COPY line of 1 GB, so such a row is now
 * refused before it is read or sent, the other rows go in, and the count
 * skipq_copy_end reports is the count in the table. So is a smaller
 * payload that only escaping makes too long. A max_payload above the
 * 1 GB ceiling (only the C API can set one) is taken as the ceiling.
 */
TEST(copy_of_a_2gb_escaped_row_loses_no_row)
{
    PGconn *pg = tl_db();
    skipq_conn *conn = open_conn();
    skipq_error err;
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    size_t gb = (size_t)1 << 30, mb540 = (size_t)540 << 20;
    char *big = big_payload(gb);

    o.max_payload = SIZE_MAX;
    skipq_copy *cp = NULL;
    int64_t count = -1;
    ASSERT_OK(skipq_copy_begin(conn, &o, &cp, &err), &err);
    ASSERT_OK(skipq_copy_add(cp, "small", "{\"i\": 1}", (size_t)-1, &err), &err);
    skipq_rc rc = skipq_copy_add(cp, "huge", big, gb, &err);
    printf("1 GB: rc %d: %s\n", rc, rc ? err.message : "");
    ASSERT_EQ(rc, SKIPQ_ERR_INVALID);
    ASSERT_TRUE(strstr(err.message, "too long for COPY") != NULL);
    rc = skipq_copy_add(cp, "huge", big, gb + 1, &err);
    printf("1 GB + 1: rc %d: %s\n", rc, rc ? err.message : "");
    ASSERT_EQ(rc, SKIPQ_ERR_INVALID);
    ASSERT_TRUE(strstr(err.message, "more than the limit of 1073741824") != NULL);
    munmap(big, gb + ((size_t)1 << 20));
    /* read through three times (checked, then its escapes counted): a
     * second plain, half a minute under ASan */
    const char *long_env = getenv("SKIPQ_LONG");
    if (!SANITIZED || (long_env && *long_env && strcmp(long_env, "0") != 0)) {
        big = big_payload(mb540); /* 1080 MiB once escaped */
        rc = skipq_copy_add(cp, "huge", big, mb540, &err);
        printf("540 MiB: rc %d: %s\n", rc, rc ? err.message : "");
        ASSERT_EQ(rc, SKIPQ_ERR_INVALID);
        ASSERT_TRUE(strstr(err.message, "too long for COPY") != NULL);
        munmap(big, mb540 + ((size_t)1 << 20));
    }
    ASSERT_OK(skipq_copy_add(cp, "small", "{\"i\": 2}", (size_t)-1, &err), &err);
    ASSERT_OK(skipq_copy_end(cp, &count, &err), &err);
    ASSERT_EQ(count, 2);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'small'"), 2);
    skipq_conn_close(conn);
}

/*
 * Options zeroed by hand have size 0: none of them would be read
 * (docs/abi.md), so every way in refuses them, says how to fix it, and
 * writes nothing.
 */
TEST(opts_without_size_are_refused)
{
    PGconn *pg = tl_db();
    skipq_conn *conn = open_conn();
    skipq_error err;
    skipq_enqueue_opts zeroed;
    skipq_copy *cp = NULL;
    skipq_job_spec jobs[1] = {{"k", "{}"}};
    const char *want = "skipq_enqueue_opts has size 0: initialize it with "
                       "SKIPQ_ENQUEUE_OPTS_INIT";

    memset(&zeroed, 0, sizeof zeroed);
    zeroed.queue = "mail";
    ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &zeroed, NULL, &err), SKIPQ_ERR_INVALID);
    ASSERT_STREQ(err.message, want);
    ASSERT_EQ(skipq_enqueue_tx(skipq_conn_pg(conn), "k", "{}", &zeroed, NULL, &err),
              SKIPQ_ERR_INVALID);
    ASSERT_STREQ(err.message, want);
    ASSERT_EQ(skipq_copy_begin(conn, &zeroed, &cp, &err), SKIPQ_ERR_INVALID);
    ASSERT_STREQ(err.message, want);
    ASSERT_TRUE(cp == NULL);
    ASSERT_EQ(skipq_enqueue_batch(conn, jobs, 1, &zeroed, &err), SKIPQ_ERR_INVALID);
    ASSERT_STREQ(err.message, want);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 0);
    skipq_conn_close(conn);
}
