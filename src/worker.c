/*
 * worker.c - the loop that turns rows into work.
 *
 * One thread (the caller of skipq_worker_run) owns the connection the
 * jobs go through: claim, complete, heartbeat, LISTEN. A maintenance
 * thread owns a second connection for the rescuer and retention, whose
 * scans took up to 130 ms at a time off the claiming connection.
 * Handlers run on the executor threads of exec.c. A cycle sends the
 * completions of finished jobs and the next claim in one pipeline, which
 * is one round trip and one commit.
 *
 * Guarantees kept here:
 *  - a completion matches only the claim it belongs to (locked_by = us
 *    and claims = the token of that claim), so a job the rescuer took
 *    away is never completed by us (0 rows: logged, not retried);
 *  - a lost connection loses nothing: finished results wait in memory,
 *    and after reconnecting we put back rows still marked ours that we
 *    never received (a claim whose reply was lost);
 *  - on stop, unfinished jobs go back to queued with the attempt handed
 *    back.
 */
#include "worker_internal.h"

#include <errno.h>
#include <json-c/json.h>
#include <libpqtypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

const char *skipq__signame(int sig);

/* Room for a timestamptz as text. */
enum { SKIPQ__NOW_LEN = 64 };

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
typedef struct {
    bool set;
    int16_t priority;
    int64_t id;
    int64_t head_ms;      /* monotonic */
    int64_t off_until_ms; /* no floor before this */
    char run_at[SKIPQ__NOW_LEN];
} claim_floor;

enum { FLOOR_MS = 1000 };

/* A worker gives its idle locks up after this long busy (note_busy). */
enum { IDLE_RELEASE_MS = 100 };
/* How long a worker going idle waits for its idle locks (idle_lock). */
#define IDLE_WAIT_MS 20

struct skipq_worker {
    skipq_config *cfg;
    char *database;
    handler *handlers;
    size_t nhandlers;
    char **kinds; /* NULL-terminated, for the claim's kind filter */
    skipq__band *bands; /* merged, highest first */
    size_t nbands;
    bool once;
    bool log_payloads; /* --log-payloads: payloads are private by default */

    PGconn *pg;
    int64_t id;
    int wake_fd;
    atomic_int stop_requested;
    exec_pool pool;
    bool pool_started;

    skipq_job *held; /* claimed and not yet completed */
    int nheld;
    skipq_job *pending; /* finished, completion not yet committed */
    skipq_job *batch;   /* finished, completion deferred (main loop) */
    int64_t batch_since_ms; /* when the oldest of them was seen, 0 none */

    bool wake;            /* there may be runnable work: claim */
    int64_t next_poll_ms; /* monotonic */
    int64_t next_beat_ms;
    /* the maintenance thread: rescuer and retention, on its own
     * connection (maintenance()) */
    pthread_t maint;
    bool maint_started;
    bool maint_skipped;     /* maintenance thread: VACUUM (SKIP_LOCKED) skipped */
    bool maint_quit;        /* under maint_mu */
    bool maint_done;        /* under maint_mu: the thread is about to end */
    PGcancel *maint_cancel; /* under maint_mu: its statement, at stop */
    pthread_mutex_t maint_mu;
    pthread_cond_t maint_cv;
    int64_t next_run_at_ms; /* earliest future run_at seen, or INT64_MAX */
    /* now() of the last claim's transaction at the head of the rotation,
     * as the server printed it; "" before the first */
    char claim_now[SKIPQ__NOW_LEN];
    int64_t reconnect_at_ms;
    int64_t reconnect_delay_ms;
    unsigned rand_state;
    size_t qstart; /* queue rotation, for fairness */
    claim_floor *floors; /* [queue * nbands + band] */
    bool drained;  /* the last claim succeeded and came back short */
    bool idle_locked;     /* this session holds its queues' idle locks */
    bool alive_locked;    /* this session holds the worker's liveness lock */
    bool alive_lock_warned; /* said that it could not take it */
    bool check_cancels;   /* read cancel_requested_at of the held jobs */
    bool reconcile_due;   /* a claimed row could not be taken: put it back */
    int64_t lock_wait_ms; /* lock_timeout of the job connection */
    char secret[40];      /* the worker's secret (skipq.worker_register) */
    bool cycle_lock_timeout; /* the last failed cycle waited too long for a lock */
    int64_t full_since_ms; /* busy (full claims, or every slot taken) since;
                            * 0 after a short claim */

    /* automatic prefetch: handler run time, moving average */
    double run_avg_us;
    int run_samples;
};

static int64_t
min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

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

/* ---- logging ------------------------------------------------------------- */

static void
log_job(skipq_log_level lvl, const char *event, const skipq_job *job,
        const char *fmt, ...) SKIPQ__PRINTF(4, 5);
static void
log_job(skipq_log_level lvl, const char *event, const skipq_job *job,
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
        .level = lvl, .msg = msg, .event = event,
        .job_id = job ? job->id : 0, .kind = job ? job->kind : NULL,
        .queue = job ? job->queue : NULL, .attempt = job ? job->attempt : 0,
        .duration_ms = job ? job->duration_ms : -1,
    };
    skipq__log_event(&ev);
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
    snprintf(msg, sizeof msg, "job %lld claimed (%s, attempt %d)",
             (long long)job->id, job->kind, job->attempt);
    skipq_log_event ev = {
        .level = SKIPQ_LOG_INFO, .msg = msg, .event = "claimed",
        .job_id = job->id, .kind = job->kind, .queue = job->queue,
        .attempt = job->attempt, .duration_ms = -1,
        .payload = job->payload_text,
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
    w = calloc(1, sizeof *w);
    if (!w)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
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
    w->floors = calloc((w->cfg->nqueues ? w->cfg->nqueues : 1) * (w->nbands ? w->nbands : 1),
                       sizeof *w->floors);
    if (!w->floors)
        goto nomem;
    for (size_t i = 0; i < w->cfg->nhandlers; i++) {
        const skipq__handler_cfg *hc = &w->cfg->handlers[i];
        handler *nh = realloc(w->handlers, (w->nhandlers + 1) * sizeof *nh);
        if (!nh)
            goto nomem;
        w->handlers = nh;
        nh[w->nhandlers] = (handler){.kind = hc->kind, .argv = hc->argv,
                                     .timeout_ms = hc->timeout_ms};
        w->nhandlers++;
    }
    w->rand_state = (unsigned)time(NULL) ^ (unsigned)getpid();
    *out = w;
    return SKIPQ_OK;
nomem:
    skipq_worker_free(w);
    return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
}

static void maint_stop(skipq_worker *w);

