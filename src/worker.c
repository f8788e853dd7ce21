/*
 * worker.c - the worker's public API and its main loop.
 *
 * One thread (the caller of skipq_worker_run) owns the connection the
 * jobs go through (worker_session.c): each turn of the loop collects the
 * jobs the executors finished (exec_pool.c), sends their completions
 * and the next claim in one cycle (worker_claim.c, worker_complete.c),
 * beats the heart, and sleeps until a job finishes, a NOTIFY comes or a
 * timer is due. A maintenance thread owns a second connection for the
 * rescuer, retention and vacuum (worker_maint.c). How many jobs to claim
 * ahead of the executors is worker_prefetch.c's to say. worker.h maps
 * the state each of them owns.
 */
#include "worker.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#ifdef SKIPQ_FAILPOINTS
bool
skipq__failpoint(const char *name)
{
    const char *fp = getenv("SKIPQ_FAILPOINT");
    return fp && strcmp(fp, name) == 0;
}
#endif

/* ---- logging ------------------------------------------------------------- */

void
skipq__log_job(skipq_log_level lvl, const char *event, const skipq_job *job,
               const char *fmt, ...)
{
    char msg[768];
    va_list ap;

    if (!skipq__log_enabled())
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    skipq_log_event ev = {
        .level = lvl,
        .msg = msg,
        .event = event,
        .job_id = job ? job->id : 0,
        .kind = job ? job->kind : NULL,
        .queue = job ? job->queue : NULL,
        .attempt = job ? job->attempt : 0,
        .duration_ms = job ? job->duration_ms : -1,
    };
    skipq__log_event(&ev);
}

/* ---- construction ------------------------------------------------------- */

static int
band_cmp(const void *a, const void *b)
{
    const skipq__band *x = a, *y = b;
    return (y->hi > x->hi) - (y->hi < x->hi);
}

/* Sort bands highest first and merge touching ones, so "high,normal,low"
 * becomes one range and one index scan per queue. */
static void
merge_bands(skipq_worker *w)
{
    qsort(w->bands, w->nbands, sizeof *w->bands, band_cmp);
    size_t out = 0;
    for (size_t i = 0; i < w->nbands; i++) {
        if (out > 0 && (int)w->bands[i].hi >= (int)w->bands[out - 1].lo - 1) {
            if (w->bands[i].lo < w->bands[out - 1].lo)
                w->bands[out - 1].lo = w->bands[i].lo;
            continue;
        }
        w->bands[out++] = w->bands[i];
    }
    w->nbands = out;
}

skipq_rc
skipq_worker_new(const skipq_config *cfg, skipq_worker **out, skipq_error *err)
{
    skipq_worker *w;

    *out = NULL;
    /* A lease no longer than the heartbeat would let the rescuer take
     * jobs from a worker that is alive and well. */
    if (cfg->lease_timeout_ms <= cfg->heartbeat_interval_ms)
        return skipq__fail(err, SKIPQ_ERR_CONFIG,
                           "lease_timeout (%lld ms) must be longer than "
                           "heartbeat_interval (%lld ms)",
                           (long long)cfg->lease_timeout_ms,
                           (long long)cfg->heartbeat_interval_ms);
    /* Rows pruned before their turn to move would never be archived. */
    if (cfg->archive_after_ms > 0 && cfg->retention_ms > 0 &&
        cfg->archive_after_ms >= cfg->retention_ms)
        return skipq__fail(
            err, SKIPQ_ERR_CONFIG,
            "archive_after (%lld ms) must be shorter than retention (%lld ms)",
            (long long)cfg->archive_after_ms, (long long)cfg->retention_ms);
    w = calloc(1, sizeof *w);
    if (!w)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&w->progress_mu, NULL);
    w->wake_fd = -1;
    w->cfg = skipq__config_dup(cfg);
    if (!w->cfg)
        goto nomem;
    w->bands = calloc(w->cfg->nbands ? w->cfg->nbands : 1, sizeof *w->bands);
    if (!w->bands)
        goto nomem;
    memcpy(w->bands, w->cfg->bands, w->cfg->nbands * sizeof *w->bands);
    w->nbands = w->cfg->nbands;
    merge_bands(w);
    w->claim.floors = calloc((w->cfg->nqueues ? w->cfg->nqueues : 1) *
                                 (w->nbands ? w->nbands : 1),
                             sizeof *w->claim.floors);
    if (!w->claim.floors)
        goto nomem;
    for (size_t i = 0; i < w->cfg->nhandlers; i++) {
        const skipq__handler_cfg *hc = &w->cfg->handlers[i];
        handler *nh = realloc(w->handlers, (w->nhandlers + 1) * sizeof *nh);
        if (!nh)
            goto nomem;
        w->handlers = nh;
        nh[w->nhandlers] = (handler){.kind = hc->kind,
                                     .argv = hc->argv,
                                     .timeout_ms = hc->timeout_ms,
                                     .persist = hc->persistent ? (int)i + 1 : 0};
        w->nhandlers++;
    }
    w->jobs.rand_state = (unsigned)time(NULL) ^ (unsigned)getpid();
    /* Statements unnamed, none prepared by name: what a transaction
     * pooler needs (test drain_with_unnamed_statements); pooled, each
     * transaction with its own lock_timeout too (run_start). */
    const char *unnamed = getenv("SKIPQ_UNNAMED_STATEMENTS");
    w->sess.send = unnamed && strcmp(unnamed, "1") == 0 ? SKIPQ__SEND_UNNAMED
                                                        : SKIPQ__SEND_NAMED;
    w->sess.pooled = w->cfg->listen_database || !w->cfg->listen;
    *out = w;
    return SKIPQ_OK;
