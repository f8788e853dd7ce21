/*
 * worker_claim.c - claiming: what to claim, from where, and the cycle
 * that carries it.
 *
 * A cycle sends the completions of finished jobs (worker_complete.c) and
 * the next claim in one pipeline, which is one round trip and one
 * commit. Queues are claimed from in turn (the rotation), and within a
 * queue and priority band from where the last full claim ended (the
 * claim floor, worker.h).
 */
#include "worker.h"

#include <libpqtypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A failpoint that fires the first time only (test builds only). */
#ifdef SKIPQ_FAILPOINTS
static bool
failpoint_once(const char *name)
{
    static atomic_int fired;
    return skipq__failpoint(name) && atomic_exchange(&fired, 1) == 0;
}
#else
#define failpoint_once(name) false
#endif

static const handler *
find_handler(const skipq_worker *w, const char *kind)
{
    for (size_t i = 0; i < w->nhandlers; i++)
        if (strcmp(w->handlers[i].kind, kind) == 0)
            return &w->handlers[i];
    return NULL;
}

static char *
dupstr(const char *s)
{
    return strdup(s ? s : "");
}

static skipq_job *
job_from_row(skipq_worker *w, PGresult *res, int row)
{
    skipq_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->w = w;
    j->duration_ms = -1; /* not run yet: log events say -1, not 0 */
    j->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
    j->claim_token = (int32_t)strtol(PQgetvalue(res, row, 1), NULL, 10);
    j->kind = dupstr(PQgetvalue(res, row, 2));
    j->queue = dupstr(PQgetvalue(res, row, 3));
    j->priority = (int16_t)strtol(PQgetvalue(res, row, 4), NULL, 10);
    j->attempt = (int)strtol(PQgetvalue(res, row, 5), NULL, 10);
    j->payload_text = dupstr(PQgetvalue(res, row, 6));
    j->max_attempts = (int)strtol(PQgetvalue(res, row, 7), NULL, 10);
    const char *strategy = PQgetvalue(res, row, 8);
    int64_t base = strtoll(PQgetvalue(res, row, 9), NULL, 10);
    int64_t max = strtoll(PQgetvalue(res, row, 10), NULL, 10);
    j->has_backoff = strategy[0] != '\0';
    j->backoff = strcmp(strategy, "fixed") == 0    ? SKIPQ_BACKOFF_FIXED
                 : strcmp(strategy, "linear") == 0 ? SKIPQ_BACKOFF_LINEAR
                                                   : SKIPQ_BACKOFF_EXPONENTIAL;
    j->backoff_base_ms = base >= 0 ? base : w->cfg->backoff_base_ms;
    j->backoff_max_ms = max >= 0 ? max : w->cfg->backoff_max_ms;
    j->timeout_ms = strtoll(PQgetvalue(res, row, 11), NULL, 10);
    j->cancel_requested = PQgetvalue(res, row, 12)[0] == 't';
    if (!j->kind || !j->queue || !j->payload_text || failpoint_once("claim_oom")) {
        skipq__job_free(j);
        return NULL;
    }
    j->h = find_handler(w, j->kind);
    if (j->timeout_ms <= 0 && j->h)
        j->timeout_ms = j->h->timeout_ms;
    return j;
}

/* Parameters for one claim: queue qi, band bi, up to n rows, after the
 * floor fl (NULL: from the head). */
static PGparam *
claim_param(skipq_worker *w, size_t qi, size_t bi, int n, const claim_floor *fl)
{
    PGparam *prm = PQparamCreate(w->sess.pg);
    PGparam *kinds = PQparamCreate(w->sess.pg);
    PGarray arr = {0};
    bool ok = prm && kinds;

    for (size_t i = 0; ok && i < w->nhandlers; i++)
        if (!w->pauses.any || !skipq__kind_paused(w, qi, w->handlers[i].kind))
            ok = PQputf(kinds, "%text", w->handlers[i].kind) != 0;
    arr.param = kinds;
    ok = ok && PQputf(prm, "%text %int2 %int2 %text[] %int4 %int8", w->cfg->queues[qi],
                      (PGint2)w->bands[bi].lo, (PGint2)w->bands[bi].hi, &arr, (PGint4)n,
                      (PGint8)w->sess.id) != 0;
    if (fl)
        ok = ok && PQputf(prm, "%int2 %text %int8", (PGint2)fl->priority, fl->run_at,
                          (PGint8)fl->id) != 0;
    ok = ok && PQputf(prm, "%text", w->sess.secret) != 0;
    if (kinds)
        PQparamClear(kinds);
    if (!ok && prm) {
        PQparamClear(prm);
        prm = NULL;
    }
    return prm;
}