void
skipq_worker_free(skipq_worker *w)
{
    if (!w)
        return;
    if (w->pool_started)
        skipq__pool_stop(&w->pool);
    maint_stop(w);
    for (skipq_job *j = w->held, *n; j; j = n) {
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
    free(w->floors);
    free(w->database);
    if (w->pg)
        PQfinish(w->pg);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    skipq_config_free(w->cfg);
    free(w);
}

skipq_rc
skipq_worker_register(skipq_worker *w, const char *kind, skipq_handler_fn fn,
                      void *userdata, skipq_error *err)
{
    skipq_rc rc = skipq__check_name("kind", kind, err);

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
    return w->id;
}

void
skipq_worker_stop(skipq_worker *w)
{
    uint64_t one = 1;
    atomic_store(&w->stop_requested, 1);
    if (w->wake_fd >= 0) {
        ssize_t r = write(w->wake_fd, &one, sizeof one);
        (void)r;
    }
}

static const handler *
find_handler(const skipq_worker *w, const char *kind)
{
    for (size_t i = 0; i < w->nhandlers; i++)
        if (strcmp(w->handlers[i].kind, kind) == 0)
            return &w->handlers[i];
    return NULL;
}

/* ---- prefetch -------------------------------------------------------------- */

/*
 * Automatic prefetch (worker.prefetch: auto). Claiming ahead raises the
 * rows per round trip, and so per commit: on no-op jobs, 16 executors and
 * one worker, 2.5x the drain rate of claiming only for free executors. The
 * price is a job parked in this worker, already `running`, while another
 * worker may be idle. So claim ahead only what the executors will start
 * within about AUTO_WAIT_MS by the measured run time, and nothing while a
 * parked job already waits longer (the executors are stuck on long jobs).
 */
enum {
    AUTO_WAIT_MS = 5,      /* a parked job, or a completion, waits about this long */
    AUTO_MIN_SAMPLES = 16, /* runs measured before claiming ahead */
    AUTO_CAP = 256,        /* 1.25x the drain of 128 with two workers; 512 no better */
    AUTO_STALE_MS = 100,   /* a parked job waiting longer goes back */
};

static void
note_run_time(skipq_worker *w, const skipq_job *j)
{
    if (j->run_us <= 0)
        return;
    double us = (double)j->run_us;
    w->run_avg_us = w->run_samples == 0 ? us : w->run_avg_us + (us - w->run_avg_us) / 32.0;
    if (w->run_samples < INT_MAX)
        w->run_samples++;
}

/* Jobs to claim beyond the executors, now. */
static int
prefetch_allowance(skipq_worker *w, int64_t now)
{
    int set = w->cfg->prefetch;
    if (set != SKIPQ_PREFETCH_AUTO)
        return set;
    if (w->run_samples < AUTO_MIN_SAMPLES)
        return 0;
    if (now - skipq__pool_oldest_ready_ms(&w->pool) > AUTO_WAIT_MS)
        return 0;
    double n = (double)w->cfg->concurrency * AUTO_WAIT_MS * 1000.0 /
               (w->run_avg_us > 1.0 ? w->run_avg_us : 1.0);
    return n >= AUTO_CAP ? AUTO_CAP : (int)n;
}

/* ---- statements ---------------------------------------------------------- */

/*
 * The priorities of the queued rows of queue $1 in the band $2..$3,
 * highest first, one index descent each (a loose index scan), ending in
 * a NULL. The claim and the next-run-at lookup walk the band one priority
 * at a time because only with priority fixed is `run_at` a bound of the
 * index range (queue, priority DESC, run_at, id): over a whole band, the
 * rows waiting for a later run_at had to be read and skipped by every
 * claim that came back short (300,000 jobs scheduled for tomorrow: a
 * sequential scan, 58 ms per claim) and by every next-run-at lookup
 * (149 ms). The test claim_and_next_run_at_skip_scheduled_rows guards it.
 */
#define SKIPQ_BAND_PRIORITIES(queue)                                                     \
    " p(pri) AS ("                                                                      \
    "  SELECT max(priority) FROM skipq.jobs WHERE status" SKIPQ__EQ "'queued'"          \
    "     AND queue = " queue " AND priority BETWEEN $2::int2 AND $3::int2"              \
    "  UNION ALL"                                                                       \
    "  SELECT (SELECT max(priority) FROM skipq.jobs WHERE status" SKIPQ__EQ "'queued'"  \
    "     AND queue = " queue " AND priority >= $2::int2 AND priority < p.pri)"          \
    "   FROM p WHERE p.pri IS NOT NULL)"

/* The update and the result of a claim, from the locked ids in c. */
#define SKIPQ_CLAIM_TAKE                                                                \
    " u AS (UPDATE skipq.jobs j SET status = 'running', attempts = j.attempts + 1,"    \
    "   claims = j.claims + 1, locked_by = $6::int8, started_at = now(),"             \
    "   updated_at = now()"                                                           \
    "  WHERE j.id = ANY (ARRAY(SELECT id FROM c))"                                    \
    "  RETURNING j.id, j.claims, j.kind, j.queue, j.priority, j.attempts,"            \
    "   j.payload::text, coalesce(j.max_attempts, 0),"                                \
    "   coalesce(j.backoff_strategy::text, ''),"                                      \
    "   coalesce((extract(epoch FROM j.backoff_base) * 1000.0)::int8, -1),"           \
    "   coalesce((extract(epoch FROM j.backoff_max) * 1000.0)::int8, -1),"            \
    "   coalesce((extract(epoch FROM j.timeout) * 1000.0)::int8, 0),"                 \
    "   j.cancel_requested_at IS NOT NULL, j.run_at)"                                 \
    " SELECT * FROM u ORDER BY priority DESC, run_at, id"

/*
 * Claim in claim order (priority DESC, run_at, id) from one queue and
 * priority band: per priority, highest first, the runnable rows in run_at
 * order, until $5 are locked. The locked set is materialized first: with
 * `UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`
 * the planner may re-run the subquery and claim more than n rows. Rows
 * are locked only as the outer LIMIT pulls them, so no more than $5 are
 * locked, and a lower priority is read only when the higher ones ran out.
 * The update finds them with `id = ANY (ARRAY(...))`, not a join: the
 * generic plan does not know $5 and guessed a tenth of the table, and
 * joined by hashing a sequential scan of it (89 ms at 100,000 rows). The
 * rows come back in claim order, the order the executors start them in.
 */
#define SKIPQ_CLAIM_SQL                                                                \
    "WITH RECURSIVE" SKIPQ_BAND_PRIORITIES("$1::text") ","                              \
    " c AS MATERIALIZED ("                                                              \
    "  SELECT k.id FROM p CROSS JOIN LATERAL ("                                         \
    "   SELECT id FROM skipq.jobs"                                                      \
    "    WHERE status" SKIPQ__EQ "'queued' AND queue = $1::text AND priority = p.pri"   \
    "      AND run_at <= now() AND kind = ANY ($4::text[])"                             \
    "    ORDER BY run_at, id LIMIT $5::int4"                                            \
    "    FOR NO KEY UPDATE SKIP LOCKED) k"                                              \
    "  LIMIT $5::int4)," SKIPQ_CLAIM_TAKE
const char skipq__claim_sql[] = SKIPQ_CLAIM_SQL;

/*
 * The claim from where the last one ended. Every claimed job leaves a
 * dead entry at the head of its range in jobs_runnable_idx until vacuum
 * removes it, and a claim from the head reads past all of them, twice
 * (the band's first priority, then its range): under a steady load the
 * first 100 queued rows cost 200 buffers just after an autovacuum and
 * 2,900 a minute later, just before the next. After a full claim, the
 * next ones start after the last row it took ($7 priority, $8 run_at,
 * $9 id), in that priority only, and only while no row of a higher
 * priority in the band is queued. A row behind that floor (its claimer
 * rolled back, it was given back, or enqueued with a past run_at) is
 * taken by the next claim from the head: the worker makes one whenever a
 * claim from the floor comes back short, and at least every FLOOR_MS.
 */
#define SKIPQ_CLAIM_AFTER_SQL                                                          \
    "WITH c AS MATERIALIZED ("                                                          \
    "  SELECT id FROM skipq.jobs"                                                       \
    "   WHERE status" SKIPQ__EQ "'queued' AND queue = $1::text AND priority = $7::int2" \
    "     AND (run_at, id) > ($8::text::timestamptz, $9::int8)"                         \
    "     AND run_at <= now() AND kind = ANY ($4::text[])"                              \
    "     AND $7::int2 >= $2::int2"                                                     \
    "     AND NOT EXISTS (SELECT FROM skipq.jobs h WHERE h.status" SKIPQ__EQ "'queued'" \
    "       AND h.queue = $1::text AND h.priority > $7::int2 AND h.priority <= $3::int2)" \
    "   ORDER BY run_at, id LIMIT $5::int4"                                             \
    "   FOR NO KEY UPDATE SKIP LOCKED)," SKIPQ_CLAIM_TAKE
const char skipq__claim_after_sql[] = SKIPQ_CLAIM_AFTER_SQL;

/*
 * Milliseconds until the earliest queued job of queues $1 in the band
 * $2..$3 that was not runnable yet when the claim ran ($4: the claim
 * transaction's now(); NULL: now), or NULL. A row that became due since
 * gives 0 or less: claim again at once. A row that was runnable then and
 * that the claim left (locked by another worker's claim, or of a kind
 * this worker has no handler for) is not a reason to wake up: counted,
 * it made an idle worker claim again every millisecond.
 */
const char skipq__next_run_at_sql[] =
    "SELECT (extract(epoch FROM min(n.at) - now()) * 1000.0)::int8"
    " FROM pg_catalog.unnest($1::text[]) AS q(name) CROSS JOIN LATERAL ("
    "  WITH RECURSIVE" SKIPQ_BAND_PRIORITIES("q.name")
    "  SELECT (SELECT min(run_at) FROM skipq.jobs WHERE status" SKIPQ__EQ "'queued'"
    "     AND queue = q.name AND priority = p.pri"
    "     AND run_at > coalesce($4::timestamptz, now())) AS at"
    "  FROM p) n";

/*
 * Finish a batch: each row only while it is still ours, from this claim.
 * status is the new status; handback is 1 when the attempt is given back
 * (snooze, shutdown) and 0 otherwise.
 *
 * Rows are found by primary key, one per array element. The ownership
 * check is written with IS NOT DISTINCT FROM (the same as `=` here: the
 * parameters are never NULL) on purpose: as `locked_by = $2 AND status =
 * 'running'` it matched jobs_running_idx's key and predicate, and the
 * generic plan drove the join through that index, reading every row the
 * worker held and every dead entry left since the last vacuum, per
 * statement. That made completion quadratic in the batch and cost 2.6x
 * of drain throughput (docs/performance.md). The test
 * completion_goes_by_primary_key guards the plan. status is compared as
 * text: IS NOT DISTINCT FROM takes no OPERATOR(), and on the enum it
 * would use pg_catalog's anyenum =, which one planted in public for
 * (job_status, job_status) would beat (internal.h).
 *
 * unnest of several arrays in FROM is safe as written: the parser makes
 * it ROWS FROM (pg_catalog.unnest(...), ...) itself.
 */
#define SKIPQ_OWNED_BY(worker)                                                          \
    " (j.claims, j.locked_by, j.status::text) IS NOT DISTINCT FROM"                   \
    " (r.claims, " worker "::int8, 'running')"

#define SKIPQ_COMPLETE_SET                                                              \
    "  status = r.status::skipq.job_status,"                                           \
    "  result = CASE WHEN r.status = 'succeeded' THEN r.result::jsonb"                 \
    "           ELSE j.result END,"                                                    \
    "  attempts = j.attempts - r.handback,"                                            \
    "  run_at = CASE WHEN r.status = 'queued'"                                         \
    "           THEN now() + r.delay_ms::float8 * interval '1 millisecond'"           \
    "           ELSE j.run_at END,"                                                    \
    "  last_error = coalesce(r.error, j.last_error),"                                  \
    "  errors = CASE WHEN r.error IS NULL THEN j.errors"                               \
    "           ELSE j.errors || pg_catalog.jsonb_build_object('attempt', j.attempts," \
    "                'at', now(), 'worker', $2::int8, 'error', r.error) END,"          \
    "  finished_at = CASE WHEN r.status = 'queued' THEN NULL ELSE now() END,"          \
    "  cancel_requested_at = NULL, locked_by = NULL, updated_at = now()"

#define SKIPQ_COMPLETE_ROWS                                                             \
    " unnest($1::int8[], $3::int4[], $4::text[], $5::text[], $6::text[],"              \
    "        $7::int8[], $8::int4[])"                                                  \
    "      AS r(id, claims, status, result, error, delay_ms, handback)"

#define SKIPQ_COMPLETE_SQL                                                              \
    "UPDATE skipq.jobs j SET" SKIPQ_COMPLETE_SET                                       \
    " FROM" SKIPQ_COMPLETE_ROWS                                                        \
    " WHERE j.id = r.id AND" SKIPQ_OWNED_BY("$2")                                      \
    " RETURNING j.id"
const char skipq__complete_sql[] = SKIPQ_COMPLETE_SQL;

/* worker.on_success: delete. The same, except that a row that succeeded
 * is deleted (under the same ownership check) instead of kept. */
#define SKIPQ_COMPLETE_DELETE_SQL                                                       \
    "WITH r AS MATERIALIZED (SELECT * FROM" SKIPQ_COMPLETE_ROWS "),"                   \
    " d AS (DELETE FROM skipq.jobs j USING r"                                          \
    "   WHERE r.status = 'succeeded' AND j.id = r.id AND" SKIPQ_OWNED_BY("$2")         \
    "   RETURNING j.id),"                                                              \
    " u AS (UPDATE skipq.jobs j SET" SKIPQ_COMPLETE_SET                                \
    "   FROM r WHERE r.status <> 'succeeded' AND j.id = r.id AND" SKIPQ_OWNED_BY("$2") \
    "   RETURNING j.id)"                                                               \
    " SELECT id FROM d UNION ALL SELECT id FROM u"
const char skipq__complete_delete_sql[] = SKIPQ_COMPLETE_DELETE_SQL;

/*
 * Reconcile after a reconnect (see reconcile()): $1 the worker, $2/$3 the
 * ids and claim tokens it holds.
 */
#define SKIPQ_RECONCILE_SQL                                                             \
    "WITH h AS (SELECT * FROM unnest($2::int8[], $3::int4[]) AS h(id, claims)),"       \
    " back AS (SELECT r.id FROM skipq.release(ARRAY("                                  \
    "     SELECT j.id FROM skipq.jobs j"                                               \
    "     WHERE j.status" SKIPQ__EQ "'running' AND j.locked_by = $1::int8"             \
    "       AND j.id NOT IN (SELECT id FROM h) FOR NO KEY UPDATE),"                    \
    "   '{running}', refund => true) r)"                                               \
    " SELECT true, id FROM back"                                                       \
    " UNION ALL"                                                                       \
    " SELECT false, h.id FROM h WHERE NOT EXISTS (SELECT 1 FROM skipq.jobs j"          \
    "   WHERE j.id = h.id AND (j.claims, j.locked_by, j.status::text) IS NOT DISTINCT FROM" \
    "       (h.claims, $1::int8, 'running'))"

/* Hand back unfinished jobs (see hand_back()): $1/$2 ids and tokens, $3
 * the worker. */
#define SKIPQ_HAND_BACK_SQL                                                             \
    "SELECT b.id FROM skipq.release(ARRAY("                                            \
    "   SELECT j.id FROM skipq.jobs j, unnest($1::int8[], $2::int4[]) AS r(id, claims)" \
    "   WHERE j.id = r.id AND" SKIPQ_OWNED_BY("$3") " FOR NO KEY UPDATE OF j),"        \
    "  '{running}', refund => true) b"

/*
 * The statements above that change skipq.jobs, as functions that run
 * with their owner's rights and first check that the caller is the
 * worker it names (its secret, skipq.worker_register): sql/roles.sql
 * gives skipq_worker no UPDATE on skipq.jobs, so a worker role can claim
 * queued jobs and finish only its own claims, never set the state of
 * another worker's job (test worker_role_cannot_complete_another_workers_job).
 * `skipq migrate` creates them from these same texts (apply_files in
 * conn.c), so a plan the tests check is the plan the function runs. The
 * session's plan settings (skipq__cycle_sql) apply inside them.
 */
#define SKIPQ_CHECK_WORKER(id, secret)                                                 \
    " IF NOT EXISTS (SELECT 1 FROM skipq.workers k WHERE k.id = " id                   \
    "     AND k.secret = " secret ") THEN"                                             \
    "  RAISE EXCEPTION 'worker % is not registered with this secret', " id             \
    "   USING ERRCODE = '42501';"                                                      \
    " END IF;"
#define SKIPQ_DEFINER(name, args, argtypes, returns, check, body)                       \
    "CREATE OR REPLACE FUNCTION skipq." name "(" args ") RETURNS " returns             \
    " LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp"         \
    " AS $skipq$\n#variable_conflict use_column\nBEGIN" check                          \
    " RETURN QUERY " body "; END $skipq$;\n"                                           \
    "REVOKE EXECUTE ON FUNCTION skipq." name "(" argtypes ") FROM PUBLIC;\n"
#define SKIPQ_CLAIM_RETURNS                                                             \
    "TABLE (id int8, claims int4, kind text, queue text, priority int2, attempts int4," \
    " payload text, max_attempts int4, backoff_strategy text, backoff_base_ms int8,"   \
    " backoff_max_ms int8, timeout_ms int8, cancel_requested boolean, run_at timestamptz)"
#define SKIPQ_COMPLETE_ARGS                                                             \
    "p_ids int8[], p_worker int8, p_claims int4[], p_statuses text[], p_results text[]," \
    " p_errors text[], p_delays int8[], p_handbacks int4[], p_secret uuid"
#define SKIPQ_COMPLETE_TYPES                                                            \
    "int8[], int8, int4[], text[], text[], text[], int8[], int4[], uuid"

const char skipq__worker_functions_sql[] =
    SKIPQ_DEFINER("claim",
                  "p_queue text, p_lo int2, p_hi int2, p_kinds text[], p_n int4,"
                  " p_worker int8, p_secret uuid",
                  "text, int2, int2, text[], int4, int8, uuid", SKIPQ_CLAIM_RETURNS,
                  SKIPQ_CHECK_WORKER("$6", "$7"), SKIPQ_CLAIM_SQL)
    SKIPQ_DEFINER("claim_after",
                  "p_queue text, p_lo int2, p_hi int2, p_kinds text[], p_n int4,"
                  " p_worker int8, p_priority int2, p_run_at text, p_id int8, p_secret uuid",
                  "text, int2, int2, text[], int4, int8, int2, text, int8, uuid",
                  SKIPQ_CLAIM_RETURNS, SKIPQ_CHECK_WORKER("$6", "$10"), SKIPQ_CLAIM_AFTER_SQL)
    SKIPQ_DEFINER("complete", SKIPQ_COMPLETE_ARGS, SKIPQ_COMPLETE_TYPES, "SETOF int8",
                  SKIPQ_CHECK_WORKER("$2", "$9"), SKIPQ_COMPLETE_SQL)
    SKIPQ_DEFINER("complete_delete", SKIPQ_COMPLETE_ARGS, SKIPQ_COMPLETE_TYPES, "SETOF int8",
                  SKIPQ_CHECK_WORKER("$2", "$9"), SKIPQ_COMPLETE_DELETE_SQL)
    SKIPQ_DEFINER("hand_back", "p_ids int8[], p_claims int4[], p_worker int8, p_secret uuid",
                  "int8[], int4[], int8, uuid", "SETOF int8",
                  SKIPQ_CHECK_WORKER("$3", "$4"), SKIPQ_HAND_BACK_SQL)
    SKIPQ_DEFINER("reconcile", "p_worker int8, p_ids int8[], p_claims int4[], p_secret uuid",
                  "int8, int8[], int4[], uuid", "TABLE (put_back boolean, id int8)",
                  SKIPQ_CHECK_WORKER("$1", "$4"), SKIPQ_RECONCILE_SQL);

/*
 * The first statement of every claim and completion transaction: the
 * transaction's now() (see skipq__next_run_at_sql) and its settings.
 *
 * Generic plans, planned once a connection (see cycle()).
 *
 * No sequential scans: the plans are made at the first execution, and a
 * worker usually starts on an empty queue. Planned on an empty table, the
 * claim's update found its rows by a sequential scan and the completion
 * by a nested loop over one, and the plans stayed when the jobs came (a
 * claim of 16 among 100,000 took 40 ms; `skipq bench soak`'s idle worker
 * drained 20,000 jobs at 4,100 a second instead of 15,000, and 100,000
 * at ~550) until autovacuum's next analyze replanned them.
 * Every statement of these transactions has an index path; this leaves
 * the planner no other.
 *
 * No JIT: the generic claim plan, not knowing its LIMIT, is costed at a
 * tenth of the table, which on a million rows passed jit_above_cost and
 * compiled the claim at every execution (13.7 ms p50 a claim, 24 ms of it
 * JIT in EXPLAIN ANALYZE, against 0.3 ms).
 *
 * The quick variant is for a claim alone, which commits without waiting
 * for its flush. The test plans_made_on_an_empty_queue_go_by_index
 * guards the plans.
 */
#define SKIPQ_CYCLE_SETTINGS                                                            \
    "SELECT now()::text,"                                                              \
    " pg_catalog.set_config('plan_cache_mode', 'force_generic_plan', true),"           \
    " pg_catalog.set_config('enable_seqscan', 'off', true),"                           \
    " pg_catalog.set_config('jit', 'off', true)"
const char skipq__cycle_sql[] = SKIPQ_CYCLE_SETTINGS;
const char skipq__cycle_quick_sql[] =
    SKIPQ_CYCLE_SETTINGS ", pg_catalog.set_config('synchronous_commit', 'off', true)";

static skipq_rc
prepare_all(skipq_worker *w, skipq_error *err)
{
    const struct { const char *name, *sql; } stmts[] = {
        {"skipq_claim", "SELECT * FROM skipq.claim($1::text, $2::int2, $3::int2,"
                        " $4::text[], $5::int4, $6::int8, $7::text::uuid)"},
        {"skipq_claim_after", "SELECT * FROM skipq.claim_after($1::text, $2::int2, $3::int2,"
                              " $4::text[], $5::int4, $6::int8, $7::int2, $8::text, $9::int8,"
                              " $10::text::uuid)"},
        {"skipq_complete", w->cfg->on_success == SKIPQ_ON_SUCCESS_DELETE
                               ? "SELECT * FROM skipq.complete_delete($1::int8[], $2::int8,"
                                 " $3::int4[], $4::text[], $5::text[], $6::text[], $7::int8[],"
                                 " $8::int4[], $9::text::uuid)"
                               : "SELECT * FROM skipq.complete($1::int8[], $2::int8,"
                                 " $3::int4[], $4::text[], $5::text[], $6::text[], $7::int8[],"
                                 " $8::int4[], $9::text::uuid)"},
        /* see cycle(): the settings of its transaction */
        {"skipq_cycle", skipq__cycle_sql},
        {"skipq_cycle_quick", skipq__cycle_quick_sql},
    };
    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
        PGresult *res = PQprepare(w->pg, stmts[i].name, stmts[i].sql, 0, NULL);
        skipq_rc rc = SKIPQ_OK;
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = skipq__db_fail(err, w->pg, res, "could not prepare %s", stmts[i].name);
        PQclear(res);
        if (rc != SKIPQ_OK)
            return rc;
    }
    return SKIPQ_OK;
}

