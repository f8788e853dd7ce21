/*
 * exec.c - running handlers: the executor threads and command handlers (a
 * process per job, payload on stdin, result on stdout, the end of stderr
 * as the error).
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

#ifdef SKIPQ_FAILPOINTS
bool
skipq__failpoint(const char *name)
{
    const char *fp = getenv("SKIPQ_FAILPOINT");
    return fp && strcmp(fp, name) == 0;
}
#endif

void
skipq__sanitize_utf8(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2
                   : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
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

void
skipq__job_free(skipq_job *job)
{
    if (!job)
        return;
    json_object_put(job->payload);
    free(job->kind);
    free(job->queue);
    free(job->payload_text);
    free(job->error);
    free(job->result);
    free(job);
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

static char *
env_entry(const char *name, const char *fmt, ...) SKIPQ__PRINTF(2, 3);
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

#define JOB_ENV 5

static const char *
signame(int sig)
{
    static const char *const names[] = {
        [SIGHUP] = "SIGHUP", [SIGINT] = "SIGINT", [SIGQUIT] = "SIGQUIT",
        [SIGILL] = "SIGILL", [SIGABRT] = "SIGABRT", [SIGBUS] = "SIGBUS",
        [SIGFPE] = "SIGFPE", [SIGKILL] = "SIGKILL", [SIGSEGV] = "SIGSEGV",
        [SIGPIPE] = "SIGPIPE", [SIGALRM] = "SIGALRM", [SIGTERM] = "SIGTERM",
    };
    if (sig > 0 && sig < (int)(sizeof names / sizeof names[0]) && names[sig])
        return names[sig];
    return "a signal";
}

const char *skipq__signame(int sig);
const char *
skipq__signame(int sig)
{
    return signame(sig);
}

static void
fmt_duration(int64_t ms, char *out, size_t n)
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
    (void)skipq__json_parse(out->p, out->len, 0, &obj, NULL);
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
enum { REAPER_ADD = 1, REAPER_DEL = 2 };

static void
reaper_tell(exec_pool *p, int op, pid_t pgid)
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
        skipq__log(SKIPQ_LOG_WARN, "the handler reaper (pid %d) stopped answering: %s; "
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
    int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536
                  ? (int)rl.rlim_cur : 65536;
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
            if (msg[0] == REAPER_DEL && groups[i] == msg[1]) {
                groups[i] = 0;
                break;
            }
            if (msg[0] == REAPER_ADD && groups[i] == 0) {
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

static skipq_rc
reaper_start(exec_pool *p, int cap, skipq_error *err)
{
    int sv[2];
    sigset_t all, old;
    pid_t parent = getpid();

    /* SEQPACKET: each message arrives whole, and the reaper sees the
     * worker's end close */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return skipq__fail(err, SKIPQ_ERR_IO, "could not start the handler reaper: %s",
                           strerror(errno));
    struct timeval tv = {0, 100 * 1000}; /* see reaper_tell */
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
static void
reaper_stop(exec_pool *p)
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
static int
spawn_command(char *const argv[], char *const envp[], const int fds[3], pid_t *out)
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
        for (int i = 0; i < 3; i++) {
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

static void
run_command(exec_pool *pool, skipq_job *job)
{
    const handler *h = job->h;
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1};
    char **envp = NULL;
    size_t nenv = 0;
    pid_t pid = -1;
    int pidfd = -1, status = 0, rc;
    buf obuf = {0}, ebuf = {0};
    size_t in_off = 0, in_len = strlen(job->payload_text);
    bool exited = false, killed_for_stop = false;
    int64_t term_sent_ms = 0, exited_ms = 0;

    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(errp, O_CLOEXEC)) {
        skipq_job_fail(job, "could not create pipes: %s", strerror(errno));
        goto out;
    }
    while (environ[nenv])
        nenv++;
    envp = calloc(nenv + JOB_ENV + 1, sizeof *envp);
    if (!envp) {
        skipq_job_fail(job, "out of memory");
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], "SKIPQ_JOB_", 10) != 0)
            envp[k++] = environ[i];
    char *own[JOB_ENV] = {
        env_entry("SKIPQ_JOB_ID", "%lld", (long long)job->id),
        env_entry("SKIPQ_JOB_KIND", "%s", job->kind),
        env_entry("SKIPQ_JOB_ATTEMPT", "%d", job->attempt),
        env_entry("SKIPQ_JOB_QUEUE", "%s", job->queue),
        env_entry("SKIPQ_JOB_WORKER", "%lld", (long long)skipq_worker_id(job->w)),
    };
    for (int i = 0; i < JOB_ENV; i++)
        if (own[i])
            envp[k++] = own[i];

    const int fds[3] = {in[0], out[1], errp[1]};
    rc = spawn_command(h->argv, envp, fds, &pid);
    for (int i = 0; i < JOB_ENV; i++)
        free(own[i]);
    if (rc != 0) {
        skipq_job_fail(job, "could not run \"%s\": %s", h->argv[0], strerror(rc));
        pid = -1;
        goto out;
    }
    reaper_tell(pool, REAPER_ADD, pid);
    atomic_store(&job->pgid, pid);
    close(in[0]), in[0] = -1;
    close(out[1]), out[1] = -1;
    close(errp[1]), errp[1] = -1;
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    if (in_len == 0)
        close(in[1]), in[1] = -1;
