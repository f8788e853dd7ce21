/*
 * cmd_worker.c - skipq worker: run the command handlers named in the
 * config (handlers:) or with --handler, for the queues and priorities
 * given, until SIGTERM/SIGINT (or, with --once, until nothing runnable is
 * left for it).
 *
 * SIGHUP reloads: the config file is read again with the command line's
 * flags over it, and checked in full; a broken one is refused with the
 * loader's message (its line and column) and nothing changes. A good one
 * starts a new worker in this process; once it has started, the old one
 * retires (skipq_worker_retire: no claims, unstarted jobs handed back,
 * running ones finish with no deadline), so no job is dropped or run
 * twice (tests/integration/test_reload.c). Each worker runs on a thread
 * of its own; this thread starts them, reloads, and joins what ends.
 *
 * With --http (or worker.http) the process serves /healthz, /readyz and
 * /metrics (worker_http.c): every worker feeds one registry, so counts
 * survive reloads, and the probes follow the worker in charge. Under
 * systemd ($NOTIFY_SOCKET) it says READY=1 once the first worker has
 * started, RELOADING=1 and READY=1 around a reload, STOPPING=1 on
 * SIGTERM/SIGINT, and WATCHDOG=1 every $WATCHDOG_USEC / 2 while
 * /healthz would say healthy (sdnotify.c).
 */
#include "cli.h"
#include "http.h"
#include "sdnotify.h"
#include "worker_http.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: skipq worker [--queue Q ...] [--priority high|high,normal|N]\n"
    "                    [--concurrency N] [--prefetch N|auto] [--on-success keep|delete]\n"
    "                    [--handler KIND=COMMAND ...]\n"
    "                    [--timeout D] [--once] [--verbose] [--log-payloads]\n"
    "                    [--http ADDR]\n"
    "                    [--config F] [--database URL] [--quiet]\n"
    "                    [--log-format text|json] [--log-level L]\n"
    "\n"
    "Runs jobs: for each job, the command for its kind gets the payload\n"
    "as JSON on stdin and SKIPQ_JOB_ID, SKIPQ_JOB_KIND, SKIPQ_JOB_ATTEMPT\n"
    "and SKIPQ_JOB_QUEUE in its environment. Exit 0 is success (stdout, if\n"
    "JSON, is the result); anything else is a failure (the end of stderr\n"
    "is the error), retried with backoff while attempts last.\n"
    "\n"
    "SIGTERM or SIGINT stops it. SIGHUP reloads the config file (the\n"
    "options given here still win): running jobs finish under the old\n"
    "config while a new worker takes over; a broken file is refused, with\n"
    "its line, and the old config stays.\n"
    "\n"
    "  --queue Q            serve queue Q (repeatable; default: config, else\n"
    "                       \"default\")\n"
    "  --priority P         bands to serve: high (>= 10), normal (-9..9),\n"
    "                       low (<= -10), or a number; comma-separated\n"
    "  --concurrency N      jobs run at once (default: config, else 8)\n"
    "  --prefetch N|auto    jobs claimed ahead of free executors (default:\n"
    "                       config, else auto: as many as start within ~2 ms)\n"
    "  --on-success W       keep (default: config, else keep) or delete the\n"
    "                       rows of jobs that succeeded\n"
    "  --handler KIND=CMD   run CMD through /bin/sh -c for jobs of KIND\n"
    "                       (repeatable; adds to the config's handlers)\n"
    "  --timeout D          timeout for --handler commands (e.g. 30s)\n"
    "  --once               stop once no runnable job is left (exit 0)\n"
    "  --verbose            also log each claim\n"
    "  --log-payloads       log each claim with the job's payload (off by\n"
    "                       default: payloads may hold secrets)\n"
    "  --http ADDR          serve /healthz, /readyz and /metrics on ADDR\n"
    "                       (HOST:PORT, [V6]:PORT, or :PORT for 127.0.0.1;\n"
    "                       default: config worker.http, else off)\n";

