-- functions.sql: skipq's SQL API. Re-applied by every `skipq migrate` after
-- the numbered migrations, so everything here is CREATE OR REPLACE.
--
-- Advisory lock keys, (class, object), are defined once, in
-- src/lock_keys.h: `skipq migrate` applies this file with each @NAME@
-- replaced by that number (cmake/embed_sql.cmake).
--   (@SKIPQ__LOCK_CLASS_WORKER@, worker id & 2^31-1) "worker alive"
--
-- Every function runs with search_path = pg_catalog, pg_temp, whoever calls
-- it: a function or operator another role created in a schema on the
-- caller's search_path (public, where up to PostgreSQL 14 every role may
-- create) would otherwise be what a name in the body means whenever it
-- matches the arguments better than pg_catalog's own (cardinality(bigint[])
-- beats cardinality(anyarray), = on two job_status beats anyenum's), and it
-- would run with the caller's rights: a worker's, an admin's, a superuser's.
-- Bodies name skipq's own objects by schema. The views, defaults and the
-- trigger's condition are bound when `skipq migrate` creates them, which it
-- does under the same search_path (docs/security.md, "search_path").

-- 'high' = 10, 'normal' = 0, 'low' = -10, or a number. Errors name the value.
CREATE OR REPLACE FUNCTION skipq.priority_value(p text)
RETURNS smallint LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    CASE lower(btrim(p))
        WHEN 'high' THEN RETURN 10;
        WHEN 'normal' THEN RETURN 0;
        WHEN 'low' THEN RETURN -10;
        ELSE
            IF p ~ '^\s*[-+]?[0-9]{1,5}\s*$'
               AND p::int BETWEEN -32768 AND 32767 THEN
                RETURN p::smallint;
            END IF;
            RAISE EXCEPTION 'unrecognized priority "%"', p
                USING ERRCODE = '22023',
                      HINT = 'use high, normal, low or a number from -32768 to 32767';
    END CASE;
END $$;

-- The band a priority name stands for (a number is a band of one):
-- high >= 10, normal -9..9, low <= -10, so no number is orphaned.
CREATE OR REPLACE FUNCTION skipq.priority_band(p text, OUT lo smallint, OUT hi smallint)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    CASE lower(btrim(p))
        WHEN 'high' THEN lo := 10; hi := 32767;
        WHEN 'normal' THEN lo := -9; hi := 9;
        WHEN 'low' THEN lo := -32768; hi := -10;
        ELSE lo := skipq.priority_value(p); hi := lo;
    END CASE;
END $$;

-- One NOTIFY per statement, not per row: a 10,000-row COPY or
-- INSERT ... SELECT wakes workers once per queue it touched. NOTIFY also
-- folds identical payloads within a transaction, so a loop of enqueue()
-- calls in one transaction sends one notification per queue too.
-- skipq.notify = 'after_commit' (set for one transaction by the C API's
-- skipq_enqueue) says the caller sends the NOTIFY itself once the insert
-- has committed: a notifying commit holds a database-wide lock through
-- its WAL flush, so notifying producers would commit one at a time.
-- The trigger's WHEN tests it, so such an insert does not call the
-- function at all (a measurable part of a single enqueue:
-- docs/performance.md, "Enqueue"). The function tests it too, for a
-- trigger created without the WHEN.
CREATE OR REPLACE FUNCTION skipq.notify_inserted()
RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    q text;
BEGIN
    IF current_setting('skipq.notify', true) = 'after_commit' THEN
        RETURN NULL;
    END IF;
    FOR q IN SELECT DISTINCT n.queue FROM new_jobs n LOOP
        PERFORM pg_notify('skipq', q);
    END LOOP;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER jobs_notify
    AFTER INSERT ON skipq.jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT
    WHEN (current_setting('skipq.notify', true) IS DISTINCT FROM 'after_commit')
    EXECUTE FUNCTION skipq.notify_inserted();

