-- enqueue.sql: the SQL way in, usable from psql, triggers and any language.
-- Re-applied by every `skipq migrate`, after functions.sql.
--
-- priority takes names and numbers alike ('high', 10, '10'). NULL retry
-- settings mean "the worker's configured default". One signature carries
-- every option, so that no older overload can make skipq.enqueue('k')
-- ambiguous (test enqueue_has_one_signature).

DROP FUNCTION IF EXISTS skipq.enqueue(text, jsonb, text, anycompatible, timestamptz, int,
                                      skipq.backoff_strategy, interval, interval, interval);

-- The unique paths of skipq.enqueue_unique. A producer may insert jobs but
-- not update them: replace and debounce change the one waiting job that
-- holds the key, and nothing else, as the schema's owner.
CREATE OR REPLACE FUNCTION skipq.unique_update(
    key text, mode text, new_payload jsonb, new_run_at timestamptz, new_priority smallint)
RETURNS bigint LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    UPDATE skipq.jobs j
    SET payload = CASE WHEN mode = 'replace' THEN new_payload ELSE j.payload END,
        priority = CASE WHEN mode = 'replace' THEN new_priority ELSE j.priority END,
        run_at = CASE WHEN mode = 'replace' THEN new_run_at
                      ELSE greatest(j.run_at, new_run_at) END,
        updated_at = now()
    WHERE j.unique_key = key AND j.status IN ('waiting', 'queued')
    RETURNING j.id
$$;
REVOKE EXECUTE ON FUNCTION skipq.unique_update(text, text, jsonb, timestamptz, smallint)
    FROM PUBLIC;

-- The job that holds a key now: an unfinished one, or the one whose window
-- after success has not yet passed. The window's row outlives the job's.
CREATE OR REPLACE FUNCTION skipq.unique_holder(key text)
RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(
        (SELECT j.id FROM skipq.jobs j
         WHERE j.unique_key = key AND j.status IN ('waiting', 'queued', 'running')),
        (SELECT w.job_id FROM skipq.unique_windows w
         WHERE w.unique_key = key AND w.until > now()))
$$;
REVOKE EXECUTE ON FUNCTION skipq.unique_holder(text) FROM PUBLIC;

-- A job with a unique window that succeeds keeps its key taken until
-- finished_at + window, in a row of its own (test
-- unique_window_outlives_a_deleted_job). A failed or cancelled job frees
-- its key at once: enqueueing it again is how it is retried. Each window
-- opened deletes up to ten that have passed, so the table holds about as
-- many rows as there are windows open (test expired_windows_are_swept).
CREATE OR REPLACE FUNCTION skipq.unique_window_open()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r skipq.jobs;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    INSERT INTO skipq.unique_windows AS w (unique_key, job_id, until)
    VALUES (r.unique_key, r.id, coalesce(r.finished_at, now()) + r.unique_window)
    ON CONFLICT (unique_key) DO UPDATE
        SET job_id = excluded.job_id, until = excluded.until;
    DELETE FROM skipq.unique_windows w
    WHERE w.ctid = ANY (ARRAY(
        SELECT x.ctid FROM skipq.unique_windows x
        WHERE x.until < now() ORDER BY x.until LIMIT 10
        FOR UPDATE SKIP LOCKED));
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.unique_window_open() FROM PUBLIC;

-- Row triggers whose WHEN is false for every job without a window: such a
-- completion never calls the function.
CREATE OR REPLACE TRIGGER jobs_unique_window
    AFTER UPDATE OF status ON skipq.jobs
    FOR EACH ROW
    WHEN (NEW.unique_window IS NOT NULL AND NEW.status = 'succeeded'
          AND OLD.status <> 'succeeded')
    EXECUTE FUNCTION skipq.unique_window_open();
-- on_success: delete removes a running row that succeeded
CREATE OR REPLACE TRIGGER jobs_unique_window_deleted
    AFTER DELETE ON skipq.jobs
    FOR EACH ROW
    WHEN (OLD.unique_window IS NOT NULL AND OLD.status = 'running')
    EXECUTE FUNCTION skipq.unique_window_open();

