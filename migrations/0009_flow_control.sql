-- 0009_flow_control: limits on how fast and how many of a queue's jobs
-- run, shared by every worker on the database, and priority aging.
--
-- Not compatible: a worker that predates this migration would claim from
-- a limited queue as if it had no limit, so it refuses to run against a
-- schema that has it (test flow_control.older_workers_refuse_the_limits).
--
-- max_running      at most this many of the queue's jobs run at once
-- key_max_running  at most this many run at once per concurrency_key
--                  (jobs without a key are limited by max_running only)
-- rate_limit       at most this many of the queue's jobs start per
--                  rate_interval: windows of that length, aligned to the
--                  epoch on the database clock
-- rate_by          'queue': the rate is the queue's; 'key': each
--                  concurrency_key has that rate (jobs without a key
--                  share one), counted in skipq.rate_windows
-- rate_window      the start of the current window, and rate_used the
--                  jobs started in it (written by skipq.claim_controlled)
-- age_after        a job runnable for longer than this is claimed ahead
--                  of newer jobs of higher priority (NULL: strict order)
-- key_cursor       where the next claim's walk over the queue's keys
--                  starts (claims look at a bounded number of keys each,
--                  in turn)
ALTER TABLE skipq.queues
    ADD COLUMN IF NOT EXISTS max_running int CHECK (max_running >= 1),
    ADD COLUMN IF NOT EXISTS key_max_running int CHECK (key_max_running >= 1),
    ADD COLUMN IF NOT EXISTS rate_limit int CHECK (rate_limit >= 1),
    ADD COLUMN IF NOT EXISTS rate_interval interval
        CHECK (rate_interval >= interval '1 millisecond'),
    ADD COLUMN IF NOT EXISTS rate_by text NOT NULL DEFAULT 'queue'
        CHECK (rate_by IN ('queue', 'key')),
    ADD COLUMN IF NOT EXISTS rate_window timestamptz,
    ADD COLUMN IF NOT EXISTS rate_used int NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS age_after interval CHECK (age_after >= interval '0'),
    ADD COLUMN IF NOT EXISTS key_cursor text,
    ADD CONSTRAINT queues_rate_check
        CHECK ((rate_limit IS NULL) = (rate_interval IS NULL));

-- A rate per key: the jobs of each key claimed in its current window
-- ('' for the jobs without a key). A row is reused at the key's next
-- window; the first claim of each window deletes those left from earlier
-- ones.
CREATE TABLE IF NOT EXISTS skipq.rate_windows (
    queue  text NOT NULL,
    key    text NOT NULL,
    window_start timestamptz NOT NULL,
    used   int NOT NULL,
    PRIMARY KEY (queue, key)
);

-- The queued jobs of one key in claim order: a claim in a queue with a
-- per-key limit finds the first jobs of each key that has room without
-- reading past the jobs of keys that have none. Only jobs that carry a
-- key are in it.
CREATE INDEX IF NOT EXISTS jobs_keyed_idx
    ON skipq.jobs (queue, concurrency_key, priority DESC, run_at, id)
    WHERE status = 'queued' AND concurrency_key IS NOT NULL;
