/*
 * config.c - the settings of a skipq worker and command: defaults, a
 * typed setter for each one, and the YAML loader.
 *
 * The loader calls the same setters the API exposes, so a value is
 * validated the same way whether it came from a file, a flag or a
 * caller; the loader only adds where it was (file, line and column).
 * It works on a copy and swaps it in at the end, so a config that fails
 * to load leaves the caller's settings exactly as they were instead of
 * half applied.
 */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/*
 * The longest duration any setting takes: 100 years. Values beyond it
 * are typos, and the bound keeps "now + setting" far from overflowing
 * int64 milliseconds (or a PostgreSQL interval) wherever it is used.
 */
#define MAX_DURATION_MS (36500LL * 24 * 3600 * 1000)
#define MAX_CONCURRENCY 1024
#define MAX_PREFETCH 10000
/* PostgreSQL cannot store a field above 1GB; "{}" is the smallest
 * payload there is. */
#define MIN_PAYLOAD ((size_t)2)
#define MAX_PAYLOAD SKIPQ__MAX_PAYLOAD

/*
 * Reading a config takes time and memory linear in its size, whatever
 * the file holds. At most 1 MiB of it is read (--config /dev/zero read
 * until memory ran out). Nesting is refused as soon as it passes 64
 * levels, while libyaml parses: its scanner takes time quadratic in the
 * depth of flow collections (100,000 "[" took 39 s). What libyaml or the
 * setters look up one by one is counted: anchors, aliases and directives
 * (80,000 anchors took 15 s), queues and handlers. And an alias repeats
 * a whole mapping or list wherever it is used, so the keys and items the
 * loader visits are counted too. No real config comes near any of these.
 */
#define CONFIG_MAX_BYTES ((size_t)1 << 20)
#define CONFIG_MAX_DEPTH 64
#define CONFIG_MAX_ANCHORS 1000 /* and as many aliases */
#define CONFIG_MAX_DIRECTIVES 100
#define CONFIG_MAX_LIST 1000 /* queues of a worker; handlers */
#define CONFIG_EXTRA_VISITS 10000 /* visits an alias may add */
#define MIN_HANDLER_STACK ((size_t)128 << 10)
#define MAX_HANDLER_STACK ((size_t)1 << 30)

static const char *const strategy_names[] = {
    [SKIPQ_BACKOFF_FIXED] = "fixed",
    [SKIPQ_BACKOFF_LINEAR] = "linear",
    [SKIPQ_BACKOFF_EXPONENTIAL] = "exponential",
};

/* ------------------------------------------------------------------ */
/* Memory                                                             */
/* ------------------------------------------------------------------ */

static skipq_rc
nomem(skipq_error *err)
{
    return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
}

static skipq_rc
no_config(skipq_error *err)
{
    return skipq__fail(err, SKIPQ_ERR_INVALID, "config is NULL");
}

static void
free_strv(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* A NULL-terminated copy of argv; NULL when out of memory. */
static char **
dup_strv(const char *const *argv)
{
    size_t n = 0;
    char **v;

    while (argv[n])
        n++;
    v = calloc(n + 1, sizeof *v);
    if (!v)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!(v[i] = strdup(argv[i]))) {
            free_strv(v);
            return NULL;
        }
    }
    return v;
}

static void
free_handler(skipq__handler_cfg *h)
{
    free(h->kind);
    free_strv(h->argv);
}

static void
free_queues(char **queues, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(queues[i]);
    free(queues);
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                          */
/* ------------------------------------------------------------------ */

skipq_config *
skipq_config_new(void)
{
    skipq_config *cfg = calloc(1, sizeof *cfg);

    if (!cfg)
        return NULL;
    cfg->concurrency = 8;
    cfg->prefetch = SKIPQ_PREFETCH_AUTO;
    cfg->poll_interval_ms = 1000;
    cfg->heartbeat_interval_ms = 5000;
    cfg->lease_timeout_ms = 30000;
    cfg->shutdown_timeout_ms = 30000;
    cfg->retention_ms = 0;
    cfg->vacuum_interval_ms = 10000;
    cfg->max_attempts = 5;
    cfg->backoff = SKIPQ_BACKOFF_EXPONENTIAL;
    cfg->backoff_base_ms = 1000;
    cfg->backoff_max_ms = 3600 * 1000;
    cfg->jitter = 0.1;
    cfg->recover_older_than_ms = 5 * 60 * 1000;
    cfg->recover_limit = 1000;
    cfg->max_payload = SKIPQ__DEFAULT_MAX_PAYLOAD;
    cfg->handler_stack_size = SKIPQ__DEFAULT_HANDLER_STACK;
    if (skipq_config_set_queue(cfg, "default", NULL) != SKIPQ_OK ||
        skipq_config_set_priorities(cfg, "high,normal,low", NULL) !=
            SKIPQ_OK) {
        skipq_config_free(cfg);
        return NULL;
    }
    return cfg;
}

void
skipq_config_free(skipq_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->database);
    free_queues(cfg->queues, cfg->nqueues);
    free(cfg->priorities);
    free(cfg->bands);
    for (size_t i = 0; i < cfg->nhandlers; i++)
        free_handler(&cfg->handlers[i]);
    free(cfg->handlers);
    free(cfg);
}

skipq_config *
skipq__config_dup(const skipq_config *cfg)
{
    skipq_config *c;

    if (!cfg)
        return NULL;
    c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    /* scalars first; every pointer is then replaced by an owned copy,
     * and cleared before copying so a failure frees only what we own */
    *c = *cfg;
    c->database = NULL;
    c->queues = NULL;
    c->nqueues = 0;
    c->priorities = NULL;
    c->bands = NULL;
    c->nbands = 0;
    c->handlers = NULL;
    c->nhandlers = 0;

    if (cfg->database && !(c->database = strdup(cfg->database)))
        goto fail;
    if (cfg->nqueues) {
        if (!(c->queues = calloc(cfg->nqueues, sizeof *c->queues)))
            goto fail;
        for (; c->nqueues < cfg->nqueues; c->nqueues++)
            if (!(c->queues[c->nqueues] = strdup(cfg->queues[c->nqueues])))
                goto fail;
    }
    if (cfg->priorities && !(c->priorities = strdup(cfg->priorities)))
        goto fail;
    if (cfg->nbands) {
        if (!(c->bands = malloc(cfg->nbands * sizeof *c->bands)))
            goto fail;
        memcpy(c->bands, cfg->bands, cfg->nbands * sizeof *c->bands);
        c->nbands = cfg->nbands;
    }
    if (cfg->nhandlers) {
        if (!(c->handlers = calloc(cfg->nhandlers, sizeof *c->handlers)))
            goto fail;
        for (; c->nhandlers < cfg->nhandlers; c->nhandlers++) {
            const skipq__handler_cfg *src = &cfg->handlers[c->nhandlers];
            skipq__handler_cfg *dst = &c->handlers[c->nhandlers];

            dst->timeout_ms = src->timeout_ms;
            dst->kind = strdup(src->kind);
            dst->argv = dup_strv((const char *const *)src->argv);
            if (!dst->kind || !dst->argv) {
                free_handler(dst);
                goto fail;
            }
        }
    }
    return c;
fail:
    skipq_config_free(c);
    return NULL;
}

