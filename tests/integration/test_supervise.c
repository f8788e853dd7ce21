/*
 * test_supervise.c - a C handler that crashes its process: the supervisor
 * records the signal on the job, restarts the worker, and a job that
 * crashes every time ends failed after max_attempts instead of looping.
 */
#include "skipq.h"
#include "testlib.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static skipq_worker *child_worker;

static void
on_term(int sig)
{
    (void)sig;
    if (child_worker)
        skipq_worker_stop(child_worker);
}

static skipq_outcome
crash_handler(skipq_job *job, void *ud)
{
    (void)job;
    (void)ud;
    /* The default action, not a sanitizer's handler: a real crash.
     * Process-directed, as a fault is: handler threads block signals, so
     * raise() would only leave it pending. */
    signal(SIGSEGV, SIG_DFL);
    kill(getpid(), SIGSEGV);
    pause();
    return SKIPQ_JOB_ERROR;
}

static skipq_outcome
ok_handler(skipq_job *job, void *ud)
{
    (void)job;
    (void)ud;
    return SKIPQ_JOB_OK;
}

static int
run_worker(void *ud)
{
    const skipq_config *cfg = ud;
    skipq_error err;
    skipq_worker *w = NULL;
    if (skipq_worker_new(cfg, &w, &err) ||
        skipq_worker_register(w, "crash", crash_handler, NULL, &err) ||
        skipq_worker_register(w, "ok", ok_handler, NULL, &err)) {
        fprintf(stderr, "worker: %s\n", err.message);
        return 1;
    }
    child_worker = w;
    signal(SIGTERM, on_term);
    skipq_rc rc = skipq_worker_run(w, &err);
    if (rc != SKIPQ_OK)
        fprintf(stderr, "worker: %s\n", err.message);
    child_worker = NULL;
    skipq_worker_free(w);
    return rc == SKIPQ_OK ? 0 : 1;
}

TEST(crashing_c_handler_is_recorded_and_worker_restarts)
{
    PGconn *pg = tl_db();
    skipq_error err;
    skipq_config *cfg = skipq_config_new();
    ASSERT_OK(skipq_config_set_concurrency(cfg, 1, &err), &err);
    ASSERT_OK(skipq_config_set_poll_interval(cfg, 200, &err), &err);
    ASSERT_OK(skipq_config_set_heartbeat_interval(cfg, 200, &err), &err);
    ASSERT_OK(skipq_config_set_max_attempts(cfg, 3, &err), &err);
    ASSERT_OK(skipq_config_set_database(cfg, tl_url(), &err), &err);
    /* the poison job first, then work that must still get done */
    int64_t bad = tl_int(pg, "SELECT skipq.enqueue('crash', priority => 'high')");
    tl_exec(pg, "SELECT skipq.enqueue('ok') FROM generate_series(1, 20)");

    pid_t sup = fork();
    if (sup == 0) {
        setpgid(0, 0);
        int status = 0;
        skipq_rc rc = skipq_supervise(cfg, tl_url(), run_worker, cfg, &status, &err);
        _exit(rc != SKIPQ_OK ? 100 : status);
    }
    setpgid(sup, sup);
    ASSERT_TRUE(tl_wait_int(pg, 30000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE id = %lld"
                            " AND status = 'failed'",
                            (long long)bad));
    ASSERT_TRUE(tl_wait_int(pg, 30000, 20,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'ok'"
                            " AND status = 'succeeded'"));
    kill(sup, SIGTERM);
    int st = tl_wait_pid(sup, 15000);
    if (st < 0)
        kill(-sup, SIGKILL);
    ASSERT_EQ(st, 0);

    char *res = tl_str(pg,
                       "SELECT attempts || ' ' || jsonb_array_length(errors) || ' ' ||"
                       " last_error FROM skipq.jobs WHERE id = %lld",
                       (long long)bad);
    ASSERT_STREQ(res, "3 3 worker lost (SIGSEGV)");
    free(res);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"), 0);
    skipq_config_free(cfg);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