/* ---- held list -------------------------------------------------------------- */

static void
held_add(skipq_worker *w, skipq_job *j)
{
    j->hprev = NULL;
    j->hnext = w->held;
    if (w->held)
        w->held->hprev = j;
    w->held = j;
    w->nheld++;
}

static void
held_remove(skipq_worker *w, skipq_job *j)
{
    if (j->hprev)
        j->hprev->hnext = j->hnext;
    else
        w->held = j->hnext;
    if (j->hnext)
        j->hnext->hprev = j->hprev;
    w->nheld--;
}

static skipq_job *
held_find(skipq_worker *w, int64_t id)
{
    for (skipq_job *j = w->held; j; j = j->hnext)
        if (j->id == id)
            return j;
    return NULL;
}

/* ---- connection lifecycle --------------------------------------------------- */

static void
drop_connection(skipq_worker *w, const char *why)
{
    if (!w->pg)
        return;
    skipq__log(SKIPQ_LOG_WARN, "worker %lld lost its database connection: %s",
               (long long)w->id, why);
    PQfinish(w->pg);
    w->pg = NULL;
    w->reconnect_at_ms = skipq__now_ms() + w->reconnect_delay_ms;
    /* the next claims start from the head */
    memset(w->floors, 0, w->cfg->nqueues * w->nbands * sizeof *w->floors);
}

static bool
conn_broken(skipq_worker *w)
{
    return !w->pg || PQstatus(w->pg) != CONNECTION_OK;
}

static skipq_rc
exec_params_on(PGconn *pg, const char *sql, int n, const char *const *v,
               PGresult **out, skipq_error *err)
{
    PGresult *res = PQexecParams(pg, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        skipq_rc rc = skipq__db_fail(err, pg, res, "could not run worker statement");
        PQclear(res);
        if (out)
            *out = NULL;
        return rc;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return SKIPQ_OK;
}

static skipq_rc
exec_params(skipq_worker *w, const char *sql, int n, const char *const *v,
            PGresult **out, skipq_error *err)
{
    return exec_params_on(w->pg, sql, n, v, out, err);
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

    gethostname(host, sizeof host - 1);
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

    snprintf(beat, sizeof beat, "%lld milliseconds", (long long)w->cfg->heartbeat_interval_ms);
    snprintf(lease, sizeof lease, "%lld milliseconds", (long long)w->cfg->lease_timeout_ms);
    /* liveness_lock stays false until take_liveness_lock() holds it: in
     * between, others judge this worker by its heartbeat and lease, and
     * a lock that is free only because we have not taken it yet (or our
     * old session just died) does not make our live jobs look lost. */
    snprintf(id, sizeof id, "%lld", (long long)w->id);
    const char *v[10] = {host, pid, queues, bands, conc, SKIPQ_VERSION, beat, lease,
                         w->id ? id : NULL, w->id ? w->secret : NULL};
    rc = exec_params(w, "SELECT id, secret FROM skipq.worker_register($1, $2::int4, $3::text[],"
                        " $4, $5::int4, $6, $7::interval, $8::interval, $9::int8, $10::uuid)",
                     10, v, &res, err);
    if (rc == SKIPQ_OK) {
        w->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        snprintf(w->secret, sizeof w->secret, "%s", PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    free(queues);
    if (rc != SKIPQ_OK)
        return rc;
    w->alive_locked = false;
    take_liveness_lock(w);
    return SKIPQ_OK;
}

/*
 * Try to take the worker's liveness lock, and say in the worker's row
 * whether it is held. Never waits: any role can take an advisory lock,
 * and a stale backend of our own lost session may still hold it, so a
 * wait could last for ever with no heartbeat meanwhile. Without the lock
 * the worker runs on and is judged by its heartbeat and lease; heartbeat()
 * tries again (tests liveness_lock_held_by_another_role_does_not_stall and
 * reconnect_with_a_stale_backend_holding_the_lock).
 */
static void
take_liveness_lock(skipq_worker *w)
{
    char id[24];
    const char *v[2] = {id, w->secret};
    PGresult *res = NULL;
    skipq_error e;

    snprintf(id, sizeof id, "%lld", (long long)w->id);
    if (exec_params(w, "SELECT got, holders FROM skipq.worker_liveness($1::int8, $2::uuid)",
                    2, v, &res, &e) != SKIPQ_OK) {
        skipq__log(SKIPQ_LOG_WARN, "worker %lld could not take its liveness lock: %s",
                   (long long)w->id, e.message);
        if (conn_broken(w))
            drop_connection(w, e.message);
        return;
    }
    bool got = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
    if (!got && !w->alive_lock_warned) {
        skipq__log(SKIPQ_LOG_WARN,
                   "worker %lld could not take its liveness lock: held by backend %s; "
                   "until it can, it is judged by its heartbeat and lease (%lld ms), "
                   "and it tries again at every heartbeat",
                   (long long)w->id,
                   PQntuples(res) == 1 && !PQgetisnull(res, 0, 1) ? PQgetvalue(res, 0, 1)
                                                                  : "(none)",
                   (long long)w->cfg->lease_timeout_ms);
        w->alive_lock_warned = true;
    } else if (got && w->alive_lock_warned) {
        skipq__log(SKIPQ_LOG_INFO, "worker %lld holds its liveness lock now", (long long)w->id);
        w->alive_lock_warned = false;
    }
    w->alive_locked = got;
    PQclear(res);
}

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
static skipq_rc
reconcile(skipq_worker *w, skipq_error *err)
{
    PGparam *prm = PQparamCreate(w->pg);
    PGparam *ids = PQparamCreate(w->pg), *tokens = PQparamCreate(w->pg);
    PGarray a_ids = {0}, a_tokens = {0};
    PGresult *res = NULL;
    skipq_rc rc = SKIPQ_OK;
    bool ok = prm && ids && tokens;
    int back = 0;

    for (skipq_job *j = w->held; ok && j; j = j->hnext)
        ok = PQputf(ids, "%int8", (PGint8)j->id) && PQputf(tokens, "%int4", (PGint4)j->claims);
    a_ids.param = ids;
    a_tokens.param = tokens;
    if (!ok || !PQputf(prm, "%int8 %int8[] %int4[] %text", (PGint8)w->id, &a_ids, &a_tokens,
                       w->secret)) {
        rc = skipq__fail(err, SKIPQ_ERR_NOMEM, "could not build parameters: %s",
                         PQgeterror());
        goto out;
    }
    res = PQparamExec(w->pg, prm,
                      "SELECT * FROM skipq.reconcile($1::int8, $2::int8[], $3::int4[],"
                      " $4::text::uuid)", 0);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = skipq__db_fail(err, w->pg, res, "could not reconcile running jobs");
        goto out;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        if (strcmp(PQgetvalue(res, r, 0), "t") == 0) {
            back++;
            continue;
        }
        skipq_job *j = held_find(w, strtoll(PQgetvalue(res, r, 1), NULL, 10));
        if (!j || j->claims < 0)
            continue;
        j->claims = -1; /* claims is never negative in the table */
        skipq__log(SKIPQ_LOG_WARN,
                   "job %lld is no longer held by worker %lld after the reconnect; "
                   "its result will be dropped", (long long)j->id, (long long)w->id);
    }
    if (back > 0)
        skipq__log(SKIPQ_LOG_WARN,
                   "worker %lld put back %d jobs claimed while its connection "
                   "was failing", (long long)w->id, back);
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
    res = PQexec(w->pg, "SELECT pg_catalog.has_table_privilege('skipq.jobs', 'DELETE'),"
                        " current_user");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        rc = skipq__db_fail(err, w->pg, res, "could not check the DELETE privilege");
    else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        rc = skipq__fail(err, SKIPQ_ERR_CONFIG,
                         "worker.on_success: delete needs DELETE on skipq.jobs, which "
                         "role \"%s\" does not have (GRANT DELETE ON skipq.jobs TO it, "
                         "or keep succeeded rows: docs/security.md)",
                         PQgetvalue(res, 0, 1));
    PQclear(res);
    return rc;
}

static skipq_rc
schema_check(skipq_worker *w, skipq_error *err)
{
    skipq_conn tmp = {.pg = w->pg, .types_ready = true};
    return skipq_schema_check(&tmp, err);
}

static skipq_rc
connect_worker(skipq_worker *w, skipq_error *err)
{
    skipq_rc rc = skipq__connect(w->database, &w->pg, err);
    bool first = w->id == 0;

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
    snprintf(settings, sizeof settings,
             "SET application_name = 'skipq worker'; SET DateStyle = ISO; "
             "SET lock_timeout = '%lldms'", (long long)w->lock_wait_ms);
    if ((rc = skipq__exec(w->pg, settings, err)) ||
        (first && (rc = schema_check(w, err))) ||
        (first && (rc = delete_check(w, err))) ||
        (rc = prepare_all(w, err)) ||
        (rc = skipq__exec(w->pg, "LISTEN " SKIPQ__CHANNEL, err)) ||
        (rc = skipq__exec(w->pg, "LISTEN " SKIPQ__CONTROL_CHANNEL, err)) ||
        (rc = register_worker(w, err)) ||
        (!first && (rc = reconcile(w, err)))) {
        PQfinish(w->pg);
        w->pg = NULL;
        return rc;
    }
    if (PQsetnonblocking(w->pg, 0) != 0) {
        PQfinish(w->pg);
        w->pg = NULL;
        return skipq__fail(err, SKIPQ_ERR_DB, "could not configure the connection");
    }
    w->wake = true; /* poll once for what we missed */
    w->check_cancels = true; /* and cancels requested meanwhile */
    w->idle_locked = false; /* a new session holds no lock */
    w->reconnect_delay_ms = 100;
    if (!first)
        skipq__log(SKIPQ_LOG_INFO, "worker %lld reconnected", (long long)w->id);
    return SKIPQ_OK;
}

/* ---- claiming ------------------------------------------------------------------ */

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
    j->claims = (int32_t)strtol(PQgetvalue(res, row, 1), NULL, 10);
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
    PGparam *prm = PQparamCreate(w->pg);
    PGparam *kinds = PQparamCreate(w->pg);
    PGarray arr = {0};
    bool ok = prm && kinds;

    for (size_t i = 0; ok && i < w->nhandlers; i++)
        ok = PQputf(kinds, "%text", w->handlers[i].kind) != 0;
    arr.param = kinds;
    ok = ok && PQputf(prm, "%text %int2 %int2 %text[] %int4 %int8",
                      w->cfg->queues[qi], (PGint2)w->bands[bi].lo,
                      (PGint2)w->bands[bi].hi, &arr, (PGint4)n, (PGint8)w->id) != 0;
    if (fl)
        ok = ok && PQputf(prm, "%int2 %text %int8", (PGint2)fl->priority, fl->run_at,
                          (PGint8)fl->id) != 0;
    ok = ok && PQputf(prm, "%text", w->secret) != 0;
    if (kinds)
        PQparamClear(kinds);
    if (!ok && prm) {
        PQparamClear(prm);
        prm = NULL;
    }
    return prm;
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
             * reconcile() puts back what we hold no job for, at the next
             * turn of the loop; a live worker must not strand it (test
             * claimed_job_that_cannot_be_allocated_goes_back). */
            skipq__log(SKIPQ_LOG_ERROR, "out of memory taking claimed job %s; it goes back",
                       PQgetvalue(res, r, 0));
            w->reconcile_due = true;
            continue;
        }
        j->claimed_ms = skipq__now_ms();
        held_add(w, j);
        if (j->cancel_requested)
            atomic_store(&j->stop, 1);
        if (w->log_payloads)
            log_claim_payload(j);
        else
            log_job(SKIPQ_LOG_DEBUG, "claimed", j,
                    "job %lld claimed (%s, attempt %d)", (long long)j->id,
                    j->kind, j->attempt);
        j->next = NULL;
        *tail = j;
        tail = &j->next;
    }
    return n;
}

