/*
 * worker_session.c - the worker's job connection and its registration.
 *
 * Connect (settings, schema check, prepared statements, LISTEN,
 * register), the liveness lock, heartbeats, reconnecting, cancel
 * requests, NOTIFYs and the idle locks. The statements are in
 * statements.c; everything goes through skipq__stmt_run, so that one
 * flag (worker_session.unnamed) sends them all unnamed.
 */
#include "worker.h"

#include <libpqtypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A worker gives its idle locks up after this long busy (skipq__note_busy). */
enum { IDLE_RELEASE_MS = 100 };

/* ---- connection lifecycle --------------------------------------------------- */

void
skipq__session_drop(skipq_worker *w, const char *why)
{
    if (!w->sess.pg)
        return;
    skipq__log(SKIPQ_LOG_WARN, "worker %lld lost its database connection: %s",
               (long long)w->sess.id, why);
    PQfinish(w->sess.pg);
    w->sess.pg = NULL;
    if (w->sess.lpg) { /* one session: the locks and LISTEN go with it */
        PQfinish(w->sess.lpg);
        w->sess.lpg = NULL;
    }
    w->sess.reconnect_at_ms = skipq__now_ms() + w->sess.reconnect_delay_ms;
    /* the next claims start from the head */
    memset(w->claim.floors, 0, w->cfg->nqueues * w->nbands * sizeof *w->claim.floors);
}

bool
skipq__session_broken(const worker_session *s)
{
    return !s->pg || PQstatus(s->pg) != CONNECTION_OK ||
           (s->lpg && PQstatus(s->lpg) != CONNECTION_OK);
}

PGconn *
skipq__session_locks_pg(const skipq_worker *w)
{
    return w->sess.pooled ? w->sess.lpg : w->sess.pg;
}

static void
band_text(const skipq_worker *w, char *out, size_t n)
{
    const char *p = skipq_config_priorities(w->cfg);
    snprintf(out, n, "%s", p ? p : "all");
}

static void take_liveness_lock(skipq_worker *w);

/* Register (or, after a reconnect, re-register with the same id) and take
 * the "alive" lock that recover and the rescuer test. */
