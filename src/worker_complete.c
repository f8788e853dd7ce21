/*
 * worker_complete.c - the jobs this worker holds, from claim to the row
 * written: the held list, an outcome turned into the row's next state,
 * batched completions (sent by the cycle, worker_claim.c), completing one
 * job at a time behind a row lock, and putting rows back: the hand-back
 * of unfinished or unstarted jobs, and the reconcile after a reconnect.
 *
 * Guarantees kept here:
 *  - a completion matches only the claim it belongs to (locked_by = us
 *    and claims = the token of that claim), so a job the rescuer took
 *    away is never completed by us (0 rows: logged, not retried);
 *  - a lost connection loses nothing: finished results wait in memory
 *    (jobs.pending), and after reconnecting we put back rows still marked
 *    ours that we never received (a claim whose reply was lost);
 *  - on stop, unfinished jobs go back to queued with the attempt handed
 *    back.
 */
#include "worker.h"

#include <libpqtypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- held list -------------------------------------------------------------- */

void
skipq__held_add(worker_jobs *jobs, skipq_job *j)
{
    j->hprev = NULL;
    j->hnext = jobs->held;
    if (jobs->held)
        jobs->held->hprev = j;
    jobs->held = j;
    jobs->nheld++;
}

void
skipq__held_remove(worker_jobs *jobs, skipq_job *j)
{
    if (j->hprev)
        j->hprev->hnext = j->hnext;
    else
        jobs->held = j->hnext;
    if (j->hnext)
        j->hnext->hprev = j->hprev;
    jobs->nheld--;
}

skipq_job *
skipq__held_find(const worker_jobs *jobs, int64_t id)
{
    for (skipq_job *j = jobs->held; j; j = j->hnext)
        if (j->id == id)
            return j;
    return NULL;
}

/* ---- outcome to row --------------------------------------------------------- */

/* Decide the row's next state from the outcome (and note it in
 * j->decided, for the metrics once the completion committed). */
static const char *
next_status(skipq_worker *w, skipq_job *j, int64_t *delay_ms, int *handback)
{
    *delay_ms = 0;
    *handback = 0;
    switch (j->outcome) {
    case SKIPQ_JOB_OK:
        j->decided = SKIPQ__DONE_SUCCEEDED;
        return "succeeded";
    case SKIPQ_JOB_SNOOZE:
        *delay_ms = j->snooze_ms;
        *handback = 1;
        j->decided = SKIPQ__DONE_SNOOZED;
        return "queued";
    case SKIPQ_JOB_CANCELLED:
        j->decided = SKIPQ__DONE_CANCELLED;
        return "cancelled";
    case SKIPQ_JOB_FAIL_PERMANENT: /* attempts left or not */
        j->decided = SKIPQ__DONE_FAILED;
        return "failed";
    case SKIPQ_JOB_ERROR:
    default:
        break;
    }
    int max = j->max_attempts > 0 ? j->max_attempts : w->cfg->max_attempts;
    j->decided = j->attempt >= max ? SKIPQ__DONE_FAILED : SKIPQ__DONE_RETRIED;
    if (j->attempt >= max)
        return "failed";
    w->jobs.rand_state = w->jobs.rand_state * 1103515245u + 12345u;
    double r = (double)((w->jobs.rand_state >> 8) & 0xFFFFFF) / (double)0x1000000;
    skipq_backoff strategy = j->has_backoff ? j->backoff : w->cfg->backoff;
    *delay_ms = skipq_backoff_ms(strategy, j->backoff_base_ms, j->backoff_max_ms,
                                 w->cfg->jitter, j->attempt, r);
    return "queued";
}

/* The completion statement's parameters for the finished jobs of list:
 * per job its id, claim token, next status, result, error, retry delay
 * and whether the attempt is handed back. NULL when out of memory. */
