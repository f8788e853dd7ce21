/*
 * exec_command.c - command handlers: a process per job, the payload on
 * its stdin, the result from its stdout, the end of its stderr as the
 * error.
 *
 * A fourth descriptor, SKIPQ_CONTROL_FD (3), is the write end of a pipe
 * on which the command may report progress and an outcome other than its
 * exit status says (outcome.c reads the lines; docs/worker.md).
 *
 * A command runs in its own process group, so a timeout, a cancel or a
 * shutdown kills it together with its children and no orphan remains.
 * The command itself dies with the worker (PR_SET_PDEATHSIG), and a
 * small reaper process kills the rest of its group then: handlers never
 * run on unwatched beside the rescued copies of their jobs.
 */
#include "worker_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define STDOUT_MAX (1 << 20) /* bytes of result kept */
#define STDERR_TAIL 2000     /* bytes of stderr kept as the error */
/* How long the pipes may stay open once the command's own process has
 * exited and the rest of its group is killed. All it wrote is in them
 * already; this only waits for a descendant that left the group (setsid,
 * a daemon) and still holds stdout or stderr, which must not hold up the
 * job, its deadline or the worker's shutdown. */
#define EXIT_GRACE_MS 500
/* Bytes read at most from each pipe once we stop waiting: what is still
 * buffered, but not a writer that never stops. */
#define DRAIN_MAX (4 << 20)

void
skipq__sanitize_utf8(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        size_t len = c < 0x80             ? 1
                     : (c & 0xE0) == 0xC0 ? 2
                     : (c & 0xF0) == 0xE0 ? 3
                     : (c & 0xF8) == 0xF0 ? 4
                                          : 0;
        bool ok = len > 0;
        for (size_t k = 1; ok && k < len; k++)
            ok = (p[k] & 0xC0) == 0x80;
        if (ok && len == 2 && c < 0xC2)
            ok = false; /* overlong */
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += len;
    }
}

/* ---- command handlers ------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t len;
} buf;

/* Append, keeping at most max bytes: the head (keep_tail false) or the
 * tail (true). */
static void
buf_add(buf *b, const char *d, size_t n, size_t max, bool keep_tail)
{
    if (keep_tail && n >= max) {
        d += n - max;
        n = max;
        b->len = 0;
    }
    if (b->len + n > max) {
        if (!keep_tail) {
            n = max - b->len;
        } else {
            size_t drop = b->len + n - max;
            memmove(b->p, b->p + drop, b->len - drop);
            b->len -= drop;
        }
    }
    char *np = realloc(b->p, b->len + n + 1);
    if (!np)
        return;
    b->p = np;
    memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static char *env_entry(const char *name, const char *fmt, ...) SKIPQ__PRINTF(2, 3);
static char *
env_entry(const char *name, const char *fmt, ...)
{
    char val[256], *out = NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof val, fmt, ap);
    va_end(ap);
    if (asprintf(&out, "%s=%s", name, val) < 0)
        return NULL;
    return out;
}

#define JOB_ENV 6
#define CONTROL_FD 3

static const char *
signame(int sig)
{
    static const char *const names[] = {
        [SIGHUP] = "SIGHUP",   [SIGINT] = "SIGINT",   [SIGQUIT] = "SIGQUIT",
        [SIGILL] = "SIGILL",   [SIGABRT] = "SIGABRT", [SIGBUS] = "SIGBUS",
        [SIGFPE] = "SIGFPE",   [SIGKILL] = "SIGKILL", [SIGSEGV] = "SIGSEGV",
        [SIGPIPE] = "SIGPIPE", [SIGALRM] = "SIGALRM", [SIGTERM] = "SIGTERM",
    };
    if (sig > 0 && sig < (int)(sizeof names / sizeof names[0]) && names[sig])
        return names[sig];
    return "a signal";
}

const char *
skipq__signame(int sig)
{
    return signame(sig);
}

void
skipq__fmt_duration(int64_t ms, char *out, size_t n)
{
    if (ms % 1000 == 0)
        snprintf(out, n, "%llds", (long long)(ms / 1000));
    else
        snprintf(out, n, "%lldms", (long long)ms);
}

/* The result column wants JSON: stdout as is when it is JSON, else
 * {"output": "..."}; nothing for empty output. */