static skipq_rc
register_worker(skipq_worker *w, skipq_error *err)
{
    char host[256] = "", pid[16], conc[16], id[24], bands[256], beat[40], lease[40];
    char *queues = NULL;
    size_t qlen = 2;
    PGresult *res = NULL;
    skipq_rc rc;

    skipq__hostname(host, sizeof host);
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(conc, sizeof conc, "%d", w->cfg->concurrency);
    band_text(w, bands, sizeof bands);
    /* queues as a text[] literal; names are quoted and escaped */
    for (size_t i = 0; i < w->cfg->nqueues; i++)
        qlen += 2 * strlen(w->cfg->queues[i]) + 4;
    queues = malloc(qlen);
    if (!queues)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    char *q = queues;
    *q++ = '{';
    for (size_t i = 0; i < w->cfg->nqueues; i++) {
        if (i)
            *q++ = ',';
        *q++ = '"';
        for (const char *s = w->cfg->queues[i]; *s; s++) {
            if (*s == '"' || *s == '\\')
                *q++ = '\\';
            *q++ = *s;
        }
        *q++ = '"';
    }
    *q++ = '}';
    *q = '\0';

    snprintf(beat, sizeof beat, "%lld milliseconds",
             (long long)w->cfg->heartbeat_interval_ms);
    snprintf(lease, sizeof lease, "%lld milliseconds", (long long)w->cfg->lease_timeout_ms);
    /* liveness_lock stays false until take_liveness_lock() holds it: in
     * between, others judge this worker by its heartbeat and lease, and
     * a lock that is free only because we have not taken it yet (or our
     * old session just died) does not make our live jobs look lost. */
    snprintf(id, sizeof id, "%lld", (long long)w->sess.id);
    const char *v[10] = {host,
                         pid,
                         queues,
                         bands,
                         conc,
                         SKIPQ_VERSION,
                         beat,
                         lease,
                         w->sess.id ? id : NULL,
                         w->sess.id ? w->sess.secret : NULL};
    rc = skipq__stmt_exec(w->sess.pg, w->sess.send, SKIPQ__STMT_REGISTER, 10, v, &res, err);
    if (rc == SKIPQ_OK) {
        w->sess.id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        snprintf(w->sess.secret, sizeof w->sess.secret, "%s", PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    free(queues);
    if (rc != SKIPQ_OK)
        return rc;
    w->sess.alive_locked = false;
    take_liveness_lock(w);
    return SKIPQ_OK;
}

/*
 * Try to take the worker's liveness lock, and say in the worker's row
 * whether it is held. Never waits: any role can take an advisory lock,
 * and a stale backend of our own lost session may still hold it, so a
 * wait could last for ever with no heartbeat meanwhile. Without the lock
 * the worker runs on and is judged by its heartbeat and lease; the heartbeat
 * tries again (tests liveness_lock_held_by_another_role_does_not_stall and
 * reconnect_with_a_stale_backend_holding_the_lock).
 */
static void
take_liveness_lock(skipq_worker *w)
{
    char id[24];
    const char *v[2] = {id, w->sess.secret};
    PGresult *res = NULL;
    skipq_error e;

    PGconn *lpg = skipq__session_locks_pg(w);
    if (!lpg) /* polling only: the row says no lock; judged by the lease */
        return;
    snprintf(id, sizeof id, "%lld", (long long)w->sess.id);
    if (skipq__stmt_exec(lpg, lpg == w->sess.pg ? w->sess.send : SKIPQ__SEND_UNNAMED,
                         SKIPQ__STMT_LIVENESS, 2, v, &res, &e) != SKIPQ_OK) {
        skipq__log(SKIPQ_LOG_WARN, "worker %lld could not take its liveness lock: %s",
                   (long long)w->sess.id, e.message);
        if (skipq__session_broken(&w->sess))
            skipq__session_drop(w, e.message);
        return;
    }
    bool got = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
    if (!got && !w->sess.alive_lock_warned) {
        skipq__log(SKIPQ_LOG_WARN,
                   "worker %lld could not take its liveness lock: held by backend %s; "
                   "until it can, it is judged by its heartbeat and lease (%lld ms), "
                   "and it tries again at every heartbeat",
                   (long long)w->sess.id,
                   PQntuples(res) == 1 && !PQgetisnull(res, 0, 1) ? PQgetvalue(res, 0, 1)
                                                                  : "(none)",
                   (long long)w->cfg->lease_timeout_ms);
        w->sess.alive_lock_warned = true;
    } else if (got && w->sess.alive_lock_warned) {
        skipq__log(SKIPQ_LOG_INFO, "worker %lld holds its liveness lock now",
                   (long long)w->sess.id);
        w->sess.alive_lock_warned = false;
    }
    w->sess.alive_locked = got;
    PQclear(res);
}

/* on_success delete deletes rows; sql/roles.sql gives skipq_worker no
 * DELETE on purpose. Refuse to start rather than fail every completion
 * (each retried forever, its claims aborted with it). */
static skipq_rc
delete_check(skipq_worker *w, skipq_error *err)
{
    PGresult *res;
    skipq_rc rc = SKIPQ_OK;

    if (w->cfg->on_success != SKIPQ_ON_SUCCESS_DELETE)
        return SKIPQ_OK;
    if (!skipq__stmt_run(w->sess.pg, w->sess.send, SKIPQ__STMT_DELETE_PRIVILEGE, NULL, 0,
                         NULL, &res) ||
        PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        rc = skipq__db_fail(err, w->sess.pg, res, "could not check the DELETE privilege");
    else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        rc = skipq__fail(err, SKIPQ_ERR_CONFIG,
                         "worker.on_success: delete needs DELETE on skipq.jobs, which "
                         "role \"%s\" does not have (GRANT DELETE ON skipq.jobs TO it, "
                         "or keep succeeded rows: docs/security.md)",
                         PQgetvalue(res, 0, 1));
    PQclear(res);
    return rc;
}

/* worker.archive_after calls two functions that sql/roles.sql grants
 * skipq_worker: a role that lacks them (roles not re-applied after an
 * upgrade) is told at start, not by a warning every turn. */
static skipq_rc
archive_check(skipq_worker *w, skipq_error *err)
{
    PGresult *res;
    skipq_rc rc = SKIPQ_OK;

    if (w->cfg->archive_after_ms == 0)
        return SKIPQ_OK;
    if (!skipq__stmt_run(w->sess.pg, w->sess.send, SKIPQ__STMT_ARCHIVE_PRIVILEGE, NULL, 0,
                         NULL, &res) ||
        PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        rc = skipq__db_fail(err, w->sess.pg, res,
                            "could not check the archive's privileges");
    else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        rc = skipq__fail(err, SKIPQ_ERR_CONFIG,
                         "worker.archive_after needs EXECUTE on skipq.archive() and "
                         "skipq.archive_drop(), which role \"%s\" does not have (run "
                         "`skipq migrate --roles`, which grants them to skipq_worker: "
                         "docs/security.md)",
                         PQgetvalue(res, 0, 1));
    PQclear(res);
    return rc;
}

static skipq_rc
schema_check(skipq_worker *w, skipq_error *err)
{
    skipq_conn tmp = {.pg = w->sess.pg, .types_ready = true};
    return skipq_schema_check(&tmp, err);
}

/* The hot statements, prepared once a connection (unless unnamed). */
static skipq_rc
prepare_all(skipq_worker *w, skipq_error *err)
{
    const skipq__stmt_id ids[] = {
        SKIPQ__STMT_CLAIM,
        SKIPQ__STMT_CLAIM_AFTER,
        w->cfg->on_success == SKIPQ_ON_SUCCESS_DELETE ? SKIPQ__STMT_COMPLETE_DELETE
                                                      : SKIPQ__STMT_COMPLETE,
        /* see complete_and_claim(): the settings of its transaction */
        SKIPQ__STMT_CYCLE,
        SKIPQ__STMT_CYCLE_QUICK,
    };
    if (w->sess.send != SKIPQ__SEND_NAMED)
        return SKIPQ_OK;
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        skipq_rc rc = skipq__stmt_prepare(w->sess.pg, ids[i], err);
        if (rc != SKIPQ_OK)
            return skipq__pooler_check(w, rc, err);
    }
    return SKIPQ_OK;
}

bool
skipq__pooler_sqlstate(const char *state)
{
    /* 42P05 duplicate_prepared_statement: the server session we were
     * given has another client's; 26000 invalid_sql_statement_name: the
     * one a later statement got lacks ours */
    return state && (strcmp(state, "42P05") == 0 || strcmp(state, "26000") == 0);
}

/*
 * A transaction pooler the config does not know of shows itself by our
 * prepared statements: they exist already on the server session a
 * connect was given, or are missing from the one a later statement got.
 * Reconnecting would only meet it again: refuse, saying what to set
 * (test pooler.worker_behind_a_pooler_without_settings_says_so).
 */
skipq_rc
skipq__pooler_check(skipq_worker *w, skipq_rc rc, skipq_error *err)
{
    if (w->sess.pooled || !skipq__pooler_sqlstate(err->sqlstate))
        return rc;
    char was[sizeof err->message];
    snprintf(was, sizeof was, "%s", err->message);
    return skipq__fail(err, SKIPQ_ERR_CONFIG,
                       "the worker's connection goes through a transaction pooler "
                       "(PgBouncer?), which keeps no session for it (%.300s): give it a "
                       "direct connection for LISTEN and its locks with "
                       "worker.listen_database, or poll only with worker.listen: false "
                       "(docs/operations.md, \"Behind PgBouncer\")",
                       was);
}

/*
 * A pooler or proxy between the worker and PostgreSQL hands the client a
 * backend key of its own: the PID libpq was told is not the server's.
 * Under session pooling that is harmless; under transaction pooling the
 * worker's LISTEN and session locks would not hold, and a pooler that
 * keeps prepared statements (PgBouncer 1.21+ with max_prepared_statements)
 * raises none of the errors skipq__pooler_check() recognises. So a
 * connection that should be direct and is not is named in a warning, once
 * per start (test pooler.worker_through_a_session_pooler_is_warned). The
 * check itself failing is not an error: it only informs.
 */
static void
direct_check(PGconn *pg, const char *what)
{
    PGresult *res = PQexec(pg, "SELECT pg_catalog.pg_backend_pid()");
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        long server = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        if (server != (long)PQbackendPID(pg))
            skipq__log(SKIPQ_LOG_WARN,
                       "%s reports backend %d, but the server runs it as backend %ld: a "
                       "pooler or proxy is in between. Under session pooling that is "
                       "fine; under transaction pooling LISTEN and the worker's locks do "
                       "not hold: give it a direct connection (worker.listen_database), "
                       "or poll only with worker.listen: false (docs/operations.md, "
                       "\"Behind PgBouncer\")",
                       what, PQbackendPID(pg), server);
    }
    PQclear(res);
}

/* worker.listen_database: the direct connection for LISTEN, the liveness
 * lock and the idle locks, beside a job connection through a pooler. */
static skipq_rc
connect_locks(skipq_worker *w, skipq_error *err)
{
    char settings[160];
    skipq_rc rc;

    if (!w->cfg->listen_database)
        return SKIPQ_OK;
    if ((rc = skipq__connect(w->cfg->listen_database, &w->sess.lpg, err)) != SKIPQ_OK)
        return rc;
    /* A link that dies silently must fail the heartbeat's round trip on
     * it within a lease, not after TCP's retransmissions (many minutes):
     * keepalives on the idle link, and a bound on unacknowledged data. */
    int fd = PQsocket(w->sess.lpg), on = 1, idle = 5, intvl = 2, cnt = 3;
    unsigned int user_ms = (unsigned int)(w->cfg->lease_timeout_ms / 2);
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms, sizeof user_ms);
    snprintf(settings, sizeof settings, skipq__stmts[SKIPQ__STMT_SETTINGS].text,
             (long long)w->sess.lock_wait_ms);
    if (w->sess.id == 0)
        direct_check(w->sess.lpg, "the worker's worker.listen_database connection");
    if ((rc = skipq__exec(w->sess.lpg, settings, err)) != SKIPQ_OK ||
        (w->cfg->listen &&
         ((rc = skipq__stmt_exec(w->sess.lpg, SKIPQ__SEND_UNNAMED, SKIPQ__STMT_LISTEN, 0,
                                 NULL, NULL, err)) != SKIPQ_OK ||
          (rc = skipq__stmt_exec(w->sess.lpg, SKIPQ__SEND_UNNAMED,
                                 SKIPQ__STMT_LISTEN_CONTROL, 0, NULL, NULL, err)) !=
              SKIPQ_OK))) {
        PQfinish(w->sess.lpg);
        w->sess.lpg = NULL;
    }
    return rc;
}

/* LISTEN on the job connection, unless pooled (connect_locks). */
static skipq_rc
listen_here(skipq_worker *w, skipq_error *err)
{
    skipq_rc rc;

    if (w->sess.pooled)
        return SKIPQ_OK;
    if ((rc = skipq__stmt_exec(w->sess.pg, w->sess.send, SKIPQ__STMT_LISTEN, 0, NULL, NULL,
                               err)) != SKIPQ_OK)
        return rc;
    return skipq__stmt_exec(w->sess.pg, w->sess.send, SKIPQ__STMT_LISTEN_CONTROL, 0, NULL,
                            NULL, err);
}

skipq_rc
skipq__session_connect(skipq_worker *w, skipq_error *err)
{
    skipq_rc rc = skipq__connect(w->database, &w->sess.pg, err);
    bool first = w->sess.id == 0;

    if (rc != SKIPQ_OK)
        return rc;
    /* ISO dates: timestamps the worker reads back as text go back to the
     * server (the claim's now(), a claim floor's run_at), and only ISO
     * prints a numeric offset that reads back as the same instant. */
    /* lock_timeout: no statement on this connection waits long for a
     * lock that another session holds (an operator's transaction on a
     * job's row, a migration's DDL), so heartbeats keep their pace (test
     * a_row_lock_on_one_job_delays_only_that_job). */
    char settings[160];
    snprintf(settings, sizeof settings, skipq__stmts[SKIPQ__STMT_SETTINGS].text,
             (long long)w->sess.lock_wait_ms);
    if (first && !w->sess.pooled)
        direct_check(w->sess.pg, "the worker's connection");
    if ((rc = skipq__exec(w->sess.pg, settings, err)) ||
        (first && (rc = schema_check(w, err))) || (first && (rc = delete_check(w, err))) ||
        (first && (rc = archive_check(w, err))) || (rc = prepare_all(w, err)) ||
        (rc = connect_locks(w, err)) || (rc = listen_here(w, err)) ||
        (rc = register_worker(w, err)) || (!first && (rc = skipq__reconcile(w, err)))) {
        PQfinish(w->sess.pg);
        w->sess.pg = NULL;
        if (w->sess.lpg) {
            PQfinish(w->sess.lpg);
            w->sess.lpg = NULL;
        }
        return rc;
    }
    if (PQsetnonblocking(w->sess.pg, 0) != 0) {
        skipq__session_drop(w, "could not configure the connection");
        return skipq__fail(err, SKIPQ_ERR_DB, "could not configure the connection");
    }
    w->claim.wake = true;         /* poll once for what we missed */
    w->sess.check_cancels = true; /* and cancels requested meanwhile */
    w->pauses.check = true;       /* and the queues paused */
    w->sess.idle_locked = false;  /* a new session holds no lock */
    w->sess.reconnect_delay_ms = 100;
    if (!first)
        skipq__log(SKIPQ_LOG_INFO, "worker %lld reconnected", (long long)w->sess.id);
    return SKIPQ_OK;
}

/* ---- idle locks ------------------------------------------------------------- */

/* A PGparam whose first parameter is the worker's queues as a text[];
 * *qs holds the array's elements. The caller clears both (either may be
 * NULL, and is when false is returned for lack of memory). */
bool
skipq__queues_param(skipq_worker *w, PGconn *pg, PGparam **prm, PGparam **qs)
{
    PGarray arr = {0};
    bool ok;

    *prm = PQparamCreate(pg);
    *qs = PQparamCreate(pg);
    ok = *prm && *qs;
    for (size_t i = 0; ok && i < w->cfg->nqueues; i++)
        ok = PQputf(*qs, "%text", w->cfg->queues[i]) != 0;
    arr.param = *qs;
    return ok && PQputf(*prm, "%text[]", &arr) != 0;
}

/* (PQparamExec frees a failed statement's result and returns NULL; the
 * error's fields stay readable through PQgetErrorField) */
bool
skipq__lock_timed_out(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
                            : PQgetErrorField(PG_DIAG_SQLSTATE);
    return state && strcmp(state, "55P03") == 0; /* lock_not_available */
}

/*
 * The idle locks: who needs a NOTIFY. skipq_enqueue sends one only if
 * a worker of the job's queue may be waiting for it, which it learns by
 * trying to take (class SKIPQ__LOCK_CLASS_IDLE, hashtext(queue))
 * exclusively: it fails while any worker holds it shared, or waits for
 * it. A worker holds it from before a claim that came back short until
 * its claims have come back full, or its slots have all been taken, for
 * IDLE_RELEASE_MS (note_busy: it claims again as a slot frees), so a
 * busy fleet's producers skip the NOTIFY (and its transaction) and its
 * workers are not woken for work they would claim anyway.
 *
 * No wake-up is lost. A worker whose claim came back short without the
 * lock takes it, then claims again before it sleeps. A producer whose
 * try came first holds the exclusive lock until its transaction ends,
 * after its insert has committed (skipq_enqueue tries in the insert's
 * own statement, or in a transaction after its commit), so the worker
 * cannot take its shared lock before that, and its claim again sees the
 * job. A producer whose try came after fails, and notifies. SQL
 * producers and skipq_enqueue inside a caller's transaction notify as
 * before, at their commit, whatever the locks say.
 *
 * The worker waits for each of its locks up to IDLE_WAIT_MS (statements.c): a producer
 * holds the exclusive one through its commit's WAL flush, a fraction of
 * a millisecond, and a worker that only tried would fail at every try
 * under a steady producer, and find its jobs only at each retry. A
 * hand-written transaction could hold the lock for as long as it runs:
 * the wait ends there (lock_timeout), the worker gives back the locks the
 * statement took (all or none: session locks outlive the error) on the
 * same session, and claims again after IDLE_RETRY_MS; meanwhile every
 * producer's try fails, and it notifies (the test
 * worker_waits_for_its_idle_locks_briefly_and_all_or_none).
 */

/*
 * Take (on) or give up the idle locks of the worker's queues. A statement
 * that fails otherwise than by the wait's timeout may have taken some of
 * them, so the connection is dropped for a clean session: locks go with
 * it, and the reconnect reconciles as after any lost connection.
 */
idle_rc
skipq__idle_lock(skipq_worker *w, bool on)
{
    PGparam *prm, *qs;
    idle_rc rc = IDLE_FAILED;
    PGresult *res = NULL;

    PGconn *lpg = skipq__session_locks_pg(w);
    int send = lpg == w->sess.pg ? w->sess.send : SKIPQ__SEND_UNNAMED;

    if (!lpg || !w->cfg->listen) {
        /* polling only: nobody would hear a NOTIFY, so none is asked for */
        w->sess.idle_locked = on;
        return IDLE_DONE;
    }
    if (skipq__queues_param(w, lpg, &prm, &qs)) {
        skipq__stmt_run(lpg, send, on ? SKIPQ__STMT_IDLE_LOCK : SKIPQ__STMT_IDLE_UNLOCK,
                        prm, 0, NULL, &res);
        if (on && skipq__lock_timed_out(res)) {
            PQclear(res);
            skipq__stmt_run(lpg, send, SKIPQ__STMT_IDLE_UNDO, prm, 0, NULL, &res);
            if (res && PQresultStatus(res) == PGRES_TUPLES_OK)
                rc = IDLE_TAKEN_BY_PRODUCER;
        } else if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
            w->sess.idle_locked = on;
            rc = IDLE_DONE;
        }
    }
    if (rc == IDLE_FAILED) {
        skipq_error e;
        skipq__db_fail(&e, lpg, res,
                       on ? "could not take the idle locks"
                          : "could not give up the idle locks");
        skipq__session_drop(w, e.message);
    }
    PQclear(res);
    if (prm)
        PQparamClear(prm);
    if (qs)
        PQparamClear(qs);
    return rc;
}

