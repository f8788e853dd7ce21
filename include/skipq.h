/*
 * skipq.h - a background job queue that needs nothing but PostgreSQL.
 *
 * The public header of libskipq (skipq_json.h adds json-c conveniences).
 * Build with `pkg-config --cflags --libs skipq`.
 *
 * Conventions (they hold for every function below):
 *   - A fallible call returns skipq_rc (SKIPQ_OK is 0) and fills the
 *     caller's skipq_error, which may be NULL. Codes are added, never
 *     renumbered.
 *   - The library never exits and never prints; it logs only through the
 *     hook installed with skipq_set_log().
 *   - Each constructor has its destructor next to it; destructors accept
 *     NULL. Strings passed in are copied unless said otherwise.
 *   - ABI (docs/abi.md): a struct the caller passes in carries its size
 *     (start from its INIT macro); a struct the library passes out
 *     (skipq_log_event, skipq_migration_status) may gain fields at its
 *     end, so never copy one by value; skipq_error never changes layout.
 *     Enum values are added, never renumbered.
 *
 * Threads: a skipq_conn is used by one thread at a time. A skipq_worker
 * owns its threads; its handlers run on them, concurrently, up to the
 * configured concurrency. A handler's skipq_job is valid only during the
 * call. skipq_worker_stop() and skipq_worker_retire() may be called from
 * any thread or from a signal handler. skipq_set_log() must be called before any other thread
 * uses the library.
 */
#ifndef SKIPQ_H
#define SKIPQ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SKIPQ_VERSION "0.1.0"
#define SKIPQ_VERSION_NUM 100 /* major * 10000 + minor * 100 + patch */

/* Feature tests for callers that build against several versions. */
#define SKIPQ_HAS_ENQUEUE_BATCH 1
#define SKIPQ_HAS_WORKER 1
#define SKIPQ_HAS_SUPERVISE 1
#define SKIPQ_HAS_LOG_PAYLOADS 1
#define SKIPQ_HAS_VACUUM_INTERVAL 1

typedef struct pg_conn PGconn; /* libpq's connection */

typedef enum skipq_rc {
    SKIPQ_OK = 0,
    SKIPQ_ERR_NOMEM = 1,     /* out of memory */
    SKIPQ_ERR_INVALID = 2,   /* bad input: JSON, name, priority, option */
    SKIPQ_ERR_CONFIG = 3,    /* bad config file or setting */
    SKIPQ_ERR_CONNECT = 4,   /* could not connect to the database */
    SKIPQ_ERR_DB = 5,        /* an SQL statement failed */
    SKIPQ_ERR_NOT_FOUND = 6, /* no such job */
    SKIPQ_ERR_SCHEMA = 7,    /* schema missing, too old or too new */
    SKIPQ_ERR_IO = 8,        /* a file or process could not be used */
    SKIPQ_ERR_STATE = 9,     /* call not valid in this state */
} skipq_rc;

/* Filled by the library, allocated by the caller: its layout is fixed
 * for as long as the soname stays (docs/abi.md). */
typedef struct skipq_error {
    skipq_rc code;
    char sqlstate[6];  /* SQLSTATE when code is SKIPQ_ERR_DB, else "" */
    char message[512]; /* one line, lower case, no final period */
} skipq_error;

/* The library's version at run time, e.g. "0.1.0". */
const char *skipq_version(void);

/* A name for rc, e.g. "invalid input". Static storage. */
const char *skipq_rc_name(skipq_rc rc);

/* ------------------------------------------------------------------ */
/* Logging                                                            */
/* ------------------------------------------------------------------ */

typedef enum skipq_log_level {
    SKIPQ_LOG_DEBUG = 0,
    SKIPQ_LOG_INFO = 1,
    SKIPQ_LOG_WARN = 2,
    SKIPQ_LOG_ERROR = 3,
} skipq_log_level;

/*
 * A log record. Fields other than msg may be 0/NULL when not about a job.
 * Everything is borrowed for the duration of the callback. Later releases
 * may add fields at the end: read it through the pointer, never copy it.
 */
typedef struct skipq_log_event {
    skipq_log_level level;
    const char *msg;   /* the human line */
    const char *event; /* machine name: "claimed", "succeeded", ... or NULL */
    int64_t job_id;
    const char *kind;
    const char *queue;
    int attempt;
    double duration_ms; /* handler run time when meaningful, else -1 */
    /* The job's payload as JSON text, only on the "claimed" event of a
     * worker with skipq_worker_set_log_payloads(w, 1); else NULL. Payloads
     * often hold personal data or secrets: they are never logged unasked. */
    const char *payload;
} skipq_log_event;

typedef void (*skipq_log_fn)(const skipq_log_event *ev, void *userdata);

/* Install the log hook (NULL: silence). Not thread-safe; call first. The
 * hook is called from the library's threads (a worker's executor and
 * maintenance threads), possibly at the same time: make it thread-safe. */
void skipq_set_log(skipq_log_fn fn, void *userdata);

/* ------------------------------------------------------------------ */
/* Parsing helpers shared by the config loader, the CLI and callers     */
/* ------------------------------------------------------------------ */

/* "500ms", "30s", "5m", "1h", "7d", or a bare "0". Into milliseconds. */
skipq_rc skipq_parse_duration(const char *s, int64_t *ms_out, skipq_error *err);

/* "high" = 10, "normal" = 0, "low" = -10, or a number -32768..32767. */
skipq_rc skipq_parse_priority(const char *s, int16_t *out, skipq_error *err);

/* A priority band as a worker serves it: "high" = 10..32767,
 * "normal" = -9..9, "low" = -32768..-10, a number N = N..N. */
