/*
 * test_secrets.c - what must never reach a log: passwords in connection
 * strings (skipq_mask_url), and the JSON-lines reader's limits (a hostile
 * line is refused without being buffered whole).
 */
#include "harness.h"

#include "internal.h"

#include <stdio.h>

static void
expect_mask(const char *url, const char *want)
{
    char *got = skipq_mask_url(url);

    ASSERT_TRUE(got != NULL);
    if (strcmp(got, want) != 0)
        HARNESS_FAIL("mask \"%s\": got \"%s\", wanted \"%s\"", url, got, want);
    ASSERT_TRUE(strstr(got, "s3cr") == NULL);
    free(got);
}

TEST(mask_every_password_form)
{
    expect_mask("postgresql://u:s3cret@h:5432/db", "postgresql://u:****@h:5432/db");
    expect_mask("postgresql://u:s3cr%40t@h/db", "postgresql://u:****@h/db");
    expect_mask("postgres://u:s3:cr@[::1]:5/db", "postgres://u:****@[::1]:5/db");
    expect_mask("postgresql://u@h/db?password=s3cret&sslmode=require",
                "postgresql://u@h/db?password=****&sslmode=require");
    expect_mask("postgresql://u@h/db?sslmode=require&password=s3cret",
                "postgresql://u@h/db?sslmode=require&password=****");
    expect_mask("host=h password=s3cret dbname=d", "host=h password=**** dbname=d");
    /* libpq allows spaces around '=' and quoted values with escapes */
    expect_mask("host=h password = s3cret dbname=d",
                "host=h password = **** dbname=d");
    expect_mask("host=h password='s3cr et' dbname=d",
                "host=h password=**** dbname=d");
    expect_mask("host=h password='s3cr\\' et' dbname=d",
                "host=h password=**** dbname=d");
    expect_mask("host=h password=s3cr\\ et dbname=d",
                "host=h password=**** dbname=d");
    expect_mask("password=s3cret", "password=****");
    /* not a password key */
    expect_mask("host=h mypassword=x dbname=d", "host=h mypassword=x dbname=d");
    expect_mask("host=h dbname=d", "host=h dbname=d");
    char *env = skipq_mask_url(NULL);
    ASSERT_STREQ(env, "(PG* environment)");
    free(env);
}

/* ---- the JSON-lines reader --------------------------------------------- */

struct read_result {
    int lines;          /* payload lines returned */
    skipq_rc rc;        /* of the last call */
    long long lineno;   /* at the end */
    char message[512];
};

static struct read_result
read_all(const char *data, size_t len, size_t max)
{
    struct read_result r = {0};
    skipq_error err = {0};
    skipq__jsonl in;
    const char *line;
    size_t n;
    FILE *f = fmemopen((void *)data, len, "r");

    ASSERT_TRUE(f != NULL);
    skipq__jsonl_init(&in, f, max);
    for (;;) {
        r.rc = skipq__jsonl_next(&in, &line, &n, &err);
        if (r.rc != SKIPQ_OK || !line)
            break;
        ASSERT_EQ(strlen(line), n);
        r.lines++;
    }
    r.lineno = in.lineno;
    snprintf(r.message, sizeof r.message, "%s", err.message);
    skipq__jsonl_free(&in);
    fclose(f);
    return r;
}

TEST(jsonl_lines_and_blanks)
{
    static const char in[] = "{\"a\":1}\r\n\n \t\n{\"b\":[1,2]}\n{}";
    struct read_result r = read_all(in, sizeof in - 1, 0);

    ASSERT_EQ(r.rc, SKIPQ_OK);
    ASSERT_EQ(r.lines, 3);
    ASSERT_EQ(r.lineno, 5);
    r = read_all("", 0, 0);
    ASSERT_EQ(r.rc, SKIPQ_OK);
    ASSERT_EQ(r.lines, 0);
}

TEST(jsonl_bad_lines_name_the_line)
{
    static const char nul[] = "{}\n{\"a\": \0}\n";
    struct read_result r = read_all(nul, sizeof nul - 1, 0);

    ASSERT_EQ(r.rc, SKIPQ_ERR_INVALID);
    ASSERT_EQ(r.lineno, 2);
    ASSERT_STREQ(r.message, "invalid JSON at offset 6: NUL byte");

    r = read_all("{}\n\n{\"a\":\n", 10, 0);
    ASSERT_EQ(r.rc, SKIPQ_ERR_INVALID);
    ASSERT_EQ(r.lineno, 3);
    ASSERT_CONTAINS(r.message, "invalid JSON at offset 5");

    r = read_all("\"text\"\n", 7, 0);
    ASSERT_STREQ(r.message, "payload must be a JSON object, not string");
}

TEST(jsonl_limit_counts_without_buffering)
{
    /* 20 bytes allowed: exactly 20 passes (also with CRLF), 21 does not */
    static const char ok[] = "{\"a\":\"0123456789ab\"}\r\n";
    static const char big[] = "{\"a\":\"0123456789abc\"}\n";
    struct read_result r = read_all(ok, sizeof ok - 1, 20);

    ASSERT_EQ(r.rc, SKIPQ_OK);
    ASSERT_EQ(r.lines, 1);
    r = read_all(big, sizeof big - 1, 20);
    ASSERT_EQ(r.rc, SKIPQ_ERR_INVALID);
    ASSERT_STREQ(r.message, "payload is 21 bytes, more than the limit of 20");

    /* 8 MB on one line against a 1 KB limit: refused, length counted,
     * and the reader's buffer never grew past the limit */
    size_t n = 8u << 20;
    char *huge = malloc(n);
    ASSERT_TRUE(huge != NULL);
    memset(huge, ' ', n);
    huge[0] = '{';
    huge[n - 2] = '}';
    huge[n - 1] = '\n';
    FILE *f = fmemopen(huge, n, "r");
    skipq__jsonl in;
    skipq_error err = {0};
    const char *line;
    size_t len;
    skipq__jsonl_init(&in, f, 1024);
    ASSERT_EQ(skipq__jsonl_next(&in, &line, &len, &err), SKIPQ_ERR_INVALID);
    ASSERT_STREQ(err.message,
                 "payload is 8388607 bytes, more than the limit of 1024");
    ASSERT_TRUE(in.cap <= 1024 + 3);
    skipq__jsonl_free(&in);
    fclose(f);
    free(huge);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