static char *
stdout_to_result(buf *out)
{
    if (!out->p || out->len == 0)
        return NULL;
    json_object *obj = NULL; /* one whole JSON value, depth as enqueue's */
    (void)skipq_json_parse(out->p, out->len, 0, &obj, NULL);
    char *res = NULL;
    if (obj) {
        res = strdup(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN));
    } else {
        json_object *wrap = json_object_new_object();
        skipq__sanitize_utf8(out->p);
        json_object_object_add(wrap, "output", json_object_new_string(out->p));
        res = strdup(json_object_to_json_string_ext(wrap, JSON_C_TO_STRING_PLAIN));
        json_object_put(wrap);
    }
    json_object_put(obj);
    return res;
}

/* ---- the reaper -------------------------------------------------------- */

/*
 * PR_SET_PDEATHSIG takes a command's own process down with the worker,
 * but not the children it started in its group. The reaper is a small
 * process forked when the pool starts, before any command runs: the
 * executors tell it each process group they start and end, and once the
 * worker is gone (its end of the socket closes, even after kill -9) it
 * kills the groups still listed, and exits. A descendant that starts a
 * session of its own (setsid, a daemon) has left its group and is out of
 * reach: docs/reliability.md says so.
 */
void
skipq__reaper_tell(exec_pool *p, int op, pid_t pgid)
{
    int32_t msg[2] = {op, (int32_t)pgid};

    if (!p || p->reaper_fd < 0 || atomic_load(&p->reaper_failed))
        return;
    if (send(p->reaper_fd, msg, sizeof msg, MSG_NOSIGNAL) == (ssize_t)sizeof msg)
        return;
    /*
     * Gone, or not reading for SO_SNDTIMEO (stopped): a command must not
     * wait for it, and a reaper that missed an end must never act on its
     * list (the group's id may be reused by then). The commands' own
     * processes still die with the worker (PR_SET_PDEATHSIG).
     */
    if (!atomic_exchange(&p->reaper_failed, true)) {
        kill(p->reaper_pid, SIGKILL);
        skipq__log(SKIPQ_LOG_WARN,
                   "the handler reaper (pid %d) stopped answering: %s; "
                   "children of commands may now outlive a killed worker",
                   (int)p->reaper_pid, strerror(errno));
    }
}

/* Every descriptor from `from` up is closed, so the reaper holds none of
 * the worker's: no connection, and no pipe a job waits to see closed. */
static void
close_from(int from)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)from, ~0U, 0) == 0)
        return;
#endif
    struct rlimit rl;
    int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur
                                                                        : 65536;
    for (int fd = from; fd < max; fd++)
        close(fd);
}

/* The reaper's life, in the forked child: system calls only (the worker
 * may have had other threads, whose locks the child must not touch). */
static _Noreturn void
reaper_main(int fd, pid_t parent, pid_t *groups, int cap)
{
    sigset_t usr1;
    int sfd;

    /* Signals are blocked (the parent blocked them for the fork): the
     * reaper outlives whatever an operator or a terminal sends to the
     * worker's process group, and follows the worker instead. */
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    prctl(PR_SET_PDEATHSIG, SIGUSR1);
    prctl(PR_SET_NAME, "skipq-reaper");
    if (fd != 3) {
        dup2(fd, 3);
        fd = 3;
    }
    close_from(4);
    sfd = signalfd(-1, &usr1, SFD_CLOEXEC);
    while (getppid() == parent) {
        struct pollfd pf[2] = {{fd, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(pf, sfd >= 0 ? 2 : 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (sfd >= 0 && pf[1].revents) {
            /* PR_SET_PDEATHSIG, or a stray SIGUSR1: getppid() decides */
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) < 0 && errno != EAGAIN && errno != EINTR)
                break;
            continue;
        }
        if (!pf[0].revents)
            continue;
        int32_t msg[2];
        ssize_t n = recv(fd, msg, sizeof msg, 0);
        if (n == 0)
            break; /* the worker is gone, or done */
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            break;
        }
        if (n != (ssize_t)sizeof msg || msg[1] <= 0)
            continue;
        for (int i = 0; i < cap; i++) {
            if (msg[0] == SKIPQ__REAPER_DEL && groups[i] == msg[1]) {
                groups[i] = 0;
                break;
            }
            if (msg[0] == SKIPQ__REAPER_ADD && groups[i] == 0) {
                groups[i] = msg[1];
                break;
            }
        }
    }
    for (int i = 0; i < cap; i++)
        if (groups[i] > 0)
            kill(-groups[i], SIGKILL);
    free(groups); /* this process's copy (valgrind's leak check runs here too) */
    _exit(0);
}

