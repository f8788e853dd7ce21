/*
 * fuzz_parse.c - libFuzzer target for the word parsers (durations,
 * priorities, bands, the priorities setting) and for skipq_backoff_ms.
 *
 * The parsers read whatever people type on a command line; the backoff
 * takes numbers from the database. Both must hold their contracts for
 * every input: no crash, no overflow, results in range.
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
fuzz_backoff(const uint8_t *data, size_t size)
{
    int64_t base, max, got;
    double jitter, r;
    int attempt;
    uint32_t s;

    if (size < 30)
        return;
    memcpy(&base, data, 8);
    memcpy(&max, data + 8, 8);
    memcpy(&attempt, data + 16, 4);
    memcpy(&s, data + 20, 4);
    jitter = (double)s / 2147483648.0 - 0.5; /* also outside 0..1 */
    memcpy(&s, data + 24, 4);
    r = (double)s / 2147483648.0 - 0.5;
    got = skipq_backoff_ms((skipq_backoff)(data[28] % 4), base, max, jitter, attempt, r);
    CHECK(got >= 0);
    if (max > 0)
        CHECK(got <= max);
    /* fixed (and an unknown strategy, treated as fixed) without jitter
     * is exactly base when base is within the cap */
    if (!(jitter > 0) && (data[28] % 4 == 0 || data[28] % 4 == 3) && base >= 0 &&
        (max <= 0 || base <= max))
        CHECK(got == base);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    skipq_error err;
    int64_t ms = -1;
    int16_t p, lo, hi;
    skipq_config *cfg;

    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    memset(&err, 0, sizeof err);
    if (skipq_parse_duration(s, &ms, &err) == SKIPQ_OK)
        CHECK(ms >= 0);
    else
        CHECK(err.code == SKIPQ_ERR_INVALID && err.message[0]);

    if (skipq_parse_priority(s, &p, &err) != SKIPQ_OK)
        CHECK(err.code == SKIPQ_ERR_INVALID);
    if (skipq_parse_priority_band(s, &lo, &hi, &err) == SKIPQ_OK) {
        CHECK(lo <= hi);
        CHECK(skipq_parse_priority(s, &p, NULL) == SKIPQ_OK);
        CHECK(p >= lo && p <= hi); /* a name's value is in its band */
    }

    if ((cfg = skipq_config_new()) != NULL) {
        if (skipq_config_set_priorities(cfg, s, &err) == SKIPQ_OK) {
            CHECK(cfg->nbands >= 1);
            CHECK(strcmp(cfg->priorities, s) == 0);
        }
        skipq_config_free(cfg);
    }

    fuzz_backoff(data, size);
    free(s);
    return 0;
}
