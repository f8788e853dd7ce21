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

#endif /* SKIPQ_ENQUEUE_INTERNAL_H */
