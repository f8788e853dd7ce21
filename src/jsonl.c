/*
 * jsonl.c - the JSON-lines reader behind `skipq enqueue` from stdin.
 *
 * One payload object per line; blank lines (whitespace only, CRLF or LF)
 * are skipped. Each line is checked by skipq_check_payload, so nothing
 * here touches a database and tests/fuzz/fuzz_jsonl.c can drive it with
 * arbitrary bytes through fmemopen().
 *
 * A line is never buffered past the payload limit: getline() would hold
 * a 10 GB line in memory before anything could refuse it. Past the limit
 * the rest of the line is read and counted, not stored, so the message
 * still says how long the line was.
 */
#include "internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct skipq_jsonl {
    FILE *in;         /* not owned */
    size_t max;       /* payload limit in bytes */
    long long lineno; /* lines read so far, blank ones included */
    char *buf;
    size_t cap;
};

skipq_rc
skipq_jsonl_new(FILE *in, size_t max_payload, skipq_jsonl **out, skipq_error *err)
{
    skipq_jsonl *r;

    *out = NULL;
    if (!in)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "no input to read");
    if (!(r = calloc(1, sizeof *r)))
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    r->in = in;
    r->max = max_payload ? max_payload : SKIPQ__DEFAULT_MAX_PAYLOAD;
    /* the ceiling skipq_check_payload applies anyway; read_line keeps
     * max + 2 bytes, far from wrapping around */
    if (r->max > SKIPQ__MAX_PAYLOAD)
        r->max = SKIPQ__MAX_PAYLOAD;
    *out = r;
    return SKIPQ_OK;
}

void
skipq_jsonl_free(skipq_jsonl *r)
{
    if (!r)
        return;
    free(r->buf);
    free(r);
}

size_t
skipq__jsonl_buffered(const skipq_jsonl *r)
{
    return r->cap;
}

long long
skipq_jsonl_lineno(const skipq_jsonl *r)
{
    return r ? r->lineno : 0;
}

/* Strip the line end ("\n", "\r\n"); true when only whitespace is left. */
static bool
blank_line(char *line, size_t *len)
{
    while (*len > 0 && (line[*len - 1] == '\n' || line[*len - 1] == '\r'))
        line[--*len] = '\0';
    for (size_t i = 0; i < *len; i++) {
        char c = line[i]; /* may be NUL: not whitespace */
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '\f' && c != '\v')
            return false;
    }
    return true;
}

/*
 * Read one raw line (without its '\n') into r->buf. Returns 1 for a line,
 * 0 at end of input, -1 on a read error or out of memory (*nomem says
 * which). *total is the line's full length, even when only the first
 * max + 2 bytes were kept (then *total > r->max).
 */
static int
read_line(skipq_jsonl *r, size_t *len, size_t *total, bool *nomem)
{
    /* the limit, a possible '\r' and room for the NUL */
    size_t keep = r->max + 2;
    size_t n = 0, all = 0;
    int c;

    *nomem = false;
    while ((c = getc(r->in)) != EOF) {
        if (c == '\n')
            break;
        all++;
        if (n < keep) {
            if (n + 1 >= r->cap) {
                /* one byte at a time: doubling once is enough, and
                 * keep + 1 > n + 1 since n < keep */
                size_t cap = r->cap < 2048 ? 4096 : r->cap * 2;
                if (cap > keep + 1)
                    cap = keep + 1;
                char *nb = realloc(r->buf, cap);
                if (!nb) {
                    *nomem = true;
                    return -1;
                }
                r->buf = nb;
                r->cap = cap;
            }
            r->buf[n++] = (char)c;
        }
    }
    if (ferror(r->in))
        return -1;
    if (c == EOF && all == 0)
        return 0;
    if (!r->buf) { /* an empty last line */
        r->buf = malloc(1);
        if (!r->buf) {
            *nomem = true;
            return -1;
        }
        r->cap = 1;
    }
    r->buf[n] = '\0';
    *len = n;
    *total = all;
    return 1;
}

skipq_rc
skipq_jsonl_next(skipq_jsonl *r, const char **line, size_t *len, skipq_error *err)
{
    size_t n, total;
    bool nomem;
    int got;

    *line = NULL;
    *len = 0;
    for (;;) {
        got = read_line(r, &n, &total, &nomem);
        if (got == 0)
            return SKIPQ_OK;
        if (got < 0)
            return nomem ? skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory")
                         : skipq__fail(err, SKIPQ_ERR_IO,
                                       "could not read input after line %lld", r->lineno);
        r->lineno++;
        /* a CRLF line of exactly max bytes is still within the limit */
        size_t content = total;
        if (n == total && n > 0 && r->buf[n - 1] == '\r')
            content--;
        if (content > r->max)
            return skipq__fail(err, SKIPQ_ERR_INVALID,
                               "payload is %zu bytes, more than the limit "
                               "of %zu",
                               total, r->max);
        if (blank_line(r->buf, &n))
            continue;
        skipq_rc rc = skipq_check_payload(r->buf, n, r->max, err);
        if (rc != SKIPQ_OK)
            return rc;
        *line = r->buf;
        *len = n;
        return SKIPQ_OK;
    }
}
