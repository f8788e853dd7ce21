/*
 * worker_pause.c - paused queues and kinds, and queues with flow control,
 * on the worker's side.
 *
 * An operator pauses a queue, or one kind in it, with skipq.queue_pause
 * (sql/queues.sql): a row in skipq.queues and a NOTIFY on the control
 * channel. The NOTIFY is only a hint, since any role may send one: the
 * worker reads the table when it arrives, after a reconnect and at every
 * heartbeat, and obeys the table (test
 * queue_pause.forged_notify_pauses_nothing). Between reads the claims
 * test one flag: a paused queue is skipped by the claim loop (the cycle
 * still completes), a paused kind is left out of that queue's claim's
 * kinds, and a queue whose every kind here is paused counts as paused.
 * Jobs claimed ahead and not started when their queue or kind becomes
 * paused are handed back (test
 * queue_pause.pause_with_four_busy_workers_stops_claims_and_loses_nothing).
 *
 * The same read says which queues have flow-control settings (limits on
 * running jobs, a rate, aging; sql/limits.sql): those are claimed from
 * through skipq.claim_controlled, and only as many as there are free
 * executors (worker_claim.c). Until the table has been read, the worker
 * claims nothing, so a limit it has not seen yet is never exceeded.
 */
#include "worker.h"

#include <libpqtypes.h>
#include <stdlib.h>
#include <string.h>

static void
free_kinds(char **kinds)
{
    for (size_t i = 0; kinds && kinds[i]; i++)
        free(kinds[i]);
    free(kinds);
}

void
skipq__pauses_free(skipq_worker *w)
{
    worker_pauses *p = &w->pauses;
    for (size_t qi = 0; p->kinds && qi < w->cfg->nqueues; qi++)
        free_kinds(p->kinds[qi]);
    free(p->kinds);
    free(p->blocked);
    free(p->controlled);
    p->kinds = NULL;
    p->blocked = NULL;
    p->controlled = NULL;
    p->any = false;
    p->limited = false;
    p->rated = false;
}

bool
skipq__kind_paused(const skipq_worker *w, size_t qi, const char *kind)
{
    char **k = w->pauses.any ? w->pauses.kinds[qi] : NULL;
    for (; k && *k; k++)
        if (strcmp(*k, kind) == 0)
            return true;
    return false;
}

static ssize_t
queue_index(const skipq_worker *w, const char *queue)
{
    for (size_t i = 0; i < w->cfg->nqueues; i++)
        if (strcmp(w->cfg->queues[i], queue) == 0)
            return (ssize_t)i;
    return -1;
}

/* Add kind to the NULL-terminated list *kinds. */
static bool
add_kind(char ***kinds, const char *kind)
{
    size_t n = 0;
    while (*kinds && (*kinds)[n])
        n++;
    char **grown = realloc(*kinds, (n + 2) * sizeof *grown);
    if (!grown)
        return false;
    *kinds = grown;
    grown[n] = strdup(kind);
    grown[n + 1] = NULL;
    return grown[n] != NULL;
}

/* Every kind this worker handles is among kinds. */
static bool
all_kinds_paused(const skipq_worker *w, char **kinds)
{
    for (size_t h = 0; h < w->nhandlers; h++) {
        bool found = false;
        for (char **k = kinds; k && *k && !found; k++)
            found = strcmp(*k, w->handlers[h].kind) == 0;
        if (!found)
            return false;
    }
    return kinds != NULL;
}

/* What skipq.queues says for this worker's queues (parse_states). */
typedef struct queue_states {
    bool *blocked;
    char ***kinds;
    bool *controlled;
    bool rated;
} queue_states;

