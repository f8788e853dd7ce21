/*
 * cli.h - what every `skipq <command>` shares: the options all commands
 * take (--config, --database, --help, --version, --quiet, --log-format),
 * loading the config, connecting, and turning errors into one stderr line
 * and an exit status.
 *
 * Exit status, every command: 0 done; 1 a valid request that could not be
 * done (database unreachable, job not found, SQL error, refusing without
 * --yes); 2 the request itself is invalid (usage, bad JSON, bad config,
 * bad duration, unknown status or priority). Messages go to stderr as
 * "skipq: <message>": one line, lower case, values quoted; usage errors
 * end with "try 'skipq --help'".
 *
 * A command is `int cmd_x(int argc, char **argv, struct cli_ctx *ctx)`:
 * argv[0] is the command's name and getopt is reset (optind = 0) before
 * the call, so the command parses its own options with getopt_long and
 * hands every option it does not know to cli_common_opt().
 */
#ifndef SKIPQ_CLI_H
#define SKIPQ_CLI_H

#include "skipq.h"

#include <getopt.h>
#include <stdarg.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAIL = 1,  /* runtime failure */
    CLI_EXIT_USAGE = 2, /* usage or bad input */
};

/* Returned by cli_common_opt() when option parsing goes on. */
#define CLI_NEXT (-1)

/* When more rows than this would change, recover asks first (--yes). */
#define CLI_CONFIRM_THRESHOLD 100

/* The longest duration any option takes: the config's limit too. */
#define CLI_MAX_DURATION_MS (36500LL * 24 * 3600 * 1000)

enum cli_log_format {
    CLI_LOG_TEXT = 0, /* "skipq: warning: ..." lines on stderr */
    CLI_LOG_JSON = 1, /* one JSON object per line on stderr */
};

struct cli_ctx {
    const char *command;      /* "enqueue", "jobs", ...: for messages */
    const char *config_path;  /* --config, else $SKIPQ_CONFIG; NULL: none */
    const char *database_opt; /* --database as given; NULL: not given */
    char *database_copy;      /* owned copy behind database_opt: argv's
                                 own is overwritten (cli_common_opt) */
    int seen[16];             /* options with a value given so far */
    size_t nseen;

    /* Filled by cli_load() (cli_connect() calls it). */
    skipq_config *cfg;    /* the loaded config, owned (defaults: no file) */
    const char *database; /* resolved URL; NULL: libpq's PG* variables.
                             Borrowed from argv, environ or cfg */
    char *database_shown; /* masked for messages: never a password; owned */

    /* Logging through the library's hook (installed by main). */
    int quiet;                      /* --quiet: warnings and errors only */
    int level_set;                  /* --log-level or --quiet was given */
    enum cli_log_format log_format; /* --log-format text|json */
    skipq_log_level log_level;      /* least level printed; worker may lower */

    int skip_schema_check; /* migrate: connect to a schema-less database */
};

/*
 * The long options every command accepts; put them at the end of the
 * command's own table, before the {0} terminator. The command's short
 * option string starts with ':' (so a missing argument is reported as
 * such) and contains 'h'.
 */
enum {
    CLI_OPT_CONFIG = 0x1000,
    CLI_OPT_DATABASE,
    CLI_OPT_QUIET,
    CLI_OPT_LOG_FORMAT,
    CLI_OPT_LOG_LEVEL,
    CLI_OPT_VERSION,
    CLI_OPT_LOCAL = 0x1100 /* commands number their own options from here */
};

#define CLI_COMMON_LONGOPTS                                          \
    {"config", required_argument, NULL, CLI_OPT_CONFIG},             \
        {"database", required_argument, NULL, CLI_OPT_DATABASE},     \
        {"quiet", no_argument, NULL, CLI_OPT_QUIET},                 \
        {"log-format", required_argument, NULL, CLI_OPT_LOG_FORMAT}, \
        {"log-level", required_argument, NULL, CLI_OPT_LOG_LEVEL},   \
        {"version", no_argument, NULL, CLI_OPT_VERSION},             \
    {                                                                \
        "help", no_argument, NULL, 'h'                               \
    }