skipq_rc
skipq__reaper_start(exec_pool *p, int cap, skipq_error *err)
{
    int sv[2];
    sigset_t all, old;
    pid_t parent = getpid();

    /* SEQPACKET: each message arrives whole, and the reaper sees the
     * worker's end close */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return skipq__fail(err, SKIPQ_ERR_IO, "could not start the handler reaper: %s",
                           strerror(errno));
    struct timeval tv = {0, 100 * 1000}; /* see skipq__reaper_tell */
    setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    pid_t *groups = calloc((size_t)cap, sizeof *groups);
    if (!groups) {
        close(sv[0]);
        close(sv[1]);
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    }
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0)
        reaper_main(sv[1], parent, groups, cap);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(groups);
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return skipq__fail(err, SKIPQ_ERR_IO, "could not start the handler reaper: %s",
                           strerror(fork_errno));
    }
    p->reaper_fd = sv[0];
    p->reaper_pid = pid;
    return SKIPQ_OK;
}

/* Close our end: the reaper kills what is still listed (nothing, once
 * every executor has returned) and exits. */
void
skipq__reaper_stop(exec_pool *p)
{
    if (p->reaper_fd >= 0) {
        close(p->reaper_fd);
        p->reaper_fd = -1;
    }
    if (p->reaper_pid > 0) {
        while (waitpid(p->reaper_pid, NULL, 0) < 0 && errno == EINTR)
            ;
        p->reaper_pid = -1;
    }
}

/* ---- command handlers: starting one ------------------------------------ */

/*
 * Start argv in a process group of its own, with fds[0..2] as its stdin,
 * stdout and stderr, the signal mask cleared and these signals back to
 * their defaults (a worker ignores SIGPIPE, and a host may ignore more),
 * and PR_SET_PDEATHSIG: the kernel kills it when the thread that started
 * it exits. That is an executor, which lives as long as the worker runs,
 * so the command dies with the worker's process, even by kill -9.
 * posix_spawn cannot ask for that, hence vfork: the child borrows this
 * thread's memory until it execs, so it makes system calls only and
 * writes nothing but child_errno. Returns 0 or an errno value.
 */
int
skipq__spawn_command(char *const argv[], char *const envp[], const int *fds, int nfds,
                     pid_t *out)
{
    static const int defaults[] = {SIGPIPE, SIGTERM, SIGINT, SIGCHLD, SIGHUP, SIGQUIT};
    volatile int child_errno = 0;
    sigset_t all, old, none;
    pid_t parent = getpid();
    pid_t pid;

    /* No handler of ours may run in the child: it would run on our stack. */
    sigfillset(&all);
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = vfork();
    if (pid == 0) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        if (setpgid(0, 0) != 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
            child_errno = errno;
            _exit(127);
        }
        if (getppid() != parent)
            _exit(127); /* the worker died already */
        for (int i = 0; i < nfds; i++) {
            int r = fds[i] == i ? fcntl(i, F_SETFD, 0) : dup2(fds[i], i);
            if (r < 0) {
                child_errno = errno;
                _exit(127);
            }
        }
        for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
            sigaction(defaults[i], &dfl, NULL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(argv[0], argv, envp);
        child_errno = errno;
        _exit(127);
    }
    int e = pid < 0 ? errno : child_errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid > 0 && e != 0) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        pid = -1;
    }
    *out = pid;
    return pid < 0 ? (e ? e : EAGAIN) : 0;
}

