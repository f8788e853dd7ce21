/*
 * exec_pool.c - the executor threads: the ready queue the worker loop
 * fills with claimed jobs, the done queue it empties, and running one
 * job's handler (a C function here, a command in exec_command.c, a
 * persistent command in exec_persistent.c).
 *
 * Executors never touch the database; the worker's main thread does all
 * of it (worker.c). A finished job wakes the main loop through its
 * eventfd.
 */
#include "worker_internal.h"

#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void
skipq__job_free(skipq_job *job)
{
    if (!job)
        return;
    json_object_put(job->payload);
    free(job->kind);
    free(job->queue);
    free(job->payload_text);
    free(job->error);
    free(job->result);
    free(job->progress_message);
    free(job);
}

void
skipq__job_run(exec_pool *pool, skipq_job *job)
{
    job->outcome = SKIPQ_JOB_ERROR;
    job->started_ms = skipq__now_ms();
    job->deadline_ms = job->timeout_ms > 0 ? job->started_ms + job->timeout_ms : INT64_MAX;
    if (job->h->fn) {
        job->outcome = job->h->fn(job, job->h->userdata);
        /* A C handler cannot be killed; past its deadline the attempt
         * counts as timed out whatever it returned. */
        if (job->timeout_ms > 0 && skipq__now_ms() > job->deadline_ms &&
            job->outcome != SKIPQ_JOB_CANCELLED) {
            char d[32];
            skipq__fmt_duration(job->timeout_ms, d, sizeof d);
            free(job->result);
            job->result = NULL;
            skipq_job_fail(job, "timed out after %s", d);
            job->outcome = SKIPQ_JOB_ERROR;
            job->timed_out = true;
        }
    } else if (job->h->persist) {
        job->outcome = SKIPQ_JOB_ERROR;
        skipq__run_persistent(pool, job);
    } else {
        job->outcome = SKIPQ_JOB_ERROR;
        skipq__run_command(pool, job);
    }
    if ((job->outcome == SKIPQ_JOB_ERROR || job->outcome == SKIPQ_JOB_FAIL_PERMANENT) &&
        !job->error)
        job->error = strdup("handler failed");
    if (job->error)
        skipq__sanitize_utf8(job->error);
    job->duration_ms = (double)(skipq__now_ms() - job->started_ms);
}

/* ---- the pool ------------------------------------------------------------ */

static void *
executor(void *arg)
{
    exec_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->ready_head && !p->quit) {
            p->idle++;
            pthread_cond_wait(&p->cv, &p->mu);
            p->idle--;
        }
        skipq_job *job = p->ready_head;
        if (!job) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        p->ready_head = job->next;
        if (!p->ready_head)
            p->ready_tail = NULL;
        p->ready_count--;
        job->next = NULL;
        pthread_mutex_unlock(&p->mu);

        /* a job handed back at shutdown before it started does not run */
        if (atomic_load(&job->stop) != 2) {
            int64_t t0 = skipq__now_us();
            skipq__job_run(p, job);
            int64_t us = skipq__now_us() - t0;
            job->run_us = us > 0 ? us : 1; /* 0 means "did not run" */
            /* settled, unless it ended because a stop told it to */
            if (atomic_load(&job->stop) == 0)
                atomic_store(&job->finished, true);
        }

        pthread_mutex_lock(&p->mu);
        if (p->done_tail)
            p->done_tail->next = job;
        else
            p->done_head = job;
        p->done_tail = job;
        bool first = p->done_count++ == 0;
        pthread_mutex_unlock(&p->mu);
        if (first) {
            uint64_t one = 1;
            ssize_t r = write(p->wake_fd, &one, sizeof one);
            (void)r; /* eventfd: only fails when the counter is huge */
        }
    }
}

