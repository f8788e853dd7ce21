/*
 * worker_maint.c - the maintenance thread: the rescuer's turn, retention
 * (pruning finished rows) and the worker's own VACUUM of skipq.jobs, on
 * a connection of its own so that their scans never stop the claims.
 *
 * The thread reads only the configuration, the worker's id (set before
 * it starts) and its own state (worker_maint); all signals are blocked
 * on it. Its statements are in statements.c; none is prepared.
 */
#include "worker.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Every statement of the maintenance connection goes with its text. */
static skipq_rc
maint_exec(PGconn *pg, skipq__stmt_id id, int n, const char *const *v, PGresult **out,
           skipq_error *err)
{
    return skipq__stmt_exec(pg, true, id, n, v, out, err);
}

/* Run a statement whose result only says yes or no (an advisory lock
 * tried, or let go): true for yes. */
static bool
maint_yes(PGconn *pg, skipq__stmt_id id)
{
    PGresult *res = NULL;
    bool yes = skipq__stmt_run(pg, true, id, NULL, 0, NULL, &res) &&
               PQresultStatus(res) == PGRES_TUPLES_OK && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return yes;
}

/* Is the maintenance thread being stopped? Its statement is then
 * cancelled on purpose (maint_stop), which is not worth a warning. */
static bool
maint_stopping(skipq_worker *w)
{
    pthread_mutex_lock(&w->maint.mu);
    bool quit = w->maint.quit;
    pthread_mutex_unlock(&w->maint.mu);
    return quit;
}

/* If the maintenance connection *pgp is gone: say so, close it and clear
 * it (the thread connects again), and return true. */
static bool
maint_lost(PGconn **pgp, const char *who)
{
    if (PQstatus(*pgp) == CONNECTION_OK)
        return false;
    skipq__log(SKIPQ_LOG_WARN, "%s: lost its database connection", who);
    PQfinish(*pgp);
    *pgp = NULL;
    return true;
}

/*
 * One worker at a time rescues the jobs of workers that are gone, and
 * forgets workers that have been gone for long. The turn is the row
 * 'rescue' of skipq.maintenance, locked with SKIP LOCKED for the
 * transaction: only roles with UPDATE on that table can hold it, where an
 * advisory key can be held by any role that connects, which turned rescue
 * off for everyone (test rescue_runs_while_another_role_holds_old_key).
 * A turn that keeps finding the row locked while its last run grows
 * older than the lease says so.
 */
static void
rescue(skipq_worker *w, PGconn **pgp)
{
    PGconn *pg = *pgp;
    char lease[32], self[24], maxa[16];
    const char *v[3] = {lease, self, maxa};
    skipq_error e;
    PGresult *res = NULL, *rescued = NULL;

    snprintf(lease, sizeof lease, "%lld milliseconds", (long long)w->cfg->lease_timeout_ms);
    snprintf(self, sizeof self, "%lld", (long long)w->sess.id);
    snprintf(maxa, sizeof maxa, "%d", w->cfg->max_attempts);
    /* bounded: an operator's transaction may hold a workers row */
    if (maint_exec(pg, SKIPQ__STMT_RESCUE_BEGIN, 0, NULL, NULL, &e) != SKIPQ_OK)
        goto fail;
    if (maint_exec(pg, SKIPQ__STMT_RESCUE_TURN, 1, v, &res, &e) != SKIPQ_OK)
        goto fail;
    bool mine = PQgetvalue(res, 0, 0)[0] == 't';
    bool late = PQgetvalue(res, 0, 1)[0] == 't';
    PQclear(res);
    if (!mine && late)
        skipq__log(SKIPQ_LOG_WARN,
                   "rescuer: the turn (row 'rescue' of skipq.maintenance) is locked by "
                   "another session and no rescue ran for over two leases; jobs of lost "
                   "workers wait (see skipq stats)");
    if (mine) {
        if (maint_exec(pg, SKIPQ__STMT_RESCUE, 3, v, &rescued, &e) != SKIPQ_OK)
            goto fail;
        for (int r = 0; r < PQntuples(rescued); r++)
            skipq__log(SKIPQ_LOG_WARN, "rescued job %s (%s) of a lost worker: now %s",
                       PQgetvalue(rescued, r, 0), PQgetvalue(rescued, r, 1),
                       PQgetvalue(rescued, r, 2));
        if (maint_exec(pg, SKIPQ__STMT_FORGET_WORKERS, 2, v, NULL, &e) != SKIPQ_OK)
            goto fail;
        if (maint_exec(pg, SKIPQ__STMT_RESCUE_DONE, 1, v + 1, NULL, &e) != SKIPQ_OK)
            goto fail;
    }
    if (maint_exec(pg, SKIPQ__STMT_COMMIT, 0, NULL, NULL, &e) != SKIPQ_OK)
        goto fail;
    /* counted once committed, as completions are */
    for (int r = 0; w->metrics && rescued && r < PQntuples(rescued); r++)
        skipq__metrics_note_rescue(w->metrics, PQgetvalue(rescued, r, 1),
                                   strcmp(PQgetvalue(rescued, r, 2), "failed") == 0);
    PQclear(rescued);
    return;
fail:
    PQclear(rescued);
    skipq__log(maint_stopping(w) ? SKIPQ_LOG_DEBUG : SKIPQ_LOG_WARN, "rescuer: %s",
               e.message);
    if (!maint_lost(pgp, "rescuer"))
        (void)maint_yes(pg, SKIPQ__STMT_ROLLBACK); /* a failure: a lost connection */
}

