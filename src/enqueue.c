/*
 * enqueue.c - putting jobs in: one at a time (on our connection or inside
 * the caller's transaction) and in bulk through COPY.
 *
 * Input is validated (check.c) before it reaches the server, so a bad
 * payload is reported with its byte offset and a bad name by its rule,
 * and nothing is written. NOTIFY is sent by the statement-level trigger on
 * skipq.jobs: once per statement (and per queue), however many rows;
 * skipq_enqueue on its own sends it itself, and only while a worker
 * waits: in its insert's statement when it is the only producer, after
 * its commit otherwise (below). COPY and batches: enqueue_copy.c.
 */
#include "abi.h"
#include "enqueue_internal.h"
#include "statements.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static skipq_rc
check_opts(const skipq_enqueue_opts *o, skipq_error *err)
{
    skipq_rc rc;

    if (o->queue && (rc = skipq_check_name("queue", o->queue, err)) != SKIPQ_OK)
        return rc;
    if (o->max_attempts < 0)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "max_attempts must be 1 or more, not %d",
                           (int)o->max_attempts);
    if (o->delay_ms < 0 || o->timeout_ms < 0 ||
        (o->has_backoff && (o->backoff_base_ms < 0 || o->backoff_max_ms < 0)))
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "delays and timeouts must not be negative");
    if (o->has_backoff &&
        (o->backoff < SKIPQ_BACKOFF_FIXED || o->backoff > SKIPQ_BACKOFF_EXPONENTIAL))
        return skipq__fail(err, SKIPQ_ERR_INVALID, "unknown backoff strategy %d",
                           (int)o->backoff);
    return SKIPQ_OK;
}

skipq_rc
skipq__enqueue_opts_read(const skipq_enqueue_opts *opts, skipq_enqueue_opts *o,
                         skipq_error *err)
{
    static const skipq_enqueue_opts defaults = SKIPQ_ENQUEUE_OPTS_INIT;

    switch (skipq__enqueue_opts_in(opts ? opts : &defaults, o)) {
    case SKIPQ__IN_OK:
        return check_opts(o, err);
    case SKIPQ__IN_BAD_SIZE:
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "skipq_enqueue_opts has size %zu: initialize it "
                           "with SKIPQ_ENQUEUE_OPTS_INIT",
                           opts->size);
    case SKIPQ__IN_UNKNOWN:
    default:
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "skipq_enqueue_opts of %zu bytes sets a field "
                           "this libskipq %s does not know (it knows %zu)",
                           opts->size, skipq_version(), sizeof *o);
    }
}

const char *const skipq__backoff_names[3] = {"fixed", "linear", "exponential"};

void
skipq__enq_fill(skipq__enq_params *p, const char *kind, const char *payload,
                const skipq_enqueue_opts *o)
{
    snprintf(p->buf[0], 24, "%d", (int)o->priority);
    snprintf(p->buf[1], 24, "%lld", (long long)o->run_at_us);
    snprintf(p->buf[2], 24, "%lld", (long long)o->delay_ms);
    snprintf(p->buf[3], 24, "%d", (int)o->max_attempts);
    snprintf(p->buf[4], 24, "%lld", (long long)o->backoff_base_ms);
    snprintf(p->buf[5], 24, "%lld", (long long)o->backoff_max_ms);
    snprintf(p->buf[6], 24, "%lld", (long long)o->timeout_ms);
    p->v[0] = kind;
    p->v[1] = payload ? payload : "{}";
    p->v[2] = o->queue ? o->queue : "default";
    p->v[3] = p->buf[0];
    p->v[4] = o->run_at_us ? p->buf[1] : NULL;
    p->v[5] = p->buf[2];
    p->v[6] = o->max_attempts > 0 ? p->buf[3] : NULL;
    p->v[7] = o->has_backoff ? skipq__backoff_names[o->backoff] : NULL;
    p->v[8] = o->has_backoff ? p->buf[4] : NULL;
    p->v[9] = o->has_backoff ? p->buf[5] : NULL;
    p->v[10] = o->timeout_ms > 0 ? p->buf[6] : NULL;
    p->plain = !o->run_at_us && !o->delay_ms && o->max_attempts <= 0 && !o->has_backoff &&
               o->timeout_ms <= 0;
}

