/*
 * supervise.c - run a worker in a child process and outlive its crashes.
 *
 * A C handler runs inside the worker process, so a segfault in it kills
 * the worker. The supervising parent sees the child die by a signal,
 * records "worker lost (SIGSEGV)" on the jobs that child held (re-queued,
 * or failed when their attempts are spent, so a job that crashes its
 * worker every time cannot loop), and starts a new child. The child dies
 * with the parent (PR_SET_PDEATHSIG), so kill -9 of the parent still stops
 * everything, and its jobs are rescued as usual.
 *
 * SIGTERM and SIGINT are forwarded to the child and end the supervision
 * once it exits; SIGHUP is forwarded only (the child decides what it
 * means). They are blocked from before the fork until the child's pid is
 * recorded, so none can arrive in between and go unforwarded.
 */
#include "worker_internal.h" /* skipq__failpoint */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *skipq__signame(int sig);

static volatile sig_atomic_t child_pid;
static volatile sig_atomic_t stop_requested;

static void
forward(int sig)
{
    if (sig != SIGHUP)
        stop_requested = 1;
    if (child_pid > 0)
        kill((pid_t)child_pid, sig);
}

/*
 * The dead child's jobs: re-queue (or fail) them with the signal named.
 * Its backend may take a moment to notice the closed socket and release
 * the "alive" lock, so try for a few seconds.
 */
static void
record_lost(const skipq_config *cfg, const char *url, pid_t pid, int sig)
{
    PGconn *pg = NULL;
    skipq_error err;
    char host[256] = "", pidbuf[16], reason[64], maxa[16];

    if (skipq__connect(url, &pg, &err) != SKIPQ_OK) {
        skipq__log(SKIPQ_LOG_ERROR, "supervisor: %s; the rescuer will find the jobs",
                   err.message);
        return;
    }
    skipq__hostname(host, sizeof host);
    snprintf(pidbuf, sizeof pidbuf, "%d", (int)pid);
    snprintf(reason, sizeof reason, "worker lost (%s)", skipq__signame(sig));
    snprintf(maxa, sizeof maxa, "%d", skipq_config_max_attempts(cfg));
    const char *v[4] = {host, pidbuf, reason, maxa};
    for (int tries = 0; tries < 50; tries++) {
        PGresult *res = NULL;
        skipq__stmt_run(pg, false, SKIPQ__STMT_SUPERVISE_RESCUE, NULL, 4, v, &res);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            skipq__db_fail(&err, pg, res, "supervisor could not rescue jobs");
            skipq__log(SKIPQ_LOG_ERROR, "%s", err.message);
            PQclear(res);
            break;
        }
        long rescued = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        long left = strtol(PQgetvalue(res, 0, 1), NULL, 10);
        PQclear(res);
        if (rescued > 0)
            skipq__log(SKIPQ_LOG_WARN, "supervisor: %s; %ld job(s) put back", reason,
                       rescued);
        if (left == 0)
            break;
        usleep(100000);
    }
    /* (only rows of workers that are gone: skipq.forget_workers checks) */
    PGresult *res = NULL;
    skipq__stmt_run(pg, false, SKIPQ__STMT_SUPERVISE_FORGET, NULL, 2, v, &res);
    PQclear(res);
    PQfinish(pg);
}

skipq_rc
skipq_supervise(const skipq_config *cfg, const char *database_url,
                int (*fn)(void *userdata), void *userdata, int *status_out,
                skipq_error *err)
{
    struct sigaction sa = {0}, old_term, old_int, old_hup;
    sigset_t fwd, old_mask;
    int64_t delay_ms = 500;
    int result = 0;
    skipq_rc rc = SKIPQ_OK;

    if (status_out)
        *status_out = 0;
    if (!fn)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "no function to supervise");
    sigemptyset(&fwd);
    sigaddset(&fwd, SIGTERM);
    sigaddset(&fwd, SIGINT);
    sigaddset(&fwd, SIGHUP);
    sa.sa_handler = forward;
    sa.sa_mask = fwd; /* one forward at a time */
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGHUP, &sa, &old_hup);
    stop_requested = 0;
    pid_t parent = getpid();

    for (;;) {
        int64_t started = skipq__now_ms();
        /* Until child_pid is set, a signal would find no one to forward
         * to: it waits, blocked, and is delivered (and forwarded) after. */
        sigprocmask(SIG_BLOCK, &fwd, &old_mask);
        if (stop_requested) {
            sigprocmask(SIG_SETMASK, &old_mask, NULL);
            result = 0;
            break;
        }
        pid_t pid = fork();
        if (pid < 0) {
            rc = skipq__fail(err, SKIPQ_ERR_IO, "could not start a worker process: %s",
                             strerror(errno));
            sigprocmask(SIG_SETMASK, &old_mask, NULL);
            break;
        }
        if (pid == 0) {
            /* The child: dies with its parent, and takes its own signals:
             * SIGTERM and SIGINT by default (the worker's fn installs its
             * own), SIGHUP as the host had it. */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            signal(SIGTERM, SIG_DFL);
            signal(SIGINT, SIG_DFL);
            sigaction(SIGHUP, &old_hup, NULL);
            sigprocmask(SIG_SETMASK, &old_mask, NULL);
            _exit(fn(userdata));
        }
        if (skipq__failpoint("supervise_after_fork"))
            usleep(500000); /* widens the window the block closes (tests) */
        child_pid = pid;
        sigprocmask(SIG_SETMASK, &old_mask, NULL);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        child_pid = 0;
        if (WIFEXITED(status)) {
            result = WEXITSTATUS(status);
            break;
        }
        int sig = WTERMSIG(status);
        skipq__log(SKIPQ_LOG_ERROR, "worker process %d died by %s", (int)pid,
                   skipq__signame(sig));
        record_lost(cfg, database_url, pid, sig);
        if (stop_requested) {
            result = 0;
            break;
        }
        /* Back off when it keeps dying young. */
        delay_ms = skipq__now_ms() - started < 10000 ? delay_ms * 2 : 500;
        if (delay_ms > 30000)
            delay_ms = 30000;
        for (int64_t end = skipq__now_ms() + delay_ms;
             !stop_requested && skipq__now_ms() < end;)
            usleep(20000);
        if (stop_requested) {
            result = 0;
            break;
        }
        skipq__log(SKIPQ_LOG_INFO, "supervisor: starting a new worker process");
    }
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    if (rc == SKIPQ_OK && status_out)
        *status_out = result;
    return rc;
}