static int cmp_i64(const void *a, const void *b);

/* (PQparamExec frees a failed statement's result and returns NULL; the
 * error's fields stay readable through PQgetErrorField) */
static bool
lock_timed_out(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
                            : PQgetErrorField(PG_DIAG_SQLSTATE);
    return state && strcmp(state, "55P03") == 0; /* lock_not_available */
}

/* ---- completing ----------------------------------------------------------------- */

/* Decide the row's next state from the outcome. */
static const char *
next_status(skipq_worker *w, skipq_job *j, int64_t *delay_ms, int *handback)
{
    *delay_ms = 0;
    *handback = 0;
    switch (j->outcome) {
    case SKIPQ_JOB_OK:
        return "succeeded";
    case SKIPQ_JOB_SNOOZE:
        *delay_ms = j->snooze_ms;
        *handback = 1;
        return "queued";
    case SKIPQ_JOB_CANCELLED:
        return "cancelled";
    case SKIPQ_JOB_ERROR:
    default:
        break;
    }
    int max = j->max_attempts > 0 ? j->max_attempts : w->cfg->max_attempts;
    if (j->attempt >= max)
        return "failed";
    w->rand_state = w->rand_state * 1103515245u + 12345u;
    double r = (double)((w->rand_state >> 8) & 0xFFFFFF) / (double)0x1000000;
    skipq_backoff strategy = j->has_backoff ? j->backoff : w->cfg->backoff;
    *delay_ms = skipq_backoff_ms(strategy, j->backoff_base_ms, j->backoff_max_ms,
                                 w->cfg->jitter, j->attempt, r);
    return "queued";
}

typedef struct completion {
    PGparam *prm;
    int count;
} completion;

static bool
build_completion(skipq_worker *w, skipq_job *list, completion *c)
{
    PGparam *a[7] = {0};
    PGarray arr[7];
    bool ok = true;

    memset(c, 0, sizeof *c);
    memset(arr, 0, sizeof arr);
    c->prm = PQparamCreate(w->pg);
    for (int i = 0; i < 7; i++)
        ok = ok && (a[i] = PQparamCreate(w->pg)) != NULL;
    ok = ok && c->prm;
    for (skipq_job *j = list; ok && j; j = j->next) {
        int64_t delay;
        int handback;
        const char *st = next_status(w, j, &delay, &handback);
        ok = PQputf(a[0], "%int8", (PGint8)j->id) && PQputf(a[1], "%int4", (PGint4)j->claims) &&
             PQputf(a[2], "%text", st) &&
             PQputf(a[3], "%text", strcmp(st, "succeeded") == 0 ? j->result : NULL) &&
             PQputf(a[4], "%text", j->outcome == SKIPQ_JOB_OK ||
                                        j->outcome == SKIPQ_JOB_SNOOZE ? NULL : j->error) &&
             PQputf(a[5], "%int8", (PGint8)delay) && PQputf(a[6], "%int4", (PGint4)handback);
        c->count++;
    }
    for (int i = 0; i < 7; i++)
        arr[i].param = a[i];
    ok = ok && PQputf(c->prm,
                      "%int8[] %int8 %int4[] %text[] %text[] %text[] %int8[] %int4[] %text",
                      &arr[0], (PGint8)w->id, &arr[1], &arr[2], &arr[3], &arr[4],
                      &arr[5], &arr[6], w->secret);
    for (int i = 0; i < 7; i++)
        if (a[i])
            PQparamClear(a[i]);
    if (!ok && c->prm) {
        PQparamClear(c->prm);
        c->prm = NULL;
    }
    return ok;
}

/* The completion committed: log, forget the jobs. A job whose row did not
 * match was taken from us meanwhile (rescued, recovered). */
static void
finish_jobs(skipq_worker *w, skipq_job *list, PGresult *res)
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
        if (!matched) {
            log_job(SKIPQ_LOG_WARN, "lost", j,
                    "job %lld was no longer held by worker %lld (rescued or "
                    "recovered meanwhile); its result is dropped",
                    (long long)j->id, (long long)w->id);
        } else {
            switch (j->outcome) {
            case SKIPQ_JOB_OK:
                log_job(SKIPQ_LOG_INFO, "succeeded", j, "job %lld succeeded (%s, %.0f ms)",
                        (long long)j->id, j->kind, j->duration_ms);
                break;
            case SKIPQ_JOB_SNOOZE:
                log_job(SKIPQ_LOG_INFO, "snoozed", j, "job %lld snoozed for %lld ms",
                        (long long)j->id, (long long)j->snooze_ms);
                break;
            case SKIPQ_JOB_CANCELLED:
                log_job(SKIPQ_LOG_INFO, "cancelled", j, "job %lld cancelled", (long long)j->id);
                break;
            default:
                log_job(SKIPQ_LOG_INFO, "failed", j, "job %lld attempt %d failed: %s",
                        (long long)j->id, j->attempt, j->error ? j->error : "");
            }
        }
        held_remove(w, j);
        skipq__job_free(j);
    }
    free(ids);
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Put a list of finished jobs back on w->pending, to be written later. */
static void
keep_pending(skipq_worker *w, skipq_job *list)
{
    if (!list)
        return;
    skipq_job *last = list;
    while (last->next)
        last = last->next;
    last->next = w->pending;
    w->pending = list;
}

/* Claim parameters for queue qi and band bi in the rotation order. */
static size_t
queue_at(const skipq_worker *w, size_t k)
{
    return (w->qstart + k) % w->cfg->nqueues;
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
    if (w->next_poll_ms > soon)
        w->next_poll_ms = soon;
}

/*
 * One round trip: complete `done` (if any) and claim up to `want` jobs
 * from the first queue's highest band, in one pipeline. Statements in a
 * pipeline up to its sync run in one implicit transaction: one commit,
 * and on any error nothing of it is applied, so results are only used
 * once the sync arrives. Returns the number claimed, or -1 when the
 * cycle failed (the done list is then kept in w->pending).
 */
