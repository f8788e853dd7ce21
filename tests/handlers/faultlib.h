/*
 * faultlib.h - what the fault, accounting, hostile and privilege tests
 * share on top of testlib.h: worker processes that are always killed at
 * exit (even when an assertion fails), short config files, the `runs`
 * side table that tests/handlers/record.c fills, a private PostgreSQL
 * cluster for the tests that restart the server, and a deadline that
 * turns a hang into a failure with clean-up instead of a CTest kill.
 *
 * Static functions only: each test binary includes it once.
 */
#ifndef SKIPQ_FAULTLIB_H
#define SKIPQ_FAULTLIB_H

#include "testlib.h"

/* each test uses only some of these helpers */
#pragma GCC diagnostic ignored "-Wunused-function"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SKIPQ_TEST_HANDLER_DIR
#error "SKIPQ_TEST_HANDLER_DIR must name the directory of the built handlers"
#endif

#define FL_MAXPROC 128

static pid_t fl_procs[FL_MAXPROC];
static int fl_nprocs;
static bool fl_atexit_done;
static char fl_pgdir[256];
static char *fl_files[64];
static int fl_nfiles;

/* SKIPQ_LONG=1: the big variants. */
static bool
fl_long(void)
{
    const char *v = getenv("SKIPQ_LONG");
    return v && *v && strcmp(v, "0") != 0;
}

/* Built with AddressSanitizer (scripts/test.sh --sanitize): everything
 * runs 2-3x slower, so the tests that spawn a process per job scale their
 * job counts down; what they check stays the same. */
static bool
fl_sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return true;
#else
    return false;
#endif
}

/* Kill every process group we started, stopped ones too, and reap them. */
static void
fl_cleanup(void)
{
    for (int i = 0; i < fl_nprocs; i++) {
        if (fl_procs[i] <= 0)
            continue;
        tl_kill(fl_procs[i], SIGKILL);
        tl_kill(fl_procs[i], SIGCONT);
        kill(fl_procs[i], SIGKILL);
        (void)tl_wait_pid(fl_procs[i], 2000);
        fl_procs[i] = 0;
    }
    for (int i = 0; i < fl_nfiles; i++) {
        unlink(fl_files[i]);
        free(fl_files[i]);
    }
    fl_nfiles = 0;
}

static void
fl_on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "fault test: deadline passed, cleaning up\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    exit(1); /* runs the atexit clean-up: workers, database, cluster */
}

static void
fl_init_cleanup(void)
{
    if (fl_atexit_done)
        return;
    fl_atexit_done = true;
    atexit(fl_cleanup);
}

/* Fail (with clean-up) if the test is still running after `seconds`. */
static void
fl_deadline(unsigned seconds)
{
    signal(SIGALRM, fl_on_alarm);
    alarm(seconds);
}

/* Start a shell command line in its own process group; killed at exit. */
static pid_t fl_spawn(const char *log, const char *fmt, ...) TL_PRINTF(2, 3);
static pid_t
fl_spawn(const char *log, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&cmd, fmt, ap) < 0)
        HARNESS_FAIL("out of memory");
    va_end(ap);
    fl_init_cleanup();
    if (fl_nprocs == FL_MAXPROC)
        HARNESS_FAIL("too many processes");
    pid_t pid = tl_spawn(log, "%s", cmd);
    if (pid <= 0)
        HARNESS_FAIL("could not start %s", cmd);
    fl_procs[fl_nprocs++] = pid;
    free(cmd);
    return pid;
}

/* Forget a process we reaped ourselves. */
static void
fl_forget(pid_t pid)
{
    for (int i = 0; i < fl_nprocs; i++)
        if (fl_procs[i] == pid)
            fl_procs[i] = 0;
}

/* Wait for a worker to exit; its status (or 128+signal), -1 on timeout. */
static int
fl_wait_exit(pid_t pid, int ms)
{
    int st = tl_wait_pid(pid, ms);
    if (st >= 0)
        fl_forget(pid);
    return st;
}

/* A temporary file with this text; removed at exit. Returns its path. */
static const char *fl_file(const char *suffix, const char *fmt, ...) TL_PRINTF(2, 3);
static const char *
fl_file(const char *suffix, const char *fmt, ...)
{
    char *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        HARNESS_FAIL("out of memory");
    va_end(ap);
    fl_init_cleanup();
    char *path = strdup(tl_tmpfile(suffix));
    tl_write_file(path, text);
    free(text);
    if (fl_nfiles < 64)
        fl_files[fl_nfiles++] = path;
    return path;
}

/* A log file path (kept in /tmp for the post-mortem, removed at exit). */
static const char *
fl_log(void)
{
    return fl_file(".log", "%s", "");
}

static const char *
fl_handler(const char *name)
{
    static char buf[4][512];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, 512, "%s/%s", SKIPQ_TEST_HANDLER_DIR, name);
    return p;
}

/*
 * A worker config: the timings the fault tests need (a short lease, fast
 * heartbeats and polls), plus extra YAML (handlers:, more worker keys
 * are not allowed twice, so pass them in `worker_extra`).
 */
static const char *
fl_worker_config(int concurrency, const char *poll, const char *worker_extra,
                 const char *rest)
{
    return fl_file(".yaml",
                   "worker:\n"
                   "  concurrency: %d\n"
                   "  poll_interval: %s\n"
                   "  heartbeat_interval: 500ms\n"
                   "  lease_timeout: 2s\n"
                   "  shutdown_timeout: 3s\n"
                   "%s"
                   "%s",
                   concurrency, poll, worker_extra ? worker_extra : "", rest ? rest : "");
}