skipq_rc skipq_parse_priority_band(const char *s, int16_t *lo, int16_t *hi,
                                   skipq_error *err);

/* ------------------------------------------------------------------ */
/* Checking and showing job data: the rules enqueue applies, for tools */
/* that read or print jobs themselves                                 */
/* ------------------------------------------------------------------ */

#define SKIPQ_NAME_MAX 200 /* bytes of a queue or kind name */
/*
 * How deep JSON may nest, counted as json-c counts: the outermost value
 * is level 1 and each value inside an object or array one level deeper
 * ({} is 1 level, {"a": 1} is 2). Enqueue refuses deeper payloads, and
 * every parse in the library takes the same limit (skipq_json_parse in
 * skipq_json.h), so whatever was accepted can be read back.
 */
#define SKIPQ_JSON_MAX_DEPTH 512

/* A queue or kind name: 1..SKIPQ_NAME_MAX bytes of valid UTF-8 without
 * NUL. `what` ("queue", "kind") names it in the message. */
skipq_rc skipq_check_name(const char *what, const char *name, skipq_error *err);
/*
 * A payload as enqueue checks it: a JSON object of at most max bytes
 * (0: the default of 1 MiB), valid UTF-8 without NUL, nested at most
 * SKIPQ_JSON_MAX_DEPTH levels; the message gives the byte offset of the
 * first error. len may be (size_t)-1 for strlen.
 */
skipq_rc skipq_check_payload(const char *json, size_t len, size_t max, skipq_error *err);

/*
 * Reading payloads as JSON lines (one object per line, blank lines
 * skipped), as `skipq enqueue` reads stdin. A line is never buffered past
 * the payload limit: a longer one is counted and refused. Any thread, one
 * reader per thread at a time.
 */
typedef struct skipq_jsonl skipq_jsonl;
/* in is borrowed (not closed); max_payload 0: the default limit. */
skipq_rc skipq_jsonl_new(FILE *in, size_t max_payload, skipq_jsonl **out, skipq_error *err);
void skipq_jsonl_free(skipq_jsonl *r);
/*
 * The next non-blank line, checked by skipq_check_payload: *line
 * (borrowed until the next call, NUL-terminated, line end stripped) and
 * *len; *line is NULL at the end of input.
 */
skipq_rc skipq_jsonl_next(skipq_jsonl *r, const char **line, size_t *len, skipq_error *err);
/* Lines read so far, blank ones included: after an error, the bad one. */
long long skipq_jsonl_lineno(const skipq_jsonl *r);

/* Keep '\n' and '\t' (text printed over several lines); otherwise they
 * and '\r' become one space each. */
#define SKIPQ_ESCAPE_MULTILINE 1u
/*
 * Text from a job, a worker row or a handler (kinds, queues, errors are
 * stored as any producer wrote them), made safe for a terminal: every
 * control character (C0, DEL, C1), bidi control and line separator as
 * "\u001b", every byte that is not UTF-8 as "\xff"; backslashes left
 * alone. text NULL is "". For output a human reads, never for storage or
 * JSON. Caller frees with free(); NULL when out of memory.
 */
char *skipq_escape_text(const char *text, unsigned flags);

/* The skipq_rc for a statement that failed with this SQLSTATE (NULL:
 * none): SKIPQ_ERR_INVALID when the server rejected the input itself
 * (class 22 data exception, 23 integrity constraint), else
 * SKIPQ_ERR_DB. For callers that run their own SQL on skipq_conn_pg. */
skipq_rc skipq_rc_from_sqlstate(const char *sqlstate);

/* ------------------------------------------------------------------ */
/* Config                                                             */
/* ------------------------------------------------------------------ */

typedef struct skipq_config skipq_config;

/*
 * What the worker does with a job that succeeded. KEEP (the default): the
 * row stays, `succeeded`, with its result, until retention prunes it.
 * DELETE: the completion deletes the row (the result is dropped): one
 * row version and two index entries less per job, a faster drain
 * (docs/performance.md). Failed, cancelled and retried jobs are kept
 * either way.
 */
typedef enum skipq_on_success {
    SKIPQ_ON_SUCCESS_KEEP = 0,
    SKIPQ_ON_SUCCESS_DELETE = 1,
} skipq_on_success;

typedef enum skipq_backoff {
    SKIPQ_BACKOFF_FIXED = 0,
    SKIPQ_BACKOFF_LINEAR = 1,
    SKIPQ_BACKOFF_EXPONENTIAL = 2,
} skipq_backoff;

/* Defaults as documented in config.example.yaml. NULL when out of memory. */
skipq_config *skipq_config_new(void);
void skipq_config_free(skipq_config *cfg);

/*
 * Load a YAML file over the current settings. Errors name the file, line
 * and column. Unknown keys are warnings, logged through skipq_set_log()
 * with line and column, and also counted (skipq_config_warnings).
 */
skipq_rc skipq_config_load(skipq_config *cfg, const char *path, skipq_error *err);
/* The same from a string; name is used in messages. */
skipq_rc skipq_config_load_string(skipq_config *cfg, const char *yaml, size_t len,
                                  const char *name, skipq_error *err);
int skipq_config_warnings(const skipq_config *cfg);