const skipq__handler_cfg *
skipq__config_handler(const skipq_config *cfg, const char *kind)
{
    if (!cfg || !kind)
        return NULL;
    for (size_t i = 0; i < cfg->nhandlers; i++)
        if (strcmp(cfg->handlers[i].kind, kind) == 0)
            return &cfg->handlers[i];
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Setters: each validates fully before changing anything             */
/* ------------------------------------------------------------------ */

static skipq_rc
check_duration(const char *what, int64_t ms, int64_t min, skipq_error *err)
{
    if (ms < min)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           min > 0 ? "%s must be positive, not %" PRId64 "ms"
                                   : "%s must not be negative, not %" PRId64
                                     "ms",
                           what, ms);
    if (ms > MAX_DURATION_MS)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "%s must be at most 36500d, not %" PRId64 "ms",
                           what, ms);
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_database(skipq_config *cfg, const char *url,
                          skipq_error *err)
{
    char *copy = NULL;

    if (!cfg)
        return no_config(err);
    /* "" is the same as unset: libpq's PG* variables decide */
    if (url && *url && !(copy = strdup(url)))
        return nomem(err);
    free(cfg->database);
    cfg->database = copy;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_queue(skipq_config *cfg, const char *queue,
                       skipq_error *err)
{
    skipq_rc rc;
    char **v;

    if (!cfg)
        return no_config(err);
    if ((rc = skipq__check_name("queue", queue, err)) != SKIPQ_OK)
        return rc;
    if (!(v = calloc(1, sizeof *v)))
        return nomem(err);
    if (!(v[0] = strdup(queue))) {
        free(v);
        return nomem(err);
    }
    free_queues(cfg->queues, cfg->nqueues);
    cfg->queues = v;
    cfg->nqueues = 1;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_add_queue(skipq_config *cfg, const char *queue,
                       skipq_error *err)
{
    skipq_rc rc;
    char **v, *copy;

    if (!cfg)
        return no_config(err);
    if ((rc = skipq__check_name("queue", queue, err)) != SKIPQ_OK)
        return rc;
    /* a queue listed twice would be claimed from twice as often */
    for (size_t i = 0; i < cfg->nqueues; i++)
        if (strcmp(cfg->queues[i], queue) == 0)
            return SKIPQ_OK;
    if (!(copy = strdup(queue)))
        return nomem(err);
    v = realloc(cfg->queues, (cfg->nqueues + 1) * sizeof *v);
    if (!v) {
        free(copy);
        return nomem(err);
    }
    v[cfg->nqueues++] = copy;
    cfg->queues = v;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_priorities(skipq_config *cfg, const char *bands,
                            skipq_error *err)
{
    skipq_rc rc = SKIPQ_OK;
    char *given = NULL, *work = NULL, *item;
    skipq__band *v = NULL;
    size_t n = 1, nb = 0;

    if (!cfg)
        return no_config(err);
    if (!bands || !*bands)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "priorities must name at least one band");
    for (const char *p = bands; *p; p++)
        n += (*p == ',');
    given = strdup(bands);
    work = strdup(bands);
    v = calloc(n, sizeof *v);
    if (!given || !work || !v) {
        rc = nomem(err);
        goto out;
    }
    /* strtok would skip the empty item in "high,,low"; refuse it, since
     * it is more likely a lost band than a harmless typo */
    item = work;
    for (;;) {
        char *comma = strchr(item, ',');
        char *end;

        if (comma)
            *comma = '\0';
        while (*item == ' ' || *item == '\t')
            item++;
        end = item + strlen(item);
        while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (!*item) {
            rc = skipq__fail(err, SKIPQ_ERR_INVALID,
                             "invalid priorities \"%s\": empty band", bands);
            goto out;
        }
        rc = skipq_parse_priority_band(item, &v[nb].lo, &v[nb].hi, err);
        if (rc != SKIPQ_OK)
            goto out;
        nb++;
        if (!comma)
            break;
        item = comma + 1;
    }
    free(cfg->priorities);
    free(cfg->bands);
    cfg->priorities = given;
    cfg->bands = v;
    cfg->nbands = nb;
    given = NULL;
    v = NULL;
out:
    free(given);
    free(work);
    free(v);
    return rc;
}

skipq_rc
skipq_config_set_concurrency(skipq_config *cfg, int n, skipq_error *err)
{
    if (!cfg)
        return no_config(err);
    if (n < 1 || n > MAX_CONCURRENCY)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "concurrency must be between 1 and %d, not %d",
                           MAX_CONCURRENCY, n);
    cfg->concurrency = n;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_prefetch(skipq_config *cfg, int n, skipq_error *err)
{
    if (!cfg)
        return no_config(err);
    if ((n < 0 && n != SKIPQ_PREFETCH_AUTO) || n > MAX_PREFETCH)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "prefetch must be \"auto\" or between 0 and %d, not %d",
                           MAX_PREFETCH, n);
    cfg->prefetch = n;
    return SKIPQ_OK;
}

/* The duration setters differ only in name, field and whether 0 is
 * meaningful ("off") or a mistake (a busy loop, an instant lease). */
#define DURATION_SETTER(fn, field, name, min)                               \
    skipq_rc fn(skipq_config *cfg, int64_t ms, skipq_error *err)            \
    {                                                                       \
        skipq_rc rc;                                                        \
        if (!cfg)                                                           \
            return no_config(err);                                          \
        if ((rc = check_duration(name, ms, min, err)) != SKIPQ_OK)          \
            return rc;                                                      \
        cfg->field = ms;                                                    \
        return SKIPQ_OK;                                                    \
    }

DURATION_SETTER(skipq_config_set_poll_interval, poll_interval_ms,
                "poll_interval", 1)
DURATION_SETTER(skipq_config_set_heartbeat_interval, heartbeat_interval_ms,
                "heartbeat_interval", 1)
DURATION_SETTER(skipq_config_set_lease_timeout, lease_timeout_ms,
                "lease_timeout", 1)
DURATION_SETTER(skipq_config_set_shutdown_timeout, shutdown_timeout_ms,
                "shutdown_timeout", 0)
DURATION_SETTER(skipq_config_set_retention, retention_ms, "retention", 0)
DURATION_SETTER(skipq_config_set_vacuum_interval, vacuum_interval_ms, "vacuum_interval", 0)

skipq_rc
skipq_config_set_on_success(skipq_config *cfg, skipq_on_success what, skipq_error *err)
{
    if (!cfg)
        return no_config(err);
    if (what != SKIPQ_ON_SUCCESS_KEEP && what != SKIPQ_ON_SUCCESS_DELETE)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "on_success must be keep or delete, not %d", (int)what);
    cfg->on_success = what;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_max_attempts(skipq_config *cfg, int n, skipq_error *err)
{
    if (!cfg)
        return no_config(err);
    if (n < 1)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "max_attempts must be 1 or more, not %d", n);
    cfg->max_attempts = n;
    return SKIPQ_OK;
}

/*
 * base above max is allowed (every delay is then max): refusing it would
 * make the loader depend on key order, since it sets base and max one at
 * a time.
 */
skipq_rc
skipq_config_set_backoff(skipq_config *cfg, skipq_backoff strategy,
                         int64_t base_ms, int64_t max_ms, double jitter,
                         skipq_error *err)
{
    skipq_rc rc;

    if (!cfg)
        return no_config(err);
    if ((int)strategy < SKIPQ_BACKOFF_FIXED ||
        (int)strategy > SKIPQ_BACKOFF_EXPONENTIAL)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "unknown backoff strategy %d", (int)strategy);
    if ((rc = check_duration("backoff base", base_ms, 0, err)) != SKIPQ_OK ||
        (rc = check_duration("backoff max", max_ms, 0, err)) != SKIPQ_OK)
        return rc;
    if (!(jitter >= 0 && jitter <= 1)) /* NaN fails both */
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "jitter must be between 0 and 1, not %g", jitter);
    cfg->backoff = strategy;
    cfg->backoff_base_ms = base_ms;
    cfg->backoff_max_ms = max_ms;
    cfg->jitter = jitter;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_handler_command(skipq_config *cfg, const char *kind,
                                 const char *const *argv, int64_t timeout_ms,
                                 skipq_error *err)
{
    skipq__handler_cfg h = {0};
    skipq_rc rc;

    if (!cfg)
        return no_config(err);
    if ((rc = skipq__check_name("kind", kind, err)) != SKIPQ_OK)
        return rc;
    if (!argv || !argv[0])
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "handler \"%s\" needs a command", kind);
    if (!argv[0][0])
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "handler \"%s\": the program name is empty", kind);
    if ((rc = check_duration("handler timeout", timeout_ms, 0, err)) !=
        SKIPQ_OK)
        return rc;

    h.timeout_ms = timeout_ms;
    h.kind = strdup(kind);
    h.argv = dup_strv(argv);
    if (!h.kind || !h.argv) {
        free_handler(&h);
        return nomem(err);
    }
    /* one handler per kind: a later setting replaces an earlier one */
    for (size_t i = 0; i < cfg->nhandlers; i++) {
        if (strcmp(cfg->handlers[i].kind, kind) == 0) {
            free_handler(&cfg->handlers[i]);
            cfg->handlers[i] = h;
            return SKIPQ_OK;
        }
    }
    skipq__handler_cfg *v =
        realloc(cfg->handlers, (cfg->nhandlers + 1) * sizeof *v);
    if (!v) {
        free_handler(&h);
        return nomem(err);
    }
    v[cfg->nhandlers++] = h;
    cfg->handlers = v;
    return SKIPQ_OK;
}