nomem:
    skipq_worker_free(w);
    return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
}

void
skipq_worker_free(skipq_worker *w)
{
    if (!w)
        return;
    skipq__metrics_detach(w->metrics, w);
    if (w->pool_started)
        skipq__pool_stop(&w->pool);
    skipq__maint_stop(w);
    for (skipq_job *j = w->jobs.held, *n; j; j = n) {
        n = j->hnext;
        skipq__job_free(j);
    }
    /* C handlers' kinds are ours; command handlers' belong to cfg */
    for (size_t i = 0; i < w->nhandlers; i++)
        if (w->handlers[i].fn)
            free(w->handlers[i].kind);
    free(w->handlers);
    free(w->kinds);
    free(w->bands);
    free(w->claim.floors);
    skipq__pauses_free(w);
    free(w->database);
    if (w->sess.pg)
        PQfinish(w->sess.pg);
    if (w->sess.lpg)
        PQfinish(w->sess.lpg);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    skipq_config_free(w->cfg);
    pthread_mutex_destroy(&w->progress_mu);
    free(w);
}

skipq_rc
skipq_worker_register(skipq_worker *w, const char *kind, skipq_handler_fn fn,
                      void *userdata, skipq_error *err)
{
    skipq_rc rc = skipq_check_name("kind", kind, err);

    if (rc != SKIPQ_OK)
        return rc;
    if (!fn)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "handler for \"%s\" is NULL", kind);
    for (size_t i = 0; i < w->nhandlers; i++) {
        if (strcmp(w->handlers[i].kind, kind) != 0)
            continue;
        if (!w->handlers[i].fn) /* a C handler replaces a configured command */
            w->handlers[i].kind = strdup(kind);
        else
            return skipq__fail(err, SKIPQ_ERR_INVALID,
                               "a handler for \"%s\" is already registered", kind);
        if (!w->handlers[i].kind)
            return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
        w->handlers[i].fn = fn;
        w->handlers[i].userdata = userdata;
        return SKIPQ_OK;
    }
    handler *nh = realloc(w->handlers, (w->nhandlers + 1) * sizeof *nh);
    if (!nh)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    w->handlers = nh;
    nh[w->nhandlers] = (handler){.kind = strdup(kind), .fn = fn, .userdata = userdata};
    if (!nh[w->nhandlers].kind)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    w->nhandlers++;
    return SKIPQ_OK;
}

void
skipq_worker_set_once(skipq_worker *w, int once)
{
    w->once = once != 0;
}

void
skipq_worker_set_log_payloads(skipq_worker *w, int on)
{
    w->log_payloads = on != 0;
}

