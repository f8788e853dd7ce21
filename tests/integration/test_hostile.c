/*
 * test_hostile.c - hostile and malformed input through the skipq binary
 * filling the gaps test_cli.c and tests/unit/ leave:
 * 100 MB payloads, invalid UTF-8 and non-objects as the JSON argument,
 * names at and past the 200-byte rule (stored verbatim or refused by it),
 * names that COPY must escape, priorities on every command, and config
 * files at the CLI. Every refusal is checked three ways: the message,
 * exit status 2, and a jobs table that did not change.
 */
#include "testlib.h"

#include <unistd.h>

static char *
jobs_digest(PGconn *pg)
{
    return tl_str(pg, "SELECT coalesce(md5(string_agg(j::text, ',' ORDER BY "
                      "j.id)), 'empty') FROM skipq.jobs j");
}

/* `skipq ARGS` (stdin from stdin_data or a redirect in ARGS) must exit 2,
 * say want on stderr and leave the table alone. */
static void
expect_bad_in(PGconn *pg, const char *stdin_data, const char *want, const char *args)
{
    char *before = jobs_digest(pg), *after, *err = NULL;
    int st = tl_skipq_run(stdin_data, NULL, &err, "%s", args);

    if (st != 2 || !strstr(err, want))
        HARNESS_FAIL("skipq %.200s: exit %d, wanted 2 and \"%s\" in: %s", args, st, want,
                     err);
    after = jobs_digest(pg);
    ASSERT_STREQ(before, after);
    free(before);
    free(after);
    free(err);
}

static void
expect_bad(PGconn *pg, const char *want, const char *args)
{
    expect_bad_in(pg, NULL, want, args);
}

/* A file of n bytes: '{"a":"xxx...x"}' and a newline. */
static const char *
big_payload_file(size_t n)
{
    const char *path = tl_tmpfile(".jsonl");
    FILE *f = fopen(path, "wb");
    char chunk[65536];
    size_t left = n - 8; /* the line is n bytes, newline aside */

    ASSERT_TRUE(f != NULL);
    memset(chunk, 'x', sizeof chunk);
    fputs("{\"a\":\"", f);
    while (left > 0) {
        size_t k = left < sizeof chunk ? left : sizeof chunk;
        ASSERT_EQ(fwrite(chunk, 1, k, f), k);
        left -= k;
    }
    fputs("\"}\n", f);
    ASSERT_EQ(fclose(f), 0);
    return path;
}

static char *
repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* ---- payloads ------------------------------------------------------------ */

TEST(payload_100mb_beyond_limit)
{
    PGconn *pg = tl_db();
    const char *path = big_payload_file((size_t)100 << 20);
    const char *cfg = tl_tmpfile(".yaml");
    char *args = NULL;

    tl_exec(pg, "SELECT skipq.enqueue('existing')");
    /* the default limit (1 MB) */
    ASSERT_TRUE(asprintf(&args, "enqueue k < %s", path) > 0);
    expect_bad(pg,
               "line 1: payload is 104857600 bytes, more than the limit "
               "of 1048576",
               args);
    free(args);
    /* a configured limit, the 100 MB line after two good ones */
    tl_write_file(cfg, "limits:\n  max_payload: 64KB\n");
    ASSERT_TRUE(asprintf(&args, "enqueue k --config %s < %s", cfg, path) > 0);
    expect_bad(pg, "payload is 104857600 bytes, more than the limit of 65536", args);
    free(args);
    ASSERT_TRUE(asprintf(&args, "enqueue k --config %s", cfg) > 0);
    char *in = NULL;
    ASSERT_TRUE(asprintf(&in, "{}\n{\"b\":1}\n%s\n", "{\"c\":\"too long\"}") > 0);
    ASSERT_EQ(tl_skipq_run(in, NULL, NULL, "%s", args), 0);
    free(in);
    free(args);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 4);
}

TEST(payload_argument_malformed)
{
    PGconn *pg = tl_db();
    const char *bad_utf8 = tl_tmpfile(".json");

    tl_exec(pg, "SELECT skipq.enqueue('existing')");
    /* an argument cannot hold a NUL byte; stdin can (test_cli.c) */
    tl_write_file(bad_utf8, "{\"a\":\"\xc3\x28\"}");
    char *args = NULL;
    ASSERT_TRUE(asprintf(&args, "enqueue k \"$(cat %s)\"", bad_utf8) > 0);
    expect_bad(pg, "invalid JSON at offset 6: invalid UTF-8", args);
    free(args);
    /* truncated at several depths */
    expect_bad(pg, "invalid JSON at offset", "enqueue k '{'");
    expect_bad(pg, "invalid JSON at offset", "enqueue k '{\"a\":[1,{\"b\":'");
    expect_bad(pg, "invalid JSON at offset", "enqueue k '{\"a\":\"unterminated'");
    expect_bad(pg, "invalid JSON at offset 7: unexpected character",
               "enqueue k '{\"a\":1}x'");
    /* JSON, but not an object */
    expect_bad(pg, "payload must be a JSON object, not string", "enqueue k '\"s\"'");
    expect_bad(pg, "payload must be a JSON object, not null", "enqueue k null");
    expect_bad(pg, "payload must be a JSON object, not boolean", "enqueue k true");
    expect_bad(pg, "payload must be a JSON object, not array", "enqueue k '[{}]'");
    expect_bad(pg, "payload must be a JSON object, not double", "enqueue k 1.5");
    expect_bad_in(pg, "{}\n\"s\"\n",
                  "line 2: payload must be a JSON object, "
                  "not string",
                  "enqueue k");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 1);
}

