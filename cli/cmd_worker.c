/*
 * cmd_worker.c - skipq worker: run the command handlers named in the
 * config (handlers:) or with --handler, for the queues and priorities
 * given, until SIGTERM/SIGINT (or, with --once, until nothing runnable is
 * left for it). SIGHUP is logged and ignored: there is no reload yet.
 */
#include "cli.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: skipq worker [--queue Q ...] [--priority high|high,normal|N]\n"
    "                    [--concurrency N] [--prefetch N|auto] [--on-success keep|delete]\n"
    "                    [--handler KIND=COMMAND ...]\n"
    "                    [--timeout D] [--once] [--verbose] [--log-payloads]\n"
    "                    [--config F] [--database URL] [--quiet]\n"
    "                    [--log-format text|json]\n"
    "\n"
    "Runs jobs: for each job, the command for its kind gets the payload\n"
    "as JSON on stdin and SKIPQ_JOB_ID, SKIPQ_JOB_KIND, SKIPQ_JOB_ATTEMPT\n"
    "and SKIPQ_JOB_QUEUE in its environment. Exit 0 is success (stdout, if\n"
    "JSON, is the result); anything else is a failure (the end of stderr\n"
    "is the error), retried with backoff while attempts last.\n"
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
    "                       default: payloads may hold secrets)\n";

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
};

static skipq_worker *running_worker;

static void
on_signal(int sig)
{
    (void)sig;
    if (running_worker)
        skipq_worker_stop(running_worker); /* async-signal-safe */
}

/*
 * SIGHUP's default action killed the worker at once (status 129), its
 * jobs left running until a rescuer took them, and operators send it to
 * ask for a reload. There is nothing to reload yet, so it is blocked in
 * every thread and this one waits for it and logs it (a log hook is not
 * async-signal-safe, so a signal handler could not).
 */
static atomic_int hup_quit;

static void *
hup_waiter(void *arg)
{
    const sigset_t *hup = arg;
    for (;;) {
        int sig = 0;
        if (sigwait(hup, &sig) != 0)
            continue;
        if (atomic_load(&hup_quit))
            return NULL;
        cli_log(SKIPQ_LOG_WARN, "received SIGHUP: ignored (skipq worker does not "
                                "reload its config; restart it to apply changes)");
    }
}

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
    int once, verbose, log_payloads;
};

/* Flags beat the file: each goes through the same setter. 0, or the
 * exit status after printing the error. */
static int
apply_flags(struct cli_ctx *ctx, const struct flags *f)
{
    skipq_error err = {0};
    int rc;

    for (size_t i = 0; i < f->nqueues; i++) {
        skipq_rc r = i == 0 ? skipq_config_set_queue(ctx->cfg, f->queues[i], &err)
                            : skipq_config_add_queue(ctx->cfg, f->queues[i], &err);
        if (r != SKIPQ_OK)
            return cli_fail(&err);
    }
    if (f->priorities &&
        skipq_config_set_priorities(ctx->cfg, f->priorities, &err) != SKIPQ_OK)
        return cli_usage_error("--priority: %s", err.message);
    if (f->concurrency > 0 &&
        skipq_config_set_concurrency(ctx->cfg, (int)f->concurrency, &err) != SKIPQ_OK)
        return cli_fail(&err);
    if (f->prefetch_set &&
        skipq_config_set_prefetch(ctx->cfg, f->prefetch, &err) != SKIPQ_OK)
        return cli_fail(&err);
    if (f->on_success_set &&
        skipq_config_set_on_success(ctx->cfg, f->on_success, &err) != SKIPQ_OK)
        return cli_fail(&err);
    for (size_t i = 0; i < f->nhandlers; i++) {
        const char *eq = strchr(f->handlers[i], '=');
        char kind[256];
        snprintf(kind, sizeof kind, "%.*s", (int)(eq - f->handlers[i]), f->handlers[i]);
        if ((rc = cli_check_name("kind", kind)) != 0)
            return rc;
        if (skipq_config_set_handler_shell(ctx->cfg, kind, eq + 1, f->timeout_ms, &err) !=
            SKIPQ_OK)
            return cli_fail(&err);
    }
    if (skipq_config_handler_count(ctx->cfg) == 0)
        return cli_usage_error("no handlers: name commands under handlers: in the "
                               "config, or pass --handler KIND=COMMAND");
    if (f->verbose && ctx->log_level > SKIPQ_LOG_DEBUG)
        ctx->log_level = SKIPQ_LOG_DEBUG;
    return 0;
}

/* Run w with SIGTERM and SIGINT stopping it and SIGHUP logged. */
static skipq_rc
run_until_stopped(skipq_worker *w, skipq_error *err)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    running_worker = w;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* blocked before the worker starts its threads, which inherit it;
     * commands start with an empty mask and SIGHUP's default action */
    static sigset_t hup; /* stays blocked to the end: ignored while exiting */
    pthread_t hup_thread;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, NULL);
    atomic_store(&hup_quit, 0);
    bool hup_started = pthread_create(&hup_thread, NULL, hup_waiter, &hup) == 0;
    if (!hup_started)
        cli_log(SKIPQ_LOG_WARN, "could not start a thread for SIGHUP: it is ignored "
                                "unlogged");

    skipq_rc r = skipq_worker_run(w, err);

    if (hup_started) {
        atomic_store(&hup_quit, 1);
        pthread_kill(hup_thread, SIGHUP);
        pthread_join(hup_thread, NULL);
    }
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    running_worker = NULL;
    return r;
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
        CLI_COMMON_LONGOPTS,
        {0, 0, 0, 0},
    };
    struct flags f = {.on_success = SKIPQ_ON_SUCCESS_KEEP};
    int c, rc;
    skipq_error err = {0};
    skipq_worker *w = NULL;

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
        default:
            if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
                return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error("unexpected argument \"%s\"", argv[optind]);
    if ((rc = cli_load(ctx)) != 0)
        return rc;

    if ((rc = apply_flags(ctx, &f)) != 0)
        return rc;

    if (skipq_worker_new(ctx->cfg, &w, &err) != SKIPQ_OK ||
        skipq_worker_set_database(w, ctx->database, &err) != SKIPQ_OK) {
        skipq_worker_free(w);
        return cli_fail(&err);
    }
    skipq_worker_set_once(w, f.once);
    skipq_worker_set_log_payloads(w, f.log_payloads);

    skipq_rc r = run_until_stopped(w, &err);
    skipq_worker_free(w);
    if (r != SKIPQ_OK)
        return cli_errorf(err.code == SKIPQ_ERR_CONFIG ? CLI_EXIT_USAGE : CLI_EXIT_FAIL,
                          "worker: %s", err.message);
    return CLI_EXIT_OK;
}
