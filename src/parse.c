/*
 * parse.c - turning the words people type ("30s", "high", "-5") into
 * numbers, the same way for the config loader, the CLI and callers.
 *
 * The parsers are strict on purpose: "5x", " 5s", "1.5s" and "-1s" are
 * errors rather than a best guess, because a silently misread timeout or
 * priority is found only in production.
 */
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Values are quoted in messages; keep a runaway input from pushing the
 * useful part of the message out of skipq_error.message. */
#define SHOWN_MAX 64

static const char *
shown(const char *s, char *buf, size_t size)
{
    size_t n = strlen(s);

    if (n < SHOWN_MAX) {
        snprintf(buf, size, "%s", s);
    } else {
        snprintf(buf, size, "%.*s...", SHOWN_MAX - 4, s);
    }
    return buf;
}

/*
 * Digits only, no sign, no spaces: the unsigned decimal at the start of
 * s. *end is left on the first non-digit. Returns false on no digits or
 * on overflow past INT64_MAX.
 */
static bool
parse_digits(const char *s, const char **end, int64_t *out)
{
    int64_t v = 0;
    const char *p = s;

    while (*p >= '0' && *p <= '9') {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        p++;
    }
    *end = p;
    *out = v;
    return p != s;
}

skipq_rc
skipq_parse_duration(const char *s, int64_t *ms_out, skipq_error *err)
{
    static const struct {
        const char *suffix;
        int64_t ms;
    } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600000}, {"d", 24 * 3600000LL},
    };
    char buf[SHOWN_MAX + 4];
    const char *end;
    int64_t n;

    if (!s)
        s = "";
    if (!parse_digits(s, &end, &n)) {
        /* "-1s" would parse as a number here; say why it is refused */
        if (s[0] == '-' && s[1] >= '0' && s[1] <= '9')
            return skipq__fail(err, SKIPQ_ERR_INVALID,
                               "invalid duration \"%s\": must not be negative",
                               shown(s, buf, sizeof buf));
        goto bad;
    }
    if (*end == '\0') {
        /* "0" needs no unit: zero of anything is zero. "30" does, since
         * seconds and milliseconds differ by a factor people get wrong. */
        if (n != 0)
            return skipq__fail(err, SKIPQ_ERR_INVALID,
                               "invalid duration \"%s\": missing unit "
                               "(ms, s, m, h or d)",
                               shown(s, buf, sizeof buf));
        *ms_out = 0;
        return SKIPQ_OK;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].suffix) != 0)
            continue;
        if (n > INT64_MAX / units[i].ms)
            return skipq__fail(err, SKIPQ_ERR_INVALID, "invalid duration \"%s\": too large",
                               shown(s, buf, sizeof buf));
        *ms_out = n * units[i].ms;
        return SKIPQ_OK;
    }
bad:
    return skipq__fail(err, SKIPQ_ERR_INVALID,
                       "invalid duration \"%s\": expected a number followed "
                       "by ms, s, m, h or d",
                       shown(s, buf, sizeof buf));
}

/* True when s is a run of digits with an optional sign, however long:
 * "99999999999999999999" is a number out of range, not a bad name. */
static bool
looks_numeric(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/*
 * An optionally signed decimal that fits int16_t. Returns 1 when s is
 * one, 0 when s is not a number at all, -1 when it is a number out of
 * range (so the caller can say which).
 */
static int
parse_int16(const char *s, int16_t *out)
{
    const char *p = s, *end;
    bool neg = false;
    int64_t v;

    if (!looks_numeric(s))
        return 0;
    if (*p == '-' || *p == '+')
        neg = (*p++ == '-');
    if (!parse_digits(p, &end, &v))
        return -1; /* overflowed int64: certainly out of range */
    if (neg)
        v = -v;
    if (v < INT16_MIN || v > INT16_MAX)
        return -1;
    *out = (int16_t)v;
    return 1;
}

static const struct {
    const char *name;
    int16_t value, lo, hi;
} priority_names[] = {
    {"high", 10, 10, INT16_MAX},
    {"normal", 0, -9, 9},
    {"low", -10, INT16_MIN, -10},
};

/* Shared by both priority parsers: the name's index, or a number. */
static skipq_rc
parse_priority_word(const char *s, int *name_out, int16_t *num_out, skipq_error *err)
{
    char buf[SHOWN_MAX + 4];
    int r;

    if (!s)
        s = "";
    for (size_t i = 0; i < sizeof priority_names / sizeof priority_names[0]; i++) {
        if (strcasecmp(s, priority_names[i].name) == 0) {
            *name_out = (int)i;
            return SKIPQ_OK;
        }
    }
    *name_out = -1;
    r = parse_int16(s, num_out);
    if (r == 1)
        return SKIPQ_OK;
    if (r == -1)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "priority \"%s\" is out of range -32768..32767",
                           shown(s, buf, sizeof buf));
    return skipq__fail(err, SKIPQ_ERR_INVALID,
                       "unrecognized priority \"%s\": use high, normal, low "
                       "or a number",
                       shown(s, buf, sizeof buf));
}

skipq_rc
skipq_parse_priority(const char *s, int16_t *out, skipq_error *err)
{
    int name;
    int16_t num = 0;
    skipq_rc rc = parse_priority_word(s, &name, &num, err);

    if (rc == SKIPQ_OK)
        *out = name >= 0 ? priority_names[name].value : num;
    return rc;
}

skipq_rc
skipq_parse_priority_band(const char *s, int16_t *lo, int16_t *hi, skipq_error *err)
{
    int name;
    int16_t num = 0;
    skipq_rc rc = parse_priority_word(s, &name, &num, err);

    if (rc != SKIPQ_OK)
        return rc;
    if (name >= 0) {
        *lo = priority_names[name].lo;
        *hi = priority_names[name].hi;
    } else {
        *lo = *hi = num;
    }
    return SKIPQ_OK;
}

int64_t
skipq__now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
skipq__now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