/*
 * Only on request (--log-payloads): the payload goes in its own field, so
 * the hook decides how to print it and msg never carries it.
 */
static void
log_claim_payload(const skipq_job *job)
{
    char msg[256];

    if (!skipq__log_enabled())
        return;
    snprintf(msg, sizeof msg, "job %lld claimed (%s, attempt %d)", (long long)job->id,
             job->kind, job->attempt);
    skipq_log_event ev = {
        .level = SKIPQ_LOG_INFO,
        .msg = msg,
        .event = "claimed",
        .job_id = job->id,
        .kind = job->kind,
        .queue = job->queue,
        .attempt = job->attempt,
        .duration_ms = -1,
        .payload = job->payload_text,
    };
    skipq__log_event(&ev);
}

/*
 * The pickup delay of a claimed job: from its run_at (column 13, the
 * session's DateStyle is ISO) to now, by this host's clock. run_at is
 * when a job became runnable: the enqueue's time unless it was delayed,
 * or the retry's due time. A clock behind the server's reads as 0.
 */
static void
note_pickup(skipq_worker *w, const skipq_job *j, PGresult *res, int row)
{
    struct timespec ts;
    int64_t run_at_us;

    if (!skipq__parse_iso_time(PQgetvalue(res, row, 13), &run_at_us))
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    skipq__metrics_note_pickup(w->metrics, j->queue, j->kind,
                               (double)(now_us - run_at_us) / 1e6);
}

/* Turn a claim result into held, ready jobs. Returns how many. */
static int
take_claimed(skipq_worker *w, PGresult *res, skipq_job **ready)
{
    int n = PQntuples(res);
    skipq_job **tail = ready; /* appended in claim order: the executors' order */
    while (*tail)
        tail = &(*tail)->next;
    for (int r = 0; r < n; r++) {
        skipq_job *j = job_from_row(w, res, r);
        if (!j) {
            /* Out of memory: the row stays running under our id until
             * skipq__reconcile() puts back what we hold no job for, at the next
             * turn of the loop; a live worker must not strand it (test
             * claimed_job_that_cannot_be_allocated_goes_back). */
            skipq__log(SKIPQ_LOG_ERROR, "out of memory taking claimed job %s; it goes back",
                       PQgetvalue(res, r, 0));
            w->sess.reconcile_due = true;
            continue;
        }
        j->claimed_ms = skipq__now_ms();
        skipq__held_add(&w->jobs, j);
        if (w->metrics)
            note_pickup(w, j, res, r);
        if (j->cancel_requested)
            atomic_store(&j->stop, 1);
        if (w->log_payloads)
            log_claim_payload(j);
        else
            skipq__log_job(SKIPQ_LOG_DEBUG, "claimed", j,
                           "job %lld claimed (%s, attempt %d)", (long long)j->id, j->kind,
                           j->attempt);
        j->next = NULL;
        *tail = j;
        tail = &j->next;
    }
    return n;
}

/* Claim parameters for queue qi and band bi in the rotation order. */
static size_t
queue_at(const skipq_worker *w, size_t k)
{
    return (w->claim.qstart + k) % w->cfg->nqueues;
}

/* After a claim into fl's queue and band (res, in claim order): a full
 * claim sets the floor to its last row (unless floors are off), a short
 * one clears it. */
