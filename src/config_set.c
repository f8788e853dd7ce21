/*
 * config_set.c - the typed setters of skipq_config: each validates its
 * value fully (bounds, names, handler commands) before changing anything,
 * so a refused value leaves the settings as they were. The YAML loader
 * (config_keys.c) and the CLI's flags call these same setters.
 */
#include "config_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The longest duration any setting takes: 100 years. Values beyond it
 * are typos, and the bound keeps "now + setting" far from overflowing
 * int64 milliseconds (or a PostgreSQL interval) wherever it is used.
 */
#define MAX_DURATION_MS (36500LL * 24 * 3600 * 1000)
#define MAX_CONCURRENCY 1024
/* PostgreSQL cannot store a field above 1GB; "{}" is the smallest
 * payload there is. */
#define MIN_PAYLOAD ((size_t)2)
#define MAX_PAYLOAD SKIPQ__MAX_PAYLOAD
#define MIN_HANDLER_STACK ((size_t)128 << 10)
#define MAX_HANDLER_STACK ((size_t)1 << 30)

static skipq_rc
nomem(skipq_error *err)
{
    return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
}

/* ------------------------------------------------------------------ */
/* Setters: each validates fully before changing anything             */
/* ------------------------------------------------------------------ */

static skipq_rc
check_duration(const char *what, int64_t ms, int64_t min, skipq_error *err)
{
    if (ms < min && min > 1)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "%s must be at least %" PRId64 "ms, not %" PRId64 "ms", what,
                           min, ms);
    if (ms < min)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           min > 0 ? "%s must be positive, not %" PRId64 "ms"
                                   : "%s must not be negative, not %" PRId64 "ms",
                           what, ms);
    if (ms > MAX_DURATION_MS)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "%s must be at most 36500d, not %" PRId64 "ms", what, ms);
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_database(skipq_config *cfg, const char *url, skipq_error *err)
{
    char *copy = NULL;

    if (!cfg)
        return skipq__no_config(err);
    /* "" is the same as unset: libpq's PG* variables decide */
    if (url && *url && !(copy = strdup(url)))
        return nomem(err);
    free(cfg->database);
    cfg->database = copy;
    return SKIPQ_OK;
}

/* Kept as given: the CLI parses the address (cli/http.c) and refuses a
 * malformed one before serving; here only what no address can be. */