/*
 * Retention: delete finished rows older than the setting, one worker at a
 * time, in batches for at most PRUNE_BUDGET_MS per turn. With
 * archive_after set, the batches move rows older than that to
 * skipq.jobs_done instead, and the turn then drops the archive's
 * partitions that ended longer than retention ago, one per transaction,
 * at most ARCHIVE_DROPS per turn (sql/archive.sql; test
 * archive.worker_moves_rows_and_drops_old_partitions). Returns true when
 * rows were left (behind): the next turn then comes at once, with the
 * rescuer's turn between when it is due, instead of after PRUNE_EVERY_MS.
 * A prune that falls behind lets the table grow, and a larger table makes
 * every prune (and claim) dearer, so a prune that is behind goes on
 * without a pause (docs/performance.md, "Retention"). The test
 * worker_retention_prunes_old_finished_rows guards it.
 */
enum {
    PRUNE_BATCH = 5000,
    PRUNE_BUDGET_MS = 500,
    PRUNE_EVERY_MS = 10000,
    ARCHIVE_DROPS = 8,
};

/* Maintenance through a transaction pooler: no session lock lasts. */
static bool
maint_pooled(const skipq_worker *w)
{
    return w->sess.pooled && !w->cfg->listen_database;
}

/* Does the retention turn run: rows to prune, or to archive? */
static bool
maint_prunes(const skipq_worker *w)
{
    return w->cfg->retention_ms > 0 || w->cfg->archive_after_ms > 0;
}

/* Batches of stmt (skipq.prune or skipq.archive; n parameters v) while
 * each is full, for at most PRUNE_BUDGET_MS. *behind: the budget ran out
 * with rows left. Returns false when a batch failed (logged). */
static bool
batches(skipq_worker *w, PGconn *pg, skipq__stmt_id stmt, int n, const char *const *v,
        bool *behind)
{
    skipq_error e;
    PGresult *res;

    for (int64_t t0 = skipq__now_ms();;) {
        if (maint_exec(pg, stmt, n, v, &res, &e) != SKIPQ_OK) {
            skipq__log(maint_stopping(w) ? SKIPQ_LOG_DEBUG : SKIPQ_LOG_WARN,
                       "retention: %s", e.message);
            return false;
        }
        long done = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        if (done < PRUNE_BATCH)
            return true;
        if (skipq__now_ms() - t0 >= PRUNE_BUDGET_MS) {
            *behind = true;
            return true;
        }
    }
}

/* Drop the archive's partitions that ended retention ago, one per
 * transaction, at most ARCHIVE_DROPS. */
