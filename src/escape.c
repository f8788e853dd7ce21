/*
 * escape.c - text from the database or from a handler, made safe to print
 * on an operator's terminal.
 *
 * Kinds, queues, error text, handler stderr, worker host names and role
 * names are stored verbatim, and any role that can enqueue (or any
 * handler) chooses them. Printed raw, an ESC sequence clears the screen
 * or retitles the terminal, a C1 CSI (U+009B, or the byte 0x9B on a
 * terminal that is not in UTF-8 mode) does the same in one character, and
 * a right-to-left override makes "job 12 failed" read as something else.
 * So whatever skipq prints for a human goes through here; JSON output
 * (json-c escapes control characters itself) and storage do not.
 */
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * Length of the valid UTF-8 sequence at s (1..4) and its code point, or 0
 * when s does not start one: a stray continuation byte, an overlong form,
 * a surrogate, a code point past U+10FFFF, or a sequence cut short.
 */
static size_t
utf8_decode(const unsigned char *s, uint32_t *cp)
{
    uint32_t c;
    size_t n;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        c = s[0] & 0x1Fu;
        n = 2;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        c = s[0] & 0x0Fu;
        n = 3;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        c = s[0] & 0x07u;
        n = 4;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) /* also stops at the NUL */
            return 0;
        c = c << 6 | (s[i] & 0x3Fu);
    }
    if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10FFFF)) ||
        (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return n;
}

/* Code points a terminal acts on, or that reorder or break the line. */
static bool
needs_escape(uint32_t c)
{
    return c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == 0x061C || /* arabic letter mark */
           c == 0x200E || c == 0x200F ||   /* left/right-to-left mark */
           (c >= 0x202A && c <= 0x202E) || /* embeddings and overrides */
           (c >= 0x2066 && c <= 0x2069) || /* isolates */
           c == 0x2028 || c == 0x2029;     /* line, paragraph separator */
}

char *
skipq_escape_text(const char *text, unsigned flags)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)(text ? text : "");
    size_t len = strlen((const char *)s), o = 0;
    char *out;

    /* "\u001b" is the most one input byte becomes */
    if (len > (SIZE_MAX - 1) / 6 || !(out = malloc(len * 6 + 1)))
        return NULL;
    while (*s) {
        uint32_t c = 0;
        size_t n = utf8_decode(s, &c);

        if (n == 0) { /* not UTF-8: show the byte, never send it */
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[*s >> 4];
            out[o++] = hex[*s & 0xF];
            s++;
            continue;
        }
        if ((c == '\n' || c == '\t') && (flags & SKIPQ_ESCAPE_MULTILINE)) {
            out[o++] = (char)c;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            if (!(flags & SKIPQ_ESCAPE_MULTILINE))
                out[o++] = ' ';
            else /* a carriage return would let a line overwrite another */
                memcpy(out + o, "\\u000d", 6), o += 6;
        } else if (needs_escape(c)) {
            out[o++] = '\\';
            out[o++] = 'u';
            for (int shift = 12; shift >= 0; shift -= 4)
                out[o++] = hex[(c >> shift) & 0xF];
        } else {
            memcpy(out + o, s, n);
            o += n;
        }
        s += n;
    }
    out[o] = '\0';
    return out;
}
