/*
 * test_handlers.c - handler processes and threads against what they, and
 * the world around the worker, may do:
 *
 *   setsid_grandchild_*    a command that leaves a descendant in a session
 *                          of its own holding its stdout: the job still
 *                          ends at its exit, its deadline or a stop, and
 *                          the worker's shutdown keeps its timeout
 *   kill_9_*               handlers (and their children) die with their
 *                          worker, and with a supervisor killed above it
 *   sighup_*               `skipq worker` logs SIGHUP, reloads and carries
 *                          on; a supervisor forwards it to its child
 *   sigterm_right_after_fork_*  a SIGTERM between the supervisor's fork
 *                          and its recording the child is still forwarded
 *   c_handler_stack_*      C handlers get a main-thread-sized stack, and
 *                          worker.handler_stack_size sets it
 */
#include "../handlers/faultlib.h"
#include "skipq.h"

#include <dirent.h>
#include <poll.h>

/* ---- processes ----------------------------------------------------------- */

/* Processes a handler left in a session of its own, killed at exit. */
static pid_t strays[64];
static int nstrays;

static void
kill_strays(void)
{
    for (int i = 0; i < nstrays; i++)
        if (strays[i] > 0)
            kill(strays[i], SIGKILL);
}

static void
add_stray(pid_t pid)
{
    if (nstrays == 0)
        atexit(kill_strays);
    if (nstrays < 64)
        strays[nstrays++] = pid;
}

/* State letter of /proc/PID/stat, and its process group; 0 when gone. */
static char
proc_state(pid_t pid, pid_t *pgrp)
{
    char path[64], text[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *rp = strrchr(text, ')'); /* the name may hold spaces */
    char state = 0;
    int ppid = 0, grp = 0;
    if (!rp || sscanf(rp + 1, " %c %d %d", &state, &ppid, &grp) != 3)
        return 0;
    if (pgrp)
        *pgrp = grp;
    return state;
}

/* Running: there, and not a zombie waiting for a parent to reap it. */
static bool
proc_running(pid_t pid)
{
    char st = proc_state(pid, NULL);
    return st != 0 && st != 'Z' && st != 'X';
}

/* How many live processes are in process group pgrp. */
static int
group_size(pid_t pgrp)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;
    if (!d)
        HARNESS_FAIL("could not open /proc");
    while ((e = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atoi(e->d_name);
        pid_t g = 0;
        if (pid <= 0)
            continue;
        char st = proc_state(pid, &g);
        if (st != 0 && st != 'Z' && st != 'X' && g == pgrp)
            n++;
    }
    closedir(d);
    return n;
}

/* Whitespace-separated pids from a file the handlers append to. */
static int
read_pids(const char *path, pid_t *pids, int max)
{
    FILE *f = fopen(path, "r");
    int n = 0, v;
    if (!f)
        return 0;
    while (n < max && fscanf(f, "%d", &v) == 1)
        pids[n++] = (pid_t)v;
    fclose(f);
    return n;
}

struct pidfile {
    const char *path;
    int want;
};

static bool
has_pids(void *arg)
{
    struct pidfile *p = arg;
    pid_t pids[64];
    return read_pids(p->path, pids, 64) >= p->want;
}

struct pidset {
    pid_t pids[64];
    int n;
    pid_t group; /* also none left in this process group (0: no check) */
};

static bool
all_gone(void *arg)
{
    struct pidset *s = arg;
    for (int i = 0; i < s->n; i++)
        if (proc_running(s->pids[i]))
            return false;
    return s->group <= 0 || group_size(s->group) == 0;
}

static void
report_survivors(const struct pidset *s)
{
    for (int i = 0; i < s->n; i++)
        if (proc_running(s->pids[i])) {
            char *out = NULL;
            tl_run(NULL, &out, NULL, "ps -o pid,ppid,pgid,sid,stat,args -p %d",
                   (int)s->pids[i]);
            fprintf(stderr, "still running:\n%s", out ? out : "");
            free(out);
            kill(s->pids[i], SIGKILL);
        }
}

/* A handler command that leaves `sleep SECS` in a session of its own,
 * holding the job's stdout and stderr, and returns only once that child
 * is in place (its pid in pidfile), then runs `rest`. */
static const char *
setsid_command(const char *pidfile, const char *secs, const char *rest)
{
    static char buf[4][1024];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, 1024,
             "setsid sh -c 'echo $$ > %s; exec sleep %s' & "
             "while [ ! -s %s ]; do sleep 0.01; done; %s",
             pidfile, secs, pidfile, rest);
    return p;
}

/* ---- a descendant that left the group holds the pipes ---------------------- */