/* Read what is buffered in a pipe without waiting: at most DRAIN_MAX. */
static void
drain(int *fd, buf *b, size_t max, bool keep_tail)
{
    char chunk[16384];
    size_t total = 0;

    if (*fd < 0)
        return;
    fcntl(*fd, F_SETFL, O_NONBLOCK);
    while (total < DRAIN_MAX) {
        ssize_t r = read(*fd, chunk, sizeof chunk);
        if (r > 0) {
            buf_add(b, chunk, (size_t)r, max, keep_tail);
            total += (size_t)r;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else {
            break;
        }
    }
}

/* One running command: its pipes, its process, and what it said. */
typedef struct command {
    int in[2], out[2], err[2], ctl[2];
    pid_t pid;  /* -1: not started */
    int pidfd;  /* -1: none (poll its status instead) */
    int status; /* waitpid's */
    buf obuf, ebuf;
    skipq__control control; /* what it said on its control descriptor */
    size_t in_off, in_len;
    bool exited, killed_for_stop;
    int64_t term_sent_ms, exited_ms;
} command;

/* What is buffered on the control pipe, without waiting: at most
 * DRAIN_MAX. */
static void
drain_control(command *c, skipq_job *job)
{
    buf b = {0};

    drain(&c->ctl[0], &b, DRAIN_MAX, false);
    if (b.len)
        skipq__control_feed(&c->control, job, b.p, b.len);
    free(b.p);
}

/* The environment a command runs with: ours without SKIPQ_JOB_*, then
 * the job's. NULL when out of memory; free with free_env. */
static char **
job_env(const skipq_job *job)
{
    size_t nenv = 0, k = 0;
    char **envp;

    while (environ[nenv])
        nenv++;
    envp = calloc(nenv + JOB_ENV + 1, sizeof *envp);
    if (!envp)
        return NULL;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], "SKIPQ_JOB_", 10) != 0 &&
            strncmp(environ[i], "SKIPQ_CONTROL_FD=", 17) != 0)
            envp[k++] = environ[i];
    char *own[JOB_ENV] = {
        env_entry("SKIPQ_JOB_ID", "%lld", (long long)job->id),
        env_entry("SKIPQ_JOB_KIND", "%s", job->kind),
        env_entry("SKIPQ_JOB_ATTEMPT", "%d", job->attempt),
        env_entry("SKIPQ_JOB_QUEUE", "%s", job->queue),
        env_entry("SKIPQ_JOB_WORKER", "%lld", (long long)skipq_worker_id(job->w)),
        env_entry("SKIPQ_CONTROL_FD", "%d", CONTROL_FD),
    };
    for (int i = 0; i < JOB_ENV; i++)
        if (own[i])
            envp[k++] = own[i];
    return envp;
}

/* The job's own entries of envp (job_env), then envp itself. */
static void
free_env(char **envp)
{
    if (!envp)
        return;
    for (char **e = envp; *e; e++)
        if (strncmp(*e, "SKIPQ_JOB_", 10) == 0 || strncmp(*e, "SKIPQ_CONTROL_FD=", 17) == 0)
            free(*e);
    free(envp);
}

/* Start job's command with its pipes; false (the job failed) if not. */
static bool
start_command(exec_pool *pool, skipq_job *job, command *c)
{
    char **envp;
    int rc;

    if (pipe2(c->in, O_CLOEXEC) || pipe2(c->out, O_CLOEXEC) || pipe2(c->err, O_CLOEXEC) ||
        pipe2(c->ctl, O_CLOEXEC)) {
        skipq_job_fail(job, "could not create pipes: %s", strerror(errno));
        return false;
    }
    if (!(envp = job_env(job))) {
        skipq_job_fail(job, "out of memory");
        return false;
    }
    const int fds[4] = {c->in[0], c->out[1], c->err[1], c->ctl[1]};
    rc = skipq__spawn_command(job->h->argv, envp, fds, 4, &c->pid);
    free_env(envp);
    if (rc != 0) {
        skipq_job_fail(job, "could not run \"%s\": %s", job->h->argv[0], strerror(rc));
        c->pid = -1;
        return false;
    }
    skipq__reaper_tell(pool, SKIPQ__REAPER_ADD, c->pid);
    atomic_store(&job->pgid, c->pid);
    close(c->in[0]), c->in[0] = -1;
    close(c->out[1]), c->out[1] = -1;
    close(c->err[1]), c->err[1] = -1;
    close(c->ctl[1]), c->ctl[1] = -1;
    fcntl(c->in[1], F_SETFL, O_NONBLOCK);
    if (c->in_len == 0)
        close(c->in[1]), c->in[1] = -1;
#ifdef SYS_pidfd_open
    c->pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
#endif
    return true;
}

/* Wait up to the next deadline for the pipes or the process, and move
 * what is there: stdout and stderr in, the payload out. */