static void
drop_partitions(skipq_worker *w, PGconn *pg, const char *kept)
{
    skipq_error e;
    PGresult *res;
    const char *v[1] = {kept};

    for (int i = 0; i < ARCHIVE_DROPS; i++) {
        if (maint_exec(pg, SKIPQ__STMT_ARCHIVE_DROP, 1, v, &res, &e) != SKIPQ_OK) {
            skipq__log(maint_stopping(w) ? SKIPQ_LOG_DEBUG : SKIPQ_LOG_WARN,
                       "retention: dropping the archive's oldest partition: %s", e.message);
            return;
        }
        bool none = PQgetisnull(res, 0, 0);
        if (!none)
            skipq__log(SKIPQ_LOG_INFO, "retention: dropped archive partition skipq.%s",
                       PQgetvalue(res, 0, 0));
        PQclear(res);
        if (none)
            return;
    }
}

static bool
prune_tick(skipq_worker *w, PGconn **pgp)
{
    PGconn *pg = *pgp;
    bool behind = false;
    bool archive = w->cfg->archive_after_ms > 0, keep = w->cfg->retention_ms > 0;
    char after[32], width[32], batch[16], kept[32];

    snprintf(after, sizeof after, "%lld milliseconds", (long long)w->cfg->archive_after_ms);
    snprintf(width, sizeof width, "%lld milliseconds",
             (long long)w->cfg->archive_partition_ms);
    snprintf(kept, sizeof kept, "%lld milliseconds", (long long)w->cfg->retention_ms);
    snprintf(batch, sizeof batch, "%d", PRUNE_BATCH);
    const char *prune_v[2] = {kept, batch};
    const char *archive_v[3] = {after, width, batch};
    /* Through a pooler with no direct connection a session lock would stay
     * on a server session others use: every such worker prunes, which
     * SKIP LOCKED makes safe, only less economical. */
    bool locked = !maint_pooled(w);
    bool mine = !locked || maint_yes(pg, SKIPQ__STMT_RETENTION_LOCK);
    if (!mine) {
        maint_lost(pgp, "retention");
        return false;
    }
    /* An archive that fails (no grant, a lock held) leaves rows older than
     * retention to the prune, as without the archive: skipq.jobs stays
     * bounded by retention at worst (test
     * archive.failing_archive_falls_back_to_prune). */
    bool moved = archive && batches(w, pg, SKIPQ__STMT_ARCHIVE, 3, archive_v, &behind);
    if (keep && !moved)
        (void)batches(w, pg, SKIPQ__STMT_PRUNE, 2, prune_v, &behind);
    if (archive && keep)
        drop_partitions(w, pg, kept);
    /* a failure here is a lost connection, seen below */
    if (locked)
        (void)maint_yes(pg, SKIPQ__STMT_RETENTION_UNLOCK);
    maint_lost(pgp, "retention");
    return behind;
}

/*
 * Vacuum: autovacuum visits a database at most once per
 * autovacuum_naptime (1 min by default), and a busy queue leaves three
 * dead row versions per job (insert, claim, completion) plus the rows
 * retention deletes. With autovacuum alone, a busy table outgrows the
 * server's buffers and every prune batch and claim then reads and evicts
 * pages (docs/performance.md, "Vacuum"). So the maintenance
 * connection vacuums the table itself, one worker at a time, at most
 * once per vacuum_interval, when at least VACUUM_MIN_DEAD dead versions
 * (and 2% of the live rows, the table's autovacuum scale factor) more
 * than its last vacuum left wait, no vacuum ended within the interval
 * and nothing holds the table's vacuum lock. Only a role that may
 * vacuum the table does (its owner, the database's, a superuser; from
 * PostgreSQL 17 also MAINTAIN); the others leave it to autovacuum.
 *
 * Unlike autovacuum, a VACUUM we run does not give way to DDL: a
 * CREATE TRIGGER or ALTER TABLE would wait for it, and every write to
 * the table behind that. `skipq migrate` therefore takes the vacuum's
 * advisory lock before its DDL (lock_migrations, src/conn.c). The
 * vacuum does not truncate the table's empty tail either: that takes an
 * exclusive lock that stops the claims, and autovacuum still does it.
 */