TEST(setsid_grandchild_does_not_hold_the_job_or_its_deadline)
{
    PGconn *pg = tl_db();
    fl_deadline(90);
    const char *fin_pid = tl_tmpfile(".pid"), *run_pid = tl_tmpfile(".pid");
    char rest[2048];
    snprintf(rest, sizeof rest,
             "handlers:\n"
             "  fin:\n"
             "    command: \"%s\"\n"
             "    timeout: 2s\n"
             "  run:\n"
             "    command: \"%s\"\n"
             "    timeout: 1s\n",
             setsid_command(fin_pid, "30.91", "echo done"),
             setsid_command(run_pid, "30.92", "exec sleep 20"));
    const char *cfg = fl_worker_config(2, "200ms", NULL, rest);
    int64_t fin = tl_int(pg, "SELECT skipq.enqueue('fin', max_attempts => 1)");
    int64_t run = tl_int(pg, "SELECT skipq.enqueue('run', max_attempts => 1)");

    /* fin exits at once, run at its 1 s timeout: both leave a sleep
     * holding their stdout for 30 s */
    int64_t t0 = tl_now_ms();
    char *err = NULL;
    int rc = tl_skipq_run(NULL, NULL, &err, "worker --once --config %s", cfg);
    int64_t took = tl_now_ms() - t0;
    pid_t p[2] = {0, 0};
    if (read_pids(fin_pid, &p[0], 1) == 1)
        add_stray(p[0]);
    if (read_pids(run_pid, &p[1], 1) == 1)
        add_stray(p[1]);
    printf("worker --once took %lld ms\n", (long long)took);
    if (rc != 0)
        fprintf(stderr, "%s", err ? err : "");
    ASSERT_EQ(rc, 0);
    /* the 2 s timeout and startup, not the 30 s of the stray sleep */
    ASSERT_TRUE(took < 4000 + (fl_sanitized() ? 3000 : 0));
    char *s = tl_str(pg,
                     "SELECT status || ' ' || result::text FROM skipq.jobs"
                     " WHERE id = %" PRId64,
                     fin);
    ASSERT_STREQ(s, "succeeded {\"output\": \"done\\n\"}");
    free(s);
    s = tl_str(pg,
               "SELECT status || ': ' || last_error FROM skipq.jobs"
               " WHERE id = %" PRId64,
               run);
    ASSERT_STREQ(s, "failed: timed out after 1s");
    free(s);
    /* the strays were really there all along: out of the group's reach */
    ASSERT_TRUE(proc_running(p[0]));
    ASSERT_TRUE(proc_running(p[1]));
    free(err);
}

TEST(setsid_grandchild_does_not_hold_the_shutdown)
{
    PGconn *pg = tl_db();
    fl_deadline(90);
    const char *fin_pid = tl_tmpfile(".pid"), *run_pid = tl_tmpfile(".pid");
    const char *cfg = fl_file(".yaml",
                              "worker:\n"
                              "  concurrency: 2\n"
                              "  poll_interval: 200ms\n"
                              "  shutdown_timeout: 1s\n"
                              "handlers:\n"
                              "  fin:\n"
                              "    command: \"%s\"\n"
                              "  run:\n"
                              "    command: \"%s\"\n",
                              setsid_command(fin_pid, "30.93", "echo done"),
                              setsid_command(run_pid, "30.94", "exec sleep 20"));
    int64_t fin = tl_int(pg, "SELECT skipq.enqueue('fin')");
    int64_t run = tl_int(pg, "SELECT skipq.enqueue('run')");
    const char *log = fl_log();
    pid_t w = fl_worker(log, cfg, NULL);
    struct pidfile f1 = {fin_pid, 1}, f2 = {run_pid, 1};
    ASSERT_TRUE(wait_until(20000, has_pids, &f1));
    ASSERT_TRUE(wait_until(20000, has_pids, &f2));
    pid_t p[2] = {0, 0};
    ASSERT_EQ(read_pids(fin_pid, &p[0], 1), 1);
    ASSERT_EQ(read_pids(run_pid, &p[1], 1), 1);
    add_stray(p[0]);
    add_stray(p[1]);

    /* fin has exited (or is about to); run is running */
    int64_t t0 = tl_now_ms();
    kill(w, SIGTERM);
    int st = fl_wait_exit(w, 20000);
    int64_t took = tl_now_ms() - t0;
    printf("stopped %lld ms after SIGTERM (shutdown_timeout 1s)\n", (long long)took);
    if (st != 0)
        fl_dump("worker", log);
    ASSERT_EQ(st, 0);
    ASSERT_TRUE(took < 2500 + (fl_sanitized() ? 2000 : 0));
    /* what finished is recorded as finished, never handed back to run
     * again; what still ran at the timeout is handed back */
    char *s = tl_str(pg,
                     "SELECT status || ' ' || attempts FROM skipq.jobs"
                     " WHERE id = %" PRId64,
                     fin);
    ASSERT_STREQ(s, "succeeded 1");
    free(s);
    s = tl_str(pg, "SELECT status || ' ' || attempts FROM skipq.jobs WHERE id = %" PRId64,
               run);
    ASSERT_STREQ(s, "queued 0");
    free(s);
}