skipq_rc
skipq_config_set_http(skipq_config *cfg, const char *addr, skipq_error *err)
{
    char *copy = NULL;

    if (!cfg)
        return skipq__no_config(err);
    if (addr && strlen(addr) > 300)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "http address is too long (%zu bytes)",
                           strlen(addr));
    for (const char *p = addr; p && *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return skipq__fail(err, SKIPQ_ERR_INVALID,
                               "http address must not contain spaces or control "
                               "characters");
    if (addr && *addr && !(copy = strdup(addr)))
        return nomem(err);
    free(cfg->http);
    cfg->http = copy;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_listen_database(skipq_config *cfg, const char *url, skipq_error *err)
{
    char *copy = NULL;

    if (!cfg)
        return skipq__no_config(err);
    if (url && *url && !(copy = strdup(url)))
        return nomem(err);
    free(cfg->listen_database);
    cfg->listen_database = copy;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_listen(skipq_config *cfg, int on, skipq_error *err)
{
    if (!cfg)
        return skipq__no_config(err);
    cfg->listen = on != 0;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_queue(skipq_config *cfg, const char *queue, skipq_error *err)
{
    skipq_rc rc;
    char **v;

    if (!cfg)
        return skipq__no_config(err);
    if ((rc = skipq_check_name("queue", queue, err)) != SKIPQ_OK)
        return rc;
    if (!(v = calloc(1, sizeof *v)))
        return nomem(err);
    if (!(v[0] = strdup(queue))) {
        free(v);
        return nomem(err);
    }
    skipq__queues_free(cfg->queues, cfg->nqueues);
    cfg->queues = v;
    cfg->nqueues = 1;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_add_queue(skipq_config *cfg, const char *queue, skipq_error *err)
{
    skipq_rc rc;
    char **v, *copy;

    if (!cfg)
        return skipq__no_config(err);
    if ((rc = skipq_check_name("queue", queue, err)) != SKIPQ_OK)
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
skipq_config_set_priorities(skipq_config *cfg, const char *bands, skipq_error *err)
{
    skipq_rc rc = SKIPQ_OK;
    char *given = NULL, *work = NULL, *item;
    skipq__band *v = NULL;
    size_t n = 1, nb = 0;

    if (!cfg)
        return skipq__no_config(err);
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
        return skipq__no_config(err);
    if (n < 1 || n > MAX_CONCURRENCY)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "concurrency must be between 1 and %d, not %d", MAX_CONCURRENCY,
                           n);
    cfg->concurrency = n;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_prefetch(skipq_config *cfg, int n, skipq_error *err)
{
    if (!cfg)
        return skipq__no_config(err);
    if ((n < 0 && n != SKIPQ_PREFETCH_AUTO) || n > MAX_PREFETCH)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "prefetch must be \"auto\" or between 0 and %d, not %d",
                           MAX_PREFETCH, n);
    cfg->prefetch = n;
    return SKIPQ_OK;
}

/* The duration setters differ only in name, field and whether 0 is
 * meaningful ("off") or a mistake (a busy loop, an instant lease). */
#define DURATION_SETTER(fn, field, name, min)                      \
    skipq_rc fn(skipq_config *cfg, int64_t ms, skipq_error *err)   \
    {                                                              \
        skipq_rc rc;                                               \
        if (!cfg)                                                  \
            return skipq__no_config(err);                          \
        if ((rc = check_duration(name, ms, min, err)) != SKIPQ_OK) \
            return rc;                                             \
        cfg->field = ms;                                           \
        return SKIPQ_OK;                                           \
    }

DURATION_SETTER(skipq_config_set_poll_interval, poll_interval_ms, "poll_interval", 1)
DURATION_SETTER(skipq_config_set_heartbeat_interval, heartbeat_interval_ms,
                "heartbeat_interval", 1)
DURATION_SETTER(skipq_config_set_lease_timeout, lease_timeout_ms, "lease_timeout", 1)
DURATION_SETTER(skipq_config_set_shutdown_timeout, shutdown_timeout_ms, "shutdown_timeout",
                0)
DURATION_SETTER(skipq_config_set_retention, retention_ms, "retention", 0)
DURATION_SETTER(skipq_config_set_vacuum_interval, vacuum_interval_ms, "vacuum_interval", 0)
DURATION_SETTER(skipq_config_set_archive_after, archive_after_ms, "archive_after", 0)
DURATION_SETTER(skipq_config_set_archive_partition, archive_partition_ms,
                "archive_partition", 60000)

skipq_rc
skipq_config_set_on_success(skipq_config *cfg, skipq_on_success what, skipq_error *err)
{
    if (!cfg)
        return skipq__no_config(err);
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
        return skipq__no_config(err);
    if (n < 1)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "max_attempts must be 1 or more, not %d",
                           n);
    cfg->max_attempts = n;
    return SKIPQ_OK;
}

/*
 * base above max is allowed (every delay is then max): refusing it would
 * make the loader depend on key order, since it sets base and max one at
 * a time.
 */
skipq_rc
skipq_config_set_backoff(skipq_config *cfg, skipq_backoff strategy, int64_t base_ms,
                         int64_t max_ms, double jitter, skipq_error *err)
{
    skipq_rc rc;

    if (!cfg)
        return skipq__no_config(err);
    if ((int)strategy < SKIPQ_BACKOFF_FIXED || (int)strategy > SKIPQ_BACKOFF_EXPONENTIAL)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "unknown backoff strategy %d",
                           (int)strategy);
    if ((rc = check_duration("backoff base", base_ms, 0, err)) != SKIPQ_OK ||
        (rc = check_duration("backoff max", max_ms, 0, err)) != SKIPQ_OK)
        return rc;
    if (!(jitter >= 0 && jitter <= 1)) /* NaN fails both */
        return skipq__fail(err, SKIPQ_ERR_INVALID, "jitter must be between 0 and 1, not %g",
                           jitter);
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
        return skipq__no_config(err);
    if ((rc = skipq_check_name("kind", kind, err)) != SKIPQ_OK)
        return rc;
    if (!argv || !argv[0])
        return skipq__fail(err, SKIPQ_ERR_INVALID, "handler \"%s\" needs a command", kind);
    if (!argv[0][0])
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "handler \"%s\": the program name is empty", kind);
    if ((rc = check_duration("handler timeout", timeout_ms, 0, err)) != SKIPQ_OK)
        return rc;

    h.timeout_ms = timeout_ms;
    h.kind = strdup(kind);
    h.argv = skipq__strv_dup(argv);
    if (!h.kind || !h.argv) {
        skipq__handler_cfg_free(&h);
        return nomem(err);
    }
    /* one handler per kind: a later setting replaces an earlier one */
    for (size_t i = 0; i < cfg->nhandlers; i++) {
        if (strcmp(cfg->handlers[i].kind, kind) == 0) {
            skipq__handler_cfg_free(&cfg->handlers[i]);
            cfg->handlers[i] = h;
            return SKIPQ_OK;
        }
    }
    skipq__handler_cfg *v = realloc(cfg->handlers, (cfg->nhandlers + 1) * sizeof *v);
    if (!v) {
        skipq__handler_cfg_free(&h);
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
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-_./:,+@%^", c) != NULL;
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
            skipq__strv_free(v);
            *oom = true;
            return NULL;
        }
        p += len;
        p += strspn(p, " \t");
    }
    if (!strchr(v[0], '/') || !execve_runs(v[0])) {
        skipq__strv_free(v);
        return NULL;
    }
    return v;
}

