/*
 * test_reload.c - `skipq worker` reloads its config on SIGHUP: a new
 * worker with the file as it is now takes over, the old one retires
 * (skipq_worker_retire: it stops claiming, hands back what it claimed
 * but did not start, and lets its running jobs finish with no deadline).
 *
 *   reload_under_load_runs_every_job_once   concurrency 4 -> 16 -> 4, three
 *                          times, with quick and 100-300 ms jobs queued:
 *                          every job succeeds once (attempts 1, and the
 *                          handler's own record lists each id once), the
 *                          skipq.workers rows and the running counts show
 *                          each concurrency in force, the old workers go
 *   broken_config_on_reload_keeps_the_old_one   a YAML syntax error and a
 *                          value out of range are refused with their line;
 *                          the worker keeps its config and keeps working
 *   reload_that_cannot_start_keeps_the_old_worker   a file the server
 *                          refuses when the new worker starts (a schedule's
 *                          time zone): the old worker was not retired yet
 *                          and carries on
 *   reload_adds_a_handler  a kind added by a reload is run afterwards, and
 *                          a --handler given at the start still is
 *   two_retirements_drain_at_once   a reload while an old worker still
 *                          drains: two old ones finish their jobs side by
 *                          side, claiming nothing, while the new one works
 *   sigterm_while_retiring_stops_with_the_deadline   a SIGTERM during a
 *                          retirement stops old and new workers as usual
 */
#include "../handlers/faultlib.h"

#include <stdio.h>

/* A worker config: concurrency n (prefetch 0, so a job is `running` only
 * while it runs), the persistent handler `p` with n processes, plus
 * extra handlers. */
static char *
config_text(int n, const char *extra)
{
    char *text = NULL;
    if (asprintf(&text,
                 "worker:\n"
                 "  concurrency: %d\n"
                 "  prefetch: 0\n"
                 "  poll_interval: 200ms\n"
                 "  heartbeat_interval: 500ms\n"
                 "  lease_timeout: 5s\n"
                 "  shutdown_timeout: 3s\n"
                 "handlers:\n"
                 "  p:\n"
                 "    command: [%s]\n"
                 "    persistent: true\n"
                 "    processes: %d\n"
                 "%s",
                 n, fl_handler("persist"), n, extra ? extra : "") < 0)
        HARNESS_FAIL("out of memory");
    return text;
}

static void
write_config(const char *path, int n, const char *extra)
{
    char *text = config_text(n, extra);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    tl_write_file(tmp, text); /* whole, so a reload never reads half a file */
    if (rename(tmp, path) != 0)
        HARNESS_FAIL("could not rename %s", tmp);
    free(text);
}

/* The worker's log (it starts on SIGHUP's reload of path). */
static pid_t
start_worker(PGconn *pg, const char *log, const char *cfg)
{
    pid_t w = fl_worker(log, cfg, NULL);
    (void)fl_worker_id(pg, w);
    return w;
}

/* Times needle occurs in the file at path. */
static int
count_in_file(const char *path, const char *needle)
{
    char *out = NULL;
    int n = 0;
    char *q = tl_shq(needle);
    tl_run(NULL, &out, NULL, "grep -cF -- %s %s", q, path);
    if (out)
        n = atoi(out);
    free(q);
    free(out);
    return n;
}

struct file_count {
    const char *path, *needle;
    int want;
};

static bool
file_count_reached(void *arg)
{
    struct file_count *c = arg;
    return count_in_file(c->path, c->needle) >= c->want;
}

/* Wait for the n-th line holding needle in the log. */
static void
wait_log(const char *log, const char *needle, int n)
{
    struct file_count c = {log, needle, n};
    if (!wait_until(20000, file_count_reached, &c)) {
        fl_dump("worker", log);
        HARNESS_FAIL("no %d lines with \"%s\" in the log", n, needle);
    }
}

