/*
 * main.c - `skipq <command>`: dispatch, the options every command takes,
 * and the helpers the commands share (cli.h): config and connection,
 * error lines with the right exit status, option value parsing, tables.
 * Log lines are log.c's.
 *
 * Only cli/ chooses exit statuses; the library reports a skipq_rc and a
 * message, and cli_fail() maps INVALID/CONFIG to 2 and the rest to 1.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char main_usage[] =
    "usage: skipq [OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "A background job queue that needs nothing but PostgreSQL.\n"
    "\n"
    "commands:\n"
    "  migrate    apply missing schema migrations (--status: list them)\n"
    "  enqueue    add a job, or JSON lines from stdin in one transaction\n"
    "  worker     run jobs\n"
    "  jobs       ls | show | retry | cancel | delete\n"
    "  batch      new | add | seal | show: jobs with a completion job\n"
    "  chain      enqueue JSON lines, each waiting for the one before\n"
    "  stats      counts per queue and priority, workers alive\n"
    "  metrics    the same once, in the Prometheus text format\n"
    "  recover    put failed, stale queued or orphaned running jobs back\n"
    "  prune      delete old finished jobs in batches\n"
    "  schedule   ls | add | rm | pause | resume periodic jobs\n"
    "  queue      ls | pause | resume | set (limits) queues\n"
    "  serve      the HTTP API and the dashboard (127.0.0.1:8080)\n"
    "  bench      measure throughput and pickup latency\n"
    "\n"
    "options (every command takes them):\n"
    "  --config F          config file (else $SKIPQ_CONFIG)\n"
    "  --database URL      database (else $SKIPQ_DATABASE_URL, the config's\n"
    "                      database, then libpq's PG* variables)\n"
    "  --log-level L       debug, info (default), warn or error: the least\n"
    "                      level of log line printed\n"
    "  --quiet             print only warnings and errors (--log-level warn)\n"
    "  --log-format F      text (default) or json\n"
    "  -h, --help          help (skipq COMMAND --help for a command)\n"
    "  --version           print the version\n"
    "\n"
    "exit status: 0 done, 1 runtime failure, 2 usage or bad input\n";

struct command {
    const char *name;
    int (*fn)(int argc, char **argv, struct cli_ctx *ctx);
};

static const struct command commands[] = {
    {"migrate", cmd_migrate}, {"enqueue", cmd_enqueue}, {"worker", cmd_worker},
    {"jobs", cmd_jobs},       {"stats", cmd_stats},     {"recover", cmd_recover},
    {"prune", cmd_prune},     {"bench", cmd_bench},     {"schedule", cmd_schedule},
    {"batch", cmd_batch},     {"chain", cmd_chain},     {"queue", cmd_queue},
    {"metrics", cmd_metrics}, {"serve", cmd_serve},
};

/* ---- errors ---------------------------------------------------------- */

static void
vprint_error(const char *fmt, va_list ap, const char *suffix)
{
    char msg[2048];
    char *shown;

    vsnprintf(msg, sizeof msg, fmt, ap);
    if (suffix)
        snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "%s", suffix);
    /* --log-format json: every line on stderr is JSON, errors too (test
     * cli_output.json_log_carries_errors_and_levels) */
    if (cli_log_error_json(msg))
        return;
    /* one line, and no terminal controls, whatever a server, a file or
     * a job's data put in the message */
    shown = skipq_escape_text(msg, 0);
    fprintf(stderr, "skipq: %s\n", shown ? shown : "out of memory");
    free(shown);
}

int
cli_errorf(int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprint_error(fmt, ap, NULL);
    va_end(ap);
    return code;
}

int
cli_usage_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprint_error(fmt, ap, "; try 'skipq --help'");
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int
cli_fail(const skipq_error *err)
{
    cli_errorf(0, "%s", err->message[0] ? err->message : skipq_rc_name(err->code));
    return (err->code == SKIPQ_ERR_INVALID || err->code == SKIPQ_ERR_CONFIG)
               ? CLI_EXIT_USAGE
               : CLI_EXIT_FAIL;
}