/* Typed setters: each validates and is what the YAML loader calls. */
skipq_rc skipq_config_set_database(skipq_config *cfg, const char *url, skipq_error *err);
/* Replace the queue list with one queue (add more with _add_queue). */
skipq_rc skipq_config_set_queue(skipq_config *cfg, const char *queue, skipq_error *err);
skipq_rc skipq_config_add_queue(skipq_config *cfg, const char *queue, skipq_error *err);
/* Comma-separated bands: "high", "high,normal", "3", "high,-5". Replaces. */
skipq_rc skipq_config_set_priorities(skipq_config *cfg, const char *bands,
                                     skipq_error *err);
skipq_rc skipq_config_set_concurrency(skipq_config *cfg, int n, skipq_error *err);
/*
 * Jobs a worker claims beyond its concurrency: they wait in the worker,
 * already `running`, for a free executor, so one claim round trip (one
 * commit) carries more rows. 0..10000, or SKIPQ_PREFETCH_AUTO (the
 * default): the worker claims ahead only as many jobs as its executors
 * start within about 5 ms, by the measured handler run time (none until
 * 16 jobs have run, none while a prefetched job already waits longer,
 * at most 256). A fixed number suits floods of short jobs; 0 turns it
 * off. While jobs wait claimed ahead, finished jobs' completions wait
 * with them (5 ms at most) so that one round trip completes several.
 */
#define SKIPQ_PREFETCH_AUTO (-1)
skipq_rc skipq_config_set_prefetch(skipq_config *cfg, int n, skipq_error *err);
skipq_rc skipq_config_set_poll_interval(skipq_config *cfg, int64_t ms, skipq_error *err);
skipq_rc skipq_config_set_heartbeat_interval(skipq_config *cfg, int64_t ms,
                                             skipq_error *err);
skipq_rc skipq_config_set_lease_timeout(skipq_config *cfg, int64_t ms, skipq_error *err);
skipq_rc skipq_config_set_shutdown_timeout(skipq_config *cfg, int64_t ms, skipq_error *err);
/* Default 7 days; 0 disables retention pruning. */
skipq_rc skipq_config_set_retention(skipq_config *cfg, int64_t ms, skipq_error *err);
/* The worker vacuums skipq.jobs itself, at most once per this interval,
 * when dead row versions pile up and its role may (default 10 s; 0
 * leaves the table to autovacuum alone). */
skipq_rc skipq_config_set_vacuum_interval(skipq_config *cfg, int64_t ms, skipq_error *err);
/* Succeeded and cancelled jobs not updated for this long move, in
 * batches, to skipq.jobs_done: a table partitioned by updated_at, in
 * partitions of archive_partition (default 1 day, at least 1 minute),
 * that retention drops whole (docs/operations.md, "Very large tables").
 * Default 0: off, and retention deletes rows from skipq.jobs. Must be
 * shorter than retention when both are on. */
#define SKIPQ_HAS_ARCHIVE 1
skipq_rc skipq_config_set_archive_after(skipq_config *cfg, int64_t ms, skipq_error *err);
skipq_rc skipq_config_set_archive_partition(skipq_config *cfg, int64_t ms,
                                            skipq_error *err);
skipq_rc skipq_config_set_on_success(skipq_config *cfg, skipq_on_success what,
                                     skipq_error *err);
skipq_rc skipq_config_set_max_attempts(skipq_config *cfg, int n, skipq_error *err);
skipq_rc skipq_config_set_backoff(skipq_config *cfg, skipq_backoff strategy,
                                  int64_t base_ms, int64_t max_ms, double jitter,
                                  skipq_error *err);
/* argv is copied; NULL-terminated. timeout_ms 0: no timeout. */
skipq_rc skipq_config_set_handler_command(skipq_config *cfg, const char *kind,
                                          const char *const *argv, int64_t timeout_ms,
                                          skipq_error *err);
/* A shell one-liner: runs as /bin/sh -c COMMAND. */
skipq_rc skipq_config_set_handler_shell(skipq_config *cfg, const char *kind,
                                        const char *command, int64_t timeout_ms,
                                        skipq_error *err);
/*
 * Make kind's command handler (set it first) persistent: `processes`
 * copies of the command are started once and given the jobs as JSON
 * lines on their stdin, one job at a time each, answering one JSON line
 * per job on their stdout (docs/worker.md, "Persistent command
 * handlers"). processes 0: min(concurrency, the CPUs online); at most
 * 1024. Setting the command again makes it fork-per-job again.
 */
#define SKIPQ_HAS_PERSISTENT_HANDLERS 1
skipq_rc skipq_config_set_handler_persistent(skipq_config *cfg, const char *kind,
                                             int processes, skipq_error *err);
skipq_rc skipq_config_set_recover_defaults(skipq_config *cfg, int64_t older_than_ms,
                                           int limit, skipq_error *err);
/* Payloads larger than this (bytes of JSON text) are refused by the C API
 * and the CLI before they reach the database. */
skipq_rc skipq_config_set_max_payload(skipq_config *cfg, size_t bytes, skipq_error *err);
/* The stack of each executor thread, on which C handlers run: 128KB to
 * 1GB, default 8MB (a typical main thread's). Address space, not memory:
 * pages are used only as deep as a handler's calls go. */
#define SKIPQ_HAS_HANDLER_STACK_SIZE 1
skipq_rc skipq_config_set_handler_stack_size(skipq_config *cfg, size_t bytes,
                                             skipq_error *err);
/* The address `skipq worker` serves /healthz, /readyz and /metrics on
 * ("HOST:PORT", "[V6]:PORT" or ":PORT" for 127.0.0.1; config key
 * worker.http); NULL or "" for none (the default). The library only
 * keeps it: the CLI parses and serves it. */
