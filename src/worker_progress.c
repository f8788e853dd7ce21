/*
 * worker_progress.c - handlers' progress reports, from the executor that
 * notes one to the job's row.
 *
 * A report only replaces the job's last one in memory (the last report
 * wins); the main thread writes what changed, for all held jobs in one
 * statement (skipq.job_progress, a SECURITY DEFINER function that checks
 * the worker's secret and the claim token as a completion does), at most
 * once per PROGRESS_INTERVAL_MS, and once more just before it completes a
 * job that has an unwritten report, so the row ends with the last word.
 * A handler that reports a thousand times a second costs the database
 * one update a second. A worker whose handlers never report never takes
 * the lock: each turn of its loop reads one atomic flag. Tests:
 * tests/integration/test_outcomes.c (*_reports_progress).
 */
#include "worker.h"

#include <libpqtypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROGRESS_INTERVAL_MS 1000

/* A copy of message of at most max bytes, not cut inside a UTF-8
 * sequence, made storable; NULL when out of memory. */
static char *
short_copy(const char *message, size_t max)
{
    size_t n = strnlen(message, max + 1);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)message[n] & 0xC0) == 0x80)
            n--;
    }
    char *s = strndup(message, n);
    if (s)
        skipq__sanitize_utf8(s);
    return s;
}

skipq_rc
skipq__progress_note(skipq_job *job, int percent, const char *message)
{
    skipq_worker *w = job->w;
    char *copy = NULL;

    if (message && !(copy = short_copy(message, SKIPQ__PROGRESS_MESSAGE_MAX)))
        return SKIPQ_ERR_NOMEM;
    pthread_mutex_lock(&w->progress_mu);
    free(job->progress_message);
    job->progress_message = copy;
    job->progress_percent = percent;
    job->progress_dirty = true;
    bool first = !atomic_exchange(&w->progress_dirty, true);
    pthread_mutex_unlock(&w->progress_mu);
    if (first && w->wake_fd >= 0) {
        /* the main loop may sleep for a poll interval: it must see the
         * report within PROGRESS_INTERVAL_MS */
        uint64_t one = 1;
        ssize_t r = write(w->wake_fd, &one, sizeof one);
        (void)r;
    }
    return SKIPQ_OK;
}

int64_t
skipq__progress_due_ms(skipq_worker *w)
{
    return atomic_load(&w->progress_dirty) ? w->progress_next_ms : INT64_MAX;
}

/* Any job of list with an unwritten report? Under the lock. */
static bool
any_dirty(const skipq_job *list)
{
    for (const skipq_job *j = list; j; j = j->next)
        if (j->progress_dirty)
            return true;
    return false;
}

/* The statement's parameters for every held job with an unwritten
 * report, taken (marked written); *n how many. NULL when none or out of
 * memory (the reports are then dropped: progress is advisory). */
static PGparam *
take_reports(skipq_worker *w, int *n)
{
    PGparam *a[4] = {0};
    PGarray arr[4];
    PGparam *prm = PQparamCreate(w->sess.pg);
    bool ok = prm != NULL;

    *n = 0;
    memset(arr, 0, sizeof arr);
    for (int i = 0; i < 4; i++)
        ok = ok && (a[i] = PQparamCreate(w->sess.pg)) != NULL;
    pthread_mutex_lock(&w->progress_mu);
    atomic_store(&w->progress_dirty, false);
    for (skipq_job *j = w->jobs.held; j; j = j->hnext) {
        if (!j->progress_dirty)
            continue;
        j->progress_dirty = false;
        ok = ok && PQputf(a[0], "%int8", (PGint8)j->id) &&
             PQputf(a[1], "%int4", (PGint4)j->claim_token) &&
             PQputf(a[2], "%int4", (PGint4)j->progress_percent) &&
             PQputf(a[3], "%text", j->progress_message);
        (*n)++;
    }
    pthread_mutex_unlock(&w->progress_mu);
    for (int i = 0; i < 4; i++)
        arr[i].param = a[i];
    ok = ok && *n > 0 &&
         PQputf(prm, "%int8[] %int4[] %int4[] %text[] %int8 %text", &arr[0], &arr[1],
                &arr[2], &arr[3], (PGint8)w->sess.id, w->sess.secret);
    for (int i = 0; i < 4; i++)
        if (a[i])
            PQparamClear(a[i]);
    if (!ok && prm) {
        PQparamClear(prm);
        prm = NULL;
    }
    return prm;
}

void
skipq__progress_flush(skipq_worker *w, int64_t now, const skipq_job *done)
{
    PGresult *res = NULL;
    PGparam *prm;
    int n;

    if (!w->sess.pg)
        return;
    if (now < w->progress_next_ms) {
        pthread_mutex_lock(&w->progress_mu);
        bool final = any_dirty(done);
        pthread_mutex_unlock(&w->progress_mu);
        if (!final)
            return;
    }
    w->progress_next_ms = now + PROGRESS_INTERVAL_MS;
    if (!(prm = take_reports(w, &n)))
        return;
    if (!skipq__stmt_run(w->sess.pg, w->sess.send, SKIPQ__STMT_PROGRESS, prm, 0, NULL,
                         &res)) {
        skipq_error e;
        skipq__db_fail(&e, w->sess.pg, res, "could not write the progress of %d job(s)", n);
        skipq__log(SKIPQ_LOG_WARN, "%s", e.message);
        if (skipq__session_broken(&w->sess))
            skipq__session_drop(w, e.message);
    }
    PQclear(res);
    PQparamClear(prm);
}