enum { VACUUM_CHECK_MS = 2000, VACUUM_MIN_DEAD = 10000 };

/* 1 when this connection's role may vacuum skipq.jobs, 0 when not, -1
 * when it could not tell (logged). */
static int
vacuum_permitted(PGconn *pg)
{
    PGresult *res = NULL;
    skipq__stmt_run(pg, true,
                    PQserverVersion(pg) >= 170000 ? SKIPQ__STMT_VACUUM_PERMITTED
                                                  : SKIPQ__STMT_VACUUM_PERMITTED_16,
                    NULL, 0, NULL, &res);
    int ok = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        ok = PQgetvalue(res, 0, 0)[0] == 't';
    else {
        skipq_error e;
        skipq__db_fail(&e, pg, res, "could not tell whether it may vacuum skipq.jobs");
        skipq__log(SKIPQ_LOG_WARN, "vacuum: %s", e.message);
    }
    PQclear(res);
    return ok;
}

/* Between vacuum turns: what the last vacuum left, and how long to wait
 * after one that removed almost nothing. */
typedef struct vacuum_state {
    long long left;     /* dead row versions our last vacuum left */
    int64_t backoff_ms; /* 0, or the wait after a vacuum that removed little */
} vacuum_state;

enum { VACUUM_BACKOFF_MAX_MS = 600000 };

/* The dead row versions of skipq.jobs, -1 on error (logged). *due:
 * whether to vacuum now, given what the last vacuum left (vs->left). */
static long long
vacuum_due(skipq_worker *w, PGconn *pg, vacuum_state *vs, bool *due)
{
    char interval[32], left[24], min_dead[16];
    const char *v[3] = {interval, left, min_dead};
    skipq_error e;
    PGresult *res;

    snprintf(interval, sizeof interval, "%lld milliseconds",
             (long long)w->cfg->vacuum_interval_ms);
    snprintf(left, sizeof left, "%lld", vs->left);
    snprintf(min_dead, sizeof min_dead, "%d", VACUUM_MIN_DEAD);
    /* What a vacuum could not remove (an old snapshot holds it: a long
     * transaction, pg_dump, a replication slot) is still counted dead, so
     * only what came after counts (unless someone vacuumed since: then
     * fewer are dead than we left). pg_locks, read only when the rest
     * says yes: any vacuum, analyze or index build on the table holds
     * ShareUpdateExclusiveLock, and unlike pg_stat_progress_vacuum every
     * role sees autovacuum's there. */
    *due = false;
    if (maint_exec(pg, SKIPQ__STMT_VACUUM_DUE, 3, v, &res, &e) != SKIPQ_OK) {
        skipq__log(maint_stopping(w) ? SKIPQ_LOG_DEBUG : SKIPQ_LOG_WARN, "vacuum: %s",
                   e.message);
        return -1;
    }
    long long dead = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    *due = PQgetvalue(res, 0, 1)[0] == 't';
    PQclear(res);
    if (dead < vs->left) { /* someone (autovacuum) vacuumed since */
        vs->left = 0;
        vs->backoff_ms = 0;
    }
    return dead;
}

/*
 * One turn, under the vacuum lock. Returns how long to wait before the
 * next: VACUUM_CHECK_MS; a whole interval after a failure (no warning
 * every 2 s, no table scanned again and again); longer and longer after
 * vacuums that removed less than they were run for, while an old
 * snapshot holds the dead rows (a busy queue piles up enough new ones
 * within an interval, and each vacuum would scan the table for nothing).
 */
