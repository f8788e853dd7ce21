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
    ASSERT_TRUE(strstr(got, "cret") == NULL);
    free(got);
}

/* The forms an earlier pattern matcher handled: rebuilt from libpq's
 * parse, a URI as a URI, key/value in libpq's keyword order. */
TEST(mask_every_password_form)
{
    expect_mask("postgresql://u:s3cret@h:5432/db", "postgresql://u:****@h:5432/db");
    expect_mask("postgresql://u:s3cr%40t@h/db", "postgresql://u:****@h/db");
    expect_mask("postgres://u:s3:cr@[::1]:5/db", "postgres://u:****@[::1]:5/db");
    expect_mask("postgresql://u@h/db?password=s3cret&sslmode=require",
                "postgresql://u:****@h/db?sslmode=require");
    expect_mask("postgresql://u@h/db?sslmode=require&password=s3cret",
                "postgresql://u:****@h/db?sslmode=require");
    expect_mask("host=h password=s3cret dbname=d", "password=**** dbname=d host=h");
    /* libpq allows spaces around '=' and quoted values with escapes */
    expect_mask("host=h password = s3cret dbname=d", "password=**** dbname=d host=h");
    expect_mask("host=h password='s3cr et' dbname=d", "password=**** dbname=d host=h");
    expect_mask("host=h password='s3cr\\' et' dbname=d", "password=**** dbname=d host=h");
    expect_mask("host=h password=s3cr\\ et dbname=d", "password=**** dbname=d host=h");
    expect_mask("password=s3cret", "password=****");
    expect_mask("host=h dbname=d", "dbname=d host=h");
    expect_mask("postgresql://127.0.0.1:1/x", "postgresql://127.0.0.1:1/x");
    char *env = skipq_mask_url(NULL);
    ASSERT_STREQ(env, "(PG* environment)");
    free(env);
    env = skipq_mask_url("");
    ASSERT_STREQ(env, "(PG* environment)");
    free(env);
}

/* Every way libpq accepts to spell a secret, and the strings it does
 * not accept, whose text must not be shown at all. */
TEST(mask_every_conninfo_form_libpq_accepts)
{
    expect_mask("host=h sslpassword=s3cret", "host=h sslpassword=****");
    expect_mask("postgresql://u@h/db?sslpassword=s3cret",
                "postgresql://u@h/db?sslpassword=****");
    /* a percent-encoded key is still the password */
    expect_mask("postgresql://u@h/db?pass%77ord=s3cret", "postgresql://u:****@h/db");
    expect_mask("postgresql://u@h/db?%70assword=s3cret&sslmode=disable",
                "postgresql://u:****@h/db?sslmode=disable");
    /* libpq's own separators: any isspace() character */
    expect_mask("host=h\vpassword=s3cret\fdbname=d\rport=5",
                "password=**** dbname=d host=h port=5");
    expect_mask("host=h\n\tpassword\t=\ts3cret", "password=**** host=h");
    /* a password with an unencoded '/' or '@': libpq reads part of it as
     * a host, port or database name; all of it up to the last '@' goes */
    expect_mask("postgresql://u:s3/cret@h/db", "postgresql://****@h/db");
    expect_mask("postgresql://u:s3@cret@h:5/db?sslmode=require",
                "postgresql://****@h:5/db?sslmode=require");
    expect_mask("postgresql://u:s3/cr@t@h/db", "postgresql://****@h/db");
    /* a database name that is itself a connection string */
    expect_mask("dbname='postgresql://u:s3cret@h/d' host=x",
                "dbname=postgresql://u:****@h/d host=x");
    expect_mask("dbname='host=h password=s3cret'", "dbname='password=**** host=h'");
    /* not a keyword libpq knows, unterminated quotes, a broken URI: not
     * parsed, so not shown, not even in part */
    expect_mask("host=h PASSWORD=s3cret",
                "(a connection string libpq cannot parse; not shown)");
    expect_mask("host=h password='s3cret",
                "(a connection string libpq cannot parse; not shown)");
    expect_mask("postgresql://u:s3cret@[::1",
                "(a connection string libpq cannot parse; not shown)");
    expect_mask("postgresql://u:s3cret@h/db?bogus=1",
                "(a connection string libpq cannot parse; not shown)");
    expect_mask("host=h password=s3 cret",
                "(a connection string libpq cannot parse; not shown)");
    /* what is no secret stays readable */
    expect_mask("postgresql://a,b:5433/db?target_session_attrs=read-write",
                "postgresql://a,b:5433/db?target_session_attrs=read-write");
    expect_mask("postgresql:///db?host=/var/run/postgresql",
                "postgresql://%2Fvar%2Frun%2Fpostgresql/db");
    expect_mask("host=h mypassword=x dbname=d",
                "(a connection string libpq cannot parse; not shown)");
    expect_mask("host=h application_name='a b'", "host=h application_name='a b'");
}

/* ---- the JSON-lines reader --------------------------------------------- */

struct read_result {
    int lines;        /* payload lines returned */
    skipq_rc rc;      /* of the last call */
    long long lineno; /* at the end */
    char message[512];
};

static struct read_result
read_all(const char *data, size_t len, size_t max)
{
    struct read_result r = {0};
    skipq_error err = {0};
    skipq_jsonl *in = NULL;
    const char *line;
    size_t n;
    FILE *f = fmemopen((void *)data, len, "r");

    ASSERT_TRUE(f != NULL);
    ASSERT_EQ(skipq_jsonl_new(f, max, &in, &err), SKIPQ_OK);
    for (;;) {
        r.rc = skipq_jsonl_next(in, &line, &n, &err);
        if (r.rc != SKIPQ_OK || !line)
            break;
        ASSERT_EQ(strlen(line), n);
        r.lines++;
    }
    r.lineno = skipq_jsonl_lineno(in);
    snprintf(r.message, sizeof r.message, "%s", err.message);
    skipq_jsonl_free(in);
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
    skipq_jsonl *in = NULL;
    skipq_error err = {0};
    const char *line;
    size_t len;
    ASSERT_EQ(skipq_jsonl_new(f, 1024, &in, &err), SKIPQ_OK);
    ASSERT_EQ(skipq_jsonl_next(in, &line, &len, &err), SKIPQ_ERR_INVALID);
    ASSERT_STREQ(err.message, "payload is 8388607 bytes, more than the limit of 1024");
    ASSERT_TRUE(skipq__jsonl_buffered(in) <= 1024 + 3);
    skipq_jsonl_free(in);
    fclose(f);
    free(huge);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