/* The id of the worker row with concurrency n registered after `after`. */
static int64_t
wait_worker(PGconn *pg, const char *log, int n, int64_t after)
{
    if (!tl_wait_int(pg, 20000, 1,
                     "SELECT count(*) FROM skipq.workers WHERE concurrency = %d"
                     " AND id > %" PRId64,
                     n, after)) {
        fl_dump("worker", log);
        HARNESS_FAIL("no worker of concurrency %d took over", n);
    }
    return tl_int(pg,
                  "SELECT max(id) FROM skipq.workers WHERE concurrency = %d"
                  " AND id > %" PRId64,
                  n, after);
}

/* Jobs running under worker id, polled until none is queued; the most
 * seen at once. */
static int64_t
max_running_until_drained(PGconn *pg, int64_t id)
{
    int64_t most = 0, end = tl_now_ms() + 30000;
    for (;;) {
        int64_t n = tl_int(pg,
                           "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"
                           " AND locked_by = %" PRId64,
                           id);
        if (n > most)
            most = n;
        if (tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'") == 0)
            return most;
        if (tl_now_ms() > end)
            HARNESS_FAIL("the queue did not drain");
        usleep(5000);
    }
}

/* Quick jobs, and every 15th one sleeping 100 to 300 ms. */
static void
enqueue_load(PGconn *pg, int from, int to)
{
    tl_exec(pg,
            "SELECT count(skipq.enqueue('p', CASE WHEN g %% 15 = 0"
            " THEN jsonb_build_object('sleep_ms', 100 + (g * 37) %% 201)"
            " ELSE jsonb_build_object('i', g) END)) FROM generate_series(%d, %d) g",
            from, to);
}

/* Each job id in the handler's record of runs ("<id> <pid>" lines): how
 * many ids ran other than once; *lines: the lines read. */
static int
ids_not_run_once(PGconn *pg, const char *runs, int *lines)
{
    int64_t lo = tl_int(pg, "SELECT min(id) FROM skipq.jobs");
    int64_t hi = tl_int(pg, "SELECT max(id) FROM skipq.jobs");
    int *seen = calloc((size_t)(hi - lo + 1), sizeof *seen);
    FILE *f = fopen(runs, "r");
    long long id, pid;
    int bad = 0;

    *lines = 0;
    if (!seen || !f)
        HARNESS_FAIL("could not read %s", runs);
    while (fscanf(f, "%lld %lld", &id, &pid) == 2) {
        (*lines)++;
        if (id < lo || id > hi)
            bad++;
        else
            seen[id - lo]++;
    }
    fclose(f);
    for (int64_t i = 0; i <= hi - lo; i++)
        bad += seen[i] != 1;
    free(seen);
    return bad;
}

TEST(reload_under_load_runs_every_job_once)
{
    PGconn *pg = tl_db();
    const int rounds = fl_long() ? 10 : 3, big = fl_sanitized() ? 350 : 700,
              small = fl_sanitized() ? 100 : 200;
    fl_deadline(250);
    const char *runs = fl_file(".runs", "%s", "");
    unlink(runs);
    setenv("PERSIST_RUNS", runs, 1);
    const char *cfg = fl_file(".yaml", "%s", "");
    write_config(cfg, 4, NULL);
    const char *log = fl_log();
    pid_t w = start_worker(pg, log, cfg);
    int64_t id4 = wait_worker(pg, log, 4, 0);
    int total = 0;

    for (int r = 1; r <= rounds; r++) {
        /* up to 16, and load for it */
        write_config(cfg, 16, NULL);
        kill(w, SIGHUP);
        int64_t id16 = wait_worker(pg, log, 16, id4);
        enqueue_load(pg, total + 1, total + big);
        total += big;
        /* more than the old 4 at once: the new concurrency is in force */
        if (!tl_wait_int(pg, 20000, 1,
                         "SELECT (count(*) > 4)::int FROM skipq.jobs"
                         " WHERE status = 'running' AND locked_by = %" PRId64,
                         id16)) {
            fl_dump("worker", log);
            HARNESS_FAIL("worker %" PRId64 " never ran more than 4 jobs", id16);
        }
        /* back to 4 while that one runs jobs: they finish there */
        write_config(cfg, 4, NULL);
        kill(w, SIGHUP);
        id4 = wait_worker(pg, log, 4, id16);
        if (!tl_wait_int(pg, 20000, 0,
                         "SELECT count(*) FROM skipq.workers WHERE id < %" PRId64, id4)) {
            fl_dump("worker", log);
            HARNESS_FAIL("the retired workers did not unregister");
        }
        enqueue_load(pg, total + 1, total + small);
        total += small;
        int64_t most = max_running_until_drained(pg, id4);
        ASSERT_TRUE(most <= 4);
    }
    wait_log(log, "concurrency 4 -> 16", rounds);
    wait_log(log, "concurrency 16 -> 4", rounds);
    if (!tl_wait_int(pg, 30000, total,
                     "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'")) {
        fl_dump("worker", log);
        HARNESS_FAIL("not every job succeeded");
    }
    /* once each: no attempt counted twice, none run twice */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), total);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE attempts <> 1"), 0);
    int lines = 0;
    ASSERT_EQ(ids_not_run_once(pg, runs, &lines), 0);
    ASSERT_EQ(lines, total);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 1);
    ASSERT_EQ(tl_int(pg, "SELECT concurrency FROM skipq.workers"), 4);
    kill(w, SIGTERM);
    ASSERT_EQ(fl_wait_exit(w, 20000), 0);
}