static int64_t
vacuum_tick(skipq_worker *w, PGconn **pgp, vacuum_state *vs)
{
    PGconn *pg = *pgp;
    skipq_error e;
    int64_t wait = VACUUM_CHECK_MS;
    bool due = false;

    bool mine = maint_yes(pg, SKIPQ__STMT_VACUUM_LOCK);
    if (!mine) { /* another worker's turn, or migrate's */
        maint_lost(pgp, "vacuum");
        return wait;
    }
    /* checked under the lock: a vacuum that just ended shows in the
     * statistics before its worker lets the lock go (PostgreSQL 15 and
     * later; before, the statistics lag by up to half a second) */
    long long dead = vacuum_due(w, pg, vs, &due);
    if (dead < 0) {
        wait = w->cfg->vacuum_interval_ms;
    } else if (due) {
        int64_t t0 = skipq__now_ms();
        w->maint.skipped = false;
        /* no statement_timeout of the role's: a cancelled vacuum keeps
         * little of its work, and would be tried again and again */
        bool ok = maint_exec(pg, SKIPQ__STMT_NO_STATEMENT_TIMEOUT, 0, NULL, NULL, &e) ==
                  SKIPQ_OK;
        /* a stop's cancel that came before the VACUUM was sent is lost:
         * look once more (maint_stop also sends it again) */
        if (ok && !maint_stopping(w))
            ok = maint_exec(pg, SKIPQ__STMT_VACUUM, 0, NULL, NULL, &e) == SKIPQ_OK;
        if (!ok) {
            skipq__log(maint_stopping(w) ? SKIPQ_LOG_DEBUG : SKIPQ_LOG_WARN, "vacuum: %s",
                       e.message);
            wait = w->cfg->vacuum_interval_ms;
        } else if (maint_stopping(w) || w->maint.skipped) {
            /* not run, or autovacuum took the table first */
            skipq__log(SKIPQ_LOG_DEBUG, "vacuum: skipped this turn");
        } else {
            long long before = dead, need = before - vs->left;
            bool again;
            if ((dead = vacuum_due(w, pg, vs, &again)) >= 0) {
                vs->left = dead;
                if (before - dead < need / 2) { /* it removed little */
                    vs->backoff_ms = vs->backoff_ms ? vs->backoff_ms * 2
                                                    : 2 * w->cfg->vacuum_interval_ms;
                    if (vs->backoff_ms > VACUUM_BACKOFF_MAX_MS)
                        vs->backoff_ms = VACUUM_BACKOFF_MAX_MS;
                    wait = vs->backoff_ms;
                    skipq__log(
                        SKIPQ_LOG_INFO,
                        "vacuum removed %lld of %lld dead row versions"
                        " of skipq.jobs: an old snapshot still needs them (a long"
                        " transaction, pg_dump, a replication slot); next try in %lld s",
                        before - dead, before, (long long)(wait / 1000));
                } else {
                    vs->backoff_ms = 0;
                }
            }
            skipq__log(SKIPQ_LOG_DEBUG,
                       "vacuumed skipq.jobs in %lld ms: %lld dead row"
                       " versions before, %lld left",
                       (long long)(skipq__now_ms() - t0), before, dead);
        }
        /* a failure here is a lost connection, seen below */
        (void)maint_yes(pg, SKIPQ__STMT_RESET_STATEMENT_TIMEOUT);
    }
    /* a failure here is a lost connection, seen below */
    (void)maint_yes(pg, SKIPQ__STMT_VACUUM_UNLOCK);
    maint_lost(pgp, "vacuum");
    return wait;
}

/* What the server says on the maintenance connection goes to the log, not
 * to stderr; VACUUM (SKIP_LOCKED)'s "lock not available" is expected, and
 * tells vacuum_tick that it skipped. Runs on the maintenance thread. */
static void
maint_notice(void *arg, const PGresult *res)
{
    skipq_worker *w = arg;
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    bool skipped = state && strcmp(state, "55P03") == 0;
    if (skipped)
        w->maint.skipped = true;
    /* only warnings reach us (client_min_messages), but libpq's own
     * notices have no severity and are worth seeing */
    bool quiet = skipped || (sev && strcmp(sev, "WARNING") != 0);
    skipq__log(quiet ? SKIPQ_LOG_DEBUG : SKIPQ_LOG_WARN, "maintenance: %s",
               msg ? msg : PQresultErrorMessage(res));
}

/* Wait on maint_cv (maint_mu held) until until_ms at most. */
static void
maint_wait_until(skipq_worker *w, int64_t until_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t left = until_ms - skipq__now_ms();
    if (left <= 0)
        return;
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (left % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&w->maint.cv, &w->maint.mu, &ts);
}

/* Open the maintenance connection (NULL: could not, logged), and make it
 * the one maint_stop cancels. */
