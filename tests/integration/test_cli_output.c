/*
 * test_cli_output.c - what the skipq command line prints, and what it
 * refuses before printing anything:
 *
 *   - text from jobs, workers and handlers reaches the terminal escaped
 *     (no control or bidi characters), stored and in JSON verbatim;
 *   - passwords never show, in any connection string form, nor in ps;
 *   - a COMMIT that fails is reported as a failure;
 *   - option values are checked with messages that give the real range;
 *   - numbers, timestamps and counts are printed right.
 */
#include "testlib.h"

#include <json-c/json.h>
#include <signal.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static char *
jobs_digest(PGconn *pg)
{
    return tl_str(pg, "SELECT coalesce(md5(string_agg(j::text, ',' ORDER BY "
                      "j.id)), 'empty') FROM skipq.jobs j");
}

/*
 * Nothing in text a terminal would act on: valid UTF-8 throughout (a bare
 * 0x9b is a CSI to a terminal not in UTF-8 mode), no C0 control but
 * newline and tab, no DEL, no C1, no bidi control.
 */
static void
assert_terminal_safe(const char *what, const char *text)
{
    const unsigned char *s = (const unsigned char *)text;

    ASSERT_TRUE(text != NULL);
    while (*s) {
        uint32_t c = *s;
        int n = *s < 0x80                  ? 1
                : *s >= 0xC2 && *s <= 0xDF ? 2
                : *s >= 0xE0 && *s <= 0xEF ? 3
                : *s >= 0xF0 && *s <= 0xF4 ? 4
                                           : 0;
        if (n == 0)
            HARNESS_FAIL("%s: not UTF-8 at offset %d: %s", what,
                         (int)(s - (const unsigned char *)text), text);
        if (n > 1)
            c = *s & (0x7F >> n);
        for (int i = 1; i < n; i++) {
            if ((s[i] & 0xC0) != 0x80)
                HARNESS_FAIL("%s: not UTF-8 at offset %d: %s", what,
                             (int)(s - (const unsigned char *)text), text);
            c = c << 6 | (s[i] & 0x3F);
        }
        if ((c < 0x20 && c != '\n' && c != '\t') || (c >= 0x7F && c <= 0x9F) ||
            c == 0x061C || c == 0x200E || c == 0x200F || (c >= 0x202A && c <= 0x202E) ||
            (c >= 0x2066 && c <= 0x2069))
            HARNESS_FAIL("%s: raw U+%04X at offset %d: %s", what, (unsigned)c,
                         (int)(s - (const unsigned char *)text), text);
        s += n;
    }
}

/* The hostile names: clear screen, retitle the terminal, ring the bell,
 * a C1 CSI and a right-to-left override. */
#define EVIL_KIND "E'k\\x1b]0;pwned\\x07\\u202eX'"
#define EVIL_QUEUE "E'q\\x1b[2J\\u009b'"
#define EVIL_ERROR "E'boom\\x1b[31m red\\u2066hidden\\u2069\\nline 2\\r\\x08'"

static int64_t
evil_failed_job(PGconn *pg)
{
    return tl_int(pg, "INSERT INTO skipq.jobs (kind, queue, status, attempts, "
                      "last_error, payload, errors) VALUES (" EVIL_KIND ", " EVIL_QUEUE
                      ", 'failed', 1, " EVIL_ERROR ", jsonb_build_object('t', "
                      "E'\\x1b[2J\\u202e\\u0085'), jsonb_build_array("
                      "jsonb_build_object('attempt', 1, 'at', now(), 'error', " EVIL_ERROR
                      "))) RETURNING id");
}

/* ---- terminal escapes: printed escaped, stored verbatim ------------------ */