/* The refused line of the log, once there are n of them (malloc'd). */
static char *
refused_line(const char *log, int n)
{
    char *out = NULL;
    wait_log(log, "reload refused", n);
    tl_run(NULL, &out, NULL, "grep -F 'reload refused' %s | sed -n %dp", log, n);
    return out;
}

static void
expect_job_runs(PGconn *pg, const char *log, const char *kind)
{
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('%s')", kind);
    if (!tl_wait_int(pg, 20000, 1,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND status = 'succeeded'",
                     id)) {
        fl_dump("worker", log);
        HARNESS_FAIL("job %" PRId64 " of kind %s did not run", id, kind);
    }
}

TEST(broken_config_on_reload_keeps_the_old_one)
{
    PGconn *pg = tl_db();
    fl_deadline(90);
    const char *cfg = fl_file(".yaml", "%s", "");
    write_config(cfg, 2, "  ok:\n    command: 'true'\n");
    const char *log = fl_log();
    pid_t w = start_worker(pg, log, cfg);
    int64_t id = wait_worker(pg, log, 2, 0);

    /* a syntax error: the flow sequence on line 3 is never closed */
    tl_write_file(cfg, "worker:\n"
                       "  concurrency: 8\n"
                       "  queues: [default, other\n"
                       "handlers:\n"
                       "  ok:\n"
                       "    command: 'true'\n");
    kill(w, SIGHUP);
    char *line = refused_line(log, 1);
    if (!strstr(line, "the old config stays") || !strstr(line, "line 3, column")) {
        fl_dump("worker", log);
        HARNESS_FAIL("the refusal does not name line 3: %s", line);
    }
    free(line);
    expect_job_runs(pg, log, "ok");

    /* a value out of range, on line 2 */
    tl_write_file(cfg, "worker:\n"
                       "  concurrency: 0\n"
                       "handlers:\n"
                       "  ok:\n"
                       "    command: 'true'\n");
    kill(w, SIGHUP);
    line = refused_line(log, 2);
    if (!strstr(line, "line 2, column") || !strstr(line, "concurrency")) {
        fl_dump("worker", log);
        HARNESS_FAIL("the refusal does not name line 2: %s", line);
    }
    free(line);

    /* the same worker, with the old config, still at work */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 1);
    ASSERT_EQ(tl_int(pg, "SELECT id FROM skipq.workers"), id);
    ASSERT_EQ(tl_int(pg, "SELECT concurrency FROM skipq.workers"), 2);
    expect_job_runs(pg, log, "ok");
    ASSERT_TRUE(fl_alive(w));
    ASSERT_EQ(count_in_file(log, "reloaded"), 0);

    /* and a good file after the bad ones is taken */
    write_config(cfg, 3, "  ok:\n    command: 'true'\n");
    kill(w, SIGHUP);
    (void)wait_worker(pg, log, 3, id);
    expect_job_runs(pg, log, "ok");
    kill(w, SIGTERM);
    ASSERT_EQ(fl_wait_exit(w, 20000), 0);
}

