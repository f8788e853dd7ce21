/*
 * internal.h - skipq__ helpers shared by the modules of libskipq.
 *
 * Not installed. Everything here may change between any two commits.
 */
#ifndef SKIPQ_INTERNAL_H
#define SKIPQ_INTERNAL_H

#include "skipq.h"
#include "skipq_json.h"

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#define SKIPQ__WUR __attribute__((warn_unused_result))
#define SKIPQ__PRINTF(f, a) __attribute__((format(printf, f, a)))

#include "lock_keys.h" /* advisory lock keys: the one definition */

/*
 * Statement texts and the caller's search_path. Statements run with the
 * search_path of whoever runs them, and it usually lists schema public,
 * where up to PostgreSQL 14 any role may create objects. pg_catalog is
 * searched first, so a name means pg_catalog's object unless one planted
 * elsewhere matches the arguments' types better: pg_catalog's polymorphic
 * and variadic "any" functions (unnest, cardinality, jsonb_build_object,
 * to_json, array_to_string, count(x)), its anyenum operators (= on
 * job_status), and whatever needs a cast to reach it (integer * interval,
 * oid = regclass, a literal for a regclass parameter). So a function
 * called with anything but arguments of its parameters' exact types
 * (now(), max(smallint), hashtext(text), integer constants for integer
 * parameters) is written pg_catalog.f(...), an operator whose operands
 * are not of one of pg_catalog's own exact signatures is written with
 * these (or its operands cast to one: $1::float8 * interval), and skipq's
 * own objects are named by schema. Never a session SET search_path: it
 * would outlive the statement behind a transaction pooler and change the
 * caller's own connection. tests/integration/test_search_path.c plants the
 * shadows and proves that none of them runs (docs/security.md).
 */
#define SKIPQ__EQ " OPERATOR(pg_catalog.=) "
#define SKIPQ__NE " OPERATOR(pg_catalog.<>) "

/* CREATE FUNCTION statements for the worker's statements that change
 * skipq.jobs, checked by worker and secret (statements.c); skipq migrate
 * applies them after sql/. */
extern const char skipq__worker_functions_sql[];

#define SKIPQ__CHANNEL "skipq"
#define SKIPQ__CONTROL_CHANNEL "skipq_control"
#define SKIPQ__NAME_MAX SKIPQ_NAME_MAX /* the CHECK on queue and kind */
#define SKIPQ__DEFAULT_MAX_PAYLOAD ((size_t)1 << 20)
/* max_payload's ceiling, whatever a caller sets: PostgreSQL takes no
 * field, and no protocol message, of 1GB or more */
#define SKIPQ__MAX_PAYLOAD ((size_t)1 << 30)
/* every parse in the library takes this limit (skipq.h) */
#define SKIPQ__JSON_MAX_DEPTH SKIPQ_JSON_MAX_DEPTH
#define SKIPQ__DEFAULT_HANDLER_STACK ((size_t)8 << 20)

struct skipq_conn {
    PGconn *pg;
    bool types_ready;      /* PQinitTypes done */
    bool enqueue_prepared; /* "skipq_enqueue" prepared on pg */
    bool unnamed;          /* prepare nothing: every statement unnamed
                            * (SKIPQ_UNNAMED_STATEMENTS=1 at open) */
    int pipelined_left;    /* skipq_enqueue calls left to try the idle
                            * lock after the commit (enqueue.c) */
    int producer_lock;     /* the producers' lock: 0 not yet, 1 held,
                            * -1 given up after an error (enqueue.c) */
};

/* ---- errors (error.c) --------------------------------------------- */

/* Fill err (may be NULL) and return code. */
skipq_rc skipq__fail(skipq_error *err, skipq_rc code, const char *fmt, ...)
    SKIPQ__PRINTF(3, 4);
skipq_rc skipq__vfail(skipq_error *err, skipq_rc code, const char *fmt, va_list ap)
    SKIPQ__PRINTF(3, 0);
/*
 * A failed statement: "<what>: <server message>" with libpq's trailing
 * newline stripped and the SQLSTATE kept. res may be NULL (then the
 * connection's message is used). Does not clear res.
 */
skipq_rc skipq__db_fail(skipq_error *err, PGconn *pg, const PGresult *res, const char *fmt,
                        ...) SKIPQ__PRINTF(4, 5);

/* ---- logging (log.c) ---------------------------------------------- */

void skipq__log(skipq_log_level level, const char *fmt, ...) SKIPQ__PRINTF(2, 3);
void skipq__log_event(const skipq_log_event *ev);
bool skipq__log_enabled(void);

/* ---- database helpers (conn.c) ------------------------------------ */

/* PQinitTypes once per connection; false when out of memory. */
bool skipq__types_init(PGconn *pg);
/* Run one statement expecting PGRES_COMMAND_OK or TUPLES_OK. */
skipq_rc skipq__exec(PGconn *pg, const char *sql, skipq_error *err) SKIPQ__WUR;
/* Connect with libpq; on failure the message names the masked URL. */
skipq_rc skipq__connect(const char *url, PGconn **out, skipq_error *err) SKIPQ__WUR;
/* The host name a worker registers under: $SKIPQ_HOSTNAME when set (a
 * container's own name, or tests that stand in for many hosts), else
 * gethostname(). */
