-- pgbench script: claim :B queued rows (FOR UPDATE SKIP LOCKED), then mark
-- them done in a second transaction: the two row updates and two commits a
-- job costs a queue that keeps its rows and survives a worker's crash.
WITH c AS (
    UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_at = now(), locked_by = 'raw'
    WHERE id IN (SELECT id FROM jobs
                 WHERE queue = 'default' AND status = 'queued' AND run_at <= now()
                 ORDER BY priority, run_at, id LIMIT :B FOR UPDATE SKIP LOCKED)
    RETURNING id)
SELECT coalesce(string_agg(id::text, ','), '0') AS ids FROM c \gset
UPDATE jobs SET status = 'done', locked_at = NULL, updated_at = now() WHERE id IN (:ids);