-- enqueue_unique: enqueue, and say whether a row was inserted. With a
-- unique_key, while a job with that key is unfinished (waiting, queued or
-- running), or within unique_window after it succeeded, no second row is
-- created and id is the existing job's:
--   keep     leave the existing job as it is (the default)
--   replace  set the waiting job's payload, run_at and priority
--   debounce push the waiting job's run_at out to the new one, if later
-- A running job is never changed. The race between producers is settled
-- by jobs_unique_idx (INSERT ... ON CONFLICT), never by a read before the
-- insert (test sixteen_producers_one_unique_row).
CREATE OR REPLACE FUNCTION skipq.enqueue_unique(
    kind              text,
    payload           jsonb DEFAULT '{}',
    queue             text DEFAULT 'default',
    priority          anycompatible DEFAULT 0,
    run_at            timestamptz DEFAULT now(),
    max_attempts      int DEFAULT NULL,
    backoff_strategy  skipq.backoff_strategy DEFAULT NULL,
    backoff_base      interval DEFAULT NULL,
    backoff_max       interval DEFAULT NULL,
    timeout           interval DEFAULT NULL,
    unique_key        text DEFAULT NULL,
    unique_mode       text DEFAULT 'keep',
    unique_window     interval DEFAULT NULL,
    depends_on        bigint[] DEFAULT NULL,
    on_parent_failure text DEFAULT 'cancel',
    batch             bigint DEFAULT NULL,
    concurrency_key   text DEFAULT NULL,
    meta              jsonb DEFAULT NULL,
    tags              text[] DEFAULT NULL,
    OUT id            bigint,
    OUT inserted      boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    p smallint := skipq.priority_value(coalesce(priority::text, '0'));
    at timestamptz := coalesce(run_at, now());
    mode text := coalesce(unique_mode, 'keep');
BEGIN
    IF mode NOT IN ('keep', 'replace', 'debounce') THEN
        RAISE EXCEPTION 'unknown unique_mode "%": use keep, replace or debounce', mode
            USING ERRCODE = '22023';
    END IF;
    IF unique_window < interval '0' THEN
        RAISE EXCEPTION 'unique_window must not be negative, not %', unique_window
            USING ERRCODE = '22023';
    END IF;
    IF unique_window IS NOT NULL AND unique_key IS NULL THEN
        RAISE EXCEPTION 'unique_window needs a unique_key' USING ERRCODE = '22023';
    END IF;
    IF coalesce(on_parent_failure, 'cancel') NOT IN ('cancel', 'run') THEN
        RAISE EXCEPTION 'unknown on_parent_failure "%": use cancel or run', on_parent_failure
            USING ERRCODE = '22023';
    END IF;
    LOOP
        IF unique_key IS NOT NULL THEN
            IF mode <> 'keep' THEN
                id := skipq.unique_update(unique_key, mode, coalesce(payload, '{}'), at, p);
                IF id IS NOT NULL THEN
                    inserted := false;
                    RETURN;
                END IF;
            END IF;
            -- a window after success holds the key with no row to conflict with
            SELECT w.job_id INTO id FROM skipq.unique_windows w
            WHERE w.unique_key = enqueue_unique.unique_key AND w.until > now();
            IF id IS NOT NULL THEN
                inserted := false;
                RETURN;
            END IF;
        END IF;
        INSERT INTO skipq.jobs AS j (kind, payload, queue, priority, run_at, max_attempts,
                                     backoff_strategy, backoff_base, backoff_max, timeout,
                                     unique_key, unique_window, concurrency_key, meta, tags)
        VALUES (kind, coalesce(payload, '{}'), coalesce(queue, 'default'), p, at,
                max_attempts, backoff_strategy, backoff_base, backoff_max, timeout,
                unique_key, unique_window, concurrency_key, meta, tags)
        ON CONFLICT (unique_key)
            WHERE unique_key IS NOT NULL AND status IN ('waiting', 'queued', 'running')
            DO NOTHING
        RETURNING j.id INTO id;
        IF id IS NOT NULL THEN
            inserted := true;
            -- parents and batch (sql/deps.sql): the new job waits, or not
            IF cardinality(depends_on) > 0 OR batch IS NOT NULL THEN
                PERFORM skipq.deps_attach(id, depends_on, on_parent_failure, batch);
            END IF;
            RETURN;
        END IF;
        -- the key is held: by whom, unless that job finished meanwhile
        id := skipq.unique_holder(unique_key);
        IF id IS NOT NULL THEN
            inserted := false;
            RETURN;
        END IF;
    END LOOP;
END $$;

-- enqueue: the same, returning the job's id (the existing job's when its
-- unique key matched).
CREATE OR REPLACE FUNCTION skipq.enqueue(
    kind              text,
    payload           jsonb DEFAULT '{}',
    queue             text DEFAULT 'default',
    priority          anycompatible DEFAULT 0,
    run_at            timestamptz DEFAULT now(),
    max_attempts      int DEFAULT NULL,
    backoff_strategy  skipq.backoff_strategy DEFAULT NULL,
    backoff_base      interval DEFAULT NULL,
    backoff_max       interval DEFAULT NULL,
    timeout           interval DEFAULT NULL,
    unique_key        text DEFAULT NULL,
    unique_mode       text DEFAULT 'keep',
    unique_window     interval DEFAULT NULL,
    depends_on        bigint[] DEFAULT NULL,
    on_parent_failure text DEFAULT 'cancel',
    batch             bigint DEFAULT NULL,
    concurrency_key   text DEFAULT NULL,
    meta              jsonb DEFAULT NULL,
    tags              text[] DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r bigint;
BEGIN
    -- the plain job: one insert, as before there were options
    IF unique_key IS NULL AND unique_window IS NULL AND depends_on IS NULL
       AND batch IS NULL AND coalesce(unique_mode, 'keep') = 'keep' THEN
        INSERT INTO skipq.jobs AS j (kind, payload, queue, priority, run_at, max_attempts,
                                     backoff_strategy, backoff_base, backoff_max, timeout,
                                     concurrency_key, meta, tags)
        VALUES (kind, coalesce(payload, '{}'), coalesce(queue, 'default'),
                skipq.priority_value(coalesce(priority::text, '0')),
                coalesce(run_at, now()), max_attempts, backoff_strategy, backoff_base,
                backoff_max, timeout, concurrency_key, meta, tags)
        RETURNING j.id INTO r;
        RETURN r;
    END IF;
    SELECT u.id INTO r
    FROM skipq.enqueue_unique(kind, payload, queue, priority, run_at, max_attempts,
                              backoff_strategy, backoff_base, backoff_max, timeout,
                              unique_key, unique_mode, unique_window, depends_on,
                              on_parent_failure, batch, concurrency_key, meta, tags) u;
    RETURN r;
END $$;
