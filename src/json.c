/*
 * json.c - parsing JSON text, with one depth limit for every parse.
 *
 * Enqueue refuses a payload nested deeper than SKIPQ_JSON_MAX_DEPTH
 * levels (enqueue.c), and everything that reads JSON back (a C handler's
 * payload, a command's stdout taken as its result, `skipq jobs show`,
 * the JSON log) parses here with the same limit. json_tokener_parse()
 * stops at json-c's default of 32 levels: a 40-level payload, accepted
 * by enqueue, came back to its handler as NULL.
 */
#include "internal.h"

#include <json-c/json.h>
#include <limits.h>
#include <string.h>

skipq_rc
skipq_json_parse(const char *text, size_t len, int flags, json_object **out,
                 skipq_error *err)
{
    enum json_tokener_error jerr = json_tokener_continue;
    json_object *obj = NULL;
    json_tokener *tok;
    size_t off = 0, end = 0;
    skipq_rc rc = SKIPQ_OK;

    *out = NULL;
    if (len == (size_t)-1)
        len = strlen(text);
    tok = json_tokener_new_ex(SKIPQ_JSON_MAX_DEPTH);
    if (!tok)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    json_tokener_set_flags(tok, flags);
    /* json-c takes an int length: longer text goes in pieces, which it
     * parses as one stream */
    while (off < len) {
        int n = len - off > INT_MAX ? INT_MAX : (int)(len - off);
        obj = json_tokener_parse_ex(tok, text + off, n);
        jerr = json_tokener_get_error(tok);
        if (jerr != json_tokener_continue) {
            end = off + json_tokener_get_parse_end(tok);
            break;
        }
        off += (size_t)n;
    }
    if (jerr == json_tokener_continue) {
        /* a bare number may go on: a NUL tells json-c the input ended */
        obj = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        end = len;
    }
    if (jerr == json_tokener_continue) {
        rc = skipq__fail(err, SKIPQ_ERR_INVALID,
                         "invalid JSON at offset %zu: unexpected end of input", len);
    } else if (jerr == json_tokener_error_depth) {
        rc = skipq__fail(err, SKIPQ_ERR_INVALID,
                         "invalid JSON at offset %zu: nesting deeper than %d "
                         "levels",
                         end, SKIPQ_JSON_MAX_DEPTH);
    } else if (jerr != json_tokener_success) {
        rc = skipq__fail(err, SKIPQ_ERR_INVALID, "invalid JSON at offset %zu: %s", end,
                         json_tokener_error_desc(jerr));
    } else {
        while (end < len && text[end] && strchr(" \t\r\n", text[end]))
            end++;
        if (end < len)
            rc = skipq__fail(err, SKIPQ_ERR_INVALID,
                             "invalid JSON at offset %zu: trailing characters", end);
    }
    json_tokener_free(tok);
    if (rc == SKIPQ_OK)
        *out = obj;
    else
        json_object_put(obj);
    return rc;
}
