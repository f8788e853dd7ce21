/*
 * queries.h - the statements and JSON rows that a command and `skipq
 * serve` (cmd_serve.c) both use, so the API answers with what the CLI
 * prints and runs what the CLI runs: `jobs ls` and `jobs show`, `jobs
 * retry|cancel|delete`, `recover`, `queue ls|pause|resume`, `schedule
 * ls|pause|resume` and `stats`.
 */
#ifndef SKIPQ_CLI_QUERIES_H
#define SKIPQ_CLI_QUERIES_H

#include <json-c/json.h>
#include <libpq-fe.h>
#include <stdint.h>

/* ---- enqueue -------------------------------------------------------- */

/*
 * A run-at time as the server parses it (in the session's time zone),
 * in microseconds since the epoch. 0; otherwise the status (2: the text
 * is no usable time; 1: the database failed) and "invalid <opt> ..." in
 * msg.
 */
int cli_run_at(PGconn *pg, const char *opt, const char *ts, int64_t *us_out, char *msg,
               size_t msglen);

/* ---- jobs ls -------------------------------------------------------- */

/* $1 statuses (a comma list), $2 queue, $3 kind, $4 limit, $5 updated
 * within ms, $6 updated since (timestamptz), $7 tags, $8 meta
 * (CLI_FILTER_SQL), $9 only ids below it (a page's cursor); NULL: any. */
extern const char cli_jobs_ls_sql[];
/* The same over the archive, skipq.jobs_done (sql/archive.sql). */
extern const char cli_jobs_ls_archived_sql[];
#define CLI_JOBS_LS_NPARAMS 9
/* cli_jobs_ls_sql's columns */
enum {
    JLS_ID,
    JLS_QUEUE,
    JLS_KIND,
    JLS_PRIO,
    JLS_STATUS,
    JLS_ATT,
    JLS_MAX,
    JLS_RUN_AT,
    JLS_UPDATED,
    JLS_CREATED,
    JLS_ERROR,
    JLS_PERCENT,
    JLS_MESSAGE,
    JLS_TAGS,
    JLS_META
};
/* Row r as `skipq jobs ls --json` prints it; NULL: out of memory. */
json_object *cli_jobs_ls_row(const PGresult *res, int r);

/* ---- jobs show ------------------------------------------------------ */

/* $1 the id: one row, or none, from skipq.jobs or the archive. */
extern const char cli_job_show_sql[];
/* Its column names, in order: the JSON keys and the labels. */
extern const char *const cli_job_cols[];
enum {
    CLI_JOB_NCOLS = 31,
    CLI_JOB_FIRST_JSON = 24, /* payload, result, errors, progress, tags, meta, archived */
    CLI_JOB_PROGRESS = 27,
    CLI_JOB_TAGS,
    CLI_JOB_META,
    CLI_JOB_ARCHIVED /* true: the row is in skipq.jobs_done (sql/archive.sql) */
};
/* Column c of row 0, a JSON column, parsed; NULL for SQL NULL. */
json_object *cli_job_column(const PGresult *res, int c);
/* The job as `skipq jobs show --json` prints it; NULL: out of memory. */
json_object *cli_job_json(const PGresult *res);

/* ---- jobs retry, cancel, delete --------------------------------------- */

enum cli_act { CLI_ACT_RETRY, CLI_ACT_CANCEL, CLI_ACT_DELETE };
/* $1 an int8[] of ids: their rows (id, status, kind, queue), locked. */
extern const char cli_act_lock_ids_sql[];
/* $1 an int8[] of locked ids: (id, what became of it) per id acted on
 * (retry: its new status; cancel: skipq.cancel's outcome; delete:
 * "true"/"false"). */
extern const char *const cli_act_sql[];
/* Column 1 of the row whose column 0 is id; NULL: no such row. The rows
 * are in ascending order of column 0, as cli_act_lock_ids_sql and
 * cli_act_sql return them. */
const char *cli_row_of(const PGresult *res, int64_t id);

/* ---- recover ---------------------------------------------------------- */

/* $1 status, $2 older than (ms), $3 queue, $4 kind, $5 priority, $6 ids
 * (int8[]), $7 limit, $8 dry run, $9 extra attempts, $10 lease (ms), $11
 * default max attempts, $12 tags, $13 meta. Rows: (from_status, kind,
 * jobs, to_status). */
#define CLI_RECOVER_NPARAMS 13
/* params[7] (dry run) is set from dry_run. */
PGresult *cli_recover_run(PGconn *pg, const char *const *params, int dry_run);

/* ---- queues ----------------------------------------------------------- */

extern const char cli_queue_ls_sql[];
/* Row r as `skipq queue ls --json` prints it. */
json_object *cli_queue_ls_row(const PGresult *res, int r);
/* $1 queue, $2 kind (NULL: the queue): one row, true when it changed. */
extern const char cli_queue_pause_sql[];
extern const char cli_queue_resume_sql[];
/* cli_queue_ls_sql's columns, for the text table */
enum {
    QLS_QUEUE,
    QLS_PAUSED,
    QLS_KINDS,
    QLS_COUNTS,
    QLS_NCOLS = QLS_COUNTS + 7,
    QLS_LIMITS = QLS_NCOLS, /* for people */
    QLS_SETTINGS,           /* for JSON: max_running, per key, rate, age */
};

/* ---- schedules -------------------------------------------------------- */

/* $1 how many next run times (1..100). */
extern const char cli_schedule_ls_sql[];
json_object *cli_schedule_ls_row(const PGresult *res, int r);
/* $1 name: one row, true when the schedule exists. */
extern const char cli_schedule_pause_sql[];
extern const char cli_schedule_resume_sql[];
enum {
    SLS_NAME,
    SLS_CRON,
    SLS_TZ,
    SLS_KIND,
    SLS_QUEUE,
    SLS_PRIO,
    SLS_MISSED,
    SLS_PAUSED,
    SLS_SOURCE,
    SLS_LAST,
    SLS_LAST_JOB,
    SLS_PAYLOAD,
    SLS_NEXT,
    SLS_NCOLS
};

/* ---- stats ------------------------------------------------------------ */

/* Per queue and priority; the registered workers. */
extern const char cli_stats_queues_sql[];
extern const char cli_stats_workers_sql[];
/* Their rows as `skipq stats --json` prints them (an array). */
json_object *cli_stats_queues_json(const PGresult *res);
json_object *cli_stats_workers_json(const PGresult *res);
/* Every row as an object: keys[c] for column c, typed by types[c] (as
 * cli_cell_json's type). */
json_object *cli_rows_json(const PGresult *res, const char *const *keys, const char *types);
/* One cell: 'i' integer, 'f' double, 'b' boolean, 'j' JSON, else text. */
json_object *cli_cell_json(const PGresult *res, int r, int c, char type);

#endif /* SKIPQ_CLI_QUERIES_H */