#ifdef SYS_pidfd_open
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif

    /* Feed stdin, collect stdout and stderr, until the process exits and
     * the pipes close; enforce the deadline and stop requests. */
    while (!exited || out[0] >= 0 || errp[0] >= 0) {
        struct pollfd p[4];
        int n = 0, io = -1, ie = -1, ii = -1, ip = -1;
        if (out[0] >= 0) p[io = n++] = (struct pollfd){out[0], POLLIN, 0};
        if (errp[0] >= 0) p[ie = n++] = (struct pollfd){errp[0], POLLIN, 0};
        if (in[1] >= 0) p[ii = n++] = (struct pollfd){in[1], POLLOUT, 0};
        if (!exited && pidfd >= 0) p[ip = n++] = (struct pollfd){pidfd, POLLIN, 0};
        int64_t now = skipq__now_ms();
        int64_t until = now + 100;
        if (!exited && pidfd < 0)
            until = now + 5;
        if (!exited && !job->timed_out && job->deadline_ms < until)
            until = job->deadline_ms;
        if (exited && exited_ms + EXIT_GRACE_MS < until)
            until = exited_ms + EXIT_GRACE_MS;
        int timeout = until > now ? (int)(until - now) : 0;
        if (poll(p, (nfds_t)n, timeout) < 0 && errno != EINTR)
            break;
        char chunk[16384];
        if (io >= 0 && p[io].revents) {
            ssize_t r = read(out[0], chunk, sizeof chunk);
            if (r > 0)
                buf_add(&obuf, chunk, (size_t)r, STDOUT_MAX, false);
            else if (r == 0 || (errno != EINTR && errno != EAGAIN))
                close(out[0]), out[0] = -1;
        }
        if (ie >= 0 && p[ie].revents) {
            ssize_t r = read(errp[0], chunk, sizeof chunk);
            if (r > 0)
                buf_add(&ebuf, chunk, (size_t)r, STDERR_TAIL, true);
            else if (r == 0 || (errno != EINTR && errno != EAGAIN))
                close(errp[0]), errp[0] = -1;
        }
        if (ii >= 0 && p[ii].revents) {
            ssize_t wr = write(in[1], job->payload_text + in_off, in_len - in_off);
            if (wr > 0)
                in_off += (size_t)wr;
            if ((wr < 0 && errno != EAGAIN && errno != EINTR) || in_off >= in_len)
                close(in[1]), in[1] = -1;
        }
        now = skipq__now_ms();
        if (!exited && (ip < 0 || p[ip].revents)) {
            siginfo_t si;
            memset(&si, 0, sizeof si);
            if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                si.si_pid == pid) {
                /* Background children may still hold the pipes: the
                 * group goes with its leader, killed while the leader
                 * is not yet reaped, so its id cannot have been reused. */
                kill(-pid, SIGKILL);
                atomic_store(&job->pgid, 0);
                reaper_tell(pool, REAPER_DEL, pid);
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                    ;
                exited = true;
                exited_ms = now;
                /* Its outcome is settled, unless a stop killed it: a
                 * later stop must not hand it back. */
                if (atomic_load(&job->stop) == 0)
                    atomic_store(&job->finished, true);
                if (in[1] >= 0)
                    close(in[1]), in[1] = -1;
            }
        }
        if (exited) {
            /* Its own process is gone and its group killed: whatever still
             * holds a pipe left the group (setsid). Take what is buffered
             * and stop waiting at the deadline, a stop, or the grace. */
            if (atomic_load(&job->stop) != 0 || now >= job->deadline_ms ||
                now - exited_ms >= EXIT_GRACE_MS) {
                drain(&out[0], &obuf, STDOUT_MAX, false);
                drain(&errp[0], &ebuf, STDERR_TAIL, true);
                break;
            }
        } else if (now >= job->deadline_ms) {
            job->timed_out = true;
            kill(-pid, SIGKILL);
        } else if (atomic_load(&job->stop) != 0) {
            /* cancel or shutdown: ask politely, then insist */
            if (!term_sent_ms) {
                kill(-pid, SIGTERM);
                term_sent_ms = now;
                killed_for_stop = true;
            } else if (now - term_sent_ms > 2000) {
                kill(-pid, SIGKILL);
            }
        }
    }
    if (!exited) {
        kill(-pid, SIGKILL);
        atomic_store(&job->pgid, 0);
        reaper_tell(pool, REAPER_DEL, pid);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    while (ebuf.len > 0 && strchr(" \t\r\n", ebuf.p[ebuf.len - 1]))
        ebuf.p[--ebuf.len] = '\0';

    if (job->timed_out) {
        char d[32];
        fmt_duration(job->timeout_ms, d, sizeof d);
        skipq_job_fail(job, "timed out after %s", d);
    } else if (killed_for_stop && atomic_load(&job->stop) == 1) {
        job->outcome = SKIPQ_JOB_CANCELLED;
        skipq_job_fail(job, "cancelled");
        job->outcome = SKIPQ_JOB_CANCELLED;
        goto out;
    } else if (WIFSIGNALED(status)) {
        skipq_job_fail(job, "killed by %s%s%s", signame(WTERMSIG(status)),
                       ebuf.len ? ": " : "", ebuf.len ? ebuf.p : "");
    } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        skipq_job_fail(job, "exit status %d%s%s", WEXITSTATUS(status),
                       ebuf.len ? ": " : "", ebuf.len ? ebuf.p : "");
    } else {
        job->outcome = SKIPQ_JOB_OK;
        job->result = stdout_to_result(&obuf);
        goto out;
    }
    job->outcome = SKIPQ_JOB_ERROR;