void skipq__hostname(char *out, size_t n);

/* ---- embedded SQL (generated: sql_embed.c) ------------------------ */

typedef struct skipq__sql_file {
    int version;      /* 0 for sql/ files */
    const char *name; /* "0001_init" or "functions" */
    const char *text;
} skipq__sql_file;

extern const skipq__sql_file skipq__migrations[];
extern const size_t skipq__migration_count;
extern const skipq__sql_file skipq__sql_files[];
extern const size_t skipq__sql_file_count;
/* Does a migration's text mark it compatible with older binaries? */
bool skipq__migration_compatible(const char *text);
/* The digest of this binary's schema texts (16 hex digits), and the SQL
 * that creates skipq.schema_digest() returning it (migrate_sql.c). */
void skipq__schema_digest(char *out, size_t n);
void skipq__schema_digest_sql(char *out, size_t n);
/* sql/roles.sql: applied only by skipq_migrate_roles (migrate --roles). */
extern const skipq__sql_file skipq__roles_files[];
extern const size_t skipq__roles_file_count;

/* ---- config internals (config.c) ---------------------------------- */

typedef struct skipq__band {
    int16_t lo, hi;
} skipq__band;

/* processes of one persistent handler, at most */
#define SKIPQ__MAX_PROCESSES 1024

typedef struct skipq__handler_cfg {
    char *kind;
    char **argv; /* NULL-terminated, owned */
    int64_t timeout_ms;
    bool persistent; /* started once, jobs as JSON lines (exec_persistent.c) */
    int processes;   /* persistent: how many; 0 the default */
} skipq__handler_cfg;

/* One of the config's schedules: (config_schedules.c); strings owned. */
typedef struct skipq__schedule_cfg {
    char *name, *cron, *time_zone, *kind, *payload, *queue, *missed;
    int16_t priority;
} skipq__schedule_cfg;

struct skipq_config {
    char *database;
    char *listen_database; /* a direct connection for LISTEN and the locks;
                              NULL: the job connection (worker.listen_database) */
    bool listen;           /* false: poll only (worker.listen), for poolers */
    char *http;            /* worker.http: the CLI's probe and metrics address; NULL none */
    char **queues;
    size_t nqueues;
    char *priorities; /* as given, e.g. "high,normal,low" */
    skipq__band *bands;
    size_t nbands;
    int concurrency;
    int prefetch; /* jobs claimed beyond concurrency, or SKIPQ_PREFETCH_AUTO */
    int64_t poll_interval_ms;
    int64_t heartbeat_interval_ms;
    int64_t lease_timeout_ms;
    int64_t shutdown_timeout_ms;
    int64_t retention_ms;
    int64_t archive_after_ms;     /* 0: finished rows stay in skipq.jobs */
    int64_t archive_partition_ms; /* the archive's partition width */
    int64_t vacuum_interval_ms;   /* 0: autovacuum alone */
    skipq_on_success on_success;
    int max_attempts;
    skipq_backoff backoff;
    int64_t backoff_base_ms;
    int64_t backoff_max_ms;
    double jitter;
    skipq__handler_cfg *handlers;
    size_t nhandlers;
    int64_t recover_older_than_ms;
    int recover_limit;
    size_t max_payload;
    size_t handler_stack_size; /* bytes of each executor thread's stack */
    skipq__schedule_cfg *schedules;
    size_t nschedules;
    bool schedules_set; /* a schedules: section was read: the worker syncs */
    int warnings;
    /* skipq serve (the CLI's HTTP API); strings owned, NULL: not set */
    char *serve_http;
    char *serve_admin_token;
    char *serve_read_token;
    size_t serve_max_body;
    int serve_rate_limit; /* requests per second per client; 0: none */
};

/* Deep copy; NULL when out of memory. */
skipq_config *skipq__config_dup(const skipq_config *cfg);
void skipq__schedules_free(skipq__schedule_cfg *s, size_t n); /* NULL: no-op */
skipq__schedule_cfg *skipq__schedules_dup(const skipq__schedule_cfg *s, size_t n);
const skipq__handler_cfg *skipq__config_handler(const skipq_config *cfg, const char *kind);

/* ---- validation shared by enqueue paths (enqueue.c) --------------- */

/* Bytes r holds for the current line: at most the limit + 3, however
 * long the line (tests/unit/test_secrets.c). */
size_t skipq__jsonl_buffered(const skipq_jsonl *r);

/*
 * Certainly one JSON object (strict grammar, whitespace around it)? No
 * allocation. false means "not sure": parse with json-c for the verdict.
 * text must be valid UTF-8 (jsonscan.c).
 */
bool skipq__json_object_fast(const char *text, size_t n);

/* ---- time ----------------------------------------------------------- */

int64_t skipq__now_ms(void); /* CLOCK_MONOTONIC */
int64_t skipq__now_us(void); /* CLOCK_MONOTONIC */

#endif /* SKIPQ_INTERNAL_H */
