/*
 * worker_prefetch.c - how many jobs to claim beyond the executors.
 *
 * Automatic prefetch (worker.prefetch: auto). Claiming ahead raises the
 * rows per round trip, and so per commit. The price is a job parked in
 * this worker, already `running`, while another worker may be idle. So
 * claim ahead only what the executors will start within about
 * SKIPQ__AUTO_WAIT_MS by the measured run time, nothing before
 * SKIPQ__AUTO_MIN_SAMPLES runs were measured, never more than
 * SKIPQ__AUTO_CAP, and nothing while a parked job already waits longer
 * (the executors are stuck on long jobs). A fixed setting is used as is;
 * 0 turns prefetch off.
 *
 * Pure policy: no database and no clock reads (the caller passes `now`),
 * so tests/unit/test_prefetch.c covers every rule. The worker loop
 * (worker.c) applies it; test_worker's
 * auto_prefetch_claims_ahead_for_short_jobs_and_gives_back_parked_ones
 * covers it end to end.
 */
#include "worker_prefetch.h"

#include "skipq.h"

#include <limits.h>

void
skipq__prefetch_note_run(skipq__prefetch_stats *st, int64_t run_us)
{
    if (run_us <= 0)
        return;
    double us = (double)run_us;
    st->run_avg_us = st->run_samples == 0 ? us
                                          : st->run_avg_us + (us - st->run_avg_us) / 32.0;
    if (st->run_samples < INT_MAX)
        st->run_samples++;
}

bool
skipq__prefetch_needs_oldest(const skipq__prefetch_stats *st, int setting)
{
    return setting == SKIPQ_PREFETCH_AUTO && st->run_samples >= SKIPQ__AUTO_MIN_SAMPLES;
}

int
skipq__prefetch_allowance(const skipq__prefetch_stats *st, int setting, int concurrency,
                          int64_t now, int64_t oldest_ready_ms)
{
    if (setting != SKIPQ_PREFETCH_AUTO)
        return setting;
    if (st->run_samples < SKIPQ__AUTO_MIN_SAMPLES)
        return 0;
    if (now - oldest_ready_ms > SKIPQ__AUTO_WAIT_MS)
        return 0;
    double n = (double)concurrency * SKIPQ__AUTO_WAIT_MS * 1000.0 /
               (st->run_avg_us > 1.0 ? st->run_avg_us : 1.0);
    return n >= SKIPQ__AUTO_CAP ? SKIPQ__AUTO_CAP : (int)n;
}

bool
skipq__prefetch_stale(int64_t now, int64_t oldest_ready_ms)
{
    return oldest_ready_ms != INT64_MAX && now - oldest_ready_ms > SKIPQ__AUTO_STALE_MS;
}

int64_t
skipq__prefetch_check_at(int64_t oldest_ready_ms)
{
    return oldest_ready_ms == INT64_MAX ? INT64_MAX
                                        : oldest_ready_ms + SKIPQ__AUTO_STALE_MS + 1;
}

/* As if every executor had been busy for the whole wait: the allowance
 * drops to 0 at any concurrency, and short runs bring it back (1/32 per
 * run). */
void
skipq__prefetch_note_stale(skipq__prefetch_stats *st, int64_t waited_ms, int concurrency)
{
    double waited = (double)waited_ms * 1000.0 * concurrency;
    if (st->run_avg_us < waited)
        st->run_avg_us = waited;
}

/*
 * Completions wait for company while executors have claimed-ahead jobs
 * to start: until half the executors' worth have finished, the pool is
 * down to half the allowance, or SKIPQ__AUTO_WAIT_MS has passed. Each
 * cycle is a round trip and a commit, and with short jobs cycles were
 * what the worker's backend spent its time on (docs/performance.md,
 * "Command handlers"). Long jobs claim nothing ahead under `auto`, so
 * theirs complete at once; floods of no-op jobs finish many at a time
 * anyway, so theirs do not wait (test short_jobs_complete_in_batches).
 */
bool
skipq__prefetch_may_hold(int64_t now, int64_t batch_since_ms, int ndone, int concurrency)
{
    return now - batch_since_ms < SKIPQ__AUTO_WAIT_MS && 2 * ndone < concurrency;
}

/* (an executor still idle: a job pushed has not been taken yet, and the
 * count may be about to drop) */
bool
skipq__prefetch_hold(int ready, int idle, int allowance)
{
    return 2 * ready > allowance && idle == 0;
}
