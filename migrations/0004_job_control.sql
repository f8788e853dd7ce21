-- 0004_job_control: the columns of unique jobs, dependencies, tags,
-- progress and concurrency keys, and the status of a job that waits for
-- its parents.
--
-- skipq: compatible (older binaries never claim a 'waiting' row, since it
-- is outside the claim index, and never read the new columns; a waiting
-- job is released by SQL, whichever binary completes its parents)
--
-- The new enum value cannot be used in the transaction that adds it:
-- indexes and functions that name 'waiting' come in later migrations and
-- in sql/*.sql, applied after this one commits.

ALTER TYPE skipq.job_status ADD VALUE IF NOT EXISTS 'waiting' BEFORE 'queued';

ALTER TABLE skipq.jobs
    -- at most one unfinished job per key (jobs_unique_idx)
    ADD COLUMN IF NOT EXISTS unique_key text
        CHECK (octet_length(unique_key) BETWEEN 1 AND 1000),
    -- how long after it finished the key stays taken (skipq.unique_windows)
    ADD COLUMN IF NOT EXISTS unique_window interval,
    -- the key whose running jobs a queue's per-key limit counts
    ADD COLUMN IF NOT EXISTS concurrency_key text
        CHECK (octet_length(concurrency_key) BETWEEN 1 AND 1000),
    -- the producer's own data about the job, never read by skipq
    ADD COLUMN IF NOT EXISTS meta jsonb
        CHECK (jsonb_typeof(meta) = 'object'),
    ADD COLUMN IF NOT EXISTS tags text[],
    -- the handler's last report: {"percent": 0-100, "message": text, "at": time}
    ADD COLUMN IF NOT EXISTS progress jsonb;