/* ---- handlers die with their worker ----------------------------------------- */

/* Each job's shell and the sleep it started in its group, appended to
 * pidfile, then it waits. */
static const char *
group_command(const char *pidfile, const char *secs)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "sleep %s & echo $$ $! >> %s; wait", secs, pidfile);
    return buf;
}

TEST(kill_9_worker_takes_its_handlers_with_it)
{
    PGconn *pg = tl_db();
    fl_deadline(90);
    const char *pids = tl_tmpfile(".pids");
    char rest[1024];
    snprintf(rest, sizeof rest, "handlers:\n  grp:\n    command: \"%s\"\n",
             group_command(pids, "31.1"));
    const char *cfg = fl_worker_config(3, "200ms", NULL, rest);
    tl_exec(pg, "SELECT skipq.enqueue('grp') FROM generate_series(1, 3)");
    const char *log = fl_log();
    pid_t w = fl_worker(log, cfg, NULL);
    struct pidfile f = {pids, 6};
    if (!wait_until(20000, has_pids, &f)) {
        fl_dump("worker", log);
        HARNESS_FAIL("the handlers did not start");
    }
    struct pidset s = {.group = w}; /* the worker's group: the reaper too */
    s.n = read_pids(pids, s.pids, 64);
    ASSERT_EQ(s.n, 6);

    kill(w, SIGKILL); /* the worker process alone, not its group */
    ASSERT_EQ(fl_wait_exit(w, 5000), 128 + SIGKILL);
    if (!wait_until(1000, all_gone, &s)) {
        report_survivors(&s);
        HARNESS_FAIL("handler processes outlived their worker by a second");
    }
}

static int
run_command_worker(void *ud)
{
    skipq_config *cfg = ud;
    skipq_error err;
    skipq_worker *w = NULL;
    if (skipq_worker_new(cfg, &w, &err) != SKIPQ_OK) {
        fprintf(stderr, "worker: %s\n", err.message);
        return 1;
    }
    skipq_rc rc = skipq_worker_run(w, &err);
    if (rc != SKIPQ_OK)
        fprintf(stderr, "worker: %s\n", err.message);
    skipq_worker_free(w);
    return rc == SKIPQ_OK ? 0 : 1;
}

TEST(kill_9_supervisor_takes_worker_and_handlers_with_it)
{
    PGconn *pg = tl_db();
    fl_deadline(90);
    skipq_error err;
    const char *pids = tl_tmpfile(".pids");
    skipq_config *cfg = skipq_config_new();
    ASSERT_OK(skipq_config_set_concurrency(cfg, 2, &err), &err);
    ASSERT_OK(skipq_config_set_poll_interval(cfg, 200, &err), &err);
    ASSERT_OK(skipq_config_set_database(cfg, tl_url(), &err), &err);
    ASSERT_OK(skipq_config_set_handler_shell(cfg, "grp", group_command(pids, "31.2"), 0,
                                             &err),
              &err);
    tl_exec(pg, "SELECT skipq.enqueue('grp') FROM generate_series(1, 2)");

    pid_t sup = fork();
    if (sup == 0) {
        setpgid(0, 0);
        int status = 0;
        skipq_rc rc = skipq_supervise(cfg, tl_url(), run_command_worker, cfg, &status,
                                      &err);
        _exit(rc != SKIPQ_OK ? 100 : status);
    }
    setpgid(sup, sup);
    struct pidfile f = {pids, 4};
    if (!wait_until(20000, has_pids, &f)) {
        kill(-sup, SIGKILL);
        HARNESS_FAIL("the handlers did not start");
    }
    struct pidset s = {.group = sup}; /* supervisor, worker and reaper */
    s.n = read_pids(pids, s.pids, 63);
    ASSERT_EQ(s.n, 4);
    s.pids[s.n++] = (pid_t)tl_int(pg, "SELECT pid FROM skipq.workers");

    kill(sup, SIGKILL);
    ASSERT_EQ(tl_wait_pid(sup, 5000), 128 + SIGKILL);
    if (!wait_until(1000, all_gone, &s)) {
        report_survivors(&s);
        kill(-sup, SIGKILL);
        HARNESS_FAIL("the worker or its handlers outlived the supervisor by a second");
    }
    skipq_config_free(cfg);
}

