/*
 * test_unique.c - unique jobs: one unfinished job per key however many
 * producers race, the three modes, windows after success that outlive the
 * job's row, the bulk path, and the one signature of skipq.enqueue.
 */
#include "skipq.h"
#include "testlib.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRODUCERS 16
#define ROUNDS 5

struct racer {
    pthread_barrier_t *go;
    int round;
    int64_t id;
    int inserted;
    skipq_rc rc;
    char message[256];
};

static void *
race(void *arg)
{
    struct racer *r = arg;
    skipq_conn *conn = NULL;
    skipq_error err = {0};
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    char key[32];

    snprintf(key, sizeof key, "race-%d", r->round);
    o.unique_key = key;
    r->rc = skipq_conn_open(tl_url(), &conn, &err);
    pthread_barrier_wait(r->go);
    if (r->rc == SKIPQ_OK)
        r->rc = skipq_enqueue_unique(conn, "k", "{}", &o, &r->id, &r->inserted, &err);
    snprintf(r->message, sizeof r->message, "%s", err.message);
    skipq_conn_close(conn);
    return NULL;
}

TEST(sixteen_producers_one_unique_row)
{
    PGconn *pg = tl_db();

    for (int round = 0; round < ROUNDS; round++) {
        pthread_barrier_t go;
        pthread_t t[PRODUCERS];
        struct racer r[PRODUCERS];
        int inserted = 0;

        pthread_barrier_init(&go, NULL, PRODUCERS);
        for (int i = 0; i < PRODUCERS; i++) {
            r[i] = (struct racer){.go = &go, .round = round};
            ASSERT_EQ(pthread_create(&t[i], NULL, race, &r[i]), 0);
        }
        for (int i = 0; i < PRODUCERS; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&go);
        for (int i = 0; i < PRODUCERS; i++) {
            if (r[i].rc != SKIPQ_OK)
                HARNESS_FAIL("producer %d: %s", i, r[i].message);
            ASSERT_EQ(r[i].id, r[0].id);
            inserted += r[i].inserted;
        }
        ASSERT_EQ(inserted, 1);
        ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE unique_key = 'race-%d'",
                         round),
                  1);
    }
}

TEST(keep_returns_the_existing_id)
{
    PGconn *pg = tl_db();
    int64_t a = tl_int(pg, "SELECT skipq.enqueue('k', '{\"v\": 1}', unique_key => 'x')");
    int64_t b = tl_int(pg, "SELECT skipq.enqueue('k', '{\"v\": 2}', unique_key => 'x')");

    ASSERT_EQ(a, b);
    ASSERT_EQ(tl_int(pg, "SELECT (payload->>'v')::int FROM skipq.jobs WHERE id = %lld",
                     (long long)a),
              1);
    ASSERT_EQ(tl_int(pg,
                     "SELECT (inserted::int * 10) + (id = %lld)::int"
                     " FROM skipq.enqueue_unique('k', unique_key => 'x')",
                     (long long)a),
              1);
    /* another key, or none, is another job */
    ASSERT_TRUE(tl_int(pg, "SELECT skipq.enqueue('k', unique_key => 'y')") != a);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 2);
}