#define SKIPQ_HAS_CONFIG_HTTP 1
skipq_rc skipq_config_set_http(skipq_config *cfg, const char *addr, skipq_error *err);
/*
 * `skipq serve`, the HTTP API (docs/http.md): the address to bind
 * ("HOST:PORT"), the bearer tokens (admin: every request; read: GET
 * only; each 16 to 1024 visible ASCII characters, NULL or "" clears it),
 * the largest request body outside the batch endpoint (1KB to 1GB,
 * default 1MiB) and the requests a second each client may make (burst:
 * twice that; 0: no limit; default 100).
 */
#define SKIPQ_HAS_SERVE_CONFIG 1
#define SKIPQ_SERVE_TOKEN_MIN 16
skipq_rc skipq_config_set_serve_http(skipq_config *cfg, const char *addr, skipq_error *err);
skipq_rc skipq_config_set_serve_admin_token(skipq_config *cfg, const char *token,
                                            skipq_error *err);
skipq_rc skipq_config_set_serve_read_token(skipq_config *cfg, const char *token,
                                           skipq_error *err);
skipq_rc skipq_config_set_serve_limits(skipq_config *cfg, size_t max_body, int rate_limit,
                                       skipq_error *err);

/* Getters. Strings are borrowed from cfg. */
const char *skipq_config_database(const skipq_config *cfg); /* may be NULL */
/* worker.listen_database: behind a transaction pooler, the direct
 * connection that carries LISTEN, the liveness lock and the idle locks
 * while claims and completions go through the pooler. NULL: none. */
skipq_rc skipq_config_set_listen_database(skipq_config *cfg, const char *url,
                                          skipq_error *err);
const char *skipq_config_listen_database(const skipq_config *cfg);
/* worker.listen (default 1): 0 polls only, holding no session state at
 * all, for a worker with no direct connection behind a pooler; its
 * liveness is then judged by its heartbeat and lease alone. */
skipq_rc skipq_config_set_listen(skipq_config *cfg, int on, skipq_error *err);
int skipq_config_listen(const skipq_config *cfg);
const char *skipq_config_http(const skipq_config *cfg); /* may be NULL */
int skipq_config_concurrency(const skipq_config *cfg);
int skipq_config_prefetch(const skipq_config *cfg); /* or SKIPQ_PREFETCH_AUTO */
int64_t skipq_config_poll_interval(const skipq_config *cfg);
int64_t skipq_config_heartbeat_interval(const skipq_config *cfg);
int64_t skipq_config_lease_timeout(const skipq_config *cfg);
int64_t skipq_config_shutdown_timeout(const skipq_config *cfg);
int64_t skipq_config_retention(const skipq_config *cfg);
int64_t skipq_config_vacuum_interval(const skipq_config *cfg);
int64_t skipq_config_archive_after(const skipq_config *cfg);
int64_t skipq_config_archive_partition(const skipq_config *cfg);
skipq_on_success skipq_config_on_success(const skipq_config *cfg);
int skipq_config_max_attempts(const skipq_config *cfg);
/* The retry backoff as skipq_config_set_backoff() takes it; any pointer
 * may be NULL. */
void skipq_config_get_backoff(const skipq_config *cfg, skipq_backoff *strategy,
                              int64_t *base_ms, int64_t *max_ms, double *jitter);
int64_t skipq_config_recover_older_than(const skipq_config *cfg);
int skipq_config_recover_limit(const skipq_config *cfg);
size_t skipq_config_max_payload(const skipq_config *cfg);
size_t skipq_config_handler_stack_size(const skipq_config *cfg);
const char *skipq_config_serve_http(const skipq_config *cfg);        /* may be NULL */
const char *skipq_config_serve_admin_token(const skipq_config *cfg); /* may be NULL */
const char *skipq_config_serve_read_token(const skipq_config *cfg);  /* may be NULL */
size_t skipq_config_serve_max_body(const skipq_config *cfg);
int skipq_config_serve_rate_limit(const skipq_config *cfg);
size_t skipq_config_queue_count(const skipq_config *cfg);
const char *skipq_config_queue(const skipq_config *cfg, size_t i);
/* The priorities setting as given ("high,normal,low"). */
const char *skipq_config_priorities(const skipq_config *cfg);
size_t skipq_config_handler_count(const skipq_config *cfg);
const char *skipq_config_handler_kind(const skipq_config *cfg, size_t i);

/*
 * Backoff before retry number `attempt` (1 = after the first failure):
 * fixed: base; linear: base * attempt; exponential: base * 2^(attempt-1);
 * capped at max_ms, then spread by +-jitter (0..1) using `random01`
 * (a number in [0, 1)). Pure: no clock, no I/O.
 */
int64_t skipq_backoff_ms(skipq_backoff strategy, int64_t base_ms, int64_t max_ms,
                         double jitter, int attempt, double random01);

/* ------------------------------------------------------------------ */
/* Connections and schema                                             */
/* ------------------------------------------------------------------ */

typedef struct skipq_conn skipq_conn;

/*
 * Open a connection. url: a libpq URL or key=value string; NULL or ""
 * uses libpq's PG* variables. Multi-host strings work as in libpq.
 */
skipq_rc skipq_conn_open(const char *url, skipq_conn **out, skipq_error *err);
void skipq_conn_close(skipq_conn *conn);
/* The libpq connection, borrowed: for the caller's own SQL. */
PGconn *skipq_conn_pg(skipq_conn *conn);

/*
 * The database a skipq command resolves, in order: explicit (--database),
 * $SKIPQ_DATABASE_URL, the config file's `database`, else NULL (libpq's
 * PG* variables). Borrowed from its arguments or the environment.
 */
const char *skipq_resolve_database(const char *explicit_url, const skipq_config *cfg);

