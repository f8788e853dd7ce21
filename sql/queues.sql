-- queues.sql: pausing and resuming queues (the table is
-- migrations/0008_queues.sql). Re-applied by every `skipq migrate`.
--
-- A pause is a row in skipq.queues. The NOTIFY on skipq_control that
-- each change sends is only a hint: any role may send one, so a worker
-- re-reads the table when it arrives (and after a reconnect, and at every
-- heartbeat) and obeys what the table says (test
-- queue_pause.forged_notify_pauses_nothing).

-- Pause queue `queue`, or only the jobs of kind `kind` in it. Returns
-- whether anything changed (false: it was paused already). Running jobs
-- finish; enqueueing goes on and the jobs wait.
CREATE OR REPLACE FUNCTION skipq.queue_pause(queue text, kind text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    changed boolean;
BEGIN
    IF queue IS NULL OR octet_length(queue) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'invalid queue name "%": 1 to 200 bytes', queue
            USING ERRCODE = '22023';
    END IF;
    IF kind IS NOT NULL AND octet_length(kind) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'invalid kind "%": 1 to 200 bytes', kind USING ERRCODE = '22023';
    END IF;
    INSERT INTO skipq.queues AS q (queue) VALUES (queue_pause.queue)
        ON CONFLICT ON CONSTRAINT queues_pkey DO NOTHING;
    UPDATE skipq.queues q
       SET paused = q.paused OR queue_pause.kind IS NULL,
           paused_kinds = CASE WHEN queue_pause.kind IS NULL
                                 OR queue_pause.kind = ANY (q.paused_kinds)
                               THEN q.paused_kinds
                               ELSE q.paused_kinds || queue_pause.kind END,
           paused_at = now(), paused_by = session_user, updated_at = now()
     WHERE q.queue = queue_pause.queue
       AND CASE WHEN queue_pause.kind IS NULL THEN NOT q.paused
                ELSE NOT (queue_pause.kind = ANY (q.paused_kinds)) END;
    changed := FOUND;
    IF changed THEN
        PERFORM pg_notify('skipq_control', format('pause %s', queue_pause.queue));
    END IF;
    RETURN changed;
END
$$;

-- Resume queue `queue`: without `kind`, the whole queue, its paused kinds
-- too; with `kind`, that kind only (a pause of the whole queue stays).
-- Returns whether anything changed.
CREATE OR REPLACE FUNCTION skipq.queue_resume(queue text, kind text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    changed boolean;
BEGIN
    UPDATE skipq.queues q
       SET paused = q.paused AND queue_resume.kind IS NOT NULL,
           paused_kinds = CASE WHEN queue_resume.kind IS NULL THEN '{}'::text[]
                               ELSE array_remove(q.paused_kinds, queue_resume.kind) END,
           updated_at = now()
     WHERE q.queue = queue_resume.queue
       AND CASE WHEN queue_resume.kind IS NULL
                THEN q.paused OR cardinality(q.paused_kinds) > 0
                ELSE queue_resume.kind = ANY (q.paused_kinds) END;
    changed := FOUND;
    IF changed THEN
        PERFORM pg_notify('skipq_control', format('resume %s', queue_resume.queue));
    END IF;
    RETURN changed;
END
$$;

REVOKE EXECUTE ON FUNCTION skipq.queue_pause(text, text), skipq.queue_resume(text, text)
    FROM PUBLIC;

-- Every queue that has jobs or a row in skipq.queues: whether it is paused,
-- its paused kinds, its jobs by status and its limits (`skipq queue ls`). Columns are
-- only ever added at the end.
CREATE OR REPLACE VIEW skipq.queue_states AS
WITH counts AS (
    SELECT j.queue,
           count(*) FILTER (WHERE j.status = 'queued' AND j.run_at <= now()) AS runnable,
           count(*) FILTER (WHERE j.status = 'queued' AND j.run_at > now())  AS scheduled,
           count(*) FILTER (WHERE j.status::text = 'waiting') AS waiting,
           count(*) FILTER (WHERE j.status = 'running')   AS running,
           count(*) FILTER (WHERE j.status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE j.status = 'failed')    AS failed,
           count(*) FILTER (WHERE j.status = 'cancelled') AS cancelled
      FROM skipq.jobs j GROUP BY j.queue)
SELECT coalesce(q.queue, c.queue) AS queue,
       coalesce(q.paused, false) AS paused,
       coalesce(q.paused_kinds, '{}'::text[]) AS paused_kinds,
       q.paused_at, q.paused_by,
       coalesce(c.runnable, 0) AS runnable,
       coalesce(c.scheduled, 0) AS scheduled,
       coalesce(c.waiting, 0) AS waiting,
       coalesce(c.running, 0) AS running,
       coalesce(c.succeeded, 0) AS succeeded,
       coalesce(c.failed, 0) AS failed,
       coalesce(c.cancelled, 0) AS cancelled,
       q.max_running,
       q.key_max_running AS max_running_per_key,
       q.rate_limit,
       q.rate_interval,
       q.age_after,
       CASE WHEN q.rate_limit IS NOT NULL THEN q.rate_by END AS rate_by
  FROM skipq.queues q FULL JOIN counts c ON c.queue = q.queue;