/* A full claim, or every slot taken: once that has lasted
 * IDLE_RELEASE_MS, the worker gives its idle locks up, and from then on
 * claims as soon as a slot frees (wake), NOTIFY or not: slots taken
 * after a short claim (automatic prefetch lowered them) left wake off. */
void
skipq__note_busy(skipq_worker *w, int64_t now)
{
    if (!w->claim.full_since_ms)
        w->claim.full_since_ms = now;
    else if (w->sess.idle_locked && w->sess.pg &&
             now - w->claim.full_since_ms >= IDLE_RELEASE_MS &&
             skipq__idle_lock(w, false) == IDLE_DONE)
        w->claim.wake = true;
}

/* ---- notifications, heartbeats, cancels ---------------------------------- */

void
skipq__session_notifies(skipq_worker *w)
{
    PGnotify *n;
    PGconn *lpg = skipq__session_locks_pg(w);
    if (!w->sess.pg || !lpg)
        return;
    PQconsumeInput(lpg);
    while ((n = PQnotifies(lpg)) != NULL) {
        if (strcmp(n->relname, SKIPQ__CHANNEL) == 0) {
            for (size_t i = 0; i < w->cfg->nqueues; i++)
                if (strcmp(w->cfg->queues[i], n->extra) == 0)
                    w->claim.wake = true;
        } else if (strcmp(n->relname, SKIPQ__CONTROL_CHANNEL) == 0) {
            /* only a hint: skipq__session_read_cancels() and
             * skipq__pauses_read() act on the rows */
            w->sess.check_cancels = true;
            w->pauses.check = true;
        }
        PQfreemem(n);
    }
}