skipq_rc
skipq_worker_set_database(skipq_worker *w, const char *url, skipq_error *err)
{
    char *c = url ? strdup(url) : NULL;
    if (url && !c)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    free(w->database);
    w->database = c;
    return SKIPQ_OK;
}

int64_t
skipq_worker_id(const skipq_worker *w)
{
    return atomic_load(&((skipq_worker *)w)->started_id);
}

/*
 * The loop turns at least every min(poll_interval, heartbeat_interval)
 * while connected, and every 5 s at most while reconnecting; a statement
 * waits for a lock for at most 5 s. Three such periods, and never less
 * than 10 s, is the longest a healthy loop goes without turning (test
 * worker_http.healthz_fails_while_the_loop_is_stuck).
 */
static int64_t
loop_bound_ms(const skipq_config *cfg)
{
    int64_t period = skipq__min64(cfg->poll_interval_ms, cfg->heartbeat_interval_ms);
    return period * 3 > 10000 ? period * 3 : 10000;
}

void
skipq_worker_health_get(const skipq_worker *cw, skipq_worker_health *out)
{
    skipq_worker *w = (skipq_worker *)cw; /* atomics only */
    int64_t at = atomic_load(&w->loop_ms);

    out->started = atomic_load(&w->started_id) != 0;
    out->connected = atomic_load(&w->h_connected);
    out->schema_ok = atomic_load(&w->h_schema_ok);
    out->ended = atomic_load(&w->h_ended);
    out->stopping = out->ended || atomic_load(&w->h_stopping) ||
                    atomic_load(&w->stop_requested) || atomic_load(&w->retire_requested);
    out->loop_age_ms = at ? skipq__now_ms() - at : -1;
    out->loop_bound_ms = loop_bound_ms(w->cfg);
}

/* What other threads read of the loop (skipq_worker_health_get, the
 * registry's gauges): atomic stores, a few a turn. */
static void
publish(skipq_worker *w, int64_t now, bool stopping)
{
    atomic_store(&w->loop_ms, now);
    atomic_store(&w->h_connected, !skipq__session_broken(&w->sess));
    atomic_store(&w->gauge_held, w->jobs.nheld);
    atomic_store(&w->h_stopping, stopping);
}

/*
 * Test builds: SKIPQ_FAILPOINT=loop_stall stalls the main loop once a
 * completion has been written, until the worker is stopped, as a loop
 * stuck in a call would (test
 * worker_http.healthz_fails_while_the_loop_is_stuck).
 */
static void
failpoint_stall(skipq_worker *w)
{
    skipq__log(SKIPQ_LOG_WARN, "failpoint loop_stall: the main loop stalls until stopped");
    while (!atomic_load(&w->stop_requested)) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Wake the loop (async-signal-safe: an eventfd write). */
static void
wake_loop(skipq_worker *w)
{
    uint64_t one = 1;
    if (w->wake_fd >= 0) {
        ssize_t r = write(w->wake_fd, &one, sizeof one);
        (void)r;
    }
}

void
skipq_worker_stop(skipq_worker *w)
{
    atomic_store(&w->stop_requested, 1);
    wake_loop(w);
}

void
skipq_worker_retire(skipq_worker *w)
{
    atomic_store(&w->retire_requested, 1);
    wake_loop(w);
}

/* ---- the loop ------------------------------------------------------------------------ */

static void
drain_wake_fd(skipq_worker *w)
{
    uint64_t v;
    ssize_t r = read(w->wake_fd, &v, sizeof v);
    (void)r;
}

static skipq_rc
check_handlers(skipq_worker *w, skipq_error *err)
{
    if (w->nhandlers == 0)
        return skipq__fail(err, SKIPQ_ERR_CONFIG,
                           "no handlers: register one, or name commands under "
                           "handlers: in the config or with --handler");
    w->kinds = calloc(w->nhandlers + 1, sizeof *w->kinds);
    if (!w->kinds)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < w->nhandlers; i++)
        w->kinds[i] = w->handlers[i].kind;
    if (w->nbands == 0 || w->cfg->nqueues == 0)
        return skipq__fail(err, SKIPQ_ERR_CONFIG, "the worker serves no queue or priority");
    return SKIPQ_OK;
}