static void
pump_pipes(skipq_job *job, command *c, int *ip_out, struct pollfd *p)
{
    int n = 0, io = -1, ie = -1, ii = -1, ip = -1, ic = -1;
    char chunk[16384];

    if (c->out[0] >= 0)
        p[io = n++] = (struct pollfd){c->out[0], POLLIN, 0};
    if (c->err[0] >= 0)
        p[ie = n++] = (struct pollfd){c->err[0], POLLIN, 0};
    if (c->in[1] >= 0)
        p[ii = n++] = (struct pollfd){c->in[1], POLLOUT, 0};
    if (c->ctl[0] >= 0)
        p[ic = n++] = (struct pollfd){c->ctl[0], POLLIN, 0};
    if (!c->exited && c->pidfd >= 0)
        p[ip = n++] = (struct pollfd){c->pidfd, POLLIN, 0};
    int64_t now = skipq__now_ms();
    int64_t until = now + 100;
    if (!c->exited && c->pidfd < 0)
        until = now + 5;
    if (!c->exited && !job->timed_out && job->deadline_ms < until)
        until = job->deadline_ms;
    if (c->exited && c->exited_ms + EXIT_GRACE_MS < until)
        until = c->exited_ms + EXIT_GRACE_MS;
    int timeout = until > now ? (int)(until - now) : 0;
    *ip_out = ip;
    if (poll(p, (nfds_t)n, timeout) < 0 && errno != EINTR) {
        *ip_out = -2; /* poll failed: stop waiting */
        return;
    }
    if (io >= 0 && p[io].revents) {
        ssize_t r = read(c->out[0], chunk, sizeof chunk);
        if (r > 0)
            buf_add(&c->obuf, chunk, (size_t)r, STDOUT_MAX, false);
        else if (r == 0 || (errno != EINTR && errno != EAGAIN))
            close(c->out[0]), c->out[0] = -1;
    }
    if (ie >= 0 && p[ie].revents) {
        ssize_t r = read(c->err[0], chunk, sizeof chunk);
        if (r > 0)
            buf_add(&c->ebuf, chunk, (size_t)r, STDERR_TAIL, true);
        else if (r == 0 || (errno != EINTR && errno != EAGAIN))
            close(c->err[0]), c->err[0] = -1;
    }
    if (ic >= 0 && p[ic].revents) {
        ssize_t r = read(c->ctl[0], chunk, sizeof chunk);
        if (r > 0)
            skipq__control_feed(&c->control, job, chunk, (size_t)r);
        else if (r == 0 || (errno != EINTR && errno != EAGAIN))
            close(c->ctl[0]), c->ctl[0] = -1;
    }
    if (ii >= 0 && p[ii].revents) {
        ssize_t wr = write(c->in[1], job->payload_text + c->in_off, c->in_len - c->in_off);
        if (wr > 0)
            c->in_off += (size_t)wr;
        if ((wr < 0 && errno != EAGAIN && errno != EINTR) || c->in_off >= c->in_len)
            close(c->in[1]), c->in[1] = -1;
    }
}

/* Has the command's own process exited? Then reap it, and kill the rest
 * of its group. */
static void
check_exit(exec_pool *pool, skipq_job *job, command *c, int64_t now)
{
    siginfo_t si;

    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0 ||
        si.si_pid != c->pid)
        return;
    /* Background children may still hold the pipes: the group goes with
     * its leader, killed while the leader is not yet reaped, so its id
     * cannot have been reused. */
    kill(-c->pid, SIGKILL);
    atomic_store(&job->pgid, 0);
    skipq__reaper_tell(pool, SKIPQ__REAPER_DEL, c->pid);
    while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR)
        ;
    c->exited = true;
    c->exited_ms = now;
    /* Its outcome is settled, unless a stop killed it: a later stop must
     * not hand it back. */
    if (atomic_load(&job->stop) == 0)
        atomic_store(&job->finished, true);
    if (c->in[1] >= 0)
        close(c->in[1]), c->in[1] = -1;
}

/* Feed stdin, collect stdout and stderr, until the process exits and the
 * pipes close; enforce the deadline and stop requests. */
