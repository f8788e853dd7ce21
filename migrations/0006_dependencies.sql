-- 0006_dependencies: jobs that wait for other jobs, and batches of jobs
-- with a completion job.
--
-- skipq: compatible (older binaries never claim a 'waiting' row and never
-- read the new tables; releases and batch counts are done by triggers in
-- SQL, whichever binary completes a job)
--
-- A finished row may be pruned, deleted on success or archived: nothing
-- here reads a parent's or a member's row after it finished. A parent's
-- result is copied into its link when it succeeds, and batch counts live
-- in the batch's row.

ALTER TABLE skipq.jobs
    -- true once some job depends on this one: the condition of the
    -- dependency triggers, so a plain job's completion never calls them
    ADD COLUMN IF NOT EXISTS dependants boolean,
    -- true for a job enqueued with depends_on
    ADD COLUMN IF NOT EXISTS has_parents boolean,
    -- the batch this job is a member of (skipq.batches)
    ADD COLUMN IF NOT EXISTS batch_id bigint;

-- One row per (parent, child) link. parent_status is the parent's outcome
-- once it finished (NULL: not yet); result is its result, copied when it
-- succeeded, so the child gets it even when the parent's row is gone.
CREATE TABLE IF NOT EXISTS skipq.job_dependencies (
    parent        bigint NOT NULL,
    child         bigint NOT NULL,
    parent_status skipq.job_status,
    result        jsonb,
    PRIMARY KEY (parent, child)
);
CREATE INDEX IF NOT EXISTS job_dependencies_child_idx ON skipq.job_dependencies (child);

-- Per child: how many of its parents have not yet let it run (a parent
-- that has not succeeded; with on_parent_failure 'run', a failed or
-- cancelled parent lets it run too). Counted down under this row's lock,
-- so two parents finishing at once release the child exactly once.
-- cancelled_by: the parent whose failure cancelled the child, so that
-- recovering that parent brings the child back.
CREATE TABLE IF NOT EXISTS skipq.job_waits (
    child             bigint PRIMARY KEY,
    pending           int NOT NULL CHECK (pending >= 0),
    on_parent_failure text NOT NULL CHECK (on_parent_failure IN ('cancel', 'run')),
    cancelled_by      bigint
);
CREATE INDEX IF NOT EXISTS job_waits_cancelled_by_idx
    ON skipq.job_waits (cancelled_by) WHERE cancelled_by IS NOT NULL;

-- A batch: its members' counts, and the job enqueued once it is sealed and
-- every member has finished.
CREATE TABLE IF NOT EXISTS skipq.batches (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    on_complete_kind     text CHECK (octet_length(on_complete_kind) BETWEEN 1 AND 200),
    on_complete_payload  jsonb NOT NULL DEFAULT '{}'
                         CHECK (jsonb_typeof(on_complete_payload) = 'object'),
    on_complete_queue    text NOT NULL DEFAULT 'default'
                         CHECK (octet_length(on_complete_queue) BETWEEN 1 AND 200),
    on_complete_priority smallint NOT NULL DEFAULT 0,
    total                int NOT NULL DEFAULT 0,
    succeeded            int NOT NULL DEFAULT 0,
    failed               int NOT NULL DEFAULT 0,
    cancelled            int NOT NULL DEFAULT 0,
    sealed_at            timestamptz,
    finished_at          timestamptz,
    completion_job       bigint,
    created_at           timestamptz NOT NULL DEFAULT now(),
    created_by           text NOT NULL DEFAULT current_user
);