/* Before the loop: the connection, the executors and the maintenance
 * thread. */
static skipq_rc
run_start(skipq_worker *w, skipq_error *err)
{
    skipq_rc rc;

    if ((rc = check_handlers(w, err)) != SKIPQ_OK)
        return rc;
    if (!w->database)
        w->database = skipq_config_database(w->cfg) ? strdup(skipq_config_database(w->cfg))
                                                    : NULL;
    w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->wake_fd < 0)
        return skipq__fail(err, SKIPQ_ERR_IO, "could not create an eventfd: %s",
                           strerror(errno));
    w->sess.reconnect_delay_ms = 100;
    /* half a heartbeat at most, so a wait cannot make a beat late */
    w->sess.lock_wait_ms = w->cfg->heartbeat_interval_ms / 2;
    if (w->sess.lock_wait_ms > 5000)
        w->sess.lock_wait_ms = 5000;
    if (w->sess.lock_wait_ms < 50)
        w->sess.lock_wait_ms = 50;
    if (w->sess.pooled)
        w->sess.send = (int)w->sess.lock_wait_ms; /* >= SKIPQ__SEND_POOLED_MIN */
    if ((rc = skipq__session_connect(w, err)) != SKIPQ_OK)
        return rc;
    atomic_store(&w->h_schema_ok, true); /* checked by the first connect */
    atomic_store(&w->h_connected, true);
    if ((rc = skipq__schedule_sync(w, w->sess.pg, err)) != SKIPQ_OK) {
        skipq__session_unregister(w);
        return rc;
    }
    if ((rc = skipq__pool_start(&w->pool, w->cfg, w->wake_fd, err)) != SKIPQ_OK) {
        skipq__session_unregister(w);
        return rc;
    }
    w->pool_started = true;
    if ((rc = skipq__maint_start(w, err)) != SKIPQ_OK) {
        skipq__pool_stop(&w->pool);
        w->pool_started = false;
        skipq__session_unregister(w);
        return rc;
    }
    /* what tells another thread the start is over (skipq_worker_id) */
    atomic_store(&w->started_id, w->sess.id);
    skipq__log(SKIPQ_LOG_INFO,
               "worker %lld started: %zu queue(s), priorities %s, concurrency %d",
               (long long)w->sess.id, w->cfg->nqueues,
               skipq_config_priorities(w->cfg) ? skipq_config_priorities(w->cfg) : "all",
               w->cfg->concurrency);
    return SKIPQ_OK;
}

/* Automatic prefetch guessed wrong (long jobs came after short ones):
 * parked jobs go back for other workers, and the wait counts as a run
 * time, so claiming ahead stops until short runs bring the average down
 * again (test
 * auto_prefetch_claims_ahead_for_short_jobs_and_gives_back_parked_ones). */
static void
give_back_parked(skipq_worker *w, int64_t now)
{
    int64_t oldest = skipq__pool_oldest_ready_ms(&w->pool);

    if (!skipq__prefetch_stale(now, oldest))
        return;
    int n = skipq__pull_unstarted(w, false);
    skipq__prefetch_note_stale(&w->prefetch, now - oldest, w->cfg->concurrency);
    skipq__log(SKIPQ_LOG_INFO,
               "worker %lld handed back %d prefetched job(s) "
               "that waited %lld ms for an executor",
               (long long)w->sess.id, n, (long long)(now - oldest));
}

/* The connection's upkeep at the top of a turn: reconnect when due, take
 * NOTIFYs, put back what a failed claim left, read cancel requests. */