enum {
    OPT_QUEUE = CLI_OPT_LOCAL,
    OPT_PRIORITY,
    OPT_CONCURRENCY,
    OPT_PREFETCH,
    OPT_ON_SUCCESS,
    OPT_HANDLER,
    OPT_TIMEOUT,
    OPT_ONCE,
    OPT_VERBOSE,
    OPT_LOG_PAYLOADS,
    OPT_HTTP,
};

/* The options as given, applied to the config after it is loaded. */
struct flags {
    const char *queues[64];
    size_t nqueues;
    const char *handlers[64];
    size_t nhandlers;
    const char *priorities;
    long long concurrency;
    int prefetch;
    bool prefetch_set;
    skipq_on_success on_success;
    bool on_success_set;
    int64_t timeout_ms;
    const char *http;
    int once, verbose, log_payloads;
};

/* Flags beat the file: each goes through the same setter, at the start
 * and again over each reloaded file. SKIPQ_OK, or the error in err;
 * *misuse: the error is a misuse of the command line (the start adds
 * "try 'skipq --help'"). */
static skipq_rc
apply_flags(skipq_config *cfg, const struct flags *f, skipq_error *err, bool *misuse)
{
    skipq_rc r;

    *misuse = false;
    for (size_t i = 0; i < f->nqueues; i++) {
        r = i == 0 ? skipq_config_set_queue(cfg, f->queues[i], err)
                   : skipq_config_add_queue(cfg, f->queues[i], err);
        if (r != SKIPQ_OK)
            return r;
    }
    if (f->priorities &&
        (r = skipq_config_set_priorities(cfg, f->priorities, err)) != SKIPQ_OK) {
        char why[sizeof err->message];
        memcpy(why, err->message, sizeof why);
        snprintf(err->message, sizeof err->message, "--priority: %.*s",
                 (int)(sizeof err->message - sizeof "--priority: "), why);
        *misuse = true;
        return r;
    }
    if (f->concurrency > 0 &&
        (r = skipq_config_set_concurrency(cfg, (int)f->concurrency, err)) != SKIPQ_OK)
        return r;
    if (f->prefetch_set &&
        (r = skipq_config_set_prefetch(cfg, f->prefetch, err)) != SKIPQ_OK)
        return r;
    if (f->on_success_set &&
        (r = skipq_config_set_on_success(cfg, f->on_success, err)) != SKIPQ_OK)
        return r;
    if (f->http && (r = skipq_config_set_http(cfg, f->http, err)) != SKIPQ_OK) {
        *misuse = true;
        return r;
    }
    for (size_t i = 0; i < f->nhandlers; i++) {
        const char *eq = strchr(f->handlers[i], '=');
        char kind[256];
        snprintf(kind, sizeof kind, "%.*s", (int)(eq - f->handlers[i]), f->handlers[i]);
        if ((r = skipq_check_name("kind", kind, err)) != SKIPQ_OK ||
            (r = skipq_config_set_handler_shell(cfg, kind, eq + 1, f->timeout_ms, err)) !=
                SKIPQ_OK)
            return r;
    }
    if (skipq_config_handler_count(cfg) == 0) {
        *misuse = true;
        snprintf(err->message, sizeof err->message,
                 "no handlers: name commands under handlers: in the config, or pass "
                 "--handler KIND=COMMAND");
        return err->code = SKIPQ_ERR_CONFIG;
    }
    return SKIPQ_OK;
}

/* ---- running workers, and replacing them on SIGHUP ----------------------- */

/* One worker of this process and the thread that runs it. */
struct running {
    skipq_worker *w;
    const skipq_config *cfg; /* its config, for the log of what a reload changed */
    skipq_config *owned;     /* cfg, when a reload made it */
    pthread_t thread;
    skipq_rc rc;     /* under ctl.mu, once ended */
    skipq_error err; /* under ctl.mu, once ended */
    bool ended;      /* under ctl.mu: skipq_worker_run returned */
    struct running *next;
};

