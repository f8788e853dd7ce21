/*
 * test_cli.c - the skipq command line against a real PostgreSQL: migrate,
 * enqueue (single and JSON lines on stdin), jobs, stats, prune, recover.
 *
 * Every bad input is checked three ways: the message, the exit status,
 * and that the jobs table did not change.
 */
#include "testlib.h"
#include "lock_keys.h"

#include <json-c/json.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static int64_t
jobs_count(PGconn *pg)
{
    return tl_int(pg, "SELECT count(*) FROM skipq.jobs");
}

/* A fingerprint of the whole table: changes if any row does. */
static char *
jobs_digest(PGconn *pg)
{
    return tl_str(pg, "SELECT coalesce(md5(string_agg(j::text, ',' ORDER BY "
                      "j.id)), 'empty') FROM skipq.jobs j");
}

/* Write bytes (NULs and all) to a temp file; returns its path. */
static const char *
write_bytes(const char *suffix, const char *data, size_t len)
{
    const char *path = tl_tmpfile(suffix);
    FILE *f = fopen(path, "wb");
    ASSERT_TRUE(f != NULL);
    ASSERT_EQ(fwrite(data, 1, len, f), len);
    fclose(f);
    return path;
}

/*
 * Run `skipq ARGS`, expect exit status 2, the message to contain want,
 * and the table unchanged.
 */
static void
expect_bad(PGconn *pg, const char *want, const char *args)
{
    char *before = jobs_digest(pg), *after, *out = NULL, *err = NULL;
    int st = tl_skipq_run(NULL, &out, &err, "%s", args);

    if (st != 2 || !strstr(err, want))
        HARNESS_FAIL("skipq %s: exit %d, wanted 2 and \"%s\" in: %s", args, st, want, err);
    ASSERT_TRUE(strncmp(err, "skipq: ", 7) == 0);
    /* one line */
    ASSERT_TRUE(strchr(err, '\n') == err + strlen(err) - 1);
    after = jobs_digest(pg);
    ASSERT_STREQ(before, after);
    free(before);
    free(after);
    free(out);
    free(err);
}

/* Same for a usage error: it must also point at --help. */
static void
expect_usage(PGconn *pg, const char *want, const char *args)
{
    char *err = NULL;

    expect_bad(pg, want, args);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "%s", args), 2);
    ASSERT_CONTAINS(err, "try 'skipq --help'");
    free(err);
}

static int64_t
enqueue_id(const char *args)
{
    char *out = NULL, *err = NULL;
    int st = tl_skipq_run(NULL, &out, &err, "enqueue %s", args);
    if (st != 0)
        HARNESS_FAIL("enqueue %s: exit %d: %s", args, st, err);
    int64_t id = strtoll(out, NULL, 10);
    ASSERT_TRUE(id > 0);
    free(out);
    free(err);
    return id;
}

/* n failed jobs, alternating kinds a and b, last touched an hour ago */
static void
make_failed(PGconn *pg, int n)
{
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind, status, attempts, max_attempts, "
            "last_error, finished_at, updated_at) "
            "SELECT CASE WHEN g %% 2 = 0 THEN 'a' ELSE 'b' END, 'failed', 3, "
            "3, 'boom', now() - interval '1 hour', now() - interval '1 hour' "
            "FROM generate_series(1, %d) g",
            n);
}

/* ---- help, version, dispatch ---------------------------------------- */

TEST(help_and_version)
{
    char *out = NULL, *err = NULL;

    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "--help"), 0);
    ASSERT_CONTAINS(out, "usage: skipq");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "--version"), 0);
    ASSERT_CONTAINS(out, "skipq 0.");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "enqueue --help"), 0);
    ASSERT_CONTAINS(out, "usage: skipq enqueue");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "help recover"), 0);
    ASSERT_CONTAINS(out, "usage: skipq recover");
    free(out);
    ASSERT_EQ(tl_run(NULL, NULL, &err, "%s", tl_skipq()), 2);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "frobnicate"), 2);
    ASSERT_CONTAINS(err, "skipq: unknown command \"frobnicate\"; try 'skipq --help'");
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "jobs frob"), 2);
    ASSERT_CONTAINS(err, "unknown jobs command \"frob\"");
    free(err);
}

/* ---- migrate ------------------------------------------------------------ */

TEST(migrate_twice)
{
    PGconn *pg = tl_empty_db();
    char *out = NULL, *err = NULL;

    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "migrate"), 0);
    ASSERT_CONTAINS(out, "applied 0001_init");
    ASSERT_CONTAINS(out, "applied 0002_vacuum_at_full_speed");
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "migrate"), 0);
    ASSERT_STREQ(out, "schema is up to date\n");
    free(out);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.schema_migrations "
                         "WHERE version = 1"),
              1);
    /* 0002: vacuum of the jobs table is not throttled; marked compatible */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM pg_class WHERE oid = 'skipq.jobs'::regclass"
                         " AND 'autovacuum_vacuum_cost_delay=0' = ANY (reloptions)"),
              1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.schema_migrations"
                         " WHERE version = 2 AND compatible"),
              1);
    /* and the schema works */
    ASSERT_TRUE(enqueue_id("a '{}'") > 0);
}

/* A team's own migration tool applies what --print-sql prints: psql
 * gives the schema skipq migrate makes, which --check accepts and migrate
 * finds current; functions from another version fail --check. */