TEST(jobs_ls_escapes_control_characters)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;

    evil_failed_job(pg);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs ls"), 0);
    assert_terminal_safe("jobs ls", out);
    ASSERT_CONTAINS(out, "k\\u001b]0;pwned\\u0007\\u202eX");
    ASSERT_CONTAINS(out, "q\\u001b[2J\\u009b");
    ASSERT_CONTAINS(out, "boom\\u001b[31m red\\u2066hidden");
    free(out);
    free(err);
    /* stored verbatim */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = " EVIL_KIND
                         " AND queue = " EVIL_QUEUE " AND last_error = " EVIL_ERROR),
              1);
    /* and JSON output is the stored text, escaped by JSON itself */
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs ls --json"), 0);
    json_object *o = json_tokener_parse(out), *v;
    ASSERT_TRUE(o != NULL);
    ASSERT_TRUE(json_object_object_get_ex(o, "kind", &v));
    ASSERT_STREQ(json_object_get_string(v), "k\x1b]0;pwned\x07\xe2\x80\xaeX");
    ASSERT_TRUE(json_object_object_get_ex(o, "last_error", &v));
    ASSERT_STREQ(json_object_get_string(v),
                 "boom\x1b[31m red\xe2\x81\xa6hidden\xe2\x81\xa9\nline 2\r\b");
    json_object_put(o);
    free(out);
}

TEST(jobs_show_escapes_control_characters)
{
    PGconn *pg = tl_db();
    char *out = NULL;
    int64_t id = evil_failed_job(pg);

    tl_exec(pg,
            "UPDATE skipq.jobs SET unique_key = " EVIL_KIND
            ", concurrency_key = " EVIL_QUEUE " WHERE id = %lld",
            (long long)id);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs show %lld", (long long)id), 0);
    assert_terminal_safe("jobs show", out);
    ASSERT_CONTAINS(out, "k\\u001b]0;pwned\\u0007\\u202eX");
    ASSERT_CONTAINS(out, "unique_key           k\\u001b]0;pwned");
    /* the error keeps its lines; the carriage return does not get to
     * overwrite one */
    ASSERT_CONTAINS(out, "boom\\u001b[31m red\\u2066hidden\\u2069\n");
    ASSERT_CONTAINS(out, "line 2\\u000d\\u0008");
    ASSERT_CONTAINS(out, "attempt 1: boom\\u001b[31m");
    /* the payload: still JSON, its escapes JSON escapes */
    ASSERT_CONTAINS(out, "\"t\": \"\\u001b[2J\\u202e\\u0085\"");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs show --json %lld", (long long)id), 0);
    json_object *o = json_tokener_parse(out), *v, *t;
    ASSERT_TRUE(o != NULL);
    ASSERT_TRUE(json_object_object_get_ex(o, "payload", &v));
    ASSERT_TRUE(json_object_object_get_ex(v, "t", &t));
    ASSERT_STREQ(json_object_get_string(t), "\x1b[2J\xe2\x80\xae\xc2\x85");
    json_object_put(o);
    free(out);
}

TEST(stats_escapes_control_characters)
{
    PGconn *pg = tl_db();
    char *out = NULL;

    evil_failed_job(pg);
    tl_exec(pg, "INSERT INTO skipq.workers (host, pid, queues, priorities, "
                "concurrency, version) VALUES (E'h\\x1b]2;owned\\x07', 42, "
                "ARRAY[" EVIL_QUEUE "], E'high\\u202e', 4, E'0.1\\x1b[5m')");
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "stats"), 0);
    assert_terminal_safe("stats", out);
    ASSERT_CONTAINS(out, "q\\u001b[2J\\u009b");
    ASSERT_CONTAINS(out, "h\\u001b]2;owned\\u0007");
    ASSERT_CONTAINS(out, "high\\u202e");
    free(out);
}

TEST(recover_escapes_kinds)
{
    PGconn *pg = tl_db();
    char *out = NULL;

    evil_failed_job(pg);
    tl_exec(pg, "UPDATE skipq.jobs SET updated_at = now() - interval '1 hour'");
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "recover --status failed --dry-run"), 0);
    assert_terminal_safe("recover", out);
    ASSERT_STREQ(out, "would requeue 1 failed job: k\\u001b]0;pwned\\u0007\\u202eX 1\n");
    free(out);
}

