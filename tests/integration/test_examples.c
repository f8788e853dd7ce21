/*
 * test_examples.c - the programs in examples/ run against a real
 * PostgreSQL and do what their comments (and docs/c-api.md) say: the
 * table afterwards is checked, not just the exit status.
 *
 * The examples are built by the top CMakeLists.txt as <build>/example_*;
 * this binary lives in <build>/tests/, so the build directory is found
 * from /proc/self/exe and the tests work in any build tree (plain, ASan).
 */
#include "testlib.h"

#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <unistd.h>

/* <build>/example_<name>, in static storage. */
static const char *
example(const char *name)
{
    static char path[PATH_MAX + 64];
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

    ASSERT_TRUE(n > 0);
    self[n] = '\0';
    char *tests_dir = dirname(self);      /* <build>/tests */
    char *build_dir = dirname(tests_dir); /* <build> */
    snprintf(path, sizeof path, "%s/example_%s", build_dir, name);
    if (access(path, X_OK) != 0)
        HARNESS_FAIL("%s is not built (cmake --build builds examples/*.c)", path);
    return path;
}

TEST(enqueue_single_and_batch)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;

    int rc = tl_run(NULL, &out, &err, "%s '%s'", example("enqueue"), tl_url());
    if (rc != 0)
        HARNESS_FAIL("example_enqueue exited %d: %s", rc, err);
    ASSERT_CONTAINS(out, "enqueued job ");
    ASSERT_CONTAINS(out, "enqueued a batch of 1000 jobs");

    /* the single job, with its options */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'resize'"
                         " AND queue = 'images' AND priority = 10"
                         " AND status = 'queued' AND payload->>'path' = "
                         "'/img/cat.png' AND (payload->>'width')::int = 640"),
              1);
    /* the batch: 1000 rows, each payload once, all with the batch options */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'count'"
                         " AND queue = 'bulk' AND priority = -10"
                         " AND status = 'queued'"),
              1000);
    ASSERT_EQ(tl_int(pg, "SELECT count(DISTINCT (payload->>'n')::int) FROM "
                         "skipq.jobs WHERE kind = 'count' AND "
                         "(payload->>'n')::int BETWEEN 0 AND 999"),
              1000);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 1001);
    free(out);
    free(err);
}

TEST(enqueue_tx_rollback_and_commit)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;

    int rc = tl_run(NULL, &out, &err, "%s '%s'", example("enqueue_tx"), tl_url());
    if (rc != 0)
        HARNESS_FAIL("example_enqueue_tx exited %d: %s%s", rc, out, err);
    ASSERT_CONTAINS(out, "after ROLLBACK: 0 new job(s)");
    ASSERT_CONTAINS(out, "after COMMIT: 1 new job(s)");
    /* the rolled-back job is nowhere; the committed one is queued */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = "
                         "'send_receipt' AND status = 'queued' AND "
                         "payload = '{\"order\": 1042}'"),
              1);
    free(out);
    free(err);
}

