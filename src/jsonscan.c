/*
 * jsonscan.c - is this text certainly one JSON object? Without building it.
 *
 * Every enqueued payload is checked before it reaches the server, and a
 * json-c parse per payload (a 16 kB tokener allocated and zeroed, a
 * locale switch, a tree built and freed) cost bulk enqueue more client
 * CPU than the COPY itself (docs/performance.md). This scanner walks the
 * bytes once, allocates nothing and answers only "yes, valid" or "not
 * sure". On "not sure" skipq_check_payload parses with json-c as before,
 * so every verdict and message on bad input is json-c's.
 *
 * It is kept conservative on purpose: it accepts the strict RFC 8259
 * grammar minus anything unusual (numbers with an exponent or more than
 * 15 digits in a part, \u escapes of NUL or of surrogates, nesting deeper
 * than 64, well within SKIPQ_JSON_MAX_DEPTH), so that everything it
 * accepts json-c's strict mode and PostgreSQL's jsonb accept too.
 * tests/unit/test_jsonscan.c compares it with json-c on a table of cases,
 * and tests/fuzz/fuzz_jsonl.c on arbitrary bytes.
 */
#include "internal.h"

#include <stdbool.h>
#include <stddef.h>

#define SCAN_DEPTH 64
#define SCAN_DIGITS 15

/* A scalar inside SCAN_DEPTH containers is a value SCAN_DEPTH + 1 levels
 * deep: whatever the scan accepts must be within the limit. */
_Static_assert(SCAN_DEPTH < SKIPQ_JSON_MAX_DEPTH,
               "the scan must not accept what the parse refuses");

static size_t
skip_ws(const unsigned char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

static int
hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* s[i] is '"': the offset just past the closing quote, or 0. */
static size_t
scan_string(const unsigned char *s, size_t i, size_t n)
{
    for (i++; i < n; i++) {
        unsigned char c = s[i];
        if (c == '"')
            return i + 1;
        if (c < 0x20)
            return 0;
        if (c != '\\')
            continue;
        if (++i >= n)
            return 0;
        switch (s[i]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            break;
        case 'u': {
            unsigned v = 0;
            if (n - i < 5)
                return 0;
            for (size_t k = 1; k <= 4; k++) {
                int h = hex_value(s[i + k]);
                if (h < 0)
                    return 0;
                v = v * 16 + (unsigned)h;
            }
            if (v == 0 || (v >= 0xD800 && v <= 0xDFFF))
                return 0;
            i += 4;
            break;
        }
        default:
            return 0;
        }
    }
    return 0;
}

static size_t
scan_digits(const unsigned char *s, size_t i, size_t n)
{
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    return i;
}

/* s[i] is '-' or a digit: the offset just past the number, or 0. */
static size_t
scan_number(const unsigned char *s, size_t i, size_t n)
{
    size_t start;

    if (s[i] == '-')
        i++;
    if (i >= n || s[i] < '0' || s[i] > '9')
        return 0;
    start = i;
    i = s[i] == '0' ? i + 1 : scan_digits(s, i, n);
    if (i - start > SCAN_DIGITS)
        return 0;
    if (i < n && s[i] == '.') {
        start = ++i;
        i = scan_digits(s, i, n);
        if (i == start || i - start > SCAN_DIGITS)
            return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E'))
        return 0;
    return i;
}

static size_t
scan_word(const unsigned char *s, size_t i, size_t n, const char *word, size_t len)
{
    for (size_t k = 0; k < len; k++)
        if (i + k >= n || s[i + k] != (unsigned char)word[k])
            return 0;
    return i + len;
}

bool
skipq__json_object_fast(const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;
    unsigned char open[SCAN_DEPTH]; /* '{' or '[' per level */
    size_t depth = 0;
    size_t i = skip_ws(s, 0, n);
    enum { VALUE, KEY, AFTER } state = VALUE;

    if (i >= n || s[i] != '{')
        return false;
    for (;;) {
        if (i >= n && state != AFTER)
            return false;
        switch (state) {
        case VALUE:
            switch (s[i]) {
            case '{':
            case '[':
                if (depth == SCAN_DEPTH)
                    return false;
                open[depth++] = s[i];
                i = skip_ws(s, i + 1, n);
                if (i < n && s[i] == (open[depth - 1] == '{' ? '}' : ']')) {
                    depth--;
                    i++;
                    state = AFTER;
                } else {
                    state = open[depth - 1] == '{' ? KEY : VALUE;
                }
                continue;
            case '"':
                i = scan_string(s, i, n);
                break;
            case 't':
                i = scan_word(s, i, n, "true", 4);
                break;
            case 'f':
                i = scan_word(s, i, n, "false", 5);
                break;
            case 'n':
                i = scan_word(s, i, n, "null", 4);
                break;
            default:
                i = s[i] == '-' || (s[i] >= '0' && s[i] <= '9') ? scan_number(s, i, n) : 0;
            }
            if (i == 0)
                return false;
            state = AFTER;
            continue;
        case KEY:
            if (s[i] != '"' || (i = scan_string(s, i, n)) == 0)
                return false;
            i = skip_ws(s, i, n);
            if (i >= n || s[i] != ':')
                return false;
            i = skip_ws(s, i + 1, n);
            state = VALUE;
            continue;
        case AFTER:
            i = skip_ws(s, i, n);
            if (depth == 0)
                return i == n;
            if (i >= n)
                return false;
            if (s[i] == ',') {
                i = skip_ws(s, i + 1, n);
                state = open[depth - 1] == '{' ? KEY : VALUE;
            } else if (s[i] == (open[depth - 1] == '{' ? '}' : ']')) {
                depth--;
                i++;
            } else {
                return false;
            }
            continue;
        }
    }
}
