/*
 * statements.h - the registry of every fixed statement the library sends
 * (statements.c): the worker's, the producers', the connection's, the
 * migrations' and the supervisor's; and the one helper that sends them.
 *
 * Not in it: the text of the embedded sql/ and migrations/ files, which
 * migrate.c applies as they are, and the few statements whose text is
 * made at run time (DEALLOCATE of a name, a job's COPY column list, the
 * worker session's lock_timeout: the last two from formats kept here).
 */
#ifndef SKIPQ_STATEMENTS_H
#define SKIPQ_STATEMENTS_H

#include "internal.h"

#include <libpqtypes.h>
#include <stdbool.h>

/* Room for a timestamptz as text. */
enum { SKIPQ__NOW_LEN = 64 };

/* Every statement the library sends, by its place in skipq__stmts. */
typedef enum skipq__stmt_id {
    /* the job connection: the cycle (worker_claim.c) */
    SKIPQ__STMT_CYCLE,
    SKIPQ__STMT_CYCLE_QUICK,
    SKIPQ__STMT_CLAIM,
    SKIPQ__STMT_CLAIM_AFTER,
    SKIPQ__STMT_CLAIM_CONTROLLED,
    SKIPQ__STMT_RATE_WAIT,
    SKIPQ__STMT_COMPLETE,
    SKIPQ__STMT_COMPLETE_DELETE,
    SKIPQ__STMT_NEXT_RUN_AT,
    /* the job connection: the session (worker_session.c) */
    SKIPQ__STMT_SETTINGS,
    SKIPQ__STMT_DELETE_PRIVILEGE,
    SKIPQ__STMT_LISTEN,
    SKIPQ__STMT_LISTEN_CONTROL,
    SKIPQ__STMT_REGISTER,
    SKIPQ__STMT_LIVENESS,
    SKIPQ__STMT_HEARTBEAT,
    SKIPQ__STMT_UNREGISTER,
    SKIPQ__STMT_READ_CANCELS,
    SKIPQ__STMT_READ_PAUSES,
    SKIPQ__STMT_IDLE_LOCK,
    SKIPQ__STMT_IDLE_UNLOCK,
    SKIPQ__STMT_IDLE_UNDO,
    /* the job connection: putting rows back (worker_complete.c) */
    SKIPQ__STMT_RECONCILE,
    SKIPQ__STMT_HAND_BACK,
    /* the job connection: handlers' progress (worker_progress.c) */
    SKIPQ__STMT_PROGRESS,
    /* the maintenance connection (worker_maint.c) */
    SKIPQ__STMT_MAINT_SETTINGS,
    SKIPQ__STMT_RESCUE_BEGIN,
    SKIPQ__STMT_RESCUE_TURN,
    SKIPQ__STMT_RESCUE,
    SKIPQ__STMT_FORGET_WORKERS,
    SKIPQ__STMT_RESCUE_DONE,
    SKIPQ__STMT_COMMIT,
    SKIPQ__STMT_ROLLBACK,
    SKIPQ__STMT_RETENTION_LOCK,
    SKIPQ__STMT_RETENTION_UNLOCK,
    SKIPQ__STMT_PRUNE,
    SKIPQ__STMT_ARCHIVE,
    SKIPQ__STMT_ARCHIVE_DROP,
    SKIPQ__STMT_ARCHIVE_PRIVILEGE,
    SKIPQ__STMT_VACUUM_PERMITTED,
    SKIPQ__STMT_VACUUM_PERMITTED_16,
    SKIPQ__STMT_VACUUM_DUE,
    SKIPQ__STMT_VACUUM_LOCK,
    SKIPQ__STMT_VACUUM_UNLOCK,
    SKIPQ__STMT_NO_STATEMENT_TIMEOUT,
    SKIPQ__STMT_VACUUM,
    SKIPQ__STMT_RESET_STATEMENT_TIMEOUT,
    /* schedules (worker_schedule.c): the tick on the maintenance
     * connection, the config's schedules on the job connection at start */
    SKIPQ__STMT_SCHEDULE_TICK,
    SKIPQ__STMT_SCHEDULE_SYNC,
    /* the producers (enqueue.c): prepared on a skipq_conn unless unnamed */
    SKIPQ__STMT_ENQUEUE,
    SKIPQ__STMT_ENQUEUE_PLAIN,
    SKIPQ__STMT_ENQUEUE_THEN_NOTIFY,
    SKIPQ__STMT_ENQUEUE_PLAIN_THEN_NOTIFY,
    SKIPQ__STMT_ENQUEUE_TRY,
    SKIPQ__STMT_ENQUEUE_PLAIN_TRY,
    SKIPQ__STMT_ENQUEUE_UNIQUE,
    SKIPQ__STMT_COPY_STAGE,
    SKIPQ__STMT_COPY_STAGE_IN,
    SKIPQ__STMT_COPY_STAGE_KEEP,
    SKIPQ__STMT_COPY_STAGE_EACH,
    SKIPQ__STMT_NOTIFY,
    SKIPQ__STMT_PRODUCER_LOCK,
    /* batches (enqueue_copy.c) */
    SKIPQ__STMT_COPY_RUN_AT,
    SKIPQ__STMT_COPY, /* a format: %s the columns */
    /* every connection (conn.c) */
    SKIPQ__STMT_QUIET_NOTICES,
    /* the schema (migrate.c); COMMIT and ROLLBACK above */
    SKIPQ__STMT_MIGRATE_BEGIN,
    SKIPQ__STMT_MIGRATE_LOCK_TIMEOUT,
    SKIPQ__STMT_MIGRATE_LOCK,
    SKIPQ__STMT_MIGRATE_TRY_VACUUM_LOCK,
    SKIPQ__STMT_MIGRATE_VACUUM_HOLDER,
    SKIPQ__STMT_MIGRATE_VACUUM_LOCK,
    SKIPQ__STMT_MIGRATIONS_EXIST,
    SKIPQ__STMT_MIGRATIONS_READ,
    SKIPQ__STMT_MIGRATION_RECORD,
    SKIPQ__STMT_WORKER_FUNCTIONS,
    SKIPQ__STMT_CYCLE_POOLED,
    SKIPQ__STMT_CYCLE_QUICK_POOLED,
    SKIPQ__STMT_SCHEMA_DIGEST,
    /* the supervisor (supervise.c) */
    SKIPQ__STMT_SUPERVISE_RESCUE,
    SKIPQ__STMT_SUPERVISE_FORGET,
    SKIPQ__STMT_COUNT
} skipq__stmt_id;