/* `skipq worker --config CFG ARGS`, exec'd so the pid is the worker's. */
static pid_t
fl_worker(const char *log, const char *cfg, const char *args)
{
    return fl_spawn(log, "exec %s worker --config %s %s", tl_skipq(), cfg,
                    args ? args : "");
}

/* The side table record.c fills. */
static void
fl_runs_table(PGconn *pg)
{
    tl_exec(pg, "CREATE TABLE runs (job_id bigint NOT NULL, attempt int NOT NULL,"
                " pid int NOT NULL, ok boolean NOT NULL, worker bigint NOT NULL,"
                " at timestamptz NOT NULL DEFAULT clock_timestamp(),"
                " UNIQUE (job_id, attempt))");
}

/* The skipq.workers id of the worker process pid (waits for it to
 * register). */
static int64_t
fl_worker_id(PGconn *pg, pid_t pid)
{
    if (!tl_wait_int(pg, 20000, 1, "SELECT count(*) FROM skipq.workers WHERE pid = %d",
                     (int)pid))
        HARNESS_FAIL("worker %d did not register", (int)pid);
    return tl_int(pg, "SELECT id FROM skipq.workers WHERE pid = %d", (int)pid);
}

/* For wait_until: at least `want` jobs succeeded. */
struct fl_progress {
    PGconn *pg;
    int64_t want;
};

static bool
fl_done_at_least(void *arg)
{
    struct fl_progress *p = arg;
    return tl_int(p->pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'") >=
           p->want;
}

/* Jobs run more than once whose extra attempts are not all "worker N
 * lost" by one of the killed workers (ids "1,2,3"): 0 when every re-run
 * is explained by a kill. */
static int64_t
fl_lost_not_by(PGconn *pg, const char *killed_ids)
{
    return tl_int(pg,
                  "SELECT count(*) FROM skipq.jobs j WHERE j.attempts > 1 AND"
                  " (jsonb_array_length(j.errors) <> j.attempts - 1 OR EXISTS ("
                  "  SELECT 1 FROM jsonb_array_elements(j.errors) e"
                  "  WHERE NOT ((e->>'worker')::bigint = ANY ('{%s}'::bigint[])"
                  "   AND e->>'error' = 'worker ' || (e->>'worker') || ' lost')))",
                  killed_ids);
}

/* Still running? (Does not reap it: tl_wait_pid still gets its status.) */
static bool
fl_alive(pid_t pid)
{
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0)
        return false;
    return info.si_pid == 0;
}

/* Print a worker log (on failure, for the post-mortem). */
static void
fl_dump(const char *what, const char *log)
{
    char *out = NULL;
    tl_run(NULL, &out, NULL, "tail -n 40 %s", log);
    fprintf(stderr, "---- %s (%s) ----\n%s", what, log, out ? out : "");
    free(out);
}

/* ---- a private cluster, for the tests that restart the server ---------- */

static void
fl_destroy_cluster(void)
{
    if (fl_pgdir[0])
        tl_run(NULL, NULL, NULL, "%s/tests/pg.sh destroy %s", SKIPQ_TEST_SOURCE_DIR,
               fl_pgdir);
}

/*
 * Start a cluster of our own (tests/pg.sh) and point SKIPQ_TEST_PG at it,
 * with a migrated skipq_template, so tl_db() clones from it. Restarting
 * the shared cluster would break the tests CTest runs next to us.
 */
static void
fl_private_cluster(void)
{
    char *out = NULL, *err = NULL;
    snprintf(fl_pgdir, sizeof fl_pgdir, "/tmp/skipq-fault-pg-%d", (int)getpid());
    atexit(fl_destroy_cluster);
    int rc = tl_run(NULL, &out, &err, "%s/tests/pg.sh start %s", SKIPQ_TEST_SOURCE_DIR,
                    fl_pgdir);
    if (rc != 0)
        HARNESS_FAIL("could not start a private cluster: %s", err);
    char *p = strstr(out, "SKIPQ_TEST_PG=");
    if (!p)
        HARNESS_FAIL("pg.sh start printed no SKIPQ_TEST_PG: %s", out);
    p += strlen("SKIPQ_TEST_PG=");
    p[strcspn(p, "\n")] = '\0';
    setenv("SKIPQ_TEST_PG", p, 1);
    char base[512];
    snprintf(base, sizeof base, "%s", p);
    char *slash = strrchr(base, '/');
    if (slash)
        *slash = '\0';
    free(out);
    free(err);
    rc = tl_run(NULL, NULL, &err,
                "psql -Xq '%s/postgres' -c 'CREATE DATABASE skipq_template' && "
                "%s migrate --database '%s/skipq_template'",
                base, tl_skipq(), base);
    if (rc != 0)
        HARNESS_FAIL("could not make the template: %s", err);
    free(err);
}

/* Restart the private cluster (mode "fast" or "immediate") in the
 * background; returns the pid of the restarting process. */
static pid_t
fl_restart_async(const char *mode)
{
    return fl_spawn(NULL, "%s/tests/pg.sh restart %s %s", SKIPQ_TEST_SOURCE_DIR, fl_pgdir,
                    mode);
}

static bool
fl_ping(PGconn *pg)
{
    if (PQstatus(pg) != CONNECTION_OK)
        return false;
    PGresult *res = PQexec(pg, "SELECT 1");
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    return ok;
}

/* Reconnect pg until it works again (the server was restarted). */
static void
fl_reconnect(PGconn *pg, int ms)
{
    int64_t end = tl_now_ms() + ms;
    while (!fl_ping(pg)) {
        if (tl_now_ms() > end)
            HARNESS_FAIL("could not reconnect: %s", PQerrorMessage(pg));
        usleep(50000);
        PQreset(pg);
    }
    PQclear(PQexec(pg, "SET client_min_messages = warning"));
}

#endif