/* `url` for logs: rebuilt from what libpq parses, with every secret
 * (password, sslpassword, ...) as "****"; a string libpq cannot parse is
 * not shown at all. Caller frees; NULL when out of memory. */
char *skipq_mask_url(const char *url);

/* Borrowed for the callback; may gain fields at the end, as
 * skipq_log_event. */
typedef struct skipq_migration_status {
    int version;
    const char *name;
    int applied; /* 1 applied, 0 pending */
    int known;   /* 0: in the database but unknown to this binary */
} skipq_migration_status;

typedef void (*skipq_migrate_fn)(const skipq_migration_status *m, void *userdata);

/*
 * Apply the missing migrations, each in its own transaction, then the
 * functions and views, all under the migration advisory lock so two
 * migrate runs at once apply each migration once. `fn` (may be NULL) is
 * called once per migration applied. *applied_out counts them.
 */
skipq_rc skipq_migrate(skipq_conn *conn, int *applied_out, skipq_migrate_fn fn,
                       void *userdata, skipq_error *err);
/*
 * Create or update the roles skipq_producer, skipq_worker and skipq_admin
 * and their grants (docs/security.md), in one transaction under the
 * migration lock: `skipq migrate --roles`. Needs CREATEROLE and ownership
 * of the schema; run it after skipq_migrate().
 */
skipq_rc skipq_migrate_roles(skipq_conn *conn, skipq_error *err);
/* Call fn once per migration, applied or pending or unknown. */
skipq_rc skipq_migrate_status(skipq_conn *conn, skipq_migrate_fn fn, void *userdata,
                              skipq_error *err);
/*
 * The SQL skipq_migrate() runs, as one script for psql or a team's own
 * migration tool: each migration after after_version (0: all) in its own
 * transaction, recorded in skipq.schema_migrations, then the functions
 * and views; with_roles adds sql/roles.sql (skipq_migrate_roles). Needs
 * no database. *out is malloc'd; the caller frees it.
 */
skipq_rc skipq_migrate_sql(int after_version, int with_roles, char **out, skipq_error *err);
/*
 * Is the schema exactly this binary's: every migration applied, none
 * unknown, and the functions and views the ones it creates (a digest
 * of their texts)? SKIPQ_ERR_SCHEMA naming what differs.
 */
skipq_rc skipq_schema_current(skipq_conn *conn, skipq_error *err);
/*
 * Is the schema usable by this binary? SKIPQ_ERR_SCHEMA with "run skipq
 * migrate" when a known migration is missing, or "this skipq is older
 * than the schema" when the database has one this binary does not know
 * (unless that one is marked compatible: then a warning is logged).
 */
skipq_rc skipq_schema_check(skipq_conn *conn, skipq_error *err);

/* ------------------------------------------------------------------ */
/* Enqueue                                                            */
/* ------------------------------------------------------------------ */

/*
 * Options of an enqueue. Start from SKIPQ_ENQUEUE_OPTS_INIT, which sets
 * size to the struct's size as this header has it, and set what you
 * need. Fields are only ever added at the end: the library reads the
 * first `size` bytes and takes a field past them as 0, so a program
 * built against an older header keeps working (docs/abi.md). A size of 0
 * (a struct zeroed by hand) is SKIPQ_ERR_INVALID: nothing set in it
 * would be read.
 */
/* What enqueueing a unique key that is taken does to the job holding it. */
typedef enum skipq_unique_mode {
    SKIPQ_UNIQUE_KEEP = 0,     /* nothing: return its id */
    SKIPQ_UNIQUE_REPLACE = 1,  /* a waiting job takes the new payload, run_at, priority */
    SKIPQ_UNIQUE_DEBOUNCE = 2, /* a waiting job's run_at moves out to the new one */
} skipq_unique_mode;

typedef struct skipq_enqueue_opts {
    size_t size;          /* sizeof(skipq_enqueue_opts): the INIT macro's */
    const char *queue;    /* NULL: "default" */
    int16_t priority;     /* higher runs first; 0 = normal */
    int64_t run_at_us;    /* Unix time in microseconds; 0: now */
    int64_t delay_ms;     /* used when run_at_us is 0: now() + delay */
    int32_t max_attempts; /* 0: the worker's default */
    int has_backoff;      /* 1: use the three fields below */
    skipq_backoff backoff;
    int64_t backoff_base_ms;
    int64_t backoff_max_ms;
    int64_t timeout_ms; /* 0: the kind's configured timeout */
    size_t max_payload; /* 0: 1 MiB */
    /* Unique jobs (docs/sql-api.md, "Unique jobs"): while a job with this
     * key is unfinished, or within unique_window_ms after it succeeded,
     * no second job is created; the call returns the existing job's id. */
    const char *unique_key;        /* NULL: not unique */
    skipq_unique_mode unique_mode; /* 0: SKIPQ_UNIQUE_KEEP */
    int64_t unique_window_ms;      /* 0: the key is free once the job finished */
    /* Dependencies: the job waits until every parent succeeded. */
    const int64_t *depends_on; /* parent ids (NULL: none) */
    size_t n_depends_on;
    int run_if_parent_fails;     /* 1: run anyway when a parent fails for good */
    int64_t batch;               /* the batch the job belongs to (0: none) */
    const char *concurrency_key; /* what a queue's per-key limit counts */
    const char *meta_json;       /* a JSON object of the caller's own (NULL: none) */
    const char *const *tags;     /* tags to filter jobs by (NULL: none) */
    size_t n_tags;
    /* Bulk enqueue only: each job's unique key is this top-level field of
     * its payload (a string or a number); a job without it is refused. */
    const char *unique_key_field;
} skipq_enqueue_opts;