TEST(replace_and_debounce_change_only_a_waiting_job)
{
    PGconn *pg = tl_db();
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('k', '{\"v\": 1}', unique_key => 'x', "
                            "run_at => now() + interval '1 minute')");

    /* replace: payload, priority and run_at of the waiting job */
    tl_exec(pg, "SELECT skipq.enqueue('k', '{\"v\": 2}', priority => 'high', "
                "run_at => now() + interval '5 minutes', unique_key => 'x', "
                "unique_mode => 'replace')");
    ASSERT_EQ(tl_int(pg,
                     "SELECT ((payload->>'v')::int = 2 AND priority = 10"
                     " AND run_at > now() + interval '4 minutes')::int"
                     " FROM skipq.jobs WHERE id = %lld",
                     (long long)id),
              1);
    /* debounce: run_at moves out, never in; the payload stays */
    tl_exec(pg,
            "SELECT skipq.enqueue('k', '{\"v\": 3}', run_at => now() + interval '1 hour',"
            " unique_key => 'x', unique_mode => 'debounce')");
    tl_exec(pg, "SELECT skipq.enqueue('k', '{\"v\": 4}', unique_key => 'x', "
                "unique_mode => 'debounce')");
    ASSERT_EQ(tl_int(pg,
                     "SELECT ((payload->>'v')::int = 2"
                     " AND run_at > now() + interval '59 minutes')::int"
                     " FROM skipq.jobs WHERE id = %lld",
                     (long long)id),
              1);
    /* a running job is never touched, and still holds the key */
    tl_exec(pg, "UPDATE skipq.jobs SET status = 'running', claims = 1 WHERE id = %lld",
            (long long)id);
    char *before = tl_str(pg, "SELECT updated_at::text FROM skipq.jobs WHERE id = %lld",
                          (long long)id);
    ASSERT_EQ(tl_int(pg, "SELECT skipq.enqueue('k', '{\"v\": 5}', unique_key => 'x', "
                         "unique_mode => 'replace')"),
              id);
    ASSERT_EQ(tl_int(pg, "SELECT skipq.enqueue('k', unique_key => 'x', "
                         "unique_mode => 'debounce', run_at => now() + interval '1 day')"),
              id);
    char *after = tl_str(pg, "SELECT updated_at::text FROM skipq.jobs WHERE id = %lld",
                         (long long)id);
    ASSERT_STREQ(before, after);
    ASSERT_EQ(tl_int(pg, "SELECT (payload->>'v')::int FROM skipq.jobs WHERE id = %lld",
                     (long long)id),
              2);
    free(before);
    free(after);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 1);
}

TEST(a_finished_key_is_free_unless_its_window_holds_it)
{
    PGconn *pg = tl_db();
    int64_t a = tl_int(pg, "SELECT skipq.enqueue('k', unique_key => 'x')");

    /* failed and cancelled free the key at once */
    tl_exec(pg,
            "UPDATE skipq.jobs SET status = 'failed', finished_at = now() WHERE id = %lld",
            (long long)a);
    int64_t b = tl_int(pg, "SELECT skipq.enqueue('k', unique_key => 'x', "
                           "unique_window => '1 hour')");
    ASSERT_TRUE(b != a);
    /* success with a window: the key stays taken by b */
    tl_exec(pg, "UPDATE skipq.jobs SET status = 'running' WHERE id = %lld", (long long)b);
    tl_exec(
        pg,
        "UPDATE skipq.jobs SET status = 'succeeded', finished_at = now() WHERE id = %lld",
        (long long)b);
    ASSERT_EQ(tl_int(pg, "SELECT skipq.enqueue('k', unique_key => 'x')"), b);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE unique_key = 'x'"), 2);
    /* once the window has passed, the key is free again */
    tl_exec(pg, "UPDATE skipq.unique_windows SET until = now() - interval '1 second'");
    int64_t c = tl_int(pg, "SELECT skipq.enqueue('k', unique_key => 'x')");
    ASSERT_TRUE(c != b && c != a);
    /* without a window, success frees it at once */
    tl_exec(
        pg,
        "UPDATE skipq.jobs SET status = 'succeeded', finished_at = now() WHERE id = %lld",
        (long long)c);
    ASSERT_TRUE(tl_int(pg, "SELECT skipq.enqueue('k', unique_key => 'x')") != c);
}

TEST(unique_window_outlives_a_deleted_job)
{
    PGconn *pg = tl_db();
    int64_t a = tl_int(pg, "SELECT skipq.enqueue('k', unique_key => 'x', "
                           "unique_window => '1 hour')");

    /* on_success: delete removes the running row that succeeded */
    tl_exec(pg, "UPDATE skipq.jobs SET status = 'running' WHERE id = %lld", (long long)a);
    tl_exec(pg, "DELETE FROM skipq.jobs WHERE id = %lld", (long long)a);
    ASSERT_EQ(tl_int(pg, "SELECT skipq.enqueue('k', unique_key => 'x')"), a);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 0);
    /* and a worker's on_success: delete, end to end */
    int64_t b = tl_int(pg, "SELECT skipq.enqueue('w', unique_key => 'y', "
                           "unique_window => '1 hour')");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL,
                           "worker --once --handler w=true --on-success delete"),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE id = %lld", (long long)b),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT skipq.enqueue('w', unique_key => 'y')"), b);
}

