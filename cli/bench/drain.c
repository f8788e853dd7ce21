/*
 * drain.c - the drain and command measurements: queued jobs worked by
 * separate worker processes (this binary re-executed as the hidden
 * `bench __worker`), so their CPU time and peak RSS are the worker's
 * alone and not the benchmark's buffers. They count handled jobs in a
 * shared memory page the benchmark polls, instead of polling the table,
 * which would take CPU from the server being measured. The deep
 * measurement times its drains here too (run_drain).
 */
#include "bench.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define COMMAND_JOBS_MAX 10000

/* ---- the worker process --------------------------------------------------- */

/* Shared with the worker processes (a memfd mapped by both). */
struct shm {
    atomic_llong handled;
};

static struct shm *child_shm;
static skipq_worker *child_worker;

static void
child_on_signal(int sig)
{
    (void)sig;
    if (child_worker)
        skipq_worker_stop(child_worker);
}

static skipq_outcome
count_handler(skipq_job *job, void *userdata)
{
    (void)job;
    atomic_fetch_add_explicit(&((struct shm *)userdata)->handled, 1, memory_order_relaxed);
    return SKIPQ_JOB_OK;
}

/* The command handler of a worker child: /bin/true ("command"), or the
 * C example handler forked per job ("fork") or persistent. */
static skipq_rc
set_command(skipq_config *cfg, const char *mode, skipq_error *err)
{
    static const char *const argv_true[] = {"/bin/true", NULL};
    const char *handler = getenv("SKIPQ_BENCH_HANDLER");
    const char *argv[] = {handler, strcmp(mode, "fork") == 0 ? "--once" : NULL, NULL};
    skipq_rc rc;

    if (strcmp(mode, "command") == 0)
        return skipq_config_set_handler_command(cfg, KIND_CMD, argv_true, 0, err);
    if (!handler || !*handler)
        return skipq_config_set_handler_command(cfg, KIND_CMD, NULL, 0, err);
    rc = skipq_config_set_handler_command(cfg, KIND_CMD, argv, 0, err);
    if (rc == SKIPQ_OK && strcmp(mode, "persistent") == 0)
        rc = skipq_config_set_handler_persistent(cfg, KIND_CMD, 0, err);
    return rc;
}

/*
 * `skipq bench __worker`, started by run_drain(): one worker with the
 * settings in the environment, until SIGTERM. Not for people: it needs
 * the shared page the benchmark passes down.
 */
int
worker_child(void)
{
    const char *fd_s = getenv("SKIPQ_BENCH_SHM");
    const char *mode = getenv("SKIPQ_BENCH_MODE");
    const char *conc = getenv("SKIPQ_BENCH_CONCURRENCY");
    const char *url = getenv("SKIPQ_DATABASE_URL");
    skipq_config *cfg = NULL;
    skipq_error err = {0};
    skipq_rc rc;
    struct sigaction sa;

    if (!fd_s || !mode || !conc)
        return cli_usage_error("bench: \"__worker\" is internal");
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the benchmark */
    int fd = atoi(fd_s);
    child_shm = mmap(NULL, sizeof *child_shm, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (child_shm == MAP_FAILED)
        return cli_errorf(CLI_EXIT_FAIL, "bench worker: could not map: %s",
                          strerror(errno));
    if (getenv("SKIPQ_BENCH_NOLOG")) /* profiling: no log hook at all */
        skipq_set_log(NULL, NULL);
    cfg = skipq_config_new();
    if (!cfg) {
        rc = SKIPQ_ERR_NOMEM;
        snprintf(err.message, sizeof err.message, "out of memory");
        goto out;
    }
    rc = skipq_config_set_concurrency(cfg, atoi(conc), &err);
    const char *prefetch = getenv("SKIPQ_BENCH_PREFETCH");
    if (rc == SKIPQ_OK && prefetch)
        rc = skipq_config_set_prefetch(cfg, atoi(prefetch), &err);
    const char *on_success = getenv("SKIPQ_BENCH_ON_SUCCESS");
    if (rc == SKIPQ_OK && on_success)
        rc = skipq_config_set_on_success(cfg, (skipq_on_success)atoi(on_success), &err);
    const char *vacuum = getenv("SKIPQ_BENCH_VACUUM_MS");
    if (rc == SKIPQ_OK && vacuum && atoll(vacuum) >= 0)
        rc = skipq_config_set_vacuum_interval(cfg, atoll(vacuum), &err);
    if (rc == SKIPQ_OK && url)
        rc = skipq_config_set_database(cfg, url, &err);
    if (rc == SKIPQ_OK && strcmp(mode, "noop") != 0)
        rc = set_command(cfg, mode, &err);
    if (rc == SKIPQ_OK)
        rc = skipq_worker_new(cfg, &child_worker, &err);
    if (rc == SKIPQ_OK && strcmp(mode, "noop") == 0)
        rc = skipq_worker_register(child_worker, KIND_NOOP, count_handler, child_shm, &err);
    if (rc == SKIPQ_OK) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = child_on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        rc = skipq_worker_run(child_worker, &err);
    }
out:
    skipq_worker_free(child_worker);
    child_worker = NULL;
    skipq_config_free(cfg);
    munmap(child_shm, sizeof *child_shm);
    return rc == SKIPQ_OK ? CLI_EXIT_OK : cli_fail(&err);
}

