-- roles.sql: least-privilege roles for skipq (see docs/security.md).
--
--   skipq_producer  enqueue (skipq.enqueue, INSERT/COPY of the job columns a
--                   producer may set) and read jobs and the views; never
--                   UPDATE or DELETE
--   skipq_worker    what `skipq worker` runs: claim, complete, hand back,
--                   heartbeat, rescue, and retention through skipq.prune
--   skipq_admin     owns the schema: migrate, recover, prune, retry, cancel
--
-- NOT applied by a plain `skipq migrate`: creating roles needs CREATEROLE,
-- which many application users lack, and roles are cluster-wide. Apply it
-- with `skipq migrate --roles` (or `psql -v ON_ERROR_STOP=1 -f sql/roles.sql`
-- after `skipq migrate`), as a superuser or as the schema owner with
-- CREATEROLE; again after every migrate that adds objects. Re-appliable:
-- every statement is idempotent. The roles are NOLOGIN groups: grant them to
-- your login roles (GRANT skipq_worker TO app_worker).

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['skipq_producer', 'skipq_worker', 'skipq_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- created by a concurrent run (roles are cluster-wide)
            END;
        END IF;
    END LOOP;
    -- Whoever applies this keeps the right to migrate after ownership moves.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'skipq_admin', 'USAGE') THEN
        EXECUTE format('GRANT skipq_admin TO %I', current_user);
    END IF;
END $$;

-- skipq_admin owns the schema and everything in it, so migrate (CREATE OR
-- REPLACE needs ownership), recover and prune work for its members, and the
-- SECURITY DEFINER skipq.prune runs as skipq_admin rather than as whoever
-- ran the first migrate (often a superuser). Names come from the catalog,
-- quoted with %I.
DO $$
DECLARE
    o record;
BEGIN
    EXECUTE 'ALTER SCHEMA skipq OWNER TO skipq_admin';
    FOR o IN
        SELECT c.relname, c.relkind FROM pg_class c
        WHERE c.relnamespace = 'skipq'::regnamespace
          AND c.relkind IN ('r', 'v', 'm', 'p')
    LOOP
        EXECUTE format('ALTER %s skipq.%I OWNER TO skipq_admin',
                       CASE o.relkind WHEN 'v' THEN 'VIEW'
                                      WHEN 'm' THEN 'MATERIALIZED VIEW'
                                      ELSE 'TABLE' END, o.relname);
    END LOOP;
    FOR o IN
        SELECT p.oid::regprocedure AS sig FROM pg_proc p
        WHERE p.pronamespace = 'skipq'::regnamespace
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO skipq_admin', o.sig);
    END LOOP;
    FOR o IN
        SELECT t.typname FROM pg_type t
        WHERE t.typnamespace = 'skipq'::regnamespace AND t.typtype IN ('e', 'd', 'c')
          AND t.typrelid = 0
    LOOP
        EXECUTE format('ALTER TYPE skipq.%I OWNER TO skipq_admin', o.typname);
    END LOOP;
END $$;

GRANT USAGE ON SCHEMA skipq TO skipq_producer, skipq_worker;
-- Every skipq command checks the schema version when it connects.
GRANT SELECT ON skipq.schema_migrations TO skipq_producer, skipq_worker;

-- ---- producer ------------------------------------------------------------
-- Only the columns a producer chooses: status, attempts, locked_by,
-- created_by (current_user by default) and the rest stay the system's.
-- skipq.enqueue() and the CLI's COPY both run with these rights; the
-- statement-level NOTIFY trigger needs no grant.
GRANT INSERT (kind, payload, queue, priority, run_at, max_attempts,
              backoff_strategy, backoff_base, backoff_max, timeout,
              unique_key, unique_window, concurrency_key, meta, tags)
    ON skipq.jobs TO skipq_producer;
GRANT SELECT ON skipq.unique_windows TO skipq_producer, skipq_worker;
GRANT EXECUTE ON FUNCTION skipq.unique_update(text, text, jsonb, timestamptz, smallint),
                          skipq.unique_holder(text)
    TO skipq_producer;
GRANT SELECT ON skipq.jobs, skipq.queue_stats, skipq.failed_jobs,
                skipq.stale_jobs, skipq.active_workers TO skipq_producer;
-- depends_on and batch (sql/deps.sql): the child is linked, and made to
-- wait, by functions that run as the schema's owner
GRANT EXECUTE ON FUNCTION skipq.deps_attach(bigint, bigint[], text, bigint),
                          skipq.batch_create(text, jsonb, text, anycompatible),
                          skipq.batch_seal(bigint)
    TO skipq_producer;
GRANT SELECT ON skipq.batches, skipq.job_dependencies, skipq.job_waits
    TO skipq_producer, skipq_worker;