/*
 * The process's workers: the current one, and those a reload retired
 * whose running jobs are still finishing. SIGHUP, SIGTERM and SIGINT are
 * blocked in every thread (the executors and the maintenance thread
 * inherit the mask) and taken by one thread with sigwait, since a
 * reload loads files and logs, which a signal handler may not.
 */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct running *list;     /* every worker not yet joined */
    struct running *current;  /* the one in charge; NULL once it ended */
    struct running *incoming; /* a reload's worker, until it has started */
    int hups;                 /* SIGHUPs not acted on yet */
    bool term;                /* SIGTERM or SIGINT came: everything stops */
    bool quit;                /* the signal thread is to end */
    skipq_metrics *metrics;   /* with --http: what every worker feeds */
    pthread_cond_t notify_cv; /* wakes the systemd notifier to end */
    bool notify_quit;         /* the notifier is to end */
} ctl = {.mu = PTHREAD_MUTEX_INITIALIZER,
         .cv = PTHREAD_COND_INITIALIZER,
         .notify_cv = PTHREAD_COND_INITIALIZER};

/* What a reload starts from. */
struct reload {
    const struct flags *f;
    const skipq_config *start_cfg; /* the start's: its http address is served */
    const char *path;              /* the config file; NULL: none */
    char *database;                /* resolved at the start; a reload keeps it */
    const char *database_opt;      /* --database, to tell a changed file */
};

static void *
signal_waiter(void *arg)
{
    const sigset_t *set = arg;
    for (;;) {
        int sig = 0;
        if (sigwait(set, &sig) != 0)
            continue;
        pthread_mutex_lock(&ctl.mu);
        bool quit = ctl.quit;
        if (sig == SIGHUP) {
            ctl.hups++;
        } else if (!quit) {
            if (!ctl.term)
                sdnotify("STOPPING=1");
            ctl.term = true;
            for (struct running *r = ctl.list; r; r = r->next)
                skipq_worker_stop(r->w); /* retiring ones get their deadline now */
        }
        pthread_cond_signal(&ctl.cv);
        pthread_mutex_unlock(&ctl.mu);
        if (quit)
            return NULL;
    }
}

static void *
run_one(void *arg)
{
    struct running *r = arg;
    skipq_error err = {0};
    skipq_rc rc = skipq_worker_run(r->w, &err);

    pthread_mutex_lock(&ctl.mu);
    r->rc = rc;
    r->err = err;
    r->ended = true;
    pthread_cond_signal(&ctl.cv);
    pthread_mutex_unlock(&ctl.mu);
    return NULL;
}

static void
free_running(struct running *r)
{
    skipq_worker_free(r->w);
    skipq_config_free(r->owned);
    free(r);
}

/* A worker for cfg with the start's database and flags. */
static skipq_rc
make_worker(const struct reload *rl, const skipq_config *cfg, struct running **out,
            skipq_error *err)
{
    struct running *r = calloc(1, sizeof *r);
    skipq_rc rc;

    *out = NULL;
    if (!r) {
        snprintf(err->message, sizeof err->message, "out of memory");
        err->code = SKIPQ_ERR_NOMEM;
        return SKIPQ_ERR_NOMEM;
    }
    if ((rc = skipq_worker_new(cfg, &r->w, err)) != SKIPQ_OK ||
        (rc = skipq_worker_set_database(r->w, rl->database, err)) != SKIPQ_OK) {
        skipq_worker_free(r->w);
        free(r);
        return rc;
    }
    skipq_worker_set_once(r->w, rl->f->once);
    skipq_worker_set_log_payloads(r->w, rl->f->log_payloads);
    if (ctl.metrics)
        skipq_worker_set_metrics(r->w, ctl.metrics);
    r->cfg = cfg;
    *out = r;
    return SKIPQ_OK;
}

/* Start r's thread: the first worker is in charge at once, a reload's
 * once it has started (handover). Under ctl.mu. */
static bool
start_worker(struct running *r)
{
    if (pthread_create(&r->thread, NULL, run_one, r) != 0)
        return false;
    r->next = ctl.list;
    ctl.list = r;
    if (ctl.current)
        ctl.incoming = r;
    else
        ctl.current = r;
    return true;
}