/* environ without our own variables, plus ours. Caller frees the array
 * and the strings from index `own` on. */
char **
child_env(const struct bench *b, int fd, const char *mode, int conc, size_t *own)
{
    enum { OURS = 8 }; /* the entries added below */
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + OURS + 1, sizeof *env); /* and the NULL */
    if (!env)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "SKIPQ_BENCH_", 12) != 0 &&
            strncmp(environ[i], "SKIPQ_DATABASE_URL=", 19) != 0)
            env[k++] = environ[i];
    *own = k;
    if (asprintf(&env[k++], "SKIPQ_DATABASE_URL=%s", b->url) < 0 ||
        asprintf(&env[k++], "SKIPQ_BENCH_SHM=%d", fd) < 0 ||
        asprintf(&env[k++], "SKIPQ_BENCH_MODE=%s", mode) < 0 ||
        asprintf(&env[k++], "SKIPQ_BENCH_CONCURRENCY=%d", conc) < 0 ||
        asprintf(&env[k++], "SKIPQ_BENCH_PREFETCH=%d", b->prefetch) < 0 ||
        asprintf(&env[k++], "SKIPQ_BENCH_ON_SUCCESS=%d", (int)b->on_success) < 0 ||
        asprintf(&env[k++], "SKIPQ_BENCH_VACUUM_MS=%lld", (long long)b->vacuum_ms) < 0 ||
        asprintf(&env[k++], "SKIPQ_BENCH_HANDLER=%s", b->handler ? b->handler : "") < 0) {
        for (size_t i = *own; i < k; i++)
            free(env[i]);
        free(env);
        return NULL;
    }
    return env;
}

void
env_free(char **env, size_t own)
{
    if (!env)
        return;
    for (size_t i = own; env[i]; i++)
        free(env[i]);
    free(env);
}

static int
children_alive(pid_t *pids, int n)
{
    for (int i = 0; i < n; i++) {
        int st;
        if (pids[i] > 0 && waitpid(pids[i], &st, WNOHANG) == pids[i]) {
            pids[i] = -1;
            return 0;
        }
    }
    return 1;
}

/*
 * A worker process's peak RSS: VmHWM of its own address space. Not
 * wait4's ru_maxrss: posix_spawn borrows the bench's address space until
 * the exec (vfork), and the kernel counts that space's high-water mark in
 * the child's maxrss, so the worker was charged the bench's own memory
 * (its 100,000-job fill buffers: 12.8 MB reported for a worker whose
 * VmHWM was 8.8 MB).
 */
static long
peak_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* How many jobs have succeeded, by the table: those that show it, and
 * with on_success delete those that are gone (ids handed out less the
 * rows left; the bench deletes nothing else before it counts). */
static long long
succeeded(struct bench *b)
{
    if (b->on_success == SKIPQ_ON_SUCCESS_KEEP)
        return sql_int(b->pg, "SELECT count(*) FROM skipq.jobs"
                              " WHERE status" SQL_EQ "'succeeded'");
    return sql_int(b->pg, "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END"
                          " FROM skipq.jobs_id_seq)"
                          " - count(*) FILTER (WHERE status" SQL_NE "'succeeded')"
                          " FROM skipq.jobs");
}

/* Are jobs still queued or running? 1 yes, 0 no, -1 error. Each scalar
 * subquery stops at the first live entry of its partial index (in its
 * order: EXISTS would lose the ORDER BY, and the planner then scanned the
 * table): cheap enough to ask every few milliseconds, where counting the
 * succeeded rows took 12% of this machine's CPU from the command drain it
 * was timing. */
static int
jobs_left(struct bench *b)
{
    return (int)sql_int(b->pg,
                        "SELECT ((SELECT 1 FROM skipq.jobs WHERE status" SQL_EQ "'queued'"
                        "   ORDER BY queue, priority DESC, run_at, id LIMIT 1) IS NOT NULL"
                        " OR (SELECT 1 FROM skipq.jobs WHERE status" SQL_EQ "'running'"
                        "   ORDER BY locked_by LIMIT 1) IS NOT NULL)::int");
}