TEST(migrate_print_sql_applied_by_psql_is_current)
{
    PGconn *pg = tl_empty_db();
    const char *sql = tl_tmpfile(".sql");
    char *out = NULL, *err = NULL, *url = tl_shq(tl_url());

    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "migrate --print-sql --roles"), 0);
    ASSERT_CONTAINS(out, "-- migration 0001_init");
    ASSERT_CONTAINS(out, "CREATE OR REPLACE FUNCTION skipq.schema_digest()");
    ASSERT_CONTAINS(out, "-- roles (skipq migrate --roles)");
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "migrate --print-sql"), 0);
    tl_write_file(sql, out);
    free(out);
    /* nothing is applied before psql runs it: --check says what is missing */
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "migrate --check"), 1);
    ASSERT_CONTAINS(err, "run skipq migrate");
    free(err);
    ASSERT_EQ(tl_run(NULL, NULL, &err, "psql -X -q -v ON_ERROR_STOP=1 -d %s -f %s", url,
                     sql),
              0);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "migrate --check"), 0);
    ASSERT_CONTAINS(out, "schema is current");
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "migrate"), 0);
    ASSERT_STREQ(out, "schema is up to date\n");
    free(out);
    free(err);
    /* the same script again stops at its first migration's guard */
    ASSERT_EQ(tl_run(NULL, NULL, &err, "psql -X -q -v ON_ERROR_STOP=1 -d %s -f %s", url,
                     sql),
              3);
    ASSERT_CONTAINS(err, "migration 0001_init is applied already");
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.schema_migrations"),
              tl_int(pg, "SELECT max(version) FROM skipq.schema_migrations"));
    ASSERT_TRUE(enqueue_id("a '{}'") > 0);

    /* --from: only the functions when every migration is in */
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "migrate --print-sql --from 9999"), 0);
    ASSERT_TRUE(strstr(out, "-- migration ") == NULL);
    ASSERT_CONTAINS(out, "-- functions and views");
    free(out);

    /* functions another version created are not current */
    tl_exec(pg, "CREATE OR REPLACE FUNCTION skipq.schema_digest() RETURNS text"
                " LANGUAGE sql AS $$SELECT 'other'::text$$");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "migrate --check"), 1);
    ASSERT_CONTAINS(err, "the schema's functions are not this skipq's");
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "migrate"), 0);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "migrate --check"), 0);

    expect_usage(pg, "--from goes with --print-sql", "migrate --from 3");
    expect_usage(pg, "each go alone", "migrate --check --status");
    free(url);
}

TEST(migrate_concurrent)
{
    PGconn *pg = tl_empty_db();
    const char *log1 = tl_tmpfile(".log1"), *log2 = tl_tmpfile(".log2");
    pid_t a = tl_spawn(log1, "%s migrate", tl_skipq());
    pid_t b = tl_spawn(log2, "%s migrate", tl_skipq());

    ASSERT_EQ(tl_wait_pid(a, 60000), 0);
    ASSERT_EQ(tl_wait_pid(b, 60000), 0);
    char *o1 = NULL, *o2 = NULL;
    ASSERT_EQ(tl_run(NULL, &o1, NULL, "cat %s", log1), 0);
    ASSERT_EQ(tl_run(NULL, &o2, NULL, "cat %s", log2), 0);
    /* exactly one of them applied it; neither failed */
    ASSERT_EQ((strstr(o1, "applied 0001_init") != NULL) +
                  (strstr(o2, "applied 0001_init") != NULL),
              1);
    ASSERT_TRUE(strstr(o1, "skipq:") == NULL && strstr(o2, "skipq:") == NULL);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.schema_migrations"),
              tl_int(pg, "SELECT count(DISTINCT version) FROM "
                         "skipq.schema_migrations"));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.schema_migrations "
                         "WHERE version = 1"),
              1);
    free(o1);
    free(o2);
}

/* A worker's VACUUM does not give way to DDL as autovacuum does: migrate
 * waits for the vacuum's advisory lock before its DDL, outside the
 * table's lock queue, so claims and inserts are not stuck behind it. */
TEST(migrate_waits_for_a_workers_vacuum_outside_the_table)
{
    PGconn *pg = tl_db(), *vac = tl_connect();
    /* as vacuum_tick, on a connection named as a worker's maintenance one */
    tl_exec(vac, "SET application_name = 'skipq maintenance'");
    tl_exec(vac,
            "SELECT pg_advisory_lock(" SKIPQ__LOCK_CLASS_S ", " SKIPQ__LOCK_VACUUM_S ")");
    const char *log = tl_tmpfile(".log");
    pid_t m = tl_spawn(log, "exec %s migrate", tl_skipq());
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM pg_locks WHERE"
                            " locktype = 'advisory' AND classid = " SKIPQ__LOCK_CLASS_S
                            " AND objid = 3 AND NOT granted"
                            " AND database = (SELECT oid FROM pg_database"
                            "   WHERE datname = current_database())"));
    /* meanwhile the table takes writes, and nothing of it holds a lock on it */
    ASSERT_TRUE(enqueue_id("waiting '{}'") > 0);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM pg_locks WHERE relation = 'skipq.jobs'::regclass"
                     " AND database = (SELECT oid FROM pg_database"
                     "                 WHERE datname = current_database())"
                     " AND pid <> pg_backend_pid()"),
              0);
    tl_exec(vac,
            "SELECT pg_advisory_unlock(" SKIPQ__LOCK_CLASS_S ", " SKIPQ__LOCK_VACUUM_S ")");
    ASSERT_EQ(tl_wait_pid(m, 30000), 0);
    ASSERT_TRUE(tl_wait_file_has(log, "waiting for a worker's VACUUM of skipq.jobs to end",
                                 0));

    /* held by anyone else (another migrate run committing): it waits
     * just the same, without the line */
    tl_exec(vac, "SET application_name = 'psql'");
    tl_exec(vac,
            "SELECT pg_advisory_lock(" SKIPQ__LOCK_CLASS_S ", " SKIPQ__LOCK_VACUUM_S ")");
    const char *log2 = tl_tmpfile(".log");
    m = tl_spawn(log2, "exec %s migrate", tl_skipq());
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM pg_locks WHERE"
                            " locktype = 'advisory' AND classid = " SKIPQ__LOCK_CLASS_S
                            " AND objid = 3 AND NOT granted"
                            " AND database = (SELECT oid FROM pg_database"
                            "   WHERE datname = current_database())"));
    tl_exec(vac,
            "SELECT pg_advisory_unlock(" SKIPQ__LOCK_CLASS_S ", " SKIPQ__LOCK_VACUUM_S ")");
    ASSERT_EQ(tl_wait_pid(m, 30000), 0);
    ASSERT_TRUE(!tl_wait_file_has(log2, "VACUUM", 0));
    PQfinish(vac);
}

