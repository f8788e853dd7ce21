/*
 * exec_persistent.c - persistent command handlers: a few processes per
 * kind, started once, each given one job at a time as a JSON line on its
 * stdin and answering with one JSON line on its stdout.
 *
 * A process that says something else than its job's answer, exits, or
 * is still busy at the job's deadline is killed with its process group
 * and started again for the next job; the job's attempt fails like a
 * failed command's and is retried by the normal backoff, so no job is
 * lost with it. Processes are started by the executors, in groups of
 * their own, dying with the worker (PR_SET_PDEATHSIG) and listed with
 * the reaper, exactly as commands are (exec_command.c). The lines
 * themselves, request and answer: exec_persistent_proto.c. Each of these
 * rules has its case in tests/integration/test_persistent.c.
 */
#include "worker_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define RESULT_MAX (1 << 20)                /* bytes of result, as commands */
#define LINE_MAX_BYTES (RESULT_MAX + 65536) /* an answer line, at most */
#define STDERR_TAIL 2000                    /* bytes of stderr kept */
#define STOP_GRACE_MS 2000                  /* SIGTERM, then SIGKILL, on a cancel or stop */
#define EXIT_WAIT_MS 200                    /* a process that closed a pipe: exiting? */
#define QUIESCE_MS 1000                     /* idle processes' time to exit at a stop */
#define PROC_ENV 3

typedef struct pbuf {
    char *p;
    size_t len, cap;
} pbuf;

/* One process of a persistent handler. */
typedef struct proc {
    pid_t pid; /* -1: not running */
    int pidfd; /* -1: none (poll its status instead) */
    int in, out, err;
    bool busy;  /* an executor has it */
    pbuf line;  /* stdout read but not yet taken as a line */
    pbuf etail; /* the end of its stderr */
} proc;

/* The processes of one handler kind. */
struct persist_set {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const char *kind;
    char **argv; /* borrowed from the config */
    int n;
    proc *procs;
};

/* How waiting for an answer ended; the first two are what
 * skipq__persist_take_line says of a line (exec_persistent_proto.c). */
enum wait_end {
    W_ANSWER = SKIPQ__PERSIST_ANSWER,
    W_BROKEN = SKIPQ__PERSIST_BROKEN,
    W_EXITED,
    W_TIMEOUT,
    W_STOP
};

static bool
pbuf_add(pbuf *b, const char *d, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np)
            return false;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = '\0';
    return true;
}

/* Append keeping the last STDERR_TAIL bytes. */
static void
tail_add(pbuf *b, const char *d, size_t n)
{
    if (n >= STDERR_TAIL) {
        d += n - STDERR_TAIL;
        n = STDERR_TAIL;
        b->len = 0;
    } else if (b->len + n > STDERR_TAIL) {
        size_t drop = b->len + n - STDERR_TAIL;
        memmove(b->p, b->p + drop, b->len - drop);
        b->len -= drop;
    }
    (void)pbuf_add(b, d, n);
}

static int
default_processes(const skipq_config *cfg)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cpus > 0 && cpus < cfg->concurrency ? (int)cpus : cfg->concurrency;
    return n > 0 ? n : 1;
}

static int
processes_of(const skipq_config *cfg, const skipq__handler_cfg *hc)
{
    return hc->processes > 0 ? hc->processes : default_processes(cfg);
}

int
skipq__persist_max_processes(const skipq_config *cfg)
{
    int n = 0;
    for (size_t i = 0; i < cfg->nhandlers; i++)
        if (cfg->handlers[i].persistent)
            n += processes_of(cfg, &cfg->handlers[i]);
    return n;
}

skipq_rc
skipq__persist_start(exec_pool *p, const skipq_config *cfg, skipq_error *err)
{
    if (skipq__persist_max_processes(cfg) == 0)
        return SKIPQ_OK;
    p->persist = calloc(cfg->nhandlers, sizeof *p->persist);
    if (!p->persist)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    p->npersist = cfg->nhandlers;
    for (size_t i = 0; i < cfg->nhandlers; i++) {
        const skipq__handler_cfg *hc = &cfg->handlers[i];
        struct persist_set *s;

        if (!hc->persistent)
            continue;
        if (!(s = calloc(1, sizeof *s)) ||
            !(s->procs = calloc((size_t)processes_of(cfg, hc), sizeof *s->procs))) {
            free(s);
            return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
        }
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cv, NULL);
        s->kind = hc->kind;
        s->argv = hc->argv;
        s->n = processes_of(cfg, hc);
        for (int k = 0; k < s->n; k++)
            s->procs[k] = (proc){.pid = -1, .pidfd = -1, .in = -1, .out = -1, .err = -1};
        p->persist[i] = s;
    }
    return SKIPQ_OK;
}