/* The table's rows as new arrays in st. False: out of memory. */
static bool
parse_states(skipq_worker *w, PGresult *res, queue_states *st)
{
    for (int r = 0; r < PQntuples(res); r++) {
        ssize_t qi = queue_index(w, PQgetvalue(res, r, 0));
        if (qi < 0)
            continue;
        if (PQgetvalue(res, r, 3)[0] == 't')
            st->controlled[qi] = true;
        if (PQgetvalue(res, r, 4)[0] == 't')
            st->rated = true;
        if (PQgetvalue(res, r, 2)[0] == 't')
            st->blocked[qi] = true;
        else if (!PQgetisnull(res, r, 1) &&
                 !add_kind(&st->kinds[qi], PQgetvalue(res, r, 1)))
            return false;
    }
    for (size_t qi = 0; qi < w->cfg->nqueues; qi++)
        if (!st->blocked[qi] && all_kinds_paused(w, st->kinds[qi]))
            st->blocked[qi] = true;
    return true;
}

/* Is job j (claimed, not started) of a paused queue or kind, or of a
 * queue with limits (where a job claimed ahead would hold a slot it was
 * not counted for when it was claimed)? */
static bool
job_paused(const skipq_worker *w, const skipq_job *j)
{
    ssize_t qi = queue_index(w, j->queue);
    return qi >= 0 && (skipq__queue_blocked(w, (size_t)qi) ||
                       skipq__kind_paused(w, (size_t)qi, j->kind) ||
                       skipq__queue_controlled(w, (size_t)qi));
}

/*
 * Jobs claimed ahead of the executors whose queue or kind is now paused
 * go back (not counted as attempts, their place kept); the others go
 * back to the executors in the order they had.
 */
static void
hand_back_paused(skipq_worker *w)
{
    skipq_job *ready = skipq__pool_take_ready(&w->pool);
    skipq_job *keep = NULL, **tail = &keep;
    int n = 0, back = 0;

    for (skipq_job *j = ready; j; j = j->next)
        if ((j->pulled = job_paused(w, j)))
            n++;
    if (n > 0 && w->sess.pg)
        skipq__hand_back_rows(w, true);
    for (skipq_job *j = ready, *next; j; j = next) {
        next = j->next;
        j->next = NULL;
        j->pulled = false;
        if (j->handed_back) {
            skipq__held_remove(&w->jobs, j);
            skipq__job_free(j);
            back++;
        } else {
            *tail = j;
            tail = &j->next;
        }
    }
    skipq__pool_push(&w->pool, keep);
    if (back > 0)
        skipq__log(
            SKIPQ_LOG_INFO,
            "worker %lld handed back %d prefetched job(s) of paused or limited queues",
            (long long)w->sess.id, back);
}

static bool
same_kinds(char **a, char **b)
{
    size_t n = 0;
    for (; a && a[n]; n++)
        if (!b || !b[n] || strcmp(a[n], b[n]) != 0)
            return false;
    return !(b && b[n]);
}

/* Say what changed, queue by queue. Returns whether anything did. */
static bool
log_changes(const skipq_worker *w, const bool *blocked, char ***kinds)
{
    bool changed = false;
    for (size_t qi = 0; qi < w->cfg->nqueues; qi++) {
        bool was = w->pauses.blocked && w->pauses.blocked[qi];
        char **had = w->pauses.kinds ? w->pauses.kinds[qi] : NULL;
        if (was == blocked[qi] && same_kinds(had, kinds[qi]))
            continue;
        changed = true;
        if (was != blocked[qi] || !had != !kinds[qi])
            skipq__log(SKIPQ_LOG_INFO, "worker %lld: queue \"%s\" %s",
                       (long long)w->sess.id, w->cfg->queues[qi],
                       blocked[qi] ? "paused"
                       : kinds[qi] ? "has paused kinds"
                                   : "resumed");
    }
    return changed;
}

static void
states_free(queue_states *st, size_t nq)
{
    for (size_t qi = 0; st->kinds && qi < nq; qi++)
        free_kinds(st->kinds[qi]);
    free(st->kinds);
    free(st->blocked);
    free(st->controlled);
}

/* Read the rows into st. False: they could not be read (the old state
 * stays until the next heartbeat). */