int
cli_db_vmessage(PGconn *pg, const PGresult *res, char *msg, size_t msglen, const char *fmt,
                va_list ap)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char what[512];

    vsnprintf(what, sizeof what, fmt, ap);
    if (!primary)
        primary = res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res)
                  : pg                              ? PQerrorMessage(pg)
                                                    : "no connection";
    snprintf(msg, msglen, "%s: %s", what, primary);
    /* libpq's own messages end in a newline: one line, as every message */
    msg[strcspn(msg, "\n")] = '\0';
    return skipq_rc_from_sqlstate(state) == SKIPQ_ERR_INVALID ? CLI_EXIT_USAGE
                                                              : CLI_EXIT_FAIL;
}

int
cli_db_message(PGconn *pg, const PGresult *res, char *msg, size_t msglen, const char *fmt,
               ...)
{
    va_list ap;

    va_start(ap, fmt);
    int rc = cli_db_vmessage(pg, res, msg, msglen, fmt, ap);
    va_end(ap);
    return rc;
}

int
cli_db_fail(PGconn *pg, const PGresult *res, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    int rc = cli_db_vmessage(pg, res, msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_errorf(0, "%s", msg);
    return rc;
}

/* ---- common options, config, connection ------------------------------- */

static void
print_version(void)
{
    printf("skipq %s (libskipq %s)\n", SKIPQ_VERSION, skipq_version());
}

/*
 * An option that takes a value, given twice: refused rather than the last
 * one silently winning (`--queue a ... --queue b` enqueued into b, and a
 * --database before the command was replaced by one after it).
 */
static int
once(struct cli_ctx *ctx, int c, const char *name)
{
    for (size_t i = 0; i < ctx->nseen; i++)
        if (ctx->seen[i] == c)
            return cli_usage_error("--%s given twice: give it once", name);
    if (ctx->nseen < sizeof ctx->seen / sizeof ctx->seen[0])
        ctx->seen[ctx->nseen++] = c;
    return 0;
}

int
cli_once(struct cli_ctx *ctx, const struct option *longopts, int c)
{
    if (c >= CLI_OPT_CONFIG && c < CLI_OPT_LOCAL)
        return 0; /* cli_common_opt() counts the common ones */
    for (const struct option *o = longopts; o->name; o++)
        if (o->val == c && !o->flag)
            return o->has_arg == no_argument ? 0 : once(ctx, c, o->name);
    return 0;
}

/*
 * Overwrite the --database value in our own argv with its masked form,
 * so that ps and /proc/PID/cmdline stop showing the password (they read
 * this memory). Anyone who looked before this ran, and the shell's
 * history, saw it: docs/security.md says to keep URLs with passwords in
 * the config or the environment instead.
 */
static void
scrub_arg(char *arg)
{
    size_t n = strlen(arg);
    char *masked = skipq_mask_url(arg);
    size_t m = masked ? strlen(masked) : 0;

    if (m > n)
        m = n;
    if (masked)
        memcpy(arg, masked, m);
    memset(arg + m, '\0', n - m);
    free(masked);
}

int
cli_common_opt(struct cli_ctx *ctx, int c, char **argv, const char *usage)
{
    int rc;

    switch (c) {
    case CLI_OPT_CONFIG:
        if ((rc = once(ctx, c, "config")) != 0)
            return rc;
        ctx->config_path = optarg;
        return CLI_NEXT;
    case CLI_OPT_DATABASE:
        if ((rc = once(ctx, c, "database")) != 0)
            return rc;
        /* "" would fall through to $SKIPQ_DATABASE_URL, the config and
         * then the PG* variables: another database than the one named */
        if (!*optarg)
            return cli_usage_error("--database needs a connection string, "
                                   "not \"\" (leave it out to use "
                                   "$SKIPQ_DATABASE_URL, the config or the "
                                   "PG* variables)");
        free(ctx->database_copy);
        ctx->database_copy = strdup(optarg);
        if (!ctx->database_copy)
            return cli_errorf(CLI_EXIT_FAIL, "out of memory");
        ctx->database_opt = ctx->database_copy;
        scrub_arg(optarg);
        return CLI_NEXT;
    case CLI_OPT_QUIET:
        if (ctx->level_set && !ctx->quiet)
            return cli_usage_error("--quiet and --log-level both set the level: give one");
        ctx->quiet = ctx->level_set = 1;
        ctx->log_level = SKIPQ_LOG_WARN;
        return CLI_NEXT;
    case CLI_OPT_LOG_LEVEL:
        if ((rc = once(ctx, c, "log-level")) != 0)
            return rc;
        if (ctx->quiet)
            return cli_usage_error("--quiet and --log-level both set the level: give one");
        ctx->level_set = 1;
        if (strcmp(optarg, "debug") == 0)
            ctx->log_level = SKIPQ_LOG_DEBUG;
        else if (strcmp(optarg, "info") == 0)
            ctx->log_level = SKIPQ_LOG_INFO;
        else if (strcmp(optarg, "warn") == 0 || strcmp(optarg, "warning") == 0)
            ctx->log_level = SKIPQ_LOG_WARN;
        else if (strcmp(optarg, "error") == 0)
            ctx->log_level = SKIPQ_LOG_ERROR;
        else
            return cli_usage_error(
                "unknown --log-level \"%.64s\": use debug, info, warn or "
                "error",
                optarg);
        return CLI_NEXT;
    case CLI_OPT_LOG_FORMAT:
        if ((rc = once(ctx, c, "log-format")) != 0)
            return rc;
        if (strcmp(optarg, "text") == 0)
            ctx->log_format = CLI_LOG_TEXT;
        else if (strcmp(optarg, "json") == 0)
            ctx->log_format = CLI_LOG_JSON;
        else
            return cli_usage_error("unknown --log-format \"%s\": use text or "
                                   "json",
                                   optarg);
        return CLI_NEXT;
    case CLI_OPT_VERSION:
        print_version();
        return CLI_EXIT_OK;
    case 'h':
        fputs(usage, stdout);
        return CLI_EXIT_OK;
    case ':':
        return cli_usage_error("option \"%s\" needs a value", argv[optind - 1]);
    case '?':
        if (optopt && optopt < 0x100)
            return cli_usage_error("unknown option \"-%c\" for %s", optopt, ctx->command);
        return cli_usage_error("unknown option \"%s\" for %s", argv[optind - 1],
                               ctx->command);
    default:
        return cli_usage_error("unexpected option for %s", ctx->command);
    }
}

int
cli_load(struct cli_ctx *ctx)
{
    skipq_error err = {0};
    const char *path = ctx->config_path;

    if (ctx->cfg)
        return 0;
    if (!path) {
        const char *env = getenv("SKIPQ_CONFIG");
        if (env && *env)
            path = env;
    }
    ctx->cfg = skipq_config_new();
    if (!ctx->cfg)
        return cli_errorf(CLI_EXIT_FAIL, "out of memory");
    if (path && skipq_config_load(ctx->cfg, path, &err) != SKIPQ_OK) {
        /* any config the user pointed at and we cannot use is bad input */
        if (err.code == SKIPQ_ERR_NOMEM)
            return cli_fail(&err);
        cli_fail(&err);
        return CLI_EXIT_USAGE;
    }
    ctx->database = skipq_resolve_database(ctx->database_opt, ctx->cfg);
    ctx->database_shown = skipq_mask_url(ctx->database);
    if (!ctx->database_shown)
        return cli_errorf(CLI_EXIT_FAIL, "out of memory");
    return 0;
}

int
cli_connect(struct cli_ctx *ctx, skipq_conn **out)
{
    skipq_error err = {0};
    skipq_conn *conn = NULL;
    int rc;

    *out = NULL;
    if ((rc = cli_load(ctx)) != 0)
        return rc;
    if (skipq_conn_open(ctx->database, &conn, &err) != SKIPQ_OK) {
        cli_fail(&err);
        return CLI_EXIT_FAIL; /* a bad URL is also "could not connect" */
    }
    if (!ctx->skip_schema_check && skipq_schema_check(conn, &err) != SKIPQ_OK) {
        skipq_conn_close(conn);
        cli_fail(&err);
        return CLI_EXIT_FAIL;
    }
    *out = conn;
    return 0;
}

/* ---- option values ----------------------------------------------------- */

int
cli_parse_int(const char *opt, const char *s, long long min, long long max, long long *out)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (!*s || *end || isspace((unsigned char)s[0]) || s[0] == '+') {
        return cli_usage_error("%s must be a whole number, not \"%.64s\"", opt, s);
    }
    /* out of strtoll's range too: v is then LLONG_MIN or LLONG_MAX */
    if (v < min && max >= INT32_MAX)
        return cli_usage_error("%s must be %lld or more, not \"%.64s\"", opt, min, s);
    if (v < min || v > max)
        return cli_usage_error("%s must be from %lld to %lld, not \"%.64s\"", opt, min, max,
                               s);
    *out = v;
    return 0;
}