static PGconn *
maint_connect(skipq_worker *w)
{
    PGconn *pg = NULL;
    PGcancel *cancel = NULL;
    skipq_error e;
    /* behind a pooler, the direct connection where there is one: the
     * turns below take session locks */
    skipq_rc rc = skipq__connect(w->cfg->listen_database ? w->cfg->listen_database
                                                         : w->database,
                                 &pg, &e);
    if (rc == SKIPQ_OK) {
        PQsetNoticeReceiver(pg, maint_notice, w);
        rc = maint_exec(pg, SKIPQ__STMT_MAINT_SETTINGS, 0, NULL, NULL, &e);
    }
    if (rc == SKIPQ_OK && !(cancel = PQgetCancel(pg)))
        rc = skipq__fail(&e, SKIPQ_ERR_NOMEM, "out of memory");
    if (rc != SKIPQ_OK) {
        skipq__log(SKIPQ_LOG_WARN, "worker %lld maintenance could not connect: %s",
                   (long long)w->sess.id, e.message);
        if (pg)
            PQfinish(pg);
        return NULL;
    }
    pthread_mutex_lock(&w->maint.mu);
    w->maint.cancel = cancel;
    pthread_mutex_unlock(&w->maint.mu);
    return pg;
}

/* Close it (NULL: nothing to do). */
static void
maint_disconnect(skipq_worker *w, PGconn *pg)
{
    pthread_mutex_lock(&w->maint.mu);
    PGcancel *cancel = w->maint.cancel;
    w->maint.cancel = NULL;
    pthread_mutex_unlock(&w->maint.mu);
    if (cancel)
        PQfreeCancel(cancel);
    if (pg)
        PQfinish(pg);
}

/*
 * The maintenance thread: the schedules' tick (worker_schedule.c), the
 * rescuer every min(lease / 2, heartbeat), retention, and the table's
 * vacuum, on a connection of its own. On the
 * claiming connection the rescuer's and retention's scans would stop the
 * claims while they ran, and the executors would run dry. Here they run
 * beside the claims, on the server's other cores. The test
 * prune_in_batches_does_not_stall_a_worker guards it.
 * A lost connection is opened again at the next turn (after a growing
 * pause while it fails). All signals are blocked on this thread.
 */