-- ---- worker --------------------------------------------------------------
-- Read the jobs; change them only through the functions of src/worker.c
-- (skipq.claim, claim_after, complete, complete_delete, hand_back,
-- reconcile) and skipq.rescue(), all SECURITY DEFINER: a worker claims
-- queued jobs and finishes only its own claims, checked by its id, its
-- secret and the claim's token, so it cannot set the state of another
-- worker's job, re-queue or cancel jobs. No DELETE on jobs: retention goes
-- through skipq.prune(), which deletes succeeded and cancelled rows only.
GRANT SELECT ON skipq.jobs, skipq.queue_stats, skipq.failed_jobs,
                skipq.stale_jobs, skipq.active_workers TO skipq_worker;
-- (earlier versions granted UPDATE of the state columns)
REVOKE UPDATE ON skipq.jobs FROM skipq_worker;
GRANT EXECUTE ON FUNCTION
    skipq.claim(text, int2, int2, text[], int4, int8, uuid),
    skipq.claim_after(text, int2, int2, text[], int4, int8, int2, text, int8, uuid),
    skipq.complete(int8[], int8, int4[], text[], text[], text[], int8[], int4[], uuid),
    skipq.complete_delete(int8[], int8, int4[], text[], text[], text[], int8[], int4[], uuid),
    skipq.hand_back(int8[], int4[], int8, uuid),
    skipq.reconcile(int8, int8[], int4[], uuid),
    skipq.rescue(interval, bigint, int, int, boolean, bigint[], text, text, text, bigint, text)
    TO skipq_worker;
-- Its own row in skipq.workers only through the functions that check the
-- worker's secret (sql/functions.sql); the secret column is not readable.
REVOKE ALL ON skipq.workers FROM skipq_worker;
GRANT SELECT (id, host, pid, queues, priorities, concurrency, version, started_at,
              heartbeat_at, heartbeat_interval, lease, liveness_lock)
    ON skipq.workers TO skipq_worker;
GRANT EXECUTE ON FUNCTION
    skipq.worker_register(text, int, text[], text, int, text, interval, interval, bigint, uuid),
    skipq.worker_beat(bigint, uuid), skipq.worker_liveness(bigint, uuid),
    skipq.worker_unregister(bigint, uuid), skipq.forget_workers(interval, bigint, text, int)
    TO skipq_worker;
-- the rescuer's turn: a row it locks FOR UPDATE SKIP LOCKED
GRANT SELECT, UPDATE ON skipq.maintenance TO skipq_worker;
GRANT SELECT ON skipq.maintenance TO skipq_producer;
GRANT EXECUTE ON FUNCTION skipq.prune(interval, skipq.job_status[], int)
    TO skipq_worker;
-- the archive (sql/archive.sql): read by everyone who reads jobs; a
-- worker moves finished rows into it and drops its old partitions only
-- through the two functions, SECURITY DEFINER
GRANT SELECT ON skipq.jobs_done, skipq.jobs_done_partitions, skipq.all_jobs
    TO skipq_producer, skipq_worker;
GRANT EXECUTE ON FUNCTION skipq.archive(interval, interval, int),
    skipq.archive_drop(interval) TO skipq_worker;

-- ---- schedules -----------------------------------------------------------
-- Only skipq_admin (the owner) defines, pauses and removes schedules;
-- producers and workers read them. A worker enqueues due slots through
-- skipq.schedule_tick() and writes its config's schedules through
-- skipq.schedule_sync(), both SECURITY DEFINER; the tick's turn is the row
-- 'schedule' of skipq.maintenance (UPDATE granted above).
GRANT SELECT ON skipq.schedules TO skipq_producer, skipq_worker;
GRANT EXECUTE ON FUNCTION skipq.schedule_tick(),
    skipq.schedule_sync(text[], text[], text[], text[], jsonb[], text[], smallint[], text[])
    TO skipq_worker;
-- handlers' progress, on the worker's own claims only (sql/outcomes.sql)
GRANT EXECUTE ON FUNCTION skipq.job_progress(int8[], int4[], int4[], text[], int8, uuid)
    TO skipq_worker;
GRANT SELECT ON skipq.running_jobs TO skipq_producer, skipq_worker;

-- ---- queues --------------------------------------------------------------
-- Only skipq_admin pauses and resumes (skipq.queue_pause/queue_resume);
-- workers read the table to obey it, producers to see it.
GRANT SELECT ON skipq.queues, skipq.queue_states, skipq.rate_windows
    TO skipq_producer, skipq_worker;
-- Only skipq_admin sets limits (skipq.queue_set); a worker claims from a
-- limited queue through skipq.claim_controlled (sql/limits.sql), SECURITY
-- DEFINER, and asks when its rate window ends.
GRANT EXECUTE ON FUNCTION
    skipq.claim_controlled(text, int2, int2, text[], int4, int8, uuid),
    skipq.rate_wait_ms(text[])
    TO skipq_worker;
