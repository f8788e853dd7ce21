-- A bare job table for the raw SQL baselines: what a queue needs at least,
-- with one partial index matching the claim's ORDER BY.
CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    queue text NOT NULL DEFAULT 'default',
    priority smallint NOT NULL DEFAULT 0,
    status text NOT NULL DEFAULT 'queued',
    run_at timestamptz NOT NULL DEFAULT now(),
    payload jsonb NOT NULL DEFAULT '{}',
    attempts int NOT NULL DEFAULT 0,
    locked_at timestamptz,
    locked_by text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_queued ON jobs (queue, priority, run_at, id) WHERE status = 'queued';
