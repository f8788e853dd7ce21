/*
 * test_persistent.c - persistent command handlers (exec_persistent.c):
 * processes started once per kind, given jobs as JSON lines.
 *
 *   pool_runs_each_job_once      many jobs through 2 processes: each job
 *                                answered once, results stored, no fork
 *                                per job
 *   error_outcome_is_retried     "outcome": "error" fails the attempt,
 *                                retried by the backoff, then failed
 *   malformed_answer_*           a line that is not the job's answer
 *                                kills the process; the next job gets a
 *                                new one
 *   kill_9_mid_job_*             a handler process killed under a job:
 *                                the job is retried and succeeds, the
 *                                pool is refilled, nothing is lost
 *   timeout_restarts_*           a job past its timeout: the process is
 *                                killed and started again
 *   shutdown_hands_back          a stop past shutdown_timeout hands the
 *                                running job back and the processes die
 *   snooze_*                     "outcome": "snooze" hands the attempt back
 *   cancel_*                     a cancel kills the process (SIGTERM), the
 *                                job ends cancelled, a new process follows
 *   config_*                     the YAML keys and the setter
 */
#include "../handlers/faultlib.h"
#include "skipq.h"

/* Lines in a file the handler appends to; 0 when it does not exist. */
static int
file_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, c;
    if (!f)
        return 0;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

struct lines {
    const char *path;
    int want;
};

static bool
has_lines(void *arg)
{
    struct lines *l = arg;
    return file_lines(l->path) >= l->want;
}

/* Handler processes listed in the starts file that still run. */
static int
live_starts(const char *path)
{
    FILE *f = fopen(path, "r");
    int pid, n = 0;
    if (!f)
        return 0;
    while (fscanf(f, "%d", &pid) == 1) {
        char st[64], buf[512];
        snprintf(st, sizeof st, "/proc/%d/stat", pid);
        FILE *s = fopen(st, "r");
        if (!s)
            continue;
        size_t k = fread(buf, 1, sizeof buf - 1, s);
        fclose(s);
        buf[k] = '\0';
        char *rp = strrchr(buf, ')');
        if (rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X')
            n++;
    }
    fclose(f);
    return n;
}

struct live {
    const char *path;
    int want;
};

static bool
live_is(void *arg)
{
    struct live *l = arg;
    return live_starts(l->path) == l->want;
}

/* A worker config with one persistent handler `p` of n processes, its
 * starts and runs recorded in the files returned. */
static const char *
persist_config(int concurrency, int processes, const char *timeout, const char **starts,
               const char **runs)
{
    *starts = fl_file(".starts", "%s", "");
    *runs = fl_file(".runs", "%s", "");
    unlink(*starts);
    unlink(*runs);
    setenv("PERSIST_STARTS", *starts, 1);
    setenv("PERSIST_RUNS", *runs, 1);
    const char *exits = fl_file(".exits", "%s", "");
    unlink(exits);
    setenv("PERSIST_EXITS", exits, 1);
    char rest[1024];
    snprintf(rest, sizeof rest,
             "retry:\n  base: 100ms\n  jitter: 0\n"
             "handlers:\n"
             "  p:\n"
             "    command: [%s]\n"
             "    persistent: true\n"
             "    processes: %d\n"
             "%s%s%s",
             fl_handler("persist"), processes, timeout ? "    timeout: " : "",
             timeout ? timeout : "", timeout ? "\n" : "");
    return fl_worker_config(concurrency, "200ms", NULL, rest);
}

static void
run_once(const char *cfg)
{
    char *err = NULL;
    int rc = tl_skipq_run(NULL, NULL, &err, "worker --once --config %s", cfg);
    if (rc != 0)
        fprintf(stderr, "%s", err ? err : "");
    ASSERT_EQ(rc, 0);
    free(err);
}

TEST(pool_runs_each_job_once)
{
    PGconn *pg = tl_db();
    const char *starts, *runs;
    fl_deadline(90);
    const char *cfg = persist_config(4, 2, NULL, &starts, &runs);
    tl_exec(pg, "SELECT skipq.enqueue('p', jsonb_build_object('n', g))"
                " FROM generate_series(1, 300) g");
    run_once(cfg);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"
                         " AND attempts = 1 AND (result->'payload'->>'n')::int"
                         " = (payload->>'n')::int"),
              300);
    /* each job answered once, by one of two processes started once */
    ASSERT_EQ(file_lines(runs), 300);
    ASSERT_EQ(file_lines(starts), 2);
    ASSERT_TRUE(tl_int(pg, "SELECT count(DISTINCT result->>'pid') FROM skipq.jobs") <= 2);
    /* the processes went with the worker, after the end of their stdin */
    struct live l = {starts, 0};
    ASSERT_TRUE(wait_until(5000, live_is, &l));
    ASSERT_EQ(file_lines(getenv("PERSIST_EXITS")), 2);
}

