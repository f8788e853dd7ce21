/*
 * fuzz_jsonl.c - libFuzzer target for the JSON-lines reader behind
 * `skipq enqueue` from stdin (src/jsonl.c): arbitrary bytes through
 * fmemopen(), read line by line as the CLI reads stdin, with a small
 * payload limit so the over-limit path is reached too.
 *
 * Contracts checked: every accepted line is a NUL-terminated JSON object
 * (json-c, strict mode)
 * no longer than the limit whose length matches strlen (no NUL inside);
 * every refusal carries a message; line numbers only grow.
 */
#include "internal.h"

#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* not CHECK(): fuzz builds may define NDEBUG */
#define CHECK(x) ((x) ? (void)0 : abort())

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* json-c's strict mode takes line as one object with only blanks after it
 * (lines pass the allocation-free scan of jsonscan.c first, so this is
 * also where that scan is held to json-c's verdict). */
static int
strict_object(const char *line, size_t len)
{
    json_tokener *tok = json_tokener_new_ex(SKIPQ_JSON_MAX_DEPTH);
    json_object *o;
    size_t end;
    int ok;

    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    o = json_tokener_parse_ex(tok, line, (int)len);
    if (json_tokener_get_error(tok) == json_tokener_continue)
        o = json_tokener_parse_ex(tok, "", 1);
    end = json_tokener_get_parse_end(tok);
    ok = json_tokener_get_error(tok) == json_tokener_success &&
         json_object_is_type(o, json_type_object);
    while (ok && end < len && strchr(" \t\r\n", line[end]))
        end++;
    ok = ok && (end >= len || line[end] == '\0');
    json_object_put(o);
    json_tokener_free(tok);
    return ok;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    skipq_jsonl *in = NULL;
    skipq_error err = {0};
    const char *line;
    size_t len, max = 256;
    long long last = 0;
    FILE *f;

    if (size == 0)
        return 0;
    /* the first byte picks the limit: 1..256 bytes, or the default */
    if (data[0] != 0)
        max = data[0];
    else
        max = 0;
    f = fmemopen((void *)(data + 1), size - 1 ? size - 1 : 1, "r");
    if (!f)
        return 0;
    if (size == 1) { /* fmemopen wants a non-empty buffer: read nothing */
        fclose(f);
        return 0;
    }
    CHECK(skipq_jsonl_new(f, max, &in, &err) == SKIPQ_OK);
    for (;;) {
        skipq_rc rc = skipq_jsonl_next(in, &line, &len, &err);
        CHECK(skipq_jsonl_lineno(in) >= last);
        last = skipq_jsonl_lineno(in);
        if (rc != SKIPQ_OK) {
            CHECK(err.message[0] != '\0');
            CHECK(skipq_jsonl_lineno(in) >= 1);
            break;
        }
        if (!line)
            break;
        CHECK(strlen(line) == len);
        CHECK(len <= (max ? max : SKIPQ__DEFAULT_MAX_PAYLOAD));
        CHECK(strict_object(line, len));
    }
    skipq_jsonl_free(in);
    fclose(f);
    return 0;
}