/* Characters the shell gives no meaning to inside a word. */
static bool
plain_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || strchr("-_./:,+@%^", c) != NULL;
}

/* Starts like something execve() runs itself: an ELF image or a "#!"
 * script. Anything else the shell would run as a script of its own. */
static bool
execve_runs(const char *path)
{
    struct stat st;
    unsigned char head[4] = {0};
    bool ok = false;

    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || access(path, X_OK) != 0)
        return false;
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (n >= 2 && head[0] == '#' && head[1] == '!')
        ok = true;
    else if (n == 4 && memcmp(head, "\177ELF", 4) == 0)
        ok = true;
    return ok;
}

/*
 * The argv that `/bin/sh -c command` would end up running, when the
 * shell has nothing to do but split words and exec: plain words only
 * (no quotes, variables, globs, redirections, assignments or ~), and a
 * program named by a path (so neither a builtin nor a PATH lookup) that
 * execve() accepts. NULL otherwise, or when out of memory (*oom).
 *
 * On a small VM, sh costs a second fork and exec per job, which halved
 * the command-handler throughput (docs/performance.md).
 */
static char **
direct_argv(const char *command, bool *oom)
{
    size_t nwords = 0;
    bool in_word = false;

    *oom = false;
    for (const char *p = command; *p; p++) {
        if (*p == ' ' || *p == '\t') {
            in_word = false;
            continue;
        }
        if (!plain_char(*p))
            return NULL;
        if (!in_word)
            nwords++;
        in_word = true;
    }
    if (nwords == 0)
        return NULL;
    char **v = calloc(nwords + 1, sizeof *v);
    if (!v) {
        *oom = true;
        return NULL;
    }
    size_t k = 0;
    for (const char *p = command; *p;) {
        size_t len = strcspn(p, " \t");
        if (len > 0 && !(v[k++] = strndup(p, len))) {
            free_strv(v);
            *oom = true;
            return NULL;
        }
        p += len;
        p += strspn(p, " \t");
    }
    if (!strchr(v[0], '/') || !execve_runs(v[0])) {
        free_strv(v);
        return NULL;
    }
    return v;
}

skipq_rc
skipq_config_set_handler_shell(skipq_config *cfg, const char *kind,
                               const char *command, int64_t timeout_ms,
                               skipq_error *err)
{
    const char *argv[] = {"/bin/sh", "-c", command, NULL};
    char **direct;
    bool oom;
    skipq_rc rc;

    if (!cfg)
        return no_config(err);
    if (!command || !*command) {
        rc = skipq__check_name("kind", kind, err);
        return rc != SKIPQ_OK ? rc
                              : skipq__fail(err, SKIPQ_ERR_INVALID,
                                            "handler \"%s\" needs a command",
                                            kind);
    }
    direct = direct_argv(command, &oom);
    if (oom)
        return nomem(err);
    if (direct) {
        rc = skipq_config_set_handler_command(cfg, kind, (const char *const *)direct,
                                              timeout_ms, err);
        free_strv(direct);
        return rc;
    }
    return skipq_config_set_handler_command(cfg, kind, argv, timeout_ms, err);
}

skipq_rc
skipq_config_set_recover_defaults(skipq_config *cfg, int64_t older_than_ms,
                                  int limit, skipq_error *err)
{
    skipq_rc rc;

    if (!cfg)
        return no_config(err);
    if ((rc = check_duration("recover older_than", older_than_ms, 0, err)) !=
        SKIPQ_OK)
        return rc;
    if (limit < 1)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "recover limit must be 1 or more, not %d", limit);
    cfg->recover_older_than_ms = older_than_ms;
    cfg->recover_limit = limit;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_max_payload(skipq_config *cfg, size_t bytes,
                             skipq_error *err)
{
    if (!cfg)
        return no_config(err);
    if (bytes < MIN_PAYLOAD || bytes > MAX_PAYLOAD)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "max_payload must be between %zu bytes and 1GB, "
                           "not %zu",
                           MIN_PAYLOAD, bytes);
    cfg->max_payload = bytes;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_handler_stack_size(skipq_config *cfg, size_t bytes,
                                    skipq_error *err)
{
    if (!cfg)
        return no_config(err);
    if (bytes < MIN_HANDLER_STACK || bytes > MAX_HANDLER_STACK)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "handler_stack_size must be between 128KB and "
                           "1GB, not %zu bytes",
                           bytes);
    cfg->handler_stack_size = bytes;
    return SKIPQ_OK;
}

/* ------------------------------------------------------------------ */
/* Getters                                                            */
/* ------------------------------------------------------------------ */

const char *
skipq_config_database(const skipq_config *cfg)
{
    return cfg ? cfg->database : NULL;
}

int
skipq_config_concurrency(const skipq_config *cfg)
{
    return cfg->concurrency;
}

int
skipq_config_prefetch(const skipq_config *cfg)
{
    return cfg->prefetch;
}

int64_t
skipq_config_poll_interval(const skipq_config *cfg)
{
    return cfg->poll_interval_ms;
}

int64_t
skipq_config_heartbeat_interval(const skipq_config *cfg)
{
    return cfg->heartbeat_interval_ms;
}

int64_t
skipq_config_lease_timeout(const skipq_config *cfg)
{
    return cfg->lease_timeout_ms;
}

int64_t
skipq_config_shutdown_timeout(const skipq_config *cfg)
{
    return cfg->shutdown_timeout_ms;
}

int64_t
skipq_config_retention(const skipq_config *cfg)
{
    return cfg->retention_ms;
}

int64_t
skipq_config_vacuum_interval(const skipq_config *cfg)
{
    return cfg->vacuum_interval_ms;
}

skipq_on_success
skipq_config_on_success(const skipq_config *cfg)
{
    return cfg->on_success;
}

int
skipq_config_max_attempts(const skipq_config *cfg)
{
    return cfg->max_attempts;
}

int64_t
skipq_config_recover_older_than(const skipq_config *cfg)
{
    return cfg->recover_older_than_ms;
}

int
skipq_config_recover_limit(const skipq_config *cfg)
{
    return cfg->recover_limit;
}

size_t
skipq_config_max_payload(const skipq_config *cfg)
{
    return cfg->max_payload;
}

size_t
skipq_config_handler_stack_size(const skipq_config *cfg)
{
    return cfg->handler_stack_size;
}

size_t
skipq_config_queue_count(const skipq_config *cfg)
{
    return cfg ? cfg->nqueues : 0;
}

const char *
skipq_config_queue(const skipq_config *cfg, size_t i)
{
    return cfg && i < cfg->nqueues ? cfg->queues[i] : NULL;
}

const char *
skipq_config_priorities(const skipq_config *cfg)
{
    return cfg ? cfg->priorities : NULL;
}

size_t
skipq_config_handler_count(const skipq_config *cfg)
{
    return cfg ? cfg->nhandlers : 0;
}

const char *
skipq_config_handler_kind(const skipq_config *cfg, size_t i)
{
    return cfg && i < cfg->nhandlers ? cfg->handlers[i].kind : NULL;
}

int
skipq_config_warnings(const skipq_config *cfg)
{
    return cfg ? cfg->warnings : 0;
}

/* ------------------------------------------------------------------ */
/* The YAML loader                                                    */
/* ------------------------------------------------------------------ */

struct loader {
    skipq_config *cfg; /* the working copy */
    yaml_document_t *doc;
    const char *name;
    skipq_error *err;
    size_t visits;     /* keys and list items looked at so far */
    size_t max_visits; /* the document's nodes, plus what aliases may add */
};

/* Where a node starts, 1-based as editors count. */
static unsigned long
line_of(const yaml_node_t *node)
{
    return (unsigned long)node->start_mark.line + 1;
}