TEST(error_outcome_is_retried_then_failed)
{
    PGconn *pg = tl_db();
    const char *starts, *runs;
    fl_deadline(90);
    const char *cfg = persist_config(2, 1, NULL, &starts, &runs);
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('p', '{\"fail\": true}',"
                            " max_attempts => 2)");
    int64_t ok = tl_int(pg, "SELECT skipq.enqueue('p', '{\"x\": 1}')");
    const char *log = fl_log();
    pid_t w = fl_worker(log, cfg, NULL);
    if (!tl_wait_int(pg, 20000, 1,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND status = 'failed'",
                     id))
        fl_dump("worker", log);
    char *s = tl_str(pg,
                     "SELECT attempts || ' ' || last_error || ' '"
                     " || jsonb_array_length(errors) FROM skipq.jobs"
                     " WHERE id = %" PRId64,
                     id);
    ASSERT_STREQ(s, "2 asked to fail 2");
    free(s);
    ASSERT_TRUE(tl_wait_int(pg, 20000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                            " AND status = 'succeeded'",
                            ok));
    /* an error answer is not a broken process */
    ASSERT_EQ(file_lines(starts), 1);
    tl_kill(w, SIGTERM);
    ASSERT_EQ(fl_wait_exit(w, 20000), 0);
}

/* A job whose answer breaks the protocol fails with why; the next job
 * runs in a new process. */
static void
broken_answer(const char *payload, const char *want_error)
{
    PGconn *pg = tl_db();
    const char *starts, *runs;
    fl_deadline(90);
    const char *cfg = persist_config(1, 1, NULL, &starts, &runs);
    int64_t bad = tl_int(pg,
                         "SELECT skipq.enqueue('p', '%s', max_attempts => 1,"
                         " priority => 5)",
                         payload);
    int64_t ok = tl_int(pg, "SELECT skipq.enqueue('p', '{\"x\": 1}')");
    run_once(cfg);
    char *s = tl_str(pg,
                     "SELECT status || ': ' || last_error FROM skipq.jobs"
                     " WHERE id = %" PRId64,
                     bad);
    printf("%s\n", s);
    ASSERT_TRUE(strncmp(s, want_error, strlen(want_error)) == 0);
    free(s);
    s = tl_str(pg, "SELECT status FROM skipq.jobs WHERE id = %" PRId64, ok);
    ASSERT_STREQ(s, "succeeded");
    free(s);
    ASSERT_EQ(file_lines(starts), 2);
}

TEST(malformed_answer_kills_the_process)
{
    broken_answer("{\"garble\": true}",
                  "failed: handler process broke the protocol: an answer that is"
                  " not a JSON object: this is not json");
}

TEST(malformed_answer_for_another_job_kills_the_process)
{
    broken_answer("{\"wrong_id\": true}",
                  "failed: handler process broke the protocol: an answer that is"
                  " not for job ");
}

/* Output after an answer is not charged to the next job: the process is
 * replaced before the job goes to it. */
TEST(stray_output_between_jobs_replaces_the_process_and_charges_no_job)
{
    PGconn *pg = tl_db();
    const char *starts, *runs;
    fl_deadline(90);
    const char *cfg = persist_config(1, 1, NULL, &starts, &runs);
    tl_exec(pg, "SELECT skipq.enqueue('p', '{\"stray\": true}', priority => 5)");
    tl_exec(pg, "SELECT skipq.enqueue('p', '{\"x\": 1}')");
    run_once(cfg);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"
                         " AND attempts = 1 AND errors = '[]'"),
              2);
    ASSERT_EQ(file_lines(starts), 2);
}

