-- outcomes.sql: what handlers report while they run (progress), the view
-- of running jobs with it, and deleting single jobs. Re-applied by every
-- `skipq migrate` after functions.sql, so everything is CREATE OR REPLACE.
-- Same rules as functions.sql: a fixed search_path, names by schema.

-- job_progress: the worker writes its held jobs' last progress reports
-- (src/worker_progress.c), each only while the row is still running
-- under this worker and this claim (the completion's check), so a report
-- that arrives after a rescue or a cancel changes nothing. SECURITY
-- DEFINER: skipq_worker has no UPDATE on skipq.jobs; the caller proves it
-- is the worker it names by its secret. A percent outside 0..100 is
-- stored as none, a message is cut to 200 characters. updated_at is left
-- alone: an index covers it, and a progress write that touched it could
-- not be a HOT update. Returns the ids written. Test
-- worker_role_writes_progress_of_its_own_claims_only.
CREATE OR REPLACE FUNCTION skipq.job_progress(
    p_ids      int8[],
    p_claims   int4[],
    p_percents int4[],
    p_messages text[],
    p_worker   int8,
    p_secret   uuid)
RETURNS SETOF int8 LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM skipq.workers k
                   WHERE k.id OPERATOR(pg_catalog.=) p_worker
                     AND k.secret OPERATOR(pg_catalog.=) p_secret) THEN
        RAISE EXCEPTION 'worker % is not registered with this secret', p_worker
            USING ERRCODE = '42501';
    END IF;
    RETURN QUERY
    UPDATE skipq.jobs j
    SET progress = pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
            'percent', CASE WHEN r.percent BETWEEN 0 AND 100 THEN r.percent END,
            'message', pg_catalog.left(r.message, 200),
            'at', pg_catalog.now()))
    FROM unnest(p_ids, p_claims, p_percents, p_messages)
         AS r(id, claims, percent, message)
    WHERE j.id OPERATOR(pg_catalog.=) r.id
      AND (j.claims, j.locked_by, j.status::text) IS NOT DISTINCT FROM
          (r.claims, p_worker, 'running')
    RETURNING j.id;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.job_progress(int8[], int4[], int4[], text[], int8, uuid)
    FROM PUBLIC;

-- delete_jobs: remove jobs for good (the operator's `skipq jobs delete`).
-- A running job is never deleted: its handler would go on, and its
-- worker's completion would find nothing; cancel it first. Rows are locked
-- and their status re-checked, so a job a worker claims meanwhile is left.
-- Returns each id found with its status and whether it was deleted.
CREATE OR REPLACE FUNCTION skipq.delete_jobs(ids bigint[])
RETURNS TABLE (id bigint, status skipq.job_status, deleted boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF ids IS NULL THEN
        RAISE EXCEPTION 'ids must not be null' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH l AS MATERIALIZED (
        SELECT j.id, j.status FROM skipq.jobs j
        WHERE j.id OPERATOR(pg_catalog.=) ANY (delete_jobs.ids)
        ORDER BY j.id
        FOR UPDATE),
    d AS (
        DELETE FROM skipq.jobs j USING l
        WHERE j.id OPERATOR(pg_catalog.=) l.id
          AND l.status OPERATOR(pg_catalog.<>) 'running'::skipq.job_status
        RETURNING j.id)
    SELECT l.id, l.status, EXISTS (SELECT 1 FROM d WHERE d.id OPERATOR(pg_catalog.=) l.id)
    FROM l ORDER BY l.id;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.delete_jobs(bigint[]) FROM PUBLIC;

-- Running jobs with their handler's last progress report of this attempt
-- (a report left by an earlier attempt is not shown). progress_at is when
-- the worker wrote the report (at most about a second after the handler
-- made it).
CREATE OR REPLACE VIEW skipq.running_jobs AS
SELECT j.id, j.queue, j.kind, j.priority, j.attempts, j.max_attempts, j.locked_by,
       j.started_at, now() - j.started_at AS running_for,
       (p.progress ->> 'percent')::int AS progress_percent,
       p.progress ->> 'message' AS progress_message,
       (p.progress ->> 'at')::timestamptz AS progress_at,
       j.cancel_requested_at, j.meta, j.tags
FROM skipq.jobs j
CROSS JOIN LATERAL (
    SELECT CASE WHEN (j.progress ->> 'at')::timestamptz >= j.started_at
                THEN j.progress END AS progress) p
WHERE j.status = 'running';
