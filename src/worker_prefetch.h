/*
 * worker_prefetch.h - how many jobs the worker claims beyond its
 * executors (worker_prefetch.c): pure policy, no database, no clock.
 */
#ifndef SKIPQ_WORKER_PREFETCH_H
#define SKIPQ_WORKER_PREFETCH_H

#include <stdbool.h>
#include <stdint.h>

enum {
    SKIPQ__AUTO_WAIT_MS = 5,      /* a parked job, or a completion, waits about this long */
    SKIPQ__AUTO_MIN_SAMPLES = 16, /* runs measured before claiming ahead */
    SKIPQ__AUTO_CAP = 256,        /* the most claimed ahead */
    SKIPQ__AUTO_STALE_MS = 100,   /* a parked job waiting longer goes back */
};

/* What automatic prefetch has measured: handler run time, a moving
 * average. Zeroed: nothing yet. */
typedef struct skipq__prefetch_stats {
    double run_avg_us;
    int run_samples;
} skipq__prefetch_stats;

/* A job ran for run_us (0 or less: it did not run; not counted). */
void skipq__prefetch_note_run(skipq__prefetch_stats *st, int64_t run_us);

/* Does skipq__prefetch_allowance need the age of the oldest parked job?
 * (Reading it takes the pool's lock: only when it counts.) */
bool skipq__prefetch_needs_oldest(const skipq__prefetch_stats *st, int setting);

/*
 * Jobs to claim beyond the executors at `now`. setting: the configured
 * prefetch (a number, or SKIPQ_PREFETCH_AUTO); oldest_ready_ms: when the
 * oldest job no executor has started was claimed (INT64_MAX: none).
 */
int skipq__prefetch_allowance(const skipq__prefetch_stats *st, int setting, int concurrency,
                              int64_t now, int64_t oldest_ready_ms);

/* Has a parked job (claimed at oldest_ready_ms) waited so long that the
 * parked jobs go back? And when to look next (INT64_MAX: nothing parked). */
bool skipq__prefetch_stale(int64_t now, int64_t oldest_ready_ms);
int64_t skipq__prefetch_check_at(int64_t oldest_ready_ms);

/* Parked jobs waited waited_ms: count it as a run time so that claiming
 * ahead stops until short runs bring the average down again. */
void skipq__prefetch_note_stale(skipq__prefetch_stats *st, int64_t waited_ms,
                                int concurrency);

/*
 * Should finished jobs wait for company before their completion is
 * written? First the cheap test: ndone just finished and batch_since_ms
 * is when the oldest of them was seen. Only then the pool's: ready jobs
 * wait there, idle executors wait for one, and allowance is the current
 * prefetch allowance.
 */
bool skipq__prefetch_may_hold(int64_t now, int64_t batch_since_ms, int ndone,
                              int concurrency);
bool skipq__prefetch_hold(int ready, int idle, int allowance);

#endif