/* A handler's stderr is the job's error: stored verbatim, logged escaped. */
TEST(worker_log_escapes_handler_stderr)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;

    tl_exec(pg, "SELECT skipq.enqueue(" EVIL_KIND ", max_attempts => 1)");
    char *handler = tl_shq(
        "k\x1b]0;pwned\x07\xe2\x80\xaeX=printf 'bad\\033[2J\\302\\233x\\342\\200\\256y' >&2; exit 3");
    int rc = tl_skipq_run(NULL, &out, &err, "worker --once --verbose --handler %s",
                          handler);
    free(handler);
    if (rc != 0)
        HARNESS_FAIL("worker exited %d: %s", rc, err);
    assert_terminal_safe("worker log", err);
    ASSERT_CONTAINS(err, "failed: exit status 3: bad\\u001b[2J\\u009bx\\u202ey");
    ASSERT_CONTAINS(err, "claimed (k\\u001b]0;pwned\\u0007\\u202eX, attempt 1)");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'failed'"
                         " AND last_error = E'exit status 3: bad\\x1b[2J\\u009bx\\u202ey'"),
              1);
    free(out);
    free(err);
    /* the JSON log carries the same text, escaped the JSON way */
    tl_exec(pg, "SELECT skipq.enqueue(" EVIL_KIND ", max_attempts => 1)");
    handler = tl_shq("k\x1b]0;pwned\x07\xe2\x80\xaeX=printf 'bad\\033[2J' >&2; exit 3");
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "worker --once --log-format json --handler %s",
                           handler),
              0);
    free(handler);
    ASSERT_CONTAINS(err, "bad\\u001b[2J");
    free(out);
    free(err);
}

TEST(error_messages_escape_control_characters)
{
    PGconn *pg = tl_db();
    char *err = NULL;

    (void)pg;
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "jobs ls --status \"$(printf 'x\\033[2J')\""),
              2);
    assert_terminal_safe("error", err);
    ASSERT_CONTAINS(err, "unrecognized status \"x\\u001b[2J\"");
    free(err);
    /* a server message that quotes the input */
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err,
                           "enqueue k '{}' --run-at \"$(printf '\\033]0;t\\007')\""),
              2);
    assert_terminal_safe("error", err);
    free(err);
}

/* ---- passwords: never printed, not left in argv ------------------------- */

TEST(connect_errors_never_show_the_password)
{
    static const char *const forms[] = {
        "host=127.0.0.1 port=1 sslpassword=s3cret",
        "postgresql://u@127.0.0.1:1/x?sslpassword=s3cret",
        "postgresql://u@127.0.0.1:1/x?pass%77ord=s3cret",
        "host=127.0.0.1 port=1 PASSWORD=s3cret",
        "host=127.0.0.1\vport=1\fpassword=s3cret",
        "host=127.0.0.1 port=1 password=s3 cret",
        "postgresql://u:s3/cret@127.0.0.1:1/x",
        "postgresql://u:s3@cret@127.0.0.1:1/x",
        "postgresql://u:s3cret@127.0.0.1:1/x?bogus=1",
        "postgresql://u:s3cret@[::1",
        "postgresql://u:s3cret@[::1]x:1/x",
    };
    PGconn *pg = tl_db();

    (void)pg;
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char *q = tl_shq(forms[i]), *err = NULL;
        int rc = tl_skipq_run(NULL, NULL, &err, "jobs ls --database %s", q);
        if (rc != 1 || strstr(err, "s3") || strstr(err, "cret"))
            HARNESS_FAIL("%s: exit %d, wanted 1 and no password in: %s", forms[i], rc, err);
        ASSERT_CONTAINS(err, "could not connect");
        free(err);
        free(q);
    }
}

static bool
watching(void *arg)
{
    PGconn *pg = arg;
    /* its first refresh ran: the SIGINT handler is installed */
    return tl_int(pg, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                      "current_database() AND application_name = 'argv-test' "
                      "AND query LIKE '%%active_workers%%'") > 0;
}

TEST(database_flag_is_scrubbed_from_argv)
{
    PGconn *pg = tl_db();
    const char *url = tl_url(), *at = strchr(url, '@');
    char with_pw[1200], path[64], cmdline[4096];

    ASSERT_TRUE(at != NULL);
    /* the test cluster trusts 127.0.0.1: the password is carried, unused */
    snprintf(with_pw, sizeof with_pw, "%.*s:s3cret%s", (int)(at - url), url, at);
    pid_t pid = tl_spawn(NULL,
                         "PGAPPNAME=argv-test exec %s stats --watch 1s --database '%s'",
                         tl_skipq(), with_pw);
    ASSERT_TRUE(wait_until(10000, watching, pg));
    if (getenv("SKIPQ_CLI_WRAPPER")) {
        /* under valgrind the process ps shows is valgrind's own */
        tl_kill(pid, SIGINT);
        tl_wait_pid(pid, 10000);
        return;
    }
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "rb");
    ASSERT_TRUE(f != NULL);
    size_t n = fread(cmdline, 1, sizeof cmdline - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (cmdline[i] == '\0')
            cmdline[i] = ' ';
    cmdline[n] = '\0';
    if (strstr(cmdline, "s3cret"))
        HARNESS_FAIL("password in /proc/PID/cmdline: %s", cmdline);
    ASSERT_CONTAINS(cmdline, "--database postgresql://postgres:****@127.0.0.1:");
    tl_kill(pid, SIGINT);
    ASSERT_EQ(tl_wait_pid(pid, 10000), 0);
}