void
skipq__session_heartbeat(skipq_worker *w)
{
    char id[24];
    const char *v[2] = {id, w->sess.secret};
    PGresult *res = NULL;
    snprintf(id, sizeof id, "%lld", (long long)w->sess.id);
    skipq_error e;
    /* (the connection's lock_timeout bounds a wait on our row, which an
     * operator's transaction may hold) */
    if (skipq__stmt_exec(w->sess.pg, w->sess.send, SKIPQ__STMT_HEARTBEAT, 2, v, &res, &e) !=
        SKIPQ_OK) {
        skipq__log(SKIPQ_LOG_WARN, "heartbeat failed: %s", e.message);
        if (skipq__session_broken(&w->sess))
            skipq__session_drop(w, e.message);
        return;
    }
    bool gone = PQgetvalue(res, 0, 0)[0] != 't';
    PQclear(res);
    /*
     * Behind a pooler the beat above goes through it, and the liveness
     * lock lives on the direct connection, where a busy worker may send
     * nothing for long: a link dropped silently there (a NAT's idle
     * timeout) frees the lock while the beats go on, and the rescuer
     * would take this worker's running jobs. So each beat also crosses
     * the direct connection, and its loss ends the session.
     */
    if (w->sess.lpg) {
        res = PQexec(w->sess.lpg, "SELECT 1");
        bool up = PQresultStatus(res) == PGRES_TUPLES_OK;
        PQclear(res);
        if (!up) {
            skipq__session_drop(w, PQerrorMessage(w->sess.lpg));
            return;
        }
    }
    if (gone && register_worker(w, &e) != SKIPQ_OK)
        skipq__log(SKIPQ_LOG_WARN, "could not re-register worker: %s", e.message);
    else if (!gone && !w->sess.alive_locked && w->sess.pg)
        take_liveness_lock(w);
    /* a cancel or a pause whose NOTIFY was lost (or sent while we were
     * away) */
    w->sess.check_cancels = true;
    w->pauses.check = true;
}