TEST(migrate_status)
{
    PGconn *pg = tl_empty_db();
    char *out = NULL;

    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "migrate --status"), 0);
    ASSERT_CONTAINS(out, "0001_init");
    ASSERT_CONTAINS(out, "pending");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "migrate"), 0);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "migrate --status"), 0);
    ASSERT_CONTAINS(out, "applied");
    ASSERT_TRUE(strstr(out, "pending") == NULL);
    free(out);
    tl_exec(pg, "INSERT INTO skipq.schema_migrations (version, name) "
                "VALUES (9999, '9999_from_the_future')");
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "migrate --status"), 0);
    ASSERT_CONTAINS(out, "9999_from_the_future");
    ASSERT_CONTAINS(out, "unknown");
    free(out);
    /* other commands refuse a schema newer than they are */
    char *err = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "jobs ls"), 1);
    ASSERT_CONTAINS(err, "older than the schema");
    free(err);
}

TEST(no_schema_says_migrate)
{
    tl_empty_db();
    char *err = NULL;

    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "enqueue a '{}'"), 1);
    ASSERT_CONTAINS(err, "run skipq migrate");
    free(err);
}

/* ---- enqueue -------------------------------------------------------------- */

TEST(enqueue_single_options)
{
    PGconn *pg = tl_db();
    int64_t id;

    id = enqueue_id("send_email '{\"to\":\"a@example.com\"}'");
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %lld "
                     "AND kind = 'send_email' AND queue = 'default' "
                     "AND priority = 0 AND status = 'queued' "
                     "AND payload = '{\"to\":\"a@example.com\"}' "
                     "AND max_attempts IS NULL AND run_at <= now()",
                     (long long)id),
              1);

    id = enqueue_id("k '{}' --queue mail --priority low --max-attempts 7 "
                    "--timeout 30s --backoff linear --backoff-base 2s "
                    "--backoff-max 1m --in 10m");
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %lld "
                     "AND queue = 'mail' AND priority = -10 "
                     "AND max_attempts = 7 AND timeout = '30s' "
                     "AND backoff_strategy = 'linear' "
                     "AND backoff_base = '2s' AND backoff_max = '1m' "
                     "AND run_at BETWEEN now() + interval '9 minutes' "
                     "AND now() + interval '11 minutes'",
                     (long long)id),
              1);

    /* priority names and numbers: high and 10 are the same */
    int64_t h = enqueue_id("k '{}' --priority high");
    int64_t ten = enqueue_id("k '{}' --priority 10");
    int64_t neg = enqueue_id("k '{}' --priority -5");
    int64_t nrm = enqueue_id("k '{}' --priority normal");
    ASSERT_EQ(tl_int(pg, "SELECT priority FROM skipq.jobs WHERE id = %lld", (long long)h),
              10);
    ASSERT_EQ(tl_int(pg, "SELECT priority FROM skipq.jobs WHERE id = %lld", (long long)ten),
              10);
    ASSERT_EQ(tl_int(pg, "SELECT priority FROM skipq.jobs WHERE id = %lld", (long long)neg),
              -5);
    ASSERT_EQ(tl_int(pg, "SELECT priority FROM skipq.jobs WHERE id = %lld", (long long)nrm),
              0);

    id = enqueue_id("k '{}' --run-at '2031-02-03T04:05:06.5Z'");
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %lld "
                     "AND run_at = '2031-02-03 04:05:06.5+00'",
                     (long long)id),
              1);
    id = enqueue_id("k '{}' --run-at '2031-02-03 04:05:06+02'");
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %lld "
                     "AND run_at = '2031-02-03 02:05:06+00'",
                     (long long)id),
              1);
}

TEST(enqueue_names_verbatim)
{
    PGconn *pg = tl_db();
    const char *queue = "q'; DROP TABLE skipq.jobs; --";
    const char *kind = "send \"mail\"; now";
    char *q = tl_shq(queue), *k = tl_shq(kind), *args = NULL;

    ASSERT_TRUE(asprintf(&args, "%s '{\"x\":1}' --queue %s", k, q) > 0);
    int64_t id = enqueue_id(args);
    char *got_q = tl_str(pg, "SELECT queue FROM skipq.jobs WHERE id = %lld", (long long)id);
    char *got_k = tl_str(pg, "SELECT kind FROM skipq.jobs WHERE id = %lld", (long long)id);
    ASSERT_STREQ(got_q, queue);
    ASSERT_STREQ(got_k, kind);
    free(args);

    /* the same through stdin */
    ASSERT_TRUE(asprintf(&args, "enqueue %s --queue %s", k, q) > 0);
    ASSERT_EQ(tl_skipq_run("{\"y\":2}\n", NULL, NULL, "%s", args), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE queue = "
                         "'q''; DROP TABLE skipq.jobs; --' AND kind = "
                         "'send \"mail\"; now'"),
              2);
    free(args);
    free(got_q);
    free(got_k);
    free(q);
    free(k);
}