TEST(worker_once_runs_its_kinds_only)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;

    int64_t ok = tl_int(pg, "SELECT skipq.enqueue('resize', '{\"path\": "
                            "\"/a.png\", \"width\": 100}', queue => 'images')");
    int64_t bad = tl_int(pg, "SELECT skipq.enqueue('resize', '{}', "
                             "max_attempts => 1)");
    int64_t high = tl_int(pg, "SELECT skipq.enqueue('resize', '{\"path\": "
                              "\"/b.png\"}', priority => 'high')");
    int64_t other_kind = tl_int(pg, "SELECT skipq.enqueue('send_email')");
    int64_t other_queue = tl_int(pg, "SELECT skipq.enqueue('resize', "
                                     "'{\"path\": \"/c.png\"}', queue => "
                                     "'elsewhere')");

    int rc = tl_run(NULL, &out, &err, "%s --once '%s'", example("worker"), tl_url());
    if (rc != 0)
        HARNESS_FAIL("example_worker --once exited %d: %s", rc, err);

    char *thumb = tl_str(pg,
                         "SELECT result->>'thumbnail' FROM skipq.jobs "
                         "WHERE id = %lld AND status = 'succeeded' AND "
                         "attempts = 1",
                         (long long)ok);
    ASSERT_STREQ(thumb, "/a.png.100w.png");
    ASSERT_EQ(tl_int(pg,
                     "SELECT (result->>'width')::int FROM skipq.jobs "
                     "WHERE id = %lld",
                     (long long)high),
              320);
    /* a failed attempt with no attempts left is the dead letter */
    char *why = tl_str(pg,
                       "SELECT last_error FROM skipq.jobs WHERE id = %lld"
                       " AND status = 'failed' AND attempts = 1 AND "
                       "jsonb_array_length(errors) = 1",
                       (long long)bad);
    ASSERT_STREQ(why, "payload has no \"path\" string");
    /* no handler for the kind, or a queue it does not serve: untouched */
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id IN "
                     "(%lld, %lld) AND status = 'queued' AND attempts = 0"
                     " AND locked_by IS NULL",
                     (long long)other_kind, (long long)other_queue),
              2);
    /* it unregistered on the way out */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 0);
    ASSERT_CONTAINS(err, "succeeded");
    free(thumb);
    free(why);
    free(out);
    free(err);
}

TEST(worker_snoozes_and_stops_on_sigterm)
{
    PGconn *pg = tl_db();
    const char *log = tl_tmpfile(".log");

    /* due in about two seconds: the handler snoozes until then */
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('wait_until', "
                            "jsonb_build_object('until', "
                            "extract(epoch FROM now())::int8 + 2))");
    pid_t pid = tl_spawn(log, "exec %s '%s'", example("worker"), tl_url());

    ASSERT_TRUE(tl_wait_int(pg, 15000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE id = %lld"
                            " AND status = 'succeeded'",
                            (long long)id));
    /* snoozes hand the attempt back: only the run that finished counts */
    ASSERT_EQ(tl_int(pg, "SELECT attempts FROM skipq.jobs WHERE id = %lld", (long long)id),
              1);
    char *result = tl_str(pg,
                          "SELECT result::text FROM skipq.jobs WHERE id "
                          "= %lld",
                          (long long)id);
    ASSERT_STREQ(result, "\"waited\"");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 1);

    tl_kill(pid, SIGTERM);
    ASSERT_EQ(tl_wait_pid(pid, 15000), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 0);
    free(result);
}

/* examples/handlers/persistent.c and .py, persistent under `skipq
 * worker`: they echo the payload, and fail on {"fail": true}. */
TEST(persistent_handlers_in_c_and_python)
{
    PGconn *pg = tl_db();
    char *err = NULL;
    const char *cfg = tl_tmpfile(".yaml");
    char text[2048];

    snprintf(text, sizeof text,
             "worker:\n  concurrency: 4\n"
             "handlers:\n"
             "  echo_c:\n    command: [%s]\n    persistent: true\n    processes: 2\n"
             "  echo_py:\n    command: [%s/examples/handlers/persistent.py]\n"
             "    persistent: true\n    processes: 2\n",
             example("persistent"), SKIPQ_TEST_SOURCE_DIR);
    tl_write_file(cfg, text);
    tl_exec(pg, "SELECT skipq.enqueue(k, jsonb_build_object('n', g))"
                " FROM generate_series(1, 50) g, unnest('{echo_c,echo_py}'::text[]) k");
    tl_exec(pg, "SELECT skipq.enqueue(k, '{\"fail\": true}', max_attempts => 1)"
                " FROM unnest('{echo_c,echo_py}'::text[]) k");
    int rc = tl_skipq_run(NULL, NULL, &err, "worker --once --config %s --database '%s'",
                          cfg, tl_url());
    if (rc != 0)
        HARNESS_FAIL("skipq worker --once exited %d: %s", rc, err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"
                         " AND attempts = 1 AND result = payload"),
              100);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'failed'"
                         " AND last_error = 'the payload asked to fail'"),
              2);
    unlink(cfg);
    free(err);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
