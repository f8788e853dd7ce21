-- limits.sql: flow control held in skipq.queues (the columns are
-- migrations/0009_flow_control.sql): how many of a queue's jobs run at
-- once, in all and per concurrency_key; how many start per interval; and
-- priority aging. Re-applied by every `skipq migrate`.
--
-- A worker claims from a queue that has any of these settings through
-- skipq.claim_controlled(), never through skipq.claim(): it locks the
-- queue's row, so claims from that queue happen one at a time, each
-- counting what the ones before it committed. Counting running rows under
-- SKIP LOCKED alone would let two claims each see room for the same slot.
-- Locking the row takes UPDATE on skipq.queues (skipq_admin) or a call of
-- claim_controlled (skipq_worker); a claim waits for it half a second at
-- most and then claims nothing. Queues without settings never take it.

-- The start of the rate window that holds t: windows of length i,
-- aligned to the epoch. Months are refused by skipq.queue_set, so every
-- window has the same length.
CREATE OR REPLACE FUNCTION skipq.rate_window(t timestamptz, i interval)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.to_timestamp(
        pg_catalog.floor(pg_catalog.date_part('epoch', t) / pg_catalog.date_part('epoch', i))
        * pg_catalog.date_part('epoch', i))
$$;

-- The jobs a claim from queue q may take, in the order it takes them, at
-- most n, none of them locked yet: with aging, the jobs runnable since
-- before t - age_after, oldest first; then claim order (priority DESC,
-- run_at, id). With a per-key limit or rate (`rated`: what each key
-- claimed in this window), a key gets no more than its room, and the
-- first jobs of each key with room are found by key (jobs_keyed_idx), so
-- one key's backlog does not hide the next key's jobs. The keys are
-- walked from q.key_cursor, a bounded number per claim, and next_key says
-- where the next claim goes on (NULL: from the first key); jobs without a
-- key in such a queue are found among its first few hundred in claim
-- order.
CREATE OR REPLACE FUNCTION skipq.claim_candidates(
    q        skipq.queues,
    p_lo     int2,
    p_hi     int2,
    p_kinds  text[],
    p_n      int4,
    t        timestamptz,
    rated    jsonb,
    OUT taken    int8[],
    OUT next_key text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n      int := least(greatest(p_n, 0), 1000);
    walk   int := greatest(64, 4 * least(greatest(p_n, 0), 1000)); /* keys per claim */
    held   jsonb := '{}';
    walked text[] := '{}';
    r      record;
    k      text;
    -- the first jobs of each key are looked up by key
    by_key boolean := q.key_max_running IS NOT NULL OR rated IS NOT NULL;
BEGIN
    taken := '{}';
    IF q.key_max_running IS NOT NULL THEN
        SELECT coalesce(jsonb_object_agg(c.key, c.n), '{}') INTO held
          FROM (SELECT j.concurrency_key AS key, count(*) AS n FROM skipq.jobs j
                 WHERE j.status = 'running' AND j.queue = q.queue
                   AND j.concurrency_key IS NOT NULL
                 GROUP BY j.concurrency_key) c;
    END IF;
    IF by_key THEN
        WITH RECURSIVE
        ahead(key, i) AS (
            SELECT min(j.concurrency_key), 1 FROM skipq.jobs j
             WHERE j.status = 'queued' AND j.queue = q.queue
               AND j.concurrency_key > coalesce(q.key_cursor, '')
            UNION ALL
            SELECT (SELECT min(j.concurrency_key) FROM skipq.jobs j
                     WHERE j.status = 'queued' AND j.queue = q.queue
                       AND j.concurrency_key > a.key), a.i + 1
              FROM ahead a WHERE a.key IS NOT NULL AND a.i < walk),
        behind(key, i) AS (
            SELECT min(j.concurrency_key),
                   (SELECT count(*)::int FROM ahead WHERE ahead.key IS NOT NULL) + 1
              FROM skipq.jobs j
             WHERE q.key_cursor IS NOT NULL AND j.status = 'queued' AND j.queue = q.queue
               AND j.concurrency_key IS NOT NULL AND j.concurrency_key <= q.key_cursor
            UNION ALL
            SELECT (SELECT min(j.concurrency_key) FROM skipq.jobs j
                     WHERE j.status = 'queued' AND j.queue = q.queue
                       AND j.concurrency_key > b.key
                       AND j.concurrency_key <= q.key_cursor), b.i + 1
              FROM behind b WHERE b.key IS NOT NULL AND b.i < walk)
        SELECT coalesce(array_agg(w.key ORDER BY w.i), '{}') INTO walked
          FROM (SELECT * FROM ahead UNION ALL SELECT * FROM behind) w
         WHERE w.key IS NOT NULL AND w.i <= walk;
        IF cardinality(walked) >= walk THEN
            next_key := walked[cardinality(walked)];
        END IF;
    END IF;
    FOR r IN
        WITH RECURSIVE
        pri(p) AS (
            SELECT max(j.priority) FROM skipq.jobs j
             WHERE q.age_after IS NOT NULL AND j.status = 'queued'
               AND j.queue = q.queue AND j.priority BETWEEN p_lo AND p_hi
            UNION ALL
            SELECT (SELECT max(j.priority) FROM skipq.jobs j
                     WHERE j.status = 'queued' AND j.queue = q.queue
                       AND j.priority >= p_lo AND j.priority < pri.p)
              FROM pri WHERE pri.p IS NOT NULL),
        aged AS (
            SELECT a.id, a.key, 0 AS grp, 0::int2 AS priority, a.run_at
              FROM pri CROSS JOIN LATERAL (
                SELECT j.id, j.concurrency_key AS key, j.run_at FROM skipq.jobs j
                 WHERE j.status = 'queued' AND j.queue = q.queue
                   AND j.priority = pri.p AND j.run_at <= t - q.age_after
                   AND j.kind = ANY (p_kinds)
                 ORDER BY j.run_at, j.id LIMIT 4 * n) a
             WHERE pri.p IS NOT NULL
             ORDER BY a.run_at, a.id LIMIT 4 * n),
        keyed AS (
            SELECT h.id, keys.key, 1 AS grp, h.priority, h.run_at
              FROM pg_catalog.unnest(walked) AS keys(key) CROSS JOIN LATERAL (
                SELECT j.id, j.priority, j.run_at FROM skipq.jobs j
                 WHERE j.status = 'queued' AND j.queue = q.queue
                   AND j.concurrency_key = keys.key
                   AND j.priority BETWEEN p_lo AND p_hi AND j.run_at <= t
                   AND j.kind = ANY (p_kinds)
                 ORDER BY j.priority DESC, j.run_at, j.id
                 LIMIT greatest(0, least(n,
                     q.key_max_running - coalesce((held ->> keys.key)::int, 0),
                     CASE WHEN rated IS NOT NULL
                          THEN q.rate_limit - coalesce((rated ->> keys.key)::int, 0) END))) h),
        head AS (
            SELECT h.id, h.key, 1 AS grp, h.priority, h.run_at FROM (
                SELECT j.id, j.concurrency_key AS key, j.priority, j.run_at, j.kind
                  FROM skipq.jobs j
                 WHERE j.status = 'queued' AND j.queue = q.queue
                   AND j.priority BETWEEN p_lo AND p_hi AND j.run_at <= t
                   AND (by_key OR j.kind = ANY (p_kinds))
                 ORDER BY j.priority DESC, j.run_at, j.id
                 LIMIT CASE WHEN by_key THEN 4 * n + 100 ELSE n END) h
             WHERE NOT by_key OR (h.key IS NULL AND h.kind = ANY (p_kinds)))
        SELECT c.id, c.key FROM (
            SELECT * FROM aged UNION ALL SELECT * FROM keyed UNION ALL SELECT * FROM head) c
         ORDER BY c.grp, CASE WHEN c.grp = 1 THEN c.priority END DESC, c.run_at, c.id
    LOOP
        EXIT WHEN cardinality(taken) >= n;
        CONTINUE WHEN r.id = ANY (taken);
        IF rated IS NOT NULL THEN /* a rate per key: '' for no key */
            k := coalesce(r.key, '');
            CONTINUE WHEN coalesce((rated ->> k)::int, 0) >= q.rate_limit;
            rated := rated || jsonb_build_object(k, coalesce((rated ->> k)::int, 0) + 1);
        END IF;
        IF q.key_max_running IS NOT NULL AND r.key IS NOT NULL THEN
            k := r.key;
            CONTINUE WHEN coalesce((held ->> k)::int, 0) >= q.key_max_running;
            held := held || jsonb_build_object(k, coalesce((held ->> k)::int, 0) + 1);
        END IF;
        taken := taken || r.id;
    END LOOP;
END
$$;

-- The claim of a worker from a queue with flow-control settings: the
-- same rows and columns as skipq.claim(), within the queue's limits. The
-- row lock on the queue's settings is held to the end of the claim's
-- transaction. started_at is the time the claim took the lock, so the
-- claims that count against one rate window are the ones stamped in it
-- (test flow_control.rate_limit_holds_in_every_window).
CREATE OR REPLACE FUNCTION skipq.claim_controlled(
    p_queue  text,
    p_lo     int2,
    p_hi     int2,
    p_kinds  text[],
    p_n      int4,
    p_worker int8,
    p_secret uuid)
RETURNS TABLE (id int8, claims int4, kind text, queue text, priority int2, attempts int4,
               payload text, max_attempts int4, backoff_strategy text,
               backoff_base_ms int8, backoff_max_ms int8, timeout_ms int8,
               cancel_requested boolean, run_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    q    skipq.queues;
    t    timestamptz;
    room int := p_n;
    win  timestamptz;
    used int := 0;
    rated jsonb; /* a rate per key: the jobs each key claimed in this window */
    cands int8[];
    cursor_key text;
    was  text;
    ids  int8[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM skipq.workers k
                   WHERE k.id = p_worker AND k.secret = p_secret) THEN
        RAISE EXCEPTION 'worker % is not registered with this secret', p_worker
            USING ERRCODE = '42501';
    END IF;
    /* Claims from the queue take turns on its row. A session that keeps
     * it locked (an open transaction of an operator's, or a worker role's
     * own call) costs a claim half a second and no more: it then claims
     * nothing, and the completions that share its transaction stand. */
    was := current_setting('lock_timeout');
    BEGIN
        PERFORM set_config('lock_timeout', '500ms', true);
        SELECT * INTO q FROM skipq.queues s WHERE s.queue = p_queue FOR NO KEY UPDATE;
    EXCEPTION WHEN lock_not_available THEN
        RETURN;
    END;
    PERFORM set_config('lock_timeout', was, true);
    IF q.queue IS NULL THEN /* the settings went: an ordinary claim */
        RETURN QUERY SELECT * FROM skipq.claim(p_queue, p_lo, p_hi, p_kinds, p_n,
                                                 p_worker, p_secret);
        RETURN;
    END IF;
    t := clock_timestamp();
    IF q.max_running IS NOT NULL THEN
        room := least(room, q.max_running - (SELECT count(*)::int FROM skipq.jobs j
                                              WHERE j.status = 'running'
                                                AND j.queue = p_queue));
    END IF;
    IF q.rate_limit IS NOT NULL THEN
        win := skipq.rate_window(t, q.rate_interval);
        IF q.rate_window = win THEN
            used := q.rate_used;
        END IF;
        IF q.rate_by = 'queue' THEN
            room := least(room, q.rate_limit - used);
        ELSE
            IF q.rate_window IS DISTINCT FROM win THEN /* first claim of a window */
                DELETE FROM skipq.rate_windows w
                 WHERE w.queue = p_queue AND w.window_start < win;
            END IF;
            SELECT coalesce(jsonb_object_agg(w.key, w.used), '{}') INTO rated
              FROM skipq.rate_windows w
             WHERE w.queue = p_queue AND w.window_start = win;
        END IF;
    END IF;
    IF room <= 0 THEN
        RETURN;
    END IF;
    SELECT c.taken, c.next_key INTO cands, cursor_key
      FROM skipq.claim_candidates(q, p_lo, p_hi, p_kinds, room, t, rated) c;
    /* a row that changed since it was chosen (cancelled, moved, made
     * later) is passed over */
    ids := ARRAY(
        SELECT j.id FROM pg_catalog.unnest(cands) WITH ORDINALITY AS c(id, ord)
          JOIN skipq.jobs j ON j.id = c.id
         WHERE j.status = 'queued' AND j.queue = p_queue AND j.run_at <= t
           AND j.priority BETWEEN p_lo AND p_hi AND j.kind = ANY (p_kinds)
         ORDER BY c.ord LIMIT room
           FOR NO KEY UPDATE OF j SKIP LOCKED);
    IF cursor_key IS DISTINCT FROM q.key_cursor THEN
        UPDATE skipq.queues s SET key_cursor = cursor_key WHERE s.queue = p_queue;
    END IF;
    IF q.rate_limit IS NOT NULL AND (cardinality(ids) > 0 OR q.rate_window IS DISTINCT FROM win)
    THEN
        UPDATE skipq.queues s SET rate_window = win, rate_used = used + cardinality(ids)
         WHERE s.queue = p_queue;
    END IF;
    IF rated IS NOT NULL AND cardinality(ids) > 0 THEN
        INSERT INTO skipq.rate_windows AS w (queue, key, window_start, used)
        SELECT p_queue, coalesce(j.concurrency_key, ''), win, count(*)
          FROM skipq.jobs j WHERE j.id = ANY (ids)
         GROUP BY coalesce(j.concurrency_key, '')
            ON CONFLICT ON CONSTRAINT rate_windows_pkey DO UPDATE
           SET used = CASE WHEN w.window_start = excluded.window_start
                           THEN w.used + excluded.used ELSE excluded.used END,
               window_start = excluded.window_start;
    END IF;
    RETURN QUERY
    WITH u AS (
        UPDATE skipq.jobs j SET status = 'running', attempts = j.attempts + 1,
               claims = j.claims + 1, locked_by = p_worker, started_at = t,
               updated_at = t
         WHERE j.id = ANY (ids)
        RETURNING j.id, j.claims, j.kind, j.queue, j.priority, j.attempts,
                  j.payload::text, coalesce(j.max_attempts, 0),
                  coalesce(j.backoff_strategy::text, ''),
                  coalesce((extract(epoch FROM j.backoff_base) * 1000.0)::int8, -1),
                  coalesce((extract(epoch FROM j.backoff_max) * 1000.0)::int8, -1),
                  coalesce((extract(epoch FROM j.timeout) * 1000.0)::int8, 0),
                  j.cancel_requested_at IS NOT NULL, j.run_at)
    SELECT u.* FROM u JOIN pg_catalog.unnest(ids) WITH ORDINALITY AS o(id, ord)
        ON o.id = u.id
     ORDER BY o.ord;
END
$$;

REVOKE EXECUTE ON FUNCTION
    skipq.claim_candidates(skipq.queues, int2, int2, text[], int4, timestamptz, jsonb),
    skipq.claim_controlled(text, int2, int2, text[], int4, int8, uuid)
    FROM PUBLIC;

-- Milliseconds until the next rate window of those of queues qs whose
-- current window is used up, or NULL: an idle worker claims again then,
-- not at its next poll.
CREATE OR REPLACE FUNCTION skipq.rate_wait_ms(qs text[])
RETURNS int8 LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT (extract(epoch FROM min(s.rate_window + s.rate_interval) - clock_timestamp())
            * 1000.0)::int8
      FROM skipq.queues s
     WHERE s.queue = ANY (qs) AND s.rate_limit IS NOT NULL
       AND s.rate_window + s.rate_interval > clock_timestamp()
       AND CASE WHEN s.rate_by = 'queue' THEN s.rate_used >= s.rate_limit
                ELSE EXISTS (SELECT FROM skipq.rate_windows w
                              WHERE w.queue = s.queue AND w.window_start = s.rate_window
                                AND w.used >= s.rate_limit) END
$$;

REVOKE EXECUTE ON FUNCTION skipq.rate_wait_ms(text[]) FROM PUBLIC;

-- A setting as skipq.queue_set takes it: NULL leaves it, 'none' clears it.
CREATE OR REPLACE FUNCTION skipq.queue_setting_int(what text, v text)
RETURNS int LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF v ~ '^\s*[0-9]{1,9}\s*$' THEN
        IF v::int >= 1 THEN
            RETURN v::int;
        END IF;
    END IF;
    RAISE EXCEPTION 'invalid %: "%" (a whole number from 1, or none)', what, v
        USING ERRCODE = '22023';
END
$$;

CREATE OR REPLACE FUNCTION skipq.queue_setting_interval(what text, v text)
RETURNS interval LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    i interval;
BEGIN
    BEGIN
        i := v::interval;
    EXCEPTION WHEN OTHERS THEN
        i := NULL;
    END;
    IF i IS NULL OR date_part('month', i) <> 0 OR date_part('year', i) <> 0
       OR i < interval '1 millisecond' THEN
        RAISE EXCEPTION 'invalid %: "%" (a duration such as 500ms, 1s, 5m or 1h, of at least 1ms)',
            what, v USING ERRCODE = '22023';
    END IF;
    RETURN i;
END
$$;

-- Change queue `queue`'s flow control. Each setting is text, as the CLI
-- takes it: NULL leaves it as it is, 'none' clears it.
--   max_running          '3': at most 3 of its jobs run at once
--   max_running_per_key  '1': at most 1 per concurrency_key
--   rate                 '20/1s': at most 20 start per second ('20/s' too)
--   rate_by              'queue' (the default): the queue's rate; 'key':
--                        each concurrency_key's (jobs without one share one)
--   age_after            '5m': a job runnable for 5 minutes goes first
-- Workers hear of it at once (a NOTIFY on skipq_control that only makes
-- them read the table). Returns the queue's settings as they now are.
CREATE OR REPLACE FUNCTION skipq.queue_set(
    queue               text,
    max_running         text DEFAULT NULL,
    rate                text DEFAULT NULL,
    max_running_per_key text DEFAULT NULL,
    age_after           text DEFAULT NULL,
    rate_by             text DEFAULT NULL)
RETURNS skipq.queues LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m       text[];
    run_n   int;
    key_n   int;
    limit_n int;
    every   interval;
    age     interval;
    q       skipq.queues;
BEGIN
    IF queue IS NULL OR octet_length(queue) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'invalid queue name "%": 1 to 200 bytes', queue
            USING ERRCODE = '22023';
    END IF;
    IF max_running <> 'none' THEN
        run_n := skipq.queue_setting_int('max_running', max_running);
    END IF;
    IF max_running_per_key <> 'none' THEN
        key_n := skipq.queue_setting_int('max_running_per_key', max_running_per_key);
    END IF;
    IF rate_by NOT IN ('queue', 'key') THEN
        RAISE EXCEPTION 'invalid rate_by: "%" (queue or key)', rate_by USING ERRCODE = '22023';
    END IF;
    IF age_after <> 'none' THEN
        age := skipq.queue_setting_interval('age_after', age_after);
    END IF;
    IF rate <> 'none' THEN
        m := regexp_match(rate, '^\s*([0-9]{1,9})\s*/\s*([0-9.]*)\s*([a-z]+)\s*$');
        IF m IS NULL OR m[1]::int < 1 THEN
            RAISE EXCEPTION 'invalid rate: "%" (jobs/interval, such as 20/1s or 100/1m, or none)',
                rate USING ERRCODE = '22023';
        END IF;
        limit_n := m[1]::int;
        every := skipq.queue_setting_interval('rate interval',
                                              CASE WHEN m[2] = '' THEN '1' ELSE m[2] END
                                              || m[3]);
    END IF;
    INSERT INTO skipq.queues AS s (queue) VALUES (queue_set.queue)
        ON CONFLICT ON CONSTRAINT queues_pkey DO NOTHING;
    UPDATE skipq.queues s SET
        max_running = CASE WHEN queue_set.max_running IS NULL THEN s.max_running
                           ELSE run_n END,
        key_max_running = CASE WHEN max_running_per_key IS NULL THEN s.key_max_running
                               ELSE key_n END,
        rate_limit = CASE WHEN rate IS NULL THEN s.rate_limit ELSE limit_n END,
        rate_interval = CASE WHEN rate IS NULL THEN s.rate_interval ELSE every END,
        rate_by = coalesce(queue_set.rate_by, s.rate_by),
        /* a window's count starts over only when the rate changes */
        rate_window = CASE WHEN (rate IS NULL OR (limit_n, every) IS NOT DISTINCT FROM
                                                 (s.rate_limit, s.rate_interval))
                                AND coalesce(queue_set.rate_by, s.rate_by) = s.rate_by
                           THEN s.rate_window END,
        rate_used = CASE WHEN (rate IS NULL OR (limit_n, every) IS NOT DISTINCT FROM
                                               (s.rate_limit, s.rate_interval))
                              AND coalesce(queue_set.rate_by, s.rate_by) = s.rate_by
                         THEN s.rate_used ELSE 0 END,
        age_after = CASE WHEN queue_set.age_after IS NULL THEN s.age_after ELSE age END,
        updated_at = now()
     WHERE s.queue = queue_set.queue
    RETURNING * INTO q;
    PERFORM pg_notify('skipq_control', format('set %s', queue_set.queue));
    RETURN q;
END
$$;

REVOKE EXECUTE ON FUNCTION skipq.queue_set(text, text, text, text, text, text) FROM PUBLIC;

-- A duration as `skipq queue set` takes it: 250ms, 1s, 5m, 2h, 1d.
CREATE OR REPLACE FUNCTION skipq.duration_text(i interval)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN ms % 86400000 = 0 THEN (ms / 86400000) || 'd'
                WHEN ms % 3600000 = 0 THEN (ms / 3600000) || 'h'
                WHEN ms % 60000 = 0 THEN (ms / 60000) || 'm'
                WHEN ms % 1000 = 0 THEN (ms / 1000) || 's'
                ELSE ms || 'ms' END
      FROM (SELECT round(date_part('epoch', i) * 1000)::int8 AS ms) AS d
$$;
