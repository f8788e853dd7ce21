-- deps.sql: jobs that wait for other jobs (depends_on), batches with a
-- completion job, and chains. Re-applied by every `skipq migrate`, after
-- enqueue.sql.
--
-- Everything happens in SQL, in the transaction that finishes a job,
-- whichever worker or tool finishes it: row triggers on skipq.jobs whose
-- WHEN is false for a job with no dependants and no batch, so a plain
-- job's claim and completion never call a function here.
--
-- A finished row may be pruned, deleted on success or archived. Nothing
-- here reads it afterwards: a parent's result goes into its link
-- (skipq.job_dependencies) when it succeeds, and into the child's payload
-- when the child is released; batch counts live in skipq.batches.
--
-- The graph has no cycles by construction: a link is made only when the
-- child is enqueued, and only to parents that already exist, so a parent
-- is always older than its child. The one cycle a caller can ask for, a
-- job that names its own (future) id, is refused.

-- ---------------------------------------------------------------------------
-- Linking a new job to its parents and its batch
-- ---------------------------------------------------------------------------

-- Called by skipq.enqueue_unique right after it inserted job child, in the
-- producer's transaction. SECURITY DEFINER: a producer may insert jobs but
-- not update them, and the child becomes 'waiting' and its parents are
-- marked. Only a job the caller inserted in this transaction, untouched
-- since, is accepted (created_at is the transaction's start, which a
-- producer cannot set), so a producer cannot make another job wait.
-- The parents are locked (FOR SHARE) until the producer commits: a parent
-- that finishes meanwhile waits for this link, then settles it
-- (test parent_finishing_while_child_is_enqueued).
CREATE OR REPLACE FUNCTION skipq.deps_attach(
    child             bigint,
    parents           bigint[],
    on_parent_failure text,
    batch             bigint)
RETURNS skipq.job_status LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ps bigint[];
    gone bigint[];
    missing bigint;
    policy text := coalesce(on_parent_failure, 'cancel');
    pending int;
    bad record;
    st skipq.job_status := 'queued';