static void
tend_session(skipq_worker *w, int64_t now)
{
    worker_session *s = &w->sess;

    if (!s->pg && now >= s->reconnect_at_ms) {
        skipq_error e;
        if (skipq__session_connect(w, &e) != SKIPQ_OK) {
            skipq__log(SKIPQ_LOG_WARN, "worker %lld could not reconnect: %s",
                       (long long)s->id, e.message);
            s->reconnect_delay_ms = skipq__min64(s->reconnect_delay_ms * 2, 5000);
            s->reconnect_at_ms = now + s->reconnect_delay_ms;
        }
    }
    skipq__session_notifies(w);
    if (s->pg && s->reconcile_due) {
        skipq_error e;
        s->reconcile_due = false;
        if (skipq__reconcile(w, &e) != SKIPQ_OK) {
            skipq__log(SKIPQ_LOG_WARN, "%s", e.message);
            s->reconcile_due = true;
            if (skipq__session_broken(s))
                skipq__session_drop(w, e.message);
        }
    }
    if (s->pg && s->check_cancels)
        skipq__session_read_cancels(w);
    if (w->pauses.unread && now >= w->pauses.retry_ms)
        w->pauses.check = true;
    if (s->pg && w->pauses.check)
        skipq__pauses_read(w);
}

/* Finished jobs: drop those already handed back; the rest, with the
 * pending ones now due and the deferred batch, are to be completed.
 * *ndone: how many. */
static skipq_job *
collect_done(skipq_worker *w, int64_t now, int *ndone)
{
    skipq_job *done = NULL, **tail = &done;

    for (skipq_job *j = skipq__pool_take_done(&w->pool), *n; j; j = n) {
        n = j->next;
        j->next = NULL;
        j->done = true;
        skipq__prefetch_note_run(&w->prefetch, j->run_us);
        if (j->handed_back) {
            skipq__held_remove(&w->jobs, j);
            skipq__job_free(j);
            continue;
        }
        if (j->cancel_requested && j->outcome != SKIPQ_JOB_OK)
            j->outcome = SKIPQ_JOB_CANCELLED;
        *tail = j;
        tail = &j->next;
    }
    *tail = skipq__take_due_pending(&w->jobs, now);
    while (*tail)
        tail = &(*tail)->next;
    *tail = w->jobs.batch;
    w->jobs.batch = NULL;
    *ndone = 0;
    for (skipq_job *j = done; j; j = j->next)
        (*ndone)++;
    return done;
}

/* Jobs to claim beyond the executors, now (worker_prefetch.c). */
static int
prefetch_allowance(skipq_worker *w, int64_t now)
{
    int64_t oldest = INT64_MAX;

    if (skipq__prefetch_needs_oldest(&w->prefetch, w->cfg->prefetch))
        oldest = skipq__pool_oldest_ready_ms(&w->pool);
    return skipq__prefetch_allowance(&w->prefetch, w->cfg->prefetch, w->cfg->concurrency,
                                     now, oldest);
}

/* Should the completions of done (ndone jobs) wait for company? Then
 * they become the deferred batch (worker_prefetch.c says when). */
static bool
defer_completions(skipq_worker *w, skipq_job *done, int ndone, int allowance, int64_t now)
{
    int idle = 0;

    if (!done || !w->sess.pg || allowance <= 0)
        return false;
    if (!w->jobs.batch_since_ms)
        w->jobs.batch_since_ms = now;
    if (!skipq__prefetch_may_hold(now, w->jobs.batch_since_ms, ndone, w->cfg->concurrency))
        return false;
    int ready = skipq__pool_ready_count(&w->pool, &idle);
    if (!skipq__prefetch_hold(ready, idle, allowance))
        return false;
    w->jobs.batch = done;
    return true;
}

/* A claim came back short: about to wait for a NOTIFY, so take the idle
 * locks that say so, then look again (a job committed since that claim
 * sent none). */
static void
going_idle(skipq_worker *w)
{
    w->claim.full_since_ms = 0;
    if (w->sess.idle_locked || !w->sess.pg)
        return;
    idle_rc ir = skipq__idle_lock(w, true);
    if (ir == IDLE_DONE)
        w->claim.wake = true;
    else if (ir == IDLE_TAKEN_BY_PRODUCER) /* from now: after the round trips above */
        w->claim.next_poll_ms = skipq__min64(w->claim.next_poll_ms,
                                             skipq__now_ms() + IDLE_RETRY_MS);
}

/* Complete done and claim up to want (0: none) in one cycle, then the
 * other queues and bands if it came back short. */
