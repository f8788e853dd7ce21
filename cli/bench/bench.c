/*
 * bench.c - `skipq bench`: how fast is skipq on this database?
 *
 * Creates a throwaway database (skipq_bench_<pid>) on the server of the
 * configured URL, migrates it, runs the measurements asked for and drops
 * it again, also after an error or Ctrl-C. Each measurement is one row of
 * the human table, or one JSON object per line with --json, in the shape
 * of the peer drivers' (bench/peers) so bench/compare.sh can put them
 * side by side. The measurements live in files of their own (bench.h
 * lists them).
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: skipq bench [MEASUREMENT ...] [--jobs N] [--concurrency C] [--prefetch P]\n"
    "                   [--workers K] [--on-success keep|delete] [--rate R]\n"
    "                   [--duration D] [--json]\n"
    "                   [--deep-jobs N] [--latency-jobs N] [--retention D]\n"
    "                   [--vacuum-interval D] [--windows N]\n"
    "                   [--archive-after D] [--archive-partition D]\n"
    "                   [--config F] [--database URL] [--quiet]\n"
    "\n"
    "Measures skipq on the server of the configured database, in a new\n"
    "database skipq_bench_<pid> that it creates, migrates and drops at the\n"
    "end (the role needs CREATEDB). MEASUREMENT is one or more of:\n"
    "\n"
    "  enqueue   one job per transaction from 1 and from 8 connections\n"
    "            (min(2000, N) jobs), skipq_enqueue_batch of N jobs, and\n"
    "            N JSON lines piped into `skipq enqueue KIND`\n"
    "  drain     N queued no-op jobs worked by K worker processes at\n"
    "            concurrency C: jobs/s, worker CPU seconds, peak RSS\n"
    "  latency   idle worker; one job every 20 ms; enqueue -> handler start\n"
    "  steady    a producer at R jobs/s for D: end-to-end latency and the\n"
    "            worst stall\n"
    "  deep      drain rate and claim time with 10,000 vs --deep-jobs\n"
    "            waiting (default 100,000; 1,000,000 with SKIPQ_LONG=1),\n"
    "            and with --deep-jobs scheduled for later: the claim with\n"
    "            nothing runnable, the drain of 10,000 runnable among them\n"
    "  command   drain with the command handler /bin/true at concurrency 8;\n"
    "            then examples/handlers/persistent.c (example_persistent\n"
    "            beside skipq, or $SKIPQ_BENCH_HANDLER) forked per job and\n"
    "            persistent, and the ratio of their jobs/s\n"
    "  all       all of the above (the default)\n"
    "  soak      not in all: one worker drains --jobs jobs for its maximum,\n"
    "            then a producer runs at --rate (default 80% of it) for\n"
    "            --duration (default 10m) with --retention (default 30s),\n"
    "            in --windows windows: per window jobs/s, pickup p50/p99,\n"
    "            the sizes of the table, its indexes and the archive\n"
    "\n"
    "  --jobs N          jobs to drain and to bulk-enqueue (default 100000)\n"
    "  --concurrency C   worker concurrency (default 16)\n"
    "  --workers K       worker processes for drain (default 1)\n"
    "  --prefetch P      jobs each worker claims beyond C: auto (the default)\n"
    "                    or 0..10000\n"
    "  --on-success W    the workers keep (default) or delete succeeded rows\n"
    "  --rate R          steady: jobs per second (default 200)\n"
    "  --duration D      steady: how long (default 10s); soak: default 10m\n"
    "  --retention D     soak: the worker's retention (default 30s)\n"
    "  --windows N       soak: windows the run is cut in (default 10)\n"
    "  --archive-after D soak: the worker's archive_after (default 0: off)\n"
    "  --archive-partition D  soak: the worker's archive_partition\n"
    "                    (default 1d, at least 1m)\n"
    "  --vacuum-interval D  the workers' vacuum_interval (default 10s;\n"
    "                    0 leaves the table to autovacuum alone)\n"
    "  --deep-jobs N     deep: the large backlog (default 100000)\n"
    "  --latency-jobs N  latency: samples (default 1000)\n"
    "  --json            one JSON object per line and measurement\n";

enum {
    OPT_JOBS = CLI_OPT_LOCAL,
    OPT_CONCURRENCY,
    OPT_WORKERS,
    OPT_PREFETCH,
    OPT_ON_SUCCESS,
    OPT_RATE,
    OPT_DURATION,
    OPT_JSON,
    OPT_DEEP_JOBS,
    OPT_LATENCY_JOBS,
    OPT_RETENTION,
    OPT_VACUUM_INTERVAL,
    OPT_WINDOWS,
    OPT_ARCHIVE_AFTER,
    OPT_ARCHIVE_PARTITION,
};

enum {
    M_ENQUEUE = 1 << 0,
    M_DRAIN = 1 << 1,
    M_LATENCY = 1 << 2,
    M_STEADY = 1 << 3,
    M_DEEP = 1 << 4,
    M_COMMAND = 1 << 5,
    M_ALL = 0x3f, /* all but soak */
    M_SOAK = 1 << 6,
};

