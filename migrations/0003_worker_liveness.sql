-- 0003_worker_liveness: a worker declares how it is to be judged, and the
-- rescuer's turn is a row only skipq's own roles can lock.
--
-- skipq: compatible (binaries that do not know these columns register
-- without them, and are judged by the caller's lease as before; their
-- rescuer still takes its advisory lock, and a rescue run twice at once
-- is safe: rows are taken with SKIP LOCKED and re-checked)
--
-- heartbeat_interval and lease: the worker's own settings. Whoever asks
-- whether the worker is gone (another worker's rescuer, `skipq recover
-- --status running`) compares its heartbeat with this lease, never with
-- the asker's configuration, which may be shorter.
-- liveness_lock: whether the worker holds its session advisory lock; a
-- worker that could not take it (another session holds the key) is judged
-- by its heartbeat and lease alone.
-- secret: a random token only the worker's own session knows (no role
-- but the owner may read the column); the functions that change a worker's
-- row check it, so a worker role cannot beat, re-register or unregister
-- another worker.
ALTER TABLE skipq.workers
    ADD COLUMN IF NOT EXISTS heartbeat_interval interval,
    ADD COLUMN IF NOT EXISTS lease interval,
    ADD COLUMN IF NOT EXISTS liveness_lock boolean NOT NULL DEFAULT true,
    ADD COLUMN IF NOT EXISTS secret uuid;

-- One row per maintenance task that must run on one worker at a time.
-- A worker takes its turn by locking the row (FOR UPDATE SKIP LOCKED),
-- which needs UPDATE on this table: a role that may merely connect (an
-- advisory lock is open to any role) cannot turn the task off for
-- everyone. last_run_at shows whether the task still runs.
CREATE TABLE IF NOT EXISTS skipq.maintenance (
    task        text PRIMARY KEY,
    last_run_at timestamptz,
    last_run_by bigint
);
INSERT INTO skipq.maintenance (task) VALUES ('rescue') ON CONFLICT DO NOTHING;
