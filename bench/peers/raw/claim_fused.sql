-- pgbench script: claim and finish :B rows in one DELETE ... RETURNING:
-- one statement and one commit per batch, at most once (a crash loses the
-- batch). A floor on the work per job, not a queue.
DELETE FROM jobs
WHERE id IN (SELECT id FROM jobs
             WHERE queue = 'default' AND status = 'queued' AND run_at <= now()
             ORDER BY priority, run_at, id LIMIT :B FOR UPDATE SKIP LOCKED)
RETURNING id, payload;
