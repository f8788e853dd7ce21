/*
 * outcome.c - what a handler may say about its job besides its result,
 * in the words every handler kind shares (docs/worker.md, "Outcomes and
 * progress"): fail for good, snooze (after a delay or until a time),
 * cancel, and progress. A command handler writes them as JSON lines on
 * its control descriptor (exec_command.c), a persistent one as its
 * answer and progress lines (exec_persistent_proto.c); a C handler calls
 * the skipq_job_* functions (job.c). The reading is pure (no I/O, no
 * clock but what the caller passes), so tests/unit/test_outcome.c
 * covers it line by line.
 */
#include "worker.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), no time zone
 * involved: timegm is not in C11, and this cannot read the TZ. */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* n digits at *p into *out; false when they are not there. */
static bool
digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

bool
skipq__parse_iso_time(const char *s, int64_t *us_out)
{
    int y, mo, d, h, mi, sec = 0, oh = 0, om = 0, sign = 0;
    int64_t frac_us = 0;
    const char *p = s;

    if (!s || !digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return false;
    p++;
    if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi))
        return false;
    if (*p == ':') {
        p++;
        if (!digits(&p, 2, &sec))
            return false;
        if (*p == '.' || *p == ',') {
            int64_t scale = 100000;
            p++;
            if (!isdigit((unsigned char)*p))
                return false;
            for (; isdigit((unsigned char)*p); p++, scale /= 10)
                frac_us += (*p - '0') * scale;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '-' ? -1 : 1;
        if (!digits(&p, 2, &oh))
            return false;
        if (*p == ':')
            p++;
        if (*p && !digits(&p, 2, &om))
            return false;
    } else {
        return false; /* a time without its zone means nothing to a worker */
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 ||
        oh > 23 || om > 59)
        return false;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    t -= sign * (oh * 3600 + om * 60);
    *us_out = t * 1000000 + frac_us;
    return true;
}

void
skipq__report_clear(skipq__report *r)
{
    free(r->text);
    free(r->result);
    memset(r, 0, sizeof *r);
    r->percent = -1;
}

static char *
why_msg(const char *fmt, const char *arg)
{
    char *s = NULL;
    if (asprintf(&s, fmt, arg) < 0)
        return NULL;
    return s;
}

/* A string member as text (any other JSON value as its JSON text), or
 * NULL when absent or null. */
static char *
text_of(json_object *obj, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !v)
        return NULL;
    if (json_object_is_type(v, json_type_string))
        return strdup(json_object_get_string(v));
    return strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
                                                        JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* "delay_ms" or "until" of a snooze. */
static bool
read_snooze(json_object *obj, skipq__report *r, int64_t now_us, char **why)
{
    json_object *v = NULL;

    if (json_object_object_get_ex(obj, "until", &v) && v) {
        int64_t at;
        if (!json_object_is_type(v, json_type_string) ||
            !skipq__parse_iso_time(json_object_get_string(v), &at)) {
            *why = strdup("\"until\" must be an ISO 8601 time with its zone, "
                          "as \"2030-01-01T14:00:00Z\"");
            return false;
        }
        r->delay_ms = at > now_us ? (at - now_us + 999) / 1000 : 0;
        return true;
    }
    if (json_object_object_get_ex(obj, "delay_ms", &v) && v) {
        if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0) {
            *why = strdup("\"delay_ms\" must be a number of milliseconds");
            return false;
        }
        r->delay_ms = json_object_get_int64(v);
    }
    return true;
}

/* "progress" (a number 0..100 or null) and "message". */
static bool
read_progress(json_object *obj, skipq__report *r, char **why)
{
    json_object *v = NULL;

    r->kind = SKIPQ__REPORT_PROGRESS;
    if (json_object_object_get_ex(obj, "progress", &v) && v) {
        double pct = json_object_get_double(v);
        if ((!json_object_is_type(v, json_type_int) &&
             !json_object_is_type(v, json_type_double)) ||
            !(pct >= 0 && pct <= 100)) {
            *why = strdup("\"progress\" must be a number from 0 to 100");
            return false;
        }
        r->percent = (int)pct;
    }
    r->text = text_of(obj, "message");
    return true;
}

