/*
 * worker.h - the worker's state, split by the module that owns each part,
 * and what those modules (worker*.c) call of each other. Private to them.
 *
 *   worker.c          public API and the main loop
 *   worker_session.c  the job connection: connect, register, liveness,
 *                     LISTEN, heartbeat, cancels, idle locks
 *   worker_claim.c    claims, claim floors, queue rotation, the cycle
 *   worker_complete.c held jobs, outcomes to rows, hand-back, reconcile
 *   worker_prefetch.c how many jobs to claim ahead (pure)
 *   worker_maint.c    the maintenance thread: rescue, retention, vacuum
 *   worker_pause.c    paused queues and kinds, as skipq.queues says
 */
#ifndef SKIPQ_WORKER_H
#define SKIPQ_WORKER_H

#include "statements.h"
#include "worker_internal.h"
#include "worker_prefetch.h"

/* The job connection and the worker's registration (worker_session.c). */
typedef struct worker_session {
    PGconn *pg;      /* NULL while disconnected */
    int64_t id;      /* skipq.workers.id, 0 before registering */
    char secret[40]; /* the worker's secret (skipq.worker_register) */
    /* How statements go (SKIPQ__SEND_*, statements.h): by name; unnamed
     * (SKIPQ_UNNAMED_STATEMENTS=1); or, pooled, unnamed with their own
     * lock_timeout (lock_wait_ms) in each transaction. */
    int send;
    /* Behind a transaction pooler (worker.listen_database, or
     * worker.listen: false): pg holds no session state; LISTEN, the
     * liveness lock and the idle locks go on lpg, the direct connection
     * to listen_database, or nowhere (listen: false, poll only). */
    bool pooled;
    PGconn *lpg;
    int64_t lock_wait_ms; /* lock_timeout of the job connection */
    int64_t reconnect_at_ms;
    int64_t reconnect_delay_ms;
    int64_t next_beat_ms;   /* monotonic */
    bool idle_locked;       /* this session holds its queues' idle locks */
    bool alive_locked;      /* this session holds the worker's liveness lock */
    bool alive_lock_warned; /* said that it could not take it */
    bool check_cancels;     /* read cancel_requested_at of the held jobs */
    bool reconcile_due;     /* a claimed row could not be taken: put it back */
} worker_session;

/*
 * Where the last full claim of one queue and band ended, and when that
 * band was last claimed from the head: claims start after it
 * (skipq__claim_after_sql) for up to FLOOR_MS after a claim from the
 * head. A claim from the floor that takes nothing while the claim from
 * the head after it takes rows turns floors off for the band for
 * FLOOR_MS: that is what a queued row of a higher priority that is not
 * due, or of a kind no handler here takes, does to every claim from the
 * floor, and it would be two claims every time. (A claim from the floor
 * that takes some rows and comes back short is the normal end of a
 * backlog, or a queue that keeps up with its producer; floors stay on.)
 */
typedef struct claim_floor {
    bool set;
    int16_t priority;
    int64_t id;
    int64_t head_ms;      /* monotonic */
    int64_t off_until_ms; /* no floor before this */
    char run_at[SKIPQ__NOW_LEN];
} claim_floor;

enum { FLOOR_MS = 1000 };

/* What to claim, and when (worker_claim.c). */
typedef struct claim_state {
    bool wake;              /* there may be runnable work: claim */
    int64_t next_poll_ms;   /* monotonic */
    int64_t next_run_at_ms; /* earliest future run_at seen, or INT64_MAX */
    /* now() of the last claim's transaction at the head of the rotation,
     * as the server printed it; "" before the first */
    char claim_now[SKIPQ__NOW_LEN];
    size_t qstart;         /* queue rotation, for fairness */
    claim_floor *floors;   /* [queue * nbands + band] */
    bool drained;          /* the last claim succeeded and came back short */
    bool lock_timed_out;   /* the last failed cycle waited too long for a lock */
    int64_t full_since_ms; /* busy (full claims, or every slot taken) since;
                             * 0 after a short claim */
    int exec_free;         /* executors free for this turn's claims: what a
                            * queue with flow control may claim (no prefetch) */
} claim_state;

/* The jobs this worker holds, from claim to completion (worker_complete.c). */
typedef struct worker_jobs {
    skipq_job *held; /* claimed and not yet completed (hnext) */
    int nheld;
    skipq_job *pending;     /* finished, completion not yet committed */
    skipq_job *batch;       /* finished, completion deferred (main loop) */
    int64_t batch_since_ms; /* when the oldest of them was seen, 0 none */
    unsigned rand_state;    /* the retry delays' jitter */
} worker_jobs;