#define SKIPQ_ENQUEUE_OPTS_INIT            \
    {                                      \
        .size = sizeof(skipq_enqueue_opts) \
    }

/*
 * Enqueue one job; *id_out (may be NULL) receives its id. payload_json
 * must be a JSON object (NULL: {}). Bad JSON is SKIPQ_ERR_INVALID with
 * the byte offset. Inside a transaction the caller opened on conn, the
 * job joins it. Otherwise it commits on its own, and wakes workers only
 * if a worker of the queue is waiting for work (it holds the queue's idle
 * lock: docs/design.md). While conn's producer finds no worker waiting,
 * that is one autocommit statement (the insert and the idle lock's try).
 * A waiting worker found by it is notified in the same transaction when
 * conn is the only connection of the database that has called
 * skipq_enqueue outside a transaction (each holds a shared advisory lock
 * for it); otherwise by a NOTIFY in a second transaction of its own (a
 * notifying commit holds a database-wide lock through its WAL flush;
 * this keeps producers on many connections from committing one at a
 * time), and the next calls send one round trip in libpq pipeline mode
 * (left off again) of the insert's transaction and the conditional
 * NOTIFY's.
 * SKIPQ_OK means the job is committed; an error means it is not, except
 * when the connection was lost after the server committed and before it
 * could say so (SKIPQ_ERR_CONNECT or SKIPQ_ERR_DB from a terminated
 * session; as with any client, the job may then exist). A NOTIFY that
 * fails after the commit is logged, and workers find the job when they
 * poll. A server error leaves conn outside any transaction; on a lost
 * connection every later call returns SKIPQ_ERR_CONNECT. SKIPQ_ERR_STATE
 * if the caller left conn in pipeline mode.
 */
skipq_rc skipq_enqueue(skipq_conn *conn, const char *kind, const char *payload_json,
                       const skipq_enqueue_opts *opts, int64_t *id_out, skipq_error *err);

/*
 * The same on the caller's own libpq connection, inside whatever
 * transaction the caller has open: the job exists only if that
 * transaction commits. Does not begin or end a transaction.
 */
skipq_rc skipq_enqueue_tx(PGconn *pg, const char *kind, const char *payload_json,
                          const skipq_enqueue_opts *opts, int64_t *id_out,
                          skipq_error *err);

/*
 * skipq_enqueue and skipq_enqueue_tx, saying whether a row was inserted:
 * *inserted_out (may be NULL) is 1 for a new job, 0 when opts->unique_key
 * was taken and *id_out is the id of the job that holds it (kept, replaced
 * or debounced as opts->unique_mode says).
 */
skipq_rc skipq_enqueue_unique(skipq_conn *conn, const char *kind, const char *payload_json,
                              const skipq_enqueue_opts *opts, int64_t *id_out,
                              int *inserted_out, skipq_error *err);
skipq_rc skipq_enqueue_unique_tx(PGconn *pg, const char *kind, const char *payload_json,
                                 const skipq_enqueue_opts *opts, int64_t *id_out,
                                 int *inserted_out, skipq_error *err);

/*
 * One job of a batch. Fields are only ever added at the end, and the
 * library steps through the caller's array by the element size the
 * caller compiled (the stride below), taking a field past it as 0.
 */
typedef struct skipq_job_spec {
    const char *kind;
    const char *payload_json; /* NULL: {} */
} skipq_job_spec;

/*
 * Enqueue n jobs in one COPY (one round trip's worth of data, one
 * transaction, one NOTIFY per queue). opts applies to every job. Either
 * all jobs are written or none; a bad payload names its index and offset.
 * When conn is inside the caller's transaction, the batch joins it.
 * stride is the distance in bytes from one element of jobs to the next,
 * sizeof(skipq_job_spec) as the caller compiled it: call it through the
 * skipq_enqueue_batch() macro, which passes sizeof *jobs (so jobs must
 * be a typed pointer or array, not NULL itself).
 */
skipq_rc skipq_enqueue_batch_stride(skipq_conn *conn, const skipq_job_spec *jobs, size_t n,
                                    size_t stride, const skipq_enqueue_opts *opts,
                                    skipq_error *err);
#define skipq_enqueue_batch(conn, jobs, n, opts, err) \
    skipq_enqueue_batch_stride((conn), (jobs), (n), sizeof *(jobs), (opts), (err))

/*
 * Streaming form of the batch: begin a COPY, add jobs, end it. Used by the
 * CLI to read JSON lines of any length in constant memory. On any error
 * call skipq_copy_abort(); nothing is written then.
 */
typedef struct skipq_copy skipq_copy;
skipq_rc skipq_copy_begin(skipq_conn *conn, const skipq_enqueue_opts *opts,
                          skipq_copy **out, skipq_error *err);
skipq_rc skipq_copy_add(skipq_copy *cp, const char *kind, const char *payload_json,
                        size_t len, skipq_error *err);
/* Flush and finish the COPY; *count_out gets the rows written. Frees cp. */
skipq_rc skipq_copy_end(skipq_copy *cp, int64_t *count_out, skipq_error *err);
/* The same, also counting the jobs not written because their unique key
 * was taken (*existing_out; each pointer may be NULL). */
skipq_rc skipq_copy_end_counts(skipq_copy *cp, int64_t *inserted_out, int64_t *existing_out,
                               skipq_error *err);
/* Abandon the COPY: no row is written. Frees cp. NULL: no-op. */
void skipq_copy_abort(skipq_copy *cp, const char *why);