skipq_rc
skipq__pool_start(exec_pool *p, const skipq_config *cfg, int wake_fd, skipq_error *err)
{
    sigset_t all, old;
    skipq_rc rc;
    int n = cfg->concurrency;

    memset(p, 0, sizeof *p);
    p->reaper_fd = -1;
    p->reaper_pid = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->wake_fd = wake_fd;
    p->threads = calloc((size_t)n, sizeof *p->threads);
    if (!p->threads) {
        skipq__pool_stop(p);
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    }
    /* Forked before any command runs, so it holds none of their pipes;
     * only when commands may run (C handlers start no process). */
    if (cfg->nhandlers > 0 &&
        ((rc = skipq__reaper_start(p, n + skipq__persist_max_processes(cfg), err)) !=
             SKIPQ_OK ||
         (rc = skipq__persist_start(p, cfg, err)) != SKIPQ_OK)) {
        skipq__pool_stop(p);
        return rc;
    }
    /* Handlers' threads take no process signals: SIGTERM and SIGINT are
     * for the thread that runs the worker loop; SIGPIPE from a command
     * that closed its stdin early becomes EPIPE. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    int e = pthread_attr_setstacksize(&attr, cfg->handler_stack_size);
    if (e != 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
        skipq__pool_stop(p);
        return skipq__fail(err, SKIPQ_ERR_CONFIG,
                           "could not use a handler stack size of %zu bytes: %s",
                           cfg->handler_stack_size, strerror(e));
    }
    for (int i = 0; i < n; i++) {
        if ((e = pthread_create(&p->threads[i], &attr, executor, p)) != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            pthread_attr_destroy(&attr);
            skipq__pool_stop(p);
            return skipq__fail(err, SKIPQ_ERR_NOMEM,
                               "could not start executor thread %d (stack %zu bytes): %s",
                               i, cfg->handler_stack_size, strerror(e));
        }
        p->nthreads++;
    }
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return SKIPQ_OK;
}

void
skipq__pool_stop(exec_pool *p)
{
    /* while the executors live: their exit kills the processes they
     * started */
    skipq__persist_quiesce(p);
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    p->threads = NULL;
    p->nthreads = 0;
    /* after the executors: no job holds a process any more */
    skipq__persist_stop(p);
    skipq__reaper_stop(p);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

void
skipq__pool_push(exec_pool *p, skipq_job *jobs)
{
    if (!jobs)
        return;
    skipq_job *last = jobs;
    int n = 1;
    while (last->next) {
        last = last->next;
        n++;
    }
    pthread_mutex_lock(&p->mu);
    if (p->ready_tail)
        p->ready_tail->next = jobs;
    else
        p->ready_head = jobs;
    p->ready_tail = last;
    p->ready_count += n;
    /* Wake one idle executor per job, not all of them: a broadcast for
     * one job woke 16 threads to fight over the mutex, and on 2 cores the
     * one that got the job started ~0.7 ms later (strace of bench
     * latency). Executors that finish take the next job without a wake. */
    int wake = n < p->idle ? n : p->idle;
    bool all = wake == p->idle;
    pthread_mutex_unlock(&p->mu);
    if (all)
        pthread_cond_broadcast(&p->cv);
    else
        for (int i = 0; i < wake; i++)
            pthread_cond_signal(&p->cv);
}

/* Jobs no executor has started yet (prefetched ones), taken back. */
skipq_job *
skipq__pool_take_ready(exec_pool *p)
{
    pthread_mutex_lock(&p->mu);
    skipq_job *list = p->ready_head;
    p->ready_head = p->ready_tail = NULL;
    p->ready_count = 0;
    pthread_mutex_unlock(&p->mu);
    return list;
}

int
skipq__pool_ready_count(exec_pool *p, int *idle)
{
    pthread_mutex_lock(&p->mu);
    int n = p->ready_count;
    *idle = p->idle;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int64_t
skipq__pool_oldest_ready_ms(exec_pool *p)
{
    pthread_mutex_lock(&p->mu);
    int64_t t = p->ready_head ? p->ready_head->claimed_ms : INT64_MAX;
    pthread_mutex_unlock(&p->mu);
    return t;
}

skipq_job *
skipq__pool_take_done(exec_pool *p)
{
    pthread_mutex_lock(&p->mu);
    skipq_job *list = p->done_head;
    p->done_head = p->done_tail = NULL;
    p->done_count = 0;
    pthread_mutex_unlock(&p->mu);
    return list;
}