/*
 * The incoming worker has started (registered, executors up): it takes
 * charge and the old one retires. Not before: a new worker that cannot
 * start (the server refuses the config's schedules, the database is
 * away) leaves the old one at work (test
 * reload_that_cannot_start_keeps_the_old_worker). Under ctl.mu.
 */
static void
handover(void)
{
    struct running *old = ctl.current;

    ctl.current = ctl.incoming;
    ctl.incoming = NULL;
    if (!old)
        return;
    sdnotify("READY=1"); /* the reload is over */
    cli_log(SKIPQ_LOG_INFO, "worker %lld took over from worker %lld, which retires",
            (long long)skipq_worker_id(ctl.current->w), (long long)skipq_worker_id(old->w));
    skipq_worker_retire(old->w);
}

/* "a, b" for the log. */
static void
join_list(char *out, size_t n, size_t count,
          const char *(*get)(const skipq_config *, size_t), const skipq_config *cfg)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < count && used < n; i++)
        used += (size_t)snprintf(out + used, n - used, "%s%s", i ? ", " : "", get(cfg, i));
}

static bool
has_kind(const skipq_config *cfg, const char *kind)
{
    for (size_t i = 0; i < skipq_config_handler_count(cfg); i++)
        if (strcmp(skipq_config_handler_kind(cfg, i), kind) == 0)
            return true;
    return false;
}

/* Kinds of a that b lacks, "x, y" in out ("" none). */
static void
kinds_missing(char *out, size_t n, const skipq_config *a, const skipq_config *b)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < skipq_config_handler_count(a) && used < n; i++) {
        const char *k = skipq_config_handler_kind(a, i);
        if (!has_kind(b, k))
            used += (size_t)snprintf(out + used, n - used, "%s%s", used ? ", " : "", k);
    }
}

/* What a reload changed, at info level: concurrency, queues, kinds. */
static void
log_changes(const char *path, const skipq_config *a, const skipq_config *b)
{
    char qa[256], qb[256], added[256], removed[256], msg[1200];
    size_t used = 0;

    join_list(qa, sizeof qa, skipq_config_queue_count(a), skipq_config_queue, a);
    join_list(qb, sizeof qb, skipq_config_queue_count(b), skipq_config_queue, b);
    kinds_missing(added, sizeof added, b, a);
    kinds_missing(removed, sizeof removed, a, b);
    msg[0] = '\0';
    if (skipq_config_concurrency(a) != skipq_config_concurrency(b))
        used += (size_t)snprintf(msg + used, sizeof msg - used, "; concurrency %d -> %d",
                                 skipq_config_concurrency(a), skipq_config_concurrency(b));
    if (strcmp(qa, qb) != 0 && used < sizeof msg)
        used += (size_t)snprintf(msg + used, sizeof msg - used, "; queues [%s] -> [%s]", qa,
                                 qb);
    if (added[0] && used < sizeof msg)
        used += (size_t)snprintf(msg + used, sizeof msg - used, "; kinds added: %s", added);
    if (removed[0] && used < sizeof msg)
        used += (size_t)snprintf(msg + used, sizeof msg - used, "; kinds removed: %s",
                                 removed);
    cli_log(SKIPQ_LOG_INFO,
            "reloaded \"%s\"%s; a new worker starts, then the old one stops claiming "
            "and retires once its running jobs finish",
            path ? path : "(command line only)",
            msg[0] ? msg
                   : ": concurrency, queues and kinds unchanged (other settings "
                     "as the file says)");
}

/* The file again, with the command line's flags over it; refused (and
 * logged) when anything in it is wrong: the old config stays. */