TEST(enqueue_bad_input)
{
    PGconn *pg = tl_db();
    char *longkind = malloc(10001), *args = NULL;

    enqueue_id("existing '{\"keep\":true}'");
    expect_usage(pg, "unrecognized priority \"urgent\"",
                 "enqueue a '{}' --priority urgent");
    expect_usage(pg, "out of range", "enqueue a '{}' --priority 40000");
    expect_usage(pg, "--max-attempts must be 1 or more, not \"-1\"",
                 "enqueue a '{}' --max-attempts -1");
    expect_usage(pg, "--max-attempts must be 1 or more, not \"0\"",
                 "enqueue a '{}' --max-attempts 0");
    expect_usage(pg, "invalid duration \"5x\"", "enqueue a '{}' --in 5x");
    expect_usage(pg, "invalid duration \"-1s\"", "enqueue a '{}' --timeout -1s");
    expect_usage(pg, "unknown strategy \"random\"", "enqueue a '{}' --backoff random");
    expect_usage(pg, "not both", "enqueue a '{}' --in 1m --run-at 2030-01-01");
    expect_usage(pg, "needs a job kind", "enqueue");
    expect_usage(pg, "unknown option \"--frobnicate\"", "enqueue a '{}' --frobnicate");
    expect_usage(pg, "option \"--queue\" needs a value", "enqueue a --queue");
    expect_bad(pg, "invalid --run-at \"yesterday-ish\"",
               "enqueue a '{}' --run-at yesterday-ish");
    expect_bad(pg, "invalid JSON at offset 7", "enqueue a '{\"a\": 1'");
    expect_bad(pg, "payload must be a JSON object, not array", "enqueue a '[1,2]'");
    expect_bad(pg, "queue must not be empty", "enqueue a '{}' --queue ''");
    memset(longkind, 'k', 10000);
    longkind[10000] = '\0';
    ASSERT_TRUE(asprintf(&args, "enqueue %s '{}'", longkind) > 0);
    expect_bad(pg, "kind is 10000 bytes long; the limit is 200 bytes", args);
    free(args);
    ASSERT_TRUE(asprintf(&args, "enqueue %s", longkind) > 0);
    char *err = NULL;
    ASSERT_EQ(tl_skipq_run("{}\n", NULL, &err, "%s", args), 2);
    ASSERT_CONTAINS(err, "kind is 10000 bytes long");
    free(err);
    free(args);
    free(longkind);
    ASSERT_EQ(jobs_count(pg), 1);
}

TEST(enqueue_max_payload)
{
    PGconn *pg = tl_db();
    const char *cfg = tl_tmpfile(".yaml");
    char *err = NULL;

    tl_write_file(cfg, "limits:\n  max_payload: 20\n");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err,
                           "enqueue --config %s a "
                           "'{\"text\":\"far more than twenty bytes\"}'",
                           cfg),
              2);
    ASSERT_CONTAINS(err, "more than the limit of 20");
    free(err);
    ASSERT_EQ(tl_skipq_run("{\"a\":1}\n{\"text\":\"far more than twenty\"}\n", NULL, &err,
                           "enqueue --config %s a", cfg),
              2);
    ASSERT_CONTAINS(err, "line 2: payload is");
    free(err);
    ASSERT_EQ(jobs_count(pg), 0);
    /* SKIPQ_CONFIG works too */
    ASSERT_EQ(tl_run(NULL, NULL, &err,
                     "SKIPQ_CONFIG=%s %s enqueue a "
                     "'{\"text\":\"far more than twenty bytes\"}'",
                     cfg, tl_skipq()),
              2);
    ASSERT_CONTAINS(err, "more than the limit of 20");
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "enqueue --config %s a '{}'", cfg), 0);
    ASSERT_EQ(jobs_count(pg), 1);
}

TEST(config_errors)
{
    PGconn *pg = tl_db();
    const char *cfg = tl_tmpfile(".yaml");
    char *err = NULL;

    expect_bad(pg, "/nonexistent/skipq.yaml",
               "enqueue a '{}' --config /nonexistent/skipq.yaml");
    tl_write_file(cfg, "worker:\n  concurrency: lots\n");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "jobs ls --config %s", cfg), 2);
    ASSERT_CONTAINS(err, "skipq: ");
    ASSERT_CONTAINS(err, "line 2");
    free(err);
    ASSERT_EQ(jobs_count(pg), 0);
}

TEST(enqueue_stdin_10000_slow)
{
    PGconn *pg = tl_db();
    size_t cap = 10000 * 40, len = 0;
    char *in = malloc(cap), *out = NULL, *err = NULL;

    for (int i = 1; i <= 10000; i++)
        len += (size_t)snprintf(in + len, cap - len, "{\"n\": %d}\n", i);
    int64_t t0 = tl_now_ms();
    int st = tl_skipq_run(in, &out, &err,
                          "enqueue bulk_kind --queue bulkq --priority high");
    int64_t ms = tl_now_ms() - t0;
    if (st != 0)
        HARNESS_FAIL("exit %d: %s", st, err);
    ASSERT_STREQ(out, "enqueued 10000 jobs\n");
    fprintf(stderr, "enqueue of 10,000 JSON lines from stdin: %lld ms\n", (long long)ms);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = "
                         "'bulk_kind' AND queue = 'bulkq' AND priority = 10 "
                         "AND status = 'queued'"),
              10000);
    ASSERT_EQ(tl_int(pg, "SELECT sum((payload->>'n')::int) FROM skipq.jobs"), 50005000);
    ASSERT_EQ(tl_int(pg, "SELECT count(DISTINCT payload->>'n') FROM skipq.jobs"), 10000);
    free(in);
    free(out);
    free(err);
}

