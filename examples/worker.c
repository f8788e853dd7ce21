/*
 * worker.c - a worker in your own program: C handlers registered by kind.
 *
 *   example_worker [--once] [DATABASE_URL]  (else $SKIPQ_DATABASE_URL, PG*)
 *
 * Serves the queues "images" and "default", every priority band:
 *   resize       reads {"path": ..., "width": N} from the payload (json-c)
 *                and saves {"path": ..., "thumbnail": ..., "width": N} as
 *                the result; a payload without "path" is a failed attempt
 *   wait_until   {"until": UNIX_SECONDS}: snoozes (not counted as an
 *                attempt) until that time, then succeeds
 * Jobs of other kinds are left for workers that have a handler for them.
 *
 * Runs until SIGINT/SIGTERM (running jobs finish, up to shutdown_timeout),
 * or with --once until nothing runnable is left. One log line per job
 * state change on stderr.
 */
#define _POSIX_C_SOURCE 200809L /* sigaction, nanosleep with -std=c11 */

#include <skipq_json.h> /* skipq.h, and the payload as json-c values */

#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static skipq_worker *the_worker;

static void
on_signal(int sig)
{
    (void)sig;
    if (the_worker)
        skipq_worker_stop(the_worker); /* async-signal-safe */
}

/* Called from the worker's threads: one fprintf per line. */
static void
log_line(const skipq_log_event *ev, void *userdata)
{
    (void)userdata;
    if (ev->level >= SKIPQ_LOG_INFO)
        fprintf(stderr, "worker: %s\n", ev->msg);
}

static skipq_outcome
resize(skipq_job *job, void *userdata)
{
    json_object *payload = skipq_job_payload(job); /* borrowed */
    json_object *path = NULL, *width = NULL;
    (void)userdata;

    if (!payload || !json_object_object_get_ex(payload, "path", &path) ||
        !json_object_is_type(path, json_type_string))
        return skipq_job_fail(job, "payload has no \"path\" string");
    int w = json_object_object_get_ex(payload, "width", &width) ? json_object_get_int(width)
                                                                : 320;

    /*
     * Long work checks in regularly: the job may be cancelled, the worker
     * may be shutting down, or the job's timeout may be near. Past the
     * deadline the attempt counts as timed out whatever we return.
     */
    for (int step = 0; step < 10; step++) {
        if (skipq_job_should_stop(job))
            return skipq_job_fail(job, "stopped after %d of 10 steps", step);
        struct timespec ts = {0, 5 * 1000 * 1000}; /* "work": 5 ms */
        nanosleep(&ts, NULL);
    }

    char thumb[512];
    snprintf(thumb, sizeof thumb, "%s.%dw.png", json_object_get_string(path), w);
    json_object *result = json_object_new_object();
    json_object_object_add(result, "path",
                           json_object_new_string(json_object_get_string(path)));
    json_object_object_add(result, "thumbnail", json_object_new_string(thumb));
    json_object_object_add(result, "width", json_object_new_int(w));
    skipq_job_set_result(job, result); /* takes ownership */
    return SKIPQ_JOB_OK;
}

static skipq_outcome
wait_until(skipq_job *job, void *userdata)
{
    json_object *until = NULL;
    (void)userdata;

    if (!json_object_object_get_ex(skipq_job_payload(job), "until", &until))
        return skipq_job_fail(job, "payload has no \"until\"");
    int64_t left = json_object_get_int64(until) - (int64_t)time(NULL);
    if (left > 0)
        return skipq_job_snooze(job, left * 1000); /* not an attempt */
    skipq_job_set_result(job, json_object_new_string("waited"));
    return SKIPQ_JOB_OK;
}

int
main(int argc, char **argv)
{
    const char *url = getenv("SKIPQ_DATABASE_URL");
    skipq_config *cfg = NULL;
    skipq_error err = {0};
    int once = 0, status = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--once") == 0)
            once = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: example_worker [--once] [DATABASE_URL]\n");
            return 2;
        } else
            url = argv[i];
    }

    skipq_set_log(log_line, NULL); /* before any other thread exists */

    /* The same setters the YAML loader calls; skipq_config_load() could
     * read a file first. */
    cfg = skipq_config_new();
    if (!cfg) {
        fprintf(stderr, "worker: out of memory\n");
        return 1;
    }
    if (skipq_config_set_queue(cfg, "images", &err) != SKIPQ_OK ||
        skipq_config_add_queue(cfg, "default", &err) != SKIPQ_OK ||
        skipq_config_set_priorities(cfg, "high,normal,low", &err) != SKIPQ_OK ||
        skipq_config_set_concurrency(cfg, 4, &err) != SKIPQ_OK ||
        skipq_worker_new(cfg, &the_worker, &err) != SKIPQ_OK ||
        skipq_worker_set_database(the_worker, url, &err) != SKIPQ_OK ||
        skipq_worker_register(the_worker, "resize", resize, NULL, &err) != SKIPQ_OK ||
        skipq_worker_register(the_worker, "wait_until", wait_until, NULL, &err) !=
            SKIPQ_OK) {
        fprintf(stderr, "worker: %s\n", err.message);
        goto out;
    }
    skipq_config_free(cfg); /* the worker keeps its own copy */
    cfg = NULL;
    skipq_worker_set_once(the_worker, once);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* Blocks until stopped (or, with --once, until nothing is runnable). */
    if (skipq_worker_run(the_worker, &err) != SKIPQ_OK) {
        fprintf(stderr, "worker: %s\n", err.message);
        goto out;
    }
    status = 0;
out:
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    skipq_worker_free(the_worker);
    the_worker = NULL;
    skipq_config_free(cfg);
    skipq_set_log(NULL, NULL);
    return status;
}