BEGIN
    PERFORM FROM skipq.jobs j
    WHERE j.id = child AND j.status = 'queued' AND j.claims = 0 AND j.created_at = now()
      AND j.dependants IS NULL AND j.has_parents IS NULL AND j.batch_id IS NULL
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % was not enqueued by this transaction', child
            USING ERRCODE = '42501';
    END IF;
    IF policy NOT IN ('cancel', 'run') THEN
        RAISE EXCEPTION 'unknown on_parent_failure "%": use cancel or run', policy
            USING ERRCODE = '22023';
    END IF;

    IF batch IS NOT NULL THEN
        UPDATE skipq.batches b SET total = b.total + 1
        WHERE b.id = batch AND b.sealed_at IS NULL;
        IF NOT FOUND THEN
            IF EXISTS (SELECT FROM skipq.batches b WHERE b.id = batch) THEN
                RAISE EXCEPTION 'batch % is sealed: no job can join it', batch
                    USING ERRCODE = '22023';
            END IF;
            RAISE EXCEPTION 'batch % does not exist', batch USING ERRCODE = '23503';
        END IF;
        UPDATE skipq.jobs j SET batch_id = batch WHERE j.id = child;
    END IF;

    IF cardinality(parents) > 0 THEN
        IF array_position(parents, NULL) IS NOT NULL THEN
            RAISE EXCEPTION 'depends_on must not contain null' USING ERRCODE = '22023';
        END IF;
        IF child = ANY (parents) THEN
            RAISE EXCEPTION 'job % cannot depend on itself (a cycle)', child
                USING ERRCODE = '22023';
        END IF;
        ps := ARRAY(SELECT DISTINCT p FROM unnest(parents) p ORDER BY p);
        -- Mark the parents (their triggers fire from now on) and lock them,
        -- in id order: the unmarked ones exclusively first, so that two
        -- producers adding the first children of a parent at once queue up
        -- rather than deadlock on the upgrade from a shared lock.
        PERFORM FROM skipq.jobs j WHERE j.id = ANY (ps) AND j.dependants IS NULL
        ORDER BY j.id FOR NO KEY UPDATE;
        UPDATE skipq.jobs j SET dependants = true
        WHERE j.id = ANY (ps) AND j.dependants IS NULL;
        PERFORM FROM skipq.jobs j WHERE j.id = ANY (ps) ORDER BY j.id FOR SHARE;
        INSERT INTO skipq.job_dependencies (parent, child, parent_status, result)
        SELECT j.id, child,
               CASE WHEN j.status IN ('succeeded', 'failed', 'cancelled') THEN j.status END,
               CASE WHEN j.status = 'succeeded' THEN j.result END
        FROM skipq.jobs j WHERE j.id = ANY (ps);
        -- A parent not in skipq.jobs (locked above: none leaves it now) may
        -- be in the archive (sql/archive.sql): it finished, and counts with
        -- its outcome and result (test archived_parent_counts). Only then
        -- is the archive read: a lookup by id reads every partition.
        gone := ARRAY(SELECT p FROM unnest(ps) p
                      WHERE NOT EXISTS (SELECT FROM skipq.job_dependencies d
                                        WHERE d.parent = p AND d.child = deps_attach.child));
        IF cardinality(gone) > 0 THEN
            INSERT INTO skipq.job_dependencies (parent, child, parent_status, result)
            SELECT a.id, child, a.status,
                   CASE WHEN a.status = 'succeeded' THEN a.result END
            FROM skipq.jobs_done a WHERE a.id = ANY (gone);
            -- a link made, or the parent is gone: a partition dropped
            -- meanwhile gives this error, never a child without its result
            SELECT p INTO missing FROM unnest(gone) p
            WHERE NOT EXISTS (SELECT FROM skipq.job_dependencies d
                              WHERE d.parent = p AND d.child = deps_attach.child)
            LIMIT 1;
            IF missing IS NOT NULL THEN
                RAISE EXCEPTION 'parent job % does not exist', missing
                    USING ERRCODE = '23503',
                          HINT = 'a finished parent may have been pruned or deleted on success';
            END IF;
        END IF;
        SELECT count(*) FILTER (WHERE d.parent_status IS NULL
                                   OR (d.parent_status <> 'succeeded' AND policy = 'cancel'))
        INTO pending
        FROM skipq.job_dependencies d WHERE d.child = deps_attach.child;
        SELECT d.parent, d.parent_status INTO bad FROM skipq.job_dependencies d
        WHERE d.child = deps_attach.child AND d.parent_status IN ('failed', 'cancelled')
        ORDER BY d.parent LIMIT 1;
        INSERT INTO skipq.job_waits (child, pending, on_parent_failure, cancelled_by)
        VALUES (child, pending, policy,
                CASE WHEN policy = 'cancel' THEN bad.parent END);
        IF policy = 'cancel' AND bad.parent IS NOT NULL THEN
            -- a parent already failed: the child is cancelled at once
            UPDATE skipq.jobs j
            SET status = 'cancelled', has_parents = true, finished_at = now(),
                updated_at = now(),
                last_error = format('parent %s %s', bad.parent, bad.parent_status)
            WHERE j.id = child;
            st := 'cancelled';
        ELSIF pending > 0 THEN
            UPDATE skipq.jobs j SET status = 'waiting', has_parents = true
            WHERE j.id = child;
            st := 'waiting';
        ELSE
            -- every parent already finished: runnable now, with their results
            UPDATE skipq.jobs j
            SET has_parents = true, payload = skipq.deps_payload(j.id, j.payload)
            WHERE j.id = child;
        END IF;
    END IF;
    RETURN st;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.deps_attach(bigint, bigint[], text, bigint) FROM PUBLIC;

