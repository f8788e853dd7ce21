/*
 * check.c - the checks every way in applies before anything reaches the
 * server: a queue or kind name, a payload (size, UTF-8, one JSON object
 * nested at most SKIPQ_JSON_MAX_DEPTH deep). Pure: no connection, so the
 * fuzz targets (tests/fuzz/) take it as it is.
 */
#include "enqueue_internal.h"

#include <json-c/json.h>
#include <string.h>

/* A valid UTF-8 sequence of n bytes? (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF.) Returns the offset of the first
 * bad byte, or n. */
static size_t
utf8_valid_upto(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        unsigned min;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, min = 0x80, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, min = 0x800, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, min = 0x10000, cp = c & 0x07;
        } else {
            return i;
        }
        if (i + len > n)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += len;
    }
    return n;
}

skipq_rc
skipq_check_name(const char *what, const char *name, skipq_error *err)
{
    size_t n;

    if (!name || !*name)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "%s must not be empty", what);
    n = strlen(name);
    if (n > SKIPQ_NAME_MAX)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "%s is %zu bytes long; the limit is %d bytes", what, n,
                           SKIPQ_NAME_MAX);
    if (utf8_valid_upto((const unsigned char *)name, n) != n)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "%s is not valid UTF-8 (byte %zu)", what,
                           utf8_valid_upto((const unsigned char *)name, n));
    return SKIPQ_OK;
}

/* max_payload as set (0: the default), within the ceiling, which also
 * keeps every length within libpq's and json-c's int */
size_t
skipq__payload_limit(size_t max)
{
    if (max == 0)
        return SKIPQ__DEFAULT_MAX_PAYLOAD;
    return max > SKIPQ__MAX_PAYLOAD ? SKIPQ__MAX_PAYLOAD : max;
}

skipq_rc
skipq_check_payload(const char *json, size_t len, size_t max, skipq_error *err)
{
    json_object *obj = NULL;
    skipq_rc rc = SKIPQ_OK;
    size_t bad;
    const char *nul;

    if (len == (size_t)-1)
        len = strlen(json);
    max = skipq__payload_limit(max);
    if (len > max)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "payload is %zu bytes, more than the limit of %zu", len, max);
    if ((nul = memchr(json, '\0', len)) != NULL)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "invalid JSON at offset %zu: NUL byte",
                           (size_t)(nul - json));
    if ((bad = utf8_valid_upto((const unsigned char *)json, len)) != len)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "invalid JSON at offset %zu: invalid UTF-8", bad);
    if (skipq__json_object_fast(json, len))
        return SKIPQ_OK; /* the common case, without a parse (jsonscan.c) */
    /* the same depth limit as every later reader of the payload (json.c) */
    if ((rc = skipq_json_parse(json, len, JSON_TOKENER_STRICT, &obj, err)) != SKIPQ_OK)
        return rc;
    if (!json_object_is_type(obj, json_type_object))
        rc = skipq__fail(err, SKIPQ_ERR_INVALID, "payload must be a JSON object, not %s",
                         json_type_to_name(json_object_get_type(obj)));
    json_object_put(obj);
    return rc;
}