/* Paused queues and kinds (worker_pause.c), as the worker last read
 * skipq.queues. Read only when told (a control NOTIFY, a reconnect, a
 * heartbeat): a queue never paused costs the claims one test of `any`. */
typedef struct worker_pauses {
    bool check;    /* read the table at the next turn */
    bool any;      /* some queue of ours, or a kind in one, is paused */
    bool *blocked; /* [queue]: paused, or every kind we handle is */
    char ***kinds; /* [queue]: NULL-terminated paused kinds, or NULL */
    /* Flow control: a queue with settings is claimed from through
     * skipq.claim_controlled, without prefetch; one without costs the
     * claims one test of `limited`. */
    bool limited;     /* some queue of ours has settings: no prefetch */
    bool rated;       /* some queue of ours has a rate limit */
    bool *controlled; /* [queue]: has settings (when limited) */
    bool unread;      /* the last read failed: claim nothing until one works */
    int64_t retry_ms; /* then: when to read again */
} worker_pauses;

/* The maintenance thread and its connection (worker_maint.c). */
typedef struct worker_maint {
    pthread_t thread;
    bool started;
    bool skipped;     /* maintenance thread: VACUUM (SKIP_LOCKED) skipped */
    bool quit;        /* under mu */
    bool done;        /* under mu: the thread is about to end */
    PGcancel *cancel; /* under mu: its statement, at stop */
    pthread_mutex_t mu;
    pthread_cond_t cv;
} worker_maint;

struct skipq_worker {
    skipq_config *cfg;
    char *database;
    handler *handlers;
    size_t nhandlers;
    char **kinds;       /* NULL-terminated, for the claim's kind filter */
    skipq__band *bands; /* merged, highest first */
    size_t nbands;
    bool once;
    bool log_payloads; /* --log-payloads: payloads are private by default */
    int wake_fd;
    atomic_int stop_requested;
    atomic_int retire_requested; /* skipq_worker_retire: stop without a deadline */
    /* An error the worker cannot work past (a pooler it was not told
     * of): it stops as if asked to, and skipq_worker_run returns it.
     * Main thread only. */
    bool fatal;
    skipq_error fatal_err;
    _Atomic int64_t started_id; /* sess.id once run_start is done (any thread) */
    exec_pool pool;
    bool pool_started;

    worker_session sess;
    claim_state claim;
    worker_jobs jobs;
    worker_maint maint;
    skipq__prefetch_stats prefetch;
    worker_pauses pauses;

    /* The registry this worker feeds (metrics.c), NULL none: the hot
     * path pays one test of it per job. */
    skipq_metrics *metrics;
    /* What skipq_worker_health_get() and the registry's gauges read from
     * other threads; the main thread publishes them each turn. */
    _Atomic int64_t loop_ms; /* monotonic: the main loop's last turn; 0 before run */
    atomic_int gauge_held;   /* jobs held: claimed, completion not committed */
    atomic_bool h_connected, h_schema_ok, h_stopping, h_ended;
    bool stall_due, stall_fired; /* failpoint loop_stall (test builds) */

    /* handlers' progress reports (worker_progress.c) */
    pthread_mutex_t progress_mu; /* the held jobs' progress fields */
    atomic_bool progress_dirty;  /* a held job has a report to write */
    int64_t progress_next_ms;    /* main thread: no routine write before */
};

static inline int64_t
skipq__min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* ---- worker.c ---- */
void skipq__log_job(skipq_log_level lvl, const char *event, const skipq_job *job,
                    const char *fmt, ...) SKIPQ__PRINTF(4, 5);

/* ---- metrics.c (only when w->metrics) ---- */
/* j's completion committed: count its outcome (j->decided), timeout and
 * run time. */
void skipq__metrics_note_done(skipq_metrics *m, const skipq_job *j);
/* A job claimed seconds after it became runnable. */
void skipq__metrics_note_pickup(skipq_metrics *m, const char *queue, const char *kind,
                                double seconds);
/* The rescuer's commit put a job of kind back (or failed it). */
void skipq__metrics_note_rescue(skipq_metrics *m, const char *kind, bool failed);
/* skipq_worker_free: w's gauges leave the registry. */
void skipq__metrics_detach(skipq_metrics *m, skipq_worker *w);

/* ---- worker_session.c ---- */
skipq_rc skipq__session_connect(skipq_worker *w, skipq_error *err);
void skipq__session_drop(skipq_worker *w, const char *why);
bool skipq__session_broken(const worker_session *s);
/* The connection that holds LISTEN, the liveness lock and the idle
 * locks: the job connection, or behind a pooler the direct one (NULL
 * with worker.listen: false and no listen_database). */
PGconn *skipq__session_locks_pg(const skipq_worker *w);
/* Is this SQLSTATE a prepared statement that a transaction pooler lost
 * or mixed up? (42P05, 26000) */