static int
cycle_at(skipq_worker *w, skipq_job *done, int want, size_t qi, size_t bi,
         char *now_out, skipq_job **ready)
{
    completion c = {0};
    PGparam *claim = NULL;
    PGresult *results[3] = {NULL, NULL, NULL};
    int nres = 0, got = 0;
    bool failed = false, quick = false;
    claim_floor *fl = want > 0 ? &w->floors[qi * w->nbands + bi] : NULL;
    int64_t now_ms = skipq__now_ms();

    w->cycle_lock_timeout = false;
    bool after = fl && fl->set && now_ms - fl->head_ms < FLOOR_MS;

    if (done && !build_completion(w, done, &c)) {
        skipq__log(SKIPQ_LOG_ERROR, "out of memory building a completion");
        keep_pending(w, done);
        return -1;
    }
    if (done && skipq__failpoint("before_complete")) {
        skipq__log(SKIPQ_LOG_ERROR, "failpoint before_complete: exiting");
        _exit(99);
    }
    if (want > 0 && !(claim = claim_param(w, qi, bi, want, after ? fl : NULL)))
        failed = true;
    if (!failed && PQenterPipelineMode(w->pg) != 1)
        failed = true;
    /*
     * A transaction that only claims commits without waiting for its WAL
     * flush (synchronous_commit off for it alone): the flush was most of
     * the idle worker's pickup time. Losing such a commit in a server
     * crash loses nothing but the claim: the row is queued again, the
     * job runs again (at least once), and the handler's result from the
     * lost claim matches no row. Any later synchronous commit, such as
     * this job's completion, flushes the claim with it. Completions keep
     * synchronous commit: "succeeded" is durable when the worker says so.
     */
    /*
     * And both statements run on their generic plans, planned once a
     * connection: the claim's custom plan was made anew for every claim
     * (its generic plan, not knowing the LIMIT, looked dearer), and that
     * planning was +12% of one worker's drain rate. Both generic plans are
     * the right ones whatever the table holds (the tests EXPLAIN them).
     */
    quick = claim && !c.prm;
    if (!failed && !PQsendQueryPrepared(w->pg, quick ? "skipq_cycle_quick" : "skipq_cycle",
                                        0, NULL, NULL, NULL, 0))
        failed = true;
    if (!failed && c.prm && !PQparamSendQueryPrepared(w->pg, c.prm, "skipq_complete", 0))
        failed = true;
    if (!failed && claim &&
        !PQparamSendQueryPrepared(w->pg, claim, after ? "skipq_claim_after" : "skipq_claim", 0))
        failed = true;
    if (!failed && PQpipelineSync(w->pg) != 1)
        failed = true;
    if (failed && PQpipelineStatus(w->pg) != PQ_PIPELINE_OFF) {
        /* a send failed before the sync: no sync point will come back to
         * read up to, so the connection cannot be trusted */
        keep_pending(w, done);
        drop_connection(w, "could not send a worker cycle");
        if (c.prm)
            PQparamClear(c.prm);
        if (claim)
            PQparamClear(claim);
        return -1;
    }

    /* Read up to the sync point; keep the results until it arrives. */
    while (PQpipelineStatus(w->pg) != PQ_PIPELINE_OFF) {
        PGresult *res = PQgetResult(w->pg);
        if (!res) {
            if (PQstatus(w->pg) != CONNECTION_OK) {
                failed = true;
                break;
            }
            continue; /* the end of one statement's results */
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            PQexitPipelineMode(w->pg);
            break;
        }
        if (st == PGRES_TUPLES_OK && nres < 3) {
            results[nres++] = res;
            continue;
        }
        if (st != PGRES_PIPELINE_ABORTED) {
            skipq_error e;
            if (lock_timed_out(res))
                w->cycle_lock_timeout = true;
            skipq__db_fail(&e, w->pg, res, "worker cycle failed");
            skipq__log(w->cycle_lock_timeout ? SKIPQ_LOG_WARN : SKIPQ_LOG_ERROR, "%s",
                       e.message);
        }
        failed = true;
        PQclear(res);
    }
    if (!failed) {
        int k = 1; /* after the settings */
        if (now_out && claim && results[0])
            snprintf(now_out, SKIPQ__NOW_LEN, "%s", PQgetvalue(results[0], 0, 0));
        if (c.prm)
            finish_jobs(w, done, results[k++]);
        if (claim) {
            while (*ready) /* where this claim's jobs will begin */
                ready = &(*ready)->next;
            got = take_claimed(w, results[k], ready);
            if (after && skipq__log_enabled()) {
                char msg[128];
                snprintf(msg, sizeof msg, "claimed %d of %d after job %lld", got, want,
                         (long long)fl->id);
                skipq_log_event ev = {.level = SKIPQ_LOG_DEBUG, .msg = msg,
                                      .event = "claim_floor",
                                      .queue = w->cfg->queues[qi], .duration_ms = -1};
                skipq__log_event(&ev);
            }
            set_floor(fl, results[k], got == want, after ? fl->head_ms : now_ms, now_ms);
        }
    } else {
        /* Nothing of it committed as far as we know; a completion that did
         * commit before a lost reply matches 0 rows when retried, and
         * rows claimed without a reply are reconciled on reconnect. The
         * next claim is from the head, whatever failed. */
        keep_pending(w, done);
        if (fl)
            fl->set = false;
        if (conn_broken(w))
            drop_connection(w, PQerrorMessage(w->pg));
    }
    for (int i = 0; i < nres; i++)
        PQclear(results[i]);
    if (c.prm)
        PQparamClear(c.prm);
    if (claim)
        PQparamClear(claim);
    if (failed)
        return -1;
    /* Short from the floor: rows may wait behind it. Claim from the head
     * now, so "short" means what it means for a claim from the head. */
    if (after && got < want && w->pg) {
        skipq_job *head = NULL;
        int more = cycle_at(w, NULL, want - got, qi, bi, now_out, &head);
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
        got += more;
    }
    return got;
}

/*
 * A completion waited for a row lock for longer than the connection's
 * lock_timeout (an operator's open transaction on one job's row): the
 * whole batch and its claim rolled back. Write the batch one job at a
 * time instead, so only the job whose row is locked waits, and try that
 * one again after a growing pause, with claims and heartbeats going on
 * meanwhile (test a_row_lock_on_one_job_delays_only_that_job).
 */
static void
complete_singly(skipq_worker *w)
{
    skipq_job *list = w->pending;
    w->pending = NULL;
    for (skipq_job *j = list, *next; j; j = next) {
        skipq_job *none = NULL;
        next = j->next;
        j->next = NULL;
        if (!w->pg) {
            keep_pending(w, j);
            continue;
        }
        if (cycle_at(w, j, 0, 0, 0, NULL, &none) >= 0)
            continue;
        if (w->cycle_lock_timeout) { /* back on w->pending: not before long */
            int shift = j->complete_tries < 4 ? j->complete_tries : 4;
            j->complete_tries++;
            j->complete_after_ms = skipq__now_ms() + min64((int64_t)500 << shift, 10000);
            log_job(SKIPQ_LOG_WARN, "completion_waits", j,
                    "job %lld: its row is locked by another session; its completion "
                    "is tried again in %lld ms", (long long)j->id,
                    (long long)(j->complete_after_ms - skipq__now_ms()));
        }
    }
}

/* Take the finished jobs whose completion may be written now off
 * w->pending; those waiting out a row lock stay. */