static skipq_config *
load_again(const struct reload *rl)
{
    skipq_error err = {0};
    skipq_config *cfg = skipq_config_new();
    bool misuse;

    if (!cfg) {
        cli_log(SKIPQ_LOG_ERROR, "reload refused, the old config stays: out of memory");
        return NULL;
    }
    if ((rl->path && skipq_config_load(cfg, rl->path, &err) != SKIPQ_OK) ||
        apply_flags(cfg, rl->f, &err, &misuse) != SKIPQ_OK) {
        cli_log(SKIPQ_LOG_ERROR, "reload refused, the old config stays: %s", err.message);
        skipq_config_free(cfg);
        return NULL;
    }
    const char *db = skipq_resolve_database(rl->database_opt, cfg);
    if ((db || rl->database) && (!db || !rl->database || strcmp(db, rl->database) != 0))
        cli_log(SKIPQ_LOG_WARN,
                "the database in \"%s\" changed: a reload keeps the "
                "current one, a restart applies it",
                rl->path ? rl->path : "(command line only)");
    if (skipq_config_set_database(cfg, rl->database, &err) != SKIPQ_OK) {
        cli_log(SKIPQ_LOG_ERROR, "reload refused, the old config stays: %s", err.message);
        skipq_config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* SIGHUP: a new worker with the file as it is now takes over; the
 * current one retires (skipq_worker_retire: no job dropped or run
 * twice). true: the new worker is starting (READY=1 follows at the
 * handover). Called without ctl.mu. */
static bool
start_reload(struct reload *rl)
{
    skipq_error err = {0};
    struct running *r = NULL;

    cli_log(SKIPQ_LOG_INFO, "received SIGHUP: reloading \"%s\"",
            rl->path ? rl->path : "(command line only)");
    skipq_config *cfg = load_again(rl);
    if (!cfg)
        return false;
    const char *was = skipq_config_http(rl->start_cfg), *now = skipq_config_http(cfg);
    if ((was || now) && (!was || !now || strcmp(was, now) != 0))
        cli_log(SKIPQ_LOG_WARN,
                "the http address changed: a reload keeps serving \"%s\", a restart "
                "applies it",
                was ? was : "(none)");
    if (make_worker(rl, cfg, &r, &err) != SKIPQ_OK) {
        cli_log(SKIPQ_LOG_ERROR, "reload refused, the old config stays: %s", err.message);
        skipq_config_free(cfg);
        return false;
    }
    r->owned = cfg;
    pthread_mutex_lock(&ctl.mu);
    bool stopping = ctl.term || !ctl.current;
    if (!stopping) /* first, so it comes before the workers' own lines */
        log_changes(rl->path, ctl.current->cfg, cfg);
    bool started = !stopping && start_worker(r);
    pthread_mutex_unlock(&ctl.mu);
    if (!started) {
        cli_log(SKIPQ_LOG_ERROR, "reload refused, the old config stays: %s",
                stopping ? "the worker is stopping" : "could not start a thread");
        free_running(r);
        return false;
    }
    return true;
}

/* A reload, told to systemd: RELOADING=1, then READY=1 once it is over
 * (at the handover, or at once when it was refused). */
static void
reload(struct reload *rl)
{
    sdnotify_reloading();
    if (!start_reload(rl))
        sdnotify("READY=1");
}

/* r's run ended: its error, if any, is logged (a retired worker's, or a
 * reload's that could not start) or becomes the exit status (the
 * current one's). Under ctl.mu. */
static int
ended(struct running *r, bool current)
{
    int st = CLI_EXIT_OK;

    if (r == ctl.incoming) {
        ctl.incoming = NULL;
        if (r->rc != SKIPQ_OK) {
            cli_log(SKIPQ_LOG_ERROR,
                    "reload failed, the old config stays: the new worker could not "
                    "start: %s",
                    r->err.message);
            sdnotify("READY=1");
            return CLI_EXIT_OK;
        }
        /* it started and ended (--once, or stopped) before we saw it:
         * the old one has nothing left to do that it would not do */
        ctl.incoming = r;
        handover();
        ctl.current = NULL;
        return CLI_EXIT_OK;
    }
    if (r->rc != SKIPQ_OK && current)
        st = cli_errorf(r->err.code == SKIPQ_ERR_CONFIG ? CLI_EXIT_USAGE : CLI_EXIT_FAIL,
                        "worker: %s", r->err.message);
    else if (r->rc != SKIPQ_OK)
        cli_log(SKIPQ_LOG_ERROR, "retired worker: %s", r->err.message);
    if (r->rc != SKIPQ_OK && current)
        for (struct running *o = ctl.list; o; o = o->next)
            skipq_worker_stop(o->w); /* the process is ending: no deadline-less wait */
    return r->rc != SKIPQ_OK && st == CLI_EXIT_OK ? CLI_EXIT_FAIL : st;
}

/* Unlink and return a worker whose run ended, or NULL. Under ctl.mu. */
static struct running *
take_ended(void)
{
    for (struct running **p = &ctl.list; *p; p = &(*p)->next) {
        if ((*p)->ended) {
            struct running *r = *p;
            *p = r->next;
            return r;
        }
    }
    return NULL;
}

/* Wait for ctl.cv at most ms. Under ctl.mu. */
static void
timed_wait(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&ctl.cv, &ctl.mu, &ts);
}

/* Until every worker has ended: reload on SIGHUP, join what ends. The
 * exit status: the current worker's, else 1 if a retired one failed. */
static int
serve(struct reload *rl)
{
    int status = CLI_EXIT_OK;

    pthread_mutex_lock(&ctl.mu);
    while (ctl.list) {
        struct running *r = take_ended();
        if (!r && ctl.incoming && skipq_worker_id(ctl.incoming->w) != 0) {
            handover();
            continue;
        }
        if (!r && (ctl.hups == 0 || ctl.incoming)) {
            /* a start is not signalled: look again shortly (a reload
             * waits for the one before it to be over) */
            if (ctl.incoming)
                timed_wait(20);
            else
                pthread_cond_wait(&ctl.cv, &ctl.mu);
            continue;
        }
        if (r) {
            bool current = r == ctl.current;
            if (current)
                ctl.current = NULL;
            int st = ended(r, current);
            if (st != CLI_EXIT_OK && (current || status == CLI_EXIT_OK))
                status = st;
            pthread_mutex_unlock(&ctl.mu);
            pthread_join(r->thread, NULL);
            free_running(r);
            pthread_mutex_lock(&ctl.mu);
            continue;
        }
        ctl.hups = 0;
        if (ctl.term || !ctl.current) {
            cli_log(SKIPQ_LOG_INFO, "received SIGHUP while stopping: ignored");
            continue;
        }
        pthread_mutex_unlock(&ctl.mu);
        reload(rl);
        pthread_mutex_lock(&ctl.mu);
    }
    pthread_mutex_unlock(&ctl.mu);
    return status;
}

/* ---- probes and systemd ---------------------------------------------------- */

/* The worker in charge, as /healthz, /readyz and the watchdog see it.
 * Under ctl.mu: a worker leaves ctl.current before it is freed. */
static void
probe_locked(struct probe_state *out)
{
    memset(out, 0, sizeof *out);
    out->ended = ctl.term;
    if (ctl.current) {
        out->have = true;
        skipq_worker_health_get(ctl.current->w, &out->h);
    }
}

static void
probe_current(struct probe_state *out, void *userdata)
{
    (void)userdata;
    pthread_mutex_lock(&ctl.mu);
    probe_locked(out);
    pthread_mutex_unlock(&ctl.mu);
}

/* Wait for ctl.notify_cv at most ms. Under ctl.mu. */
static void
notify_wait(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&ctl.notify_cv, &ctl.mu, &ts);
}

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Under systemd: READY=1 once the first worker has started (a start is
 * not signalled, so it looks every 20 ms until then), and WATCHDOG=1
 * every $WATCHDOG_USEC / 2 only while the loop of the worker in charge
 * turns, so a stuck loop gets the service restarted (test
 * worker_http.sd_notify_protocol).
 */
