-- 0005_unique_jobs: one unfinished job per unique key, and the windows
-- that keep a key taken after its job finished.
--
-- skipq: compatible (older binaries insert jobs without a key, which the
-- index ignores)

-- The arbiter of skipq.enqueue's INSERT ... ON CONFLICT: a race between
-- producers is settled by the index, never by a read before the insert.
-- A waiting job (one whose parents have not all succeeded) is unfinished.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_idx
    ON skipq.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('waiting', 'queued', 'running');

-- A key enqueued with a window stays taken for that long after its job
-- finished. Its own table, because a finished row may be pruned, deleted
-- on success or archived: nothing here reads it.
CREATE TABLE IF NOT EXISTS skipq.unique_windows (
    unique_key text PRIMARY KEY,
    job_id     bigint NOT NULL,
    until      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS unique_windows_until_idx ON skipq.unique_windows (until);