static void
close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Read what stderr holds now, without waiting, into the tail. */
static void
drain_stderr(proc *pr)
{
    char chunk[4096];
    for (int i = 0; pr->err >= 0 && i < 256; i++) {
        ssize_t r = read(pr->err, chunk, sizeof chunk);
        if (r > 0)
            tail_add(&pr->etail, chunk, (size_t)r);
        else if (r < 0 && errno == EINTR)
            continue;
        else if (r == 0)
            close_fd(&pr->err); /* its end: nothing more to wait for */
        else
            break;
    }
}

/* Kill pr's group (what is left of it), reap it; *status its waitpid
 * status. The group is killed while its leader is not yet reaped, so its
 * id cannot have been reused. */
static void
proc_end(exec_pool *pool, proc *pr, int *status)
{
    int st = 0;

    if (pr->pid > 0) {
        kill(-pr->pid, SIGKILL);
        skipq__reaper_tell(pool, SKIPQ__REAPER_DEL, pr->pid);
        while (waitpid(pr->pid, &st, 0) < 0 && errno == EINTR)
            ;
    }
    drain_stderr(pr);
    if (status)
        *status = st;
    pr->pid = -1;
    close_fd(&pr->pidfd);
    close_fd(&pr->in);
    close_fd(&pr->out);
    close_fd(&pr->err);
    pr->line.len = 0;
}

static bool wait_exit(const proc *pr, int ms);

static void
proc_free(exec_pool *pool, proc *pr)
{
    proc_end(pool, pr, NULL);
    free(pr->line.p);
    free(pr->etail.p);
}

/*
 * The worker stops: each idle process gets the end of its stdin and up
 * to QUIESCE_MS, in all, to exit on its own (a handler may flush what it
 * keeps), before the executors' exit kills what is left
 * (PR_SET_PDEATHSIG). Test: pool_runs_each_job_once.
 */
void
skipq__persist_quiesce(exec_pool *p)
{
    int64_t until = skipq__now_ms() + QUIESCE_MS;

    for (size_t i = 0; i < p->npersist; i++) {
        struct persist_set *s = p->persist[i];
        if (!s)
            continue;
        pthread_mutex_lock(&s->mu);
        for (int k = 0; k < s->n; k++) {
            proc *pr = &s->procs[k];
            if (!pr->busy && pr->pid > 0) {
                pr->busy = true; /* no job may take it now */
                close_fd(&pr->in);
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
    for (size_t i = 0; i < p->npersist; i++) {
        struct persist_set *s = p->persist[i];
        for (int k = 0; s && k < s->n; k++) {
            proc *pr = &s->procs[k];
            int64_t left = until - skipq__now_ms();
            if (pr->pid > 0 && pr->in < 0 && left > 0)
                (void)wait_exit(pr, (int)left);
        }
    }
}

void
skipq__persist_stop(exec_pool *p)
{
    for (size_t i = 0; i < p->npersist; i++) {
        struct persist_set *s = p->persist[i];
        if (!s)
            continue;
        for (int k = 0; s->procs && k < s->n; k++)
            proc_free(p, &s->procs[k]);
        free(s->procs);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
    }
    free(p->persist);
    p->persist = NULL;
    p->npersist = 0;
}

/* ---- starting a process ------------------------------------------------- */

/* Ours without SKIPQ_JOB_*, then the worker's own: the job's are in each
 * request line. NULL when out of memory. */
static char **
proc_env(const struct persist_set *s, const skipq_job *job)
{
    size_t nenv = 0, k = 0;
    char **envp;

    while (environ[nenv])
        nenv++;
    if (!(envp = calloc(nenv + PROC_ENV + 1, sizeof *envp)))
        return NULL;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], "SKIPQ_JOB_", 10) != 0 &&
            strncmp(environ[i], "SKIPQ_PERSISTENT=", 17) != 0 &&
            strncmp(environ[i], "SKIPQ_CONTROL_FD=", 17) != 0)
            envp[k++] = environ[i];
    char *own[PROC_ENV] = {NULL, NULL, NULL};
    if (asprintf(&own[0], "SKIPQ_JOB_KIND=%s", s->kind) < 0)
        own[0] = NULL;
    if (asprintf(&own[1], "SKIPQ_JOB_WORKER=%lld", (long long)skipq_worker_id(job->w)) < 0)
        own[1] = NULL;
    own[2] = strdup("SKIPQ_PERSISTENT=1");
    for (int i = 0; i < PROC_ENV; i++) {
        if (!own[i]) {
            for (int j = 0; j < PROC_ENV; j++)
                free(own[j]);
            free(envp);
            return NULL;
        }
        envp[k++] = own[i];
    }
    return envp;
}