TEST(kill_9_mid_job_retries_and_refills_the_pool)
{
    PGconn *pg = tl_db();
    const char *starts, *runs;
    fl_deadline(90);
    const char *cfg = persist_config(2, 2, NULL, &starts, &runs);
    const char *pidfile = tl_tmpfile(".hang");
    unlink(pidfile);
    int64_t id = tl_int(pg,
                        "SELECT skipq.enqueue('p', jsonb_build_object('hang_once', '%s'))",
                        pidfile);
    const char *log = fl_log();
    pid_t w = fl_worker(log, cfg, NULL);
    ASSERT_TRUE(tl_wait_file_has(pidfile, "\n", 20000));
    FILE *f = fopen(pidfile, "r");
    int victim = 0;
    ASSERT_TRUE(f && fscanf(f, "%d", &victim) == 1);
    fclose(f);
    ASSERT_EQ(kill(victim, SIGKILL), 0);
    if (!tl_wait_int(pg, 20000, 1,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND status = 'succeeded'",
                     id))
        fl_dump("worker", log);
    char *s = tl_str(pg,
                     "SELECT attempts || ' ' || (errors->0->>'error') FROM skipq.jobs"
                     " WHERE id = %" PRId64,
                     id);
    ASSERT_STREQ(s, "2 handler process killed by SIGKILL");
    free(s);
    /* the killed process was replaced at once, and the replacement ran the retry */
    ASSERT_EQ(file_lines(starts), 2);
    /* more jobs, each long enough that both executors hold one at a time: the
     * pool starts its second process (processes start when first needed) */
    tl_exec(pg, "SELECT skipq.enqueue('p', jsonb_build_object('n', g, 'sleep_ms', 20))"
                " FROM generate_series(1, 50) g");
    ASSERT_TRUE(tl_wait_int(pg, 20000, 51,
                            "SELECT count(*) FROM skipq.jobs"
                            " WHERE status = 'succeeded'"));
    ASSERT_EQ(file_lines(starts), 3);
    struct live l = {starts, 2};
    ASSERT_TRUE(wait_until(5000, live_is, &l));
    ASSERT_EQ(file_lines(runs), 51);
    tl_kill(w, SIGTERM);
    ASSERT_EQ(fl_wait_exit(w, 20000), 0);
    l.want = 0;
    ASSERT_TRUE(wait_until(5000, live_is, &l));
}

TEST(timeout_restarts_the_process)
{
    PGconn *pg = tl_db();
    const char *starts, *runs;
    fl_deadline(90);
    const char *cfg = persist_config(1, 1, "1s", &starts, &runs);
    int64_t slow = tl_int(pg, "SELECT skipq.enqueue('p', '{\"sleep_ms\": 30000}',"
                              " max_attempts => 1, priority => 5)");
    int64_t ok = tl_int(pg, "SELECT skipq.enqueue('p', '{\"x\": 1}')");
    int64_t t0 = tl_now_ms();
    run_once(cfg);
    ASSERT_TRUE(tl_now_ms() - t0 < 10000);
    char *s = tl_str(pg,
                     "SELECT status || ': ' || last_error FROM skipq.jobs"
                     " WHERE id = %" PRId64,
                     slow);
    ASSERT_STREQ(s, "failed: timed out after 1s");
    free(s);
    s = tl_str(pg, "SELECT status FROM skipq.jobs WHERE id = %" PRId64, ok);
    ASSERT_STREQ(s, "succeeded");
    free(s);
    ASSERT_EQ(file_lines(starts), 2);
}

TEST(shutdown_hands_back)
{
    PGconn *pg = tl_db();
    const char *starts, *runs;
    fl_deadline(90);
    const char *cfg = persist_config(2, 2, NULL, &starts, &runs);
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('p', '{\"sleep_ms\": 60000}')");
    const char *log = fl_log();
    pid_t w = fl_worker(log, cfg, NULL);
    ASSERT_TRUE(tl_wait_int(pg, 20000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                            " AND status = 'running'",
                            id));
    struct lines st = {starts, 1};
    ASSERT_TRUE(wait_until(20000, has_lines, &st));
    int64_t t0 = tl_now_ms();
    tl_kill(w, SIGTERM);
    /* shutdown_timeout is 3s: then the process is killed, the row put back */
    ASSERT_EQ(fl_wait_exit(w, 20000), 0);
    ASSERT_TRUE(tl_now_ms() - t0 < 10000);
    char *s = tl_str(pg,
                     "SELECT status || ' ' || attempts FROM skipq.jobs"
                     " WHERE id = %" PRId64,
                     id);
    ASSERT_STREQ(s, "queued 0");
    free(s);
    struct live l = {starts, 0};
    ASSERT_TRUE(wait_until(5000, live_is, &l));
}