-- The released child's payload: its own, plus "skipq_parents", an object
-- with each succeeded parent's result by the parent's id (null: the
-- handler returned no result), and, only when some parent failed or was
-- cancelled (on_parent_failure 'run'), "skipq_failed_parents": each such
-- parent's id and status.
CREATE OR REPLACE FUNCTION skipq.deps_payload(child bigint, payload jsonb)
RETURNS jsonb LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT payload
        || jsonb_build_object('skipq_parents', coalesce(
               (SELECT jsonb_object_agg(d.parent::text, d.result ORDER BY d.parent)
                FROM skipq.job_dependencies d
                WHERE d.child = deps_payload.child AND d.parent_status = 'succeeded'),
               '{}'))
        || coalesce(
               (SELECT jsonb_build_object('skipq_failed_parents',
                           jsonb_object_agg(d.parent::text, d.parent_status::text
                                            ORDER BY d.parent))
                FROM skipq.job_dependencies d
                WHERE d.child = deps_payload.child
                  AND d.parent_status IN ('failed', 'cancelled')
                HAVING count(*) > 0),
               '{}')
$$;
REVOKE EXECUTE ON FUNCTION skipq.deps_payload(bigint, jsonb) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- A parent finished: release, or cancel, its dependants
-- ---------------------------------------------------------------------------

-- Waiting children in ids whose count reached 0 become queued, runnable
-- now, in the caller's transaction: updated_at is now(), the finishing
-- parent's finished_at (test released_child_updated_at_is_parent_finished_at).
-- The NOTIFY trigger fires on INSERT only, so workers are woken here, once
-- per queue. A child whose parents' results would make its payload larger
-- than a job's payload may be is cancelled instead, with that reason:
-- failing here would fail the parent's completion, forever.
CREATE OR REPLACE FUNCTION skipq.deps_release(ids bigint[])
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    WITH m AS MATERIALIZED (
        SELECT c.id, skipq.deps_payload(c.id, c.payload) AS p
        FROM skipq.jobs c
        WHERE c.id = ANY (ids) AND c.status = 'waiting'
        ORDER BY c.id
        FOR NO KEY UPDATE),
    u AS (
        UPDATE skipq.jobs c
        SET status = CASE WHEN pg_column_size(m.p) <= 16777216 THEN 'queued'
                          ELSE 'cancelled' END::skipq.job_status,
            payload = CASE WHEN pg_column_size(m.p) <= 16777216 THEN m.p
                           ELSE c.payload END,
            run_at = greatest(c.run_at, now()),
            finished_at = CASE WHEN pg_column_size(m.p) <= 16777216 THEN NULL ELSE now() END,
            last_error = CASE WHEN pg_column_size(m.p) <= 16777216 THEN c.last_error
                              ELSE 'the results of its parents do not fit in its payload' END,
            updated_at = now()
        FROM m WHERE c.id = m.id AND c.status = 'waiting'
        RETURNING c.queue, c.status)
    SELECT count(pg_notify('skipq', q.queue)) INTO n
    FROM (SELECT DISTINCT u.queue FROM u WHERE u.status = 'queued') q;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.deps_release(bigint[]) FROM PUBLIC;