static skipq_job *
take_due_pending(skipq_worker *w, int64_t now)
{
    skipq_job *due = NULL, **dt = &due, **pp = &w->pending;
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

/* When the next completion on w->pending may be tried (INT64_MAX: none). */
static int64_t
pending_due_ms(const skipq_worker *w)
{
    int64_t at = INT64_MAX;
    for (const skipq_job *j = w->pending; j; j = j->next)
        at = min64(at, j->complete_after_ms);
    return at;
}

/* A cycle at the head of the rotation: its claim's transaction time is
 * the one the next-run-at lookup starts from. */
static int
cycle(skipq_worker *w, skipq_job *done, int want, skipq_job **ready)
{
    int got = cycle_at(w, done, want, queue_at(w, 0), 0, w->claim_now, ready);
    w->qstart++;
    return got;
}

/* Fill the slots the first claim left free: the other queues, then the
 * lower bands, highest first. */
static int
claim_more(skipq_worker *w, int want, skipq_job **ready)
{
    int got = 0;
    size_t first_q = queue_at(w, w->cfg->nqueues - 1); /* cycle() advanced qstart */
    for (size_t bi = 0; bi < w->nbands && want - got > 0; bi++) {
        for (size_t k = 0; k < w->cfg->nqueues && want - got > 0; k++) {
            size_t qi = (first_q + k) % w->cfg->nqueues;
            if (bi == 0 && k == 0)
                continue; /* the claim cycle() made */
            /* the same transaction as cycle()'s claim: generic plan,
             * asynchronous commit */
            int n = cycle_at(w, NULL, want - got, qi, bi, NULL, ready);
            if (n < 0 || !w->pg) {
                claim_again_soon(w); /* what it did not look at may wait */
                return got;
            }
            got += n;
        }
    }
    return got;
}

/* A PGparam whose first parameter is the worker's queues as a text[];
 * *qs holds the array's elements. The caller clears both (either may be
 * NULL, and is when false is returned for lack of memory). */
static bool
queues_param(skipq_worker *w, PGparam **prm, PGparam **qs)
{
    PGarray arr = {0};
    bool ok;

    *prm = PQparamCreate(w->pg);
    *qs = PQparamCreate(w->pg);
    ok = *prm && *qs;
    for (size_t i = 0; ok && i < w->cfg->nqueues; i++)
        ok = PQputf(*qs, "%text", w->cfg->queues[i]) != 0;
    arr.param = *qs;
    return ok && PQputf(*prm, "%text[]", &arr) != 0;
}

/* When is the next job we could run due? So a delayed job starts on time,
 * not at the next poll. */
static void
schedule_next_run_at(skipq_worker *w)
{
    PGresult *res;
    PGparam *prm, *qs;
    bool ok = queues_param(w, &prm, &qs);

    w->next_run_at_ms = INT64_MAX;
    ok = ok && PQputf(prm, "%int2 %int2 %text", (PGint2)w->bands[w->nbands - 1].lo,
                      (PGint2)w->bands[0].hi, w->claim_now[0] ? w->claim_now : NULL);
    if (ok) {
        res = PQparamExec(w->pg, prm, skipq__next_run_at_sql, 0);
        if (res && PQresultStatus(res) == PGRES_TUPLES_OK && !PQgetisnull(res, 0, 0)) {
            int64_t in = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
            w->next_run_at_ms = skipq__now_ms() + (in > 0 ? in : 0) + 1;
        } else if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
            if (conn_broken(w))
                drop_connection(w, "could not read the next run_at");
        }
        PQclear(res);
    }
    if (prm)
        PQparamClear(prm);
    if (qs)
        PQparamClear(qs);
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
 * The worker waits for each of its locks up to IDLE_WAIT_MS: a producer
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
/* Each lock once, however many of the queues' names share its hash. */
#define IDLE_HASHES                                                                      \
    "(SELECT DISTINCT hashtext(q) AS h FROM pg_catalog.unnest($1::text[]) AS q) AS t"
static const char idle_lock_sql[] =
    "WITH cfg AS MATERIALIZED ("
    "  SELECT pg_catalog.set_config('lock_timeout', '" SKIPQ__XSTR(IDLE_WAIT_MS) "ms', true))"
    " SELECT pg_catalog.count(pg_advisory_lock_shared(" SKIPQ__XSTR(SKIPQ__LOCK_CLASS_IDLE) ", h))"
    " FROM cfg, " IDLE_HASHES;
static const char idle_unlock_sql[] =
    "SELECT pg_advisory_unlock_shared(" SKIPQ__XSTR(SKIPQ__LOCK_CLASS_IDLE) ", h)"
    " FROM " IDLE_HASHES;
/* after a wait that timed out: only those the statement took */
static const char idle_undo_sql[] =
    "SELECT pg_advisory_unlock_shared(" SKIPQ__XSTR(SKIPQ__LOCK_CLASS_IDLE) ", h)"
    " FROM " IDLE_HASHES " WHERE EXISTS (SELECT FROM pg_locks AS l"
    "  WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted"
    "  AND l.mode = 'ShareLock' AND l.objsubid = 2"
    "  AND l.classid = " SKIPQ__XSTR(SKIPQ__LOCK_CLASS_IDLE) "::int4::oid"
    "  AND l.objid = h::oid)";

enum { IDLE_RETRY_MS = 10 };
typedef enum { IDLE_FAILED = -1, IDLE_TAKEN_BY_PRODUCER = 0, IDLE_DONE = 1 } idle_rc;

/*
 * Take (on) or give up the idle locks of the worker's queues. A statement
 * that fails otherwise than by the wait's timeout may have taken some of
 * them, so the connection is dropped for a clean session: locks go with
 * it, and the reconnect reconciles as after any lost connection.
 */
static idle_rc
idle_lock(skipq_worker *w, bool on)
{
    PGparam *prm, *qs;
    idle_rc rc = IDLE_FAILED;
    PGresult *res = NULL;

    if (queues_param(w, &prm, &qs)) {
        res = PQparamExec(w->pg, prm, on ? idle_lock_sql : idle_unlock_sql, 0);
        if (on && lock_timed_out(res)) {
            PQclear(res);
            res = PQparamExec(w->pg, prm, idle_undo_sql, 0);
            if (res && PQresultStatus(res) == PGRES_TUPLES_OK)
                rc = IDLE_TAKEN_BY_PRODUCER;
        } else if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
            w->idle_locked = on;
            rc = IDLE_DONE;
        }
    }
    if (rc == IDLE_FAILED) {
        skipq_error e;
        skipq__db_fail(&e, w->pg, res, on ? "could not take the idle locks"
                                          : "could not give up the idle locks");
        drop_connection(w, e.message);
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
static void
note_busy(skipq_worker *w, int64_t now)
{
    if (!w->full_since_ms)
        w->full_since_ms = now;
    else if (w->idle_locked && w->pg && now - w->full_since_ms >= IDLE_RELEASE_MS &&
             idle_lock(w, false) == IDLE_DONE)
        w->wake = true;
}

/* ---- notifications -------------------------------------------------------------- */

static void
handle_notifies(skipq_worker *w)
{
    PGnotify *n;
    if (!w->pg)
        return;
    PQconsumeInput(w->pg);
    while ((n = PQnotifies(w->pg)) != NULL) {
        if (strcmp(n->relname, SKIPQ__CHANNEL) == 0) {
            for (size_t i = 0; i < w->cfg->nqueues; i++)
                if (strcmp(w->cfg->queues[i], n->extra) == 0)
                    w->wake = true;
        } else if (strcmp(n->relname, SKIPQ__CONTROL_CHANNEL) == 0) {
            /* only a hint: read_cancels() acts on what the rows say */
            w->check_cancels = true;
        }
        PQfreemem(n);
    }
}

/* ---- housekeeping ---------------------------------------------------------------- */

static void
heartbeat(skipq_worker *w)
{
    char id[24];
    const char *v[2] = {id, w->secret};
    PGresult *res = NULL;
    snprintf(id, sizeof id, "%lld", (long long)w->id);
    skipq_error e;
    /* (the connection's lock_timeout bounds a wait on our row, which an
     * operator's transaction may hold) */
    if (exec_params(w, "SELECT skipq.worker_beat($1::int8, $2::uuid)",
                    2, v, &res, &e) != SKIPQ_OK) {
        skipq__log(SKIPQ_LOG_WARN, "heartbeat failed: %s", e.message);
        if (conn_broken(w))
            drop_connection(w, e.message);
        return;
    }
    bool gone = PQgetvalue(res, 0, 0)[0] != 't';
    PQclear(res);
    if (gone && register_worker(w, &e) != SKIPQ_OK)
        skipq__log(SKIPQ_LOG_WARN, "could not re-register worker: %s", e.message);
    else if (!gone && !w->alive_locked && w->pg)
        take_liveness_lock(w);
    /* a cancel whose NOTIFY was lost (or sent while we were away) */
    w->check_cancels = true;
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
static void
read_cancels(skipq_worker *w)
{
    PGparam *prm = NULL, *ids = NULL;
    PGarray a = {0};
    PGresult *res = NULL;
    int n = 0;

    w->check_cancels = false;
    if (!w->pg)
        return;
    prm = PQparamCreate(w->pg);
    ids = PQparamCreate(w->pg);
    bool ok = prm && ids;
    for (skipq_job *j = w->held; ok && j; j = j->hnext) {
        if (j->done || j->cancel_requested || j->claims < 0)
            continue;
        ok = PQputf(ids, "%int8", (PGint8)j->id) != 0;
        n++;
    }
    a.param = ids;
    if (ok && n > 0 && PQputf(prm, "%int8[] %int8", &a, (PGint8)w->id)) {
        res = PQparamExec(w->pg, prm,
            "SELECT j.id, j.claims FROM skipq.jobs j"
            " WHERE j.id = ANY ($1::int8[]) AND j.locked_by = $2::int8"
            "   AND j.status OPERATOR(pg_catalog.=) 'running'::skipq.job_status"
            "   AND j.cancel_requested_at IS NOT NULL", 0);
        if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
            for (int r = 0; r < PQntuples(res); r++) {
                skipq_job *j = held_find(w, strtoll(PQgetvalue(res, r, 0), NULL, 10));
                if (!j || j->done || j->cancel_requested ||
                    j->claims != (int32_t)strtol(PQgetvalue(res, r, 1), NULL, 10))
                    continue;
                j->cancel_requested = true;
                atomic_store(&j->stop, 1);
                log_job(SKIPQ_LOG_INFO, "cancel", j, "job %lld: cancel requested",
                        (long long)j->id);
            }
        } else {
            skipq_error e;
            skipq__db_fail(&e, w->pg, res, "could not read cancel requests");
            skipq__log(SKIPQ_LOG_WARN, "%s", e.message);
            if (conn_broken(w))
                drop_connection(w, e.message);
            else
                w->check_cancels = true; /* again at the next turn */
        }
    } else if (!ok) {
        w->check_cancels = true;
    }
    PQclear(res);
    if (prm)
        PQparamClear(prm);
    if (ids)
        PQparamClear(ids);
}

/* Is the maintenance thread being stopped? Its statement is then
 * cancelled on purpose (maint_stop), which is not worth a warning. */
static bool
maint_stopping(skipq_worker *w)
{
    pthread_mutex_lock(&w->maint_mu);
    bool quit = w->maint_quit;
    pthread_mutex_unlock(&w->maint_mu);
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
    PGresult *res = NULL;

    snprintf(lease, sizeof lease, "%lld milliseconds", (long long)w->cfg->lease_timeout_ms);
    snprintf(self, sizeof self, "%lld", (long long)w->id);
    snprintf(maxa, sizeof maxa, "%d", w->cfg->max_attempts);
    /* bounded: an operator's transaction may hold a workers row */
    if (skipq__exec(pg, "BEGIN; SET LOCAL lock_timeout = '5s'", &e) != SKIPQ_OK)
        goto fail;
    if (exec_params_on(pg,
            "SELECT m.task IS NOT NULL,"
            " (SELECT (pg_catalog.now() OPERATOR(pg_catalog.-) s.last_run_at)"
            "     OPERATOR(pg_catalog.>) (2 OPERATOR(pg_catalog.*) $1::interval)"
            "  FROM skipq.maintenance s WHERE s.task = 'rescue')"
            " FROM (SELECT 1) AS one LEFT JOIN (SELECT t.task FROM skipq.maintenance t"
            "   WHERE t.task = 'rescue' FOR UPDATE SKIP LOCKED) AS m ON true",
            1, v, &res, &e) != SKIPQ_OK)
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
        if (exec_params_on(pg, "SELECT id, kind, status FROM skipq.rescue($1::interval, $2, $3)",
                        3, v, &res, &e) != SKIPQ_OK)
            goto fail;
        for (int r = 0; r < PQntuples(res); r++)
            skipq__log(SKIPQ_LOG_WARN, "rescued job %s (%s) of a lost worker: now %s",
                       PQgetvalue(res, r, 0), PQgetvalue(res, r, 1), PQgetvalue(res, r, 2));
        PQclear(res);
        if (exec_params_on(pg, "SELECT skipq.forget_workers($1::interval, $2::int8)",
                        2, v, NULL, &e) != SKIPQ_OK)
            goto fail;
        if (exec_params_on(pg, "UPDATE skipq.maintenance SET last_run_at = pg_catalog.now(),"
                           " last_run_by = $1::int8 WHERE task = 'rescue'",
                           1, v + 1, NULL, &e) != SKIPQ_OK)
            goto fail;
    }
    if (skipq__exec(pg, "COMMIT", &e) != SKIPQ_OK)
        goto fail;
    return;
fail:
    skipq__log(maint_stopping(w) ? SKIPQ_LOG_DEBUG : SKIPQ_LOG_WARN, "rescuer: %s", e.message);
    if (!maint_lost(pgp, "rescuer"))
        PQclear(PQexec(pg, "ROLLBACK")); /* a failure here is a lost connection */
}

/*
 * Retention: delete finished rows older than the setting, one worker at a
 * time, in batches for at most PRUNE_BUDGET_MS per turn. Returns true when
 * rows were left (behind): the next turn then comes at once, with the
 * rescuer's turn between when it is due, instead of after PRUNE_EVERY_MS.
 * A prune that falls behind lets the table grow, and a larger table makes
 * every prune (and claim) dearer: with the next turn after as long as the
 * last took (half of the connection's time), a 5-minute soak at 30,446
 * jobs/s left the oldest succeeded row 236 s old at the end with a 30 s
 * retention, and still falling behind at 1 s a second; pruning without a
 * pause kept it at 32-56 s at 23,396 jobs/s, the table level. (A fixed
 * 20,000 rows per 10 s tick fell behind for good above 2,000 jobs/s.)
 */
enum {
    PRUNE_BATCH = 5000,
    PRUNE_BUDGET_MS = 500,
    PRUNE_EVERY_MS = 10000,
};

static bool
prune_tick(skipq_worker *w, PGconn **pgp)
{
    PGconn *pg = *pgp;
    bool behind = false;
    char lk[160], older[32], batch[16];
    const char *v[2] = {older, batch};
    skipq_error e;
    PGresult *res;

    snprintf(older, sizeof older, "%lld milliseconds", (long long)w->cfg->retention_ms);
    snprintf(batch, sizeof batch, "%d", PRUNE_BATCH);
    snprintf(lk, sizeof lk, "SELECT pg_try_advisory_lock(%d, %d)", SKIPQ__LOCK_CLASS,
             SKIPQ__LOCK_RETENTION);
    res = PQexec(pg, lk);
    bool mine = PQresultStatus(res) == PGRES_TUPLES_OK && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!mine) {
        maint_lost(pgp, "retention");
        return false;
    }
    for (int64_t t0 = skipq__now_ms();;) {
        if (exec_params_on(pg, "SELECT skipq.prune($1::interval, '{succeeded,cancelled}', $2::int4)",
                        2, v, &res, &e) != SKIPQ_OK) {
            skipq__log(maint_stopping(w) ? SKIPQ_LOG_DEBUG : SKIPQ_LOG_WARN, "retention: %s",
                       e.message);
            break;
        }
        long deleted = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        if (deleted < PRUNE_BATCH)
            break;
        if (skipq__now_ms() - t0 >= PRUNE_BUDGET_MS) {
            behind = true;
            break;
        }
    }
    snprintf(lk, sizeof lk, "SELECT pg_advisory_unlock(%d, %d)", SKIPQ__LOCK_CLASS,
             SKIPQ__LOCK_RETENTION);
    PQclear(PQexec(pg, lk)); /* a failure here is a lost connection, seen below */
    maint_lost(pgp, "retention");
    return behind;
}

/*
 * Vacuum: autovacuum visits a database at most once per
 * autovacuum_naptime (1 min by default), and a busy queue leaves three
 * dead row versions per job (insert, claim, completion) plus the rows
 * retention deletes. In a 5-minute soak at 20,000 jobs/s with a 30 s
 * retention and autovacuum alone, the table grew from 265 to 762 MB,
 * past the server's buffers, and every prune batch and claim then read
 * and evicted pages; vacuumed by the worker every 10 s it stayed at
 * 180-254 MB (docs/performance.md, "Vacuum"). So the maintenance
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
    const char *sql =
        PQserverVersion(pg) >= 170000
            ? "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')"
              " OR pg_catalog.pg_has_role(d.datdba, 'USAGE')"
              " OR pg_catalog.has_table_privilege(c.oid, 'MAINTAIN')"
              " FROM pg_class c, pg_database d"
              " WHERE c.oid = 'skipq.jobs'::regclass::oid AND d.datname = current_database()"
            : "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')"
              " OR pg_catalog.pg_has_role(d.datdba, 'USAGE')"
              " FROM pg_class c, pg_database d"
              " WHERE c.oid = 'skipq.jobs'::regclass::oid AND d.datname = current_database()";
    PGresult *res = PQexec(pg, sql);
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
    if (exec_params_on(pg, "SELECT dead,"
                           " dead - CASE WHEN dead < $2::int8 THEN 0 ELSE $2::int8 END"
                           "   >= greatest($3::int8, live / 50)"
                           " AND coalesce(greatest(pg_stat_get_last_vacuum_time(t),"
                           "   pg_stat_get_last_autovacuum_time(t))"
                           "   < now() - $1::interval, true)"
                           " AND NOT EXISTS (SELECT 1 FROM pg_locks l"
                           "   WHERE l.locktype = 'relation' AND l.relation = t"
                           "   AND l.database = (SELECT oid FROM pg_database"
                           "                     WHERE datname = current_database())"
                           "   AND l.mode = 'ShareUpdateExclusiveLock')"
                           " FROM (SELECT t, pg_stat_get_dead_tuples(t) AS dead,"
                           "   pg_stat_get_live_tuples(t) AS live"
                           "   FROM (SELECT 'skipq.jobs'::regclass::oid) o(t)) s",
                       3, v, &res, &e) != SKIPQ_OK) {
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
    char lk[128];
    skipq_error e;
    PGresult *res;
    int64_t wait = VACUUM_CHECK_MS;
    bool due = false;

    snprintf(lk, sizeof lk, "SELECT pg_try_advisory_lock(%d, %d)", SKIPQ__LOCK_CLASS,
             SKIPQ__LOCK_VACUUM);
    res = PQexec(pg, lk);
    bool mine = PQresultStatus(res) == PGRES_TUPLES_OK && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
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
        w->maint_skipped = false;
        /* no statement_timeout of the role's: a cancelled vacuum keeps
         * little of its work, and would be tried again and again */
        bool ok = skipq__exec(pg, "SET statement_timeout = 0", &e) == SKIPQ_OK;
        /* a stop's cancel that came before the VACUUM was sent is lost:
         * look once more (maint_stop also sends it again) */
        if (ok && !maint_stopping(w))
            ok = skipq__exec(pg, "VACUUM (SKIP_LOCKED, TRUNCATE false) skipq.jobs", &e) ==
                 SKIPQ_OK;
        if (!ok) {
            skipq__log(maint_stopping(w) ? SKIPQ_LOG_DEBUG : SKIPQ_LOG_WARN, "vacuum: %s",
                       e.message);
            wait = w->cfg->vacuum_interval_ms;
        } else if (maint_stopping(w) || w->maint_skipped) {
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
                    skipq__log(SKIPQ_LOG_INFO, "vacuum removed %lld of %lld dead row versions"
                               " of skipq.jobs: an old snapshot still needs them (a long"
                               " transaction, pg_dump, a replication slot); next try in %lld s",
                               before - dead, before, (long long)(wait / 1000));
                } else {
                    vs->backoff_ms = 0;
                }
            }
            skipq__log(SKIPQ_LOG_DEBUG, "vacuumed skipq.jobs in %lld ms: %lld dead row"
                       " versions before, %lld left", (long long)(skipq__now_ms() - t0),
                       before, dead);
        }
        /* a failure here is a lost connection, seen below */
        PQclear(PQexec(pg, "RESET statement_timeout"));
    }
    snprintf(lk, sizeof lk, "SELECT pg_advisory_unlock(%d, %d)", SKIPQ__LOCK_CLASS,
             SKIPQ__LOCK_VACUUM);
    PQclear(PQexec(pg, lk)); /* a failure here is a lost connection, seen below */
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
        w->maint_skipped = true;
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
    pthread_cond_timedwait(&w->maint_cv, &w->maint_mu, &ts);
}