/* ---- a COMMIT that fails is a failure ------------------------------------ */

/* Every change to skipq.jobs is refused at COMMIT, after the statements
 * that made it succeeded. */
static void
refuse_at_commit(PGconn *pg, const char *event)
{
    tl_exec(pg, "CREATE FUNCTION public.refuse_at_commit() RETURNS trigger "
                "LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'refused at commit'; "
                "END$$");
    tl_exec(pg,
            "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER %s ON skipq.jobs "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "EXECUTE FUNCTION public.refuse_at_commit()",
            event);
}

TEST(retry_reports_failed_commit)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;
    int64_t id = tl_int(pg, "INSERT INTO skipq.jobs (kind, status, attempts) "
                            "VALUES ('k', 'failed', 3) RETURNING id");

    refuse_at_commit(pg, "UPDATE");
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs retry %lld", (long long)id), 1);
    ASSERT_TRUE(strstr(out, "->") == NULL);
    ASSERT_CONTAINS(err, "could not commit the retry");
    ASSERT_CONTAINS(err, "refused at commit");
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %lld AND "
                     "status = 'failed' AND attempts = 3",
                     (long long)id),
              1);
    free(out);
    free(err);
}

TEST(cancel_reports_failed_commit)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('k')");

    refuse_at_commit(pg, "UPDATE");
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs cancel %lld", (long long)id), 1);
    ASSERT_TRUE(strstr(out, "cancelled") == NULL);
    ASSERT_CONTAINS(err, "could not commit the cancel");
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %lld AND "
                     "status = 'queued'",
                     (long long)id),
              1);
    free(out);
    free(err);
}

TEST(enqueue_stdin_reports_failed_commit)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;

    refuse_at_commit(pg, "INSERT");
    ASSERT_EQ(tl_skipq_run("{}\n{}\n", &out, &err, "enqueue k"), 1);
    ASSERT_TRUE(strstr(out, "enqueued") == NULL);
    ASSERT_CONTAINS(err, "could not commit the jobs");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 0);
    free(out);
    free(err);
}

/* ---- option values ------------------------------------------------------- */

static void
expect_usage(PGconn *pg, const char *want, const char *args)
{
    char *before = jobs_digest(pg), *after, *out = NULL, *err = NULL;
    int st = tl_skipq_run(NULL, &out, &err, "%s", args);

    if (st != 2 || !strstr(err, want))
        HARNESS_FAIL("skipq %s: exit %d, wanted 2 and \"%s\" in: %s", args, st, want, err);
    ASSERT_TRUE(strchr(err, '\n') == err + strlen(err) - 1);
    after = jobs_digest(pg);
    ASSERT_STREQ(before, after);
    free(before);
    free(after);
    free(out);
    free(err);
}

TEST(run_at_infinity_is_a_usage_error)
{
    PGconn *pg = tl_db();

    expect_usage(pg, "invalid --run-at \"infinity\": not a point in time",
                 "enqueue k '{}' --run-at infinity");
    expect_usage(pg, "invalid --run-at \"-infinity\": not a point in time",
                 "enqueue k '{}' --run-at -infinity");
    expect_usage(pg, "invalid --run-at \"3000-01-01\": more than 36500 days from now",
                 "enqueue k '{}' --run-at 3000-01-01");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL,
                           "enqueue k '{}' --run-at 2030-01-01T00:00:00Z"),
              0);
}

