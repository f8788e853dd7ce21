/*
 * config.c - the settings of a skipq worker and command: defaults, the
 * struct's lifecycle, deep copies and the getters.
 *
 * Where the rest lives: config_set.c has a typed setter for each setting,
 * which validates fully before changing anything; config_yaml.c reads a
 * YAML file (its size and nesting bounds, syntax errors with line and
 * column, unknown and repeated keys); config_keys.c says what each YAML
 * key sets. The loader calls the same setters the API exposes, so a value
 * is validated the same way whether it came from a file, a flag or a
 * caller; the loader only adds where it was (file, line and column).
 */
#include "config_internal.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Memory                                                             */
/* ------------------------------------------------------------------ */

skipq_rc
skipq__no_config(skipq_error *err)
{
    return skipq__fail(err, SKIPQ_ERR_INVALID, "config is NULL");
}

void
skipq__strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* A NULL-terminated copy of argv; NULL when out of memory. */
char **
skipq__strv_dup(const char *const *argv)
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
            skipq__strv_free(v);
            return NULL;
        }
    }
    return v;
}

void
skipq__handler_cfg_free(skipq__handler_cfg *h)
{
    free(h->kind);
    skipq__strv_free(h->argv);
}

void
skipq__queues_free(char **queues, size_t n)
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
    cfg->listen = true;
    cfg->prefetch = SKIPQ_PREFETCH_AUTO;
    cfg->poll_interval_ms = 1000;
    cfg->heartbeat_interval_ms = 5000;
    cfg->lease_timeout_ms = 30000;
    cfg->shutdown_timeout_ms = 30000;
    /* A week of finished jobs to look back on (an incident found on
     * Monday), and a table bounded by a week of traffic rather than
     * growing for ever; failed jobs are kept whatever the age. */
    cfg->retention_ms = 7LL * 24 * 3600 * 1000;
    cfg->vacuum_interval_ms = 10000;
    cfg->archive_partition_ms = 24LL * 3600 * 1000;
    cfg->max_attempts = 5;
    cfg->backoff = SKIPQ_BACKOFF_EXPONENTIAL;
    cfg->backoff_base_ms = 1000;
    cfg->backoff_max_ms = 3600 * 1000;
    cfg->jitter = 0.1;
    cfg->recover_older_than_ms = 5 * 60 * 1000;
    cfg->recover_limit = 1000;
    cfg->max_payload = SKIPQ__DEFAULT_MAX_PAYLOAD;
    cfg->handler_stack_size = SKIPQ__DEFAULT_HANDLER_STACK;
    cfg->serve_max_body = (size_t)1 << 20;
    cfg->serve_rate_limit = 100;
    if (skipq_config_set_queue(cfg, "default", NULL) != SKIPQ_OK ||
        skipq_config_set_priorities(cfg, "high,normal,low", NULL) != SKIPQ_OK) {
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
    free(cfg->listen_database);
    free(cfg->http);
    free(cfg->serve_http);
    free(cfg->serve_admin_token);
    free(cfg->serve_read_token);
    skipq__queues_free(cfg->queues, cfg->nqueues);
    free(cfg->priorities);
    free(cfg->bands);
    for (size_t i = 0; i < cfg->nhandlers; i++)
        skipq__handler_cfg_free(&cfg->handlers[i]);
    free(cfg->handlers);
    skipq__schedules_free(cfg->schedules, cfg->nschedules);
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
    c->listen_database = NULL;
    c->http = NULL;
    c->serve_http = c->serve_admin_token = c->serve_read_token = NULL;
    c->queues = NULL;
    c->nqueues = 0;
    c->priorities = NULL;
    c->bands = NULL;
    c->nbands = 0;
    c->handlers = NULL;
    c->nhandlers = 0;
    c->schedules = NULL;
    c->nschedules = 0;

    if (cfg->database && !(c->database = strdup(cfg->database)))
        goto fail;
    if (cfg->listen_database && !(c->listen_database = strdup(cfg->listen_database)))
        goto fail;
    if (cfg->http && !(c->http = strdup(cfg->http)))
        goto fail;
    if ((cfg->serve_http && !(c->serve_http = strdup(cfg->serve_http))) ||
        (cfg->serve_admin_token &&
         !(c->serve_admin_token = strdup(cfg->serve_admin_token))) ||
        (cfg->serve_read_token && !(c->serve_read_token = strdup(cfg->serve_read_token))))
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
            dst->persistent = src->persistent;
            dst->processes = src->processes;
            dst->kind = strdup(src->kind);
            dst->argv = skipq__strv_dup((const char *const *)src->argv);
            if (!dst->kind || !dst->argv) {
                skipq__handler_cfg_free(dst);
                goto fail;
            }
        }
    }
    if (cfg->schedules) {
        if (!(c->schedules = skipq__schedules_dup(cfg->schedules, cfg->nschedules)))
            goto fail;
        c->nschedules = cfg->nschedules;
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
/* Getters                                                            */
/* ------------------------------------------------------------------ */

const char *
skipq_config_database(const skipq_config *cfg)
{
    return cfg ? cfg->database : NULL;
}

const char *
skipq_config_listen_database(const skipq_config *cfg)
{
    return cfg ? cfg->listen_database : NULL;
}

int
skipq_config_listen(const skipq_config *cfg)
{
    return cfg ? cfg->listen : 1;
}

const char *
skipq_config_http(const skipq_config *cfg)
{
    return cfg ? cfg->http : NULL;
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
skipq_config_archive_after(const skipq_config *cfg)
{
    return cfg->archive_after_ms;
}

int64_t
skipq_config_archive_partition(const skipq_config *cfg)
{
    return cfg->archive_partition_ms;
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

const char *
skipq_config_serve_http(const skipq_config *cfg)
{
    return cfg->serve_http;
}

const char *
skipq_config_serve_admin_token(const skipq_config *cfg)
{
    return cfg->serve_admin_token;
}

const char *
skipq_config_serve_read_token(const skipq_config *cfg)
{
    return cfg->serve_read_token;
}

size_t
skipq_config_serve_max_body(const skipq_config *cfg)
{
    return cfg->serve_max_body;
}

int
skipq_config_serve_rate_limit(const skipq_config *cfg)
{
    return cfg->serve_rate_limit;
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