TEST(expired_windows_are_swept)
{
    PGconn *pg = tl_db();

    tl_exec(pg, "INSERT INTO skipq.unique_windows (unique_key, job_id, until)"
                " SELECT 'old' || i, i, now() - interval '1 day'"
                " FROM generate_series(1, 25) i");
    for (int i = 0; i < 3; i++) {
        int64_t id = tl_int(pg,
                            "SELECT skipq.enqueue('k', unique_key => 'new%d', "
                            "unique_window => '1 hour')",
                            i);
        tl_exec(pg,
                "UPDATE skipq.jobs SET status = 'succeeded', finished_at = now()"
                " WHERE id = %lld",
                (long long)id);
    }
    /* three opened, ten swept by each: none of the passed ones is left */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.unique_windows WHERE until < now()"),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.unique_windows"), 3);
}

TEST(cli_says_which_happened)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL, *out2 = NULL;

    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "enqueue k '{\"v\": 1}' --unique-key x --tag a --tag b"
                           " --meta '{\"m\": 1}' --concurrency-key c"),
              0);
    ASSERT_STREQ(err, "");
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out2, &err,
                           "enqueue k '{\"v\": 2}' --unique-key x --unique-mode replace"),
              0);
    ASSERT_STREQ(out, out2);
    ASSERT_CONTAINS(err, "holds unique key \"x\": no new job (replaced it if waiting)");
    free(err);
    free(out2);
    ASSERT_EQ(
        tl_int(pg,
               "SELECT ((payload->>'v')::int = 2 AND tags = '{a,b}' AND meta = '{\"m\": 1}'"
               " AND concurrency_key = 'c')::int FROM skipq.jobs"),
        1);
    out[strcspn(out, "\n")] = '\0';
    ASSERT_EQ(tl_skipq_run(NULL, &out2, NULL, "jobs show %s", out), 0);
    ASSERT_CONTAINS(out2, "unique_key           x\n");
    ASSERT_CONTAINS(out2, "concurrency_key      c\n");
    free(out2);
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "enqueue k --unique-mode replace '{}'"), 2);
    ASSERT_CONTAINS(err, "need a unique_key");
    free(err);
}

TEST(a_waiting_job_holds_its_key)
{
    PGconn *pg = tl_db();
    skipq_conn *conn;
    skipq_error err = {0};
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    char *out = NULL;
    int64_t parent = tl_int(pg, "SELECT skipq.enqueue('p')"), child = 0, again = 0;
    int inserted = -1;

    /* the C API's parents and key, in one call */
    ASSERT_OK(skipq_conn_open(tl_url(), &conn, &err), &err);
    o.unique_key = "x";
    o.depends_on = &parent;
    o.n_depends_on = 1;
    ASSERT_OK(skipq_enqueue_unique(conn, "c", "{\"v\": 1}", &o, &child, &inserted, &err),
              &err);
    ASSERT_EQ(inserted, 1);
    ASSERT_EQ(
        tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE id = %lld AND status = 'waiting'",
               (long long)child),
        1);
    /* waiting is unfinished: the key is taken, and replace reaches it */
    o.depends_on = NULL;
    o.n_depends_on = 0;
    o.unique_mode = SKIPQ_UNIQUE_REPLACE;
    ASSERT_OK(skipq_enqueue_unique(conn, "c", "{\"v\": 2}", &o, &again, &inserted, &err),
              &err);
    ASSERT_EQ(again, child);
    ASSERT_EQ(inserted, 0);
    ASSERT_EQ(tl_int(pg, "SELECT (payload->>'v')::int FROM skipq.jobs WHERE id = %lld",
                     (long long)child),
              2);
    skipq_conn_close(conn);
    /* the CLI's --depends-on */
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL,
                           "enqueue c2 '{}' --depends-on %lld --depends-on %lld",
                           (long long)parent, (long long)child),
              0);
    ASSERT_EQ(
        tl_int(pg,
               "SELECT count(*) FROM skipq.jobs WHERE kind = 'c2' AND status = 'waiting'"),
        1);
    free(out);
}