/* ------------------------------------------------------------------ */
/* Worker                                                             */
/* ------------------------------------------------------------------ */

typedef struct skipq_worker skipq_worker;
typedef struct skipq_job skipq_job;

typedef enum skipq_outcome {
    SKIPQ_JOB_OK = 0,        /* succeeded; the result (if set) is saved */
    SKIPQ_JOB_ERROR = 1,     /* failed; retried with backoff while attempts last */
    SKIPQ_JOB_SNOOZE = 2,    /* run again after skipq_job_snooze()'s delay,
                             not counted as an attempt */
    SKIPQ_JOB_CANCELLED = 3, /* stopped on request; ends cancelled */
    /* failed for good, whatever attempts are left: skipq_job_fail_permanent() */
    SKIPQ_JOB_FAIL_PERMANENT = 4,
} skipq_outcome;

/*
 * A handler. Runs on one of the worker's threads; many run at once. It
 * returns the outcome; on SKIPQ_JOB_ERROR it should set a message with
 * skipq_job_fail() (else "handler failed" is recorded).
 *
 * Cooperative deadline: a C handler cannot be killed safely, so it should
 * check skipq_job_deadline_ms() / skipq_job_should_stop() in long loops.
 * When the deadline passes, the worker records the attempt as timed out
 * as soon as the handler returns, whatever it returned.
 */
typedef skipq_outcome (*skipq_handler_fn)(skipq_job *job, void *userdata);

int64_t skipq_job_id(const skipq_job *job);
const char *skipq_job_kind(const skipq_job *job);
const char *skipq_job_queue(const skipq_job *job);
int16_t skipq_job_priority(const skipq_job *job);
int skipq_job_attempt(const skipq_job *job); /* 1 on the first run */
/* The payload as JSON text (an object). Borrowed: valid during the call.
 * Parsed as json-c values: skipq_job_payload() in skipq_json.h. */
const char *skipq_job_payload_text(const skipq_job *job);
/*
 * Save a result, any JSON value as text (copied; NULL: no result),
 * stored with the job when the handler returns SKIPQ_JOB_OK. Invalid
 * JSON, or JSON nested deeper than SKIPQ_JSON_MAX_DEPTH, is
 * SKIPQ_ERR_INVALID with the byte offset, and the result is left as it
 * was. From json-c values: skipq_job_set_result() in skipq_json.h.
 */
