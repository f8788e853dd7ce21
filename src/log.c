/*
 * log.c - the library's only way to say something: the hook the
 * application installed with skipq_set_log(). Without one, silence.
 */
#include "internal.h"

#include <stdio.h>

static skipq_log_fn log_fn;
static void *log_userdata;

void
skipq_set_log(skipq_log_fn fn, void *userdata)
{
    log_fn = fn;
    log_userdata = userdata;
}

bool
skipq__log_enabled(void)
{
    return log_fn != NULL;
}

void
skipq__log_event(const skipq_log_event *ev)
{
    if (log_fn)
        log_fn(ev, log_userdata);
}

void
skipq__log(skipq_log_level level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    if (!log_fn)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    skipq_log_event ev = {.level = level, .msg = buf, .duration_ms = -1};
    log_fn(&ev, log_userdata);
}