TEST(enqueue_stdin_small)
{
    PGconn *pg = tl_db();
    char *out = NULL;

    /* blank lines skipped, CRLF accepted, "-" means stdin */
    ASSERT_EQ(tl_skipq_run("{\"a\":1}\n\n   \n{\"a\":2}\r\n{\"a\":3}", &out, NULL,
                           "enqueue k - --queue s"),
              0);
    ASSERT_STREQ(out, "enqueued 3 jobs\n");
    free(out);
    ASSERT_EQ(tl_int(pg, "SELECT sum((payload->>'a')::int) FROM skipq.jobs "
                         "WHERE queue = 's' AND kind = 'k'"),
              6);
    ASSERT_EQ(tl_skipq_run("", &out, NULL, "enqueue k"), 0);
    ASSERT_STREQ(out, "enqueued 0 jobs\n");
    free(out);
}

TEST(enqueue_stdin_bad_line)
{
    PGconn *pg = tl_db();
    static const struct {
        const char *line;
        size_t len;
        const char *want;
    } bad[] = {
#define LINE(s) s, sizeof(s) - 1
        {LINE("{\"a\": 1"), "line 500: invalid JSON at offset 7"},
        {LINE("{\"a\": \"\xff\"}"), "line 500: invalid JSON at offset 7: invalid UTF-8"},
        {LINE("{\"a\": \0}"), "line 500: invalid JSON at offset 6: NUL byte"},
        {LINE("[1, 2]"), "line 500: payload must be a JSON object"},
        /* a bare number: json-c waits for more digits at the end */
        {LINE("42"), "line 500: "},
        {LINE("{\"a\":1} {}"), "line 500: invalid JSON"},
#undef LINE
    };

    enqueue_id("existing '{}'");
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        size_t cap = 1000 * 16 + 64, len = 0;
        char *in = malloc(cap);
        for (int i = 1; i <= 1000; i++) {
            if (i == 500) {
                memcpy(in + len, bad[b].line, bad[b].len);
                len += bad[b].len;
                in[len++] = '\n';
            } else {
                len += (size_t)snprintf(in + len, cap - len, "{\"i\": %d}\n", i);
            }
        }
        const char *path = write_bytes(".jsonl", in, len);
        char *err = NULL;
        int st = tl_skipq_run(NULL, NULL, &err, "enqueue k < %s", path);
        if (st != 2 || !strstr(err, bad[b].want))
            HARNESS_FAIL("case %zu: exit %d, wanted 2 and \"%s\": %s", b, st, bad[b].want,
                         err);
        ASSERT_EQ(jobs_count(pg), 1);
        free(err);
        free(in);
    }
}

TEST(unreachable_database)
{
    PGconn *pg = tl_db();
    char *err = NULL;

    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err,
                           "enqueue a '{}' --database "
                           "postgresql://127.0.0.1:1/x"),
              1);
    ASSERT_CONTAINS(err, "skipq: could not connect to postgresql://127.0.0.1:1/x");
    ASSERT_TRUE(strchr(err, '\n') == err + strlen(err) - 1);
    free(err);
    /* the password never shows */
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err,
                           "--database postgresql://u:sekrit@127.0.0.1:1/x "
                           "jobs ls"),
              1);
    ASSERT_TRUE(strstr(err, "sekrit") == NULL);
    ASSERT_CONTAINS(err, "****");
    free(err);
    ASSERT_EQ(jobs_count(pg), 0);
}

/* ---- jobs ---------------------------------------------------------------- */

TEST(jobs_ls_show)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;
    int64_t a = enqueue_id("alpha '{\"n\":1,\"deep\":{\"x\":[1,2]}}' --queue q1");
    int64_t b = enqueue_id("beta '{\"n\":2}' --queue q2 --priority high");

    tl_exec(pg,
            "UPDATE skipq.jobs SET status = 'failed', attempts = 3, "
            "last_error = 'it broke', errors = '[{\"attempt\": 1, \"at\": "
            "\"2024-01-01T00:00:00Z\", \"error\": \"it broke\"}]' "
            "WHERE id = %lld",
            (long long)b);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs ls"), 0);
    ASSERT_CONTAINS(out, "id");
    ASSERT_CONTAINS(out, "alpha");
    ASSERT_CONTAINS(out, "beta");
    ASSERT_CONTAINS(out, "it broke");
    free(out);
    free(err);

    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs ls --status failed --json"), 0);
    json_object *o = json_tokener_parse(out);
    ASSERT_TRUE(o != NULL);
    json_object *v;
    ASSERT_TRUE(json_object_object_get_ex(o, "id", &v));
    ASSERT_EQ(json_object_get_int64(v), b);
    ASSERT_TRUE(json_object_object_get_ex(o, "priority", &v));
    ASSERT_EQ(json_object_get_int(v), 10);
    ASSERT_TRUE(json_object_object_get_ex(o, "status", &v));
    ASSERT_STREQ(json_object_get_string(v), "failed");
    json_object_put(o);
    ASSERT_EQ(strchr(out, '\n') - out + 1, (long long)strlen(out)); /* 1 line */
    free(out);

    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL,
                           "jobs ls --queue q1 --kind alpha --since 1h --limit 1"),
              0);
    ASSERT_CONTAINS(out, "alpha");
    ASSERT_TRUE(strstr(out, "beta") == NULL);
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs ls --since 2000-01-01"), 0);
    ASSERT_CONTAINS(out, "beta");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs ls --kind nothing"), 0);
    ASSERT_STREQ(out, "no jobs\n");
    free(out);

    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs show %lld", (long long)a), 0);
    ASSERT_CONTAINS(out, "alpha");
    ASSERT_CONTAINS(out, "\"deep\": {");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs show %lld", (long long)b), 0);
    ASSERT_CONTAINS(out, "errors (1)");
    ASSERT_CONTAINS(out, "attempt 1: it broke");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs show --json %lld", (long long)a), 0);
    o = json_tokener_parse(out);
    ASSERT_TRUE(o != NULL);
    ASSERT_TRUE(json_object_object_get_ex(o, "payload", &v));
    ASSERT_TRUE(json_object_is_type(v, json_type_object));
    json_object_put(o);
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "jobs show 999999"), 1);
    ASSERT_CONTAINS(err, "job 999999 does not exist");
    free(err);
}

