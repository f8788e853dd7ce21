/*
 * job.c - the skipq_job API that C handlers see: what the job is, and how
 * the handler reports its outcome. The payload and result as json-c
 * values (skipq_json.h) are here too, beside their text forms.
 */
#include "worker_internal.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t
skipq_job_id(const skipq_job *job)
{
    return job->id;
}
const char *
skipq_job_kind(const skipq_job *job)
{
    return job->kind;
}
const char *
skipq_job_queue(const skipq_job *job)
{
    return job->queue;
}
int16_t
skipq_job_priority(const skipq_job *job)
{
    return job->priority;
}
int
skipq_job_attempt(const skipq_job *job)
{
    return job->attempt;
}
const char *
skipq_job_payload_text(const skipq_job *job)
{
    return job->payload_text;
}

json_object *
skipq_job_payload(skipq_job *job)
{
    if (!job->payload) /* NULL again on failure; depth as enqueue's */
        (void)skipq_json_parse(job->payload_text, (size_t)-1, 0, &job->payload, NULL);
    return job->payload;
}

void
skipq_job_set_result(skipq_job *job, json_object *result)
{
    free(job->result);
    job->result = NULL;
    if (result) {
        const char *s = json_object_to_json_string_ext(result, JSON_C_TO_STRING_PLAIN);
        job->result = s ? strdup(s) : NULL;
        json_object_put(result);
    }
}

skipq_rc
skipq_job_set_result_text(skipq_job *job, const char *json, skipq_error *err)
{
    json_object *obj = NULL;
    char *text = NULL;
    skipq_rc rc;

    if (json) {
        /* stored as skipq_job_set_result stores it: json-c's plain text of
         * the parsed value, so the two ways give the same result column */
        if ((rc = skipq_json_parse(json, (size_t)-1, 0, &obj, err)) != SKIPQ_OK)
            return rc;
        const char *s = obj ? json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN)
                            : "null";
        text = s ? strdup(s) : NULL;
        json_object_put(obj);
        if (!text)
            return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    }
    free(job->result);
    job->result = text;
    return SKIPQ_OK;
}

skipq_outcome
skipq_job_fail(skipq_job *job, const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;

    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    free(job->error);
    job->error = msg;
    return SKIPQ_JOB_ERROR;
}

skipq_outcome
skipq_job_snooze(skipq_job *job, int64_t delay_ms)
{
    job->snooze_ms = delay_ms < 0 ? 0 : delay_ms;
    return SKIPQ_JOB_SNOOZE;
}

/* The message of fmt, or NULL (out of memory, or an empty message). */
static char *
vmessage(const char *fmt, va_list ap)
{
    char *msg = NULL;
    if (!fmt || vasprintf(&msg, fmt, ap) < 0)
        return NULL;
    if (!*msg) {
        free(msg);
        return NULL;
    }
    return msg;
}

skipq_outcome
skipq_job_fail_permanent(skipq_job *job, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = vmessage(fmt, ap);
    va_end(ap);
    free(job->error);
    job->error = msg ? msg : strdup("handler failed permanently");
    return SKIPQ_JOB_FAIL_PERMANENT;
}

skipq_outcome
skipq_job_cancel(skipq_job *job, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = vmessage(fmt, ap);
    va_end(ap);
    free(job->error);
    job->error = msg ? msg : strdup("cancelled by the handler");
    return SKIPQ_JOB_CANCELLED;
}

skipq_outcome
skipq_job_snooze_until(skipq_job *job, int64_t unix_us)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    /* rounded up: never before the time asked for */
    return skipq_job_snooze(job, unix_us > now_us ? (unix_us - now_us + 999) / 1000 : 0);
}

skipq_rc
skipq_job_progress(skipq_job *job, int percent, const char *message, skipq_error *err)
{
    if (percent < -1 || percent > 100)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "progress must be from 0 to 100 (or -1), not %d", percent);
    if (skipq__progress_note(job, percent, message) != SKIPQ_OK)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    return SKIPQ_OK;
}

int64_t
skipq_job_deadline_ms(const skipq_job *job)
{
    if (job->deadline_ms == INT64_MAX)
        return INT64_MAX;
    int64_t left = job->deadline_ms - skipq__now_ms();
    return left > 0 ? left : 0;
}

int
skipq_job_should_stop(const skipq_job *job)
{
    return atomic_load(&job->stop) != 0 ||
           (job->deadline_ms != INT64_MAX && skipq__now_ms() >= job->deadline_ms);
}