static void
supervise_command(exec_pool *pool, skipq_job *job, command *c)
{
    while (!c->exited || c->out[0] >= 0 || c->err[0] >= 0 || c->ctl[0] >= 0) {
        struct pollfd p[5];
        int ip;
        pump_pipes(job, c, &ip, p);
        if (ip == -2)
            break;
        int64_t now = skipq__now_ms();
        if (!c->exited && (ip < 0 || p[ip].revents))
            check_exit(pool, job, c, now);
        if (c->exited) {
            /* Its own process is gone and its group killed: whatever still
             * holds a pipe left the group (setsid). Take what is buffered
             * and stop waiting at the deadline, a stop, or the grace. */
            if (atomic_load(&job->stop) != 0 || now >= job->deadline_ms ||
                now - c->exited_ms >= EXIT_GRACE_MS) {
                drain(&c->out[0], &c->obuf, STDOUT_MAX, false);
                drain(&c->err[0], &c->ebuf, STDERR_TAIL, true);
                drain_control(c, job);
                break;
            }
        } else if (now >= job->deadline_ms) {
            job->timed_out = true;
            kill(-c->pid, SIGKILL);
        } else if (atomic_load(&job->stop) != 0) {
            /* cancel or shutdown: ask politely, then insist */
            if (!c->term_sent_ms) {
                kill(-c->pid, SIGTERM);
                c->term_sent_ms = now;
                c->killed_for_stop = true;
            } else if (now - c->term_sent_ms > 2000) {
                kill(-c->pid, SIGKILL);
            }
        }
    }
    if (!c->exited) {
        kill(-c->pid, SIGKILL);
        atomic_store(&job->pgid, 0);
        skipq__reaper_tell(pool, SKIPQ__REAPER_DEL, c->pid);
        while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR)
            ;
    }
}

/* The job's outcome from how the command ended and what it wrote. */
static void
command_outcome(skipq_job *job, command *c)
{
    buf *e = &c->ebuf;

    while (e->len > 0 && strchr(" \t\r\n", e->p[e->len - 1]))
        e->p[--e->len] = '\0';
    if (job->timed_out) {
        char d[32];
        skipq__fmt_duration(job->timeout_ms, d, sizeof d);
        skipq_job_fail(job, "timed out after %s", d);
    } else if (c->killed_for_stop && atomic_load(&job->stop) == 1) {
        job->outcome = SKIPQ_JOB_CANCELLED;
        skipq_job_fail(job, "cancelled");
        job->outcome = SKIPQ_JOB_CANCELLED;
        return;
    } else if (c->control.said.kind == SKIPQ__REPORT_OUTCOME && !c->killed_for_stop) {
        /* what it said on its control descriptor, whatever its exit
         * status (docs/worker.md) */
        skipq__report_apply(job, &c->control.said);
        return;
    } else if (WIFSIGNALED(c->status)) {
        skipq_job_fail(job, "killed by %s%s%s", signame(WTERMSIG(c->status)),
                       e->len ? ": " : "", e->len ? e->p : "");
    } else if (WIFEXITED(c->status) && WEXITSTATUS(c->status) != 0) {
        skipq_job_fail(job, "exit status %d%s%s", WEXITSTATUS(c->status),
                       e->len ? ": " : "", e->len ? e->p : "");
    } else {
        job->outcome = SKIPQ_JOB_OK;
        job->result = stdout_to_result(&c->obuf);
        return;
    }
    job->outcome = SKIPQ_JOB_ERROR;
}

void
skipq__run_command(exec_pool *pool, skipq_job *job)
{
    command c = {.in = {-1, -1},
                 .out = {-1, -1},
                 .err = {-1, -1},
                 .ctl = {-1, -1},
                 .pid = -1,
                 .pidfd = -1,
                 .in_len = strlen(job->payload_text)};

    if (start_command(pool, job, &c)) {
        supervise_command(pool, job, &c);
        skipq__control_end(&c.control, job);
        command_outcome(job, &c);
    }
    if (c.pid < 0 && job->outcome == SKIPQ_JOB_OK)
        job->outcome = SKIPQ_JOB_ERROR;
    for (int i = 0; i < 2; i++) {
        if (c.in[i] >= 0)
            close(c.in[i]);
        if (c.out[i] >= 0)
            close(c.out[i]);
        if (c.err[i] >= 0)
            close(c.err[i]);
        if (c.ctl[i] >= 0)
            close(c.ctl[i]);
    }
    if (c.pidfd >= 0)
        close(c.pidfd);
    free(c.obuf.p);
    free(c.ebuf.p);
    skipq__control_free(&c.control);
}