/* kind, payload and opts (read into *o) as enqueue takes them */
static skipq_rc
validate(const char *kind, const char *payload, const skipq_enqueue_opts *opts,
         skipq_enqueue_opts *o, skipq_error *err)
{
    skipq_rc rc;

    if ((rc = skipq_check_name("kind", kind, err)) != SKIPQ_OK)
        return rc;
    if ((rc = skipq__enqueue_opts_read(opts, o, err)) != SKIPQ_OK)
        return rc;
    if (payload &&
        (rc = skipq_check_payload(payload, (size_t)-1, o->max_payload, err)) != SKIPQ_OK)
        return rc;
    if (o->unique_key_field)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "unique_key_field is for bulk enqueue; give unique_key");
    return skipq__enq_control_check(o, err);
}

/* Run (out: its result) or send (out NULL) the statement full, or plain
 * for a job with no option but its queue and priority. */
static bool
run_enqueue(PGconn *pg, bool unnamed, const skipq__enq_params *p, skipq__stmt_id full,
            skipq__stmt_id plain, PGresult **out)
{
    return skipq__stmt_run(pg, unnamed, p->plain ? plain : full, NULL,
                           p->plain ? SKIPQ__ENQ_PLAIN_NPARAMS : SKIPQ__ENQ_NPARAMS, p->v,
                           out);
}

static skipq_rc
read_id(PGconn *pg, PGresult *res, int64_t *id_out, skipq_error *err)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return skipq__db_fail(err, pg, res, "could not enqueue job");
    if (id_out)
        *id_out = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    return SKIPQ_OK;
}

skipq_rc
skipq_enqueue_unique_tx(PGconn *pg, const char *kind, const char *payload_json,
                        const skipq_enqueue_opts *opts, int64_t *id_out, int *inserted_out,
                        skipq_error *err)
{
    skipq_enqueue_opts o;
    skipq__enq_params p;
    PGresult *res;
    skipq_rc rc;

    if (!pg)
        return skipq__fail(err, SKIPQ_ERR_STATE, "no connection");
    if ((rc = validate(kind, payload_json, opts, &o, err)) != SKIPQ_OK)
        return rc;
    skipq__enq_fill(&p, kind, payload_json, &o);
    if (skipq__enq_has_control(&o))
        return skipq__enq_control_run(pg, &p, &o, id_out, inserted_out, err);
    if (inserted_out)
        *inserted_out = 1;
    /* the caller's connection: nothing of ours is prepared there */
    run_enqueue(pg, true, &p, SKIPQ__STMT_ENQUEUE, SKIPQ__STMT_ENQUEUE_PLAIN, &res);
    rc = read_id(pg, res, id_out, err);
    PQclear(res);
    return rc;
}

skipq_rc
skipq_enqueue_tx(PGconn *pg, const char *kind, const char *payload_json,
                 const skipq_enqueue_opts *opts, int64_t *id_out, skipq_error *err)
{
    return skipq_enqueue_unique_tx(pg, kind, payload_json, opts, id_out, NULL, err);
}

/* Prepared once a connection, unless the connection sends its
 * statements unnamed (skipq_conn_open). */
static skipq_rc
prepare_enqueue(skipq_conn *conn, skipq_error *err)
{
    static const skipq__stmt_id ids[] = {
        SKIPQ__STMT_ENQUEUE,
        SKIPQ__STMT_ENQUEUE_PLAIN,
        SKIPQ__STMT_ENQUEUE_THEN_NOTIFY,
        SKIPQ__STMT_ENQUEUE_PLAIN_THEN_NOTIFY,
        SKIPQ__STMT_ENQUEUE_TRY,
        SKIPQ__STMT_ENQUEUE_PLAIN_TRY,
        SKIPQ__STMT_NOTIFY,
    };
    skipq_rc rc = skipq__stmts_prepare(conn->pg, ids, sizeof ids / sizeof ids[0], "enqueue",
                                       err);

    conn->enqueue_prepared = rc == SKIPQ_OK;
    return rc;
}