static void
run_cycle(skipq_worker *w, skipq_job *done, int want, int64_t now)
{
    skipq_job *ready = NULL;
    bool claim = want > 0;
    int got = skipq__cycle(w, done, want, &ready);

    if (got < 0 && w->claim.lock_timed_out && w->sess.pg && w->jobs.pending)
        skipq__complete_singly(w);
    if (got >= 0 && w->sess.pg && claim && got < want &&
        (w->nbands > 1 || w->cfg->nqueues > 1))
        got += skipq__claim_more(w, want - got, &ready);
    skipq__pool_push(&w->pool, ready);
    if (got >= 0 && claim) {
        w->claim.wake = got >= want; /* a full claim: more may wait */
        w->claim.drained = got < want;
        if (got < want && w->sess.pg)
            skipq__schedule_next_run_at(w);
        if (got < want)
            going_idle(w);
        else
            skipq__note_busy(w, now);
    }
    if (got < 0 && w->sess.pg) {
        /* an SQL error that is not a lost connection: back off */
        w->claim.next_poll_ms = skipq__now_ms() + 200;
        w->claim.wake = false;
    }
}

/*
 * One turn's jobs: collect the finished ones and decide what to claim,
 * then complete and claim. Returns the slots (executors plus the
 * prefetch allowance) for the sleep that follows.
 */
static int
turn(skipq_worker *w, int64_t now, bool stopping)
{
    int ndone;
    skipq_job *done = collect_done(w, now, &ndone);

    if (atomic_load(&w->progress_dirty)) /* a plain job never gets here */
        skipq__progress_flush(w, now, done);

    if (now >= w->claim.next_poll_ms) {
        w->claim.wake = true;
        w->claim.next_poll_ms = now + w->cfg->poll_interval_ms;
    }
    if (now >= w->claim.next_run_at_ms) {
        w->claim.wake = true;
        w->claim.next_run_at_ms = INT64_MAX;
    }
    /* After completions, claim too: slots are free, and a retry with
     * no delay is runnable at once. Slots: executors plus the prefetch
     * allowance (jobs that wait here for an executor, already claimed). */
    /* a worker serving a limited queue claims for its executors only:
     * a job claimed ahead would hold a slot without running, and jobs of
     * other queues claimed ahead would leave it no idle executor to claim
     * the limited queue's jobs for */
    int allowance = w->pauses.limited ? 0 : prefetch_allowance(w, now);
    int slots = w->cfg->concurrency + allowance;
    int free_slots = slots - (w->jobs.nheld - ndone);
    if (!stopping && defer_completions(w, done, ndone, allowance, now)) {
        done = NULL;
        free_slots = 0;
    }
    if (!w->jobs.batch)
        w->jobs.batch_since_ms = 0;
    /* a queue with flow control gets no prefetch: executors only */
    w->claim.exec_free = w->cfg->concurrency - (w->jobs.nheld - ndone);
    bool claim = !stopping && free_slots > 0 && (w->claim.wake || done) &&
                 !w->pauses.check && !w->pauses.unread;

    bool completed = w->sess.pg && done;
    if (w->sess.pg && (done || claim))
        run_cycle(w, done, claim ? free_slots : 0, now);
    else if (done)
        skipq__keep_pending(&w->jobs, done); /* no connection: keep them for later */
    if (completed && !w->stall_fired && skipq__failpoint("loop_stall"))
        w->stall_fired = w->stall_due = true;
    if (!stopping && w->sess.pg && free_slots <= 0)
        skipq__note_busy(w, now); /* every slot taken: it claims as one frees */
    if (w->once && !stopping && w->sess.pg && w->claim.drained && !w->claim.wake &&
        w->jobs.nheld == 0 && !w->jobs.pending)
        atomic_store(&w->stop_requested, 1);
    return slots;
}

/*
 * How the loop ends. A stop has a deadline (shutdown_timeout); a
 * retirement has none, so no running job is handed back and run again
 * elsewhere (test reload_under_load_runs_every_job_once), until a stop
 * comes too and starts the deadline then.
 */
typedef struct run_end {
    bool stopping; /* no more claims */
    bool retiring; /* stopping with no deadline */
    int64_t deadline;
    int lost;
} run_end;

