/*
 * worker_internal.h - what the worker (worker*.c), its executors
 * (exec_pool.c, exec_command.c, exec_persistent.c) and the handler API (job.c) share: the
 * handler table, the claimed job, and the executor pool.
 */
#ifndef SKIPQ_WORKER_INTERNAL_H
#define SKIPQ_WORKER_INTERNAL_H

#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

typedef struct handler {
    char *kind;
    skipq_handler_fn fn; /* C handler, or NULL for a command */
    void *userdata;
    char **argv;        /* command handler (borrowed from the config) */
    int64_t timeout_ms; /* 0: none */
    int persist;        /* persistent command: 1 + its index in the
                         * config's handlers (exec_pool.persist); 0 not */
} handler;

/*
 * One claimed job, from claim until its completion commits. Owned by the
 * worker's held list; the executor that runs it borrows it.
 */
struct skipq_job {
    skipq_worker *w;
    const handler *h;
    int64_t id;
    int32_t claim_token; /* skipq.jobs.claims as this claim set it: the
                          * lock token its completion must match */
    char *kind;
    char *queue;
    int16_t priority;
    int attempt;
    char *payload_text;
    json_object *payload; /* parsed on first use */
    int max_attempts;     /* 0: config default */
    int has_backoff;
    skipq_backoff backoff;
    int64_t backoff_base_ms, backoff_max_ms;
    int64_t timeout_ms;  /* effective: job's, else handler's; 0 none */
    int64_t claimed_ms;  /* monotonic: when the claim returned it */
    int64_t started_ms;  /* monotonic */
    int64_t deadline_ms; /* monotonic; INT64_MAX none */

    /* set by the executor */
    skipq_outcome outcome;
    char *error;
    char *result; /* JSON text */
    int64_t snooze_ms;
    double duration_ms;
    int64_t run_us; /* the executor's wall time for it, 0 not run */
    bool timed_out;
    /* what its completion writes (skipq__done_kind), set with the
     * completion's parameters, counted once it committed (metrics.c) */
    uint8_t decided;

    /* the handler's last progress report (worker_progress.c), under the
     * worker's progress lock: written by the executor, taken by the main
     * thread */
    char *progress_message;
    int progress_percent; /* -1: none */
    bool progress_dirty;  /* reported since it was last written */

    atomic_int stop;           /* 1: cancel requested, 2: shutdown, 3: timeout */
    atomic_int pgid;           /* running command's process group, 0 none */
    atomic_bool finished;      /* executor: the handler ended (a command: its
                            * own process exited) before any stop; a stop
                            * must not hand it back */
    bool cancel_requested;     /* main thread only */
    bool handed_back;          /* main thread: row already put back */
    bool done;                 /* main thread: result received */
    bool pulled;               /* main thread: taken back unstarted from the pool */
    int64_t complete_after_ms; /* main thread: its completion waited for a row
                                * lock; not tried again before this (monotonic) */
    int complete_tries;        /* main thread: completions that waited for a lock */

    skipq_job *next;          /* in the ready or done queue */
    skipq_job *hnext, *hprev; /* in the held list (main thread) */
};

/* How a completion leaves the row: the outcome label of
 * skipq_jobs_processed_total (metrics.c). */
enum skipq__done_kind {
    SKIPQ__DONE_SUCCEEDED,
    SKIPQ__DONE_FAILED,  /* final: attempts spent, or failed permanently */
    SKIPQ__DONE_RETRIED, /* failed with attempts left: queued again */
    SKIPQ__DONE_CANCELLED,
    SKIPQ__DONE_SNOOZED,
    SKIPQ__DONE_N
};

/* Executor pool (exec_pool.c). */
typedef struct exec_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    skipq_job *ready_head, *ready_tail;
    skipq_job *done_head, *done_tail;
    int done_count;
    int ready_count; /* jobs in the ready list */
    int idle;        /* executors waiting for a job */
    bool quit;
    int nthreads;
    pthread_t *threads;
    int wake_fd;                  /* eventfd the main loop polls */
    int reaper_fd;                /* socket to the reaper (exec_command.c), -1 none */
    pid_t reaper_pid;             /* -1 none */
    atomic_bool reaper_failed;    /* it stopped answering and was killed */
    struct persist_set **persist; /* by the config's handler index; NULL
                                   * entries for the other handlers */
    size_t npersist;
} exec_pool;

/* cfg->concurrency executors on cfg->handler_stack_size stacks, and the
 * reaper when cfg has command handlers. */
skipq_rc skipq__pool_start(exec_pool *p, const skipq_config *cfg, int wake_fd,
                           skipq_error *err);
/* Tell threads to exit once idle, and join them. */
void skipq__pool_stop(exec_pool *p);
void skipq__pool_push(exec_pool *p, skipq_job *jobs); /* a list via next */
skipq_job *skipq__pool_take_done(exec_pool *p);       /* the whole list */
skipq_job *skipq__pool_take_ready(exec_pool *p);      /* not yet started */
/* jobs no executor has started; *idle: executors waiting for one */
int skipq__pool_ready_count(exec_pool *p, int *idle);
/* claimed_ms of the oldest job no executor has started, INT64_MAX none */
int64_t skipq__pool_oldest_ready_ms(exec_pool *p);

/* Run job's handler on the calling thread (an executor of pool); fills
 * the outcome fields. */
void skipq__job_run(exec_pool *pool, skipq_job *job);
void skipq__job_free(skipq_job *job);