TEST(jobs_retry_cancel)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;
    int64_t q = enqueue_id("k '{}'"), f = enqueue_id("k '{}'"), r = enqueue_id("k '{}'");

    tl_exec(pg,
            "UPDATE skipq.jobs SET status = 'failed', attempts = 5 "
            "WHERE id = %lld",
            (long long)f);
    tl_exec(pg,
            "UPDATE skipq.jobs SET status = 'running', attempts = 1, "
            "locked_by = 12345 WHERE id = %lld",
            (long long)r);

    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs cancel %lld", (long long)q), 0);
    ASSERT_CONTAINS(out, "cancelled");
    free(out);
    free(err);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %lld "
                     "AND status = 'cancelled'",
                     (long long)q),
              1);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs cancel %lld", (long long)q), 0);
    ASSERT_CONTAINS(out, "already cancelled");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs cancel %lld", (long long)r), 0);
    ASSERT_CONTAINS(out, "cancel requested (running)");
    free(out);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %lld "
                     "AND status = 'running' AND cancel_requested_at IS "
                     "NOT NULL",
                     (long long)r),
              1);

    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs retry %lld %lld %lld", (long long)q,
                           (long long)f, (long long)r),
              0);
    ASSERT_CONTAINS(out, "cancelled -> queued");
    ASSERT_CONTAINS(out, "failed -> queued");
    ASSERT_CONTAINS(out, "running; not retried");
    free(out);
    free(err);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE status = "
                     "'queued' AND attempts = 0 AND id IN (%lld, %lld)",
                     (long long)q, (long long)f),
              2);

    /* a missing id: the others still happen, exit 1 */
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs cancel %lld 999999", (long long)q), 1);
    ASSERT_CONTAINS(err, "job 999999 does not exist");
    ASSERT_CONTAINS(out, "cancelled");
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "jobs retry 999999"), 1);
    ASSERT_CONTAINS(err, "job 999999 does not exist");
    free(err);
    expect_usage(pg, "invalid job id \"abc\"", "jobs retry abc");
    expect_usage(pg, "invalid job id \"0\"", "jobs cancel 0");
    expect_usage(pg, "needs at least one job id", "jobs cancel");
}

/* ---- stats ----------------------------------------------------------------- */

TEST(stats)
{
    PGconn *pg = tl_db();
    char *out = NULL;

    enqueue_id("k '{}' --queue statsq --priority high");
    enqueue_id("k '{}' --queue statsq --priority high");
    tl_exec(pg, "INSERT INTO skipq.workers (host, pid, queues, priorities, "
                "concurrency, version) VALUES ('host1', 42, '{statsq}', "
                "'high', 4, '0.1.0')");
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "stats"), 0);
    ASSERT_CONTAINS(out, "statsq");
    ASSERT_CONTAINS(out, "runnable");
    ASSERT_CONTAINS(out, "host1");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "stats --json"), 0);
    json_object *o = json_tokener_parse(out), *qs, *q0, *v;
    ASSERT_TRUE(o != NULL);
    ASSERT_TRUE(json_object_object_get_ex(o, "queues", &qs));
    q0 = json_object_array_get_idx(qs, 0);
    ASSERT_TRUE(json_object_object_get_ex(q0, "runnable", &v));
    ASSERT_EQ(json_object_get_int(v), 2);
    ASSERT_TRUE(json_object_object_get_ex(o, "workers", &qs));
    ASSERT_EQ(json_object_array_length(qs), 1);
    json_object_put(o);
    free(out);
    /* --watch stops cleanly on SIGINT, once it is watching: its own
     * backend, by name (the backend of the `stats --json` above may still
     * be in pg_stat_activity as it exits, and a SIGINT before the handler
     * is installed kills the process) */
    const char *log = tl_tmpfile(".watch");
    pid_t pid = tl_spawn(log, "PGAPPNAME=stats-watch-test exec %s stats --watch 100ms",
                         tl_skipq());
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM pg_stat_activity WHERE "
                            "datname = current_database() AND application_name = "
                            "'stats-watch-test' AND query LIKE '%%active_workers%%'"));
    tl_kill(pid, SIGINT);
    ASSERT_EQ(tl_wait_pid(pid, 10000), 0);
    expect_usage(pg, "invalid duration \"5x\"", "stats --watch 5x");
}

/* ---- prune ---------------------------------------------------------------- */