-- Is worker w gone? It never registered, or it stopped beating for longer
-- than its own declared lease (the lease argument stands in only for the
-- rows of workers too old to declare one), or it holds its liveness lock
-- and that lock is free (its connection is closed). The caller's lease
-- never judges a worker that declared its own: a caller with a shorter
-- lease would take a live worker's jobs (test
-- recover_running_keeps_a_slow_beating_workers_jobs). Never true for the
-- caller's own worker (self): a session can always re-take its own lock.
-- The key is the id's low 31 bits, as in src/internal.h
-- (SKIPQ__WORKER_LOCK_KEY): ids past 2^31 must not raise here.
CREATE OR REPLACE FUNCTION skipq.worker_gone(w bigint, lease interval, self bigint DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    IF w IS NULL THEN
        RETURN true;
    END IF;
    IF w OPERATOR(pg_catalog.=) self THEN
        RETURN false;
    END IF;
    SELECT k.heartbeat_at, k.lease, k.liveness_lock INTO r
    FROM skipq.workers k WHERE k.id OPERATOR(pg_catalog.=) w;
    IF NOT FOUND THEN
        RETURN true;
    END IF;
    IF coalesce(r.lease, lease) IS NOT NULL
       AND r.heartbeat_at OPERATOR(pg_catalog.<)
           (pg_catalog.now() OPERATOR(pg_catalog.-) coalesce(r.lease, lease)) THEN
        RETURN true;
    END IF;
    IF NOT r.liveness_lock THEN
        RETURN false;
    END IF;
    -- The xact lock is released at our commit; a worker that reconnects
    -- meanwhile finds its key taken, and tries again at its next beat.
    RETURN pg_catalog.pg_try_advisory_xact_lock(@SKIPQ__LOCK_CLASS_WORKER@,
        (w OPERATOR(pg_catalog.&) 2147483647)::int4);
END $$;

-- ---------------------------------------------------------------------------
-- A worker's own row. SECURITY DEFINER, so that skipq_worker needs no
-- INSERT, UPDATE or DELETE on skipq.workers (sql/roles.sql): each call
-- names the worker and its secret, which only the session that
-- registered it knows, and a call with another worker's id changes
-- nothing (test worker_role_cannot_touch_another_workers_row).
-- ---------------------------------------------------------------------------

-- Register a worker, or (worker_id and worker_secret given, after a
-- reconnect) register it again under the same id. liveness_lock starts
-- false: until skipq.worker_liveness() holds the lock, others judge the
-- worker by its heartbeat and lease.
CREATE OR REPLACE FUNCTION skipq.worker_register(
    host               text,
    pid                int,
    queues             text[],
    priorities         text,
    concurrency        int,
    version            text,
    heartbeat_interval interval,
    lease              interval,
    worker_id          bigint DEFAULT NULL,
    worker_secret      uuid DEFAULT NULL,
    OUT id bigint, OUT secret uuid)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF worker_register.worker_id IS NULL THEN
        INSERT INTO skipq.workers AS k (host, pid, queues, priorities, concurrency,
                                        version, heartbeat_interval, lease,
                                        liveness_lock, secret)
        VALUES (worker_register.host, worker_register.pid, worker_register.queues,
                worker_register.priorities, worker_register.concurrency,
                worker_register.version, worker_register.heartbeat_interval,
                worker_register.lease, false, pg_catalog.gen_random_uuid())
        RETURNING k.id, k.secret INTO worker_register.id, worker_register.secret;
        RETURN;
    END IF;
    INSERT INTO skipq.workers AS k (id, host, pid, queues, priorities, concurrency,
                                    version, heartbeat_interval, lease,
                                    liveness_lock, secret)
    OVERRIDING SYSTEM VALUE
    VALUES (worker_register.worker_id, worker_register.host, worker_register.pid,
            worker_register.queues, worker_register.priorities,
            worker_register.concurrency, worker_register.version,
            worker_register.heartbeat_interval, worker_register.lease, false,
            worker_register.worker_secret)
    ON CONFLICT ON CONSTRAINT workers_pkey DO UPDATE
        SET heartbeat_at = pg_catalog.now(), liveness_lock = false
        WHERE k.secret OPERATOR(pg_catalog.=) worker_register.worker_secret
    RETURNING k.id, k.secret INTO worker_register.id, worker_register.secret;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker % is registered by another session', worker_register.worker_id
            USING ERRCODE = '42501';
    END IF;
END $$;

-- Renew the worker's heartbeat. False: its row is gone (the rescuer
-- forgot it): register again.
CREATE OR REPLACE FUNCTION skipq.worker_beat(worker_id bigint, worker_secret uuid)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE skipq.workers k SET heartbeat_at = pg_catalog.now()
    WHERE k.id OPERATOR(pg_catalog.=) worker_beat.worker_id
      AND k.secret OPERATOR(pg_catalog.=) worker_beat.worker_secret;
    RETURN FOUND;
END $$;