static void
set_floor(claim_floor *fl, PGresult *res, bool full, int64_t head_ms, int64_t now_ms)
{
    int last = PQntuples(res) - 1;
    fl->set = full && last >= 0 && now_ms >= fl->off_until_ms;
    if (!fl->set)
        return;
    fl->priority = (int16_t)strtol(PQgetvalue(res, last, 4), NULL, 10);
    fl->id = strtoll(PQgetvalue(res, last, 0), NULL, 10);
    fl->head_ms = head_ms;
    snprintf(fl->run_at, sizeof fl->run_at, "%s", PQgetvalue(res, last, 13));
}

/* Jobs from a claim from the head, made after a claim from the floor came
 * back short, go into the ready list at *at, where the floor claim's own
 * jobs begin, in claim order: the head claim's come first within a
 * priority (the rows behind the floor), and each list is in claim order
 * already. */
static void
merge_head_claim(skipq_job **at, skipq_job *head)
{
    skipq_job *floor = *at, **out = at;
    while (head && floor) {
        skipq_job **from = head->priority >= floor->priority ? &head : &floor;
        *out = *from;
        *from = (*from)->next;
        out = &(*out)->next;
    }
    *out = head ? head : floor;
}

/* A claim that failed part of the way counts as short, but what it did
 * not look at may hold jobs whose producers sent no NOTIFY (the idle
 * locks): claim again within 200 ms, as after a failed claim. */
static void
claim_again_soon(skipq_worker *w)
{
    int64_t soon = skipq__now_ms() + 200;
    if (w->claim.next_poll_ms > soon)
        w->claim.next_poll_ms = soon;
}

/* One cycle's statements and what came back of them. */
typedef struct cycle_call {
    PGparam *complete;    /* the completion's parameters, NULL: none */
    PGparam *claim;       /* the claim's, NULL: none */
    bool after;           /* the claim starts from the floor */
    bool controlled;      /* the queue has flow control: claim_controlled */
    PGresult *results[3]; /* settings, completion, claim: those sent */
    int nres;
} cycle_call;

static void
cycle_call_clear(cycle_call *c)
{
    for (int i = 0; i < c->nres; i++)
        PQclear(c->results[i]);
    if (c->complete)
        PQparamClear(c->complete);
    if (c->claim)
        PQparamClear(c->claim);
}

/*
 * Send the cycle's statements and the sync that ends its transaction.
 *
 * A transaction that only claims commits without waiting for its WAL
 * flush (synchronous_commit off for it alone): the flush was most of the
 * idle worker's pickup time. Losing such a commit in a server crash
 * loses nothing but the claim: the row is queued again, the job runs
 * again (at least once), and the handler's result from the lost claim
 * matches no row. Any later synchronous commit, such as this job's
 * completion, flushes the claim with it. Completions keep synchronous
 * commit: "succeeded" is durable when the worker says so (test
 * claim_only_commit_is_async_completion_is_not).
 *
 * And both statements run on their generic plans, planned once a
 * connection: the claim's custom plan was made anew for every claim (its
 * generic plan, not knowing the LIMIT, looked dearer), and that planning
 * was a large share of one worker's drain rate. Both generic plans are
 * the right ones whatever the table holds (the tests EXPLAIN them).
 */
static bool
send_cycle(skipq_worker *w, const cycle_call *c)
{
    PGconn *pg = w->sess.pg;
    int unnamed = w->sess.send;
    bool quick = c->claim && !c->complete;
    skipq__stmt_id complete = w->cfg->on_success == SKIPQ_ON_SUCCESS_DELETE
                                  ? SKIPQ__STMT_COMPLETE_DELETE
                                  : SKIPQ__STMT_COMPLETE;

    if (PQenterPipelineMode(pg) != 1)
        return false;
    if (w->sess.pooled) { /* the transaction's own lock_timeout (statements.h) */
        char lock[24];
        const char *v[1] = {lock};
        snprintf(lock, sizeof lock, "%lldms", (long long)w->sess.lock_wait_ms);
        if (!skipq__stmt_run(pg, unnamed,
                             quick ? SKIPQ__STMT_CYCLE_QUICK_POOLED
                                   : SKIPQ__STMT_CYCLE_POOLED,
                             NULL, 1, v, NULL))
            return false;
    } else if (!skipq__stmt_run(pg, unnamed,
                                quick ? SKIPQ__STMT_CYCLE_QUICK : SKIPQ__STMT_CYCLE, NULL,
                                0, NULL, NULL)) {
        return false;
    }
    if (c->complete && !skipq__stmt_run(pg, unnamed, complete, c->complete, 0, NULL, NULL))
        return false;
    skipq__stmt_id claim = c->controlled ? SKIPQ__STMT_CLAIM_CONTROLLED
                           : c->after    ? SKIPQ__STMT_CLAIM_AFTER
                                         : SKIPQ__STMT_CLAIM;
    if (c->claim && !skipq__stmt_run(pg, unnamed, claim, c->claim, 0, NULL, NULL))
        return false;
    return PQpipelineSync(pg) == 1;
}