TEST(prune_batches)
{
    PGconn *pg = tl_db();
    char *out = NULL;

    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at) "
                "SELECT 'old', 'succeeded', now() - interval '8 days' "
                "FROM generate_series(1, 30)");
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at) "
                "SELECT 'oldc', 'cancelled', now() - interval '8 days' "
                "FROM generate_series(1, 4)");
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at) "
                "SELECT 'new', 'succeeded', now() - interval '1 day' "
                "FROM generate_series(1, 5)");
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at) "
                "SELECT 'oldf', 'failed', now() - interval '8 days' "
                "FROM generate_series(1, 6)");
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at) "
                "SELECT 'oldq', s::skipq.job_status, now() - interval '8 days' "
                "FROM unnest('{queued,running}'::text[]) s");
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "prune --older-than 7d --batch 7"), 0);
    ASSERT_STREQ(out, "deleted 34 jobs in 5 batches\n");
    free(out);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind IN "
                         "('old', 'oldc')"),
              0);
    ASSERT_EQ(jobs_count(pg), 5 + 6 + 2);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "prune --older-than 7d --status failed"), 0);
    ASSERT_STREQ(out, "deleted 6 jobs in 1 batch\n");
    free(out);
    ASSERT_EQ(jobs_count(pg), 5 + 2);
    expect_usage(pg, "prune needs --older-than", "prune");
    expect_usage(pg, "invalid duration \"5x\"", "prune --older-than 5x");
    expect_usage(pg, "--batch must be 1 or more", "prune --older-than 0 --batch -1");
    expect_usage(pg, "unrecognized status \"bogus\"",
                 "prune --older-than 0 --status bogus");
    expect_usage(pg, "status \"queued\" is not allowed",
                 "prune --older-than 0 --status queued");
}

/* The rows another transaction holds are skipped, never waited for, and
 * only the rows locked are deleted (by ctid: the test fails if a locked
 * row's neighbour went instead) */
TEST(prune_skips_rows_another_transaction_holds)
{
    PGconn *pg = tl_db(), *other = tl_connect();

    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, updated_at) "
                "SELECT 'old' || g, 'succeeded', now() - interval '8 days' "
                "FROM generate_series(1, 20) g");
    tl_exec(other, "BEGIN");
    tl_exec(other, "SELECT 1 FROM skipq.jobs WHERE kind IN ('old3', 'old17') FOR UPDATE");
    tl_exec(pg, "SET statement_timeout = '5s'");
    ASSERT_EQ(tl_int(pg, "SELECT skipq.prune('7 days', '{succeeded}', 5)"), 5);
    ASSERT_EQ(tl_int(pg, "SELECT skipq.prune('7 days', '{succeeded}', 100)"), 13);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind IN ('old3', 'old17')"),
              2);
    ASSERT_EQ(jobs_count(pg), 2);
    tl_exec(other, "UPDATE skipq.jobs SET status = 'queued' WHERE kind = 'old3'");
    tl_exec(other, "COMMIT");
    ASSERT_EQ(tl_int(pg, "SELECT skipq.prune('7 days', '{succeeded}', 100)"), 1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'old3'"), 1);
    tl_exec(pg, "RESET statement_timeout");
    PQfinish(other);
}

/* ---- recover -------------------------------------------------------------- */

TEST(recover_kind_limit)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;

    make_failed(pg, 1000);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "recover --status failed --kind a --limit 300 "
                           "--dry-run"),
              0);
    ASSERT_STREQ(out, "would requeue 300 failed jobs: a 300\n");
    free(out);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = "
                         "'failed'"),
              1000);

    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "recover --status failed --kind a --limit 300 --yes"),
              0);
    ASSERT_STREQ(out, "requeued 300 failed jobs: a 300\n");
    free(out);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = "
                         "'queued' AND kind = 'a' AND attempts = 0 AND "
                         "run_at <= now()"),
              300);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = "
                         "'failed' AND kind = 'a'"),
              200);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = "
                         "'failed' AND kind = 'b'"),
              500);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE errors @> "
                         "'[{\"recovered\": true}]'"),
              300);

    /* --extra-attempts keeps attempts and raises the limit */
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL,
                           "recover --status failed --kind b --limit 10 "
                           "--extra-attempts 2"),
              0);
    ASSERT_STREQ(out, "requeued 10 failed jobs: b 10\n");
    free(out);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'b' "
                         "AND status = 'queued' AND attempts = 3 AND "
                         "max_attempts = 5"),
              10);
    /* --older-than keeps fresh rows */
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL,
                           "recover --status failed --older-than 2h --yes"),
              0);
    ASSERT_STREQ(out, "requeued 0 failed jobs\n");
    free(out);
    /* --id */
    int64_t id = tl_int(pg, "SELECT min(id) FROM skipq.jobs WHERE status = "
                            "'failed'");
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL,
                           "recover --status failed --id %lld --id 999999", (long long)id),
              0);
    ASSERT_CONTAINS(out, "requeued 1 failed job:");
    free(out);
}

TEST(recover_dry_run_matches)
{
    PGconn *pg = tl_db();
    char *dry = NULL, *real = NULL;

    make_failed(pg, 250);
    tl_exec(pg, "UPDATE skipq.jobs SET queue = 'other' WHERE id %% 5 = 0");
    char *before = jobs_digest(pg);
    ASSERT_EQ(tl_skipq_run(NULL, &dry, NULL,
                           "recover --status failed --queue default --dry-run"),
              0);
    char *after = jobs_digest(pg);
    ASSERT_STREQ(before, after);
    ASSERT_EQ(tl_skipq_run(NULL, &real, NULL,
                           "recover --status failed --queue default --yes"),
              0);
    ASSERT_TRUE(strncmp(dry, "would requeue ", 14) == 0);
    ASSERT_TRUE(strncmp(real, "requeued ", 9) == 0);
    ASSERT_STREQ(dry + 14, real + 9); /* the same counts per kind */
    ASSERT_CONTAINS(real, "requeued 200 failed jobs: a ");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = "
                         "'failed'"),
              50);
    free(before);
    free(after);
    free(dry);
    free(real);
}