/*
 * Handle an option the command itself does not: a common option, -h
 * (prints usage to stdout), '?' or ':' from getopt (an unknown option or a
 * missing argument). Returns CLI_NEXT to keep parsing, otherwise the exit
 * status the command should return now (0 after --help or --version).
 */
int cli_common_opt(struct cli_ctx *ctx, int c, char **argv, const char *usage);

/*
 * Refuse an option with a value given a second time (exit 2, printed).
 * Call it for each option getopt_long returns from longopts, except the
 * repeatable ones (worker --queue, --handler; recover --id). 0: go on.
 */
int cli_once(struct cli_ctx *ctx, const struct option *longopts, int c);

/* Load the config (--config or $SKIPQ_CONFIG) and resolve the database.
 * Idempotent. Returns 0, or the exit status after printing the error. */
int cli_load(struct cli_ctx *ctx);

/*
 * Load, connect and (unless ctx->skip_schema_check) check that the schema
 * is one this binary knows. On failure prints the error and returns the
 * exit status (1; 2 for a config error); *out is NULL then. The caller
 * closes *out with skipq_conn_close().
 */
int cli_connect(struct cli_ctx *ctx, skipq_conn **out);

/*
 * Install the library's log hook, printing as ctx says (--quiet,
 * --log-format); NULL removes it. ctx must outlive the hook: main installs
 * it before any thread starts (skipq_set_log's rule) and removes it before
 * freeing ctx.
 */
void cli_log_install(struct cli_ctx *ctx);

/* Log a line of the command's own through the same hook and format as
 * the library's lines (--quiet, --log-format). Any thread. */
void cli_log(skipq_log_level level, const char *fmt, ...) CLI_PRINTF(2, 3);
/* With --log-format json: write msg as an error line of the log and
 * return true; otherwise false (the caller prints it as text). */
bool cli_log_error_json(const char *msg);

/* Print "skipq: <err->message>"; returns 2 for SKIPQ_ERR_INVALID and
 * SKIPQ_ERR_CONFIG, else 1. */
int cli_fail(const skipq_error *err);

/* Print "skipq: <message>" and return code. */
int cli_errorf(int code, const char *fmt, ...) CLI_PRINTF(2, 3);

/* Print "skipq: <message>; try 'skipq --help'" and return 2. */
int cli_usage_error(const char *fmt, ...) CLI_PRINTF(1, 2);

/*
 * A failed statement: "skipq: <what>: <server's message>". Returns 2 when
 * the server rejected the input (SQLSTATE class 22 or 23), else 1. res may
 * be NULL (the connection's message is used). Does not clear res.
 */
int cli_db_fail(PGconn *pg, const PGresult *res, const char *fmt, ...) CLI_PRINTF(3, 4);
/* The same message into msg (one line), not printed; the same status. */
int cli_db_message(PGconn *pg, const PGresult *res, char *msg, size_t msglen,
                   const char *fmt, ...) CLI_PRINTF(5, 6);
int cli_db_vmessage(PGconn *pg, const PGresult *res, char *msg, size_t msglen,
                    const char *fmt, va_list ap) CLI_PRINTF(5, 0);

/* ---- the database-wide metrics (metrics_db.c) ---- */

/* Read the database-wide state in one read-only snapshot and write it to
 * f in the Prometheus text format (`skipq metrics`' families). 0, or -1
 * with nothing written and the result that failed in *failed (the
 * caller's to clear; NULL: see the connection's error). */
int cli_metrics_db_write(PGconn *pg, FILE *f, PGresult **failed);

/* ---- parsing option values; each prints its error and returns 2 ---- */

/* A whole number in [min, max]: "--limit must be ..." style messages. */
int cli_parse_int(const char *opt, const char *s, long long min, long long max,
                  long long *out);