/* Read up to the sync point, keeping the results until it arrives.
 * Returns false when any statement failed or the connection broke. */
static bool
read_cycle(skipq_worker *w, cycle_call *c)
{
    PGconn *pg = w->sess.pg;
    bool ok = true;

    while (PQpipelineStatus(pg) != PQ_PIPELINE_OFF) {
        PGresult *res = PQgetResult(pg);
        if (!res) {
            if (PQstatus(pg) != CONNECTION_OK)
                return false;
            continue; /* the end of one statement's results */
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            PQexitPipelineMode(pg);
            break;
        }
        if (st == PGRES_TUPLES_OK && c->nres < 3) {
            c->results[c->nres++] = res;
            continue;
        }
        if (st != PGRES_PIPELINE_ABORTED) {
            skipq_error e;
            if (skipq__lock_timed_out(res))
                w->claim.lock_timed_out = true;
            skipq__db_fail(&e, pg, res, "worker cycle failed");
            skipq__log(w->claim.lock_timed_out ? SKIPQ_LOG_WARN : SKIPQ_LOG_ERROR, "%s",
                       e.message);
            if (!w->fatal && skipq__pooler_check(w, SKIPQ_ERR_DB, &e) == SKIPQ_ERR_CONFIG) {
                w->fatal_err = e;
                w->fatal = true;
            }
        }
        ok = false;
        PQclear(res);
    }
    return ok;
}

/* The cycle committed: finish the completed jobs, take the claimed ones
 * into *ready (after those already there) and move the floor fl.
 * Returns the number claimed. */
static int
take_cycle(skipq_worker *w, cycle_call *c, skipq_job *done, int want, size_t qi,
           claim_floor *fl, int64_t now_ms, char *now_out, skipq_job **ready)
{
    int k = 1; /* after the settings */
    int got = 0;

    if (now_out && c->claim && c->results[0])
        snprintf(now_out, SKIPQ__NOW_LEN, "%s", PQgetvalue(c->results[0], 0, 0));
    if (c->complete)
        skipq__finish_jobs(w, done, c->results[k++]);
    if (!c->claim)
        return 0;
    while (*ready) /* where this claim's jobs will begin */
        ready = &(*ready)->next;
    got = take_claimed(w, c->results[k], ready);
    if (c->after && skipq__log_enabled()) {
        char msg[128];
        snprintf(msg, sizeof msg, "claimed %d of %d after job %lld", got, want,
                 (long long)fl->id);
        skipq_log_event ev = {.level = SKIPQ_LOG_DEBUG,
                              .msg = msg,
                              .event = "claim_floor",
                              .queue = w->cfg->queues[qi],
                              .duration_ms = -1};
        skipq__log_event(&ev);
    }
    w->claim.exec_free -= got;
    if (c->controlled) /* claimed in its own order: no floor */
        fl->set = false;
    else
        set_floor(fl, c->results[k], got == want, c->after ? fl->head_ms : now_ms, now_ms);
    return got;
}

static int complete_and_claim(skipq_worker *w, skipq_job *done, int want, size_t qi,
                              size_t bi, char *now_out, skipq_job **ready);

/* A claim from the floor came back short (got of want): rows may wait
 * behind it. Claim from the head now, so "short" means what it means for
 * a claim from the head. Returns the number claimed in all. */