-- Try (never wait) to take the worker's liveness lock on the calling
-- session, and record whether it is held. holders: the other backends
-- that hold the key, for the worker's log line.
CREATE OR REPLACE FUNCTION skipq.worker_liveness(worker_id bigint, worker_secret uuid,
                                                 OUT got boolean, OUT holders text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    key int4 := (worker_liveness.worker_id OPERATOR(pg_catalog.&) 2147483647)::int4;
BEGIN
    PERFORM FROM skipq.workers k
    WHERE k.id OPERATOR(pg_catalog.=) worker_liveness.worker_id
      AND k.secret OPERATOR(pg_catalog.=) worker_liveness.worker_secret;
    IF NOT FOUND THEN
        got := false;
        RETURN;
    END IF;
    got := pg_catalog.pg_try_advisory_lock(@SKIPQ__LOCK_CLASS_WORKER@, key);
    UPDATE skipq.workers k SET liveness_lock = got
    WHERE k.id OPERATOR(pg_catalog.=) worker_liveness.worker_id;
    SELECT pg_catalog.string_agg(l.pid::text, ',') INTO holders
    FROM pg_catalog.pg_locks l
    WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted
      AND l.classid OPERATOR(pg_catalog.=) @SKIPQ__LOCK_CLASS_WORKER@::oid
      AND l.objid OPERATOR(pg_catalog.=) key::oid
      AND l.objsubid OPERATOR(pg_catalog.=) 2
      AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid();
END $$;

-- A worker that stops removes its row.
CREATE OR REPLACE FUNCTION skipq.worker_unregister(worker_id bigint, worker_secret uuid)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM skipq.workers k
    WHERE k.id OPERATOR(pg_catalog.=) worker_unregister.worker_id
      AND k.secret OPERATOR(pg_catalog.=) worker_unregister.worker_secret;
    RETURN FOUND;
END $$;

-- Forget the rows of workers that are gone and hold no running job:
-- those silent for ten of their leases (lease stands in for rows that
-- declare none), or (at_host and at_pid given: the supervisor of a worker
-- process that died) those of that process. A live worker's row is never
-- removed. Returns how many.
CREATE OR REPLACE FUNCTION skipq.forget_workers(lease interval, self bigint DEFAULT NULL,
                                                at_host text DEFAULT NULL,
                                                at_pid int DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM skipq.workers w
    WHERE w.id IS DISTINCT FROM forget_workers.self
      AND (CASE WHEN forget_workers.at_pid IS NULL
                THEN w.heartbeat_at OPERATOR(pg_catalog.<)
                     (pg_catalog.now() OPERATOR(pg_catalog.-)
                      (10 OPERATOR(pg_catalog.*) coalesce(w.lease, forget_workers.lease)))
                ELSE w.host OPERATOR(pg_catalog.=) forget_workers.at_host
                     AND w.pid OPERATOR(pg_catalog.=) forget_workers.at_pid END)
      AND NOT EXISTS (SELECT 1 FROM skipq.jobs j
                      WHERE j.status OPERATOR(pg_catalog.=) 'running'::skipq.job_status
                        AND j.locked_by OPERATOR(pg_catalog.=) w.id)
      AND skipq.worker_gone(w.id, NULL, forget_workers.self);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

REVOKE EXECUTE ON FUNCTION skipq.worker_register(text, int, text[], text, int, text,
    interval, interval, bigint, uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION skipq.worker_beat(bigint, uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION skipq.worker_liveness(bigint, uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION skipq.worker_unregister(bigint, uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION skipq.forget_workers(interval, bigint, text, int) FROM PUBLIC;

-- release: the one way a job goes back to the queue. Every path that puts
-- jobs back calls it: a worker's shutdown hand-back and its reconcile after
-- a reconnect (skipq.hand_back, skipq.reconcile), the rescue of a lost
-- worker's jobs (skipq.rescue), and the operator's recover and retry.
-- The caller chooses the rows, and locks them when it must not wait; each
-- is re-checked to be in one of from_status, then:
--   refund: the attempt never ran (a claim handed back unstarted or
--       stopped by its own worker): attempts - 1, started_at cleared, and
--       the job keeps its place in line (run_at unchanged).
--   lost: the attempt ended with its worker; it counts, its error is
--       `reason` (else "worker N lost") in last_error and the history, and
--       a job whose attempts are spent becomes failed instead of queued.
--   otherwise the job is runnable now. A finished job (failed, cancelled,
--       succeeded) gets `note` in its history with when, from what and by
--       whom; a failed one starts its attempts over with reset_attempts, or
--       gets extra_attempts more.
-- A cancel requested of a job that is not running is dropped. One NOTIFY
-- per queue that got runnable jobs. Returns each row changed and where it
-- went. tests/integration/test_recover.c (release_*) covers every caller.
CREATE OR REPLACE FUNCTION skipq.release(
    ids                  bigint[],
    from_status          skipq.job_status[],
    refund               boolean DEFAULT false,
    lost                 boolean DEFAULT false,
    reason               text DEFAULT NULL,
    default_max_attempts int DEFAULT 5,
    reset_attempts       boolean DEFAULT false,
    extra_attempts       int DEFAULT NULL,
    note                 jsonb DEFAULT NULL)
RETURNS TABLE (id bigint, kind text, queue text, status skipq.job_status,
               was skipq.job_status)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY
    WITH o AS (
        SELECT j.id, j.status AS was,
               lost AND j.attempts >= coalesce(j.max_attempts, default_max_attempts) AS spent,
               coalesce(reason, format('worker %s lost', j.locked_by)) AS lost_error
        FROM skipq.jobs j
        WHERE j.id = ANY (ids) AND j.status = ANY (from_status)),
    u AS (
        UPDATE skipq.jobs j
        SET status = CASE WHEN o.spent THEN 'failed' ELSE 'queued' END::skipq.job_status,
            attempts = CASE WHEN refund THEN greatest(j.attempts - 1, 0)
                            WHEN o.was = 'failed' AND reset_attempts
                                 AND extra_attempts IS NULL THEN 0
                            ELSE j.attempts END,
            max_attempts = CASE WHEN o.was = 'failed' AND extra_attempts IS NOT NULL
                                THEN least(j.attempts::int8 + extra_attempts,
                                           2147483647)::int
                                ELSE j.max_attempts END,
            run_at = CASE WHEN refund THEN j.run_at ELSE now() END,
            started_at = CASE WHEN refund THEN NULL ELSE j.started_at END,
            finished_at = CASE WHEN o.spent THEN now() END,
            locked_by = NULL,
            cancel_requested_at = CASE WHEN o.was = 'running' THEN j.cancel_requested_at END,
            last_error = CASE WHEN lost THEN o.lost_error ELSE j.last_error END,
            errors = CASE
                WHEN lost THEN j.errors || jsonb_build_object(
                    'attempt', j.attempts, 'at', now(), 'worker', j.locked_by,
                    'error', o.lost_error)
                WHEN note IS NOT NULL AND o.was IN ('failed', 'cancelled', 'succeeded')
                THEN j.errors || (note || jsonb_build_object(
                    'at', now(), 'from', o.was, 'by', current_user))
                ELSE j.errors END,
            updated_at = now()
        FROM o
        WHERE j.id = o.id
        RETURNING j.id, j.kind, j.queue, j.status, o.was),
    n AS (
        SELECT pg_notify('skipq', q.queue)
        FROM (SELECT DISTINCT u.queue FROM u WHERE u.status = 'queued') q)
    SELECT u.id, u.kind, u.queue, u.status, u.was
    FROM u, (SELECT count(*) FROM n) c;
END $$;

REVOKE EXECUTE ON FUNCTION skipq.release(bigint[], skipq.job_status[], boolean, boolean,
    text, int, boolean, int, jsonb) FROM PUBLIC;

-- rescue: running jobs whose worker is gone go back to queued, runnable now.
-- The crashed try counts: when attempts are spent the job becomes failed
-- ("worker N lost") instead, so a job that kills its worker cannot loop.
-- Rows a live worker completes meanwhile are skipped (status re-checked
-- under the row lock), so nothing is both rescued and completed.
CREATE OR REPLACE FUNCTION skipq.rescue(
    lease                interval DEFAULT '30 seconds',
    self                 bigint DEFAULT NULL,
    default_max_attempts int DEFAULT 5,
    lim                  int DEFAULT 1000,
    dry_run              boolean DEFAULT false,
    only_ids             bigint[] DEFAULT NULL,
    only_queue           text DEFAULT NULL,
    only_kind            text DEFAULT NULL,
    only_priority        text DEFAULT NULL,
    only_worker          bigint DEFAULT NULL,
    reason               text DEFAULT NULL)
RETURNS TABLE (id bigint, kind text, status skipq.job_status)
-- SECURITY DEFINER: the workers' rescuer runs it, and skipq_worker has no
-- UPDATE on skipq.jobs (sql/roles.sql); it only ever takes the jobs of
-- workers that are gone, judged by their own lease.
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    band record;
    gone bigint[];
BEGIN
    SELECT * INTO band FROM skipq.priority_band(coalesce(only_priority, '0'));
    -- The holders of running rows, one descent of jobs_running_idx each
    -- (a loose index scan): DISTINCT over the running rows would read
    -- every entry, the dead ones of every job run since the last vacuum
    -- among them, on a busy worker's own connection.
    WITH RECURSIVE h(w) AS (
        (SELECT j.locked_by FROM skipq.jobs j WHERE j.status = 'running'
         ORDER BY j.locked_by LIMIT 1)
        UNION ALL
        SELECT (SELECT j.locked_by FROM skipq.jobs j
                WHERE j.status = 'running' AND j.locked_by > h.w
                ORDER BY j.locked_by LIMIT 1)
        FROM h WHERE h.w IS NOT NULL)
    SELECT coalesce(array_agg(h.w), '{}') INTO gone FROM h
    WHERE h.w IS NOT NULL
      AND (only_worker IS NULL OR h.w = only_worker)
      AND skipq.worker_gone(h.w, lease, self);
    -- Nothing held by a lost worker, and no running row without a holder:
    -- the common case, done.
    IF cardinality(gone) = 0 AND only_worker IS NULL AND NOT EXISTS (
        SELECT FROM skipq.jobs j WHERE j.status = 'running' AND j.locked_by IS NULL) THEN
        RETURN;
    END IF;

    IF dry_run THEN
        RETURN QUERY
        SELECT j.id, j.kind,
               (CASE WHEN j.attempts >= coalesce(j.max_attempts, default_max_attempts)
                     THEN 'failed' ELSE 'queued' END)::skipq.job_status
        FROM skipq.jobs j
        WHERE j.status = 'running'
          AND (j.locked_by = ANY (gone) OR j.locked_by IS NULL)
          AND (only_ids IS NULL OR j.id = ANY (only_ids))
          AND (only_queue IS NULL OR j.queue = only_queue)
          AND (only_kind IS NULL OR j.kind = only_kind)
          AND (only_priority IS NULL OR j.priority BETWEEN band.lo AND band.hi)
        ORDER BY j.id
        LIMIT lim;
        RETURN;
    END IF;

    RETURN QUERY
    SELECT r.id, r.kind, r.status
    FROM skipq.release(ARRAY(
            SELECT j.id FROM skipq.jobs j
            WHERE j.status = 'running'
              AND (j.locked_by = ANY (gone) OR j.locked_by IS NULL)
              AND (only_ids IS NULL OR j.id = ANY (only_ids))
              AND (only_queue IS NULL OR j.queue = only_queue)
              AND (only_kind IS NULL OR j.kind = only_kind)
              AND (only_priority IS NULL OR j.priority BETWEEN band.lo AND band.hi)
            ORDER BY j.id
            LIMIT lim
            FOR NO KEY UPDATE SKIP LOCKED),
         '{running}', lost => true, reason => reason,
         default_max_attempts => default_max_attempts) r
    ORDER BY r.id;
END $$;

-- recover: the operator's way to put stale rows back (see docs/operations.md).
--   failed:  dead-letter rows untouched for older_than go back to queued,
--            runnable now; attempts reset to 0, or with extra_attempts the
--            attempts stay and max_attempts becomes attempts + extra_attempts.
--   queued:  queued rows untouched for older_than are made runnable now.
--   running: rows of workers that are gone (see worker_gone) are rescued.
-- Rows are locked with SKIP LOCKED and re-checked, so two recover runs at
-- once never re-queue a row twice, and a row a worker is completing is left.
-- Returns one row per (status it was in, kind, status it went to) with how
-- many rows changed (or would change, with dry_run): a rescued row whose
-- attempts are spent goes to failed, not queued.
--
-- to_status came later: CREATE OR REPLACE cannot change a function's
-- result columns, so an older definition is dropped first and its owner
-- given back to the new one (a member of skipq_admin other than the one
-- migrating must still be able to replace it).
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS sig, p.proowner::regrole AS owner
             FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = 'skipq'::regnamespace
               AND p.proname = 'recover'
               AND NOT ('to_status' = ANY (p.proargnames)) LOOP
        PERFORM pg_catalog.set_config('skipq.recover_owner', f.owner::text, true);
        EXECUTE pg_catalog.format('DROP FUNCTION %s', f.sig);
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION skipq.recover(
    status               text,
    older_than           interval DEFAULT '5 minutes',
    queue                text DEFAULT NULL,
    kind                 text DEFAULT NULL,
    priority             text DEFAULT NULL,
    ids                  bigint[] DEFAULT NULL,
    lim                  int DEFAULT 1000,
    dry_run              boolean DEFAULT false,
    extra_attempts       int DEFAULT NULL,
    lease                interval DEFAULT '30 seconds',
    default_max_attempts int DEFAULT 5)
RETURNS TABLE (from_status skipq.job_status, job_kind text, jobs bigint,
               to_status skipq.job_status)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    st skipq.job_status;
    band record;
    put_back bigint[];
BEGIN
    IF status IS NULL OR status NOT IN ('failed', 'queued', 'running') THEN
        RAISE EXCEPTION 'unrecognized status "%"', status
            USING ERRCODE = '22023', HINT = 'use failed, queued or running';
    END IF;
    IF lim IS NULL OR lim < 0 THEN
        RAISE EXCEPTION 'limit must be 0 or more, not %', lim USING ERRCODE = '22023';
    END IF;
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'older_than must not be negative' USING ERRCODE = '22023';
    END IF;
    IF extra_attempts IS NOT NULL AND extra_attempts < 1 THEN
        RAISE EXCEPTION 'extra_attempts must be 1 or more, not %', extra_attempts
            USING ERRCODE = '22023';
    END IF;
    st := status::skipq.job_status;

    IF st = 'running' THEN
        RETURN QUERY
        SELECT 'running'::skipq.job_status, r.kind, count(*), r.status
        FROM skipq.rescue(lease, NULL, default_max_attempts, lim, dry_run,
                          ids, queue, kind, priority) r
        GROUP BY r.kind, r.status ORDER BY r.kind, r.status;
        RETURN;
    END IF;

    SELECT * INTO band FROM skipq.priority_band(coalesce(priority, '0'));

    IF dry_run THEN
        RETURN QUERY
        SELECT st, s.kind, count(*), 'queued'::skipq.job_status
        FROM (SELECT j.kind FROM skipq.jobs j
              WHERE j.status = st
                AND j.updated_at <= now() - older_than
                AND (recover.queue IS NULL OR j.queue = recover.queue)
                AND (recover.kind IS NULL OR j.kind = recover.kind)
                AND (recover.priority IS NULL OR j.priority BETWEEN band.lo AND band.hi)
                AND (ids IS NULL OR j.id = ANY (ids))
              ORDER BY j.id
              LIMIT lim) s
        GROUP BY s.kind ORDER BY s.kind;
        RETURN;
    END IF;

    SELECT array_agg(r.id) INTO put_back
    FROM skipq.release(ARRAY(
            SELECT j.id FROM skipq.jobs j
            WHERE j.status = st
              AND j.updated_at <= now() - older_than
              AND (recover.queue IS NULL OR j.queue = recover.queue)
              AND (recover.kind IS NULL OR j.kind = recover.kind)
              AND (recover.priority IS NULL OR j.priority BETWEEN band.lo AND band.hi)
              AND (ids IS NULL OR j.id = ANY (ids))
            ORDER BY j.id
            LIMIT lim
            FOR NO KEY UPDATE SKIP LOCKED),
         ARRAY[st], reset_attempts => true, extra_attempts => extra_attempts,
         note => '{"recovered": true}') r;
    -- read back in a statement of its own: a job whose parents have not
    -- all succeeded was set back to 'waiting' by a trigger after release's
    -- update (test deps.recover_reports_a_child_that_waits_again)
    RETURN QUERY
    SELECT st, j.kind, count(*), j.status
    FROM skipq.jobs j WHERE j.id = ANY (put_back)
    GROUP BY j.kind, j.status ORDER BY j.kind, j.status;
END $$;

DO $$
DECLARE
    owner text := pg_catalog.current_setting('skipq.recover_owner', true);
    f regprocedure;
BEGIN
    IF owner <> '' THEN
        FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
                 WHERE p.pronamespace = 'skipq'::regnamespace
                   AND p.proname = 'recover' LOOP
            EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO %s', f, owner);
        END LOOP;
    END IF;
END $$;

-- retry: any job that is not running goes back to queued, runnable now.
-- Returns the ids it changed.
CREATE OR REPLACE FUNCTION skipq.retry(ids bigint[])
RETURNS SETOF bigint LANGUAGE sql
SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.id
    FROM skipq.release(ARRAY(
            SELECT j.id FROM skipq.jobs j
            WHERE j.id = ANY ($1) AND j.status <> 'running'
            ORDER BY j.id
            FOR NO KEY UPDATE),
         '{queued,succeeded,failed,cancelled}', reset_attempts => true,
         note => '{"retried": true}') r
    ORDER BY r.id
$$;

-- cancel: queued and waiting jobs become cancelled at once; running jobs are
-- marked and their worker is told on the control channel to stop the handler.
-- Returns each id with what happened: cancelled, requested, or the final
-- status it already had.
CREATE OR REPLACE FUNCTION skipq.cancel(ids bigint[])
RETURNS TABLE (id bigint, outcome text) LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT j.id, j.status, j.locked_by FROM skipq.jobs j
        WHERE j.id = ANY (ids) ORDER BY j.id FOR NO KEY UPDATE
    LOOP
        id := r.id;
        IF r.status IN ('queued', 'waiting') THEN
            UPDATE skipq.jobs j
            SET status = 'cancelled', finished_at = now(), updated_at = now(),
                last_error = 'cancelled by ' || current_user
            WHERE j.id = r.id;
            outcome := 'cancelled';
        ELSIF r.status = 'running' THEN
            UPDATE skipq.jobs j
            SET cancel_requested_at = now(), updated_at = now()
            WHERE j.id = r.id;
            PERFORM pg_notify('skipq_control', format('cancel %s %s', r.id, r.locked_by));
            outcome := 'requested';
        ELSE
            outcome := r.status::text;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;

-- prune: delete one bounded batch of finished rows older than older_than.
-- Call it in a loop, one transaction per batch, so no lock is held for long.
-- SECURITY DEFINER so a worker's retention can delete finished rows without
-- DELETE on skipq.jobs (sql/roles.sql); hence no EXECUTE for PUBLIC (its
-- fixed search_path, pg_temp last, is the one every function here has).
CREATE OR REPLACE FUNCTION skipq.prune(
    older_than interval,
    statuses   skipq.job_status[] DEFAULT '{succeeded,cancelled}',
    batch      int DEFAULT 5000)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
-- By jobs_finished_idx, never a sequential scan: the planner, counting
-- the finished rows, read the table from its start, past every row that
-- the last batches deleted and vacuum had not yet reclaimed, and fell
-- behind a busy queue.
-- The rows it locked are deleted by their ctid (a TID scan), which a
-- locked row keeps until this transaction ends: joined by id, the delete
-- was a merge join that read the primary key from its lowest id up,
-- through the entries of every row deleted since vacuum last ran.
-- A row that another transaction updated since this statement's snapshot,
-- and that still matches, is locked in its new version, which the TID scan
-- (on the snapshot) does not see: it is left for the next call, and the
-- short batch ends the caller's turn.
-- A worker's retention may delete succeeded and cancelled rows older than
-- a non-negative age; failed rows (the dead letters an operator must see)
-- only a member of the schema's owner (skipq_admin) may prune (test
-- worker_role_cannot_prune_failed_jobs).
-- No JIT: enable_seqscan = off prices the plan past jit_above_cost, and
-- compiling it took longer than running a batch.
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off AS $$
DECLARE
    n bigint;
BEGIN
    IF older_than IS NULL OR older_than OPERATOR(pg_catalog.<) interval '0' THEN
        RAISE EXCEPTION 'older_than must not be negative, not %', older_than
            USING ERRCODE = '22023';
    END IF;
    IF 'failed'::skipq.job_status OPERATOR(pg_catalog.=) ANY (statuses)
       AND NOT pg_catalog.pg_has_role(session_user,
               (SELECT s.nspowner FROM pg_catalog.pg_namespace s
                WHERE s.nspname OPERATOR(pg_catalog.=) 'skipq'), 'MEMBER') THEN
        RAISE EXCEPTION 'pruning failed jobs needs a member of the owner of schema skipq (skipq_admin), not "%"',
            session_user USING ERRCODE = '42501';
    END IF;
    WITH c AS MATERIALIZED (
        SELECT j.ctid FROM skipq.jobs j
        WHERE j.status OPERATOR(pg_catalog.=) ANY (statuses)
          AND j.status OPERATOR(pg_catalog.=) ANY
              ('{succeeded,failed,cancelled}'::skipq.job_status[])
          AND j.updated_at OPERATOR(pg_catalog.<)
              (pg_catalog.now() OPERATOR(pg_catalog.-) older_than)
          -- never a parent whose child still waits (sql/deps.sql)
          AND (j.dependants IS NULL OR NOT EXISTS (
                  SELECT FROM skipq.job_dependencies d, skipq.jobs c
                  WHERE d.parent OPERATOR(pg_catalog.=) j.id
                    AND c.id OPERATOR(pg_catalog.=) d.child
                    AND c.status OPERATOR(pg_catalog.=) 'waiting'::skipq.job_status))
        LIMIT batch
        FOR UPDATE SKIP LOCKED),
    d AS (DELETE FROM skipq.jobs j
          WHERE j.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT c.ctid FROM c))
          RETURNING 1)
    SELECT pg_catalog.count(*) INTO n FROM d;
    RETURN n;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.prune(interval, skipq.job_status[], int)
    FROM PUBLIC;

-- Operators' functions: a producer or a worker role must not re-queue,
-- cancel or recover jobs (sql/roles.sql grants nothing on them; the
-- schema's owner, skipq_admin, runs them). Tests
-- worker_role_cannot_retry_cancel_or_recover.
REVOKE EXECUTE ON FUNCTION skipq.retry(bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION skipq.rescue(interval, bigint, int, int, boolean, bigint[], text,
    text, text, bigint, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION skipq.cancel(bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION skipq.recover(text, interval, text, text, text, bigint[], int,
    boolean, int, interval, int) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Views for psql (examples in docs/operations.md)
-- ---------------------------------------------------------------------------

-- Per queue and priority: counts by status, the oldest runnable job's age,
-- and jobs finished in the last minute.
CREATE OR REPLACE VIEW skipq.queue_stats AS
SELECT queue, priority,
       count(*) FILTER (WHERE status = 'queued' AND run_at <= now()) AS runnable,
       count(*) FILTER (WHERE status = 'queued' AND run_at > now())  AS scheduled,
       count(*) FILTER (WHERE status = 'running')   AS running,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed')    AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       now() - min(run_at) FILTER (WHERE status = 'queued' AND run_at <= now())
           AS oldest_runnable_age,
       count(*) FILTER (WHERE finished_at > now() - interval '1 minute')
           AS finished_last_minute,
       count(*) FILTER (WHERE status = 'waiting') AS waiting
FROM skipq.jobs
GROUP BY queue, priority;

-- The dead-letter pile, newest first.
CREATE OR REPLACE VIEW skipq.failed_jobs AS
SELECT id, queue, kind, priority, attempts, max_attempts, last_error,
       jsonb_array_length(errors) AS errors_recorded,
       created_at, finished_at, updated_at, payload
FROM skipq.jobs
WHERE status = 'failed';

-- Workers: alive or not, with heartbeat age and the number of jobs each
-- holds. Alive: it beat within its own lease, and it holds its liveness
-- lock (unless it declared it holds none); the same rule as
-- skipq.worker_gone, read without taking the lock.
CREATE OR REPLACE VIEW skipq.active_workers AS
SELECT w.id, w.host, w.pid, w.queues, w.priorities, w.concurrency, w.version,
       w.started_at, now() - w.heartbeat_at AS heartbeat_age,
       (w.heartbeat_at >= now() - coalesce(w.lease, interval '30 seconds')
        AND (NOT w.liveness_lock OR EXISTS (
               SELECT 1 FROM pg_catalog.pg_locks l
               WHERE l.locktype = 'advisory' AND l.granted
                 AND l.classid = @SKIPQ__LOCK_CLASS_WORKER@
                 AND l.objid = (w.id & 2147483647)::oid
                 AND l.objsubid = 2))) AS alive,
       (SELECT count(*) FROM skipq.jobs j
        WHERE j.status = 'running' AND j.locked_by = w.id) AS running_jobs,
       w.heartbeat_interval, w.lease, w.liveness_lock
FROM skipq.workers w;

-- Rows that look stuck: running under a worker that is not alive, or
-- runnable for over a minute without being picked up, or queued far
-- in the future (as a long backoff during an outage leaves them).
CREATE OR REPLACE VIEW skipq.stale_jobs AS
SELECT j.id, j.queue, j.kind, j.priority, j.status, j.attempts, j.locked_by,
       j.run_at, j.updated_at, now() - j.updated_at AS idle_for,
       CASE WHEN j.status = 'running' THEN 'worker gone'
            WHEN j.run_at <= now() THEN 'not picked up'
            ELSE 'scheduled far ahead' END AS reason
FROM skipq.jobs j
LEFT JOIN skipq.active_workers w ON w.id = j.locked_by
WHERE (j.status = 'running' AND (w.id IS NULL OR NOT w.alive))
   OR (j.status = 'queued' AND j.run_at <= now() - interval '1 minute')
   OR (j.status = 'queued' AND j.run_at > now() + interval '1 hour');

-- ---------------------------------------------------------------------------
-- Objects bound to someone else's function or operator
-- ---------------------------------------------------------------------------

-- Views, functions and the trigger above are re-created by every migrate,
-- under search_path = pg_catalog, pg_temp. What the numbered migrations
-- created (checks, defaults, indexes) stays bound to what its names meant
-- at the time: an installation made before skipq pinned its search_path,
-- into a database where another role had already planted, say,
-- public.pg_column_size(jsonb), runs that function at every insert. Say so
-- at every migrate: name each object of schema skipq that depends on a
-- function or operator that is neither PostgreSQL's own (those record no
-- dependency), nor skipq's, nor an extension's (docs/security.md).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT pg_describe_object(d.classid, d.objid, d.objsubid) AS what,
               pg_describe_object(d.refclassid, d.refobjid, 0) AS uses
        FROM pg_depend d
        WHERE d.refclassid IN ('pg_proc'::regclass, 'pg_operator'::regclass)
          AND CASE d.refclassid
                  WHEN 'pg_proc'::regclass THEN
                      (SELECT p.pronamespace FROM pg_proc p WHERE p.oid = d.refobjid)
                  ELSE (SELECT o.oprnamespace FROM pg_operator o WHERE o.oid = d.refobjid)
              END <> 'skipq'::regnamespace
          AND NOT EXISTS (SELECT FROM pg_depend e
                          WHERE e.classid = d.refclassid AND e.objid = d.refobjid
                            AND e.deptype = 'e')
          AND CASE d.classid
                  WHEN 'pg_class'::regclass THEN
                      (SELECT c.relnamespace FROM pg_class c WHERE c.oid = d.objid)
                  WHEN 'pg_constraint'::regclass THEN
                      (SELECT c.connamespace FROM pg_constraint c WHERE c.oid = d.objid)
                  WHEN 'pg_attrdef'::regclass THEN
                      (SELECT c.relnamespace FROM pg_attrdef a
                       JOIN pg_class c ON c.oid = a.adrelid WHERE a.oid = d.objid)
                  WHEN 'pg_rewrite'::regclass THEN
                      (SELECT c.relnamespace FROM pg_rewrite w
                       JOIN pg_class c ON c.oid = w.ev_class WHERE w.oid = d.objid)
                  WHEN 'pg_trigger'::regclass THEN
                      (SELECT c.relnamespace FROM pg_trigger t
                       JOIN pg_class c ON c.oid = t.tgrelid WHERE t.oid = d.objid)
                  WHEN 'pg_proc'::regclass THEN
                      (SELECT p.pronamespace FROM pg_proc p WHERE p.oid = d.objid)
              END = 'skipq'::regnamespace
        ORDER BY 1, 2
    LOOP
        RAISE WARNING '% uses %, which is neither PostgreSQL''s nor skipq''s', r.what, r.uses
            USING HINT = 'if nobody here made it, another role planted it and it runs with '
                         'the rights of whoever uses the object: drop it (CASCADE drops the '
                         'object too) and re-create the object (docs/security.md)';
    END LOOP;
END $$;
