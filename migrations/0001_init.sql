-- 0001_init: the jobs table, its indexes and the workers registry.
--
-- Released migrations are never edited; a change is a new numbered file.
-- Safe to re-run (IF NOT EXISTS), and applied by `skipq migrate` inside one
-- transaction under the migration advisory lock.

CREATE SCHEMA IF NOT EXISTS skipq;

CREATE TABLE IF NOT EXISTS skipq.schema_migrations (
    version    int         PRIMARY KEY,
    name       text        NOT NULL,
    -- true when binaries that do not know this migration may keep running
    -- against it (they warn instead of refusing to start)
    compatible boolean     NOT NULL DEFAULT false,
    applied_at timestamptz NOT NULL DEFAULT now()
);

DO $$
BEGIN
    CREATE TYPE skipq.job_status AS ENUM
        ('queued', 'running', 'succeeded', 'failed', 'cancelled');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

DO $$
BEGIN
    CREATE TYPE skipq.backoff_strategy AS ENUM ('fixed', 'linear', 'exponential');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS skipq.jobs (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Names are stored verbatim; the cap keeps them far below NOTIFY's 8000
    -- byte payload limit and makes a 10,000-character name a clear error.
    queue               text NOT NULL DEFAULT 'default'
                        CHECK (octet_length(queue) BETWEEN 1 AND 200),
    kind                text NOT NULL
                        CHECK (octet_length(kind) BETWEEN 1 AND 200),
    priority            smallint NOT NULL DEFAULT 0,
    status              skipq.job_status NOT NULL DEFAULT 'queued',
    payload             jsonb NOT NULL DEFAULT '{}'
                        CHECK (jsonb_typeof(payload) = 'object')
                        -- a hard ceiling for every producer; the configurable,
                        -- lower limit is checked by the C API and the CLI
                        CHECK (pg_column_size(payload) <= 16777216),
    result              jsonb,
    -- handlers started for this job, less those a graceful shutdown or a
    -- snooze handed back
    attempts            int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- NULL: the worker's configured default (SQL cannot read the YAML)
    max_attempts        int CHECK (max_attempts > 0),
    backoff_strategy    skipq.backoff_strategy,
    backoff_base        interval,
    backoff_max         interval,
    timeout             interval,
    run_at              timestamptz NOT NULL DEFAULT now(),
    -- Lock token: bumped at every claim and never decreased, so a completion
    -- from an earlier claim (a worker presumed dead that comes back) can
    -- never match, even when attempts was handed back in between.
    claims              int NOT NULL DEFAULT 0,
    locked_by           bigint,
    started_at          timestamptz,
    finished_at         timestamptz,
    cancel_requested_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    created_by          text NOT NULL DEFAULT current_user,
    last_error          text,
    errors              jsonb NOT NULL DEFAULT '[]'
) WITH (fillfactor = 90,
        autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_analyze_scale_factor = 0.02,
        autovacuum_vacuum_insert_scale_factor = 0.05);

-- The claim path: one (queue, priority band) range scanned in claim order.
CREATE INDEX IF NOT EXISTS jobs_runnable_idx
    ON skipq.jobs (queue, priority DESC, run_at, id)
    WHERE status = 'queued';

-- Rescue and reconciliation look up running rows by holder.
CREATE INDEX IF NOT EXISTS jobs_running_idx
    ON skipq.jobs (locked_by)
    WHERE status = 'running';

-- Recovery and pruning of finished rows by age.
CREATE INDEX IF NOT EXISTS jobs_finished_idx
    ON skipq.jobs (status, updated_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled');

CREATE TABLE IF NOT EXISTS skipq.workers (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host         text NOT NULL,
    pid          int NOT NULL,
    queues       text[] NOT NULL,
    priorities   text NOT NULL,
    concurrency  int NOT NULL,
    version      text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