static int
claim_behind_floor(skipq_worker *w, int got, int want, size_t qi, size_t bi,
                   claim_floor *fl, int64_t now_ms, char *now_out, skipq_job **ready)
{
    skipq_job *head = NULL;
    int more = complete_and_claim(w, NULL, want - got, qi, bi, now_out, &head);

    if (more < 0) { /* an error the caller must see, unless we got jobs */
        if (got > 0)
            claim_again_soon(w); /* the head may hold more */
        return got > 0 ? got : -1;
    }
    merge_head_claim(ready, head);
    if (got == 0 && more > 0) { /* the floor is in the way */
        fl->set = false;
        fl->off_until_ms = now_ms + FLOOR_MS;
    }
    return got + more;
}

/*
 * One round trip: complete `done` (if any) and claim up to `want` jobs
 * from queue qi's band bi, in one pipeline. Statements in a pipeline up
 * to its sync run in one implicit transaction: one commit, and on any
 * error nothing of it is applied, so results are only used once the
 * sync arrives. Returns the number claimed, or -1 when the cycle failed
 * (the done list is then kept in w->jobs.pending).
 */
static int
complete_and_claim(skipq_worker *w, skipq_job *done, int want, size_t qi, size_t bi,
                   char *now_out, skipq_job **ready)
{
    cycle_call c = {0};
    claim_floor *fl = want > 0 ? &w->claim.floors[qi * w->nbands + bi] : NULL;
    int64_t now_ms = skipq__now_ms();
    bool failed = false;
    int got = 0;

    w->claim.lock_timed_out = false;
    /* A queue with flow control: as many as executors are free, through
     * skipq.claim_controlled (sql/limits.sql), which counts them against
     * the limits under the queue's row lock. */
    if (want > 0 && (c.controlled = skipq__queue_controlled(w, qi))) {
        if (want > w->claim.exec_free)
            want = w->claim.exec_free > 0 ? w->claim.exec_free : 0;
        if (want == 0 && !done)
            return 0;
        if (want == 0)
            fl = NULL;
    }
    c.after = !c.controlled && fl && fl->set && now_ms - fl->head_ms < FLOOR_MS;
    if (done && !(c.complete = skipq__completion_param(w, done))) {
        skipq__log(SKIPQ_LOG_ERROR, "out of memory building a completion");
        skipq__keep_pending(&w->jobs, done);
        return -1;
    }
    if (done && skipq__failpoint("before_complete")) {
        skipq__log(SKIPQ_LOG_ERROR, "failpoint before_complete: exiting");
        _exit(99);
    }
    if (want > 0 && !(c.claim = claim_param(w, qi, bi, want, c.after ? fl : NULL)))
        failed = true;
    if (!failed && !send_cycle(w, &c)) {
        failed = true;
        if (PQpipelineStatus(w->sess.pg) != PQ_PIPELINE_OFF) {
            /* a send failed before the sync: no sync point will come back
             * to read up to, so the connection cannot be trusted */
            skipq__keep_pending(&w->jobs, done);
            skipq__session_drop(w, "could not send a worker cycle");
            cycle_call_clear(&c);
            return -1;
        }
    }
    if (!failed && !read_cycle(w, &c))
        failed = true;
    if (!failed) {
        got = take_cycle(w, &c, done, want, qi, fl, now_ms, now_out, ready);
    } else {
        /* Nothing of it committed as far as we know; a completion that did
         * commit before a lost reply matches 0 rows when retried, and
         * rows claimed without a reply are reconciled on reconnect. The
         * next claim is from the head, whatever failed. */
        skipq__keep_pending(&w->jobs, done);
        if (fl)
            fl->set = false;
        if (skipq__session_broken(&w->sess))
            skipq__session_drop(w, PQerrorMessage(w->sess.pg));
    }
    cycle_call_clear(&c);
    if (failed)
        return -1;
    if (c.after && got < want && w->sess.pg)
        got = claim_behind_floor(w, got, want, qi, bi, fl, now_ms, now_out, ready);
    return got;
}

int
skipq__complete_only(skipq_worker *w, skipq_job *done)
{
    skipq_job *none = NULL;
    return complete_and_claim(w, done, 0, 0, 0, NULL, &none);
}

/* A cycle at the head of the rotation: its claim's transaction time is
 * the one the next-run-at lookup starts from. */