TEST(durations_cap_at_36500d)
{
    PGconn *pg = tl_db();

    expect_usage(pg, "--in: invalid duration \"36501d\": at most 36500d",
                 "enqueue k '{}' --in 36501d");
    expect_usage(pg, "--timeout: invalid duration \"876025h\": at most 36500d",
                 "enqueue k '{}' --timeout 876025h");
    expect_usage(pg, "--since: invalid duration \"36501d\": at most 36500d",
                 "jobs ls --since 36501d");
    expect_usage(pg, "at most 36500d", "prune --older-than 36501d");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "enqueue k '{}' --in 36500d"), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE run_at > now() + "
                         "interval '36499 days'"),
              1);
}

TEST(too_large_numbers_say_the_range)
{
    PGconn *pg = tl_db();

    expect_usage(pg, "--max-attempts must be from 1 to 2147483647, not \"2147483648\"",
                 "enqueue k '{}' --max-attempts 2147483648");
    expect_usage(pg,
                 "--max-attempts must be from 1 to 2147483647, not "
                 "\"99999999999999999999\"",
                 "enqueue k '{}' --max-attempts 99999999999999999999");
    expect_usage(pg, "--limit must be from 0 to 2147483647, not \"3000000000\"",
                 "jobs ls --limit 3000000000");
    expect_usage(pg, "--batch must be from 1 to 2147483647, not \"3000000000\"",
                 "prune --older-than 1d --batch 3000000000");
    expect_usage(pg, "--limit must be from 1 to 2147483647, not \"3000000000\"",
                 "recover --status failed --limit 3000000000");
    /* below the range says so as before */
    expect_usage(pg, "--max-attempts must be 1 or more, not \"0\"",
                 "enqueue k '{}' --max-attempts 0");
}

TEST(recover_extra_attempts_overflow_refused_up_front)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;

    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, attempts, max_attempts, "
                "updated_at) VALUES ('k', 'failed', 5, 5, now() - interval '1 hour')");
    expect_usage(pg, "--extra-attempts must be from 1 to 1000000, not \"2147483647\"",
                 "recover --status failed --extra-attempts 2147483647");
    /* and a row whose attempts are near the top cannot make it overflow */
    tl_exec(pg, "UPDATE skipq.jobs SET attempts = 2147483000, max_attempts = 2147483000");
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "recover --status failed --extra-attempts 1000000"),
              0);
    ASSERT_STREQ(out, "requeued 1 failed job: k 1\n");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued' AND "
                         "max_attempts = 2147483647"),
              1);
    free(out);
    free(err);
}

TEST(repeated_flag_is_refused)
{
    PGconn *pg = tl_db();
    char *err = NULL;

    expect_usage(pg, "--queue given twice", "enqueue k '{}' --queue a --queue b");
    expect_usage(pg, "--limit given twice", "jobs ls --limit 1 --limit 2");
    expect_usage(pg, "--database given twice",
                 "--database postgresql://127.0.0.1:1/a jobs ls --database "
                 "postgresql://127.0.0.1:1/b");
    expect_usage(pg, "--config given twice", "stats --config /dev/null --config /dev/null");
    expect_usage(pg, "--older-than given twice", "prune --older-than 1d --older-than 2d");
    expect_usage(pg, "--concurrency given twice",
                 "worker --once --handler k=true --concurrency 1 --concurrency 2");
    expect_usage(pg, "--status given twice", "recover --status failed --status queued");
    /* the repeatable ones stay repeatable; a flag twice is the flag */
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "recover --status failed --id 1 --id 2"), 0);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err,
                           "worker --once --queue a --queue b --handler k=true "
                           "--handler j=true"),
              0);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "jobs ls --json --json"), 0);
    free(err);
}

TEST(empty_database_flag_is_refused)
{
    PGconn *pg = tl_db();

    /* SKIPQ_DATABASE_URL names the test database: "" must not fall back
     * to it (or to the PG* variables) */
    expect_usage(pg, "--database needs a connection string, not \"\"",
                 "jobs ls --database ''");
    expect_usage(pg, "--database needs a connection string", "--database= jobs ls");
}

/* ---- output that was wrong ------------------------------------------------ */