TEST(enqueue_has_one_signature)
{
    PGconn *pg = tl_db();

    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM pg_proc"
                     " WHERE pronamespace = 'skipq'::regnamespace AND proname = 'enqueue'"),
              1);
    ASSERT_TRUE(tl_int(pg, "SELECT skipq.enqueue('k')") > 0);
    ASSERT_TRUE(tl_int(pg, "SELECT skipq.enqueue('k', '{}', 'q', 'high', now(), 3)") > 0);
}

/* a statement that must fail with this SQLSTATE and message */
static void
expect_error(PGconn *pg, const char *sql, const char *state, const char *needle)
{
    PGresult *res = PQexec(pg, sql);
    const char *got = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    if (PQresultStatus(res) != PGRES_FATAL_ERROR || !got || strcmp(got, state) != 0)
        HARNESS_FAIL("%s: want SQLSTATE %s, got %s (%s)", sql, state, got ? got : "none",
                     PQresultErrorMessage(res));
    ASSERT_CONTAINS(PQresultErrorMessage(res), needle);
    PQclear(res);
}

TEST(bad_unique_input_is_refused_and_writes_nothing)
{
    PGconn *pg = tl_db();
    skipq_conn *conn;
    skipq_error err = {0};
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    char *out = NULL, *msg = NULL;

    expect_error(pg, "SELECT skipq.enqueue('k', unique_key => 'x', unique_mode => 'kept')",
                 "22023", "unknown unique_mode \"kept\"");
    expect_error(pg, "SELECT skipq.enqueue('k', unique_key => 'x', unique_window => '-1s')",
                 "22023", "unique_window must not be negative");
    expect_error(pg, "SELECT skipq.enqueue('k', unique_window => '1s')", "22023",
                 "unique_window needs a unique_key");
    expect_error(pg, "SELECT skipq.enqueue('k', unique_key => '')", "23514", "unique_key");

    ASSERT_OK(skipq_conn_open(tl_url(), &conn, &err), &err);
    o.unique_mode = SKIPQ_UNIQUE_REPLACE;
    ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, NULL, &err), SKIPQ_ERR_INVALID);
    ASSERT_CONTAINS(err.message, "need a unique_key");
    o.unique_key = "x";
    o.meta_json = "[1]";
    ASSERT_EQ(skipq_enqueue(conn, "k", "{}", &o, NULL, &err), SKIPQ_ERR_INVALID);
    ASSERT_CONTAINS(err.message, "meta: ");
    skipq_conn_close(conn);

    ASSERT_EQ(tl_skipq_run(NULL, &out, &msg, "enqueue k '{}' --unique-key-from id"), 2);
    ASSERT_CONTAINS(msg, "--unique-key-from is for stdin mode");
    free(out);
    free(msg);
    ASSERT_EQ(tl_skipq_run("{\"id\": \"a\"}\n{\"id\": [1]}\n", &out, &msg,
                           "enqueue k --unique-key-from id"),
              2);
    ASSERT_CONTAINS(msg, "line 2: payload has no field \"id\" (a string or a number)");
    free(out);
    free(msg);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 0);
}

TEST(c_api_unique_key_keeps_one_row)
{
    PGconn *pg = tl_db();
    skipq_conn *conn;
    skipq_error err = {0};
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    const char *tags[] = {"a", "b \"c\""};
    int64_t a = 0, b = 0;
    int inserted = -1;

    ASSERT_OK(skipq_conn_open(tl_url(), &conn, &err), &err);
    o.unique_key = "x";
    o.tags = tags;
    o.n_tags = 2;
    o.meta_json = "{\"who\": \"me\"}";
    o.concurrency_key = "customer-1";
    o.queue = "q";
    o.delay_ms = 60000;
    ASSERT_OK(skipq_enqueue_unique(conn, "k", "{\"v\": 1}", &o, &a, &inserted, &err), &err);
    ASSERT_EQ(inserted, 1);
    ASSERT_EQ(tl_int(pg,
                     "SELECT (tags = '{a,\"b \\\"c\\\"\"}' AND meta->>'who' = 'me'"
                     " AND concurrency_key = 'customer-1' AND queue = 'q'"
                     " AND run_at > now() + interval '50 seconds')::int"
                     " FROM skipq.jobs WHERE id = %lld",
                     (long long)a),
              1);
    /* inside the caller's transaction, on its own connection */
    tl_exec(pg, "BEGIN");
    ASSERT_OK(skipq_enqueue_unique_tx(pg, "k", "{}", &o, &b, &inserted, &err), &err);
    tl_exec(pg, "COMMIT");
    ASSERT_EQ(b, a);
    ASSERT_EQ(inserted, 0);
    /* skipq_enqueue takes the same options and returns the holder's id */
    ASSERT_OK(skipq_enqueue(conn, "k", "{}", &o, &b, &err), &err);
    ASSERT_EQ(b, a);
    /* a plain job says it was inserted */
    skipq_enqueue_opts plain = SKIPQ_ENQUEUE_OPTS_INIT;
    ASSERT_OK(skipq_enqueue_unique(conn, "k", "{}", &plain, &b, &inserted, &err), &err);
    ASSERT_EQ(inserted, 1);
    skipq_conn_close(conn);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 2);
}