TEST(snooze_hands_the_attempt_back)
{
    PGconn *pg = tl_db();
    const char *starts, *runs;
    fl_deadline(90);
    const char *cfg = persist_config(1, 1, NULL, &starts, &runs);
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('p', '{\"snooze\": true}')");
    run_once(cfg);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND status = 'queued' AND attempts = 0 AND last_error IS NULL"
                     " AND run_at > now() + interval '30 seconds'",
                     id),
              1);
}

TEST(cancel_kills_the_process_and_the_next_job_gets_a_new_one)
{
    PGconn *pg = tl_db();
    const char *starts, *runs;
    fl_deadline(90);
    const char *cfg = persist_config(1, 1, NULL, &starts, &runs);
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('p', '{\"sleep_ms\": 60000}')");
    const char *log = fl_log();
    pid_t w = fl_worker(log, cfg, NULL);
    ASSERT_TRUE(tl_wait_int(pg, 20000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                            " AND status = 'running'",
                            id));
    struct lines st = {starts, 1};
    ASSERT_TRUE(wait_until(20000, has_lines, &st));
    tl_exec(pg, "SELECT skipq.cancel(ARRAY[%" PRId64 "])", id);
    if (!tl_wait_int(pg, 20000, 1,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND status = 'cancelled'",
                     id))
        fl_dump("worker", log);
    int64_t ok = tl_int(pg, "SELECT skipq.enqueue('p', '{\"x\": 1}')");
    ASSERT_TRUE(tl_wait_int(pg, 20000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                            " AND status = 'succeeded'",
                            ok));
    ASSERT_EQ(file_lines(starts), 2);
    tl_kill(w, SIGTERM);
    ASSERT_EQ(fl_wait_exit(w, 20000), 0);
}

TEST(config_keys_and_setter)
{
    skipq_config *cfg = skipq_config_new();
    skipq_error err = {0};
    static const char *const argv[] = {"/bin/cat", NULL};
    ASSERT_TRUE(cfg != NULL);
    ASSERT_EQ(skipq_config_set_handler_persistent(cfg, "nope", 2, &err), SKIPQ_ERR_INVALID);
    ASSERT_STREQ(err.message, "handler \"nope\" has no command: set its command first");
    ASSERT_EQ(skipq_config_set_handler_command(cfg, "k", argv, 0, &err), SKIPQ_OK);
    ASSERT_EQ(skipq_config_set_handler_persistent(cfg, "k", -1, &err), SKIPQ_ERR_INVALID);
    ASSERT_EQ(skipq_config_set_handler_persistent(cfg, "k", 4, &err), SKIPQ_OK);
    skipq_config_free(cfg);

    const char *bad = fl_file(".yaml", "handlers:\n  k:\n    command: [/bin/cat]\n"
                                       "    processes: 2\n");
    char *out = NULL;
    int rc = tl_skipq_run(NULL, NULL, &out, "worker --once --config %s", bad);
    printf("%s", out);
    ASSERT_EQ(rc, 2);
    ASSERT_TRUE(strstr(out, "line 4, column 16: handlers.k.processes needs"
                            " handlers.k.persistent: true") != NULL);
    free(out);
    bad = fl_file(".yaml", "handlers:\n  k:\n    command: [/bin/cat]\n"
                           "    persistent: yes please\n");
    rc = tl_skipq_run(NULL, NULL, &out, "worker --once --config %s", bad);
    printf("%s", out);
    ASSERT_EQ(rc, 2);
    ASSERT_TRUE(strstr(out, "line 4, column 17: handlers.k.persistent must be true or"
                            " false") != NULL);
    free(out);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