/* ---- names --------------------------------------------------------------- */

TEST(names_rule_at_200_bytes)
{
    PGconn *pg = tl_db();
    char *q200 = repeat('q', 200), *q201 = repeat('q', 201);
    char *q10k = repeat('q', 10000), *args = NULL, *out = NULL;
    /* 100 two-byte characters: 200 bytes, inside the rule */
    char e200[201];
    for (int i = 0; i < 100; i++)
        memcpy(e200 + 2 * i, "\xc3\xa9", 2);
    e200[200] = '\0';

    tl_exec(pg, "SELECT skipq.enqueue('existing')");
    ASSERT_TRUE(asprintf(&args, "enqueue k '{}' --queue %s", q201) > 0);
    expect_bad(pg, "queue is 201 bytes long; the limit is 200 bytes", args);
    free(args);
    ASSERT_TRUE(asprintf(&args, "enqueue k '{}' --queue %s", q10k) > 0);
    expect_bad(pg, "queue is 10000 bytes long; the limit is 200 bytes", args);
    free(args);
    ASSERT_TRUE(asprintf(&args, "enqueue k --queue %s", q10k) > 0);
    expect_bad_in(pg, "{}\n", "queue is 10000 bytes long", args);
    free(args);
    ASSERT_TRUE(asprintf(&args, "worker --handler k=true --once --queue %s", q10k) > 0);
    expect_bad(pg, "queue is 10000 bytes long", args);
    free(args);
    expect_bad(pg, "queue is not valid UTF-8 (byte 1)",
               "enqueue k '{}' --queue \"$(printf 'a\\377b')\"");
    expect_bad(pg, "kind is not valid UTF-8 (byte 0)",
               "enqueue \"$(printf '\\377')\" '{}'");

    /* inside the rule: stored verbatim, by both paths */
    ASSERT_TRUE(asprintf(&args, "enqueue %s '{}' --queue %s", q200, e200) > 0);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "%s", args), 0);
    free(args);
    free(out);
    ASSERT_TRUE(asprintf(&args, "enqueue %s --queue %s", e200, q200) > 0);
    ASSERT_EQ(tl_skipq_run("{}\n", NULL, NULL, "%s", args), 0);
    free(args);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE kind = '%s' "
                     "AND queue = '%s'",
                     q200, e200),
              1);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE kind = '%s' "
                     "AND queue = '%s'",
                     e200, q200),
              1);
    free(q200);
    free(q201);
    free(q10k);
}

/*
 * Characters that mean something to SQL, to the shell or to COPY's text
 * format (tab, newline, backslash, "\." that ends COPY data) are data:
 * the row holds exactly what was given, through the single-job INSERT
 * and through the COPY of stdin mode.
 */
TEST(names_stored_verbatim)
{
    PGconn *pg = tl_db();
    static const char *const names[] = {
        "a b",        "x'); DELETE FROM skipq.jobs; --",
        "\"quoted\"", "semi;colon",
        " ",          "tab\there",
        "new\nline",  "back\\slash",
        "\\.",        "$(id)",
        "%s%n",
    };

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *path = tl_tmpfile(".name");
        char *args = NULL;

        tl_write_file(path, names[i]);
        ASSERT_TRUE(asprintf(&args,
                             "enqueue \"$(cat %s)\" '{\"i\":%zu}' "
                             "--queue \"$(cat %s)\"",
                             path, i, path) > 0);
        ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "%s", args), 0);
        free(args);
        ASSERT_TRUE(asprintf(&args, "enqueue \"$(cat %s)\" --queue \"$(cat %s)\"", path,
                             path) > 0);
        char in[32];
        snprintf(in, sizeof in, "{\"i\":%zu}\n", i);
        ASSERT_EQ(tl_skipq_run(in, NULL, NULL, "%s", args), 0);
        free(args);

        /* compare in C: the name never goes into our SQL either */
        PGresult *res;
        const char *v[1] = {names[i]};
        res = PQexecParams(pg,
                           "SELECT count(*) FROM skipq.jobs WHERE kind = $1 "
                           "AND queue = $1",
                           1, NULL, v, NULL, NULL, 0);
        ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
        if (strcmp(PQgetvalue(res, 0, 0), "2") != 0)
            HARNESS_FAIL("name %zu (\"%s\"): %s rows stored verbatim, wanted 2", i,
                         names[i], PQgetvalue(res, 0, 0));
        PQclear(res);
    }
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"),
              2 * (int64_t)(sizeof names / sizeof names[0]));
}

/* ---- priorities ------------------------------------------------------- */