TEST(batch_with_unique_keys_inserts_each_key_once)
{
    PGconn *pg = tl_db();
    skipq_conn *conn;
    skipq_error err = {0};
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    skipq_job_spec jobs[5] = {
        {.kind = "k", .payload_json = "{\"id\": \"a\", \"n\": 1}"},
        {.kind = "k", .payload_json = "{\"id\": \"b\", \"n\": 2}"},
        {.kind = "k", .payload_json = "{\"id\": \"a\", \"n\": 3}"},
        {.kind = "k", .payload_json = "{\"id\": 7, \"n\": 4}"},
        {.kind = "k", .payload_json = "{\"id\": \"held\", \"n\": 5}"},
    };
    skipq_copy *cp;
    int64_t inserted = 0, existing = 0;

    int64_t held = tl_int(pg, "SELECT skipq.enqueue('k', unique_key => 'held')");
    ASSERT_OK(skipq_conn_open(tl_url(), &conn, &err), &err);
    o.unique_key_field = "id";
    /* keep: one INSERT ... ON CONFLICT; the first of each key wins */
    ASSERT_OK(skipq_enqueue_batch(conn, jobs, 5, &o, &err), &err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 4);
    ASSERT_EQ(tl_int(pg,
                     "SELECT (payload->>'n')::int FROM skipq.jobs WHERE unique_key = 'a'"),
              1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE unique_key = '7'"), 1);
    ASSERT_EQ(tl_int(pg, "SELECT id FROM skipq.jobs WHERE unique_key = 'held'"), held);
    /* ids follow the input's order */
    ASSERT_EQ(tl_int(pg, "SELECT (array_agg(unique_key ORDER BY id) = '{held,a,b,7}')::int"
                         " FROM skipq.jobs"),
              1);

    /* replace, through COPY: row by row, the last payload of a key wins */
    o.unique_mode = SKIPQ_UNIQUE_REPLACE;
    ASSERT_OK(skipq_copy_begin(conn, &o, &cp, &err), &err);
    ASSERT_OK(skipq_copy_add(cp, "k", "{\"id\": \"a\", \"n\": 10}", (size_t)-1, &err),
              &err);
    ASSERT_OK(skipq_copy_add(cp, "k", "{\"id\": \"c\", \"n\": 11}", (size_t)-1, &err),
              &err);
    ASSERT_OK(skipq_copy_add(cp, "k", "{\"id\": \"a\", \"n\": 12}", (size_t)-1, &err),
              &err);
    ASSERT_OK(skipq_copy_end_counts(cp, &inserted, &existing, &err), &err);
    ASSERT_EQ(inserted, 1);
    ASSERT_EQ(existing, 2);
    ASSERT_EQ(tl_int(pg,
                     "SELECT (payload->>'n')::int FROM skipq.jobs WHERE unique_key = 'a'"),
              12);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 5);

    /* one key for a whole batch is refused */
    o.unique_key = "x";
    ASSERT_EQ(skipq_copy_begin(conn, &o, &cp, &err), SKIPQ_ERR_INVALID);
    ASSERT_CONTAINS(err.message, "set unique_key_field");
    skipq_conn_close(conn);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