/* --prefetch: "auto" (SKIPQ_PREFETCH_AUTO) or 0..10000. */
int cli_parse_prefetch(const char *opt, const char *s, int *out);
/* "keep" or "delete" (worker.on_success) */
int cli_parse_on_success(const char *opt, const char *s, skipq_on_success *out);
/* A duration ("500ms", "30s", "5m", "1h", "7d", "0"). */
int cli_parse_duration(const char *opt, const char *s, int64_t *ms_out);
/* A job id: a positive 64-bit integer. */
int cli_parse_id(const char *s, int64_t *out);
/* A priority name or number (validated; the text is passed on as is). */
int cli_parse_priority(const char *opt, const char *s, int16_t *out);
/* A queue or kind name (1..200 bytes of UTF-8). */
int cli_check_name(const char *what, const char *name);

/* Job statuses, as bits, for cli_parse_statuses(). */
enum {
    CLI_ST_QUEUED = 1 << 0,
    CLI_ST_RUNNING = 1 << 1,
    CLI_ST_SUCCEEDED = 1 << 2,
    CLI_ST_FAILED = 1 << 3,
    CLI_ST_CANCELLED = 1 << 4,
    CLI_ST_WAITING = 1 << 5, /* for its parents (depends_on) */
    CLI_ST_ALL = 0x3f,
};
/*
 * "succeeded,cancelled" into a normalized comma list in out (for
 * string_to_array($n, ',') in SQL). Every name must be in `allowed`.
 */
int cli_parse_statuses(const char *opt, const char *s, unsigned allowed, char *out,
                       size_t outsize);
/* The same without printing: 0, or -1 with what follows the option's
 * name in msg (": unrecognized status ..."). For `skipq serve`. */
int cli_statuses(const char *s, unsigned allowed, char *out, size_t outsize, char *msg,
                 size_t msglen);

/*
 * ids as an int8[] literal ("{1,2,3}") for a $n::int8[] parameter; built
 * from parsed integers, never from the user's text. Caller frees *out.
 */
int cli_ids_literal(const int64_t *ids, size_t n, char **out);

/* "42s", "3m05s", "2h10m", "4d03h" (negative: "0s"). */
const char *cli_format_age(double seconds, char *buf, size_t size);

/* A timestamp from to_json() ("2024-05-01T12:00:00.123+02:00") for
 * people: "2024-05-01 12:00:00+02:00", to the second, zone kept. */
const char *cli_format_ts(const char *iso, char *buf, size_t size);
/* Now on this machine, in the same form, with the local offset. */
const char *cli_format_local_now(char *buf, size_t size);

/*
 * Tag and meta filters (jobs_filter.c), for jobs ls|cancel|retry and
 * recover: --tag T (repeatable, every tag must be there) and --meta
 * KEY=VALUE (repeatable, the meta must contain each; VALUE is JSON when
 * it parses as JSON, else a string). Both options are repeatable: do not
 * pass them to cli_once().
 */
enum { CLI_OPT_TAG = 0x1080, CLI_OPT_META };
#define CLI_FILTER_LONGOPTS                           \
    {"tag", required_argument, NULL, CLI_OPT_TAG},    \
    {                                                 \
        "meta", required_argument, NULL, CLI_OPT_META \
    }
struct cli_job_filter {
    struct json_object *tags; /* array; NULL: no --tag */
    struct json_object *meta; /* object; NULL: no --meta */
};
/* A command with subcommands (`skipq jobs ls`): *sub is argv[1], and
 * argv/argc are moved past the command's name so that the subcommand's
 * argv[0] is its own, getopt reset. CLI_NEXT to run the subcommand;
 * otherwise the exit status (no subcommand: usage on stderr, 2; -h:
 * usage on stdout, 0). */
int cli_subcommand(int *argc, char ***argv, const char *usage, const char **sub);

/* CLI_NEXT when c is neither option; else 0 or the exit status. */
int cli_filter_opt(struct cli_job_filter *f, int c, const char *arg);
/* The parameters: a JSON array of tags, a JSON object; NULL when not
 * given. Borrowed from f. */