static void
free_env(char **envp)
{
    size_t n = 0;
    while (envp[n])
        n++;
    for (size_t i = n - PROC_ENV; i < n; i++)
        free(envp[i]);
    free(envp);
}

/* Start pr; 0, or an errno value. */
static int
proc_start(exec_pool *pool, const struct persist_set *s, proc *pr, const skipq_job *job)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    char **envp = NULL;
    int e = 0;

    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
        e = errno;
    else if (!(envp = proc_env(s, job)))
        e = ENOMEM;
    else
        e = skipq__spawn_command(s->argv, envp, (const int[3]){in[0], out[1], err[1]}, 3,
                                 &pr->pid);
    if (envp)
        free_env(envp);
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    if (e != 0) {
        close_fd(&in[1]);
        close_fd(&out[0]);
        close_fd(&err[0]);
        pr->pid = -1;
        return e;
    }
    skipq__reaper_tell(pool, SKIPQ__REAPER_ADD, pr->pid);
    pr->in = in[1];
    pr->out = out[0];
    pr->err = err[0];
    fcntl(pr->in, F_SETFL, O_NONBLOCK);
    fcntl(pr->out, F_SETFL, O_NONBLOCK);
    fcntl(pr->err, F_SETFL, O_NONBLOCK);
    pr->line.len = 0;
    pr->etail.len = 0;
#ifdef SYS_pidfd_open
    pr->pidfd = (int)syscall(SYS_pidfd_open, pr->pid, 0);
#endif
    return 0;
}

