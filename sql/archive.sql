-- archive.sql: moving finished jobs from skipq.jobs to skipq.jobs_done
-- (migrations/0010_archive.sql) and dropping the archive's old
-- partitions. Re-applied by every `skipq migrate`.
--
-- A worker with archive_after set calls skipq.archive() in its retention
-- turn, one batch per transaction, then skipq.archive_drop() for each
-- partition older than retention (src/worker_maint.c). Every DDL here
-- waits for a table lock at most lock_timeout (1 s): a reader that holds
-- the archive for longer makes the turn fail, and the next turn tries
-- again (test archive.drop_waits_a_bounded_time). Moving, making and
-- dropping partitions each take the list, skipq.jobs_done_partitions, in
-- SHARE ROW EXCLUSIVE first, and so run one at a time, in one lock order.

-- The partition of skipq.jobs_done that holds updated_at t, made when
-- missing: [t rounded down to width from the epoch, + width), cut short
-- where partitions made with another width begin or end, so that none
-- overlap when the width changes. It is made as a table and then
-- attached, which takes SHARE UPDATE EXCLUSIVE on skipq.jobs_done (CREATE
-- TABLE ... PARTITION OF would take ACCESS EXCLUSIVE and stop its readers).
-- Two callers at once are serialised by the lock on the list.
CREATE OR REPLACE FUNCTION skipq.archive_partition_for(t timestamptz, width interval)
RETURNS text LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET timezone = 'UTC'
SET datestyle = 'ISO, YMD'
SET lock_timeout = '1s' AS $$
DECLARE
    w  float8 := extract(epoch FROM width);
    lo timestamptz;
    hi timestamptz;
    part text;