TEST(stats_json_reports_priorities_as_text)
{
    PGconn *pg = tl_db();
    char *out = NULL;

    tl_exec(pg, "INSERT INTO skipq.workers (host, pid, queues, priorities, "
                "concurrency, version) VALUES ('h', 42, '{q}', 'high,normal', 4, "
                "'0.1.0')");
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "stats --json"), 0);
    json_object *o = json_tokener_parse(out), *ws, *w, *v;
    ASSERT_TRUE(o != NULL);
    ASSERT_TRUE(json_object_object_get_ex(o, "workers", &ws));
    w = json_object_array_get_idx(ws, 0);
    ASSERT_TRUE(json_object_object_get_ex(w, "priorities", &v));
    ASSERT_TRUE(json_object_is_type(v, json_type_string));
    ASSERT_STREQ(json_object_get_string(v), "high,normal");
    ASSERT_TRUE(json_object_object_get_ex(w, "concurrency", &v));
    ASSERT_EQ(json_object_get_int(v), 4);
    json_object_put(o);
    free(out);
}

TEST(recover_running_reports_failed_separately)
{
    PGconn *pg = tl_db();
    char *out = NULL;

    /* held by a worker that never registered: gone; one with attempts
     * left, one without */
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, attempts, max_attempts, locked_by) "
                "VALUES ('k', 'running', 1, 5, 424242), ('k', 'running', 2, 2, 424242)");
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "recover --status running --dry-run"), 0);
    ASSERT_STREQ(out, "would requeue 1 running job: k 1\n"
                      "would mark 1 running job failed (no attempts left): k 1\n");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "recover --status running"), 0);
    ASSERT_STREQ(out, "requeued 1 running job: k 1\n"
                      "marked 1 running job failed (no attempts left): k 1\n");
    free(out);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'failed'"), 1);
    /* through SQL: one row per kind and status it went to */
    tl_exec(pg, "UPDATE skipq.jobs SET status = 'running', locked_by = 424242, "
                "finished_at = NULL");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.recover('running') "
                         "WHERE to_status = 'failed' AND jobs = 1"),
              1);
}

/* The "claimed" event has no run time yet: -1 in the C event, so no
 * duration_ms in the JSON log (0 said it ran in no time). */
/* Every stderr line of a line read as JSON: true when each parses and
 * at least one has level `level` and a msg containing `needle`. */
static bool
json_lines_have(char *err, const char *level, const char *needle)
{
    bool found = false;
    for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n")) {
        /* valgrind's own notes ("--pid--", "==pid=="); its errors fail
         * the run by exit status */
        if (strncmp(line, "--", 2) == 0 || strncmp(line, "==", 2) == 0)
            continue;
        json_object *o = json_tokener_parse(line), *l, *m;
        ASSERT_TRUE(o != NULL);
        if (json_object_object_get_ex(o, "level", &l) &&
            json_object_object_get_ex(o, "msg", &m) &&
            strcmp(json_object_get_string(l), level) == 0 &&
            strstr(json_object_get_string(m), needle))
            found = true;
        json_object_put(o);
    }
    return found;
}

/* --log-format json makes the commands' errors JSON lines too, and
 * --log-level sets the least level printed (--quiet is warn). */
TEST(json_log_carries_errors_and_levels)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;

    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "--log-format json jobs show 999999"), 1);
    ASSERT_TRUE(json_lines_have(err, "error", "999999"));
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "--log-format json queue set q"), 2);
    ASSERT_TRUE(json_lines_have(err, "error", "needs a setting"));
    free(out);
    free(err);
    tl_exec(pg, "SELECT skipq.enqueue('k') FROM generate_series(1, 2)");
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "worker --once --log-level error --handler k=true"),
              0);
    /* nothing of ours: only valgrind's own notes ("--pid-- WARNING")
     * may be there */
    for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"))
        ASSERT_TRUE(strncmp(line, "--", 2) == 0 || strncmp(line, "==", 2) == 0);
    free(out);
    free(err);
    tl_exec(pg, "SELECT skipq.enqueue('k')");
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "worker --once --log-level debug --log-format json"
                           " --handler k=true"),
              0);
    ASSERT_TRUE(json_lines_have(err, "debug", "claimed"));
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "stats --log-level loud"), 2);
    ASSERT_CONTAINS(err, "unknown --log-level \"loud\"");
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "stats --quiet --log-level info"), 2);
    ASSERT_CONTAINS(err, "--quiet and --log-level");
    free(out);
    free(err);
}

