/*
 * log.c - the CLI's log lines: the hook the library logs through, and
 * cli_log() for the commands' own lines, in one format (--log-format text
 * or json) and at one level (--log-level, --quiet), all on stderr. With
 * json, the commands' errors are log lines too (cli_log_error_json).
 */
#include "cli.h"

#include "skipq_json.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warning", "error"};

/* The wall clock in UTC to the millisecond: "2026-12-07T10:00:00.123Z". */
static void
now_utc(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + strlen(out), n - strlen(out), ".%03ldZ", ts.tv_nsec / 1000000);
}

/*
 * The library's log hook. Called from worker threads too: each record is
 * built whole and written with one fputs, so lines never interleave.
 */
static void
log_hook(const skipq_log_event *ev, void *userdata)
{
    const struct cli_ctx *ctx = userdata;
    const char *level = (unsigned)ev->level < 4 ? level_names[ev->level] : "info";
    char when[40];

    if (ev->level < ctx->log_level)
        return;
    now_utc(when, sizeof when);
    if (ctx->log_format == CLI_LOG_JSON) {
        json_object *o = json_object_new_object();

        if (!o)
            return;
        json_object_object_add(o, "ts", json_object_new_string(when));
        json_object_object_add(o, "level", json_object_new_string(level));
        json_object_object_add(o, "msg", json_object_new_string(ev->msg ? ev->msg : ""));
        if (ev->event)
            json_object_object_add(o, "event", json_object_new_string(ev->event));
        if (ev->job_id)
            json_object_object_add(o, "job_id", json_object_new_int64(ev->job_id));
        if (ev->kind)
            json_object_object_add(o, "kind", json_object_new_string(ev->kind));
        if (ev->queue)
            json_object_object_add(o, "queue", json_object_new_string(ev->queue));
        if (ev->attempt)
            json_object_object_add(o, "attempt", json_object_new_int(ev->attempt));
        if (ev->duration_ms >= 0)
            json_object_object_add(o, "duration_ms", cli_json_double(ev->duration_ms));
        if (ev->payload) { /* only with skipq worker --log-payloads */
            json_object *p = NULL;
            (void)skipq_json_parse(ev->payload, (size_t)-1, 0, &p, NULL);
            json_object_object_add(o, "payload",
                                   p ? p : json_object_new_string(ev->payload));
        }
        char *line = NULL;
        if (asprintf(&line, "%s\n",
                     json_object_to_json_string_ext(
                         o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)) >=
            0) {
            fputs(line, stderr);
            free(line);
        }
        json_object_put(o);
        return;
    }
    /* "2026-12-07T10:00:00.123Z warning skipq: <message>": when, how
     * bad, and whose, even where no journal adds a timestamp. A message
     * carries kinds, queues and handler stderr verbatim: no terminal
     * controls reach the operator's screen (JSON escapes them). */
    char *line = NULL;
    char *msg = skipq_escape_text(ev->msg, 0);
    char *payload = ev->payload ? skipq_escape_text(ev->payload, 0) : NULL;
    int n = -1;
    if (msg && (payload || !ev->payload))
        n = asprintf(&line, "%s %-7s skipq: %s%s%s\n", when, level, msg,
                     payload ? " payload " : "", payload ? payload : "");
    if (n >= 0) {
        fputs(line, stderr);
        free(line);
    }
    free(msg);
    free(payload);
}

/* The context log_hook was installed with: cli_log's lines go where the
 * library's go, in the same format. */
static struct cli_ctx *log_ctx;

void
cli_log(skipq_log_level level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    if (!log_ctx)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    skipq_log_event ev = {.level = level, .msg = buf, .duration_ms = -1};
    log_hook(&ev, log_ctx);
}

bool
cli_log_error_json(const char *msg)
{
    if (!log_ctx || log_ctx->log_format != CLI_LOG_JSON)
        return false;
    skipq_log_event ev = {.level = SKIPQ_LOG_ERROR, .msg = msg, .duration_ms = -1};
    log_hook(&ev, log_ctx);
    return true;
}

void
cli_log_install(struct cli_ctx *ctx)
{
    if (ctx) {
        log_ctx = ctx;
        skipq_set_log(log_hook, ctx);
    } else {
        skipq_set_log(NULL, NULL);
        log_ctx = NULL;
    }
}