TEST(reload_that_cannot_start_keeps_the_old_worker)
{
    PGconn *pg = tl_db();
    fl_deadline(90);
    const char *cfg = fl_file(".yaml", "%s", "");
    write_config(cfg, 2, "  ok:\n    command: 'true'\n");
    const char *log = fl_log();
    pid_t w = start_worker(pg, log, cfg);
    int64_t id = wait_worker(pg, log, 2, 0);

    /* valid YAML whose schedule the server refuses when the new worker
     * starts: the old one must not have retired by then */
    write_config(cfg, 3,
                 "  ok:\n    command: 'true'\n"
                 "schedules:\n"
                 "  nightly:\n"
                 "    cron: \"0 3 * * *\"\n"
                 "    kind: ok\n"
                 "    time_zone: Nowhere/Atlantis\n");
    kill(w, SIGHUP);
    wait_log(log, "reload failed, the old config stays", 1);
    ASSERT_EQ(count_in_file(log, "retiring"), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 1);
    ASSERT_EQ(tl_int(pg, "SELECT id FROM skipq.workers"), id);
    expect_job_runs(pg, log, "ok");

    /* the next good file is taken as usual */
    write_config(cfg, 3, "  ok:\n    command: 'true'\n");
    kill(w, SIGHUP);
    (void)wait_worker(pg, log, 3, id);
    wait_log(log, "took over", 1);
    /* measured against the config in force, not the one refused */
    wait_log(log, "concurrency 2 -> 3", 2);
    expect_job_runs(pg, log, "ok");
    kill(w, SIGTERM);
    ASSERT_EQ(fl_wait_exit(w, 20000), 0);
}

TEST(reload_adds_a_handler)
{
    PGconn *pg = tl_db();
    fl_deadline(90);
    const char *cfg = fl_file(".yaml", "%s", "");
    write_config(cfg, 2, "  ok:\n    command: 'true'\n");
    const char *log = fl_log();
    /* a flag given at the start is applied over every reloaded file */
    pid_t w = fl_worker(log, cfg, "--handler flagged=true");
    int64_t id = wait_worker(pg, log, 2, 0);

    /* no handler for `late` yet: it waits */
    int64_t late = tl_int(pg, "SELECT skipq.enqueue('late')");
    expect_job_runs(pg, log, "ok");
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND status = 'queued'",
                     late),
              1);

    write_config(cfg, 2, "  ok:\n    command: 'true'\n  late:\n    command: 'true'\n");
    kill(w, SIGHUP);
    wait_log(log, "kinds added: late", 1);
    (void)wait_worker(pg, log, 2, id);
    if (!tl_wait_int(pg, 20000, 1,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND status = 'succeeded' AND attempts = 1",
                     late)) {
        fl_dump("worker", log);
        HARNESS_FAIL("the kind added by the reload did not run");
    }
    expect_job_runs(pg, log, "flagged");
    kill(w, SIGTERM);
    ASSERT_EQ(fl_wait_exit(w, 20000), 0);
}