typedef struct skipq__stmt {
    const char *name; /* for logs and the registry's readers */
    /* The name it is prepared under when the connection opens
     * (skipq__stmt_prepare); NULL: sent with its text every time. */
    const char *prepared;
    const char *text;
    /* The ctest case that guards its plan or its behaviour (NULL: the
     * paths that send it, covered by the suite at large). */
    const char *guard;
} skipq__stmt;

extern const skipq__stmt skipq__stmts[SKIPQ__STMT_COUNT];

/* Prepare statement id on pg under its prepared name. */
skipq_rc skipq__stmt_prepare(PGconn *pg, skipq__stmt_id id, skipq_error *err) SKIPQ__WUR;

/* Prepare the n statements ids on pg, all of them or none: a statement
 * left prepared by a half-done attempt would make every later attempt
 * fail ("already exists"). A failure says "could not prepare <what>". */
skipq_rc skipq__stmts_prepare(PGconn *pg, const skipq__stmt_id *ids, size_t n,
                              const char *what, skipq_error *err) SKIPQ__WUR;

/*
 * Send statement id on pg: the one way the library sends its statements.
 * Parameters are prm (libpqtypes), or else the n text values v. A
 * statement with a prepared name goes by that name, unless `send` is
 * not SKIPQ__SEND_NAMED: then by its text, unnamed, as the others always
 * go (a transaction pooler may run each statement on another server
 * session, where a prepared name means nothing). A statement without
 * parameters that is never prepared goes by the simple protocol (it may
 * hold several commands).
 *
 * send >= SKIPQ__SEND_POOLED_MIN: unnamed, behind a transaction pooler,
 * where no session setting lasts: a statement run here (out not NULL)
 * with parameters first sets lock_timeout to `send` milliseconds in its
 * own transaction (a pipeline: still one round trip), so no wait for a
 * lock another role holds is unbounded there either; a caller's own
 * pipeline (out NULL) starts with a statement that does (the worker's
 * cycle: SKIPQ__STMT_CYCLE_POOLED).
 *
 * out NULL: sent into the connection's pipeline; true when it was.
 * Otherwise run: *out gets its result (NULL when libpqtypes failed the
 * statement: PQgetErrorField then reads its error) and true means
 * PGRES_TUPLES_OK or PGRES_COMMAND_OK. The caller clears *out.
 */
enum {
    SKIPQ__SEND_NAMED = 0,
    SKIPQ__SEND_UNNAMED = 1,
    SKIPQ__SEND_POOLED_MIN = 2, /* and up: pooled, with that lock_timeout in ms */
};
bool skipq__stmt_run(PGconn *pg, int send, skipq__stmt_id id, PGparam *prm, int n,
                     const char *const *v, PGresult **out);

/* skipq__stmt_run with text values, and its failure as a message. out
 * NULL: the result is cleared. */
skipq_rc skipq__stmt_exec(PGconn *pg, int send, skipq__stmt_id id, int n,
                          const char *const *v, PGresult **out,
                          skipq_error *err) SKIPQ__WUR;

/* The texts of the statements above that are function bodies or that the
 * tests and the bench run by hand. */
/* $1 queue, $2/$3 priority band, $4 kinds, $5 limit, $6 worker id. */
extern const char skipq__claim_sql[];
/* The claim from where the last full one ended: the same, and $7, $8,
 * $9 the priority, run_at and id of the last row it took. */
extern const char skipq__claim_after_sql[];
/* Milliseconds to the next run_at: $1 queues (text[]), $2/$3 band, $4 the
 * claim transaction's now() (NULL: now). */
extern const char skipq__next_run_at_sql[];
/* The settings statement that opens each claim/completion transaction
 * (the quick one: a claim alone); the bench runs it before its probes. */
extern const char skipq__cycle_sql[];
extern const char skipq__cycle_quick_sql[];
extern const char skipq__complete_sql[];
extern const char skipq__complete_delete_sql[]; /* worker.on_success: delete */
extern const char skipq__hand_back_sql[];
extern const char skipq__reconcile_sql[];

#endif