int
cli_parse_prefetch(const char *opt, const char *s, int *out)
{
    long long v = 0;

    if (strcmp(s, "auto") == 0) {
        *out = SKIPQ_PREFETCH_AUTO;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (!*s || *end || errno == ERANGE || !isdigit((unsigned char)s[0]) || v > 10000)
        return cli_usage_error("%s must be \"auto\" or a whole number from 0 to 10000,"
                               " not \"%.64s\"",
                               opt, s);
    *out = (int)v;
    return 0;
}

int
cli_parse_on_success(const char *opt, const char *s, skipq_on_success *out)
{
    if (strcmp(s, "keep") == 0)
        *out = SKIPQ_ON_SUCCESS_KEEP;
    else if (strcmp(s, "delete") == 0)
        *out = SKIPQ_ON_SUCCESS_DELETE;
    else
        return cli_usage_error("%s must be keep or delete, not \"%.64s\"", opt, s);
    return 0;
}

int
cli_parse_duration(const char *opt, const char *s, int64_t *ms_out)
{
    skipq_error err = {0};

    if (skipq_parse_duration(s, ms_out, &err) != SKIPQ_OK)
        return cli_usage_error("%s: %s", opt, err.message);
    if (*ms_out > CLI_MAX_DURATION_MS)
        return cli_usage_error("%s: invalid duration \"%.64s\": at most 36500d", opt, s);
    return 0;
}

int
cli_parse_id(const char *s, int64_t *out)
{
    long long v;
    char *end = NULL;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (!*s || *end || errno == ERANGE || v < 1 || s[0] == ' ' || s[0] == '+')
        return cli_usage_error("invalid job id \"%.64s\": expected a positive "
                               "whole number",
                               s);
    *out = v;
    return 0;
}

int
cli_parse_priority(const char *opt, const char *s, int16_t *out)
{
    skipq_error err = {0};

    if (skipq_parse_priority(s, out, &err) != SKIPQ_OK)
        return cli_usage_error("%s: %s", opt, err.message);
    return 0;
}

int
cli_check_name(const char *what, const char *name)
{
    skipq_error err = {0};

    if (skipq_check_name(what, name, &err) != SKIPQ_OK)
        return cli_fail(&err);
    return 0;
}

static const char *const status_names[] = {"queued", "running",   "succeeded",
                                           "failed", "cancelled", "waiting"};

/* The message of a refused list ends up after the name of what gave it:
 * "--status: unrecognized status ...", "status needs at least one ...". */
#define STATUS_FAIL(...) (snprintf(msg, msglen, __VA_ARGS__), -1)

int
cli_statuses(const char *s, unsigned allowed, char *out, size_t outsize, char *msg,
             size_t msglen)
{
    unsigned seen = 0;
    const char *p = s;
    size_t used = 0;

    out[0] = '\0';
    if (!*s)
        return STATUS_FAIL(" needs at least one status");
    while (*p) {
        size_t n = strcspn(p, ",");
        int found = -1;
        for (int i = 0; i < 6; i++)
            if (strlen(status_names[i]) == n && strncmp(p, status_names[i], n) == 0)
                found = i;
        if (found < 0)
            return STATUS_FAIL(": unrecognized status \"%.*s\": use waiting, queued, "
                               "running, succeeded, failed or cancelled",
                               (int)(n > 64 ? 64 : n), p);
        if (!(allowed & (1u << found)))
            return STATUS_FAIL(": status \"%s\" is not allowed here", status_names[found]);
        if (!(seen & (1u << found))) {
            seen |= 1u << found;
            used += (size_t)snprintf(out + used, outsize - used, "%s%s", used ? "," : "",
                                     status_names[found]);
        }
        p += n;
        if (*p == ',') {
            p++;
            if (!*p)
                return STATUS_FAIL(": empty status after \",\"");
        }
    }
    return 0;
}

int
cli_parse_statuses(const char *opt, const char *s, unsigned allowed, char *out,
                   size_t outsize)
{
    char msg[256];

    if (cli_statuses(s, allowed, out, outsize, msg, sizeof msg) != 0)
        return cli_usage_error("%s%s", opt, msg);
    return 0;
}

int
cli_ids_literal(const int64_t *ids, size_t n, char **out)
{
    size_t cap = n * 21 + 3, used = 0;
    char *s = malloc(cap);

    *out = NULL;
    if (!s)
        return cli_errorf(CLI_EXIT_FAIL, "out of memory");
    s[used++] = '{';
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(s + used, cap - used, "%s%lld", i ? "," : "",
                                 (long long)ids[i]);
    snprintf(s + used, cap - used, "}");
    *out = s;
    return 0;
}

const char *
cli_format_age(double seconds, char *buf, size_t size)
{
    long long s = seconds > 0 ? (long long)seconds : 0;

    if (s < 60)
        snprintf(buf, size, "%llds", s);
    else if (s < 3600)
        snprintf(buf, size, "%lldm%02llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, size, "%lldh%02lldm", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, size, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
    return buf;
}

_Static_assert(CLI_ESC_MULTILINE == SKIPQ_ESCAPE_MULTILINE, "cli.h and skipq.h agree");

char *
cli_escape(const char *s, unsigned flags)
{
    char *e = skipq_escape_text(s, flags);

    if (!e)
        cli_errorf(0, "out of memory");
    return e;
}

void
cli_print_escaped(const char *s, unsigned flags)
{
    char *e = skipq_escape_text(s, flags);

    fputs(e ? e : "?", stdout);
    free(e);
}

/*
 * The shortest text that reads back as the same double, so JSON shows
 * 53.009965 and not 53.009965000000001 (json-c prints 17 digits). Not
 * finite (no JSON number): null.
 */
json_object *
cli_json_double(double v)
{
    char buf[32];

    if (!isfinite(v))
        return NULL;
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    /* a whole number stays a JSON float ("46.0"), as json-c wrote it */
    if (!strpbrk(buf, ".e"))
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), ".0");
    return json_object_new_double_s(v, buf);
}