int
skipq__cycle(skipq_worker *w, skipq_job *done, int want, skipq_job **ready)
{
    size_t qi = queue_at(w, 0);
    bool paused = skipq__queue_blocked(w, qi);
    /* a paused queue: complete, claim nothing (skipq__claim_more() tries
     * the others) */
    int got = paused && !done ? 0
                              : complete_and_claim(w, done, paused ? 0 : want, qi, 0,
                                                   w->claim.claim_now, ready);
    w->claim.qstart++;
    return got;
}

/* Fill the slots the first claim left free: the other queues, then the
 * lower bands, highest first. */
int
skipq__claim_more(skipq_worker *w, int want, skipq_job **ready)
{
    int got = 0;
    size_t first_q = queue_at(w, w->cfg->nqueues - 1); /* skipq__cycle() advanced qstart */
    for (size_t bi = 0; bi < w->nbands && want - got > 0; bi++) {
        for (size_t k = 0; k < w->cfg->nqueues && want - got > 0; k++) {
            size_t qi = (first_q + k) % w->cfg->nqueues;
            if ((bi == 0 && k == 0) || skipq__queue_blocked(w, qi))
                continue; /* the claim skipq__cycle() made, or paused */
            /* the same transaction as skipq__cycle()'s claim: generic plan,
             * asynchronous commit */
            int n = complete_and_claim(w, NULL, want - got, qi, bi, NULL, ready);
            if (n < 0 || !w->sess.pg) {
                claim_again_soon(w); /* what it did not look at may wait */
                return got;
            }
            got += n;
        }
    }
    return got;
}

/* When does the first used-up rate window of our queues end? A worker
 * that found its rate-limited queues' windows full claims again then,
 * not at its next poll (test flow_control.rate_limit_holds_in_every_window). */
static void
schedule_rate_window(skipq_worker *w)
{
    PGresult *res = NULL;
    PGparam *prm, *qs;

    if (skipq__queues_param(w, w->sess.pg, &prm, &qs))
        skipq__stmt_run(w->sess.pg, w->sess.send, SKIPQ__STMT_RATE_WAIT, prm, 0, NULL,
                        &res);
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && !PQgetisnull(res, 0, 0)) {
        int64_t in = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        w->claim.next_run_at_ms = skipq__min64(w->claim.next_run_at_ms,
                                               skipq__now_ms() + (in > 0 ? in : 0) + 1);
    } else if ((!res || PQresultStatus(res) != PGRES_TUPLES_OK) &&
               skipq__session_broken(&w->sess)) {
        skipq__session_drop(w, "could not read the rate windows");
    }
    PQclear(res);
    if (prm)
        PQparamClear(prm);
    if (qs)
        PQparamClear(qs);
}

/* When is the next job we could run due? So a delayed job starts on time,
 * not at the next poll. */
void
skipq__schedule_next_run_at(skipq_worker *w)
{
    PGresult *res;
    PGparam *prm, *qs;
    bool ok = skipq__queues_param(w, w->sess.pg, &prm, &qs);

    w->claim.next_run_at_ms = INT64_MAX;
    ok = ok &&
         PQputf(prm, "%int2 %int2 %text", (PGint2)w->bands[w->nbands - 1].lo,
                (PGint2)w->bands[0].hi, w->claim.claim_now[0] ? w->claim.claim_now : NULL);
    if (ok) {
        skipq__stmt_run(w->sess.pg, w->sess.send, SKIPQ__STMT_NEXT_RUN_AT, prm, 0, NULL,
                        &res);
        if (res && PQresultStatus(res) == PGRES_TUPLES_OK && !PQgetisnull(res, 0, 0)) {
            int64_t in = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
            w->claim.next_run_at_ms = skipq__now_ms() + (in > 0 ? in : 0) + 1;
        } else if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
            if (skipq__session_broken(&w->sess))
                skipq__session_drop(w, "could not read the next run_at");
        }
        PQclear(res);
    }
    if (prm)
        PQparamClear(prm);
    if (qs)
        PQparamClear(qs);
    if (w->pauses.rated && w->sess.pg)
        schedule_rate_window(w);
}