static bool
read_states(skipq_worker *w, queue_states *st)
{
    PGparam *prm = NULL, *qs = NULL;
    PGresult *res = NULL;
    bool ok = skipq__queues_param(w, w->sess.pg, &prm, &qs);

    if (ok) {
        skipq__stmt_run(w->sess.pg, w->sess.send, SKIPQ__STMT_READ_PAUSES, prm, 0, NULL,
                        &res);
        if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
            skipq_error e;
            skipq__db_fail(&e, w->sess.pg, res, "could not read paused queues");
            skipq__log(SKIPQ_LOG_WARN, "%s", e.message);
            if (skipq__session_broken(&w->sess))
                skipq__session_drop(w, e.message);
            ok = false;
        } else if (!parse_states(w, res, st)) {
            skipq__log(SKIPQ_LOG_ERROR, "out of memory reading paused queues");
            ok = false;
        }
    }
    if (prm)
        PQparamClear(prm);
    if (qs)
        PQparamClear(qs);
    PQclear(res);
    return ok;
}

/* Take st's flow-control flags, saying what changed. Returns whether a
 * queue became limited. */
static bool
take_controls(skipq_worker *w, queue_states *st)
{
    bool limited = false, newly = false;
    for (size_t qi = 0; qi < w->cfg->nqueues; qi++) {
        limited = limited || st->controlled[qi];
        if (skipq__queue_controlled(w, qi) != st->controlled[qi])
            skipq__log(SKIPQ_LOG_INFO, "worker %lld: queue \"%s\" %s",
                       (long long)w->sess.id, w->cfg->queues[qi],
                       st->controlled[qi] ? "has limits: claims are counted against them"
                                          : "has no limits");
    }
    for (size_t qi = 0; qi < w->cfg->nqueues; qi++) {
        if (skipq__queue_controlled(w, qi) != st->controlled[qi])
            w->claim.wake = true; /* claim under the new rule now */
        newly = newly || (st->controlled[qi] && !skipq__queue_controlled(w, qi));
    }
    free(w->pauses.controlled);
    w->pauses.controlled = st->controlled;
    st->controlled = NULL;
    w->pauses.limited = limited;
    w->pauses.rated = st->rated;
    return newly;
}

void
skipq__pauses_read(skipq_worker *w)
{
    size_t nq = w->cfg->nqueues;
    size_t n = nq ? nq : 1;
    queue_states st = {calloc(n, sizeof(bool)), calloc(n, sizeof(char **)),
                       calloc(n, sizeof(bool)), false};
    bool ok = st.blocked && st.kinds && st.controlled;

    ok = ok && read_states(w, &st);
    /* Unread, the turns claim nothing (a limit not yet known could be
     * exceeded) and the table is read again in a second, not at once. */
    w->pauses.check = false;
    w->pauses.unread = !ok;
    if (!ok) {
        w->pauses.retry_ms = skipq__now_ms() + 1000;
        w->claim.next_poll_ms = skipq__min64(w->claim.next_poll_ms, w->pauses.retry_ms);
    }
    bool newly = ok && take_controls(w, &st);
    bool any = false;
    for (size_t qi = 0; ok && qi < nq; qi++)
        any = any || st.blocked[qi] || st.kinds[qi];
    if (ok && (any || w->pauses.any) && log_changes(w, st.blocked, st.kinds)) {
        for (size_t qi = 0; w->pauses.kinds && qi < nq; qi++)
            free_kinds(w->pauses.kinds[qi]);
        free(w->pauses.kinds);
        free(w->pauses.blocked);
        w->pauses.blocked = st.blocked;
        w->pauses.kinds = st.kinds;
        w->pauses.any = any;
        st.blocked = NULL;
        st.kinds = NULL;
        /* a resumed kind may wait behind a claim floor: claim from the
         * head, and now */
        memset(w->claim.floors, 0, nq * w->nbands * sizeof *w->claim.floors);
        w->claim.wake = true;
        if (any)
            hand_back_paused(w);
    } else if (newly) {
        hand_back_paused(w);
    }
    states_free(&st, nq);
}