/*
 * Stop the held jobs whose rows ask for it. A NOTIFY on the control
 * channel is only a hint that some row may: any role can send one, so
 * what is stopped is what the table says, for jobs this worker holds
 * under the claim it holds (test forged_cancel_notify_is_ignored). Also
 * read after a reconnect and at every heartbeat, so a cancel sent while
 * the worker was disconnected is not lost
 * (cancel_sent_while_disconnected_is_honoured).
 */
void
skipq__session_read_cancels(skipq_worker *w)
{
    PGparam *prm = NULL, *ids = NULL;
    PGarray a = {0};
    PGresult *res = NULL;
    int n = 0;

    w->sess.check_cancels = false;
    if (!w->sess.pg)
        return;
    prm = PQparamCreate(w->sess.pg);
    ids = PQparamCreate(w->sess.pg);
    bool ok = prm && ids;
    for (skipq_job *j = w->jobs.held; ok && j; j = j->hnext) {
        if (j->done || j->cancel_requested || j->claim_token < 0)
            continue;
        ok = PQputf(ids, "%int8", (PGint8)j->id) != 0;
        n++;
    }
    a.param = ids;
    if (ok && n > 0 && PQputf(prm, "%int8[] %int8", &a, (PGint8)w->sess.id)) {
        skipq__stmt_run(w->sess.pg, w->sess.send, SKIPQ__STMT_READ_CANCELS, prm, 0, NULL,
                        &res);
        if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
            for (int r = 0; r < PQntuples(res); r++) {
                skipq_job *j = skipq__held_find(&w->jobs,
                                                strtoll(PQgetvalue(res, r, 0), NULL, 10));
                if (!j || j->done || j->cancel_requested ||
                    j->claim_token != (int32_t)strtol(PQgetvalue(res, r, 1), NULL, 10))
                    continue;
                j->cancel_requested = true;
                atomic_store(&j->stop, 1);
                skipq__log_job(SKIPQ_LOG_INFO, "cancel", j, "job %lld: cancel requested",
                               (long long)j->id);
            }
        } else {
            skipq_error e;
            skipq__db_fail(&e, w->sess.pg, res, "could not read cancel requests");
            skipq__log(SKIPQ_LOG_WARN, "%s", e.message);
            if (skipq__session_broken(&w->sess))
                skipq__session_drop(w, e.message);
            else
                w->sess.check_cancels = true; /* again at the next turn */
        }
    } else if (!ok) {
        w->sess.check_cancels = true;
    }
    PQclear(res);
    if (prm)
        PQparamClear(prm);
    if (ids)
        PQparamClear(ids);
}

void
skipq__session_unregister(skipq_worker *w)
{
    char id[24];
    const char *v[2] = {id, w->sess.secret};
    skipq_error e;
    if (skipq__session_broken(&w->sess))
        return;
    snprintf(id, sizeof id, "%lld", (long long)w->sess.id);
    if (skipq__stmt_exec(w->sess.pg, w->sess.send, SKIPQ__STMT_UNREGISTER, 2, v, NULL,
                         &e) != SKIPQ_OK)
        skipq__log(SKIPQ_LOG_WARN, "could not unregister: %s", e.message);
}