static bool
proc_exited(const proc *pr)
{
    siginfo_t si;

    memset(&si, 0, sizeof si);
    return waitid(P_PID, (id_t)pr->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           si.si_pid == pr->pid;
}

/* Wait up to ms for pr's own process to exit. */
static bool
wait_exit(const proc *pr, int ms)
{
    int64_t until = skipq__now_ms() + ms;
    for (;;) {
        if (proc_exited(pr))
            return true;
        int64_t left = until - skipq__now_ms();
        if (left <= 0)
            return false;
        if (pr->pidfd >= 0) {
            struct pollfd pf = {pr->pidfd, POLLIN, 0};
            (void)poll(&pf, 1, (int)left);
        } else {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

/* ---- taking a process ---------------------------------------------------- */

/*
 * A free process of s for job: a running one if there is, else a slot
 * to start one in. Waits while all are busy; NULL when the job was
 * stopped or reached its deadline meanwhile.
 */
static proc *
acquire(struct persist_set *s, skipq_job *job)
{
    proc *pr = NULL;

    pthread_mutex_lock(&s->mu);
    while (!pr) {
        for (int k = 0; k < s->n && !pr; k++)
            if (!s->procs[k].busy && s->procs[k].pid > 0)
                pr = &s->procs[k];
        for (int k = 0; k < s->n && !pr; k++)
            if (!s->procs[k].busy)
                pr = &s->procs[k];
        if (pr)
            break;
        if (atomic_load(&job->stop) != 0 || skipq__now_ms() >= job->deadline_ms)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000 * 1000; /* to see a stop or a deadline */
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    if (pr)
        pr->busy = true;
    pthread_mutex_unlock(&s->mu);
    return pr;
}

static void
release(struct persist_set *s, proc *pr)
{
    pthread_mutex_lock(&s->mu);
    pr->busy = false;
    pthread_mutex_unlock(&s->mu);
    pthread_cond_signal(&s->cv);
}

/* ---- one job ------------------------------------------------------------- */

/* Take the complete lines pr has written: W_ANSWER, W_BROKEN, or -1 when
 * the answer has not come yet. */
static int
take_lines(proc *pr, skipq_job *job, char **why)
{
    char *nl;

    while (pr->line.len > 0 && (nl = memchr(pr->line.p, '\n', pr->line.len))) {
        size_t n = (size_t)(nl - pr->line.p);
        int r = skipq__persist_take_line(job, pr->line.p, n, why);
        pr->line.len -= n + 1;
        memmove(pr->line.p, nl + 1, pr->line.len + 1);
        if (r >= 0)
            return r;
    }
    if (pr->line.len > LINE_MAX_BYTES) {
        *why = skipq__persist_broken("an answer longer than 1 MiB", pr->line.p,
                                     pr->line.len);
        return W_BROKEN;
    }
    return -1;
}

/* Read what stdout holds now; false at its end (or a read error). */
static bool
read_stdout(proc *pr)
{
    char chunk[65536];
    for (int i = 0; i < 64; i++) {
        ssize_t r = read(pr->out, chunk, sizeof chunk);
        if (r > 0) {
            if (!pbuf_add(&pr->line, chunk, (size_t)r))
                return false;
            if (pr->line.len > LINE_MAX_BYTES)
                return true;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 && errno == EAGAIN;
    }
    return true;
}

/* Move the request in, stdout and stderr out, until the answer, the
 * process's end, the deadline or a stop. */
static enum wait_end
wait_answer(proc *pr, skipq_job *job, const char *req, size_t reqlen, char **why)
{
    size_t off = 0;
    bool eof = false, exited = false;

    for (;;) {
        int r = take_lines(pr, job, why);
        if (r >= 0)
            return (enum wait_end)r;
        if (exited)
            return W_EXITED;
        if (eof) {
            /* its stdout closed, or its stdin: exiting, or broken */
            if (wait_exit(pr, EXIT_WAIT_MS))
                return W_EXITED;
            *why = strdup(off < reqlen ? "it closed its stdin" : "it closed its stdout");
            return W_BROKEN;
        }
        if (atomic_load(&job->stop) != 0)
            return W_STOP;
        int64_t now = skipq__now_ms();
        if (now >= job->deadline_ms)
            return W_TIMEOUT;
        struct pollfd p[4];
        int n = 0, io = n++, ie = -1, ii = -1, ip = -1;
        p[io] = (struct pollfd){pr->out, POLLIN, 0};
        if (pr->err >= 0)
            p[ie = n++] = (struct pollfd){pr->err, POLLIN, 0};
        if (off < reqlen)
            p[ii = n++] = (struct pollfd){pr->in, POLLOUT, 0};
        if (pr->pidfd >= 0)
            p[ip = n++] = (struct pollfd){pr->pidfd, POLLIN, 0};
        int64_t wait = job->deadline_ms - now;
        if (wait > (pr->pidfd >= 0 ? 100 : 5))
            wait = pr->pidfd >= 0 ? 100 : 5;
        if (poll(p, (nfds_t)n, (int)wait) < 0 && errno != EINTR) {
            *why = strdup("could not wait for it");
            return W_BROKEN;
        }
        if (p[io].revents && !read_stdout(pr))
            eof = true;
        if (ie >= 0 && p[ie].revents)
            drain_stderr(pr);
        if (ii >= 0 && p[ii].revents) {
            ssize_t w = write(pr->in, req + off, reqlen - off);
            if (w > 0)
                off += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                eof = true; /* EPIPE: nobody reads its stdin */
        }
        if ((ip >= 0 && p[ip].revents) || (pr->pidfd < 0 && proc_exited(pr))) {
            (void)read_stdout(pr); /* an answer it wrote before it went */
            exited = true;
        }
    }
}

/*
 * Did pr write to stdout (or close it) since its last answer? Nothing
 * may come between an answer and the next request but empty lines: such
 * a line would be read as the next job's answer. The process is logged
 * and replaced, and no job is charged for it. Its stderr is read too, so
 * that a handler logging while idle does not fill the pipe. Test:
 * stray_output_between_jobs_replaces_the_process_and_charges_no_job.
 */
static bool
idle_output(proc *pr, const struct persist_set *s)
{
    struct pollfd p = {pr->out, POLLIN, 0};
    bool open = true;
    size_t k = 0;

    drain_stderr(pr);
    if (poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP)))
        open = read_stdout(pr);
    while (k < pr->line.len && (pr->line.p[k] == '\n' || pr->line.p[k] == '\r'))
        k++; /* empty lines are allowed anywhere */
    if (open && k == pr->line.len) {
        pr->line.len = 0;
        return false;
    }
    skipq__log(SKIPQ_LOG_WARN,
               "handler \"%s\": process %d %s between jobs; starting a new one", s->kind,
               (int)pr->pid, open ? "wrote to stdout" : "closed its stdout");
    return true;
}

/* The stderr tail, trimmed, after ": "; "" when there is none. */
static const char *
tail_text(proc *pr, const char **sep)
{
    pbuf *e = &pr->etail;
    while (e->len > 0 && strchr(" \t\r\n", e->p[e->len - 1]))
        e->p[--e->len] = '\0';
    *sep = e->len ? ": " : "";
    return e->len ? e->p : "";
}

/* The job ended without an answer: kill the process, record why. */
static void
job_lost_process(exec_pool *pool, proc *pr, skipq_job *job, enum wait_end end,
                 const char *why)
{
    const char *sep, *tail;
    int st = 0;

    if (end == W_STOP) {
        /* cancel or shutdown: ask politely, then insist (as commands) */
        kill(-pr->pid, SIGTERM);
        (void)wait_exit(pr, STOP_GRACE_MS);
    }
    proc_end(pool, pr, &st);
    tail = tail_text(pr, &sep);
    if (end == W_STOP) {
        job->outcome = skipq_job_fail(job, "cancelled");
        if (atomic_load(&job->stop) == 1)
            job->outcome = SKIPQ_JOB_CANCELLED;
    } else if (end == W_TIMEOUT) {
        char d[32];
        skipq__fmt_duration(job->timeout_ms, d, sizeof d);
        job->timed_out = true;
        job->outcome = skipq_job_fail(job, "timed out after %s", d);
    } else if (end == W_BROKEN) {
        job->outcome = skipq_job_fail(job, "handler process broke the protocol: %s%s%s",
                                      why ? why : "out of memory", sep, tail);
    } else if (WIFSIGNALED(st)) {
        job->outcome = skipq_job_fail(job, "handler process killed by %s%s%s",
                                      skipq__signame(WTERMSIG(st)), sep, tail);
    } else {
        job->outcome = skipq_job_fail(job, "handler process exited with status %d%s%s",
                                      WIFEXITED(st) ? WEXITSTATUS(st) : -1, sep, tail);
    }
    pr->etail.len = 0;
}

/* A job that got no process: stopped, or its deadline came first. */
static void
job_not_started(skipq_job *job, const struct persist_set *s)
{
    if (atomic_load(&job->stop) != 0) {
        job->outcome = skipq_job_fail(job, "cancelled");
        if (atomic_load(&job->stop) == 1)
            job->outcome = SKIPQ_JOB_CANCELLED;
        return;
    }
    char d[32];
    skipq__fmt_duration(job->timeout_ms, d, sizeof d);
    job->timed_out = true;
    job->outcome = skipq_job_fail(job,
                                  "timed out after %s waiting for a process of "
                                  "handler \"%s\"",
                                  d, s->kind);
}

void
skipq__run_persistent(exec_pool *pool, skipq_job *job)
{
    struct persist_set *s = pool->persist[job->h->persist - 1];
    proc *pr = acquire(s, job);
    char *req = NULL, *why = NULL;
    size_t reqlen = 0;
    int e;

    if (!pr) {
        job_not_started(job, s);
        return;
    }
    /* One that died, or wrote to stdout, while idle is no fault of this
     * job's: it is replaced before the job goes to it. */
    if (pr->pid > 0 && (proc_exited(pr) || idle_output(pr, s)))
        proc_end(pool, pr, NULL);
    if (pr->pid <= 0 && (e = proc_start(pool, s, pr, job)) != 0) {
        job->outcome = skipq_job_fail(job, "could not run \"%s\": %s", s->argv[0],
                                      strerror(e));
        release(s, pr);
        return;
    }
    if (!(req = skipq__persist_request(job, &reqlen))) {
        job->outcome = skipq_job_fail(job, "out of memory");
        release(s, pr);
        return;
    }
    atomic_store(&job->pgid, pr->pid);
    enum wait_end end = wait_answer(pr, job, req, reqlen, &why);
    /* A stop that killed it (shutdown) is a stop, not a crash. */
    if (end != W_ANSWER && atomic_load(&job->stop) != 0)
        end = W_STOP;
    /* before any reaping: the worker's stop kills what pgid names */
    atomic_store(&job->pgid, 0);
    if (end == W_ANSWER) {
        /* settled: a later stop must not hand it back */
        if (atomic_load(&job->stop) == 0)
            atomic_store(&job->finished, true);
        if (proc_exited(pr))
            proc_end(pool, pr, NULL);
    } else {
        job_lost_process(pool, pr, job, end, why);
    }
    /* Started again at once for the next job, unless the worker stops. */
    if (pr->pid <= 0 && atomic_load(&job->stop) != 2 && proc_start(pool, s, pr, job) != 0)
        pr->pid = -1;
    release(s, pr);
    free(req);
    free(why);
}
