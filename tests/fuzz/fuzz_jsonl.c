/*
 * fuzz_jsonl.c - libFuzzer target for the JSON-lines reader behind
 * `skipq enqueue` from stdin (src/jsonl.c): arbitrary bytes through
 * fmemopen(), read line by line as the CLI reads stdin, with a small
 * payload limit so the over-limit path is reached too.
 *
 * Contracts checked: every accepted line is a NUL-terminated JSON object
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    skipq__jsonl in;
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
    skipq__jsonl_init(&in, f, max);
    for (;;) {
        skipq_rc rc = skipq__jsonl_next(&in, &line, &len, &err);
        CHECK(in.lineno >= last);
        last = in.lineno;
        if (rc != SKIPQ_OK) {
            CHECK(err.message[0] != '\0');
            CHECK(in.lineno >= 1);
            break;
        }
        if (!line)
            break;
        CHECK(strlen(line) == len);
        CHECK(len <= in.max);
        json_object *o = json_tokener_parse(line);
        CHECK(o && json_object_is_type(o, json_type_object));
        json_object_put(o);
    }
    skipq__jsonl_free(&in);
    fclose(f);
    return 0;
}