/* Command handlers (exec_command.c): run job's command, fill its
 * outcome; the reaper that kills what commands leave behind. */
void skipq__run_command(exec_pool *pool, skipq_job *job);
skipq_rc skipq__reaper_start(exec_pool *p, int cap, skipq_error *err);
void skipq__reaper_stop(exec_pool *p);
/* What the reaper is told (exec_command.c): a process group started or
 * ended. */
enum { SKIPQ__REAPER_ADD = 1, SKIPQ__REAPER_DEL = 2 };
void skipq__reaper_tell(exec_pool *p, int op, pid_t pgid);
/* Start argv in a process group of its own with fds[0..nfds-1] as its
 * descriptors 0..nfds-1 (stdin, stdout, stderr, and for a command its
 * control descriptor), dying with the calling thread; 0 or an errno
 * value. */
int skipq__spawn_command(char *const argv[], char *const envp[], const int *fds, int nfds,
                         pid_t *out);

/* Persistent command handlers (exec_persistent.c): the processes of
 * each, started on first use by the executors; stopped after them. */
skipq_rc skipq__persist_start(exec_pool *p, const skipq_config *cfg, skipq_error *err);
void skipq__persist_stop(exec_pool *p);
/* Before the executors exit: idle processes get EOF and a moment. */
void skipq__persist_quiesce(exec_pool *p);
/* The protocol's lines (exec_persistent_proto.c). The request for job,
 * one line with its newline; NULL when out of memory. */
char *skipq__persist_request(const skipq_job *job, size_t *len);
/* What one answer line of a process says of job: its answer (the
 * outcome set), nothing yet (progress, an empty line), or a broken
 * protocol (*why says what; malloc'd). */
enum { SKIPQ__PERSIST_WAIT = -1, SKIPQ__PERSIST_ANSWER = 0, SKIPQ__PERSIST_BROKEN = 1 };
int skipq__persist_take_line(skipq_job *job, const char *line, size_t len, char **why);
/* "what: <the start of line>"; NULL when out of memory. */
char *skipq__persist_broken(const char *what, const char *line, size_t len);
/* Processes the reaper may have to list for persistent handlers. */
int skipq__persist_max_processes(const skipq_config *cfg);
void skipq__run_persistent(exec_pool *pool, skipq_job *job);

/* What a handler says besides its result (outcome.c): an outcome, or a
 * progress report, as read from one JSON object. */
enum { SKIPQ__REPORT_PROGRESS = 1, SKIPQ__REPORT_OUTCOME = 2 };
#define SKIPQ__REPORT_ALLOW_OK 1u /* "ok" and "error" too (persistent answers) */
typedef struct skipq__report {
    int kind;              /* SKIPQ__REPORT_* */
    skipq_outcome outcome; /* OUTCOME */
    int percent;           /* PROGRESS: 0..100, -1 none */
    char *text;            /* progress message, error, or cancel reason */
    char *result;          /* "ok": the result's JSON text */
    int64_t delay_ms;      /* snooze: from "delay_ms", or "until" - now */
} skipq__report;
/* Read obj (now_us: the wall clock, for "until"); 0, or -1 with *why
 * (malloc'd; NULL when out of memory). r is cleared first. */
int skipq__report_read(json_object *obj, unsigned allow, int64_t now_us, skipq__report *r,
                       char **why);
void skipq__report_clear(skipq__report *r);
/* Set job's outcome from r, or note r's progress; moves r's strings. */
void skipq__report_apply(skipq_job *job, skipq__report *r);
/* "2030-01-01T14:00:00Z", "...T14:00:00.5+02:00": microseconds since the
 * epoch; false for anything else (a time without a zone among it). */
bool skipq__parse_iso_time(const char *s, int64_t *us_out);

/* A command's control descriptor (outcome.c): its lines as they come
 * (fed in any pieces); progress is noted at once, the last outcome kept
 * in `said` for when the process has ended. */
#define SKIPQ__CONTROL_LINE_MAX 65536
typedef struct skipq__control {
    char *p;
    size_t len;
    bool skipping;      /* the rest of a line too long to keep */
    skipq__report said; /* kind 0: no outcome said */
} skipq__control;
void skipq__control_feed(skipq__control *c, skipq_job *job, const char *d, size_t n);
/* The process ended: a last line without its newline counts too. */
void skipq__control_end(skipq__control *c, skipq_job *job);
void skipq__control_free(skipq__control *c);

/* Progress (worker_progress.c): keep job's report (any thread; message
 * copied, cut to SKIPQ__PROGRESS_MESSAGE_MAX bytes) for the main thread
 * to write. */
#define SKIPQ__PROGRESS_MESSAGE_MAX 200
skipq_rc skipq__progress_note(skipq_job *job, int percent, const char *message);

/* "2s", or "1500ms" */
void skipq__fmt_duration(int64_t ms, char *out, size_t n);
/* SIGKILL's name, and so on */
const char *skipq__signame(int sig);

/* The statements' texts the tests prepare too (skipq__claim_sql, ...). */
#include "statements.h"

/* Replace invalid UTF-8 and NUL bytes so the text is storable. */
void skipq__sanitize_utf8(char *s);

#ifdef SKIPQ_FAILPOINTS
/* True when $SKIPQ_FAILPOINT names this point (test builds only). */
bool skipq__failpoint(const char *name);
#else
#define skipq__failpoint(name) false
#endif

#endif