/* ---- SIGHUP -------------------------------------------------------------------- */

TEST(sighup_is_logged_and_skipq_worker_carries_on)
{
    PGconn *pg = tl_db();
    fl_deadline(90);
    const char *cfg = fl_worker_config(2, "200ms", NULL,
                                       "handlers:\n  ok:\n    command: true\n");
    const char *log = fl_log();
    pid_t w = fl_worker(log, cfg, NULL);
    (void)fl_worker_id(pg, w);
    kill(w, SIGHUP);
    if (!tl_wait_file_has(log, "SIGHUP", 10000)) {
        fl_dump("worker", log);
        HARNESS_FAIL("SIGHUP was not logged");
    }
    ASSERT_TRUE(fl_alive(w));
    /* and it still works */
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('ok')");
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                            " AND status = 'succeeded'",
                            id));
    kill(w, SIGHUP);
    kill(w, SIGTERM);
    ASSERT_EQ(fl_wait_exit(w, 10000), 0);
}

/* A supervised child that reports on a pipe: "u" once its handlers are
 * in place, "h" for each SIGHUP; it returns 0 on SIGTERM. */
static int report_fd = -1;
static volatile sig_atomic_t child_stop;

static void
child_on_hup(int sig)
{
    (void)sig;
    ssize_t r = write(report_fd, "h", 1);
    (void)r;
}

static void
child_on_term(int sig)
{
    (void)sig;
    child_stop = 1;
}

static int
reporting_child(void *ud)
{
    (void)ud;
    signal(SIGHUP, child_on_hup);
    signal(SIGTERM, child_on_term);
    ssize_t r = write(report_fd, "u", 1);
    (void)r;
    while (!child_stop)
        usleep(10000);
    return 0;
}

/* Start skipq_supervise(reporting_child) in a process of its own, with
 * failpoint (may be NULL) set; *rfd gets the child's reports. */
static pid_t
start_reporting_supervisor(const char *failpoint, int *rfd)
{
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t sup = fork();
    if (sup == 0) {
        skipq_error err;
        setpgid(0, 0);
        close(fds[0]);
        report_fd = fds[1];
        if (failpoint)
            setenv("SKIPQ_FAILPOINT", failpoint, 1);
        skipq_config *cfg = skipq_config_new();
        int status = 0;
        skipq_rc rc = skipq_supervise(cfg, tl_url(), reporting_child, NULL, &status, &err);
        _exit(rc != SKIPQ_OK ? 100 : status);
    }
    setpgid(sup, sup);
    close(fds[1]);
    *rfd = fds[0];
    return sup;
}

/* The next report byte within ms, or 0. */
static char
next_report(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    char c = 0;
    if (poll(&p, 1, ms) == 1 && read(fd, &c, 1) == 1)
        return c;
    return 0;
}

TEST(sighup_is_forwarded_by_the_supervisor)
{
    (void)tl_db();
    fl_deadline(60);
    int rfd;
    pid_t sup = start_reporting_supervisor(NULL, &rfd);
    if (next_report(rfd, 10000) != 'u') {
        kill(-sup, SIGKILL);
        HARNESS_FAIL("the supervised child did not start");
    }
    kill(sup, SIGHUP);
    char c = next_report(rfd, 5000);
    if (c != 'h')
        kill(-sup, SIGKILL);
    ASSERT_EQ(c, 'h');
    ASSERT_TRUE(tl_wait_pid(sup, 200) < 0); /* still supervising */
    kill(sup, SIGTERM);
    int st = tl_wait_pid(sup, 10000);
    if (st < 0)
        kill(-sup, SIGKILL);
    ASSERT_EQ(st, 0);
    close(rfd);
}

TEST(sigterm_right_after_fork_is_forwarded_by_the_supervisor)
{
#ifndef SKIPQ_FAILPOINTS
    printf("SKIPPED sigterm_right_after_fork: this build has no failpoints "
           "(SKIPQ_FAILPOINTS=OFF)\n");
    return;
#else
    (void)tl_db();
    fl_deadline(60);
    int rfd;
    /* the failpoint holds the supervisor for 500 ms between its fork and
     * recording the child's pid: the SIGTERM lands in that window */
    pid_t sup = start_reporting_supervisor("supervise_after_fork", &rfd);
    if (next_report(rfd, 10000) != 'u') {
        kill(-sup, SIGKILL);
        HARNESS_FAIL("the supervised child did not start");
    }
    kill(sup, SIGTERM);
    int st = tl_wait_pid(sup, 5000);
    if (st < 0)
        kill(-sup, SIGKILL);
    ASSERT_EQ(st, 0);
    close(rfd);
#endif
}