out:
    if (pid < 0 && job->outcome == SKIPQ_JOB_OK)
        job->outcome = SKIPQ_JOB_ERROR;
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0) close(in[i]);
        if (out[i] >= 0) close(out[i]);
        if (errp[i] >= 0) close(errp[i]);
    }
    if (pidfd >= 0)
        close(pidfd);
    free(envp);
    free(obuf.p);
    free(ebuf.p);
}

void
skipq__job_run(exec_pool *pool, skipq_job *job)
{
    job->outcome = SKIPQ_JOB_ERROR;
    job->started_ms = skipq__now_ms();
    job->deadline_ms = job->timeout_ms > 0 ? job->started_ms + job->timeout_ms
                                           : INT64_MAX;
    if (job->h->fn) {
        job->outcome = job->h->fn(job, job->h->userdata);
        /* A C handler cannot be killed; past its deadline the attempt
         * counts as timed out whatever it returned. */
        if (job->timeout_ms > 0 && skipq__now_ms() > job->deadline_ms &&
            job->outcome != SKIPQ_JOB_CANCELLED) {
            char d[32];
            fmt_duration(job->timeout_ms, d, sizeof d);
            free(job->result);
            job->result = NULL;
            skipq_job_fail(job, "timed out after %s", d);
            job->outcome = SKIPQ_JOB_ERROR;
            job->timed_out = true;
        }
    } else {
        job->outcome = SKIPQ_JOB_ERROR;
        run_command(pool, job);
    }
    if (job->outcome == SKIPQ_JOB_ERROR && !job->error)
        job->error = strdup("handler failed");
    if (job->error)
        skipq__sanitize_utf8(job->error);
    job->duration_ms = (double)(skipq__now_ms() - job->started_ms);
}

/* ---- the pool ------------------------------------------------------------ */

static void *
executor(void *arg)
{
    exec_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->ready_head && !p->quit) {
            p->idle++;
            pthread_cond_wait(&p->cv, &p->mu);
            p->idle--;
        }
        skipq_job *job = p->ready_head;
        if (!job) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        p->ready_head = job->next;
        if (!p->ready_head)
            p->ready_tail = NULL;
        p->ready_count--;
        job->next = NULL;
        pthread_mutex_unlock(&p->mu);

        /* a job handed back at shutdown before it started does not run */
        if (atomic_load(&job->stop) != 2) {
            int64_t t0 = skipq__now_us();
            skipq__job_run(p, job);
            int64_t us = skipq__now_us() - t0;
            job->run_us = us > 0 ? us : 1; /* 0 means "did not run" */
            /* settled, unless it ended because a stop told it to */
            if (atomic_load(&job->stop) == 0)
                atomic_store(&job->finished, true);
        }

        pthread_mutex_lock(&p->mu);
        if (p->done_tail)
            p->done_tail->next = job;
        else
            p->done_head = job;
        p->done_tail = job;
        bool first = p->done_count++ == 0;
        pthread_mutex_unlock(&p->mu);
        if (first) {
            uint64_t one = 1;
            ssize_t r = write(p->wake_fd, &one, sizeof one);
            (void)r; /* eventfd: only fails when the counter is huge */
        }
    }
}

