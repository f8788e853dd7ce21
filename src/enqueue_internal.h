/*
 * enqueue_internal.h - what enqueue.c shares with enqueue_copy.c: the
 * reading and checking of options, whichever way jobs go in.
 */
#ifndef SKIPQ_ENQUEUE_INTERNAL_H
#define SKIPQ_ENQUEUE_INTERNAL_H

#include "internal.h"

/* The caller's options (NULL: the defaults) read by the caller's size
 * into *out (abi.h), then checked: queue name, attempts, delays,
 * backoff. */
skipq_rc skipq__enqueue_opts_read(const skipq_enqueue_opts *opts, skipq_enqueue_opts *out,
                                  skipq_error *err) SKIPQ__WUR;

/* max_payload as set (0: the default), within the ceiling, which also
 * keeps every length within libpq's and json-c's int. */
size_t skipq__payload_limit(size_t max);

/* skipq_backoff values as skipq.backoff_strategy names them */
extern const char *const skipq__backoff_names[3];

/* The parameters of the enqueue statements (statements.c): all eleven,
 * or the first four for a job with no option but its queue and priority
 * (the _plain ones). */
#define SKIPQ__ENQ_PLAIN_NPARAMS 4
#define SKIPQ__ENQ_NPARAMS 11

typedef struct skipq__enq_params {
    char buf[8][24];
    const char *v[SKIPQ__ENQ_NPARAMS];
    bool plain; /* only v[0..3] matter: the enqueue_plain statements */
} skipq__enq_params;

void skipq__enq_fill(skipq__enq_params *p, const char *kind, const char *payload,
                     const skipq_enqueue_opts *o);

/* Does o set an option of job control (unique key, dependencies, batch,
 * concurrency key, meta, tags)? Such a job goes in through
 * skipq.enqueue_unique (enqueue_control.c). */
bool skipq__enq_has_control(const skipq_enqueue_opts *o);

/* A unique or concurrency key: 1 to 1000 bytes. */
skipq_rc skipq__enq_key_check(const char *what, const char *key,
                              skipq_error *err) SKIPQ__WUR;

/* Those options checked: names, lengths, the meta object, the mode. */
skipq_rc skipq__enq_control_check(const skipq_enqueue_opts *o, skipq_error *err) SKIPQ__WUR;

/* The options of job control as the statements' text parameters, in
 * ENQ_UNIQUE's order (statements.c): unique_mode, unique_window,
 * depends_on, on_parent_failure, batch, concurrency_key, meta, tags. */
#define SKIPQ__ENQ_CONTROL_NPARAMS 8
typedef struct skipq__enq_control {
    char window[24], batch[24];
    char *depends_on; /* owned: an int8[] literal, or NULL */
    char *tags;       /* owned: a text[] literal, or NULL */
    const char *v[SKIPQ__ENQ_CONTROL_NPARAMS];
} skipq__enq_control;

skipq_rc skipq__enq_control_fill(skipq__enq_control *c, const skipq_enqueue_opts *o,
                                 skipq_error *err) SKIPQ__WUR;
void skipq__enq_control_free(skipq__enq_control *c);

/* One job with job control's options on pg, in its own statement: *id_out
 * is its id or the holder's of its unique key, *inserted_out whether a row
 * was inserted (each may be NULL). */
skipq_rc skipq__enq_control_run(PGconn *pg, const skipq__enq_params *p,
                                const skipq_enqueue_opts *o, int64_t *id_out,
                                int *inserted_out, skipq_error *err) SKIPQ__WUR;

#endif /* SKIPQ_ENQUEUE_INTERNAL_H */