const char *
cli_format_ts(const char *iso, char *buf, size_t size)
{
    const char *p = iso + strnlen(iso, 19);

    /* "2024-05-01T12:00:00.123456+02:00": seconds, then the zone */
    if (strlen(iso) < 19) {
        snprintf(buf, size, "%s", iso);
        return buf;
    }
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    snprintf(buf, size, "%.10s %.8s%s", iso, iso + 11, strcmp(p, "Z") == 0 ? "+00:00" : p);
    return buf;
}

const char *
cli_format_local_now(char *buf, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    long off;

    localtime_r(&now, &tm);
    off = tm.tm_gmtoff;
    strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(buf + strlen(buf), size - strlen(buf), "%c%02ld:%02ld", off < 0 ? '-' : '+',
             labs(off) / 3600, labs(off) % 3600 / 60);
    return buf;
}

int
cli_commit(PGconn *pg, const char *what)
{
    PGresult *res = PQexec(pg, "COMMIT");
    int rc = 0;

    /*
     * A COMMIT that fails (a deferred constraint, a serialization failure)
     * rolls back and leaves the session idle, as a good one does: only
     * the result says which it was. A COMMIT of a transaction that had
     * already failed "succeeds" with the tag ROLLBACK.
     */
    if (PQresultStatus(res) == PGRES_COMMAND_OK &&
        strcmp(PQcmdStatus(res), "COMMIT") == 0) {
        rc = 0;
    } else if (PQstatus(pg) == CONNECTION_BAD) {
        rc = cli_errorf(CLI_EXIT_FAIL,
                        "could not commit %s: the connection was lost during "
                        "COMMIT, so it may or may not have happened: check "
                        "before running it again",
                        what);
    } else if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        rc = cli_errorf(CLI_EXIT_FAIL,
                        "could not commit %s: the transaction "
                        "was rolled back",
                        what);
    } else {
        cli_db_fail(pg, res, "could not commit %s (nothing changed)", what);
        rc = CLI_EXIT_FAIL; /* the request was fine; the commit was not */
    }
    PQclear(res);
    return rc;
}

