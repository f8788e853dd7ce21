/*
 * fuzz_config.c - libFuzzer target for the YAML config loader.
 *
 * Any bytes must give SKIPQ_OK or an error with a one-line message, never
 * a crash, a leak or a setting outside what the setters allow: the loader
 * reads files that operators edit by hand, and a worker must not start on
 * a half-validated config.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                           \
    do {                                                   \
        if (!(c)) {                                        \
            fprintf(stderr, "invariant failed: %s\n", #c); \
            abort();                                       \
        }                                                  \
    } while (0)

static void
check_config(const skipq_config *cfg)
{
    CHECK(cfg->nqueues >= 1);
    for (size_t i = 0; i < cfg->nqueues; i++)
        CHECK(cfg->queues[i] && *cfg->queues[i]);
    CHECK(cfg->nbands >= 1 && cfg->priorities);
    for (size_t i = 0; i < cfg->nbands; i++)
        CHECK(cfg->bands[i].lo <= cfg->bands[i].hi);
    CHECK(cfg->concurrency >= 1 && cfg->concurrency <= 1024);
    CHECK(cfg->poll_interval_ms > 0 && cfg->heartbeat_interval_ms > 0);
    CHECK(cfg->lease_timeout_ms > 0 && cfg->shutdown_timeout_ms >= 0);
    CHECK(cfg->retention_ms >= 0 && cfg->vacuum_interval_ms >= 0 && cfg->max_attempts >= 1);
    CHECK(cfg->backoff_base_ms >= 0 && cfg->backoff_max_ms >= 0);
    CHECK(cfg->jitter >= 0 && cfg->jitter <= 1);
    CHECK(cfg->recover_older_than_ms >= 0 && cfg->recover_limit >= 1);
    CHECK(cfg->max_payload >= 2);
    for (size_t i = 0; i < cfg->nhandlers; i++) {
        CHECK(cfg->handlers[i].kind && cfg->handlers[i].argv);
        CHECK(cfg->handlers[i].argv[0] && *cfg->handlers[i].argv[0]);
        CHECK(cfg->handlers[i].timeout_ms >= 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    skipq_config *cfg = skipq_config_new();
    skipq_config *copy;
    skipq_error err;
    skipq_rc rc;

    if (!cfg)
        return 0;
    memset(&err, 0, sizeof err);
    rc = skipq_config_load_string(cfg, (const char *)data, size, "fuzz.yaml", &err);
    if (rc != SKIPQ_OK) {
        CHECK(rc == SKIPQ_ERR_CONFIG || rc == SKIPQ_ERR_NOMEM);
        CHECK(err.code == rc);
        CHECK(strncmp(err.message, "could not load config \"fuzz.yaml\"", 33) == 0);
    }
    /* success or not, cfg must be whole and valid */
    check_config(cfg);
    if ((copy = skipq__config_dup(cfg)) != NULL) {
        check_config(copy);
        skipq_config_free(copy);
    }
    skipq_config_free(cfg);
    return 0;
}