TEST(two_retirements_drain_at_once)
{
    PGconn *pg = tl_db();
    fl_deadline(90);
    const char *runs = fl_file(".runs", "%s", "");
    unlink(runs);
    setenv("PERSIST_RUNS", runs, 1);
    const char *cfg = fl_file(".yaml", "%s", "");
    write_config(cfg, 2, NULL);
    const char *log = fl_log();
    pid_t w = start_worker(pg, log, cfg);
    int64_t id2 = wait_worker(pg, log, 2, 0);

    /* each worker in turn holds a job of 3 s when the next reload comes */
    const char *slow = "SELECT skipq.enqueue('p', '{\"sleep_ms\": 3000}')";
    const char *running = "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"
                          " AND locked_by = %" PRId64;
    (void)tl_int(pg, "%s", slow);
    ASSERT_TRUE(tl_wait_int(pg, 20000, 1, running, id2));
    write_config(cfg, 3, NULL);
    kill(w, SIGHUP);
    int64_t id3 = wait_worker(pg, log, 3, id2);
    wait_log(log, "took over", 1); /* until then the old one claims too */
    (void)tl_int(pg, "%s", slow);
    ASSERT_TRUE(tl_wait_int(pg, 20000, 1, running, id3));
    write_config(cfg, 4, NULL);
    kill(w, SIGHUP);
    int64_t id4 = wait_worker(pg, log, 4, id3);
    wait_log(log, "took over", 2);

    /* both old ones still run their jobs, and claim nothing more */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 3);
    int64_t quick = tl_int(pg, "SELECT skipq.enqueue('p', '{}')");
    ASSERT_TRUE(tl_wait_int(pg, 20000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                            " AND status = 'succeeded'",
                            quick));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 3);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"
                     " AND locked_by NOT IN (%" PRId64 ", %" PRId64 ")",
                     id2, id3),
              0);
    /* then they finish, each job once, and the old workers go */
    if (!tl_wait_int(pg, 20000, 1, "SELECT count(*) FROM skipq.workers")) {
        fl_dump("worker", log);
        HARNESS_FAIL("the retired workers did not go");
    }
    ASSERT_EQ(tl_int(pg, "SELECT id FROM skipq.workers"), id4);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"
                         " WHERE status = 'succeeded' AND attempts = 1"),
              3);
    int lines = 0;
    ASSERT_EQ(ids_not_run_once(pg, runs, &lines), 0);
    ASSERT_EQ(lines, 3);
    kill(w, SIGTERM);
    ASSERT_EQ(fl_wait_exit(w, 20000), 0);
}

TEST(sigterm_while_retiring_stops_with_the_deadline)
{
    PGconn *pg = tl_db();
    fl_deadline(90);
    const char *runs = fl_file(".runs", "%s", "");
    unlink(runs);
    setenv("PERSIST_RUNS", runs, 1);
    const char *cfg = fl_file(".yaml", "%s", "");
    write_config(cfg, 2, NULL);
    const char *log = fl_log();
    pid_t w = start_worker(pg, log, cfg);
    int64_t id = wait_worker(pg, log, 2, 0);

    /* a job that outlasts shutdown_timeout (3 s) holds the old worker */
    int64_t slow = tl_int(pg, "SELECT skipq.enqueue('p', '{\"sleep_ms\": 60000}')");
    ASSERT_TRUE(tl_wait_int(pg, 20000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                            " AND status = 'running'",
                            slow));
    write_config(cfg, 3, NULL);
    kill(w, SIGHUP);
    (void)wait_worker(pg, log, 3, id);
    wait_log(log, "retiring", 1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 2);

    /* the stop ends both within the deadline, the slow job handed back */
    int64_t t0 = tl_now_ms();
    kill(w, SIGTERM);
    ASSERT_EQ(fl_wait_exit(w, 20000), 0);
    ASSERT_TRUE(tl_now_ms() - t0 < 10000);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 0);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND status = 'queued' AND attempts = 0",
                     slow),
              1);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