TEST(recover_concurrent)
{
    PGconn *pg = tl_db();
    const char *log1 = tl_tmpfile(".r1"), *log2 = tl_tmpfile(".r2");
    char *o1 = NULL, *o2 = NULL;
    long long n1 = 0, n2 = 0;

    make_failed(pg, 1000);
    pid_t a = tl_spawn(log1, "%s recover --status failed --yes", tl_skipq());
    pid_t b = tl_spawn(log2, "%s recover --status failed --yes", tl_skipq());
    ASSERT_EQ(tl_wait_pid(a, 60000), 0);
    ASSERT_EQ(tl_wait_pid(b, 60000), 0);
    ASSERT_EQ(tl_run(NULL, &o1, NULL, "cat %s", log1), 0);
    ASSERT_EQ(tl_run(NULL, &o2, NULL, "cat %s", log2), 0);
    ASSERT_EQ(sscanf(o1, "requeued %lld", &n1), 1);
    ASSERT_EQ(sscanf(o2, "requeued %lld", &n2), 1);
    ASSERT_EQ(n1 + n2, 1000);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = "
                         "'queued'"),
              1000);
    /* one recovery note per row: nothing was re-queued twice */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs j WHERE (SELECT "
                         "count(*) FROM jsonb_array_elements(j.errors) e "
                         "WHERE e ? 'recovered') = 1"),
              1000);
    free(o1);
    free(o2);
}

TEST(recover_needs_yes)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;

    make_failed(pg, 200);
    char *before = jobs_digest(pg);
    /* stdin is a pipe here, not a terminal: refuse */
    ASSERT_EQ(tl_skipq_run("y\n", &out, &err, "recover --status failed"), 1);
    ASSERT_CONTAINS(err, "skipq: recover would requeue 200 failed jobs");
    ASSERT_CONTAINS(err, "--yes");
    char *after = jobs_digest(pg);
    ASSERT_STREQ(before, after);
    free(out);
    free(err);
    free(before);
    free(after);
    /* under the threshold no confirmation is needed */
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "recover --status failed --limit 100"), 0);
    ASSERT_STREQ(out, "requeued 100 failed jobs: a 50, b 50\n");
    free(out);
}

TEST(recover_running_and_queued)
{
    PGconn *pg = tl_db();
    char *out = NULL;
    int64_t r = enqueue_id("k '{}'"), q = enqueue_id("k '{}'");

    /* held by a worker that never registered: gone */
    tl_exec(pg,
            "UPDATE skipq.jobs SET status = 'running', attempts = 1, "
            "locked_by = 424242 WHERE id = %lld",
            (long long)r);
    tl_exec(pg,
            "UPDATE skipq.jobs SET run_at = now() + interval '2 hours', "
            "updated_at = now() - interval '1 hour' WHERE id = %lld",
            (long long)q);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "recover --status running"), 0);
    ASSERT_STREQ(out, "requeued 1 running job: k 1\n");
    free(out);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %lld "
                     "AND status = 'queued' AND locked_by IS NULL",
                     (long long)r),
              1);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "recover --status queued"), 0);
    ASSERT_STREQ(out, "requeued 1 queued job: k 1\n");
    free(out);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %lld "
                     "AND run_at <= now()",
                     (long long)q),
              1);
}

TEST(recover_bad_input)
{
    PGconn *pg = tl_db();

    make_failed(pg, 20);
    expect_usage(pg, "recover needs --status", "recover");
    expect_usage(pg, "unrecognized status \"finished\"", "recover --status finished");
    expect_usage(pg, "--limit must be 1 or more, not \"-1\"",
                 "recover --status failed --limit -1");
    /* 0 would change nothing; recover.limit in the config is 1 or more too */
    expect_usage(pg, "--limit must be 1 or more, not \"0\"",
                 "recover --status failed --limit 0");
    expect_usage(pg, "invalid duration \"5x\"", "recover --status failed --older-than 5x");
    expect_usage(pg, "unrecognized priority \"urgent\"",
                 "recover --status failed --priority urgent");
    expect_usage(pg, "--extra-attempts must be from 1 to 1000000, not \"0\"",
                 "recover --status failed --extra-attempts 0");
    expect_usage(pg, "--extra-attempts applies to --status failed only",
                 "recover --status queued --extra-attempts 2");
    expect_usage(pg, "invalid job id \"x\"", "recover --status failed --id x");
    expect_usage(pg, "unknown option \"--force\"", "recover --status failed --force");
}

/* ---- every command's bad input ------------------------------------------ */

TEST(bad_input_everywhere)
{
    PGconn *pg = tl_db();

    enqueue_id("k '{}'");
    expect_usage(pg, "unrecognized status \"bogus\"", "jobs ls --status bogus");
    expect_usage(pg, "unrecognized status \"bogus\"", "jobs ls --status queued,bogus");
    expect_usage(pg, "--limit must be 0 or more, not \"-1\"", "jobs ls --limit -1");
    expect_usage(pg, "invalid duration \"5x\"", "jobs ls --since 5x");
    expect_usage(pg, "takes one job id", "jobs show");
    expect_usage(pg, "unknown --log-format \"xml\"", "stats --log-format xml");
    expect_usage(pg, "migrate takes no arguments", "migrate now");
    expect_usage(pg, "unknown option \"-z\"", "stats -z");
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