/* A stop or a retirement asked for: stop claiming, and hand back the
 * prefetched jobs no executor has started rather than start them now. */
static void
note_stop(skipq_worker *w, int64_t now, run_end *e)
{
    bool stop = atomic_load(&w->stop_requested);

    if (e->stopping) {
        if (e->retiring && stop) {
            e->retiring = false;
            e->deadline = now + w->cfg->shutdown_timeout_ms;
            skipq__log(SKIPQ_LOG_INFO,
                       "worker %lld stopping while retiring: %d job(s) held",
                       (long long)w->sess.id, w->jobs.nheld);
        }
        return;
    }
    if (w->fatal && !stop) {
        stop = true;
        skipq__log(SKIPQ_LOG_ERROR, "worker %lld: %s", (long long)w->sess.id,
                   w->fatal_err.message);
    }
    if (!stop && !atomic_load(&w->retire_requested))
        return;
    e->stopping = true;
    e->retiring = !stop;
    e->deadline = stop ? now + w->cfg->shutdown_timeout_ms : INT64_MAX;
    if (stop)
        skipq__log(SKIPQ_LOG_INFO, "worker %lld stopping: %d job(s) held",
                   (long long)w->sess.id, w->jobs.nheld);
    else
        skipq__log(SKIPQ_LOG_INFO,
                   "worker %lld retiring: %d job(s) held; running ones finish here",
                   (long long)w->sess.id, w->jobs.nheld);
    skipq__pull_unstarted(w, true);
}

/* Does a held job still run (or wait for its result to be written)? */
static bool
any_running(const skipq_worker *w)
{
    if (w->jobs.pending)
        return true;
    for (const skipq_job *j = w->jobs.held; j; j = j->hnext)
        if (!j->done && !j->handed_back)
            return true;
    return false;
}

/* While stopping: true when the loop is over. Past the deadline, what
 * still runs is stopped and its rows put back with the attempt handed
 * back; completions that cannot be written now are left for the
 * rescuer, which finds them once our lock is gone (e->lost: how many).
 * A retirement whose jobs all finished but some unstarted ones could not
 * be handed back ends as a stop past its deadline would. */
static bool
stop_turn(skipq_worker *w, int64_t now, run_end *e)
{
    if (w->jobs.nheld == 0 && !w->jobs.pending)
        return true;
    if (e->retiring && !any_running(w))
        e->deadline = now;
    if (now < e->deadline)
        return false;
    for (skipq_job *j = w->jobs.held; j; j = j->hnext) {
        if (j->done)
            continue;
        atomic_store(&j->stop, 2);
        int pgid = atomic_load(&j->pgid);
        if (pgid > 0)
            kill(-pgid, SIGKILL);
    }
    skipq__hand_back_rows(w, false);
    if (w->jobs.pending || !w->sess.pg || now >= e->deadline + 5000) {
        e->lost = skipq__report_unrecorded(w);
        return true;
    }
    return false;
}

/* Sleep until something happens: a finished job or a stop (the eventfd),
 * a NOTIFY (the socket), or the next timer. */
