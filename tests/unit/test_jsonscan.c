/*
 * test_jsonscan.c - the allocation-free payload check (src/jsonscan.c)
 * against json-c: what it accepts json-c's strict mode accepts as one
 * object, and the payloads producers send are accepted without a parse.
 */
#include "harness.h"

#include "internal.h"

#include <json-c/json.h>
#include <stdlib.h>

/* json-c's strict verdict: one object and nothing after it but blanks. */
static bool
jsonc_object(const char *s, size_t n)
{
    json_tokener *tok = json_tokener_new_ex(SKIPQ_JSON_MAX_DEPTH);
    json_object *o;
    size_t end;
    bool ok;

    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    o = json_tokener_parse_ex(tok, s, (int)n);
    if (json_tokener_get_error(tok) == json_tokener_continue)
        o = json_tokener_parse_ex(tok, "", 1);
    end = json_tokener_get_parse_end(tok);
    ok = json_tokener_get_error(tok) == json_tokener_success &&
         json_object_is_type(o, json_type_object);
    if (ok && end < n && s[end] == '\0') /* the "" fed above */
        end = n;
    while (ok && end < n && strchr(" \t\r\n", s[end]))
        end++;
    ok = ok && end >= n;
    json_object_put(o);
    json_tokener_free(tok);
    return ok;
}

static void
check(const char *s, bool fast_expected)
{
    size_t n = strlen(s);
    bool fast = skipq__json_object_fast(s, n);
    if (fast != fast_expected)
        HARNESS_FAIL("fast scan of '%s': %d, expected %d", s, fast, fast_expected);
    if (fast && !jsonc_object(s, n))
        HARNESS_FAIL("fast scan accepts '%s', json-c refuses it", s);
}

TEST(common_payloads_need_no_parse)
{
    check("{}", true);
    check(" {\"i\":1} \n", true);
    check("{\"a\": [1, -2.5, 0, \"x\", true, false, null, {}, []], \"b\": {\"c\": {}}}",
          true);
    check("{\"s\": \"tab\\t quote\\\" slash\\/ \\u00e9 \\ud7ff \xc3\xa9\"}", true);
    check("{\"\": \"\", \"dup\": 1, \"dup\": 2}", true);
    check("{\"n\": -0, \"m\": 123456789012345, \"f\": 0.000000000000001}", true);
}

TEST(unusual_input_goes_to_json_c)
{
    /* valid, but left to the full parse */
    check("{\"e\": 1e5}", false);
    check("{\"big\": 1234567890123456}", false);
    check("{\"nul\": \"\\u0000\"}", false);
    check("{\"pair\": \"\\ud83d\\ude00\"}", false);
    char deep[300] = "{\"a\":";
    for (int i = 0; i < 70; i++)
        strcat(deep, "[");
    for (int i = 0; i < 70; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    check(deep, false);
    /* not objects, not JSON, or not only JSON */
    const char *bad[] = {
        "",
        " ",
        "[]",
        "\"s\"",
        "1",
        "null",
        "{",
        "}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{,}",
        "{\"a\":1 \"b\":2}",
        "{'a':1}",
        "{a:1}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":-}",
        "{\"a\":+1}",
        "{\"a\":tru}",
        "{\"a\":nulll}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12g4\"}",
        "{\"a\":\"\t\"}",
        "{\"a\":[1,]}",
        "{\"a\":[1 2]}",
        "{\"a\":]}",
        "{\"a\":[}",
        "{} {}",
        "{}x",
        "{\"a\":1}}",
        "{\"a\":NaN}",
        "{\"a\":Infinity}",
        "{/*c*/}",
        "{\"a\":\"x",
        "{\"a\":\"\\",
        "{\"a\":\"\\u12",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        check(bad[i], false);
}

/* Random strings over JSON's alphabet: whatever the scan accepts, json-c
 * accepts. Seeded, so a failure reproduces. */
TEST(accepts_nothing_json_c_refuses)
{
    static const char alpha[] = "{}[]\":,  01-.5eEtruefalsnl\\u/bx\t\n";
    char s[40];
    unsigned seed = 12345;
    long accepted = 0;

    for (long round = 0; round < 300000; round++) {
        size_t n = 2 + (size_t)(rand_r(&seed) % 30);
        s[0] = '{';
        for (size_t k = 1; k < n; k++)
            s[k] = alpha[(size_t)rand_r(&seed) % (sizeof alpha - 1)];
        s[n] = '\0';
        if (skipq__json_object_fast(s, n)) {
            accepted++;
            if (!jsonc_object(s, n))
                HARNESS_FAIL("fast scan accepts '%s', json-c refuses it", s);
        }
    }
    ASSERT_TRUE(accepted > 100); /* the loop reached the accepting paths */
}

TEST(check_payload_verdicts_are_unchanged)
{
    skipq_error err = {0};
    ASSERT_EQ(skipq_check_payload("{\"a\": 1e5}", (size_t)-1, 0, &err), SKIPQ_OK);
    ASSERT_EQ(skipq_check_payload("{\"a\": 1", (size_t)-1, 0, &err), SKIPQ_ERR_INVALID);
    ASSERT_CONTAINS(err.message, "invalid JSON at offset 7");
    ASSERT_EQ(skipq_check_payload("[1]", (size_t)-1, 0, &err), SKIPQ_ERR_INVALID);
    ASSERT_STREQ(err.message, "payload must be a JSON object, not array");
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