/*
 * Outside a transaction: the insert in an implicit transaction ended by
 * a sync point, then the NOTIFY in one of its own ended by a second,
 * sent without waiting in between: one round trip (libpq 15 flushes at
 * each sync point, so two writes), and no BEGIN or COMMIT to run. The
 * job is enqueued when the insert returned its row and its sync point
 * came back with no error (a commit that fails reports its error before
 * it); a connection lost before that point may hide a commit, as for any
 * client. A failed insert ends its own transaction at its sync point, and
 * the NOTIFY runs anyway: a spurious wake-up at worst. A NOTIFY that
 * fails after a commit (or a connection lost after it) costs only pickup
 * time, as the workers' polling finds the job, and is logged. The
 * notify transaction notifies only while a worker of the queue waits
 * (SKIPQ__STMT_NOTIFY); when it does, it takes a transaction id of its
 * own: two per job, where the trigger's NOTIFY took one.
 */
enum { ENQ_PIPELINED_RUN = 64 }; /* see enqueue_in_one */

/* After a NOTIFY for a waiting worker (SKIPQ__STMT_NOTIFY's one row): the
 * pipeline for the next ENQ_PIPELINED_RUN calls, unless this is the only
 * producer connection, which notifies in its insert's transaction. */
static int
pipelined_after(const PGresult *notify)
{
    return PQgetvalue(notify, 0, 0)[0] == 't' ? 0 : ENQ_PIPELINED_RUN;
}

static skipq_rc
enqueue_then_notify(skipq_conn *conn, const skipq__enq_params *p, int64_t *id_out,
                    skipq_error *err)
{
    PGconn *pg = conn->pg;
    PGresult *ins = NULL, *notify = NULL, *why = NULL;
    int syncs = 0, nulls = 0;
    skipq_rc rc = SKIPQ_OK;

    if (PQenterPipelineMode(pg) != 1)
        return skipq__db_fail(err, pg, NULL, "could not enqueue job");
    bool sent = run_enqueue(pg, conn->unnamed, p, SKIPQ__STMT_ENQUEUE_THEN_NOTIFY,
                            SKIPQ__STMT_ENQUEUE_PLAIN_THEN_NOTIFY, NULL);
    /* even after a failed send, a sync point ends what went out, so the
     * connection can leave pipeline mode; the sync points sent are read
     * back (a send that fails between them means a broken connection) */
    bool sync1 = (sent || PQstatus(pg) == CONNECTION_OK) && PQpipelineSync(pg) == 1;
    bool sync2 = sent && sync1 &&
                 skipq__stmt_run(pg, conn->unnamed, SKIPQ__STMT_NOTIFY, NULL, 1, &p->v[2],
                                 NULL) &&
                 PQpipelineSync(pg) == 1;
    int want = sync1 + sync2;
    while (syncs < want) {
        PGresult *res = PQgetResult(pg);
        if (!res) {
            /* one NULL ends each statement's results; two in a row mean
             * nothing more is coming */
            if (PQstatus(pg) != CONNECTION_OK || ++nulls > 1)
                break;
            continue;
        }
        nulls = 0;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            syncs++;
            PQclear(res);
        } else if (syncs == 0 && st == PGRES_TUPLES_OK && !ins && PQntuples(res) == 1) {
            ins = res;
        } else if (syncs == 0 && !why && st != PGRES_TUPLES_OK) {
            why = res; /* the first error says what failed */
        } else if (syncs == 1 && !notify) {
            notify = res;
        } else {
            PQclear(res);
        }
    }
    /* the insert's transaction ended at the first sync point */
    if (syncs > 0 && ins && !why) {
        int64_t id = strtoll(PQgetvalue(ins, 0, 0), NULL, 10);
        if (id_out)
            *id_out = id;
        if (PQresultStatus(notify) == PGRES_TUPLES_OK && PQntuples(notify) == 1)
            conn->pipelined_left = pipelined_after(notify); /* the lock was taken */
        else if (PQresultStatus(notify) == PGRES_TUPLES_OK)
            conn->pipelined_left -= conn->pipelined_left > 0;
        else
            skipq__log(SKIPQ_LOG_WARN,
                       "job %lld is enqueued, but its NOTIFY failed: "
                       "workers will find it when they poll",
                       (long long)id);
    } else {
        rc = skipq__db_fail(err, pg, why, "could not enqueue job");
    }
    PQclear(ins);
    PQclear(notify);
    PQclear(why);
    /* fails with results left: only if the connection broke; the next
     * call then says so (its status check) */
    if (syncs == want && want > 0 && PQexitPipelineMode(pg) != 1)
        skipq__log(SKIPQ_LOG_WARN, "enqueue: could not leave pipeline mode (results left)");
    return rc;
}