TEST(unknown_priority_everywhere)
{
    PGconn *pg = tl_db();
    char *err = NULL;

    tl_exec(pg, "SELECT skipq.enqueue('existing')");
    expect_bad(pg, "unrecognized priority \"urgent\"",
               "worker --handler k=true --once --priority urgent");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err,
                           "worker --handler k=true --once --priority urgent"),
              2);
    ASSERT_CONTAINS(err, "try 'skipq --help'");
    free(err);
    expect_bad(pg, "unrecognized priority \"high;drop\"",
               "enqueue k '{}' --priority 'high;drop'");
    expect_bad(pg, "unrecognized priority \"\"", "enqueue k '{}' --priority ''");
    expect_bad(pg, "unrecognized priority \"URGENT\"",
               "recover --status failed --priority URGENT --yes");
    expect_bad_in(pg, "{}\n", "unrecognized priority \"1e3\"", "enqueue k --priority 1e3");
    /* the SQL API refuses the name too, and says which */
    PGresult *res = PQexec(pg, "SELECT skipq.enqueue('k', '{}', 'default', "
                               "'urgent'::text)");
    ASSERT_EQ(PQresultStatus(res), PGRES_FATAL_ERROR);
    ASSERT_CONTAINS(PQresultErrorMessage(res), "unrecognized priority \"urgent\"");
    PQclear(res);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 1);
}

/* ---- config files at the command line ------------------------------- */

TEST(config_files_hostile)
{
    PGconn *pg = tl_db();
    const char *cfg = tl_tmpfile(".yaml");
    char *args = NULL, *err = NULL, *out = NULL;

    tl_exec(pg, "SELECT skipq.enqueue('existing')");
    ASSERT_TRUE(asprintf(&args, "enqueue k '{}' --config %s", cfg) > 0);

    tl_write_file(cfg, "");
    expect_bad(pg, "file is empty", args);
    tl_write_file(cfg, "# nothing but a comment\n");
    expect_bad(pg, "file is empty", args);
    tl_write_file(cfg, "worker:\n  queues: [a, b\n");
    expect_bad(pg, "line 3, column 1: did not find expected ',' or ']'", args);
    tl_write_file(cfg, "\x7f"
                       "ELF\x02\x01\x01");
    expect_bad(pg, "could not load config", args);
    tl_write_file(cfg, "limits:\n  max_payload: [1]\n");
    expect_bad(pg,
               "line 2, column 16: limits.max_payload must be a size, not "
               "a list",
               args);
    tl_write_file(cfg, "worker:\n  concurrency: {a: 1}\n");
    expect_bad(pg, "line 2, column 16:", args);
    tl_write_file(cfg, "worker:\n  poll_interval: 5x\n");
    expect_bad(pg, "line 2, column 18: invalid duration \"5x\"", args);
    tl_write_file(cfg, "retry:\n  base: 5x\n");
    expect_bad(pg, "invalid duration \"5x\"", args);

    /* an unknown key is a warning with line and column, not an error */
    tl_write_file(cfg, "worker:\n  concurrency: 2\n  colour: blue\n");
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "%s", args), 0);
    ASSERT_CONTAINS(err, " warning skipq: config \"");
    ASSERT_CONTAINS(err, "line 3, column 3: unknown key \"worker.colour\" "
                         "ignored");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 2);
    free(out);
    free(err);
    free(args);
}

/* ---- secrets in logs ------------------------------------------------- */

/* Payloads reach the worker's log only with --log-payloads; passwords in
 * a connection string never do. */
TEST(worker_logs_payloads_only_when_asked)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;

    tl_exec(pg, "SELECT skipq.enqueue('k', '{\"card\":\"4111-secret\"}')");
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "worker --once --verbose --handler k=true"),
              0);
    ASSERT_CONTAINS(err, "claimed");
    ASSERT_TRUE(strstr(err, "4111-secret") == NULL);
    free(out);
    free(err);

    tl_exec(pg, "SELECT skipq.enqueue('k', '{\"card\":\"4111-secret\"}')");
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "worker --once --log-payloads --handler k=true"),
              0);
    ASSERT_CONTAINS(err, "claimed (k, attempt 1) payload {\"card\": "
                         "\"4111-secret\"}");
    free(out);
    free(err);

    tl_exec(pg, "SELECT skipq.enqueue('k', '{\"card\":\"4111-secret\"}')");
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "worker --once --log-payloads --log-format json "
                           "--handler k=true"),
              0);
    ASSERT_CONTAINS(err, "\"payload\":{\"card\":\"4111-secret\"}");
    free(out);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = "
                         "'succeeded'"),
              3);

    /* a password in --database is masked in every message */
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err,
                           "worker --once --handler k=true --database "
                           "\"host=127.0.0.1 port=1 password = 's3 cret' "
                           "user=u\""),
              1);
    ASSERT_TRUE(strstr(err, "s3") == NULL && strstr(err, "cret") == NULL);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err,
                           "jobs ls --database "
                           "'postgresql://u:s3cret@127.0.0.1:1/x'"),
              1);
    ASSERT_CONTAINS(err, "u:****@");
    ASSERT_TRUE(strstr(err, "s3cret") == NULL);
    free(err);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