int
skipq__report_read(json_object *obj, unsigned allow, int64_t now_us, skipq__report *r,
                   char **why)
{
    json_object *v = NULL;
    const char *word = NULL;

    skipq__report_clear(r);
    *why = NULL;
    if (!json_object_is_type(obj, json_type_object)) {
        *why = strdup("not a JSON object");
        return -1;
    }
    if (json_object_object_get_ex(obj, "outcome", &v) && v) {
        if (!json_object_is_type(v, json_type_string)) {
            *why = strdup("\"outcome\" must be a string");
            return -1;
        }
        word = json_object_get_string(v);
    }
    if (!word) {
        if (!json_object_object_get_ex(obj, "progress", NULL) &&
            !json_object_object_get_ex(obj, "message", NULL)) {
            *why = strdup("neither an \"outcome\" nor \"progress\"");
            return -1;
        }
        return read_progress(obj, r, why) ? 0 : -1;
    }
    r->kind = SKIPQ__REPORT_OUTCOME;
    if (strcmp(word, "fail") == 0) {
        r->outcome = SKIPQ_JOB_FAIL_PERMANENT;
        r->text = text_of(obj, "error");
    } else if (strcmp(word, "cancel") == 0) {
        r->outcome = SKIPQ_JOB_CANCELLED;
        r->text = text_of(obj, "reason");
    } else if (strcmp(word, "snooze") == 0) {
        r->outcome = SKIPQ_JOB_SNOOZE;
        if (!read_snooze(obj, r, now_us, why))
            return -1;
    } else if ((allow & SKIPQ__REPORT_ALLOW_OK) && strcmp(word, "ok") == 0) {
        r->outcome = SKIPQ_JOB_OK;
        if (json_object_object_get_ex(obj, "result", &v) && v &&
            !(r->result = strdup(json_object_to_json_string_ext(
                  v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)))) {
            *why = NULL;
            return -1;
        }
    } else if ((allow & SKIPQ__REPORT_ALLOW_OK) && strcmp(word, "error") == 0) {
        r->outcome = SKIPQ_JOB_ERROR;
        r->text = text_of(obj, "error");
    } else {
        *why = why_msg("unknown outcome \"%.64s\"", word);
        return -1;
    }
    return 0;
}

void
skipq__report_apply(skipq_job *job, skipq__report *r)
{
    if (r->kind == SKIPQ__REPORT_PROGRESS) {
        (void)skipq__progress_note(job, r->percent, r->text);
        return;
    }
    switch (r->outcome) {
    case SKIPQ_JOB_OK:
        free(job->result);
        job->result = r->result;
        r->result = NULL;
        job->outcome = SKIPQ_JOB_OK;
        break;
    case SKIPQ_JOB_SNOOZE:
        job->outcome = skipq_job_snooze(job, r->delay_ms);
        break;
    case SKIPQ_JOB_CANCELLED:
        job->outcome = skipq_job_cancel(job, "%s", r->text ? r->text : "");
        break;
    case SKIPQ_JOB_FAIL_PERMANENT:
        job->outcome = skipq_job_fail_permanent(job, "%s",
                                                r->text ? r->text
                                                        : "handler failed permanently");
        break;
    case SKIPQ_JOB_ERROR:
    default:
        job->outcome = skipq_job_fail(job, "%s",
                                      r->text ? r->text : "handler reported an error");
    }
}

/* ---- a command's control descriptor ---------------------------------- */

/* One line written on the control descriptor: a progress report is
 * noted at once, an outcome kept for when the process ends (the last
 * one wins); anything else is logged, escaped and cut, and ignored. */
/* Say, escaped and cut, which control line was ignored and why. */
static void
ignored(skipq_job *job, const char *why, const char *line, size_t len)
{
    char cut[201];
    size_t n = len < 200 ? len : 200;

    memcpy(cut, line, n);
    cut[n] = '\0';
    char *shown = skipq_escape_text(cut, 0);
    skipq__log_job(SKIPQ_LOG_WARN, "control_ignored", job,
                   "job %lld: ignored a line on its control descriptor (%s): %s%s",
                   (long long)job->id, why ? why : "out of memory", shown ? shown : "?",
                   len > 200 ? "..." : "");
    free(shown);
}

static void
control_line(skipq__control *c, skipq_job *job, const char *line, size_t len)
{
    json_object *obj = NULL;
    skipq__report r = {.percent = -1};
    char *why = NULL;
    struct timespec ts;
    int rc = -1;

    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    if (len == 0)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (skipq_json_parse(line, len, 0, &obj, NULL) != SKIPQ_OK)
        why = strdup("not JSON");
    else
        rc = skipq__report_read(obj, 0, (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000,
                                &r, &why);
    if (rc != 0) {
        ignored(job, why, line, len);
    } else if (r.kind == SKIPQ__REPORT_OUTCOME) {
        skipq__report_clear(&c->said);
        c->said = r; /* moved */
        r = (skipq__report){.percent = -1};
    } else {
        skipq__report_apply(job, &r);
    }
    json_object_put(obj);
    skipq__report_clear(&r);
    free(why);
}

void
skipq__control_feed(skipq__control *c, skipq_job *job, const char *d, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(d, '\n', n);
        size_t k = nl ? (size_t)(nl - d) : n;
        if (!c->skipping) {
            if (c->len + k > SKIPQ__CONTROL_LINE_MAX) {
                ignored(job, "a line longer than 64 KiB", "", 0);
                c->len = 0;
                c->skipping = true;
            } else {
                char *np = realloc(c->p, c->len + k + 1);
                if (np) {
                    c->p = np;
                    memcpy(c->p + c->len, d, k);
                    c->len += k;
                    c->p[c->len] = '\0';
                }
            }
        }
        if (!nl)
            return;
        if (!c->skipping)
            control_line(c, job, c->p ? c->p : "", c->len);
        c->len = 0;
        c->skipping = false;
        d += k + 1;
        n -= k + 1;
    }
}

void
skipq__control_end(skipq__control *c, skipq_job *job)
{
    if (c->len > 0 && !c->skipping)
        control_line(c, job, c->p, c->len);
    c->len = 0;
}

void
skipq__control_free(skipq__control *c)
{
    free(c->p);
    skipq__report_clear(&c->said);
    c->p = NULL;
}