static void *
notifier(void *arg)
{
    uint64_t wd_usec = sdnotify_watchdog_usec();
    int64_t wd_ms = wd_usec ? (int64_t)(wd_usec / 2000) : 0;
    int64_t next_wd = 0;
    bool ready = false;
    (void)arg;

    if (wd_usec && wd_ms < 1)
        wd_ms = 1;
    pthread_mutex_lock(&ctl.mu);
    while (!ctl.notify_quit) {
        int64_t now = mono_ms();
        const char *say = NULL;
        if (!ready && ctl.current && skipq_worker_id(ctl.current->w) != 0) {
            ready = true;
            say = "READY=1\nSTATUS=processing jobs";
        } else if (ready && wd_ms && now >= next_wd) {
            struct probe_state st;
            char why[256];
            probe_locked(&st);
            if (probe_live(&st, why, sizeof why))
                say = "WATCHDOG=1";
            next_wd = now + wd_ms;
        }
        if (say) { /* not under the lock the probes take */
            pthread_mutex_unlock(&ctl.mu);
            sdnotify(say);
            pthread_mutex_lock(&ctl.mu);
            continue;
        }
        if (ready && !wd_ms)
            break;
        notify_wait(ready ? next_wd - now : 20);
    }
    pthread_mutex_unlock(&ctl.mu);
    return NULL;
}