skipq_rc
skipq_config_set_handler_shell(skipq_config *cfg, const char *kind, const char *command,
                               int64_t timeout_ms, skipq_error *err)
{
    const char *argv[] = {"/bin/sh", "-c", command, NULL};
    char **direct;
    bool oom;
    skipq_rc rc;

    if (!cfg)
        return skipq__no_config(err);
    if (!command || !*command) {
        rc = skipq_check_name("kind", kind, err);
        return rc != SKIPQ_OK ? rc
                              : skipq__fail(err, SKIPQ_ERR_INVALID,
                                            "handler \"%s\" needs a command", kind);
    }
    direct = direct_argv(command, &oom);
    if (oom)
        return nomem(err);
    if (direct) {
        rc = skipq_config_set_handler_command(cfg, kind, (const char *const *)direct,
                                              timeout_ms, err);
        skipq__strv_free(direct);
        return rc;
    }
    return skipq_config_set_handler_command(cfg, kind, argv, timeout_ms, err);
}

skipq_rc
skipq_config_set_handler_persistent(skipq_config *cfg, const char *kind, int processes,
                                    skipq_error *err)
{
    skipq_rc rc;

    if (!cfg)
        return skipq__no_config(err);
    if ((rc = skipq_check_name("kind", kind, err)) != SKIPQ_OK)
        return rc;
    if (processes < 0 || processes > SKIPQ__MAX_PROCESSES)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "handler \"%s\": processes must be between 0 "
                           "(the default) and %d, not %d",
                           kind, SKIPQ__MAX_PROCESSES, processes);
    for (size_t i = 0; i < cfg->nhandlers; i++) {
        if (strcmp(cfg->handlers[i].kind, kind) == 0) {
            cfg->handlers[i].persistent = true;
            cfg->handlers[i].processes = processes;
            return SKIPQ_OK;
        }
    }
    return skipq__fail(err, SKIPQ_ERR_INVALID,
                       "handler \"%s\" has no command: set its command first", kind);
}