/*
 * Start `workers` worker processes on the queued jobs and time them until
 * `target` jobs are done: by the shared counter (no-op handler), by the
 * table for command handlers, then (sql_check) until the table agrees.
 */
int
run_drain(struct bench *b, const struct drain_spec *d, struct drain_out *o)
{
    pid_t pids[64];
    int fd = -1, rc = 0, started = 0;
    struct shm *shm = MAP_FAILED;
    char **env = NULL;
    size_t own = 0;
    static char a0[] = "skipq", a1[] = "bench", a2[] = "__worker";
    char *argv[] = {a0, a1, a2, NULL};
    int64_t cap_us = (120 + d->target / 500) * 1000000LL;

    memset(o, 0, sizeof *o);
    fd = memfd_create("skipq-bench", 0);
    if (fd < 0 || ftruncate(fd, sizeof *shm) != 0 ||
        (shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) ==
            MAP_FAILED) {
        rc = cli_errorf(CLI_EXIT_FAIL, "bench: could not share memory: %s",
                        strerror(errno));
        goto out;
    }
    atomic_store(&shm->handled, 0);
    env = child_env(b, fd, d->mode, d->concurrency, &own);
    if (!env) {
        rc = cli_errorf(CLI_EXIT_FAIL, "bench: out of memory");
        goto out;
    }
    fflush(NULL);
    int64_t t0 = now_us();
    for (; started < d->workers; started++) {
        int e = posix_spawn(&pids[started], "/proc/self/exe", NULL, NULL, argv, env);
        if (e != 0) {
            rc = cli_errorf(CLI_EXIT_FAIL, "bench: could not start a worker: %s",
                            strerror(e));
            goto stop;
        }
    }
    close(fd);
    fd = -1;
    /* Wait for the handlers: poll the counter (cheap) or, for command
     * handlers that cannot count, the table every 20 ms, until nothing is
     * queued or running (sql_check then counts the succeeded rows). */
    for (long long n = 0, spins = 0;; spins++) {
        if (strcmp(d->mode, "noop") != 0) {
            int left = jobs_left(b);
            if (left < 0) {
                rc = CLI_EXIT_FAIL;
                goto stop;
            }
            n = left ? 0 : d->target;
        } else {
            n = atomic_load(&shm->handled);
        }
        if (n >= d->target)
            break;
        if (interrupted || now_us() - t0 > cap_us ||
            (spins % 64 == 0 && !children_alive(pids, started))) {
            if (strcmp(d->mode, "noop") != 0)
                n = succeeded(b);
            rc = cli_errorf(CLI_EXIT_FAIL,
                            interrupted ? "bench: interrupted"
                            : now_us() - t0 > cap_us
                                ? "bench: drain did not finish in time (%lld of %lld)"
                                : "bench: a worker process died (%lld of %lld done)",
                            n, d->target);
            goto stop;
        }
        sleep_us(strcmp(d->mode, "noop") != 0 ? 20000 : 1000);
    }
    if (d->sql_check) {
        for (long long n; (n = succeeded(b)) < d->target;) {
            if (n < 0 || interrupted || now_us() - t0 > cap_us) {
                rc = cli_errorf(CLI_EXIT_FAIL, "bench: jobs did not all succeed");
                goto stop;
            }
            sleep_us(2000);
        }
    }
    o->seconds = (double)(now_us() - t0) / 1e6;
stop:
    for (int i = 0; i < started; i++) {
        long hwm = pids[i] > 0 ? peak_rss_kb(pids[i]) : -1;
        if (hwm > o->max_rss_kb)
            o->max_rss_kb = hwm;
        if (pids[i] > 0)
            kill(pids[i], SIGTERM);
    }
    for (int i = 0; i < started; i++) {
        struct rusage ru;
        int st;
        if (pids[i] <= 0)
            continue;
        if (wait4(pids[i], &st, 0, &ru) != pids[i])
            continue;
        o->cpu_s += (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
        if (rc == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
            rc = cli_errorf(CLI_EXIT_FAIL, "bench: a worker process failed (status %d)",
                            WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
out:
    env_free(env, own);
    if (shm != MAP_FAILED)
        munmap(shm, sizeof *shm);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ---- drain -------------------------------------------------------------------- */

/* The C example handler: $SKIPQ_BENCH_HANDLER, else example_persistent
 * beside this binary (the build directory). NULL when there is none. */
static char *
find_example(void)
{
    const char *env = getenv("SKIPQ_BENCH_HANDLER");
    char self[4096], *path = NULL;
    ssize_t n;

    if (env && *env)
        return access(env, X_OK) == 0 ? strdup(env) : NULL;
    if ((n = readlink("/proc/self/exe", self, sizeof self - 1)) <= 0)
        return NULL;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    if (asprintf(&path, "%s/example_persistent", self) < 0)
        return NULL;
    if (access(path, X_OK) != 0) {
        free(path);
        return NULL;
    }
    return path;
}

/* One drain of the example handler's jobs, forked per job or persistent. */
static int
example_drain(struct bench *b, const char *mode, long long n, struct result *r)
{
    struct drain_spec d = {.mode = mode,
                           .target = n,
                           .concurrency = 8,
                           .workers = 1,
                           .sql_check = 1};
    struct drain_out o;
    char cfgname[48];
    int rc;

    if ((rc = reset_queue(b)) != 0 || (rc = fill_batch(b, n, KIND_CMD, NULL)) != 0 ||
        (rc = sql(b->pg, "ANALYZE skipq.jobs")) != 0 || (rc = run_drain(b, &d, &o)) != 0)
        return rc;
    snprintf(cfgname, sizeof cfgname, "c8 example %s", mode);
    result_init(r, "command_drain", cfgname);
    r->jobs = n;
    r->seconds = o.seconds;
    r->jobs_per_s = (double)n / o.seconds;
    r->cpu_s = o.cpu_s;
    r->max_rss_kb = o.max_rss_kb;
    return 0;
}

/*
 * The same handler (examples/handlers/persistent.c) both ways in one run:
 * a process per job (its --once mode), then persistent, with the ratio of
 * their rates.
 */
static int
bench_command_example(struct bench *b)
{
    struct result fork_r, pers_r;
    long long nf = b->jobs < COMMAND_JOBS_MAX ? b->jobs : COMMAND_JOBS_MAX;
    long long np = b->jobs < 5 * COMMAND_JOBS_MAX ? b->jobs : 5 * COMMAND_JOBS_MAX;
    int rc;

    if (!(b->handler = find_example())) {
        fprintf(stderr, "bench: example_persistent not found beside skipq (set "
                        "SKIPQ_BENCH_HANDLER): persistent handlers not measured\n");
        return 0;
    }
    if ((rc = example_drain(b, "fork", nf, &fork_r)) == 0 &&
        (rc = report(b, &fork_r)) == 0 &&
        (rc = example_drain(b, "persistent", np, &pers_r)) == 0) {
        pers_r.fork_jps = fork_r.jobs_per_s;
        rc = report(b, &pers_r);
    }
    free(b->handler);
    b->handler = NULL;
    return rc;
}

int
bench_drain(struct bench *b, int command)
{
    long long n = command ? (b->jobs < COMMAND_JOBS_MAX ? b->jobs : COMMAND_JOBS_MAX)
                          : b->jobs;
    struct drain_spec d = {
        .mode = command ? "command" : "noop",
        .target = n,
        .concurrency = command ? 8 : b->concurrency,
        .workers = command ? 1 : b->workers,
        .sql_check = 1,
    };
    struct drain_out o;
    struct result r;
    char cfgname[48];
    int rc;

    if ((rc = reset_queue(b)) != 0 ||
        (rc = fill_batch(b, n, command ? KIND_CMD : KIND_NOOP, NULL)) != 0 ||
        (rc = sql(b->pg, "ANALYZE skipq.jobs")) != 0 || (rc = run_drain(b, &d, &o)) != 0)
        return rc;
    /* c16 (prefetch auto), c16p200 (prefetch 200), c16p200w2 (and worker
     * processes), c16del (on_success delete) */
    int k = snprintf(cfgname, sizeof cfgname, "c%d", d.concurrency);
    if (b->prefetch != SKIPQ_PREFETCH_AUTO)
        k += snprintf(cfgname + k, sizeof cfgname - (size_t)k, "p%d", b->prefetch);
    if (b->on_success == SKIPQ_ON_SUCCESS_DELETE)
        k += snprintf(cfgname + k, sizeof cfgname - (size_t)k, "del");
    if (d.workers > 1)
        snprintf(cfgname + k, sizeof cfgname - (size_t)k, "w%d", d.workers);
    result_init(&r, command ? "command_drain" : "drain", cfgname);
    r.jobs = n;
    r.seconds = o.seconds;
    r.jobs_per_s = (double)n / o.seconds;
    r.cpu_s = o.cpu_s;
    r.max_rss_kb = o.max_rss_kb;
    if ((rc = report(b, &r)) != 0 || !command)
        return rc;
    return bench_command_example(b);
}