/* Run first, and whatever reloads replace it, until SIGTERM or SIGINT
 * (or --once) ends them. */
static sigset_t signals; /* stays blocked to the end: ignored while exiting */

/* Block SIGHUP, SIGTERM and SIGINT before any thread starts (the HTTP
 * server's too), so every thread inherits the mask and only the signal
 * thread takes them; a server thread with the default action would let
 * SIGHUP kill the process. Commands start with an empty mask and the
 * default actions. */
static void
block_signals(void)
{
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&signals);
    sigaddset(&signals, SIGHUP);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
}

static int
run_workers(struct reload *rl, struct running *first)
{
    pthread_t sig_thread, notify_thread;
    bool notifying = false;

    block_signals();
    if (pthread_create(&sig_thread, NULL, signal_waiter, &signals) != 0) {
        free_running(first);
        return cli_errorf(CLI_EXIT_FAIL, "worker: could not start a thread for signals");
    }
    pthread_mutex_lock(&ctl.mu);
    bool started = start_worker(first);
    pthread_mutex_unlock(&ctl.mu);
    if (started && sdnotify_wanted())
        notifying = pthread_create(&notify_thread, NULL, notifier, NULL) == 0;
    int status;
    if (started) {
        status = serve(rl);
    } else {
        free_running(first);
        status = cli_errorf(CLI_EXIT_FAIL, "worker: could not start a thread");
    }
    pthread_mutex_lock(&ctl.mu);
    ctl.quit = true;
    ctl.notify_quit = true;
    pthread_cond_signal(&ctl.notify_cv);
    pthread_mutex_unlock(&ctl.mu);
    if (notifying)
        pthread_join(notify_thread, NULL);
    pthread_kill(sig_thread, SIGHUP);
    pthread_join(sig_thread, NULL);
    return status;
}