/*
 * While this connection's tries find the idle lock free (no worker of the
 * queue waits: a busy fleet, or none running), the insert and the try go
 * in one autocommit statement: one transaction and one round trip, as a
 * plain INSERT is, and as fast (`skipq bench enqueue` against pgbench:
 * docs/performance.md, "Enqueue"). The try holds the lock
 * until the commit, WAL flush included: a worker going idle meanwhile
 * waits that long for its shared lock (idle_lock in worker_session.c), and
 * another producer's try fails.
 *
 * A failed try means a worker may wait. The only producer connection
 * (it got the producers' lock) has notified in the same transaction: one
 * commit, as the trigger's INSERT. Any other sends the NOTIFY in a second
 * round trip, and the connection's next ENQ_PIPELINED_RUN calls take the
 * pipeline, whose try holds the lock for an instant and whose NOTIFY's
 * commit holds the database's notify lock for an instant: a notifying
 * commit that flushes WAL would make the others wait for its flush. A
 * worker that waits makes every try fail, so its producers stay there,
 * until one finds itself the only producer as it notifies; producers
 * that only met each other come back.
 */
static skipq_rc
enqueue_in_one(skipq_conn *conn, const skipq__enq_params *p, int64_t *id_out,
               skipq_error *err)
{
    PGresult *res = NULL;

    run_enqueue(conn->pg, conn->unnamed, p, SKIPQ__STMT_ENQUEUE_TRY,
                SKIPQ__STMT_ENQUEUE_PLAIN_TRY, &res);
    /* A NOTIFY that cannot be queued (PostgreSQL's notification queue is
     * full: a listener has not read for a very long time) fails its
     * transaction at commit, insert and all. The server rolled it back;
     * the pipeline commits the job first and only logs a failed NOTIFY. */
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state && strcmp(state, "54000") == 0 && PQstatus(conn->pg) == CONNECTION_OK &&
        PQtransactionStatus(conn->pg) == PQTRANS_IDLE) {
        skipq__log(SKIPQ_LOG_WARN,
                   "enqueue: %s (SQLSTATE 54000); trying again with the "
                   "NOTIFY after the commit",
                   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
        PQclear(res);
        conn->pipelined_left = ENQ_PIPELINED_RUN;
        return enqueue_then_notify(conn, p, id_out, err);
    }
    int64_t id = 0;
    skipq_rc rc = read_id(conn->pg, res, &id, err);
    /* t (nobody waits) or n (notified already) */
    bool done = rc == SKIPQ_OK &&
                (PQgetvalue(res, 0, 1)[0] == 't' || PQgetvalue(res, 0, 2)[0] == 't');

    PQclear(res);
    if (rc != SKIPQ_OK)
        return rc;
    if (id_out)
        *id_out = id;
    if (!done) {
        skipq__stmt_run(conn->pg, conn->unnamed, SKIPQ__STMT_NOTIFY, NULL, 1, &p->v[2],
                        &res);
        conn->pipelined_left = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
                                   ? pipelined_after(res)
                                   : ENQ_PIPELINED_RUN;
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            skipq__log(SKIPQ_LOG_WARN,
                       "job %lld is enqueued, but its NOTIFY failed: "
                       "workers will find it when they poll",
                       (long long)id);
        PQclear(res);
    }
    return SKIPQ_OK;
}

/*
 * The producers' lock, shared, on this session, so that other producers'
 * tries of it fail and they keep their NOTIFY out of their insert's
 * transaction (enqueue_in_one). Only a speed-up: without it every waiting
 * worker is still notified, so it is tried, outside any transaction, and
 * a failure costs nothing but the form. A try that finds it taken (a
 * producer alone, in its commit) is tried again at the next call.
 */
static void
take_producer_lock(skipq_conn *conn)
{
    PGresult *res = NULL;

    skipq__stmt_run(conn->pg, false, SKIPQ__STMT_PRODUCER_LOCK, NULL, 0, NULL, &res);

    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        conn->producer_lock = PQgetvalue(res, 0, 0)[0] == 't';
    } else {
        skipq_error e;
        (void)skipq__db_fail(&e, conn->pg, res, "could not take the producers' lock");
        conn->producer_lock = -1;
        skipq__log(SKIPQ_LOG_WARN, "enqueue: %s (a worker waiting is still notified)",
                   e.message);
    }
    PQclear(res);
}