TEST(json_log_claimed_has_no_duration)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;
    int claimed = 0, succeeded = 0;

    tl_exec(pg, "SELECT skipq.enqueue('k')");
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "worker --once --verbose --log-format json --handler k=true"),
              0);
    for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n")) {
        /* valgrind's own notes ("--pid-- WARNING: unhandled syscall");
         * its errors fail the run by exit status */
        if (strncmp(line, "--", 2) == 0)
            continue;
        json_object *o = json_tokener_parse(line), *ev, *d;
        ASSERT_TRUE(o != NULL);
        if (json_object_object_get_ex(o, "event", &ev)) {
            const char *name = json_object_get_string(ev);
            bool has = json_object_object_get_ex(o, "duration_ms", &d);
            if (strcmp(name, "claimed") == 0) {
                if (has)
                    HARNESS_FAIL("claimed with a duration: %s", line);
                claimed++;
            } else if (strcmp(name, "succeeded") == 0) {
                ASSERT_TRUE(has && json_object_get_double(d) >= 0);
                succeeded++;
            }
        }
        json_object_put(o);
    }
    ASSERT_EQ(claimed, 1);
    ASSERT_EQ(succeeded, 1);
    free(out);
    free(err);
}

TEST(jobs_ls_says_when_the_limit_cut_the_list)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;

    tl_exec(pg, "SELECT skipq.enqueue('k') FROM generate_series(1, 51)");
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs ls"), 0);
    ASSERT_CONTAINS(err, "showing the newest 50 jobs; more match (--limit N for "
                         "more, --limit 0 for all)");
    int lines = 0;
    for (char *p = out; *p; p++)
        lines += *p == '\n';
    ASSERT_EQ(lines, 51); /* header and 50 rows */
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs ls --json --limit 2"), 0);
    ASSERT_CONTAINS(err, "showing the newest 2 jobs; more match");
    free(out);
    free(err);
    /* all shown: nothing to say */
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs ls --limit 51"), 0);
    ASSERT_STREQ(err, "");
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs ls --limit 0"), 0);
    ASSERT_STREQ(err, "");
    free(out);
    free(err);
}

/* 53.009965 seconds, not 53.009965000000001 */
TEST(json_floats_print_short)
{
    PGconn *pg = tl_db();
    char *out = NULL;

    tl_exec(pg, "SELECT skipq.enqueue('k', queue => 'q')");
    tl_exec(pg, "UPDATE skipq.jobs SET run_at = now() - interval '53.009965 seconds', "
                "created_at = now() - interval '53.009965 seconds'");
    tl_exec(pg, "INSERT INTO skipq.workers (host, pid, queues, priorities, "
                "concurrency, version, heartbeat_at) VALUES ('h', 42, '{q}', "
                "'high', 4, '0.1.0', now() - interval '53.009965 seconds')");
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "stats --json"), 0);
    /* every number in the output: at most 6 decimals (microseconds) */
    for (const char *p = out; (p = strchr(p, '.')) != NULL; p++) {
        size_t digits = strspn(p + 1, "0123456789");
        if (p > out && p[-1] >= '0' && p[-1] <= '9' && digits > 6)
            HARNESS_FAIL("a long float in: %s", out);
    }
    /* 53 s and what the run took (seconds under valgrind) */
    ASSERT_CONTAINS(out, "\"heartbeat_age_s\":5");
    free(out);
}

TEST(human_timestamps_carry_the_zone)
{
    PGconn *pg = tl_db();
    char *out = NULL;
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('k', run_at => "
                            "'2030-01-01 00:00:00+00')");

    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs ls"), 0);
    free(out);
    ASSERT_EQ(tl_run(NULL, &out, NULL, "PGTZ=Asia/Kolkata %s jobs ls", tl_skipq()), 0);
    ASSERT_CONTAINS(out, "2030-01-01 05:30:00+05:30");
    free(out);
    ASSERT_EQ(tl_run(NULL, &out, NULL, "PGTZ=UTC %s jobs show %lld", tl_skipq(),
                     (long long)id),
              0);
    ASSERT_CONTAINS(out, "2030-01-01 00:00:00+00:00");
    free(out);
    /* the --watch header: this machine's time, with its offset */
    const char *log = tl_tmpfile(".watch");
    pid_t pid = tl_spawn(log, "TZ=Asia/Kolkata exec %s stats --watch 100ms", tl_skipq());
    ASSERT_TRUE(tl_wait_file_has(log, "+05:30  ", 10000));
    tl_kill(pid, SIGINT);
    ASSERT_EQ(tl_wait_pid(pid, 10000), 0);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
