-- 0010_archive: where finished jobs go when a worker has archive_after
-- set: skipq.jobs_done, partitioned by updated_at, so that retention
-- drops a whole partition instead of deleting its rows one by one, and
-- skipq.jobs (the claim path's table) holds only recent rows.
--
-- skipq: compatible (older binaries never read or write the new tables)
--
-- A row moves as it is: jobs_done has the columns of skipq.jobs, in the
-- same order, so a migration that adds a column to skipq.jobs adds it to
-- skipq.jobs_done too (test archive.columns_match_the_jobs_table). No
-- primary key (one would have to include updated_at): a row is moved by a
-- DELETE ... RETURNING into an INSERT, once.
CREATE TABLE IF NOT EXISTS skipq.jobs_done (LIKE skipq.jobs)
    PARTITION BY RANGE (updated_at);

-- `skipq jobs show ID` and the API's GET /api/jobs/ID look a job up by id.
CREATE INDEX IF NOT EXISTS jobs_done_id_idx ON skipq.jobs_done (id);

-- The partitions, with their bounds: [lo, hi) of updated_at. Written by
-- skipq.archive_partition_for() and skipq.archive_drop() only
-- (sql/archive.sql).
CREATE TABLE IF NOT EXISTS skipq.jobs_done_partitions (
    name text PRIMARY KEY,
    lo   timestamptz NOT NULL,
    hi   timestamptz NOT NULL CHECK (hi > lo)
);
