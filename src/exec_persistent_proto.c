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
#include <time.h>

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

/*
 * An answer or a progress line (outcome.c reads both, in the words every
 * handler kind shares): the outcome set, or the progress noted for the
 * worker to write (SKIPQ__PERSIST_WAIT), or a line that breaks the
 * protocol.
 */
static int
apply_report(skipq_job *job, json_object *obj, const char *line, size_t len, char **why)
{
    skipq__report r = {.percent = -1};
    char *what = NULL;
    struct timespec ts;
    int rc = SKIPQ__PERSIST_BROKEN;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (skipq__report_read(obj, SKIPQ__REPORT_ALLOW_OK,
                           (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, &r,
                           &what) != 0) {
        if (json_object_object_get_ex(obj, "outcome", NULL)) {
            *why = what ? skipq__persist_broken(what, line, len) : NULL;
        } else {
            /* a progress line it cannot store is no reason to fail the
             * job: such lines were only logged before they were stored */
            char *shown = skipq__persist_broken(what ? what : "out of memory", line, len);
            char *esc = shown ? skipq_escape_text(shown, 0) : NULL;
            skipq__log(SKIPQ_LOG_WARN, "job %lld: ignored a progress line (%s)",
                       (long long)job->id, esc ? esc : "?");
            free(esc);
            free(shown);
            rc = SKIPQ__PERSIST_WAIT;
        }
    } else {
        rc = r.kind == SKIPQ__REPORT_OUTCOME ? SKIPQ__PERSIST_ANSWER : SKIPQ__PERSIST_WAIT;
        skipq__report_apply(job, &r);
    }
    skipq__report_clear(&r);
    free(what);
    return rc;
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
    if (!json_object_object_get_ex(obj, "outcome", NULL) &&
        !json_object_object_get_ex(obj, "progress", NULL) &&
        !json_object_object_get_ex(obj, "message", NULL)) {
        *why = skipq__persist_broken("an answer without an \"outcome\"", line, len);
        goto out;
    }
    r = apply_report(job, obj, line, len, why);
out:
    json_object_put(obj);
    if (r == SKIPQ__PERSIST_BROKEN && !*why)
        *why = strdup("out of memory");
    return r;
}