/* Open the maintenance connection (NULL: could not, logged), and make it
 * the one maint_stop cancels. */
static PGconn *
maint_connect(skipq_worker *w)
{
    PGconn *pg = NULL;
    PGcancel *cancel = NULL;
    skipq_error e;
    skipq_rc rc = skipq__connect(w->database, &pg, &e);
    if (rc == SKIPQ_OK) {
        PQsetNoticeReceiver(pg, maint_notice, w);
        rc = skipq__exec(pg, "SET application_name = 'skipq maintenance'", &e);
    }
    if (rc == SKIPQ_OK && !(cancel = PQgetCancel(pg)))
        rc = skipq__fail(&e, SKIPQ_ERR_NOMEM, "out of memory");
    if (rc != SKIPQ_OK) {
        skipq__log(SKIPQ_LOG_WARN, "worker %lld maintenance could not connect: %s",
                   (long long)w->id, e.message);
        if (pg)
            PQfinish(pg);
        return NULL;
    }
    pthread_mutex_lock(&w->maint_mu);
    w->maint_cancel = cancel;
    pthread_mutex_unlock(&w->maint_mu);
    return pg;
}

/* Close it (NULL: nothing to do). */
static void
maint_disconnect(skipq_worker *w, PGconn *pg)
{
    pthread_mutex_lock(&w->maint_mu);
    PGcancel *cancel = w->maint_cancel;
    w->maint_cancel = NULL;
    pthread_mutex_unlock(&w->maint_mu);
    if (cancel)
        PQfreeCancel(cancel);
    if (pg)
        PQfinish(pg);
}

/*
 * The maintenance thread: the rescuer every min(lease / 2, heartbeat),
 * retention, and the table's vacuum, on a connection of its own. On the
 * claiming connection the rescuer's and retention's scans stopped the
 * claims: in a 60 s soak at 13,800 jobs/s, 89 retention batches of 43 ms
 * and 13 rescues of 128 ms, during which the executors ran dry. Here
 * they run beside the claims, on the server's other cores.
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
    /* not at once: a worker started for a burst leaves its vacuum to
     * the time after it, as autovacuum's naptime would, and workers
     * restarted together do not all look at once */
    int64_t next_vacuum = now + w->cfg->vacuum_interval_ms;
    int64_t connect_delay = 100;
    int may_vacuum = -1; /* per connection: vacuum_permitted() */
    vacuum_state vacuum = {0};
    bool said_vacuum = false;
    int64_t rescue_every = min64(w->cfg->lease_timeout_ms / 2, w->cfg->heartbeat_interval_ms);

    pthread_mutex_lock(&w->maint_mu);
    while (!w->maint_quit) {
        int64_t due = next_rescue;
        if (w->cfg->retention_ms > 0 && next_prune < due)
            due = next_prune;
        if (w->cfg->vacuum_interval_ms > 0 && may_vacuum != 0 && next_vacuum < due)
            due = next_vacuum;
        if (!pg && next_connect > due)
            due = next_connect;
        if (skipq__now_ms() < due) {
            maint_wait_until(w, due);
            continue;
        }
        pthread_mutex_unlock(&w->maint_mu);
        now = skipq__now_ms();
        if (!pg && !(pg = maint_connect(w))) {
            next_connect = now + connect_delay;
            connect_delay = min64(connect_delay * 2, 5000);
        } else {
            connect_delay = 100;
            if (now >= next_rescue) {
                rescue(w, &pg);
                next_rescue = now + rescue_every;
            }
            if (pg && w->cfg->retention_ms > 0 && now >= next_prune) {
                /* behind: the next turn at once, after the rescuer's if due */
                next_prune = prune_tick(w, &pg) ? skipq__now_ms()
                                                : skipq__now_ms() + PRUNE_EVERY_MS;
            }
            if (pg && w->cfg->vacuum_interval_ms > 0 && may_vacuum != 0 && now >= next_vacuum) {
                if (may_vacuum < 0 && (may_vacuum = vacuum_permitted(pg)) == 0 && !said_vacuum) {
                    skipq__log(SKIPQ_LOG_INFO, "vacuum: this role may not vacuum skipq.jobs,"
                               " so autovacuum alone keeps it (docs/operations.md)");
                    said_vacuum = true;
                }
                /* -1, could not tell: a failure, tried again after an interval */
                int64_t wait = may_vacuum == 0 ? VACUUM_CHECK_MS : w->cfg->vacuum_interval_ms;
                if (may_vacuum > 0)
                    wait = vacuum_tick(w, &pg, &vacuum);
                else
                    maint_lost(&pg, "vacuum");
                next_vacuum = skipq__now_ms() + wait;
            }
            if (!pg) { /* lost: both turns again once it is back */
                maint_disconnect(w, NULL);
                next_connect = skipq__now_ms() + connect_delay;
                next_rescue = min64(next_rescue, next_connect);
                next_prune = min64(next_prune, next_connect);
                may_vacuum = -1;
            }
        }
        pthread_mutex_lock(&w->maint_mu);
    }
    pthread_mutex_unlock(&w->maint_mu);
    maint_disconnect(w, pg);
    pthread_mutex_lock(&w->maint_mu);
    w->maint_done = true;
    pthread_cond_broadcast(&w->maint_cv);
    pthread_mutex_unlock(&w->maint_mu);
    return NULL;
}

static skipq_rc
maint_start(skipq_worker *w, skipq_error *err)
{
    pthread_condattr_t ca;
    sigset_t all, old;
    int rc;

    if (pthread_mutex_init(&w->maint_mu, NULL) != 0)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "could not start the maintenance thread");
    rc = pthread_condattr_init(&ca);
    if (rc == 0) {
        rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        if (rc == 0)
            rc = pthread_cond_init(&w->maint_cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (rc != 0) {
        pthread_mutex_destroy(&w->maint_mu);
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "could not start the maintenance thread");
    }
    w->maint_quit = false;
    w->maint_done = false;
    w->maint_cancel = NULL;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&w->maint, NULL, maintenance, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&w->maint_cv);
        pthread_mutex_destroy(&w->maint_mu);
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "could not start the maintenance thread");
    }
    w->maint_started = true;
    return SKIPQ_OK;
}

static void
maint_stop(skipq_worker *w)
{
    if (!w->maint_started)
        return;
    pthread_mutex_lock(&w->maint_mu);
    w->maint_quit = true;
    pthread_cond_broadcast(&w->maint_cv);
    /* A scan, a vacuum or a lock wait must not hold up the stop. A cancel
     * that reaches the server between two statements is lost, so it is
     * sent again until the thread is done. */
    while (!w->maint_done) {
        if (w->maint_cancel) {
            char buf[256];
            PQcancel(w->maint_cancel, buf, sizeof buf); /* best effort */
        }
        maint_wait_until(w, skipq__now_ms() + 200);
    }
    pthread_mutex_unlock(&w->maint_mu);
    pthread_join(w->maint, NULL);
    pthread_cond_destroy(&w->maint_cv);
    pthread_mutex_destroy(&w->maint_mu);
    w->maint_started = false;
}

/* ---- shutdown ---------------------------------------------------------------------- */

static void hand_back(skipq_worker *w, bool only_pulled);

/* Take the jobs no executor has started out of the pool and put their
 * rows back (not counted as attempts). Those that could not be put back
 * return to the pool, or, when stopping, stay held as done: the rescuer
 * finds the rows once our lock is gone. Returns how many went back. */