volatile sig_atomic_t interrupted;
skipq_worker *volatile inproc_worker;

static void
on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
    if (inproc_worker)
        skipq_worker_stop(inproc_worker); /* async-signal-safe */
}

/* ---- small helpers ------------------------------------------------------ */

int64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* An error from the library, for a bench that has started: always a
 * runtime failure (exit 1), whatever kind the library says it is. */
int
fail1(const skipq_error *err)
{
    cli_fail(err);
    return CLI_EXIT_FAIL;
}

void
sleep_us(int64_t us)
{
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !interrupted)
        ;
}

/* ---- the command ------------------------------------------------------------- */

static int
parse_measurement(const char *s, unsigned *m)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {
        {"enqueue", M_ENQUEUE}, {"drain", M_DRAIN}, {"latency", M_LATENCY},
        {"steady", M_STEADY},   {"deep", M_DEEP},   {"command", M_COMMAND},
        {"all", M_ALL},         {"soak", M_SOAK},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) {
            *m |= names[i].bit;
            return 0;
        }
    return cli_usage_error("bench: unknown measurement \"%.64s\" (enqueue, drain, "
                           "latency, steady, deep, command, all or soak)",
                           s);
}

static const struct option opts[] = {
    {"jobs", required_argument, NULL, OPT_JOBS},
    {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"prefetch", required_argument, NULL, OPT_PREFETCH},
    {"on-success", required_argument, NULL, OPT_ON_SUCCESS},
    {"rate", required_argument, NULL, OPT_RATE},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"json", no_argument, NULL, OPT_JSON},
    {"deep-jobs", required_argument, NULL, OPT_DEEP_JOBS},
    {"latency-jobs", required_argument, NULL, OPT_LATENCY_JOBS},
    {"retention", required_argument, NULL, OPT_RETENTION},
    {"vacuum-interval", required_argument, NULL, OPT_VACUUM_INTERVAL},
    {"windows", required_argument, NULL, OPT_WINDOWS},
    {"archive-after", required_argument, NULL, OPT_ARCHIVE_AFTER},
    {"archive-partition", required_argument, NULL, OPT_ARCHIVE_PARTITION},
    CLI_COMMON_LONGOPTS,
    {0, 0, 0, 0},
};

/* --archive-after and --archive-partition as the worker will take them,
 * checked before any database is made so that a bad value is a usage
 * error: the setters' ranges, and skipq_worker_new's rule that
 * archive_after be shorter than retention. */
static int
check_archive(const struct bench *b)
{
    skipq_config *cfg = skipq_config_new();
    skipq_error err = {0};
    skipq_rc rc = cfg ? SKIPQ_OK : SKIPQ_ERR_NOMEM;

    if (rc == SKIPQ_OK)
        rc = skipq_config_set_archive_after(cfg, b->archive_after_ms, &err);
    if (rc == SKIPQ_OK && b->archive_partition_ms >= 0)
        rc = skipq_config_set_archive_partition(cfg, b->archive_partition_ms, &err);
    skipq_config_free(cfg);
    if (rc == SKIPQ_ERR_NOMEM)
        return cli_errorf(CLI_EXIT_FAIL, "bench: out of memory");
    if (rc != SKIPQ_OK)
        return cli_usage_error("%s", err.message);
    if (b->archive_after_ms > 0 && b->retention_ms > 0 &&
        b->archive_after_ms >= b->retention_ms)
        return cli_usage_error("--archive-after (%lld ms) must be shorter than --retention "
                               "(%lld ms)",
                               (long long)b->archive_after_ms, (long long)b->retention_ms);
    return 0;
}

/* The options and the measurements asked for into *b and *which:
 * CLI_NEXT to run them, or the exit status (usage errors print their
 * message; --help and --version are done, 0, without a database: the man
 * pages are made from `skipq bench --help` at build time; test
 * bench.help_and_version_need_no_database). */