const char *cli_filter_tags(const struct cli_job_filter *f);
const char *cli_filter_meta(const struct cli_job_filter *f);
int cli_filter_any(const struct cli_job_filter *f);
void cli_filter_free(struct cli_job_filter *f);
/* The condition on skipq.jobs j for the parameters $t (tags) and $m
 * (meta), by number. */
#define CLI_FILTER_SQL(t, m)                                                 \
    " (" t "::jsonb IS NULL OR j.tags OPERATOR(pg_catalog.@>) ARRAY(SELECT " \
    "pg_catalog.jsonb_array_elements_text(" t "::jsonb)))"                   \
    " AND (" m "::jsonb IS NULL OR j.meta OPERATOR(pg_catalog.@>) " m "::jsonb) "

/* ---- printing what the database holds ------------------------------- */

/*
 * Text from a job, a worker row or a handler, safe for a terminal:
 * controls and bidi characters as \u escapes (skipq_escape_text);
 * flags 0 makes one line, CLI_ESC_MULTILINE keeps newlines and tabs.
 * Malloc'd; NULL (after printing "out of memory") when out of memory.
 */
#define CLI_ESC_MULTILINE 1u /* SKIPQ_ESCAPE_MULTILINE */
char *cli_escape(const char *s, unsigned flags);
/* The same, written to stdout ("?" when out of memory). */
void cli_print_escaped(const char *s, unsigned flags);

/* A double as a JSON number in the fewest digits that read back exactly
 * (NULL, i.e. null, when not finite). */
struct json_object *cli_json_double(double v);

/*
 * COMMIT, checked: a COMMIT can fail (a deferred trigger or constraint)
 * and leave the session as idle as a good one, or report ROLLBACK. 0, or
 * 1 after printing "could not commit <what>: ...", saying whether the
 * change may have happened (connection lost) or certainly did not.
 */
int cli_commit(PGconn *pg, const char *what);

/* ---- aligned text tables -------------------------------------------- */

struct cli_table {
    size_t ncols, nrows, cap;
    char **cells; /* nrows * ncols, owned copies */
};

/* ncols columns; the header row is the first added. 0 or 1 (no memory).*/
int cli_table_init(struct cli_table *t, size_t ncols);
/* Append one row of ncols strings (NULL prints as ""). 0 or 1. */
int cli_table_add(struct cli_table *t, const char *const *cells);
/* Print with two spaces between columns; numeric columns right-aligned
 * when `right` has their bit set. */
void cli_table_print(const struct cli_table *t, unsigned right);
void cli_table_free(struct cli_table *t);

/* ---- commands ------------------------------------------------------- */

int cmd_migrate(int argc, char **argv, struct cli_ctx *ctx);
int cmd_enqueue(int argc, char **argv, struct cli_ctx *ctx);
int cmd_worker(int argc, char **argv, struct cli_ctx *ctx);
int cmd_recover(int argc, char **argv, struct cli_ctx *ctx);
int cmd_jobs(int argc, char **argv, struct cli_ctx *ctx);
/* jobs retry|cancel|delete (cmd_jobs_act.c); argv[0] is the action */
int cmd_jobs_act(int argc, char **argv, struct cli_ctx *ctx);
int cmd_stats(int argc, char **argv, struct cli_ctx *ctx);
int cmd_metrics(int argc, char **argv, struct cli_ctx *ctx);
int cmd_prune(int argc, char **argv, struct cli_ctx *ctx);
int cmd_bench(int argc, char **argv, struct cli_ctx *ctx);
int cmd_schedule(int argc, char **argv, struct cli_ctx *ctx);
int cmd_batch(int argc, char **argv, struct cli_ctx *ctx);
int cmd_chain(int argc, char **argv, struct cli_ctx *ctx);
int cmd_queue(int argc, char **argv, struct cli_ctx *ctx);
int cmd_serve(int argc, char **argv, struct cli_ctx *ctx);

#endif /* SKIPQ_CLI_H */