bool skipq__pooler_sqlstate(const char *state);
/* rc and err from a failed statement on the job connection: when it is
 * that, and the worker is not configured for a pooler, SKIPQ_ERR_CONFIG
 * saying what to set; else rc unchanged. */
skipq_rc skipq__pooler_check(skipq_worker *w, skipq_rc rc, skipq_error *err);
void skipq__session_heartbeat(skipq_worker *w);
void skipq__session_unregister(skipq_worker *w);
void skipq__session_notifies(skipq_worker *w);
void skipq__session_read_cancels(skipq_worker *w);
/* A PGparam whose first parameter is the worker's queues as a text[]. */
bool skipq__queues_param(skipq_worker *w, PGconn *pg, PGparam **prm, PGparam **qs);
/* (PQparamExec frees a failed statement's result and returns NULL; the
 * error's fields stay readable through PQgetErrorField) */
bool skipq__lock_timed_out(const PGresult *res);
typedef enum { IDLE_FAILED = -1, IDLE_TAKEN_BY_PRODUCER = 0, IDLE_DONE = 1 } idle_rc;
enum { IDLE_RETRY_MS = 10 };
idle_rc skipq__idle_lock(skipq_worker *w, bool on);
void skipq__note_busy(skipq_worker *w, int64_t now);

/* ---- worker_claim.c ---- */
/* Complete `done` and claim up to `want` from the next queue in turn, in
 * one round trip. Returns the number claimed, -1 when it failed. */
int skipq__cycle(skipq_worker *w, skipq_job *done, int want, skipq_job **ready);
/* After a short first claim: the other queues, then the lower bands. */
int skipq__claim_more(skipq_worker *w, int want, skipq_job **ready);
void skipq__schedule_next_run_at(skipq_worker *w);
/* Complete `done` alone (complete_singly); -1 when it failed. */
int skipq__complete_only(skipq_worker *w, skipq_job *done);

/* ---- worker_complete.c ---- */
void skipq__held_add(worker_jobs *jobs, skipq_job *j);
void skipq__held_remove(worker_jobs *jobs, skipq_job *j);
skipq_job *skipq__held_find(const worker_jobs *jobs, int64_t id);
/* The completion statement's parameters for list; NULL: out of memory. */
PGparam *skipq__completion_param(skipq_worker *w, skipq_job *list);
/* Its result committed: log, forget the jobs. */
void skipq__finish_jobs(skipq_worker *w, skipq_job *list, PGresult *res);
void skipq__keep_pending(worker_jobs *jobs, skipq_job *list);
skipq_job *skipq__take_due_pending(worker_jobs *jobs, int64_t now);
int64_t skipq__pending_due_ms(const worker_jobs *jobs);
void skipq__complete_singly(skipq_worker *w);
skipq_rc skipq__reconcile(skipq_worker *w, skipq_error *err);
void skipq__hand_back_rows(skipq_worker *w, bool only_pulled);
int skipq__pull_unstarted(skipq_worker *w, bool stopping);
int skipq__report_unrecorded(skipq_worker *w);

/* ---- worker_pause.c ---- */
/* Read skipq.queues: pauses and which queues have flow control; hand
 * back prefetched jobs that became paused or limited. */
void skipq__pauses_read(skipq_worker *w);
void skipq__pauses_free(skipq_worker *w);
/* Is kind paused in queue qi? (only when w->pauses.any) */
bool skipq__kind_paused(const skipq_worker *w, size_t qi, const char *kind);
static inline bool
skipq__queue_blocked(const skipq_worker *w, size_t qi)
{
    return w->pauses.any && w->pauses.blocked[qi];
}
static inline bool
skipq__queue_controlled(const skipq_worker *w, size_t qi)
{
    return w->pauses.limited && w->pauses.controlled[qi];
}

/* ---- worker_progress.c ---- */
/* Write the held jobs' progress reports when due, or at once when a job
 * of done (about to be completed) has one. */
void skipq__progress_flush(skipq_worker *w, int64_t now, const skipq_job *done);
/* When the next write is due (INT64_MAX: nothing to write). */
int64_t skipq__progress_due_ms(skipq_worker *w);

/* ---- worker_maint.c ---- */
skipq_rc skipq__maint_start(skipq_worker *w, skipq_error *err);
void skipq__maint_stop(skipq_worker *w);
/* worker_schedule.c: the config's schedules at start; the tick, which
 * returns the milliseconds until the next one */
skipq_rc skipq__schedule_sync(skipq_worker *w, PGconn *pg, skipq_error *err) SKIPQ__WUR;
int64_t skipq__schedule_tick(PGconn *pg, bool quiet);

#endif