static int
give_back_unstarted(skipq_worker *w, bool stopping)
{
    skipq_job *unstarted = skipq__pool_take_ready(&w->pool);
    skipq_job *keep = NULL, **tail = &keep;
    int n = 0;

    if (!unstarted)
        return 0;
    for (skipq_job *j = unstarted; j; j = j->next)
        j->pulled = true;
    if (w->pg)
        hand_back(w, true);
    for (skipq_job *j = unstarted, *next; j; j = next) {
        next = j->next;
        j->next = NULL;
        j->pulled = false;
        if (j->handed_back) {
            held_remove(w, j);
            skipq__job_free(j);
            n++;
        } else if (stopping) {
            j->done = true;
        } else {
            j->claimed_ms = skipq__now_ms(); /* next check in AUTO_STALE_MS, not at once */
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
static void
hand_back(skipq_worker *w, bool only_pulled)
{
    PGparam *prm, *ids, *tok;
    PGarray a = {0}, b = {0};
    int n = 0;

    if (conn_broken(w))
        return; /* the rescuer will find them: our lock dies with us */
    prm = PQparamCreate(w->pg);
    ids = PQparamCreate(w->pg);
    tok = PQparamCreate(w->pg);
    bool ok = prm && ids && tok;
    for (skipq_job *j = w->held; ok && j; j = j->hnext) {
        if (j->done || j->handed_back || (only_pulled && !j->pulled) ||
            atomic_load(&j->finished))
            continue;
        ok = PQputf(ids, "%int8", (PGint8)j->id) && PQputf(tok, "%int4", (PGint4)j->claims);
        n++;
    }
    a.param = ids;
    b.param = tok;
    if (ok && n > 0 &&
        PQputf(prm, "%int8[] %int4[] %int8 %text", &a, &b, (PGint8)w->id, w->secret)) {
        PGresult *res = PQparamExec(w->pg, prm,
            "SELECT * FROM skipq.hand_back($1::int8[], $2::int4[], $3::int8, $4::text::uuid)",
            0);
        if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
            for (skipq_job *j = w->held; j; j = j->hnext)
                if (!j->done && !j->handed_back && (!only_pulled || j->pulled) &&
                    !atomic_load(&j->finished))
                    j->handed_back = true;
            skipq__log(SKIPQ_LOG_INFO, "worker %lld handed back %d unfinished jobs",
                       (long long)w->id, PQntuples(res));
        } else {
            skipq__log(SKIPQ_LOG_WARN, "could not hand back jobs: %s",
                       PQerrorMessage(w->pg));
        }
        PQclear(res);
    }
    if (prm) PQparamClear(prm);
    if (ids) PQparamClear(ids);
    if (tok) PQparamClear(tok);
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
static int
report_unrecorded(skipq_worker *w)
{
    int n = 0;
    for (skipq_job *j = w->pending; j; j = j->next, n++)
        log_job(SKIPQ_LOG_ERROR, "unrecorded", j,
                "job %lld finished (%s) but its result could not be written; it will "
                "be rescued and run again", (long long)j->id,
                j->outcome == SKIPQ_JOB_OK ? "succeeded" : "not succeeded");
    for (skipq_job *j = w->held; j; j = j->hnext) {
        if (j->done || j->handed_back)
            continue;
        log_job(SKIPQ_LOG_ERROR, "unrecorded", j,
                "job %lld was stopped but could not be handed back; it will be "
                "rescued and run again", (long long)j->id);
        n++;
    }
    return n;
}

static void
unregister(skipq_worker *w)
{
    char id[24];
    const char *v[2] = {id, w->secret};
    skipq_error e;
    if (conn_broken(w))
        return;
    snprintf(id, sizeof id, "%lld", (long long)w->id);
    if (exec_params(w, "SELECT skipq.worker_unregister($1::int8, $2::uuid)", 2, v, NULL,
                    &e) != SKIPQ_OK)
        skipq__log(SKIPQ_LOG_WARN, "could not unregister: %s", e.message);
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

skipq_rc
skipq_worker_run(skipq_worker *w, skipq_error *err)
{
    skipq_rc rc;
    int64_t stop_deadline = 0;
    bool stopping = false;
    int lost = 0;

    if ((rc = check_handlers(w, err)) != SKIPQ_OK)
        return rc;
    if (!w->database)
        w->database = skipq_config_database(w->cfg) ? strdup(skipq_config_database(w->cfg)) : NULL;
    w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->wake_fd < 0)
        return skipq__fail(err, SKIPQ_ERR_IO, "could not create an eventfd: %s", strerror(errno));
    w->reconnect_delay_ms = 100;
    /* half a heartbeat at most, so a wait cannot make a beat late */
    w->lock_wait_ms = w->cfg->heartbeat_interval_ms / 2;
    if (w->lock_wait_ms > 5000)
        w->lock_wait_ms = 5000;
    if (w->lock_wait_ms < 50)
        w->lock_wait_ms = 50;
    if ((rc = connect_worker(w, err)) != SKIPQ_OK)
        return rc;
    if ((rc = skipq__pool_start(&w->pool, w->cfg, w->wake_fd, err)) != SKIPQ_OK) {
        unregister(w);
        return rc;
    }
    w->pool_started = true;
    if ((rc = maint_start(w, err)) != SKIPQ_OK) {
        skipq__pool_stop(&w->pool);
        w->pool_started = false;
        unregister(w);
        return rc;
    }
    skipq__log(SKIPQ_LOG_INFO, "worker %lld started: %zu queue(s), priorities %s, concurrency %d",
               (long long)w->id, w->cfg->nqueues,
               skipq_config_priorities(w->cfg) ? skipq_config_priorities(w->cfg) : "all",
               w->cfg->concurrency);

    int64_t now = skipq__now_ms();
    w->next_poll_ms = now;
    w->next_beat_ms = now + w->cfg->heartbeat_interval_ms;
    w->next_run_at_ms = INT64_MAX;

    for (;;) {
        now = skipq__now_ms();
        if (!stopping && atomic_load(&w->stop_requested)) {
            stopping = true;
            stop_deadline = now + w->cfg->shutdown_timeout_ms;
            skipq__log(SKIPQ_LOG_INFO, "worker %lld stopping: %d job(s) held",
                       (long long)w->id, w->nheld);
            /* Prefetched jobs no executor has started go back now, rather
             * than being started during the shutdown. */
            give_back_unstarted(w, true);
        } else if (!stopping && !conn_broken(w) && w->cfg->prefetch == SKIPQ_PREFETCH_AUTO) {
            /* Automatic prefetch guessed wrong (long jobs came after short
             * ones): parked jobs go back for other workers, and the wait
             * counts as a run time, so claiming ahead stops until short
             * runs bring the average down again. */
            int64_t oldest = skipq__pool_oldest_ready_ms(&w->pool);
            if (oldest != INT64_MAX && now - oldest > AUTO_STALE_MS) {
                int n = give_back_unstarted(w, false);
                /* as if every executor had been busy for the whole wait:
                 * the allowance drops to 0 at any concurrency, and short
                 * runs bring it back (1/32 per run) */
                double waited = (double)(now - oldest) * 1000.0 * w->cfg->concurrency;
                if (w->run_avg_us < waited)
                    w->run_avg_us = waited;
                skipq__log(SKIPQ_LOG_INFO, "worker %lld handed back %d prefetched job(s) "
                           "that waited %lld ms for an executor", (long long)w->id, n,
                           (long long)(now - oldest));
            }
        }
        if (!w->pg && now >= w->reconnect_at_ms) {
            skipq_error e;
            if (connect_worker(w, &e) != SKIPQ_OK) {
                skipq__log(SKIPQ_LOG_WARN, "worker %lld could not reconnect: %s",
                           (long long)w->id, e.message);
                w->reconnect_delay_ms = min64(w->reconnect_delay_ms * 2, 5000);
                w->reconnect_at_ms = now + w->reconnect_delay_ms;
            }
        }
        handle_notifies(w);
        if (w->pg && w->reconcile_due) {
            skipq_error e;
            w->reconcile_due = false;
            if (reconcile(w, &e) != SKIPQ_OK) {
                skipq__log(SKIPQ_LOG_WARN, "%s", e.message);
                w->reconcile_due = true;
                if (conn_broken(w))
                    drop_connection(w, e.message);
            }
        }
        if (w->pg && w->check_cancels)
            read_cancels(w);

        /* Finished jobs: drop those already handed back, the rest join
         * the ones waiting for a connection. */
        skipq_job *done = NULL, **tail = &done;
        for (skipq_job *j = skipq__pool_take_done(&w->pool), *n; j; j = n) {
            n = j->next;
            j->next = NULL;
            j->done = true;
            note_run_time(w, j);
            if (j->handed_back) {
                held_remove(w, j);
                skipq__job_free(j);
                continue;
            }
            if (j->cancel_requested && j->outcome != SKIPQ_JOB_OK)
                j->outcome = SKIPQ_JOB_CANCELLED;
            *tail = j;
            tail = &j->next;
        }
        *tail = take_due_pending(w, now);
        while (*tail)
            tail = &(*tail)->next;
        *tail = w->batch;
        w->batch = NULL;
        int ndone = 0;
        for (skipq_job *j = done; j; j = j->next)
            ndone++;

        if (now >= w->next_poll_ms) {
            w->wake = true;
            w->next_poll_ms = now + w->cfg->poll_interval_ms;
        }
        if (now >= w->next_run_at_ms) {
            w->wake = true;
            w->next_run_at_ms = INT64_MAX;
        }
        /* After completions, claim too: slots are free, and a retry with
         * no delay is runnable at once. */
        /* Slots: executors plus the prefetch allowance (jobs that wait
         * here for an executor, already claimed). */
        int allowance = prefetch_allowance(w, now);
        int slots = w->cfg->concurrency + allowance;
        int free_slots = slots - (w->nheld - ndone);
        /*
         * Completions wait for company while executors have claimed-ahead
         * jobs to start: until half the executors' worth have finished,
         * the pool is down to half the allowance, or AUTO_WAIT_MS has
         * passed. Each cycle is a round trip and a commit, and with short
         * jobs cycles were what the worker's backend spent its time on:
         * /bin/true at concurrency 8 went from 1,870-2,150 to 2,110-2,610
         * jobs/s (docs/performance.md, "Command handlers"). Long jobs
         * claim nothing ahead under `auto`, so theirs complete at once as
         * before (with a fixed prefetch they may wait the 5 ms too);
         * floods of no-op jobs finish many at a time anyway, so theirs do
         * not wait.
         */
        if (done && !stopping && w->pg && allowance > 0) {
            int idle = 0;
            if (!w->batch_since_ms)
                w->batch_since_ms = now;
            /* (an executor still idle: a job pushed has not been taken
             * yet, and the count may be about to drop) */
            if (now - w->batch_since_ms < AUTO_WAIT_MS && 2 * ndone < w->cfg->concurrency &&
                2 * skipq__pool_ready_count(&w->pool, &idle) > allowance && idle == 0) {
                w->batch = done;
                done = NULL;
                free_slots = 0;
            }
        }
        if (!w->batch)
            w->batch_since_ms = 0;
        bool claim = !stopping && free_slots > 0 && (w->wake || done);

        if (w->pg && (done || claim)) {
            skipq_job *ready = NULL;
            int want = claim ? free_slots : 0;
            int got = cycle(w, done, want, &ready);
            if (got < 0 && w->cycle_lock_timeout && w->pg && w->pending)
                complete_singly(w);
            if (got >= 0 && w->pg && claim && got < want &&
                (w->nbands > 1 || w->cfg->nqueues > 1))
                got += claim_more(w, want - got, &ready);
            skipq__pool_push(&w->pool, ready);
            if (got >= 0 && claim) {
                w->wake = got >= want; /* a full claim: more may wait */
                w->drained = got < want;
                if (got < want && w->pg)
                    schedule_next_run_at(w);
                if (got < want) {
                    w->full_since_ms = 0;
                    /* about to wait for a NOTIFY: say so, then look again
                     * (a job committed since that claim sent none) */
                    if (!w->idle_locked && w->pg) {
                        idle_rc ir = idle_lock(w, true);
                        if (ir == IDLE_DONE)
                            w->wake = true;
                        else if (ir == IDLE_TAKEN_BY_PRODUCER) /* from now: after the
                                                                 * round trips above */
                            w->next_poll_ms = min64(w->next_poll_ms,
                                                    skipq__now_ms() + IDLE_RETRY_MS);
                    }
                } else {
                    note_busy(w, now);
                }
            }
            if (got < 0 && w->pg) {
                /* an SQL error that is not a lost connection: back off */
                w->next_poll_ms = skipq__now_ms() + 200;
                w->wake = false;
            }
        } else if (done) {
            keep_pending(w, done); /* no connection: keep them for later */
        }
        if (!stopping && w->pg && free_slots <= 0)
            note_busy(w, now); /* every slot taken: it claims as one frees */
        if (w->once && !stopping && w->pg && w->drained && !w->wake && w->nheld == 0 &&
            !w->pending)
            atomic_store(&w->stop_requested, 1);

        if (stopping) {
            if (w->nheld == 0 && !w->pending)
                break;
            if (now >= stop_deadline) {
                /* Stop what still runs, and put its rows back with the
                 * attempt handed back. */
                for (skipq_job *j = w->held; j; j = j->hnext) {
                    if (j->done)
                        continue;
                    atomic_store(&j->stop, 2);
                    int pgid = atomic_load(&j->pgid);
                    if (pgid > 0)
                        kill(-pgid, SIGKILL);
                }
                hand_back(w, false);
                /* Completions we cannot write now are left for the
                 * rescuer, which finds them once our lock is gone. */
                if (w->pending || !w->pg || now >= stop_deadline + 5000) {
                    lost = report_unrecorded(w);
                    break;
                }
            }
        }

        if (w->pg) {
            if (now >= w->next_beat_ms) {
                heartbeat(w);
                w->next_beat_ms = now + w->cfg->heartbeat_interval_ms;
            }
        }

        /* Notifications that arrived while a statement ran are already
         * read off the socket: take them now, or poll() would not see
         * them until the next timer. */
        handle_notifies(w);

        /* Sleep until something happens: a finished job or a stop (the
         * eventfd), a NOTIFY (the socket), or the next timer. */
        int64_t until = w->next_poll_ms;
        if (w->pg) {
            until = min64(until, w->next_beat_ms);
            until = min64(until, w->next_run_at_ms);
        } else {
            /* timers that need the database wait for the reconnect */
            until = min64(until, w->reconnect_at_ms);
        }
        if (stopping)
            until = min64(until, now + 50);
        if (w->pg && w->cfg->prefetch == SKIPQ_PREFETCH_AUTO) {
            int64_t oldest = skipq__pool_oldest_ready_ms(&w->pool);
            if (oldest != INT64_MAX) /* check parked jobs in time */
                until = min64(until, oldest + AUTO_STALE_MS + 1);
        }
        if (w->pg && w->wake && !stopping && w->nheld < slots && !w->batch)
            until = now;
        if (w->batch)
            until = min64(until, w->batch_since_ms + AUTO_WAIT_MS);
        if (w->pg && w->pending)
            until = min64(until, pending_due_ms(w));
        now = skipq__now_ms();
        int timeout = until <= now ? 0 : (int)min64(until - now, 60000);
        struct pollfd p[2] = {{w->wake_fd, POLLIN, 0}, {-1, POLLIN, 0}};
        if (w->pg)
            p[1].fd = PQsocket(w->pg);
        if (poll(p, w->pg ? 2 : 1, timeout) > 0) {
            if (p[0].revents)
                drain_wake_fd(w);
            if (w->pg && p[1].revents && PQconsumeInput(w->pg) != 1)
                drop_connection(w, PQerrorMessage(w->pg));
        }
    }

    /* Join the executors so no thread outlives the run; jobs they return
     * now stay in the held list and are freed with the worker. */
    skipq__pool_stop(&w->pool);
    w->pool_started = false;
    maint_stop(w);
    unregister(w);
    if (w->pg) {
        PQfinish(w->pg);
        w->pg = NULL;
    }
    if (lost > 0)
        return skipq__fail(err, SKIPQ_ERR_DB,
                           "worker %lld stopped with %d job(s) whose results or hand-back "
                           "could not be written (listed above); they stay running until "
                           "rescued, and run again", (long long)w->id, lost);
    skipq__log(SKIPQ_LOG_INFO, "worker %lld stopped", (long long)w->id);
    return SKIPQ_OK;
}