static void *
maintenance(void *arg)
{
    skipq_worker *w = arg;
    PGconn *pg = NULL;
    int64_t now = skipq__now_ms();
    int64_t next_rescue = now + 1000, next_prune = now + 5000, next_connect = now;
    int64_t next_tick = now; /* schedules: skipq__schedule_tick says when */
    /* not at once: a worker started for a burst leaves its vacuum to
     * the time after it, as autovacuum's naptime would, and workers
     * restarted together do not all look at once */
    int64_t next_vacuum = now + w->cfg->vacuum_interval_ms;
    int64_t connect_delay = 100;
    /* per connection: vacuum_permitted(); never through a pooler with no
     * direct connection (its lock is a session's): autovacuum alone */
    int may_vacuum = maint_pooled(w) ? 0 : -1;
    vacuum_state vacuum = {0};
    bool said_vacuum = false;
    int64_t rescue_every = skipq__min64(w->cfg->lease_timeout_ms / 2,
                                        w->cfg->heartbeat_interval_ms);

    pthread_mutex_lock(&w->maint.mu);
    while (!w->maint.quit) {
        int64_t due = skipq__min64(next_rescue, next_tick);
        if (maint_prunes(w) && next_prune < due)
            due = next_prune;
        if (w->cfg->vacuum_interval_ms > 0 && may_vacuum != 0 && next_vacuum < due)
            due = next_vacuum;
        if (!pg && next_connect > due)
            due = next_connect;
        if (skipq__now_ms() < due) {
            maint_wait_until(w, due);
            continue;
        }
        pthread_mutex_unlock(&w->maint.mu);
        now = skipq__now_ms();
        if (!pg && !(pg = maint_connect(w))) {
            next_connect = now + connect_delay;
            connect_delay = skipq__min64(connect_delay * 2, 5000);
        } else {
            connect_delay = 100;
            if (now >= next_tick) {
                next_tick = skipq__now_ms() + skipq__schedule_tick(pg, maint_stopping(w));
                maint_lost(&pg, "schedules");
            }
            if (pg && now >= next_rescue) {
                rescue(w, &pg);
                next_rescue = now + rescue_every;
            }
            if (pg && maint_prunes(w) && now >= next_prune) {
                /* behind: the next turn at once, after the rescuer's if due */
                next_prune = prune_tick(w, &pg) ? skipq__now_ms()
                                                : skipq__now_ms() + PRUNE_EVERY_MS;
            }
            if (pg && w->cfg->vacuum_interval_ms > 0 && may_vacuum != 0 &&
                now >= next_vacuum) {
                if (may_vacuum < 0 && (may_vacuum = vacuum_permitted(pg)) == 0 &&
                    !said_vacuum) {
                    skipq__log(SKIPQ_LOG_INFO,
                               "vacuum: this role may not vacuum skipq.jobs,"
                               " so autovacuum alone keeps it (docs/operations.md)");
                    said_vacuum = true;
                }
                /* -1, could not tell: a failure, tried again after an interval */
                int64_t wait = may_vacuum == 0 ? VACUUM_CHECK_MS
                                               : w->cfg->vacuum_interval_ms;
                if (may_vacuum > 0)
                    wait = vacuum_tick(w, &pg, &vacuum);
                else
                    maint_lost(&pg, "vacuum");
                next_vacuum = skipq__now_ms() + wait;
            }
            if (!pg) { /* lost: both turns again once it is back */
                maint_disconnect(w, NULL);
                next_connect = skipq__now_ms() + connect_delay;
                next_rescue = skipq__min64(next_rescue, next_connect);
                next_prune = skipq__min64(next_prune, next_connect);
                next_tick = skipq__min64(next_tick, next_connect);
                may_vacuum = maint_pooled(w) ? 0 : -1;
            }
        }
        pthread_mutex_lock(&w->maint.mu);
    }
    pthread_mutex_unlock(&w->maint.mu);
    maint_disconnect(w, pg);
    pthread_mutex_lock(&w->maint.mu);
    w->maint.done = true;
    pthread_cond_broadcast(&w->maint.cv);
    pthread_mutex_unlock(&w->maint.mu);
    return NULL;
}

skipq_rc
skipq__maint_start(skipq_worker *w, skipq_error *err)
{
    pthread_condattr_t ca;
    sigset_t all, old;
    int rc;

    if (pthread_mutex_init(&w->maint.mu, NULL) != 0)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "could not start the maintenance thread");
    rc = pthread_condattr_init(&ca);
    if (rc == 0) {
        rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        if (rc == 0)
            rc = pthread_cond_init(&w->maint.cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (rc != 0) {
        pthread_mutex_destroy(&w->maint.mu);
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "could not start the maintenance thread");
    }
    w->maint.quit = false;
    w->maint.done = false;
    w->maint.cancel = NULL;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&w->maint.thread, NULL, maintenance, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&w->maint.cv);
        pthread_mutex_destroy(&w->maint.mu);
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "could not start the maintenance thread");
    }
    w->maint.started = true;
    return SKIPQ_OK;
}

void
skipq__maint_stop(skipq_worker *w)
{
    if (!w->maint.started)
        return;
    pthread_mutex_lock(&w->maint.mu);
    w->maint.quit = true;
    pthread_cond_broadcast(&w->maint.cv);
    /* A scan, a vacuum or a lock wait must not hold up the stop. A cancel
     * that reaches the server between two statements is lost, so it is
     * sent again until the thread is done. */
    while (!w->maint.done) {
        if (w->maint.cancel) {
            char buf[256];
            PQcancel(w->maint.cancel, buf, sizeof buf); /* best effort */
        }
        maint_wait_until(w, skipq__now_ms() + 200);
    }
    pthread_mutex_unlock(&w->maint.mu);
    pthread_join(w->maint.thread, NULL);
    pthread_cond_destroy(&w->maint.cv);
    pthread_mutex_destroy(&w->maint.mu);
    w->maint.started = false;
}