static unsigned long
column_of(const yaml_node_t *node)
{
    return (unsigned long)node->start_mark.column + 1;
}

/* The loader's error: SKIPQ_ERR_CONFIG (or NOMEM) with the place. */
static skipq_rc
fail_at(struct loader *ld, const yaml_node_t *node, skipq_rc code,
        const char *fmt, ...) SKIPQ__PRINTF(4, 5);

static skipq_rc
fail_at(struct loader *ld, const yaml_node_t *node, skipq_rc code,
        const char *fmt, ...)
{
    char msg[sizeof ld->err->message];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    code = code == SKIPQ_ERR_NOMEM ? code : SKIPQ_ERR_CONFIG;
    (void)skipq__fail(ld->err, code,
                      "could not load config \"%s\": line %lu, column %lu: "
                      "%s",
                      ld->name, line_of(node), column_of(node), msg);
    return code; /* never SKIPQ_OK, which the callers rely on */
}

/* A setter's or parser's error, placed at node. */
static skipq_rc
wrap(struct loader *ld, const yaml_node_t *node, skipq_rc rc,
     const skipq_error *inner)
{
    return fail_at(ld, node, rc, "%s", inner->message);
}

static void
warn_at(struct loader *ld, const yaml_node_t *node, const char *fmt, ...)
    SKIPQ__PRINTF(3, 4);

static void
warn_at(struct loader *ld, const yaml_node_t *node, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ld->cfg->warnings++;
    skipq__log(SKIPQ_LOG_WARN, "config \"%s\": line %lu, column %lu: %s",
               ld->name, line_of(node), column_of(node), msg);
}

static bool
is_null(const yaml_node_t *node)
{
    const char *v;

    if (node->type != YAML_SCALAR_NODE ||
        node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    v = (const char *)node->data.scalar.value;
    return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* "a list", "a mapping" or the scalar quoted, for type errors. */
static const char *
describe(const yaml_node_t *node, char *buf, size_t size)
{
    if (node->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (node->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (node->type != YAML_SCALAR_NODE)
        return "nothing";
    if (node->data.scalar.length > 40)
        snprintf(buf, size, "\"%.36s...\"",
                 (const char *)node->data.scalar.value);
    else
        snprintf(buf, size, "\"%s\"", (const char *)node->data.scalar.value);
    return buf;
}

/* node as a C string, or an error naming what was expected. */
static skipq_rc
scalar(struct loader *ld, const yaml_node_t *node, const char *path,
       const char *expected, const char **out)
{
    char buf[48];

    *out = ""; /* never NULL, also on the error paths */
    if (node->type != YAML_SCALAR_NODE)
        return fail_at(ld, node, SKIPQ_ERR_CONFIG, "%s must be %s, not %s",
                       path, expected, describe(node, buf, sizeof buf));
    /* "\0" is valid YAML; C strings would silently cut it short */
    if (strlen((const char *)node->data.scalar.value) !=
        node->data.scalar.length)
        return fail_at(ld, node, SKIPQ_ERR_CONFIG,
                       "%s must not contain a NUL character", path);
    *out = (const char *)node->data.scalar.value;
    return SKIPQ_OK;
}

/* A decimal integer that fits int: no hex, octal, "1e3" or "1_000". */
static skipq_rc
get_int(struct loader *ld, const yaml_node_t *node, const char *path,
        int *out)
{
    const char *s = NULL, *p;
    skipq_rc rc;
    long long v = 0;
    bool neg = false;
    char buf[48];

    if ((rc = scalar(ld, node, path, "an integer", &s)) != SKIPQ_OK)
        return rc;
    p = s;
    if (*p == '-' || *p == '+')
        neg = (*p++ == '-');
    if (!*p)
        goto bad;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            goto bad;
        v = v * 10 + (*p - '0');
        if (v > (long long)INT_MAX + 1)
            return fail_at(ld, node, SKIPQ_ERR_CONFIG,
                           "%s is out of range: %s", path,
                           describe(node, buf, sizeof buf));
    }
    if (neg)
        v = -v;
    if (v > INT_MAX)
        return fail_at(ld, node, SKIPQ_ERR_CONFIG, "%s is out of range: %s",
                       path, describe(node, buf, sizeof buf));
    *out = (int)v;
    return SKIPQ_OK;
bad:
    return fail_at(ld, node, SKIPQ_ERR_CONFIG, "%s must be an integer, not %s",
                   path, describe(node, buf, sizeof buf));
}

static skipq_rc
get_duration(struct loader *ld, const yaml_node_t *node, const char *path,
             int64_t *out)
{
    skipq_error e;
    const char *s = NULL;
    skipq_rc rc;

    if ((rc = scalar(ld, node, path, "a duration", &s)) != SKIPQ_OK)
        return rc;
    if ((rc = skipq_parse_duration(s, out, &e)) != SKIPQ_OK)
        return wrap(ld, node, rc, &e);
    return SKIPQ_OK;
}

/*
 * A number in 0..1 written as plain decimal ("0.1", "1", ".25"). Not
 * strtod: it follows LC_NUMERIC, and an application that set a locale
 * with a decimal comma would make "0.1" unreadable.
 */
static skipq_rc
get_fraction(struct loader *ld, const yaml_node_t *node, const char *path,
             double *out)
{
    const char *s = NULL, *p;
    skipq_rc rc;
    double v = 0, scale = 1;
    bool neg = false, digits = false;
    char buf[48];

    if ((rc = scalar(ld, node, path, "a number", &s)) != SKIPQ_OK)
        return rc;
    p = s;
    if (*p == '-' || *p == '+')
        neg = (*p++ == '-');
    for (; *p >= '0' && *p <= '9'; p++, digits = true)
        v = v * 10 + (*p - '0');
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, digits = true)
            v += (*p - '0') * (scale /= 10);
    if (!digits || *p)
        return fail_at(ld, node, SKIPQ_ERR_CONFIG,
                       "%s must be a number, not %s", path,
                       describe(node, buf, sizeof buf));
    *out = neg ? -v : v;
    return SKIPQ_OK;
}

/*
 * Bytes: "1048576", "512KB", "1 MB". K, M and G are powers of 1024, as
 * in postgresql.conf, whichever spelling (K, KB, KiB) is used.
 */
static skipq_rc
get_bytes(struct loader *ld, const yaml_node_t *node, const char *path,
          size_t *out)
{
    static const struct {
        const char *suffix;
        unsigned shift;
    } units[] = {
        {"", 0},    {"b", 0},    {"k", 10},   {"kb", 10}, {"kib", 10},
        {"m", 20},  {"mb", 20},  {"mib", 20}, {"g", 30},  {"gb", 30},
        {"gib", 30},
    };
    const char *s = NULL, *p;
    skipq_rc rc;
    uint64_t v = 0;

    if ((rc = scalar(ld, node, path, "a size", &s)) != SKIPQ_OK)
        return rc;
    for (p = s; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > ((uint64_t)1 << 40)) /* far beyond any limit we accept */
            goto bad;
    }
    if (p == s)
        goto bad;
    while (*p == ' ')
        p++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(p, units[i].suffix) == 0) {
            v <<= units[i].shift;
            *out = v > SIZE_MAX ? SIZE_MAX : (size_t)v;
            return SKIPQ_OK;
        }
    }
bad:
    return fail_at(ld, node, SKIPQ_ERR_CONFIG,
                   "invalid size \"%s\": expected a number of bytes, "
                   "optionally followed by KB, MB or GB",
                   s);
}

/* A section whose value may be left empty ("worker:" alone). */
static bool
section(struct loader *ld, const yaml_node_t *node, const char *path,
        skipq_rc *rc)
{
    char buf[48];

    *rc = SKIPQ_OK;
    if (is_null(node))
        return false;
    if (node->type != YAML_MAPPING_NODE) {
        *rc = fail_at(ld, node, SKIPQ_ERR_CONFIG,
                      "%s must be a mapping, not %s", path,
                      describe(node, buf, sizeof buf));
        return false;
    }
    return true;
}

/* Count n keys or items of node against the loader's budget: without
 * aliases each node is visited once, so only aliases can exhaust it. */
