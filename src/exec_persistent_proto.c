/*
 * exec_persistent_proto.c - the lines of the persistent handlers'
 * protocol (docs/worker.md, "Persistent command handlers"): the request
 * a process is given for a job, and what its answer lines mean. No
 * processes here: exec_persistent.c runs them.
 */
#include "worker_internal.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a process is given for job: one line of JSON. NULL when out of
 * memory. */
char *
skipq__persist_request(const skipq_job *job, size_t *len)
{
    const int fl = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
    json_object *kind = json_object_new_string(job->kind);
    json_object *queue = json_object_new_string(job->queue);
    json_object *payload = NULL;
    const char *ptext = job->payload_text && *job->payload_text ? job->payload_text
                                                                : "null";
    char *line = NULL;

    /* A payload stored as json (not jsonb) may keep its newlines: the
     * line must stay one line. */
    if (strpbrk(ptext, "\r\n") &&
        skipq_json_parse(ptext, (size_t)-1, 0, &payload, NULL) == SKIPQ_OK)
        ptext = json_object_to_json_string_ext(payload, fl);
    if (kind && queue &&
        asprintf(&line,
                 "{\"id\":%lld,\"kind\":%s,\"queue\":%s,\"attempt\":%d,\"payload\":%s}\n",
                 (long long)job->id, json_object_to_json_string_ext(kind, fl),
                 json_object_to_json_string_ext(queue, fl), job->attempt, ptext) < 0)
        line = NULL;
    json_object_put(kind);
    json_object_put(queue);
    json_object_put(payload);
    *len = line ? strlen(line) : 0;
    return line;
}

/* "...: <the start of the line>" for a broken answer; NULL when out of
 * memory. */
char *
skipq__persist_broken(const char *what, const char *line, size_t len)
{
    char *s = NULL;
    int n = len > 200 ? 200 : (int)len;
    if (asprintf(&s, "%s: %.*s%s", what, n, line, len > 200 ? "..." : "") < 0)
        return NULL;
    return s;
}

/* The outcome an "ok", "error" or "snooze" answer asks for. */
static int
apply_answer(skipq_job *job, json_object *obj, const char *outcome, const char *line,
             size_t len, char **why)
{
    const int fl = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
    json_object *v = NULL;

    if (strcmp(outcome, "ok") == 0) {
        job->outcome = SKIPQ_JOB_OK;
        if (json_object_object_get_ex(obj, "result", &v) && v) {
            if (!(job->result = strdup(json_object_to_json_string_ext(v, fl))))
                job->outcome = skipq_job_fail(job, "out of memory");
        }
    } else if (strcmp(outcome, "error") == 0) {
        const char *msg = "handler reported an error";
        if (json_object_object_get_ex(obj, "error", &v) && v)
            msg = json_object_is_type(v, json_type_string)
                      ? json_object_get_string(v)
                      : json_object_to_json_string_ext(v, fl);
        job->outcome = skipq_job_fail(job, "%s", msg);
    } else if (strcmp(outcome, "snooze") == 0) {
        int64_t ms = 0;
        if (json_object_object_get_ex(obj, "delay_ms", &v) && v) {
            if (!json_object_is_type(v, json_type_int) ||
                (ms = json_object_get_int64(v)) < 0) {
                *why = skipq__persist_broken(
                    "\"delay_ms\" must be a number of milliseconds", line, len);
                return SKIPQ__PERSIST_BROKEN;
            }
        }
        job->outcome = skipq_job_snooze(job, ms);
    } else {
        *why = skipq__persist_broken("unknown outcome", line, len);
        return SKIPQ__PERSIST_BROKEN;
    }
    return SKIPQ__PERSIST_ANSWER;
}

/*
 * One line the process wrote during job: its answer (SKIPQ__PERSIST_ANSWER, the
 * outcome set), a progress line or an empty one (SKIPQ__PERSIST_WAIT), or
 * anything else (SKIPQ__PERSIST_BROKEN, *why says what).
 */
int
skipq__persist_take_line(skipq_job *job, const char *line, size_t len, char **why)
{
    json_object *obj = NULL, *v = NULL;
    const char *outcome = NULL;
    int r = SKIPQ__PERSIST_BROKEN;

    if (len == 0 || (len == 1 && line[0] == '\r'))
        return SKIPQ__PERSIST_WAIT;
    if (skipq_json_parse(line, len, 0, &obj, NULL) != SKIPQ_OK ||
        !json_object_is_type(obj, json_type_object)) {
        *why = skipq__persist_broken("an answer that is not a JSON object", line, len);
        goto out;
    }
    if (!json_object_object_get_ex(obj, "id", &v) ||
        !json_object_is_type(v, json_type_int) || json_object_get_int64(v) != job->id) {
        char what[96];
        snprintf(what, sizeof what, "an answer that is not for job %lld",
                 (long long)job->id);
        *why = skipq__persist_broken(what, line, len);
        goto out;
    }
    if (json_object_object_get_ex(obj, "outcome", &v) &&
        json_object_is_type(v, json_type_string))
        outcome = json_object_get_string(v);
    if (!outcome && json_object_object_get_ex(obj, "progress", &v)) {
        skipq__log(SKIPQ_LOG_DEBUG, "job %lld progress: %.*s", (long long)job->id,
                   len > 500 ? 500 : (int)len, line);
        r = SKIPQ__PERSIST_WAIT;
        goto out;
    }
    if (!outcome) {
        *why = skipq__persist_broken("an answer without an \"outcome\"", line, len);
        goto out;
    }
    r = apply_answer(job, obj, outcome, line, len, why);
out:
    json_object_put(obj);
    if (r == SKIPQ__PERSIST_BROKEN && !*why)
        *why = strdup("out of memory");
    return r;
}