skipq_rc
skipq__pool_start(exec_pool *p, const skipq_config *cfg, int wake_fd, skipq_error *err)
{
    sigset_t all, old;
    skipq_rc rc;
    int n = cfg->concurrency;

    memset(p, 0, sizeof *p);
    p->reaper_fd = -1;
    p->reaper_pid = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->wake_fd = wake_fd;
    p->threads = calloc((size_t)n, sizeof *p->threads);
    if (!p->threads) {
        skipq__pool_stop(p);
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    }
    /* Forked before any command runs, so it holds none of their pipes;
     * only when commands may run (C handlers start no process). */
    if (cfg->nhandlers > 0 && (rc = reaper_start(p, n, err)) != SKIPQ_OK) {
        skipq__pool_stop(p);
        return rc;
    }
    /* Handlers' threads take no process signals: SIGTERM and SIGINT are
     * for the thread that runs the worker loop; SIGPIPE from a command
     * that closed its stdin early becomes EPIPE. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    int e = pthread_attr_setstacksize(&attr, cfg->handler_stack_size);
    if (e != 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
        skipq__pool_stop(p);
        return skipq__fail(err, SKIPQ_ERR_CONFIG,
                           "could not use a handler stack size of %zu bytes: %s",
                           cfg->handler_stack_size, strerror(e));
    }
    for (int i = 0; i < n; i++) {
        if ((e = pthread_create(&p->threads[i], &attr, executor, p)) != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            pthread_attr_destroy(&attr);
            skipq__pool_stop(p);
            return skipq__fail(err, SKIPQ_ERR_NOMEM,
                               "could not start executor thread %d (stack %zu bytes): %s", i,
                               cfg->handler_stack_size, strerror(e));
        }
        p->nthreads++;
    }
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return SKIPQ_OK;
}

void
skipq__pool_stop(exec_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    p->threads = NULL;
    p->nthreads = 0;
    reaper_stop(p);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

void
skipq__pool_push(exec_pool *p, skipq_job *jobs)
{
    if (!jobs)
        return;
    skipq_job *last = jobs;
    int n = 1;
    while (last->next) {
        last = last->next;
        n++;
    }
    pthread_mutex_lock(&p->mu);
    if (p->ready_tail)
        p->ready_tail->next = jobs;
    else
        p->ready_head = jobs;
    p->ready_tail = last;
    p->ready_count += n;
    /* Wake one idle executor per job, not all of them: a broadcast for
     * one job woke 16 threads to fight over the mutex, and on 2 cores the
     * one that got the job started ~0.7 ms later (strace of bench
     * latency). Executors that finish take the next job without a wake. */
    int wake = n < p->idle ? n : p->idle;
    bool all = wake == p->idle;
    pthread_mutex_unlock(&p->mu);
    if (all)
        pthread_cond_broadcast(&p->cv);
    else
        for (int i = 0; i < wake; i++)
            pthread_cond_signal(&p->cv);
}

/* Jobs no executor has started yet (prefetched ones), taken back. */
skipq_job *
skipq__pool_take_ready(exec_pool *p)
{
    pthread_mutex_lock(&p->mu);
    skipq_job *list = p->ready_head;
    p->ready_head = p->ready_tail = NULL;
    p->ready_count = 0;
    pthread_mutex_unlock(&p->mu);
    return list;
}

int
skipq__pool_ready_count(exec_pool *p, int *idle)
{
    pthread_mutex_lock(&p->mu);
    int n = p->ready_count;
    *idle = p->idle;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int64_t
skipq__pool_oldest_ready_ms(exec_pool *p)
{
    pthread_mutex_lock(&p->mu);
    int64_t t = p->ready_head ? p->ready_head->claimed_ms : INT64_MAX;
    pthread_mutex_unlock(&p->mu);
    return t;
}

skipq_job *
skipq__pool_take_done(exec_pool *p)
{
    pthread_mutex_lock(&p->mu);
    skipq_job *list = p->done_head;
    p->done_head = p->done_tail = NULL;
    p->done_count = 0;
    pthread_mutex_unlock(&p->mu);
    return list;
}