-- Parent p finished with status st (result: its result when it
-- succeeded; word: what to call a failure in the children's reason,
-- "failed", "cancelled" or "deleted").
--   succeeded: each child's count goes down; those at 0 are released.
--   failed, cancelled: children with on_parent_failure 'run' count it as
--     done like a success; the others are cancelled, "parent P failed",
--     and so, at once, is every waiting job below them that would be
--     cancelled in turn ("parent C cancelled (after parent P failed)").
-- Only links still open (or failed, for a success after a retry) count:
-- a parent that succeeded once has let its children go for good.
CREATE OR REPLACE FUNCTION skipq.deps_settle(
    p bigint, st skipq.job_status, result jsonb, word text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ready bigint[];
BEGIN
    -- children's counters locked in id order: two parents of the same
    -- children finishing at once take them in the same order
    PERFORM FROM skipq.job_waits w
    WHERE w.child IN (SELECT d.child FROM skipq.job_dependencies d
                      WHERE d.parent = p AND d.parent_status IS DISTINCT FROM 'succeeded')
    ORDER BY w.child FOR UPDATE;
    WITH l AS (
        SELECT d.child, d.parent_status AS was, w.on_parent_failure AS policy
        FROM skipq.job_dependencies d JOIN skipq.job_waits w ON w.child = d.child
        WHERE d.parent = p AND d.parent_status IS DISTINCT FROM 'succeeded'),
    links AS (
        UPDATE skipq.job_dependencies d
        SET parent_status = st,
            result = CASE WHEN st = 'succeeded' THEN deps_settle.result END
        FROM l WHERE d.parent = p AND d.child = l.child
        RETURNING l.child, l.was, l.policy),
    counted AS (
        UPDATE skipq.job_waits w SET pending = w.pending - 1
        FROM links
        WHERE w.child = links.child
          AND ((links.was IS NULL AND (st = 'succeeded' OR links.policy = 'run'))
               OR (links.was IS NOT NULL AND st = 'succeeded' AND links.policy = 'cancel'))
        RETURNING w.child, w.pending)
    SELECT array_agg(counted.child ORDER BY counted.child) INTO ready
    FROM counted WHERE counted.pending = 0;
    IF ready IS NOT NULL THEN
        PERFORM skipq.deps_release(ready);
    END IF;
    IF st <> 'succeeded' THEN
        PERFORM skipq.deps_cancel_below(p, word);
    END IF;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.deps_settle(bigint, skipq.job_status, jsonb, text)
    FROM PUBLIC;

-- Cancel the waiting jobs below failed parent p that do not run anyway:
-- its children with on_parent_failure 'cancel', theirs, and so on, in one
-- statement (a long chain is not cancelled one nested trigger at a time).
-- Each one's reason names the parent it was cancelled through, and p.
CREATE OR REPLACE FUNCTION skipq.deps_cancel_below(p bigint, word text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    WITH RECURSIVE x(child, via) AS (
        SELECT d.child, d.parent
        FROM skipq.job_dependencies d
        JOIN skipq.job_waits w ON w.child = d.child AND w.on_parent_failure = 'cancel'
        JOIN skipq.jobs c ON c.id = d.child AND c.status = 'waiting'
        WHERE d.parent = p
        UNION
        SELECT d.child, d.parent
        FROM x
        JOIN skipq.job_dependencies d ON d.parent = x.child
        JOIN skipq.job_waits w ON w.child = d.child AND w.on_parent_failure = 'cancel'
        JOIN skipq.jobs c ON c.id = d.child AND c.status = 'waiting'),
    v AS (SELECT x.child, min(x.via) AS via FROM x GROUP BY x.child),
    locked AS MATERIALIZED (
        SELECT c.id FROM skipq.jobs c
        WHERE c.id IN (SELECT v.child FROM v) AND c.status = 'waiting'
        ORDER BY c.id FOR NO KEY UPDATE),
    marked AS (UPDATE skipq.job_waits w SET cancelled_by = v.via
          FROM v WHERE w.child = v.child AND v.child IN (SELECT locked.id FROM locked))
    UPDATE skipq.jobs c
    SET status = 'cancelled', finished_at = now(), updated_at = now(),
        last_error = CASE WHEN v.via = p THEN format('parent %s %s', p, word)
                          ELSE format('parent %s cancelled (after parent %s %s)',
                                      v.via, p, word) END
    FROM v WHERE c.id = v.child AND c.id IN (SELECT locked.id FROM locked);
END $$;
REVOKE EXECUTE ON FUNCTION skipq.deps_cancel_below(bigint, text) FROM PUBLIC;

-- Parent p, failed or cancelled, runs again (recover, retry): its open
-- links open again, and the jobs its failure cancelled go back to
-- waiting, level by level down the graph, except those that another
-- failed parent still holds cancelled. A child with on_parent_failure
-- 'run' that was not yet released counts the parent again; one already
-- released is left alone. One loop, not one nested trigger per level: the
-- guard skipq.deps_walk makes the triggers of the jobs it brings back
-- skip this part (test recover_parent_brings_back_cancelled_chain).
CREATE OR REPLACE FUNCTION skipq.deps_revive(p bigint)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lvl bigint[] := ARRAY[p];
    back bigint[];
BEGIN
    PERFORM set_config('skipq.deps_walk', 'on', true);
    WHILE cardinality(lvl) > 0 LOOP
        PERFORM FROM skipq.job_waits w
        WHERE w.child IN (SELECT d.child FROM skipq.job_dependencies d
                          WHERE d.parent = ANY (lvl))
        ORDER BY w.child FOR UPDATE;
        WITH l AS (
            UPDATE skipq.job_dependencies d SET parent_status = NULL
            FROM skipq.job_waits w, skipq.jobs c
            WHERE d.parent = ANY (lvl) AND d.parent_status IN ('failed', 'cancelled')
              AND w.child = d.child AND c.id = d.child
              AND (w.on_parent_failure = 'cancel' OR c.status = 'waiting')
            RETURNING d.child, w.on_parent_failure AS policy)
        UPDATE skipq.job_waits w SET pending = w.pending + n.n
        FROM (SELECT l.child, count(*)::int AS n FROM l WHERE l.policy = 'run'
              GROUP BY l.child) n
        WHERE w.child = n.child;

        WITH c AS MATERIALIZED (
            SELECT j.id FROM skipq.jobs j JOIN skipq.job_waits w ON w.child = j.id
            WHERE w.cancelled_by = ANY (lvl) AND j.status = 'cancelled'
              AND NOT EXISTS (SELECT FROM skipq.job_dependencies d
                              WHERE d.child = j.id
                                AND d.parent_status IN ('failed', 'cancelled'))
            ORDER BY j.id FOR NO KEY UPDATE OF j),
        u AS (UPDATE skipq.jobs j
              SET status = 'waiting', finished_at = NULL, updated_at = now(),
                  last_error = NULL,
                  errors = j.errors || jsonb_build_object(
                      'revived', true, 'at', now(), 'from', 'cancelled', 'by', current_user,
                      'after', p, 'error', j.last_error)
              FROM c WHERE j.id = c.id
              RETURNING j.id),
        unmarked AS (UPDATE skipq.job_waits w SET cancelled_by = NULL
                     FROM u WHERE w.child = u.id)
        SELECT coalesce(array_agg(u.id), '{}') INTO back FROM u;
        -- those another failed parent still holds: cancelled by that one now
        UPDATE skipq.job_waits w
        SET cancelled_by = (SELECT min(d.parent) FROM skipq.job_dependencies d
                            WHERE d.child = w.child
                              AND d.parent_status IN ('failed', 'cancelled'))
        WHERE w.cancelled_by = ANY (lvl)
          AND EXISTS (SELECT FROM skipq.jobs j WHERE j.id = w.child AND j.status = 'cancelled');
        lvl := back;
    END LOOP;
    PERFORM set_config('skipq.deps_walk', '', true);
END $$;
REVOKE EXECUTE ON FUNCTION skipq.deps_revive(bigint) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Batches
-- ---------------------------------------------------------------------------

-- A new batch. Its completion job (kind on_complete_kind; none if NULL)
-- is enqueued once the batch is sealed (skipq.batch_seal) and every
-- member has finished, with on_complete_payload plus "skipq_batch":
-- {"id", "total", "succeeded", "failed", "cancelled"}.
CREATE OR REPLACE FUNCTION skipq.batch_create(
    on_complete_kind     text DEFAULT NULL,
    on_complete_payload  jsonb DEFAULT '{}',
    on_complete_queue    text DEFAULT 'default',
    on_complete_priority anycompatible DEFAULT 0)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id bigint;
BEGIN
    INSERT INTO skipq.batches AS b (on_complete_kind, on_complete_payload,
                                    on_complete_queue, on_complete_priority, created_by)
    VALUES (on_complete_kind, coalesce(on_complete_payload, '{}'),
            coalesce(on_complete_queue, 'default'),
            skipq.priority_value(coalesce(on_complete_priority::text, '0')), session_user)
    RETURNING b.id INTO id;
    RETURN id;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.batch_create(text, jsonb, text, anycompatible) FROM PUBLIC;

-- Enqueue batch b's completion job if it is sealed, every member has
-- finished and it has not been enqueued yet. The caller holds the
-- batch's row lock (it just updated the row), so of two workers
-- finishing the last members at once, the second sees the first's
-- counts and finished_at, and the job is enqueued exactly once
-- (test batch_of_1000_with_two_workers_completes_once).
CREATE OR REPLACE FUNCTION skipq.batch_maybe_finish(b skipq.batches)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    job bigint;
BEGIN
    IF b.sealed_at IS NULL OR b.finished_at IS NOT NULL
       OR b.succeeded + b.failed + b.cancelled < b.total THEN
        RETURN NULL;
    END IF;
    IF b.on_complete_kind IS NOT NULL THEN
        INSERT INTO skipq.jobs AS j (kind, payload, queue, priority)
        VALUES (b.on_complete_kind,
                b.on_complete_payload || jsonb_build_object('skipq_batch', jsonb_build_object(
                    'id', b.id, 'total', b.total, 'succeeded', b.succeeded,
                    'failed', b.failed, 'cancelled', b.cancelled)),
                b.on_complete_queue, b.on_complete_priority)
        RETURNING j.id INTO job;
        -- a producer's skipq.notify = 'after_commit' would skip the insert's
        PERFORM pg_notify('skipq', b.on_complete_queue);
    END IF;
    UPDATE skipq.batches x SET finished_at = now(), completion_job = job WHERE x.id = b.id;
    RETURN job;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.batch_maybe_finish(skipq.batches) FROM PUBLIC;

-- A member of batch b reached (delta 1) or left (delta -1: retried,
-- recovered) final status st. A batch that has finished counts no more.
CREATE OR REPLACE FUNCTION skipq.batch_count(b bigint, st skipq.job_status, delta int)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r skipq.batches;
BEGIN
    UPDATE skipq.batches x
    SET succeeded = x.succeeded + CASE WHEN st = 'succeeded' THEN delta ELSE 0 END,
        failed = x.failed + CASE WHEN st = 'failed' THEN delta ELSE 0 END,
        cancelled = x.cancelled + CASE WHEN st = 'cancelled' THEN delta ELSE 0 END
    WHERE x.id = b AND x.finished_at IS NULL
    RETURNING x.* INTO r;
    IF FOUND AND delta > 0 THEN
        PERFORM skipq.batch_maybe_finish(r);
    END IF;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.batch_count(bigint, skipq.job_status, int) FROM PUBLIC;

-- Seal batch b: no job joins it any more, and once every member has
-- finished (at once, if they all have) its completion job is enqueued.
-- Returns the batch. Sealing twice is harmless.
CREATE OR REPLACE FUNCTION skipq.batch_seal(b bigint)
RETURNS skipq.batches LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r skipq.batches;
BEGIN
    UPDATE skipq.batches x SET sealed_at = coalesce(x.sealed_at, now())
    WHERE x.id = b RETURNING x.* INTO r;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'batch % does not exist', b USING ERRCODE = '23503';
    END IF;
    PERFORM skipq.batch_maybe_finish(r);
    SELECT * INTO r FROM skipq.batches x WHERE x.id = b;
    RETURN r;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.batch_seal(bigint) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- The triggers
-- ---------------------------------------------------------------------------

-- A job with dependants or a batch reached a final status, or left one.
CREATE OR REPLACE FUNCTION skipq.deps_status_changed()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    was_final boolean := OLD.status IN ('succeeded', 'failed', 'cancelled');
    is_final boolean := NEW.status IN ('succeeded', 'failed', 'cancelled');
BEGIN
    IF NEW.batch_id IS NOT NULL THEN
        IF was_final THEN
            PERFORM skipq.batch_count(NEW.batch_id, OLD.status, -1);
        END IF;
        IF is_final THEN
            PERFORM skipq.batch_count(NEW.batch_id, NEW.status, 1);
        END IF;
    END IF;
    IF NEW.dependants THEN
        IF is_final AND NOT was_final THEN
            PERFORM skipq.deps_settle(NEW.id, NEW.status, NEW.result, NEW.status::text);
        ELSIF OLD.status IN ('failed', 'cancelled') AND NOT is_final
              AND current_setting('skipq.deps_walk', true) IS DISTINCT FROM 'on' THEN
            PERFORM skipq.deps_revive(NEW.id);
        END IF;
    END IF;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.deps_status_changed() FROM PUBLIC;

CREATE OR REPLACE TRIGGER jobs_deps_status
    AFTER UPDATE OF status ON skipq.jobs
    FOR EACH ROW
    WHEN ((NEW.dependants OR NEW.batch_id IS NOT NULL)
          AND OLD.status IS DISTINCT FROM NEW.status
          AND (OLD.status IN ('succeeded', 'failed', 'cancelled')
               OR NEW.status IN ('succeeded', 'failed', 'cancelled')))
    EXECUTE FUNCTION skipq.deps_status_changed();

-- worker.on_success: delete. skipq.complete_delete deletes a running job
-- that succeeded, and calls this for each one with dependants or a batch,
-- with the result only it has (the row is gone, and its delete trigger
-- sees a running row): the job succeeded, for its batch and its children
-- (test diamond_with_on_success_delete). It sets skipq.on_success for its
-- transaction, so that the delete trigger leaves these rows to this.
CREATE OR REPLACE FUNCTION skipq.deps_deleted_on_success(
    id bigint, dependants boolean, batch_id bigint, result jsonb)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF batch_id IS NOT NULL THEN
        PERFORM skipq.batch_count(batch_id, 'succeeded', 1);
    END IF;
    IF dependants THEN
        PERFORM skipq.deps_settle(id, 'succeeded', result, 'succeeded');
    END IF;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.deps_deleted_on_success(bigint, boolean, bigint, jsonb)
    FROM PUBLIC;

-- A row with dependants, a batch or parents was deleted. Unfinished (an
-- operator's delete), it counts as cancelled for its batch and its
-- dependants; a running one deleted by skipq.complete_delete succeeded,
-- and was passed on already. A child's links and counter go with it.
CREATE OR REPLACE FUNCTION skipq.deps_row_deleted()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF OLD.status NOT IN ('succeeded', 'failed', 'cancelled')
       AND NOT (OLD.status = 'running'
                AND current_setting('skipq.on_success', true) = 'delete') THEN
        IF OLD.batch_id IS NOT NULL THEN
            PERFORM skipq.batch_count(OLD.batch_id, 'cancelled', 1);
        END IF;
        IF OLD.dependants THEN
            PERFORM skipq.deps_settle(OLD.id, 'cancelled', NULL, 'deleted');
        END IF;
    END IF;
    IF OLD.has_parents THEN
        DELETE FROM skipq.job_dependencies d WHERE d.child = OLD.id;
        DELETE FROM skipq.job_waits w WHERE w.child = OLD.id;
    END IF;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.deps_row_deleted() FROM PUBLIC;

CREATE OR REPLACE TRIGGER jobs_deps_deleted
    AFTER DELETE ON skipq.jobs
    FOR EACH ROW
    WHEN (OLD.dependants OR OLD.batch_id IS NOT NULL OR OLD.has_parents)
    EXECUTE FUNCTION skipq.deps_row_deleted();

-- A finished job with parents put back in the queue (retry, recover)
-- waits again while a parent has not let it go: retrying a job cancelled
-- because its parent failed must not run it before that parent succeeds
-- (test retry_of_cancelled_child_waits_again). It is set back to waiting
-- in the same transaction, before anyone can claim it. An AFTER trigger:
-- a BEFORE UPDATE row trigger, whatever its WHEN, would make every claim
-- and completion lock each row once more before updating it.
CREATE OR REPLACE FUNCTION skipq.deps_requeue()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM FROM skipq.job_waits w WHERE w.child = NEW.id AND w.pending > 0 FOR UPDATE;
    IF FOUND THEN
        UPDATE skipq.job_waits w SET cancelled_by = NULL WHERE w.child = NEW.id;
        -- the parent's failure that cancelled it stays in its history
        UPDATE skipq.jobs j
        SET status = 'waiting',
            last_error = CASE WHEN OLD.status = 'cancelled' THEN NULL ELSE j.last_error END
        WHERE j.id = NEW.id AND j.status = 'queued';
    END IF;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.deps_requeue() FROM PUBLIC;

CREATE OR REPLACE TRIGGER jobs_deps_requeue
    AFTER UPDATE OF status ON skipq.jobs
    FOR EACH ROW
    WHEN (NEW.has_parents AND NEW.status = 'queued'
          AND OLD.status IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION skipq.deps_requeue();

-- ---------------------------------------------------------------------------
-- Chains
-- ---------------------------------------------------------------------------

-- enqueue_chain: jobs, a JSON array of objects {"kind", "payload", "queue",
-- "priority", "run_at", "max_attempts", "timeout", "on_parent_failure"},
-- each depending on the one before; the first may name "depends_on": [ids]
-- of existing jobs. batch: every job joins it. Returns the ids in order.
CREATE OR REPLACE FUNCTION skipq.enqueue_chain(jobs jsonb, batch bigint DEFAULT NULL)
RETURNS bigint[] LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j jsonb;
    ids bigint[] := '{}';
    prev bigint[];
    n int := 0;
BEGIN
    IF jsonb_typeof(jobs) IS DISTINCT FROM 'array' OR jsonb_array_length(jobs) = 0 THEN
        RAISE EXCEPTION 'jobs must be a non-empty JSON array of job objects'
            USING ERRCODE = '22023';
    END IF;
    FOR j IN SELECT e FROM jsonb_array_elements(jobs) e LOOP
        n := n + 1;
        IF jsonb_typeof(j) <> 'object' OR jsonb_typeof(j -> 'kind') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION 'job % of the chain must be an object with a "kind" string', n
                USING ERRCODE = '22023';
        END IF;
        IF n = 1 THEN
            prev := CASE WHEN j ? 'depends_on'
                         THEN ARRAY(SELECT x::bigint FROM jsonb_array_elements_text(
                                        j -> 'depends_on') x) END;
        ELSIF j ? 'depends_on' THEN
            RAISE EXCEPTION 'only the first job of a chain may name depends_on (job %)', n
                USING ERRCODE = '22023';
        END IF;
        ids := ids || skipq.enqueue(
            j ->> 'kind', coalesce(j -> 'payload', '{}'), coalesce(j ->> 'queue', 'default'),
            coalesce(j ->> 'priority', '0'), coalesce((j ->> 'run_at')::timestamptz, now()),
            (j ->> 'max_attempts')::int, NULL, NULL, NULL, (j ->> 'timeout')::interval,
            depends_on => prev,
            on_parent_failure => coalesce(j ->> 'on_parent_failure', 'cancel'),
            batch => batch);
        prev := ARRAY[ids[n]];
    END LOOP;
    RETURN ids;
END $$;