/* ---- tables ------------------------------------------------------------ */

int
cli_table_init(struct cli_table *t, size_t ncols)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    return 0;
}

int
cli_table_add(struct cli_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **nc = realloc(t->cells, cap * t->ncols * sizeof *nc);
        if (!nc)
            return 1;
        t->cells = nc;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        /* cells hold names and errors from the table: one line each, and
         * nothing a terminal would act on */
        row[i] = skipq_escape_text(cells[i], 0);
        if (!row[i]) {
            while (i-- > 0)
                free(row[i]);
            return 1;
        }
    }
    t->nrows++;
    return 0;
}

/* Display width of UTF-8 text: code points, not bytes, so names with
 * accents still line up. */
static size_t
text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

void
cli_table_print(const struct cli_table *t, unsigned right)
{
    size_t *width = calloc(t->ncols ? t->ncols : 1, sizeof *width);

    if (!width)
        return;
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t w = text_width(t->cells[r * t->ncols + c]);
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            int pad = (int)(width[c] - text_width(cell));
            int last = c + 1 == t->ncols;
            if (c)
                fputs("  ", stdout);
            if ((right >> c) & 1u)
                printf("%*s%s", pad, "", cell);
            else if (last)
                fputs(cell, stdout);
            else
                printf("%s%*s", cell, pad, "");
        }
        putchar('\n');
    }
    free(width);
}