static skipq_rc
visit(struct loader *ld, const yaml_node_t *node, size_t n)
{
    ld->visits += n;
    if (ld->visits <= ld->max_visits)
        return SKIPQ_OK;
    return fail_at(ld, node, SKIPQ_ERR_CONFIG,
                   "aliases repeat more keys and items than the config holds "
                   "(%zu)",
                   ld->max_visits);
}

struct key_ref {
    const char *key;
    size_t i;
};

static int
cmp_key_ref(const void *a, const void *b)
{
    const struct key_ref *x = a, *y = b;
    int c = strcmp(x->key, y->key);

    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/*
 * For each pair of map, whether an earlier pair has the same (scalar)
 * key: by sorting, so a mapping of n keys costs n log n. Comparing each
 * key with every earlier one took 30 s for 40,000 keys. Owned by the
 * caller; NULL when out of memory.
 */
static bool *
repeated_keys(struct loader *ld, const yaml_node_t *map)
{
    yaml_node_pair_t *start = map->data.mapping.pairs.start;
    size_t n = (size_t)(map->data.mapping.pairs.top - start), m = 0;
    bool *dup = calloc(n ? n : 1, sizeof *dup);
    struct key_ref *refs = malloc((n ? n : 1) * sizeof *refs);

    if (!dup || !refs) {
        free(dup);
        free(refs);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, start[i].key);
        if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.value)
            refs[m++] = (struct key_ref){(const char *)k->data.scalar.value, i};
    }
    qsort(refs, m, sizeof *refs, cmp_key_ref);
    for (size_t j = 1; j < m; j++)
        if (strcmp(refs[j - 1].key, refs[j].key) == 0)
            dup[refs[j].i] = true;
    free(refs);
    return dup;
}

typedef skipq_rc (*key_fn)(struct loader *ld, const char *path,
                           yaml_node_t *value);

struct key_rule {
    const char *key;
    key_fn fn;
};

/*
 * Call the rule for each key of map, in file order (so a repeated key's
 * last value wins, as most YAML readers do; we also warn about it).
 * Unknown keys are warnings, not errors: a config written for a newer
 * skipq should still start an older worker.
 */
static skipq_rc
walk(struct loader *ld, yaml_node_t *map, const char *prefix,
     const struct key_rule *rules, size_t nrules)
{
    yaml_node_pair_t *start = map->data.mapping.pairs.start;
    yaml_node_pair_t *top = map->data.mapping.pairs.top;
    skipq_rc rc;
    bool *dup;

    if ((rc = visit(ld, map, (size_t)(top - start))) != SKIPQ_OK)
        return rc;
    if (!(dup = repeated_keys(ld, map)))
        return fail_at(ld, map, SKIPQ_ERR_NOMEM, "out of memory");
    for (yaml_node_pair_t *pair = start; pair < top && rc == SKIPQ_OK; pair++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(ld->doc, pair->value);
        char path[256];
        const char *key = NULL;
        size_t i;

        if (!k || !v)
            continue;
        if (k->type != YAML_SCALAR_NODE) {
            rc = fail_at(ld, k, SKIPQ_ERR_CONFIG, "keys must be strings%s%s",
                         *prefix ? " in " : "", prefix);
            break;
        }
        if ((rc = scalar(ld, k, "a key", "a string", &key)) != SKIPQ_OK)
            break;
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "",
                 key);
        if (dup[pair - start])
            warn_at(ld, k, "duplicate key \"%s\": the last one wins", path);
        for (i = 0; i < nrules; i++)
            if (strcmp(rules[i].key, key) == 0)
                break;
        if (i == nrules) {
            warn_at(ld, k, "unknown key \"%s\" ignored", path);
            continue;
        }
        rc = rules[i].fn(ld, path, v);
    }
    free(dup);
    return rc;
}

/* ---- database ---- */

