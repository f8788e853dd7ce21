/*
 * backoff.c - when may a failed job run again?
 *
 * Pure arithmetic on (strategy, base, cap, attempt, jitter, random01): no
 * I/O and no clock reads, so tests/unit/test_backoff.c can cover every
 * case, including the hostile ones.
 *
 * Choices the header leaves open, made here:
 *   - Inputs are tamed rather than refused: attempt < 1 is 1, a negative
 *     base is 0, jitter is clamped to 0..1 (NaN is 0), random01 to [0, 1]
 *     (NaN is 0.5, no spread), and max_ms <= 0 means "no cap".
 *   - Every step saturates at the cap instead of overflowing, so attempt
 *     1000 of an exponential backoff is simply max_ms (before jitter).
 *   - The cap is applied again AFTER the jitter, so the result is always
 *     in 0..max_ms. Capping only before the jitter would let an operator's
 *     "max: 1h" become 1h06m; near the cap the spread is therefore
 *     one-sided (max*(1-jitter)..max), which still keeps a crowd of jobs
 *     that failed together from retrying in lockstep.
 */
#include "internal.h"

#include <math.h>

/* a * b for a, b >= 0, saturating at limit (itself >= 0). */
static int64_t
mul_sat(int64_t a, int64_t b, int64_t limit)
{
    if (a == 0 || b == 0)
        return 0;
    return a > limit / b ? limit : a * b;
}

int64_t
skipq_backoff_ms(skipq_backoff strategy, int64_t base_ms, int64_t max_ms, double jitter,
                 int attempt, double random01)
{
    int64_t cap = max_ms > 0 ? max_ms : INT64_MAX;
    int64_t base = base_ms > 0 ? base_ms : 0;
    int64_t delay;
    double spread, d;

    if (attempt < 1)
        attempt = 1;
    if (base > cap)
        base = cap;
    switch (strategy) {
    case SKIPQ_BACKOFF_LINEAR:
        delay = mul_sat(base, attempt, cap);
        break;
    case SKIPQ_BACKOFF_EXPONENTIAL:
        /* base << (attempt - 1), stopping as soon as it reaches the cap:
         * a shift by 63 or more is undefined, and attempts can be large */
        delay = base;
        for (int i = 1; i < attempt && delay < cap && delay > 0; i++)
            delay = mul_sat(delay, 2, cap);
        break;
    case SKIPQ_BACKOFF_FIXED:
    default:
        delay = base;
        break;
    }

    if (!(jitter > 0) || delay == 0) /* also catches NaN */
        return delay;
    if (jitter > 1)
        jitter = 1;
    if (!(random01 >= 0)) /* NaN or negative */
        random01 = isnan(random01) ? 0.5 : 0;
    if (random01 > 1)
        random01 = 1;

    /* map random01 from [0, 1) onto [-jitter, +jitter) */
    spread = jitter * (2 * random01 - 1);
    d = (double)delay * (1 + spread);
    if (d <= 0)
        return 0;
    /* (double)INT64_MAX rounds up to 2^63, which no int64 can hold */
    if (d >= (double)cap)
        return cap;
    delay = (int64_t)d;
    return delay > cap ? cap : delay;
}

/* The settings skipq_backoff_ms() is called with, as configured: here,
 * beside the arithmetic they feed, rather than among config.c's getters
 * of one value each. */
void
skipq_config_get_backoff(const skipq_config *cfg, skipq_backoff *strategy, int64_t *base_ms,
                         int64_t *max_ms, double *jitter)
{
    if (strategy)
        *strategy = cfg->backoff;
    if (base_ms)
        *base_ms = cfg->backoff_base_ms;
    if (max_ms)
        *max_ms = cfg->backoff_max_ms;
    if (jitter)
        *jitter = cfg->jitter;
}