static void
sleep_turn(skipq_worker *w, int64_t now, bool stopping, int slots)
{
    PGconn *pg = w->sess.pg;
    int64_t until = w->claim.next_poll_ms;

    if (pg) {
        until = skipq__min64(until, w->sess.next_beat_ms);
        until = skipq__min64(until, w->claim.next_run_at_ms);
    } else {
        /* timers that need the database wait for the reconnect */
        until = skipq__min64(until, w->sess.reconnect_at_ms);
    }
    if (stopping)
        until = skipq__min64(until, now + 50);
    if (pg && w->cfg->prefetch == SKIPQ_PREFETCH_AUTO) /* check parked jobs in time */
        until = skipq__min64(
            until, skipq__prefetch_check_at(skipq__pool_oldest_ready_ms(&w->pool)));
    if (pg && w->claim.wake && !stopping && w->jobs.nheld < slots && !w->jobs.batch &&
        !w->pauses.unread)
        until = now;
    if (pg && w->pauses.unread)
        until = skipq__min64(until, w->pauses.retry_ms);
    if (w->jobs.batch)
        until = skipq__min64(until, w->jobs.batch_since_ms + SKIPQ__AUTO_WAIT_MS);
    if (pg && w->jobs.pending)
        until = skipq__min64(until, skipq__pending_due_ms(&w->jobs));
    if (pg)
        until = skipq__min64(until, skipq__progress_due_ms(w));
    now = skipq__now_ms();
    int timeout = until <= now ? 0 : (int)skipq__min64(until - now, 60000);
    /* behind a pooler, NOTIFYs come on the direct connection (lpg) */
    PGconn *lpg = w->sess.lpg;
    struct pollfd p[3] = {{w->wake_fd, POLLIN, 0}, {-1, POLLIN, 0}, {-1, POLLIN, 0}};
    if (pg)
        p[1].fd = PQsocket(pg);
    if (pg && lpg)
        p[2].fd = PQsocket(lpg);
    if (poll(p, pg ? 3 : 1, timeout) > 0) {
        if (p[0].revents)
            drain_wake_fd(w);
        if (pg && p[1].revents && PQconsumeInput(pg) != 1)
            skipq__session_drop(w, PQerrorMessage(pg));
        else if (pg && lpg && p[2].revents && PQconsumeInput(lpg) != 1)
            skipq__session_drop(w, PQerrorMessage(lpg));
    }
}

skipq_rc
skipq_worker_run(skipq_worker *w, skipq_error *err)
{
    skipq_rc rc;
    run_end end = {0};

    atomic_store(&w->loop_ms, skipq__now_ms()); /* the start counts as a turn */
    if ((rc = run_start(w, err)) != SKIPQ_OK) {
        atomic_store(&w->h_ended, true);
        atomic_store(&w->h_connected, false);
        return rc;
    }
    int64_t now = skipq__now_ms();
    w->claim.next_poll_ms = now;
    w->sess.next_beat_ms = now + w->cfg->heartbeat_interval_ms;
    w->claim.next_run_at_ms = INT64_MAX;

    for (;;) {
        now = skipq__now_ms();
        note_stop(w, now, &end);
        if (!end.stopping && !skipq__session_broken(&w->sess) &&
            w->cfg->prefetch == SKIPQ_PREFETCH_AUTO)
            give_back_parked(w, now);
        tend_session(w, now);
        int slots = turn(w, now, end.stopping);
        if (w->stall_due) {
            w->stall_due = false;
            failpoint_stall(w);
        }
        if (end.stopping && stop_turn(w, now, &end))
            break;
        if (w->sess.pg && now >= w->sess.next_beat_ms) {
            skipq__session_heartbeat(w);
            w->sess.next_beat_ms = now + w->cfg->heartbeat_interval_ms;
        }
        /* Notifications that arrived while a statement ran are already
         * read off the socket: take them now, or poll() would not see
         * them until the next timer. */
        skipq__session_notifies(w);
        publish(w, now, end.stopping); /* what this turn did, before sleeping */
        sleep_turn(w, now, end.stopping, slots);
    }

    /* Join the executors so no thread outlives the run; jobs they return
     * now stay in the held list and are freed with the worker. */
    skipq__pool_stop(&w->pool);
    w->pool_started = false;
    skipq__maint_stop(w);
    skipq__session_unregister(w);
    if (w->sess.pg) {
        PQfinish(w->sess.pg);
        w->sess.pg = NULL;
    }
    if (w->sess.lpg) {
        PQfinish(w->sess.lpg);
        w->sess.lpg = NULL;
    }
    atomic_store(&w->gauge_held, 0);
    atomic_store(&w->h_connected, false);
    atomic_store(&w->h_ended, true);
    if (w->fatal) {
        if (err)
            *err = w->fatal_err;
        return w->fatal_err.code;
    }
    if (end.lost > 0)
        return skipq__fail(err, SKIPQ_ERR_DB,
                           "worker %lld stopped with %d job(s) whose results or hand-back "
                           "could not be written (listed above); they stay running until "
                           "rescued, and run again",
                           (long long)w->sess.id, end.lost);
    skipq__log(SKIPQ_LOG_INFO, "worker %lld stopped", (long long)w->sess.id);
    return SKIPQ_OK;
}
