-- 0007_schedules: periodic jobs. A schedule enqueues one job per slot of
-- its cron expression; the workers' maintenance threads take turns at it
-- (skipq.schedule_tick in sql/schedules.sql).
--
-- skipq: compatible (older binaries never read the table and never tick;
-- schedules simply wait for a worker that does)
--
-- name        the schedule's name, as skipq.schedule() and the config give it
-- cron        a 5-field cron expression, @hourly-style name, or @every 30s
-- time_zone   the zone whose wall clock the cron fields are read in
-- missed      what the tick does with slots that passed while no worker
--             ticked or the schedule was paused: 'skip' or 'catch_up'
-- source      'sql' (skipq.schedule) or 'config' (a worker's schedules:)
-- next_slot   the next slot to enqueue; the tick's compare-and-set is on it
--             and on last_slot
-- last_slot   the latest slot dealt with (enqueued, or passed over as missed)
-- last_job_id the job of the latest slot enqueued
CREATE TABLE IF NOT EXISTS skipq.schedules (
    name        text PRIMARY KEY CHECK (octet_length(name) BETWEEN 1 AND 200),
    cron        text NOT NULL CHECK (octet_length(cron) BETWEEN 1 AND 200),
    time_zone   text NOT NULL DEFAULT 'UTC',
    kind        text NOT NULL CHECK (octet_length(kind) BETWEEN 1 AND 200),
    payload     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    queue       text NOT NULL DEFAULT 'default'
                CHECK (octet_length(queue) BETWEEN 1 AND 200),
    priority    smallint NOT NULL DEFAULT 0,
    missed      text NOT NULL DEFAULT 'skip' CHECK (missed IN ('skip', 'catch_up')),
    paused      boolean NOT NULL DEFAULT false,
    source      text NOT NULL DEFAULT 'sql' CHECK (source IN ('sql', 'config')),
    next_slot   timestamptz,
    last_slot   timestamptz,
    last_job_id bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- What the tick looks for first: is anything due? One probe of this index.
CREATE INDEX IF NOT EXISTS schedules_due_idx ON skipq.schedules (next_slot)
    WHERE NOT paused;

-- The tick's turn: a row locked FOR UPDATE SKIP LOCKED, which only roles
-- with UPDATE on skipq.maintenance can hold (never an advisory lock, which
-- any role that connects could take and keep).
INSERT INTO skipq.maintenance (task) VALUES ('schedule') ON CONFLICT DO NOTHING;