PGparam *
skipq__completion_param(skipq_worker *w, skipq_job *list)
{
    PGparam *a[7] = {0};
    PGarray arr[7];
    PGparam *prm = PQparamCreate(w->sess.pg);
    bool ok = prm != NULL;

    memset(arr, 0, sizeof arr);
    for (int i = 0; i < 7; i++)
        ok = ok && (a[i] = PQparamCreate(w->sess.pg)) != NULL;
    for (skipq_job *j = list; ok && j; j = j->next) {
        int64_t delay;
        int handback;
        const char *st = next_status(w, j, &delay, &handback);
        ok = PQputf(a[0], "%int8", (PGint8)j->id) &&
             PQputf(a[1], "%int4", (PGint4)j->claim_token) && PQputf(a[2], "%text", st) &&
             PQputf(a[3], "%text", strcmp(st, "succeeded") == 0 ? j->result : NULL) &&
             PQputf(a[4], "%text",
                    j->outcome == SKIPQ_JOB_OK || j->outcome == SKIPQ_JOB_SNOOZE
                        ? NULL
                        : j->error) &&
             PQputf(a[5], "%int8", (PGint8)delay) &&
             PQputf(a[6], "%int4", (PGint4)handback);
    }
    for (int i = 0; i < 7; i++)
        arr[i].param = a[i];
    ok = ok &&
         PQputf(prm, "%int8[] %int8 %int4[] %text[] %text[] %text[] %int8[] %int4[] %text",
                &arr[0], (PGint8)w->sess.id, &arr[1], &arr[2], &arr[3], &arr[4], &arr[5],
                &arr[6], w->sess.secret);
    for (int i = 0; i < 7; i++)
        if (a[i])
            PQparamClear(a[i]);
    if (!ok && prm) {
        PQparamClear(prm);
        prm = NULL;
    }
    return prm;
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The completion committed: log, forget the jobs. A job whose row did not
 * match was taken from us meanwhile (rescued, recovered). */
void
skipq__finish_jobs(skipq_worker *w, skipq_job *list, PGresult *res)
{
    int n = res ? PQntuples(res) : 0;
    int64_t *ids = calloc((size_t)n + 1, sizeof *ids);
    for (int r = 0; ids && r < n; r++)
        ids[r] = strtoll(PQgetvalue(res, r, 0), NULL, 10);
    if (ids)
        qsort(ids, (size_t)n, sizeof *ids, cmp_i64);
    for (skipq_job *j = list, *next; j; j = next) {
        next = j->next;
        bool matched = !ids || bsearch(&j->id, ids, (size_t)n, sizeof *ids, cmp_i64);
        if (matched && w->metrics) /* committed: the table has it now */
            skipq__metrics_note_done(w->metrics, j);
        if (!matched) {
            skipq__log_job(SKIPQ_LOG_WARN, "lost", j,
                           "job %lld was no longer held by worker %lld (rescued or "
                           "recovered meanwhile); its result is dropped",
                           (long long)j->id, (long long)w->sess.id);
        } else {
            switch (j->outcome) {
            case SKIPQ_JOB_OK:
                skipq__log_job(SKIPQ_LOG_INFO, "succeeded", j,
                               "job %lld succeeded (%s, %.0f ms)", (long long)j->id,
                               j->kind, j->duration_ms);
                break;
            case SKIPQ_JOB_SNOOZE:
                skipq__log_job(SKIPQ_LOG_INFO, "snoozed", j, "job %lld snoozed for %lld ms",
                               (long long)j->id, (long long)j->snooze_ms);
                break;
            case SKIPQ_JOB_CANCELLED:
                skipq__log_job(SKIPQ_LOG_INFO, "cancelled", j, "job %lld cancelled",
                               (long long)j->id);
                break;
            case SKIPQ_JOB_FAIL_PERMANENT:
                skipq__log_job(SKIPQ_LOG_INFO, "failed", j,
                               "job %lld failed permanently: %s", (long long)j->id,
                               j->error ? j->error : "");
                break;
            default:
                skipq__log_job(SKIPQ_LOG_INFO, "failed", j,
                               "job %lld attempt %d failed: %s", (long long)j->id,
                               j->attempt, j->error ? j->error : "");
            }
        }
        skipq__held_remove(&w->jobs, j);
        skipq__job_free(j);
    }
    free(ids);
}

/* Put a list of finished jobs back on jobs->pending, to be written later. */
void
skipq__keep_pending(worker_jobs *jobs, skipq_job *list)
{
    if (!list)
        return;
    skipq_job *last = list;
    while (last->next)
        last = last->next;
    last->next = jobs->pending;
    jobs->pending = list;
}

/* Take the finished jobs whose completion may be written now off
 * jobs->pending; those waiting out a row lock stay. */
skipq_job *
skipq__take_due_pending(worker_jobs *jobs, int64_t now)
{
    skipq_job *due = NULL, **dt = &due, **pp = &jobs->pending;
    while (*pp) {
        skipq_job *j = *pp;
        if (j->complete_after_ms > now) {
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        j->next = NULL;
        *dt = j;
        dt = &j->next;
    }
    return due;
}

/* When the next completion on jobs->pending may be tried (INT64_MAX: none). */
int64_t
skipq__pending_due_ms(const worker_jobs *jobs)
{
    int64_t at = INT64_MAX;
    for (const skipq_job *j = jobs->pending; j; j = j->next)
        at = skipq__min64(at, j->complete_after_ms);
    return at;
}

/*
 * A completion waited for a row lock for longer than the connection's
 * lock_timeout (an operator's open transaction on one job's row): the
 * whole batch and its claim rolled back. Write the batch one job at a
 * time instead, so only the job whose row is locked waits, and try that
 * one again after a growing pause, with claims and heartbeats going on
 * meanwhile (test a_row_lock_on_one_job_delays_only_that_job).
 */
void
skipq__complete_singly(skipq_worker *w)
{
    skipq_job *list = w->jobs.pending;
    w->jobs.pending = NULL;
    for (skipq_job *j = list, *next; j; j = next) {
        next = j->next;
        j->next = NULL;
        if (!w->sess.pg) {
            skipq__keep_pending(&w->jobs, j);
            continue;
        }
        if (skipq__complete_only(w, j) >= 0)
            continue;
        if (w->claim.lock_timed_out) { /* back on w->jobs.pending: not before long */
            int shift = j->complete_tries < 4 ? j->complete_tries : 4;
            j->complete_tries++;
            j->complete_after_ms = skipq__now_ms() +
                                   skipq__min64((int64_t)500 << shift, 10000);
            skipq__log_job(SKIPQ_LOG_WARN, "completion_waits", j,
                           "job %lld: its row is locked by another session; its completion "
                           "is tried again in %lld ms",
                           (long long)j->id,
                           (long long)(j->complete_after_ms - skipq__now_ms()));
        }
    }
}

/* ---- putting rows back ---------------------------------------------------- */

/*
 * After a reconnect, in one statement, against the jobs we hold (id and
 * claim token):
 *
 * - rows still running under our id that we do not hold are claims whose
 *   reply never reached us. Their handlers never started, so they go
 *   back with the attempt handed back;
 * - jobs we hold whose row is no longer ours by the same token. Most were
 *   taken away (rescued, recovered) and their completion would match
 *   nothing anyway, but a claim committed asynchronously and lost in a
 *   server crash rolled `claims` back, and a new claim of that row by this
 *   worker (same id) would carry the same token: the old run's completion
 *   would then finish the new claim while its handler runs. Their token is
 *   spoiled here, before any new claim, so their completion matches no
 *   row and is reported lost.
 *
 * The two sets are disjoint (rows we do not hold, rows we hold), so the
 * check reading the snapshot from before the UPDATE is exact.
 */
skipq_rc
skipq__reconcile(skipq_worker *w, skipq_error *err)
{
    PGparam *prm = PQparamCreate(w->sess.pg);
    PGparam *ids = PQparamCreate(w->sess.pg), *tokens = PQparamCreate(w->sess.pg);
    PGarray a_ids = {0}, a_tokens = {0};
    PGresult *res = NULL;
    skipq_rc rc = SKIPQ_OK;
    bool ok = prm && ids && tokens;
    int back = 0;

    for (skipq_job *j = w->jobs.held; ok && j; j = j->hnext)
        ok = PQputf(ids, "%int8", (PGint8)j->id) &&
             PQputf(tokens, "%int4", (PGint4)j->claim_token);
    a_ids.param = ids;
    a_tokens.param = tokens;
    if (!ok || !PQputf(prm, "%int8 %int8[] %int4[] %text", (PGint8)w->sess.id, &a_ids,
                       &a_tokens, w->sess.secret)) {
        rc = skipq__fail(err, SKIPQ_ERR_NOMEM, "could not build parameters: %s",
                         PQgeterror());
        goto out;
    }
    if (!skipq__stmt_run(w->sess.pg, w->sess.send, SKIPQ__STMT_RECONCILE, prm, 0, NULL,
                         &res) ||
        PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = skipq__db_fail(err, w->sess.pg, res, "could not reconcile running jobs");
        goto out;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        if (strcmp(PQgetvalue(res, r, 0), "t") == 0) {
            back++;
            continue;
        }
        skipq_job *j = skipq__held_find(&w->jobs, strtoll(PQgetvalue(res, r, 1), NULL, 10));
        if (!j || j->claim_token < 0)
            continue;
        j->claim_token = -1; /* claims is never negative in the table */
        skipq__log(SKIPQ_LOG_WARN,
                   "job %lld is no longer held by worker %lld after the reconnect; "
                   "its result will be dropped",
                   (long long)j->id, (long long)w->sess.id);
    }
    if (back > 0)
        skipq__log(SKIPQ_LOG_WARN,
                   "worker %lld put back %d jobs claimed while its connection "
                   "was failing",
                   (long long)w->sess.id, back);
out:
    PQclear(res);
    if (prm)
        PQparamClear(prm);
    if (ids)
        PQparamClear(ids);
    if (tokens)
        PQparamClear(tokens);
    return rc;
}

/* Take the jobs no executor has started out of the pool and put their
 * rows back (not counted as attempts). Those that could not be put back
 * return to the pool, or, when stopping, stay held as done: the rescuer
 * finds the rows once our lock is gone. Returns how many went back. */
int
skipq__pull_unstarted(skipq_worker *w, bool stopping)
{
    skipq_job *unstarted = skipq__pool_take_ready(&w->pool);
    skipq_job *keep = NULL, **tail = &keep;
    int n = 0;

    if (!unstarted)
        return 0;
    for (skipq_job *j = unstarted; j; j = j->next)
        j->pulled = true;
    if (w->sess.pg)
        skipq__hand_back_rows(w, true);
    for (skipq_job *j = unstarted, *next; j; j = next) {
        next = j->next;
        j->next = NULL;
        j->pulled = false;
        if (j->handed_back) {
            skipq__held_remove(&w->jobs, j);
            skipq__job_free(j);
            n++;
        } else if (stopping) {
            j->done = true;
        } else {
            j->claimed_ms = skipq__now_ms(); /* next check in SKIPQ__AUTO_STALE_MS */
            *tail = j;
            tail = &j->next;
        }
    }
    skipq__pool_push(&w->pool, keep);
    return n;
}

/* Put back jobs we hold that are not finished (with only_pulled, those
 * taken back unstarted from the pool): not counted as attempts, their
 * run_at (their place in the queue) kept, and a NOTIFY so idle workers
 * take them at once. Jobs are marked handed_back only when the statement
 * ran: the rows it did not match were no longer ours. When it failed they
 * stay held and ours. */
void
skipq__hand_back_rows(skipq_worker *w, bool only_pulled)
{
    PGparam *prm, *ids, *tok;
    PGarray a = {0}, b = {0};
    int n = 0;

    if (skipq__session_broken(&w->sess))
        return; /* the rescuer will find them: our lock dies with us */
    prm = PQparamCreate(w->sess.pg);
    ids = PQparamCreate(w->sess.pg);
    tok = PQparamCreate(w->sess.pg);
    bool ok = prm && ids && tok;
    for (skipq_job *j = w->jobs.held; ok && j; j = j->hnext) {
        if (j->done || j->handed_back || (only_pulled && !j->pulled) ||
            atomic_load(&j->finished))
            continue;
        ok = PQputf(ids, "%int8", (PGint8)j->id) &&
             PQputf(tok, "%int4", (PGint4)j->claim_token);
        n++;
    }
    a.param = ids;
    b.param = tok;
    if (ok && n > 0 &&
        PQputf(prm, "%int8[] %int4[] %int8 %text", &a, &b, (PGint8)w->sess.id,
               w->sess.secret)) {
        PGresult *res = NULL;
        skipq__stmt_run(w->sess.pg, w->sess.send, SKIPQ__STMT_HAND_BACK, prm, 0, NULL,
                        &res);
        if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
            for (skipq_job *j = w->jobs.held; j; j = j->hnext)
                if (!j->done && !j->handed_back && (!only_pulled || j->pulled) &&
                    !atomic_load(&j->finished))
                    j->handed_back = true;
            skipq__log(SKIPQ_LOG_INFO, "worker %lld handed back %d unfinished jobs",
                       (long long)w->sess.id, PQntuples(res));
        } else {
            skipq__log(SKIPQ_LOG_WARN, "could not hand back jobs: %s",
                       PQerrorMessage(w->sess.pg));
        }
        PQclear(res);
    }
    if (prm)
        PQparamClear(prm);
    if (ids)
        PQparamClear(ids);
    if (tok)
        PQparamClear(tok);
}

/*
 * At the end of a shutdown that could not write everything (the database
 * is unreachable, or a row stays locked): name each job whose result was
 * not recorded or that could not be handed back. Their rows stay running
 * under this worker, and the rescuer puts them back once its lease runs
 * out, so they run again; an operator must hear that rather than see a
 * clean exit (test shutdown_during_an_outage_names_unrecorded_jobs).
 * Returns how many.
 */
int
skipq__report_unrecorded(skipq_worker *w)
{
    int n = 0;
    for (skipq_job *j = w->jobs.pending; j; j = j->next, n++)
        skipq__log_job(
            SKIPQ_LOG_ERROR, "unrecorded", j,
            "job %lld finished (%s) but its result could not be written; it will "
            "be rescued and run again",
            (long long)j->id, j->outcome == SKIPQ_JOB_OK ? "succeeded" : "not succeeded");
    for (skipq_job *j = w->jobs.held; j; j = j->hnext) {
        if (j->done || j->handed_back)
            continue;
        skipq__log_job(SKIPQ_LOG_ERROR, "unrecorded", j,
                       "job %lld was stopped but could not be handed back; it will be "
                       "rescued and run again",
                       (long long)j->id);
        n++;
    }
    return n;
}