/*
 * A transaction pooler (PgBouncer in transaction or statement mode) runs
 * each transaction on whichever server session is free: a name this
 * connection prepared is missing there (26000), or another client's is
 * there already (42P05). Nothing ran, so the connection goes on unnamed,
 * without the producers' session lock (it would stay on a server session
 * others use), and the call is made again (test
 * pooler.producers_through_pgbouncer_lose_nothing). True when it switched.
 */
static bool
pooler_fallback(skipq_conn *conn, const skipq_error *err)
{
    if (conn->unnamed ||
        (strcmp(err->sqlstate, "26000") != 0 && strcmp(err->sqlstate, "42P05") != 0))
        return false;
    skipq__log(SKIPQ_LOG_WARN,
               "enqueue: this connection goes through a transaction pooler (%s): its "
               "statements go unnamed from now on (SKIPQ_UNNAMED_STATEMENTS=1 says so "
               "from the start)",
               err->message);
    conn->unnamed = true;
    conn->enqueue_prepared = false;
    conn->producer_lock = -1;
    return true;
}

/* Outside a transaction: the insert, and its NOTIFY where a worker waits. */
static skipq_rc
enqueue_alone(skipq_conn *conn, const skipq__enq_params *p, int64_t *id_out,
              skipq_error *err)
{
    if (conn->producer_lock == 0 && !conn->unnamed)
        take_producer_lock(conn);
    return conn->pipelined_left > 0 ? enqueue_then_notify(conn, p, id_out, err)
                                    : enqueue_in_one(conn, p, id_out, err);
}

skipq_rc
skipq_enqueue_unique(skipq_conn *conn, const char *kind, const char *payload_json,
                     const skipq_enqueue_opts *opts, int64_t *id_out, int *inserted_out,
                     skipq_error *err)
{
    skipq_enqueue_opts o;
    skipq__enq_params p;
    PGresult *res;
    skipq_rc rc;

    if (!conn)
        return skipq__fail(err, SKIPQ_ERR_STATE, "no connection");
    if ((rc = validate(kind, payload_json, opts, &o, err)) != SKIPQ_OK)
        return rc;
    /* before the pipeline check: a call cut off by a lost connection
     * leaves it in pipeline mode, and that is not the caller's doing */
    if (PQstatus(conn->pg) != CONNECTION_OK)
        return skipq__db_fail(err, conn->pg, NULL, "could not enqueue job");
    if (PQpipelineStatus(conn->pg) != PQ_PIPELINE_OFF)
        return skipq__fail(err, SKIPQ_ERR_STATE, "the connection is in pipeline mode");
    /* Prepared once per connection: the hot path of a producer. */
    skipq__enq_fill(&p, kind, payload_json, &o);
    /* any option of job control: skipq.enqueue_unique, whose insert the
     * trigger notifies for */
    if (skipq__enq_has_control(&o))
        return skipq__enq_control_run(conn->pg, &p, &o, id_out, inserted_out, err);
    if (inserted_out)
        *inserted_out = 1;
    if (!conn->unnamed && !conn->enqueue_prepared &&
        (rc = prepare_enqueue(conn, err)) != SKIPQ_OK && !pooler_fallback(conn, err))
        return rc;
    if (PQtransactionStatus(conn->pg) == PQTRANS_IDLE) {
        rc = enqueue_alone(conn, &p, id_out, err);
        if (rc != SKIPQ_OK && PQtransactionStatus(conn->pg) == PQTRANS_IDLE &&
            pooler_fallback(conn, err))
            rc = enqueue_alone(conn, &p, id_out, err);
        return rc;
    }
    /* inside the caller's transaction: the trigger notifies at its commit */
    run_enqueue(conn->pg, conn->unnamed, &p, SKIPQ__STMT_ENQUEUE, SKIPQ__STMT_ENQUEUE_PLAIN,
                &res);
    rc = read_id(conn->pg, res, id_out, err);
    PQclear(res);
    return rc;
}

skipq_rc
skipq_enqueue(skipq_conn *conn, const char *kind, const char *payload_json,
              const skipq_enqueue_opts *opts, int64_t *id_out, skipq_error *err)
{
    return skipq_enqueue_unique(conn, kind, payload_json, opts, id_out, NULL, err);
}