skipq_rc
skipq_config_set_recover_defaults(skipq_config *cfg, int64_t older_than_ms, int limit,
                                  skipq_error *err)
{
    skipq_rc rc;

    if (!cfg)
        return skipq__no_config(err);
    if ((rc = check_duration("recover older_than", older_than_ms, 0, err)) != SKIPQ_OK)
        return rc;
    if (limit < 1)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "recover limit must be 1 or more, not %d", limit);
    cfg->recover_older_than_ms = older_than_ms;
    cfg->recover_limit = limit;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_max_payload(skipq_config *cfg, size_t bytes, skipq_error *err)
{
    if (!cfg)
        return skipq__no_config(err);
    if (bytes < MIN_PAYLOAD || bytes > MAX_PAYLOAD)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "max_payload must be between %zu bytes and 1GB, "
                           "not %zu",
                           MIN_PAYLOAD, bytes);
    cfg->max_payload = bytes;
    return SKIPQ_OK;
}

/* A copy of s into *slot ("" or NULL clears it). */
static skipq_rc
set_string(char **slot, const char *s, skipq_error *err)
{
    char *copy = NULL;

    if (s && *s && !(copy = strdup(s)))
        return nomem(err);
    free(*slot);
    *slot = copy;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_serve_http(skipq_config *cfg, const char *addr, skipq_error *err)
{
    if (!cfg)
        return skipq__no_config(err);
    if (addr && strlen(addr) > 255)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "serve.http is longer than 255 bytes");
    return set_string(&cfg->serve_http, addr, err);
}

/*
 * A token goes in an Authorization header and is compared as bytes: 16
 * to 1024 visible ASCII characters, so a short guessable one is refused
 * where it is configured, not found out later.
 */
static skipq_rc
set_token(char **slot, const char *what, const char *token, skipq_error *err)
{
    size_t n = token ? strlen(token) : 0;

    if (n > 0 && (n < SKIPQ_SERVE_TOKEN_MIN || n > 1024))
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "%s must be %d to 1024 characters long, not %zu", what,
                           SKIPQ_SERVE_TOKEN_MIN, n);
    for (size_t i = 0; i < n; i++)
        if (token[i] <= ' ' || token[i] > '~')
            return skipq__fail(err, SKIPQ_ERR_INVALID,
                               "%s must be visible ASCII characters (no spaces)", what);
    return set_string(slot, token, err);
}

skipq_rc
skipq_config_set_serve_admin_token(skipq_config *cfg, const char *token, skipq_error *err)
{
    if (!cfg)
        return skipq__no_config(err);
    return set_token(&cfg->serve_admin_token, "serve.admin_token", token, err);
}

skipq_rc
skipq_config_set_serve_read_token(skipq_config *cfg, const char *token, skipq_error *err)
{
    if (!cfg)
        return skipq__no_config(err);
    return set_token(&cfg->serve_read_token, "serve.read_token", token, err);
}

skipq_rc
skipq_config_set_serve_limits(skipq_config *cfg, size_t max_body, int rate_limit,
                              skipq_error *err)
{
    if (!cfg)
        return skipq__no_config(err);
    if (max_body < 1024 || max_body > ((size_t)1 << 30))
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "serve.max_body must be between 1KB and 1GB, not %zu", max_body);
    if (rate_limit < 0 || rate_limit > 1000000)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "serve.rate_limit must be from 0 to 1000000 requests a second, "
                           "not %d",
                           rate_limit);
    cfg->serve_max_body = max_body;
    cfg->serve_rate_limit = rate_limit;
    return SKIPQ_OK;
}

skipq_rc
skipq_config_set_handler_stack_size(skipq_config *cfg, size_t bytes, skipq_error *err)
{
    if (!cfg)
        return skipq__no_config(err);
    if (bytes < MIN_HANDLER_STACK || bytes > MAX_HANDLER_STACK)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "handler_stack_size must be between 128KB and "
                           "1GB, not %zu bytes",
                           bytes);
    cfg->handler_stack_size = bytes;
    return SKIPQ_OK;
}