/* ---- C handlers' stacks --------------------------------------------------------- */

static size_t deep_bytes;

/* Uses deep_bytes of its stack, as a handler with a big local buffer
 * (a JSON document, an image row, a recursive walk) does. */
static skipq_outcome
deep_handler(skipq_job *job, void *ud)
{
    (void)job;
    (void)ud;
    volatile char *big = __builtin_alloca(deep_bytes);
    for (size_t i = 0; i < deep_bytes; i++) /* deepest page first */
        big[i] = 1;
    return SKIPQ_JOB_OK;
}

/* Run one 'deep' job using `bytes` of stack in a worker (stack_size 0:
 * the default) in a process of its own; the process's exit status. */
static int
run_deep_job(PGconn *pg, size_t bytes, size_t stack_size)
{
    skipq_error err;
    tl_exec(pg, "DELETE FROM skipq.jobs");
    tl_exec(pg, "SELECT skipq.enqueue('deep', max_attempts => 1)");
    pid_t pid = fork();
    if (pid == 0) {
        skipq_worker *w = NULL;
        skipq_config *cfg = skipq_config_new();
        deep_bytes = bytes;
        if (!cfg || skipq_config_set_concurrency(cfg, 1, &err) ||
            skipq_config_set_poll_interval(cfg, 200, &err) ||
            skipq_config_set_database(cfg, tl_url(), &err) ||
            (stack_size && skipq_config_set_handler_stack_size(cfg, stack_size, &err)) ||
            skipq_worker_new(cfg, &w, &err) ||
            skipq_worker_register(w, "deep", deep_handler, NULL, &err))
            _exit(3);
        skipq_worker_set_once(w, 1);
        _exit(skipq_worker_run(w, &err) == SKIPQ_OK ? 0 : 4);
    }
    int st = tl_wait_pid(pid, 30000);
    if (st < 0) {
        kill(pid, SIGKILL);
        HARNESS_FAIL("the worker did not finish");
    }
    return st;
}

TEST(c_handler_stack_holds_a_megabyte_by_default)
{
    PGconn *pg = tl_db();
    fl_deadline(90);
    skipq_config *cfg = skipq_config_new();
    ASSERT_EQ(skipq_config_handler_stack_size(cfg), 8 << 20);
    skipq_config_free(cfg);

    /* a 1 MiB buffer: crashed the whole worker on 256 KiB stacks */
    ASSERT_EQ(run_deep_job(pg, 1 << 20, 0), 0);
    char *s = tl_str(pg, "SELECT status FROM skipq.jobs");
    ASSERT_STREQ(s, "succeeded");
    free(s);
}

TEST(c_handler_stack_size_is_configurable)
{
    PGconn *pg = tl_db();
    fl_deadline(90);
    skipq_error err;
    skipq_config *cfg = skipq_config_new();
    const char *yaml = "worker:\n  handler_stack_size: 16MB\n";
    ASSERT_OK(skipq_config_load_string(cfg, yaml, strlen(yaml), "t.yaml", &err), &err);
    ASSERT_EQ(skipq_config_handler_stack_size(cfg), 16 << 20);
    yaml = "worker:\n  handler_stack_size: 64KB\n";
    ASSERT_EQ(skipq_config_load_string(cfg, yaml, strlen(yaml), "t.yaml", &err),
              SKIPQ_ERR_CONFIG);
    ASSERT_CONTAINS(err.message, "line 2");
    ASSERT_CONTAINS(err.message, "handler_stack_size must be between 128KB and 1GB, "
                                 "not 65536 bytes");
    ASSERT_EQ(skipq_config_set_handler_stack_size(cfg, (size_t)2 << 30, &err),
              SKIPQ_ERR_INVALID);
    ASSERT_EQ(skipq_config_handler_stack_size(cfg), 16 << 20);
    skipq_config_free(cfg);

    /* the setting is what the executors get: 12 MiB fits in 16 MiB... */
    ASSERT_EQ(run_deep_job(pg, 12 << 20, 16 << 20), 0);
    char *s = tl_str(pg, "SELECT status FROM skipq.jobs");
    ASSERT_STREQ(s, "succeeded");
    free(s);
    /* ...and 1 MiB does not fit in 256 KiB (the worker process dies) */
    ASSERT_TRUE(run_deep_job(pg, 1 << 20, 256 << 10) != 0);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