int
cmd_worker(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option opts[] = {
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"priority", required_argument, NULL, OPT_PRIORITY},
        {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
        {"prefetch", required_argument, NULL, OPT_PREFETCH},
        {"on-success", required_argument, NULL, OPT_ON_SUCCESS},
        {"handler", required_argument, NULL, OPT_HANDLER},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"once", no_argument, NULL, OPT_ONCE},
        {"verbose", no_argument, NULL, OPT_VERBOSE},
        {"log-payloads", no_argument, NULL, OPT_LOG_PAYLOADS},
        {"http", required_argument, NULL, OPT_HTTP},
        CLI_COMMON_LONGOPTS,
        {0, 0, 0, 0},
    };
    struct flags f = {.on_success = SKIPQ_ON_SUCCESS_KEEP};
    int c, rc;
    skipq_error err = {0};

    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (c != OPT_QUEUE && c != OPT_HANDLER && (rc = cli_once(ctx, opts, c)) != 0)
            return rc;
        switch (c) {
        case OPT_QUEUE:
            if ((rc = cli_check_name("queue", optarg)) != 0)
                return rc;
            if (f.nqueues == 64)
                return cli_usage_error("too many --queue options");
            f.queues[f.nqueues++] = optarg;
            break;
        case OPT_PRIORITY:
            f.priorities = optarg;
            break;
        case OPT_CONCURRENCY:
            if ((rc = cli_parse_int("--concurrency", optarg, 1, 1024, &f.concurrency)) != 0)
                return rc;
            break;
        case OPT_PREFETCH:
            if ((rc = cli_parse_prefetch("--prefetch", optarg, &f.prefetch)) != 0)
                return rc;
            f.prefetch_set = true;
            break;
        case OPT_ON_SUCCESS:
            if ((rc = cli_parse_on_success("--on-success", optarg, &f.on_success)) != 0)
                return rc;
            f.on_success_set = true;
            break;
        case OPT_HANDLER:
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return cli_usage_error("--handler wants KIND=COMMAND, not \"%s\"", optarg);
            if (f.nhandlers == 64)
                return cli_usage_error("too many --handler options");
            f.handlers[f.nhandlers++] = optarg;
            break;
        case OPT_TIMEOUT:
            if ((rc = cli_parse_duration("--timeout", optarg, &f.timeout_ms)) != 0)
                return rc;
            break;
        case OPT_ONCE:
            f.once = 1;
            break;
        case OPT_VERBOSE:
            f.verbose = 1;
            break;
        case OPT_LOG_PAYLOADS:
            f.log_payloads = 1;
            break;
        case OPT_HTTP:
            if (!http_addr_valid(optarg))
                return cli_usage_error("--http wants HOST:PORT, [IPV6]:PORT or :PORT, not "
                                       "\"%.300s\"",
                                       optarg);
            f.http = optarg;
            break;
        default:
            if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
                return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error("unexpected argument \"%s\"", argv[optind]);
    if ((rc = cli_load(ctx)) != 0)
        return rc;

    bool misuse;
    if (apply_flags(ctx->cfg, &f, &err, &misuse) != SKIPQ_OK)
        return misuse ? cli_usage_error("%s", err.message) : cli_fail(&err);
    if (f.verbose && ctx->log_level > SKIPQ_LOG_DEBUG)
        ctx->log_level = SKIPQ_LOG_DEBUG;

    const char *path = ctx->config_path;
    if (!path && getenv("SKIPQ_CONFIG") && *getenv("SKIPQ_CONFIG"))
        path = getenv("SKIPQ_CONFIG");
    const char *http = skipq_config_http(ctx->cfg);
    if (http && !http_addr_valid(http))
        return cli_usage_error("worker.http wants HOST:PORT, [IPV6]:PORT or :PORT, not "
                               "\"%.300s\"",
                               http);
    struct reload rl = {.f = &f,
                        .start_cfg = ctx->cfg,
                        .path = path,
                        .database_opt = ctx->database_opt};
    struct running *first = NULL;
    struct worker_http *wh = NULL;
    if (ctx->database && !(rl.database = strdup(ctx->database)))
        return cli_errorf(CLI_EXIT_FAIL, "out of memory");
    if (http && !(ctl.metrics = skipq_metrics_new())) {
        free(rl.database);
        return cli_errorf(CLI_EXIT_FAIL, "out of memory");
    }
    if (make_worker(&rl, ctx->cfg, &first, &err) != SKIPQ_OK) {
        rc = cli_fail(&err);
        goto out;
    }
    if (http) { /* before any claim: a bad address ends the start */
        char why[512];
        block_signals();
        if (worker_http_start(http, ctl.metrics, rl.database, probe_current, NULL, &wh, why,
                              sizeof why) != 0) {
            free_running(first);
            rc = cli_errorf(CLI_EXIT_FAIL, "worker: could not serve --http: %s", why);
            goto out;
        }
        cli_log(SKIPQ_LOG_INFO, "serving /healthz, /readyz and /metrics on http://%s",
                worker_http_bound(wh));
    }
    rc = run_workers(&rl, first);
out:
    worker_http_stop(wh); /* before the registry it reads */
    skipq_metrics_free(ctl.metrics);
    ctl.metrics = NULL;
    free(rl.database);
    return rc;
}