void
cli_table_free(struct cli_table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

/* ---- dispatch ---------------------------------------------------------- */

static void
ctx_free(struct cli_ctx *ctx)
{
    skipq_config_free(ctx->cfg);
    free(ctx->database_shown);
    free(ctx->database_copy);
    ctx->cfg = NULL;
    ctx->database_shown = NULL;
    ctx->database_copy = NULL;
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS, {0}};
    struct cli_ctx ctx = {.command = "skipq", .log_level = SKIPQ_LOG_INFO};
    const struct command *cmd = NULL;
    static char help_opt[] = "--help";
    char *hargv[] = {NULL, help_opt, NULL};
    int c, rc = CLI_EXIT_OK;

    cli_log_install(&ctx);
    opterr = 0;
    /* '+': stop at the command; what follows belongs to it */
    while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
        rc = cli_common_opt(&ctx, c, argv, main_usage);
        if (rc != CLI_NEXT)
            goto out;
    }
    if (optind >= argc) {
        fputs(main_usage, stderr);
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) {
        /* `skipq help` and `skipq help COMMAND` */
        if (optind + 1 >= argc) {
            fputs(main_usage, stdout);
            rc = CLI_EXIT_OK;
            goto out;
        }
        hargv[0] = argv[optind + 1];
        argv = hargv;
        argc = 2;
        optind = 0;
        name = argv[0];
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            cmd = &commands[i];
    if (!cmd) {
        rc = cli_usage_error("unknown command \"%.64s\"", name);
        goto out;
    }

    ctx.command = cmd->name;
    argc -= optind;
    argv += optind;
    optind = 0; /* glibc: full reset, so the command's getopt starts clean */
    rc = cmd->fn(argc, argv, &ctx);
out:
    fflush(stdout);
    cli_log_install(NULL);
    ctx_free(&ctx);
    return rc;
}

int
cli_subcommand(int *argc, char ***argv, const char *usage, const char **sub)
{
    if (*argc < 2) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    *sub = (*argv)[1];
    if (strcmp(*sub, "-h") == 0 || strcmp(*sub, "--help") == 0) {
        fputs(usage, stdout);
        return CLI_EXIT_OK;
    }
    opterr = 0;
    optind = 0; /* the subcommand's argv[0] is its name */
    (*argc)--;
    (*argv)++;
    return CLI_NEXT;
}