static skipq_rc
on_database(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    const char *s = NULL;
    skipq_rc rc;

    if (!is_null(v) && (rc = scalar(ld, v, path, "a string", &s)) != SKIPQ_OK)
        return rc;
    if ((rc = skipq_config_set_database(ld->cfg, s, &e)) != SKIPQ_OK)
        return wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

/* ---- worker ---- */

static skipq_rc
on_queues(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    const char *s = NULL;
    skipq_rc rc;

    if (v->type == YAML_SEQUENCE_NODE) {
        yaml_node_item_t *it = v->data.sequence.items.start;
        yaml_node_item_t *top = v->data.sequence.items.top;

        if (it == top)
            return fail_at(ld, v, SKIPQ_ERR_CONFIG,
                           "%s must name at least one queue", path);
        /* each queue added is compared with those before it */
        if (top - it > CONFIG_MAX_LIST)
            return fail_at(ld, v, SKIPQ_ERR_CONFIG,
                           "%s lists %zu queues; the limit is %d", path,
                           (size_t)(top - it), CONFIG_MAX_LIST);
        if ((rc = visit(ld, v, (size_t)(top - it))) != SKIPQ_OK)
            return rc;
        for (bool first = true; it < top; it++, first = false) {
            yaml_node_t *item = yaml_document_get_node(ld->doc, *it);
            if (!item)
                continue;
            if ((rc = scalar(ld, item, path, "a list of queue names", &s)) !=
                SKIPQ_OK)
                return rc;
            rc = first ? skipq_config_set_queue(ld->cfg, s, &e)
                       : skipq_config_add_queue(ld->cfg, s, &e);
            if (rc != SKIPQ_OK)
                return wrap(ld, item, rc, &e);
        }
        return SKIPQ_OK;
    }
    if ((rc = scalar(ld, v, path, "a queue name or a list of them", &s)) !=
        SKIPQ_OK)
        return rc;
    if ((rc = skipq_config_set_queue(ld->cfg, s, &e)) != SKIPQ_OK)
        return wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

static skipq_rc
on_priorities(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    const char *s = NULL;
    skipq_rc rc;
    char *joined;
    size_t len = 0;

    if (v->type != YAML_SEQUENCE_NODE) {
        if ((rc = scalar(ld, v, path, "a list of priorities", &s)) != SKIPQ_OK)
            return rc;
        if ((rc = skipq_config_set_priorities(ld->cfg, s, &e)) != SKIPQ_OK)
            return wrap(ld, v, rc, &e);
        return SKIPQ_OK;
    }
    if (v->data.sequence.items.start == v->data.sequence.items.top)
        return fail_at(ld, v, SKIPQ_ERR_CONFIG,
                       "%s must name at least one band", path);
    if ((rc = visit(ld, v,
                    (size_t)(v->data.sequence.items.top -
                             v->data.sequence.items.start))) != SKIPQ_OK)
        return rc;
    /* check each item where it stands, so an error points at the item,
     * then hand the setter the same comma-separated form the CLI uses */
    for (yaml_node_item_t *it = v->data.sequence.items.start;
         it < v->data.sequence.items.top; it++) {
        yaml_node_t *item = yaml_document_get_node(ld->doc, *it);
        int16_t lo, hi;

        if (!item)
            continue;
        if ((rc = scalar(ld, item, path, "a list of priorities", &s)) !=
            SKIPQ_OK)
            return rc;
        if (strchr(s, ',') || !*s)
            return fail_at(ld, item, SKIPQ_ERR_CONFIG,
                           "unrecognized priority \"%s\": use high, normal, "
                           "low or a number",
                           s);
        if ((rc = skipq_parse_priority_band(s, &lo, &hi, &e)) != SKIPQ_OK)
            return wrap(ld, item, rc, &e);
        len += strlen(s) + 1;
    }
    if (!(joined = malloc(len + 1)))
        return fail_at(ld, v, SKIPQ_ERR_NOMEM, "out of memory");
    joined[0] = '\0';
    len = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start;
         it < v->data.sequence.items.top; it++) {
        yaml_node_t *item = yaml_document_get_node(ld->doc, *it);
        size_t n;

        if (!item)
            continue;
        n = item->data.scalar.length;
        if (len)
            joined[len++] = ',';
        memcpy(joined + len, item->data.scalar.value, n);
        len += n;
        joined[len] = '\0';
    }
    rc = skipq_config_set_priorities(ld->cfg, joined, &e);
    free(joined);
    if (rc != SKIPQ_OK)
        return wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

static skipq_rc
on_concurrency(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    skipq_rc rc;
    int n = 0;

    if ((rc = get_int(ld, v, path, &n)) != SKIPQ_OK)
        return rc;
    if ((rc = skipq_config_set_concurrency(ld->cfg, n, &e)) != SKIPQ_OK)
        return wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

static skipq_rc
on_prefetch(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    skipq_rc rc;
    int n = 0;

    if (v->type == YAML_SCALAR_NODE && strcmp((const char *)v->data.scalar.value, "auto") == 0)
        n = SKIPQ_PREFETCH_AUTO;
    else if ((rc = get_int(ld, v, path, &n)) != SKIPQ_OK)
        return rc;
    else if (n < 0) /* -1 is the C API's "auto", not a YAML spelling */
        return fail_at(ld, v, SKIPQ_ERR_CONFIG,
                       "%s must be \"auto\" or between 0 and %d, not %d", path,
                       MAX_PREFETCH, n);
    if ((rc = skipq_config_set_prefetch(ld->cfg, n, &e)) != SKIPQ_OK)
        return wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

#define ON_DURATION(name, setter)                                           \
    static skipq_rc name(struct loader *ld, const char *path,               \
                         yaml_node_t *v)                                    \
    {                                                                       \
        skipq_error e;                                                      \
        skipq_rc rc;                                                        \
        int64_t ms = 0;                                                     \
        if ((rc = get_duration(ld, v, path, &ms)) != SKIPQ_OK)              \
            return rc;                                                      \
        if ((rc = setter(ld->cfg, ms, &e)) != SKIPQ_OK)                     \
            return wrap(ld, v, rc, &e);                                     \
        return SKIPQ_OK;                                                    \
    }

ON_DURATION(on_poll_interval, skipq_config_set_poll_interval)
ON_DURATION(on_heartbeat_interval, skipq_config_set_heartbeat_interval)
ON_DURATION(on_lease_timeout, skipq_config_set_lease_timeout)
ON_DURATION(on_shutdown_timeout, skipq_config_set_shutdown_timeout)
ON_DURATION(on_retention, skipq_config_set_retention)
ON_DURATION(on_vacuum_interval, skipq_config_set_vacuum_interval)

static skipq_rc
on_on_success(struct loader *ld, const char *path, yaml_node_t *v)
{
    const char *s = NULL;
    skipq_rc rc;

    if ((rc = scalar(ld, v, path, "keep or delete", &s)) != SKIPQ_OK)
        return rc;
    if (strcmp(s, "keep") == 0)
        ld->cfg->on_success = SKIPQ_ON_SUCCESS_KEEP;
    else if (strcmp(s, "delete") == 0)
        ld->cfg->on_success = SKIPQ_ON_SUCCESS_DELETE;
    else
        return fail_at(ld, v, SKIPQ_ERR_CONFIG,
                       "unknown %s \"%s\": use keep or delete", path, s);
    return SKIPQ_OK;
}

static skipq_rc
on_handler_stack_size(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    size_t bytes = 0;
    skipq_rc rc;

    if ((rc = get_bytes(ld, v, path, &bytes)) != SKIPQ_OK)
        return rc;
    if ((rc = skipq_config_set_handler_stack_size(ld->cfg, bytes, &e)) !=
        SKIPQ_OK)
        return wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

static const struct key_rule worker_rules[] = {
    {"queues", on_queues},
    {"priorities", on_priorities},
    {"concurrency", on_concurrency},
    {"prefetch", on_prefetch},
    {"poll_interval", on_poll_interval},
    {"heartbeat_interval", on_heartbeat_interval},
    {"lease_timeout", on_lease_timeout},
    {"shutdown_timeout", on_shutdown_timeout},
    {"retention", on_retention},
    {"vacuum_interval", on_vacuum_interval},
    {"on_success", on_on_success},
    {"handler_stack_size", on_handler_stack_size},
};

/* ---- retry ---- */

static skipq_rc
on_max_attempts(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    skipq_rc rc;
    int n = 0;

    if ((rc = get_int(ld, v, path, &n)) != SKIPQ_OK)
        return rc;
    if ((rc = skipq_config_set_max_attempts(ld->cfg, n, &e)) != SKIPQ_OK)
        return wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

/* The backoff keys each change one field and go through the one setter,
 * with the other fields as they stand. */
static skipq_rc
set_backoff_field(struct loader *ld, yaml_node_t *v, int strategy,
                  int64_t base, int64_t max, double jitter)
{
    skipq_error e;
    skipq_rc rc = skipq_config_set_backoff(ld->cfg, (skipq_backoff)strategy,
                                           base, max, jitter, &e);
    return rc != SKIPQ_OK ? wrap(ld, v, rc, &e) : SKIPQ_OK;
}

static skipq_rc
on_strategy(struct loader *ld, const char *path, yaml_node_t *v)
{
    const skipq_config *c = ld->cfg;
    const char *s = NULL;
    skipq_rc rc;

    if ((rc = scalar(ld, v, path, "a strategy", &s)) != SKIPQ_OK)
        return rc;
    for (int i = 0; i < (int)(sizeof strategy_names / sizeof *strategy_names);
         i++)
        if (strcasecmp(s, strategy_names[i]) == 0)
            return set_backoff_field(ld, v, i, c->backoff_base_ms,
                                     c->backoff_max_ms, c->jitter);
    return fail_at(ld, v, SKIPQ_ERR_CONFIG,
                   "unknown backoff strategy \"%s\": use fixed, linear or "
                   "exponential",
                   s);
}

static skipq_rc
on_base(struct loader *ld, const char *path, yaml_node_t *v)
{
    const skipq_config *c = ld->cfg;
    int64_t ms = 0;
    skipq_rc rc = get_duration(ld, v, path, &ms);

    return rc != SKIPQ_OK ? rc
                          : set_backoff_field(ld, v, (int)c->backoff, ms,
                                              c->backoff_max_ms, c->jitter);
}

static skipq_rc
on_max(struct loader *ld, const char *path, yaml_node_t *v)
{
    const skipq_config *c = ld->cfg;
    int64_t ms = 0;
    skipq_rc rc = get_duration(ld, v, path, &ms);

    return rc != SKIPQ_OK ? rc
                          : set_backoff_field(ld, v, (int)c->backoff,
                                              c->backoff_base_ms, ms,
                                              c->jitter);
}

static skipq_rc
on_jitter(struct loader *ld, const char *path, yaml_node_t *v)
{
    const skipq_config *c = ld->cfg;
    double j = 0;
    skipq_rc rc = get_fraction(ld, v, path, &j);

    return rc != SKIPQ_OK ? rc
                          : set_backoff_field(ld, v, (int)c->backoff,
                                              c->backoff_base_ms,
                                              c->backoff_max_ms, j);
}

static const struct key_rule retry_rules[] = {
    {"max_attempts", on_max_attempts},
    {"strategy", on_strategy},
    {"base", on_base},
    {"max", on_max},
    {"jitter", on_jitter},
};

/* ---- handlers ---- */

static skipq_rc
load_handler(struct loader *ld, const char *kind, yaml_node_t *kind_node,
             yaml_node_t *v)
{
    yaml_node_t *command = NULL, *timeout = NULL;
    const char **argv = NULL;
    int64_t timeout_ms = 0;
    skipq_error e;
    skipq_rc rc;
    char path[256], buf[48];

    snprintf(path, sizeof path, "handlers.%s", kind);
    if ((rc = skipq__check_name("kind", kind, &e)) != SKIPQ_OK)
        return wrap(ld, kind_node, rc, &e);
    if (v->type != YAML_MAPPING_NODE)
        return fail_at(ld, v, SKIPQ_ERR_CONFIG,
                       "%s must be a mapping with a command, not %s", path,
                       describe(v, buf, sizeof buf));
    if ((rc = visit(ld, v,
                    (size_t)(v->data.mapping.pairs.top -
                             v->data.mapping.pairs.start))) != SKIPQ_OK)
        return rc;
    /* collect first: the setter takes the command and timeout together */
    for (yaml_node_pair_t *pair = v->data.mapping.pairs.start;
         pair < v->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, pair->key);
        yaml_node_t *val = yaml_document_get_node(ld->doc, pair->value);
        const char *key = NULL;

        if (!k || !val)
            continue;
        if ((rc = scalar(ld, k, "a key", "a string", &key)) != SKIPQ_OK)
            return rc;
        if (strcmp(key, "command") == 0) {
            command = val;
        } else if (strcmp(key, "timeout") == 0) {
            timeout = val;
        } else {
            warn_at(ld, k, "unknown key \"%s.%s\" ignored", path, key);
        }
    }
    if (timeout) {
        char tpath[300];

        snprintf(tpath, sizeof tpath, "%s.timeout", path);
        if ((rc = get_duration(ld, timeout, tpath, &timeout_ms)) != SKIPQ_OK)
            return rc;
    }
    if (!command || is_null(command))
        return fail_at(ld, command ? command : v, SKIPQ_ERR_CONFIG,
                       "handler \"%s\" needs a command", kind);

    if (command->type == YAML_SEQUENCE_NODE) {
        /* a list is argv as is: no shell, no quoting surprises */
        yaml_node_item_t *start = command->data.sequence.items.start;
        size_t n = (size_t)(command->data.sequence.items.top - start), i = 0;

        if (n == 0)
            return fail_at(ld, command, SKIPQ_ERR_CONFIG,
                           "handler \"%s\" needs a command", kind);
        if ((rc = visit(ld, command, n)) != SKIPQ_OK)
            return rc;
        if (!(argv = calloc(n + 1, sizeof *argv)))
            return fail_at(ld, command, SKIPQ_ERR_NOMEM, "out of memory");
        for (; i < n; i++) {
            yaml_node_t *item = yaml_document_get_node(ld->doc, start[i]);
            if (!item) {
                rc = fail_at(ld, command, SKIPQ_ERR_CONFIG,
                             "handler \"%s\" has a broken command", kind);
                goto out;
            }
            if ((rc = scalar(ld, item, path, "a list of strings", &argv[i])) !=
                SKIPQ_OK)
                goto out;
        }
        rc = skipq_config_set_handler_command(ld->cfg, kind, argv, timeout_ms,
                                              &e);
    } else {
        const char *s = NULL;

        if ((rc = scalar(ld, command, path, "a command", &s)) != SKIPQ_OK)
            return rc;
        rc = skipq_config_set_handler_shell(ld->cfg, kind, s, timeout_ms, &e);
    }
    if (rc != SKIPQ_OK)
        rc = wrap(ld, command, rc, &e);
out:
    free(argv);
    return rc;
}

static skipq_rc
on_handlers(struct loader *ld, const char *path, yaml_node_t *v)
{
    yaml_node_pair_t *start, *top;
    skipq_rc rc;
    bool *dup;

    if (!section(ld, v, path, &rc))
        return rc;
    start = v->data.mapping.pairs.start;
    top = v->data.mapping.pairs.top;
    /* each handler set is compared with those before it */
    if (top - start > CONFIG_MAX_LIST)
        return fail_at(ld, v, SKIPQ_ERR_CONFIG,
                       "%s has %zu handlers; the limit is %d", path,
                       (size_t)(top - start), CONFIG_MAX_LIST);
    if ((rc = visit(ld, v, (size_t)(top - start))) != SKIPQ_OK)
        return rc;
    if (!(dup = repeated_keys(ld, v)))
        return fail_at(ld, v, SKIPQ_ERR_NOMEM, "out of memory");
    for (yaml_node_pair_t *pair = start; pair < top && rc == SKIPQ_OK; pair++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, pair->key);
        yaml_node_t *val = yaml_document_get_node(ld->doc, pair->value);
        const char *kind = NULL;

        if (!k || !val)
            continue;
        if ((rc = scalar(ld, k, "a handler kind", "a string", &kind)) !=
            SKIPQ_OK)
            break;
        if (dup[pair - start])
            warn_at(ld, k, "duplicate handler \"%s\": the last one wins",
                    kind);
        rc = load_handler(ld, kind, k, val);
    }
    free(dup);
    return rc;
}

/* ---- recover ---- */

static skipq_rc
on_older_than(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    int64_t ms = 0;
    skipq_rc rc;

    if ((rc = get_duration(ld, v, path, &ms)) != SKIPQ_OK)
        return rc;
    rc = skipq_config_set_recover_defaults(ld->cfg, ms, ld->cfg->recover_limit,
                                           &e);
    return rc != SKIPQ_OK ? wrap(ld, v, rc, &e) : SKIPQ_OK;
}

static skipq_rc
on_limit(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    skipq_rc rc;
    int n = 0;

    if ((rc = get_int(ld, v, path, &n)) != SKIPQ_OK)
        return rc;
    rc = skipq_config_set_recover_defaults(ld->cfg,
                                           ld->cfg->recover_older_than_ms, n,
                                           &e);
    return rc != SKIPQ_OK ? wrap(ld, v, rc, &e) : SKIPQ_OK;
}

static const struct key_rule recover_rules[] = {
    {"older_than", on_older_than},
    {"limit", on_limit},
};

/* ---- limits ---- */

static skipq_rc
on_max_payload(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    size_t bytes = 0;
    skipq_rc rc;

    if ((rc = get_bytes(ld, v, path, &bytes)) != SKIPQ_OK)
        return rc;
    if ((rc = skipq_config_set_max_payload(ld->cfg, bytes, &e)) != SKIPQ_OK)
        return wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

static const struct key_rule limits_rules[] = {
    {"max_payload", on_max_payload},
};

/* ---- top level ---- */

#define NRULES(r) (sizeof(r) / sizeof((r)[0]))

#define ON_SECTION(name, rules)                                             \
    static skipq_rc name(struct loader *ld, const char *path,               \
                         yaml_node_t *v)                                    \
    {                                                                       \
        skipq_rc rc;                                                        \
        if (!section(ld, v, path, &rc))                                     \
            return rc;                                                      \
        return walk(ld, v, path, rules, NRULES(rules));                     \
    }

ON_SECTION(on_worker, worker_rules)
ON_SECTION(on_retry, retry_rules)
ON_SECTION(on_recover, recover_rules)
ON_SECTION(on_limits, limits_rules)

static const struct key_rule top_rules[] = {
    {"database", on_database}, {"worker", on_worker},
    {"retry", on_retry},       {"handlers", on_handlers},
    {"recover", on_recover},   {"limits", on_limits},
};

/* libyaml's own complaint, placed where it found the problem. */
static skipq_rc
syntax_error(const yaml_parser_t *p, const char *name, skipq_error *err)
{
    const char *problem = p->problem ? p->problem : "could not parse";

    if (p->error == YAML_MEMORY_ERROR)
        return skipq__fail(err, SKIPQ_ERR_NOMEM,
                           "could not load config \"%s\": out of memory",
                           name);
    if (p->error == YAML_READER_ERROR)
        return skipq__fail(err, SKIPQ_ERR_CONFIG,
                           "could not load config \"%s\": byte %zu: %s",
                           name, p->problem_offset, problem);
    if (p->context)
        return skipq__fail(
            err, SKIPQ_ERR_CONFIG,
            "could not load config \"%s\": line %lu, column %lu: %s %s "
            "started at line %lu, column %lu",
            name, (unsigned long)p->problem_mark.line + 1,
            (unsigned long)p->problem_mark.column + 1, problem, p->context,
            (unsigned long)p->context_mark.line + 1,
            (unsigned long)p->context_mark.column + 1);
    return skipq__fail(err, SKIPQ_ERR_CONFIG,
                       "could not load config \"%s\": line %lu, column %lu: %s",
                       name, (unsigned long)p->problem_mark.line + 1,
                       (unsigned long)p->problem_mark.column + 1, problem);
}

/* The precheck's error, at the event's place. */
static skipq_rc
fail_at_mark(const char *name, yaml_mark_t mark, skipq_error *err,
             const char *what)
{
    return skipq__fail(err, SKIPQ_ERR_CONFIG,
                       "could not load config \"%s\": line %lu, column %lu: %s",
                       name, (unsigned long)mark.line + 1,
                       (unsigned long)mark.column + 1, what);
}

/*
 * Before libyaml builds the document: libyaml takes time quadratic in the
 * number of directives of a document (each is compared with those before
 * it, before the document starts), which a line count bounds; then the
 * events, in one pass that stops at the first level too deep or the
 * anchor or alias too many, so a pathological file costs no more than
 * its first few kilobytes. Syntax errors are found here too.
 */
static skipq_rc
precheck(const char *yaml, size_t len, const char *name, skipq_error *err)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    size_t directives = 0, depth = 0, anchors = 0, aliases = 0;
    char what[64];
    skipq_rc rc = SKIPQ_OK;

    /* libyaml takes any '%' at the start of a line for a directive */
    for (size_t i = 0; i < len; i++) {
        if (yaml[i] == '%' && (i == 0 || yaml[i - 1] == '\n' ||
                               yaml[i - 1] == '\r') &&
            ++directives > CONFIG_MAX_DIRECTIVES) {
            unsigned long line = 1;
            for (size_t j = 0; j < i; j++)
                line += yaml[j] == '\n';
            return skipq__fail(err, SKIPQ_ERR_CONFIG,
                               "could not load config \"%s\": line %lu: more "
                               "than %d directives (lines starting with %%)",
                               name, line, CONFIG_MAX_DIRECTIVES);
        }
    }
    if (!yaml_parser_initialize(&parser))
        return skipq__fail(err, SKIPQ_ERR_NOMEM,
                           "could not load config \"%s\": out of memory",
                           name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    for (;;) {
        const yaml_char_t *anchor = NULL;
        bool done;

        if (!yaml_parser_parse(&parser, &ev)) {
            rc = syntax_error(&parser, name, err);
            break;
        }
        what[0] = '\0';
        switch (ev.type) {
        case YAML_MAPPING_START_EVENT:
            anchor = ev.data.mapping_start.anchor;
            if (++depth > CONFIG_MAX_DEPTH)
                snprintf(what, sizeof what, "nesting deeper than %d levels",
                         CONFIG_MAX_DEPTH);
            break;
        case YAML_SEQUENCE_START_EVENT:
            anchor = ev.data.sequence_start.anchor;
            if (++depth > CONFIG_MAX_DEPTH)
                snprintf(what, sizeof what, "nesting deeper than %d levels",
                         CONFIG_MAX_DEPTH);
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            depth--;
            break;
        case YAML_SCALAR_EVENT:
            anchor = ev.data.scalar.anchor;
            break;
        case YAML_ALIAS_EVENT:
            if (++aliases > CONFIG_MAX_ANCHORS)
                snprintf(what, sizeof what, "more than %d aliases",
                         CONFIG_MAX_ANCHORS);
            break;
        default:
            break;
        }
        if (anchor && ++anchors > CONFIG_MAX_ANCHORS)
            snprintf(what, sizeof what, "more than %d anchors",
                     CONFIG_MAX_ANCHORS);
        if (what[0])
            rc = fail_at_mark(name, ev.start_mark, err, what);
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (rc != SKIPQ_OK || done)
            break;
    }
    yaml_parser_delete(&parser);
    return rc;
}

static skipq_rc
load_document(skipq_config *work, yaml_parser_t *parser, const char *name,
              skipq_error *err)
{
    yaml_document_t doc, extra;
    yaml_node_t *root;
    skipq_rc rc;
    char buf[48];

    if (!yaml_parser_load(parser, &doc))
        return syntax_error(parser, name, err);
    root = yaml_document_get_root_node(&doc);
    if (!root) {
        /* nothing but comments and blank lines counts as empty too */
        rc = skipq__fail(err, SKIPQ_ERR_CONFIG,
                         "could not load config \"%s\": file is empty", name);
        goto out;
    }
    struct loader ld = {work, &doc, name, err, 0,
                        (size_t)(doc.nodes.top - doc.nodes.start) +
                            CONFIG_EXTRA_VISITS};
    if (root->type != YAML_MAPPING_NODE) {
        rc = fail_at(&ld, root, SKIPQ_ERR_CONFIG,
                     "the top level must be a mapping of settings, not %s",
                     describe(root, buf, sizeof buf));
        goto out;
    }
    if ((rc = walk(&ld, root, "", top_rules, NRULES(top_rules))) != SKIPQ_OK)
        goto out;

    /* "---" then a second document is almost surely two files pasted
     * together; reading only the first would hide half of them */
    if (!yaml_parser_load(parser, &extra)) {
        rc = syntax_error(parser, name, err);
        goto out;
    }
    root = yaml_document_get_root_node(&extra);
    if (root)
        rc = fail_at(&ld, root, SKIPQ_ERR_CONFIG,
                     "more than one YAML document");
    yaml_document_delete(&extra);
out:
    yaml_document_delete(&doc);
    return rc;
}

static skipq_rc
too_large(const char *name, skipq_error *err)
{
    return skipq__fail(err, SKIPQ_ERR_CONFIG,
                       "could not load config \"%s\": more than %zu bytes, "
                       "the limit for a config (1 MiB)",
                       name, CONFIG_MAX_BYTES);
}

skipq_rc
skipq_config_load_string(skipq_config *cfg, const char *yaml, size_t len,
                         const char *name, skipq_error *err)
{
    yaml_parser_t parser;
    skipq_config *work;
    skipq_rc rc;

    if (!name)
        name = "<string>";
    if (!cfg)
        return no_config(err);
    if (!yaml)
        len = 0;
    if (len > CONFIG_MAX_BYTES)
        return too_large(name, err);
    if ((rc = precheck(yaml ? yaml : "", len, name, err)) != SKIPQ_OK)
        return rc;
    if (!(work = skipq__config_dup(cfg)))
        return skipq__fail(err, SKIPQ_ERR_NOMEM,
                           "could not load config \"%s\": out of memory",
                           name);
    if (!yaml_parser_initialize(&parser)) {
        skipq_config_free(work);
        return skipq__fail(err, SKIPQ_ERR_NOMEM,
                           "could not load config \"%s\": out of memory",
                           name);
    }
    yaml_parser_set_input_string(&parser,
                                 (const unsigned char *)(yaml ? yaml : ""),
                                 len);
    rc = load_document(work, &parser, name, err);
    yaml_parser_delete(&parser);
    if (rc == SKIPQ_OK) {
        /* swap contents, so the caller's pointer stays valid */
        struct skipq_config tmp = *cfg;
        *cfg = *work;
        *work = tmp;
    } else {
        /* the settings stay as they were, but what was said was said */
        cfg->warnings = work->warnings;
    }
    skipq_config_free(work);
    return rc;
}

skipq_rc
skipq_config_load(skipq_config *cfg, const char *path, skipq_error *err)
{
    FILE *f;
    char *buf = NULL, *grown;
    size_t len = 0, cap = 0, n;
    skipq_rc rc;

    if (!path)
        return skipq__fail(err, SKIPQ_ERR_CONFIG,
                           "could not load config: no file name");
    if (!(f = fopen(path, "rb")))
        return skipq__fail(err, SKIPQ_ERR_CONFIG,
                           "could not load config \"%s\": %s", path,
                           strerror(errno));
    /* one byte past the limit tells a file at the limit from a longer
     * one, /dev/zero included, without reading on */
    while (len <= CONFIG_MAX_BYTES) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            if (cap > CONFIG_MAX_BYTES + 1)
                cap = CONFIG_MAX_BYTES + 1;
            if (!(grown = realloc(buf, cap))) {
                rc = skipq__fail(err, SKIPQ_ERR_NOMEM,
                                 "could not load config \"%s\": out of memory",
                                 path);
                goto out;
            }
            buf = grown;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        /* e.g. EISDIR: fopen succeeds on a directory, reading fails */
        rc = skipq__fail(err, SKIPQ_ERR_CONFIG,
                         "could not load config \"%s\": %s", path,
                         strerror(errno ? errno : EIO));
        goto out;
    }
    if (len > CONFIG_MAX_BYTES) {
        rc = too_large(path, err);
        goto out;
    }
    rc = skipq_config_load_string(cfg, buf, len, path, err);
out:
    free(buf);
    fclose(f);
    return rc;
}