static int
parse_args(int argc, char **argv, struct bench *b, unsigned *which)
{
    struct cli_ctx *ctx = b->ctx;
    long long v;
    int c, rc;

    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if ((rc = cli_once(ctx, opts, c)) != 0)
            return rc;
        switch (c) {
        case OPT_JOBS:
            if ((rc = cli_parse_int("--jobs", optarg, 1, 100000000, &v)) != 0)
                return rc;
            b->jobs = v;
            break;
        case OPT_CONCURRENCY:
            if ((rc = cli_parse_int("--concurrency", optarg, 1, 1024, &v)) != 0)
                return rc;
            b->concurrency = (int)v;
            break;
        case OPT_WORKERS:
            if ((rc = cli_parse_int("--workers", optarg, 1, 64, &v)) != 0)
                return rc;
            b->workers = (int)v;
            break;
        case OPT_PREFETCH:
            if ((rc = cli_parse_prefetch("--prefetch", optarg, &b->prefetch)) != 0)
                return rc;
            break;
        case OPT_ON_SUCCESS:
            if ((rc = cli_parse_on_success("--on-success", optarg, &b->on_success)) != 0)
                return rc;
            break;
        case OPT_RATE:
            if ((rc = cli_parse_int("--rate", optarg, 1, 1000000, &v)) != 0)
                return rc;
            b->rate = (double)v;
            b->rate_set = 1;
            break;
        case OPT_DURATION:
            if ((rc = cli_parse_duration("--duration", optarg, &b->duration_ms)) != 0)
                return rc;
            if (b->duration_ms <= 0)
                return cli_usage_error("--duration must be more than 0");
            b->duration_set = 1;
            break;
        case OPT_RETENTION:
            if ((rc = cli_parse_duration("--retention", optarg, &b->retention_ms)) != 0)
                return rc;
            if (b->retention_ms <= 0)
                return cli_usage_error("--retention must be more than 0");
            break;
        case OPT_VACUUM_INTERVAL:
            if ((rc = cli_parse_duration("--vacuum-interval", optarg, &b->vacuum_ms)) != 0)
                return rc;
            break;
        case OPT_WINDOWS:
            if ((rc = cli_parse_int("--windows", optarg, 1, 10000, &v)) != 0)
                return rc;
            b->windows = (int)v;
            break;
        case OPT_ARCHIVE_AFTER:
            if ((rc = cli_parse_duration("--archive-after", optarg,
                                         &b->archive_after_ms)) != 0)
                return rc;
            break;
        case OPT_ARCHIVE_PARTITION:
            if ((rc = cli_parse_duration("--archive-partition", optarg,
                                         &b->archive_partition_ms)) != 0)
                return rc;
            break;
        case OPT_JSON:
            b->json = 1;
            break;
        case OPT_DEEP_JOBS:
            if ((rc = cli_parse_int("--deep-jobs", optarg, 1, 100000000, &v)) != 0)
                return rc;
            b->deep_jobs = v;
            break;
        case OPT_LATENCY_JOBS:
            if ((rc = cli_parse_int("--latency-jobs", optarg, 1, 100000, &v)) != 0)
                return rc;
            b->latency_jobs = v;
            break;
        default:
            if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
                return rc;
        }
    }
    for (int i = optind; i < argc; i++)
        if ((rc = parse_measurement(argv[i], which)) != 0)
            return rc;
    if (*which == 0)
        *which = M_ALL;
    if ((rc = check_archive(b)) != 0)
        return rc;
    return CLI_NEXT;
}

/* The measurements asked for, in order, in a new database dropped at the
 * end, with Ctrl-C stopping the one that runs. */
static int
run(struct bench *b, unsigned which)
{
    struct sigaction sa, old_int, old_term, ign, old_pipe;
    int rc;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    /* output piped into `head` must not kill us before drop_db() */
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old_pipe);

    rc = create_db(b);
    if (rc == 0 && (which & M_ENQUEUE))
        rc = bench_enqueue(b);
    if (rc == 0 && (which & M_DRAIN))
        rc = bench_drain(b, 0);
    if (rc == 0 && (which & M_LATENCY))
        rc = bench_latency(b);
    if (rc == 0 && (which & M_STEADY))
        rc = bench_steady(b);
    if (rc == 0 && (which & M_DEEP))
        rc = bench_deep(b);
    if (rc == 0 && (which & M_COMMAND))
        rc = bench_drain(b, 1);
    if (rc == 0 && (which & M_SOAK))
        rc = bench_soak(b);
    drop_db(b);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    return rc;
}

int
cmd_bench(int argc, char **argv, struct cli_ctx *ctx)
{
    struct bench b = {
        .ctx = ctx,
        .jobs = 100000,
        .concurrency = 16,
        .workers = 1,
        .prefetch = SKIPQ_PREFETCH_AUTO,
        .rate = 200,
        .duration_ms = 10000,
        .latency_jobs = 1000,
        .retention_ms = 30000,
        .archive_partition_ms = -1,
        .windows = 10,
        .vacuum_ms = -1,
    };
    const char *lng = getenv("SKIPQ_LONG");
    unsigned which = 0;
    int rc;

    b.deep_jobs = lng && strcmp(lng, "1") == 0 ? 1000000 : 100000;
    /* per-job INFO lines would flood stderr and slow the worker down */
    if (ctx->log_level < SKIPQ_LOG_WARN)
        ctx->log_level = SKIPQ_LOG_WARN;
    if (argc >= 2 && strcmp(argv[1], "__worker") == 0)
        return worker_child();
    if ((rc = parse_args(argc, argv, &b, &which)) != CLI_NEXT)
        return rc;
    rc = run(&b, which);
    if (!b.json && b.nres > 0)
        print_table(&b);
    free(b.res);
    free(b.url);
    if (rc == 0 && interrupted)
        rc = cli_errorf(CLI_EXIT_FAIL, "bench: interrupted");
    return rc;
}
