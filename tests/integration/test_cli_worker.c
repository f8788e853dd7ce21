/*
 * test_cli_worker.c - `skipq worker` on a handful of jobs, end to end
 * through the binary. Named test_cli_* so scripts/test.sh also runs it
 * under valgrind (no leaks, no errors in the worker's whole life: start,
 * claim, executor threads, command handlers, retries, --once, exit).
 */
#include "harness.h"
#include "testlib.h"

#include <string.h>

TEST(worker_once_runs_a_handful)
{
    PGconn *pg = tl_db();
    tl_exec(
        pg,
        "SELECT skipq.enqueue('ok', jsonb_build_object('i', g)) FROM generate_series(1, 4) g");
    tl_exec(pg, "SELECT skipq.enqueue('bad', max_attempts => 2)");
    tl_exec(pg, "SELECT skipq.enqueue('res', '{\"x\": 41}')");
    tl_exec(pg, "SELECT skipq.enqueue('nobody')");
    /* bad is retried at once (base 0) so --once sees both attempts */
    const char *cfg = tl_tmpfile(".yaml");
    tl_write_file(cfg, "retry:\n  strategy: fixed\n  base: 0s\n  jitter: 0\n"
                       "worker:\n  concurrency: 3\n  poll_interval: 100ms\n");
    char *out = NULL, *err = NULL;
    int rc = tl_skipq_run(NULL, &out, &err,
                          "worker --config %s --once --handler ok=true"
                          " --handler 'bad=echo oops >&2; exit 3'"
                          " --handler 'res=printf \"{\\\"y\\\": 42}\"'",
                          cfg);
    if (rc != 0)
        fprintf(stderr, "worker stderr:\n%s\n", err);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'ok'"
                         " AND status = 'succeeded' AND attempts = 1"),
              4);
    ASSERT_EQ(
        tl_int(
            pg,
            "SELECT count(*) FROM skipq.jobs WHERE kind = 'bad'"
            " AND status = 'failed' AND attempts = 2 AND last_error = 'exit status 3: oops'"
            " AND jsonb_array_length(errors) = 2"),
        1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'res'"
                         " AND status = 'succeeded' AND result = '{\"y\": 42}'"),
              1);
    /* a kind without a handler is left alone */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'nobody'"
                         " AND status = 'queued' AND attempts = 0"),
              1);
    /* the worker unregistered on its way out */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.active_workers WHERE alive"), 0);
    free(out);
    free(err);
}

TEST(worker_without_handlers_is_a_usage_error)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "SELECT skipq.enqueue('ok')");
    char *out = NULL, *err = NULL;
    int rc = tl_skipq_run(NULL, &out, &err, "worker --once");
    ASSERT_EQ(rc, 2);
    ASSERT_TRUE(strstr(err, "--handler KIND=COMMAND") != NULL);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 1);
    free(out);
    free(err);
}

TEST(worker_prefetch_flag_is_checked)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "SELECT skipq.enqueue('ok')");
    static const char *const bad[] = {"x", "-1", "10001", "", "1.5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = NULL, *err = NULL;
        int rc = tl_skipq_run(NULL, &out, &err,
                              "worker --once --handler ok=true --prefetch '%s'", bad[i]);
        ASSERT_EQ(rc, 2);
        ASSERT_CONTAINS(err,
                        "--prefetch must be \"auto\" or a whole number from 0 to 10000");
        free(out);
        free(err);
    }
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 1);
    /* auto and a number both run the job */
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL,
                           "worker --once --handler ok=true --prefetch auto"),
              0);
    tl_exec(pg, "SELECT skipq.enqueue('ok')");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL,
                           "worker --once --handler ok=true --prefetch 3"),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"), 2);
}

/* --on-success: a bad value is a usage error that runs nothing; delete
 * leaves no succeeded row, keep (the default) leaves it. */
TEST(worker_on_success_flag)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "SELECT skipq.enqueue('ok')");
    char *out = NULL, *err = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "worker --once --handler ok=true --on-success drop"),
              2);
    ASSERT_CONTAINS(err, "--on-success must be keep or delete, not \"drop\"");
    free(out);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 1);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL,
                           "worker --once --handler ok=true --on-success delete"),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 0);
    tl_exec(pg, "SELECT skipq.enqueue('ok')");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "worker --once --handler ok=true"), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"), 1);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