#define SKIPQ_HAS_RESULT_TEXT 1
skipq_rc skipq_job_set_result_text(skipq_job *job, const char *json, skipq_error *err);
/* Record why the attempt failed (printf-style); returns SKIPQ_JOB_ERROR. */
skipq_outcome skipq_job_fail(skipq_job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Ask to run again after delay_ms; returns SKIPQ_JOB_SNOOZE. */
skipq_outcome skipq_job_snooze(skipq_job *job, int64_t delay_ms);

/* Handler outcomes and progress (docs/c-api.md, "Outcomes and progress"). */
#define SKIPQ_HAS_JOB_PROGRESS 1
/*
 * Record why the job can never succeed (printf-style) and return
 * SKIPQ_JOB_FAIL_PERMANENT: the job ends failed at once, with the error
 * in its history, however many attempts it has left.
 */
skipq_outcome skipq_job_fail_permanent(skipq_job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * Ask to run again at unix_us (microseconds since the epoch, as read by
 * the worker's clock; a past time: at once), not counted as an attempt;
 * returns SKIPQ_JOB_SNOOZE.
 */
skipq_outcome skipq_job_snooze_until(skipq_job *job, int64_t unix_us);
/*
 * End the job cancelled, with the reason (printf-style; "": "cancelled
 * by the handler") as its last error; returns SKIPQ_JOB_CANCELLED.
 */
skipq_outcome skipq_job_cancel(skipq_job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * Report progress while the job runs: percent 0..100 (-1: none) and a
 * short message (copied, at most 200 bytes kept; NULL: none). Stored
 * in the job's `progress` column as {"percent", "message", "at"} at most
 * about once a second per job (the last report wins; the last one is
 * written before the job's completion). Cheap: call it as often as you
 * like, from the handler's thread. SKIPQ_ERR_INVALID for a percent
 * outside -1..100.
 */
skipq_rc skipq_job_progress(skipq_job *job, int percent, const char *message,
                            skipq_error *err);
/* Milliseconds left before the timeout (INT64_MAX: none). */
int64_t skipq_job_deadline_ms(const skipq_job *job);
/* 1 when the handler should stop: cancelled, timed out or shutting down. */
int skipq_job_should_stop(const skipq_job *job);

/*
 * Create a worker from cfg (copied: cfg may be freed afterwards). It
 * serves cfg's queues and priority bands, and the command handlers named
 * in cfg. Nothing connects until skipq_worker_run().
 */
skipq_rc skipq_worker_new(const skipq_config *cfg, skipq_worker **out, skipq_error *err);
void skipq_worker_free(skipq_worker *w);

/* Register a C handler for kind. Before run only. */
skipq_rc skipq_worker_register(skipq_worker *w, const char *kind, skipq_handler_fn fn,
                               void *userdata, skipq_error *err);

/* Stop after the queue is empty of runnable jobs it can run (--once). */
void skipq_worker_set_once(skipq_worker *w, int once);
/* Log each claimed job with its payload (an info "claimed" event whose
 * payload field is set). Off by default. Call before skipq_worker_run. */
void skipq_worker_set_log_payloads(skipq_worker *w, int on);
/* Database URL override (else cfg's, then PG*). Copied. */
skipq_rc skipq_worker_set_database(skipq_worker *w, const char *url, skipq_error *err);

/*
 * Run until stopped (or, with once, until nothing runnable is left):
 * claim, execute, complete, heartbeat on one connection; rescue and
 * retention on a second, from a thread of the worker's own. A lost
 * connection is retried with backoff and does not end the run. Returns
 * SKIPQ_OK after a clean stop; an error when the worker could not start
 * (schema, handlers) or could not continue. Blocking; call from one
 * thread.
 */
skipq_rc skipq_worker_run(skipq_worker *w, skipq_error *err);

/*
 * Ask the worker to stop: it stops claiming, lets running jobs finish for
 * up to shutdown_timeout, hands unfinished ones back to queued (attempt
 * not counted), unregisters and makes skipq_worker_run() return.
 * Async-signal-safe; callable from any thread.
 */
void skipq_worker_stop(skipq_worker *w);

/*
 * Ask the worker to retire, as when a new worker with another config
 * takes over its work: it stops claiming at once, hands back the jobs it
 * claimed ahead that no handler has started (attempt not counted), and
 * lets every running job finish with no deadline (only the job's own
 * timeout), so none is handed back while it runs and none runs twice.
 * Their results are recorded, it unregisters and skipq_worker_run()
 * returns SKIPQ_OK. skipq_worker_stop() afterwards still applies
 * shutdown_timeout from then on. Async-signal-safe; callable from any
 * thread, before or during skipq_worker_run().
 */
void skipq_worker_retire(skipq_worker *w);

/* The worker's id in skipq.workers: 0 until skipq_worker_run() has
 * started it (registered, executors running), so another thread can
 * tell a started worker from one still starting. Any thread. */
int64_t skipq_worker_id(const skipq_worker *w);

/* ------------------------------------------------------------------ */
/* Health and metrics of the workers of one process                   */
/* ------------------------------------------------------------------ */

#define SKIPQ_HAS_METRICS 1

/* What a worker says of itself, for liveness and readiness probes. */
typedef struct skipq_worker_health {
    int started;   /* skipq_worker_run() has started it (registered, executors up) */
    int connected; /* its job connection is up */
    int schema_ok; /* the schema check at its start passed */
    int stopping;  /* a stop or a retirement was asked for, or the run ended */
    int ended;     /* skipq_worker_run() has returned */
    /* milliseconds since its main loop last turned (since the run began,
     * before the first turn); -1 before skipq_worker_run() */
    int64_t loop_age_ms;
    /* the longest a healthy loop goes without turning:
     * max(3 * min(poll_interval, heartbeat_interval), 10 s) */
    int64_t loop_bound_ms;
} skipq_worker_health;

/* Fill *out. Any thread, at any time between skipq_worker_new() and
 * skipq_worker_free(). */
void skipq_worker_health_get(const skipq_worker *w, skipq_worker_health *out);

/*
 * A registry of counters and histograms that every worker of a process
 * attached to it feeds (skipq_worker_set_metrics), so they outlive any
 * one worker (a SIGHUP reload's new worker adds to the same counts). A
 * job's outcome is counted once its completion has committed, so the
 * counts match the table. Thread-safe: render from any thread while
 * workers run.
 */
typedef struct skipq_metrics skipq_metrics;

/* NULL when out of memory. */
skipq_metrics *skipq_metrics_new(void);
/* NULL: no-op. Free only after every worker attached to it is freed. */
void skipq_metrics_free(skipq_metrics *m);
/* Attach w to m (NULL: detach); before skipq_worker_run(). A worker
 * with none pays one pointer test per job. */
void skipq_worker_set_metrics(skipq_worker *w, skipq_metrics *m);
/*
 * The registry's families in the Prometheus text format 0.0.4, with the
 * gauges of the attached workers that have not been freed: a malloc'd,
 * NUL-terminated string (*len_out its length, may be NULL), or NULL when
 * out of memory. Families: skipq_jobs_processed_total, skipq_jobs_timed_out_total,
 * skipq_jobs_rescued_total, skipq_job_run_seconds,
 * skipq_job_pickup_delay_seconds, skipq_process_running_jobs,
 * skipq_process_free_slots, skipq_process_connected (docs/http.md).
 */
char *skipq_metrics_render(skipq_metrics *m, size_t *len_out);

/*
 * Run fn in a supervised child process and start a new one when it dies
 * by a signal (a C handler's segfault): the jobs the dead child held get
 * "worker lost (SIGSEGV)" in their history and go back to queued, or to
 * failed when their attempts are spent. The child dies with the parent.
 * SIGTERM/SIGINT to the parent are passed on to the child. Returns
 * SKIPQ_OK once the child exits normally, with its exit status (fn's
 * return value: a clean stop) in *status_out (may be NULL), or when
 * stopped by a signal between restarts (*status_out 0); an error when no
 * child could be started. cfg gives max_attempts for jobs without their
 * own. Not thread-safe: call from the process's main thread before
 * starting any threads.
 */
skipq_rc skipq_supervise(const skipq_config *cfg, const char *database_url,
                         int (*fn)(void *userdata), void *userdata, int *status_out,
                         skipq_error *err);

/* ------------------------------------------------------------------ */
/* Introspection                                                      */
/* ------------------------------------------------------------------ */

/*
 * The text of one statement the library sends, by name ("claim",
 * "cycle_quick", ...), exactly as sent: for benchmarks that run the same
 * SQL by hand and for EXPLAIN. NULL for an unknown name. Static storage.
 */
const char *skipq_sql_text(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* SKIPQ_H */