BEGIN
    SELECT q.name INTO part FROM skipq.jobs_done_partitions q WHERE q.lo <= t AND t < q.hi;
    IF FOUND THEN
        RETURN part;
    END IF;
    LOCK TABLE skipq.jobs_done_partitions IN SHARE ROW EXCLUSIVE MODE;
    SELECT q.name INTO part FROM skipq.jobs_done_partitions q WHERE q.lo <= t AND t < q.hi;
    IF FOUND THEN
        RETURN part;
    END IF;
    lo := to_timestamp(floor(extract(epoch FROM t) / w) * w);
    hi := lo + width;
    lo := greatest(lo, (SELECT max(q.hi) FROM skipq.jobs_done_partitions q WHERE q.hi <= t));
    hi := least(hi, (SELECT min(q.lo) FROM skipq.jobs_done_partitions q WHERE q.lo > t));
    part := 'jobs_done_' || to_char(lo, 'YYYYMMDD"t"HH24MISS');
    EXECUTE format('CREATE TABLE skipq.%I (LIKE skipq.jobs_done)', part);
    EXECUTE format('ALTER TABLE skipq.jobs_done ATTACH PARTITION skipq.%I'
                   ' FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
    INSERT INTO skipq.jobs_done_partitions (name, lo, hi) VALUES (part, lo, hi);
    RETURN part;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.archive_partition_for(timestamptz, interval) FROM PUBLIC;

-- archive: move one batch of succeeded and cancelled rows not updated
-- for older_than into skipq.jobs_done, making the partitions they need;
-- returns how many moved. Call it in a loop, one transaction per batch.
-- The rows are chosen as skipq.prune() chooses them (by jobs_finished_idx,
-- locked with SKIP LOCKED, never a parent whose child still waits) and
-- moved by one DELETE ... RETURNING into an INSERT, so a row is in exactly
-- one of the two tables at every moment (test
-- archive.moves_finished_rows_as_they_are). At most four new
-- partitions a call, and only the rows they cover move: a backlog of
-- sparse old rows takes several calls, never thousands of tables in one
-- transaction. SECURITY DEFINER, like prune: the worker's role has no
-- DELETE on skipq.jobs and cannot create tables. width is taken in whole
-- seconds, so that partitions are named by their start apart.
CREATE OR REPLACE FUNCTION skipq.archive(
    older_than interval,
    width      interval DEFAULT '1 day',
    batch      int DEFAULT 5000)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
-- enable_seqscan = off prices the scan of the (small) partition list in
-- the billions, which would have every batch JIT-compiled: about 75 ms
-- of a 110 ms batch of 5,000 rows
SET jit = off
SET lock_timeout = '1s' AS $$
DECLARE
    ids   tid[];
    times timestamptz[];
    t     timestamptz;
    n     bigint;
    made  int := 0;
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'older_than must not be negative, not %', older_than
            USING ERRCODE = '22023';
    END IF;
    IF width IS NULL OR width < interval '1 minute' THEN
        RAISE EXCEPTION 'the archive''s partitions must be at least 1 minute wide, not %', width
            USING ERRCODE = '22023';
    END IF;
    IF batch IS NULL OR batch < 1 OR batch > 50000 THEN
        RAISE EXCEPTION 'batch must be from 1 to 50000, not %', batch USING ERRCODE = '22023';
    END IF;
    width := date_trunc('second', width);
    LOCK TABLE skipq.jobs_done_partitions IN SHARE ROW EXCLUSIVE MODE;
    SELECT array_agg(c.ctid), array_agg(c.updated_at) INTO ids, times
    FROM (SELECT j.ctid, j.updated_at FROM skipq.jobs j
          WHERE j.status = ANY ('{succeeded,cancelled}'::skipq.job_status[])
            AND j.updated_at < now() - older_than
            AND (j.dependants IS NULL OR NOT EXISTS (
                    SELECT FROM skipq.job_dependencies d, skipq.jobs c
                    WHERE d.parent = j.id AND c.id = d.child
                      AND c.status = 'waiting'::skipq.job_status))
          LIMIT batch
          FOR UPDATE SKIP LOCKED) c;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    -- the partitions the batch needs, oldest first, one at a time
    WHILE made < 4 LOOP
        SELECT min(u) INTO t FROM unnest(times) u
        WHERE NOT EXISTS (SELECT FROM skipq.jobs_done_partitions q
                          WHERE q.lo <= u AND u < q.hi);
        EXIT WHEN t IS NULL;
        PERFORM skipq.archive_partition_for(t, width);
        made := made + 1;
    END LOOP;
    WITH m AS (DELETE FROM skipq.jobs j
               WHERE j.ctid = ANY (ids)
                 AND EXISTS (SELECT FROM skipq.jobs_done_partitions q
                             WHERE q.lo <= j.updated_at AND j.updated_at < q.hi)
               RETURNING j.*)
    INSERT INTO skipq.jobs_done SELECT * FROM m;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.archive(interval, interval, int) FROM PUBLIC;

-- archive_drop: drop the oldest partition of skipq.jobs_done that ended
-- older_than ago or earlier; returns its name, NULL when there is none.
-- One partition per call (per transaction): DROP takes ACCESS EXCLUSIVE
-- on skipq.jobs_done for an instant, and a reader holding it past
-- lock_timeout fails this call alone. A partition dropped by hand is
-- taken off the list.
CREATE OR REPLACE FUNCTION skipq.archive_drop(older_than interval)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '1s' AS $$
DECLARE
    part text;
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'older_than must not be negative, not %', older_than
            USING ERRCODE = '22023';
    END IF;
    LOCK TABLE skipq.jobs_done_partitions IN SHARE ROW EXCLUSIVE MODE;
    SELECT q.name INTO part FROM skipq.jobs_done_partitions q
    WHERE q.hi <= now() - older_than
    ORDER BY q.lo LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF to_regclass(format('skipq.%I', part)) IS NOT NULL THEN
        EXECUTE format('DROP TABLE skipq.%I', part);
    END IF;
    DELETE FROM skipq.jobs_done_partitions q WHERE q.name = part;
    RETURN part;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.archive_drop(interval) FROM PUBLIC;

-- Every job, live or archived, for looking one up by id: `skipq jobs show`
-- and GET /api/jobs/ID read it. archived is first so that a column added
-- to both tables later comes at the end, as CREATE OR REPLACE VIEW needs.
-- Not for listing with filters: a filter no archived row matches would
-- read the whole archive (`skipq jobs ls --archived` reads it on purpose).
CREATE OR REPLACE VIEW skipq.all_jobs AS
SELECT false AS archived, j.* FROM skipq.jobs j
UNION ALL
SELECT true AS archived, d.* FROM skipq.jobs_done d;
