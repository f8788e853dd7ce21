-- schedules.sql: periodic jobs (the table is migrations/0007_schedules.sql).
-- Re-applied by every `skipq migrate`.
--
-- A schedule's slots are the times its cron expression names, read on the
-- wall clock of its time zone; each slot is enqueued once, by whichever
-- worker's maintenance thread takes the tick's turn (skipq.schedule_tick).
-- Cron evaluation is here, in SQL, so that PostgreSQL's own time zone
-- database decides what a daylight-saving change does, and `skipq schedule
-- ls` and psql see the same next run times as the workers.

-- ---- cron expressions ----------------------------------------------------

-- One value of a field: a number in lo..hi, or a name (names[1] is lo).
CREATE OR REPLACE FUNCTION skipq.cron_value(expr text, what text, v text, lo int,
                                            hi int, names text[])
RETURNS int LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n int;
BEGIN
    IF v ~ '^[0-9]{1,4}$' THEN
        n := v::int;
    ELSIF v ~ '^[0-9]+$' THEN
        n := hi + 1;
    ELSE
        n := array_position(names, v) - 1 + lo;
        IF n IS NULL THEN
            RAISE EXCEPTION 'invalid cron expression "%": % "%" is not a number%', expr,
                what, v, CASE WHEN names IS NULL THEN '' ELSE ' or a name' END
                USING ERRCODE = '22023';
        END IF;
    END IF;
    IF n < lo OR n > hi THEN
        RAISE EXCEPTION 'invalid cron expression "%": % "%" is out of range %-%', expr,
            what, v, lo, hi USING ERRCODE = '22023';
    END IF;
    RETURN n;
END $$;

-- The values one field allows, sorted: "*", "5", "1-5", "*/15", "10-50/20",
-- "5/15" (from 5 to the end), lists of these ("1,15,30"), names ("mon-fri").
CREATE OR REPLACE FUNCTION skipq.cron_field(expr text, what text, field text, lo int,
                                            hi int, names text[])
RETURNS int[] LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    part text;
    rng text;
    st text;
    a int;
    b int;
    step int;
    x int;
    seen boolean[] := array_fill(false, ARRAY[hi - lo + 1], ARRAY[lo]);
    vals int[] := '{}';
BEGIN
    -- loops and arrays only, no subquery: a subquery in PL/pgSQL is an
    -- executor run of its own, and made parsing ten times dearer
    FOREACH part IN ARRAY string_to_array(lower(field), ',') LOOP
        -- split by hand: regexp_match with groups cost a millisecond a call
        rng := split_part(part, '/', 1);
        st := CASE WHEN strpos(part, '/') > 0 THEN split_part(part, '/', 2) END;
        IF rng = '' OR st = '' OR part LIKE '%/%/%' OR rng LIKE '%-%-%'
           OR rng LIKE '-%' OR rng LIKE '%-' OR (rng LIKE '%*%' AND rng <> '*') THEN
            RAISE EXCEPTION 'invalid cron expression "%": % "%" is not a value, range or step',
                expr, what, part USING ERRCODE = '22023';
        END IF;
        IF st !~ '^[0-9]+$' THEN
            RAISE EXCEPTION 'invalid cron expression "%": % step "%" is not a number',
                expr, what, st USING ERRCODE = '22023';
        END IF;
        step := CASE WHEN st IS NULL THEN 1 WHEN length(st) <= 4 THEN st::int END;
        IF step IS NULL OR step < 1 OR step > hi THEN
            RAISE EXCEPTION 'invalid cron expression "%": % step "%" is out of range 1-%',
                expr, what, st, hi USING ERRCODE = '22023';
        END IF;
        IF rng = '*' THEN
            a := lo;
            b := hi;
        ELSIF strpos(rng, '-') > 0 THEN
            a := skipq.cron_value(expr, what, split_part(rng, '-', 1), lo, hi, names);
            b := skipq.cron_value(expr, what, split_part(rng, '-', 2), lo, hi, names);
        ELSE
            a := skipq.cron_value(expr, what, rng, lo, hi, names);
            b := CASE WHEN st IS NOT NULL THEN hi ELSE a END;
        END IF;
        IF a > b THEN
            RAISE EXCEPTION 'invalid cron expression "%": % range "%" runs backwards',
                expr, what, part USING ERRCODE = '22023';
        END IF;
        FOR x IN a .. b BY step LOOP
            seen[x] := true;
        END LOOP;
    END LOOP;
    FOR x IN lo .. hi LOOP
        IF seen[x] THEN
            vals := vals || x;
        END IF;
    END LOOP;
    RETURN vals;
END $$;

-- An expression taken apart. every_s is set for "@every 90s" (and the
-- fields are NULL); otherwise the five fields' values, and whether the
-- day-of-month and day-of-week fields were "*" (cron's rule: when both
-- are restricted, a day matching either runs).
CREATE OR REPLACE FUNCTION skipq.cron_parse(
    expr text, OUT minutes int[], OUT hours int[], OUT doms int[], OUT months int[],
    OUT dows int[], OUT dom_any boolean, OUT dow_any boolean, OUT every_s bigint)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    e text := lower(btrim(coalesce(expr, ''), E' \t'));
    f text[];
    m text[];
    d text;
BEGIN
    IF e LIKE '@every%' THEN
        d := btrim(substr(e, 7), E' \t');
        IF d !~ '^([0-9]{1,9}[dhms])+$' THEN
            RAISE EXCEPTION 'invalid cron expression "%": @every takes a duration such as 30s, 5m, 2h or 1h30m, not "%"',
                expr, d USING ERRCODE = '22023';
        END IF;
        every_s := 0;
        FOR m IN SELECT regexp_matches(d, '([0-9]+)([dhms])', 'g') LOOP
            every_s := every_s + m[1]::bigint *
                CASE m[2] WHEN 'd' THEN 86400 WHEN 'h' THEN 3600 WHEN 'm' THEN 60 ELSE 1 END;
        END LOOP;
        IF every_s < 1 OR every_s > 366 * 86400 THEN
            RAISE EXCEPTION 'invalid cron expression "%": @every "%" must be between 1s and 366d',
                expr, d USING ERRCODE = '22023';
        END IF;
        RETURN;
    END IF;
    e := CASE e WHEN '@yearly' THEN '0 0 1 1 *' WHEN '@annually' THEN '0 0 1 1 *'
                WHEN '@monthly' THEN '0 0 1 * *' WHEN '@weekly' THEN '0 0 * * 0'
                WHEN '@daily' THEN '0 0 * * *' WHEN '@midnight' THEN '0 0 * * *'
                WHEN '@hourly' THEN '0 * * * *' ELSE e END;
    IF e LIKE '@%' THEN
        RAISE EXCEPTION 'invalid cron expression "%": unknown name "%" (use @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every)',
            expr, split_part(e, ' ', 1) USING ERRCODE = '22023';
    END IF;
    f := regexp_split_to_array(e, E'[ \t]+');
    IF e = '' OR cardinality(f) <> 5 THEN
        RAISE EXCEPTION 'invalid cron expression "%": expected 5 fields (minute hour day-of-month month day-of-week), got %',
            expr, CASE WHEN e = '' THEN 0 ELSE cardinality(f) END USING ERRCODE = '22023';
    END IF;
    minutes := skipq.cron_field(expr, 'minute', f[1], 0, 59, NULL);
    hours := skipq.cron_field(expr, 'hour', f[2], 0, 23, NULL);
    doms := skipq.cron_field(expr, 'day of month', f[3], 1, 31, NULL);
    months := skipq.cron_field(expr, 'month', f[4], 1, 12,
        '{jan,feb,mar,apr,may,jun,jul,aug,sep,oct,nov,dec}');
    dows := skipq.cron_field(expr, 'day of week', f[5], 0, 7,
        '{sun,mon,tue,wed,thu,fri,sat}');
    -- 7 is Sunday too
    IF dows[cardinality(dows)] = 7 THEN
        dows := dows[1:cardinality(dows) - 1];
        IF NOT 0 = ANY (dows) THEN
            dows := 0 || dows;
        END IF;
    END IF;
    dom_any := f[3] LIKE '*%';
    dow_any := f[5] LIKE '*%';
END $$;

-- The instant a wall-clock time of zone tz stands for. A time the clock
-- skips (spring forward: 02:30 on that day) is PostgreSQL's reading, the
-- instant as many minutes after the jump (03:30 in a one-hour jump); a
-- time the clock shows twice (fall back) is its first occurrence.
CREATE OR REPLACE FUNCTION skipq.cron_instant(wall timestamp, tz text)
RETURNS timestamptz LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t timestamptz := wall AT TIME ZONE tz;
    b timestamptz := t - interval '3 hours';
    early timestamptz := (wall - ((b AT TIME ZONE tz) - (b AT TIME ZONE 'UTC'))) AT TIME ZONE 'UTC';
BEGIN
    IF early < t AND (early AT TIME ZONE tz) = wall THEN
        RETURN early;
    END IF;
    RETURN t;
END $$;

-- The first slot of expr strictly after `after`, in time zone tz; NULL if
-- there is none within nine years (an expression such as "0 0 30 2 *",
-- which skipq.schedule refuses). Fields are matched on the wall clock of
-- tz, moving a field at a time (a month, a day, an hour, a minute), so a
-- yearly expression costs a few dozen steps, not a minute per step. Each
-- wall-clock time runs once (see skipq.cron_instant); the search goes on
-- past an instant that is not after `after`, which happens only around a
-- daylight-saving change. @every slots are whole multiples of the interval
-- since the Unix epoch, whatever the zone: contiguous and the same on
-- every worker.
CREATE OR REPLACE FUNCTION skipq.cron_next(expr text, tz text DEFAULT 'UTC',
                                           after timestamptz DEFAULT now())
RETURNS timestamptz LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p record;
    t timestamp;
    r timestamptz;
    stop_year int;
    v int;
    x int;
    nv int;
    day_ok boolean;
BEGIN
    p := skipq.cron_parse(expr);
    IF p.every_s IS NOT NULL THEN
        RETURN to_timestamp(((floor(extract(epoch FROM after) / p.every_s) + 1) * p.every_s)::float8);
    END IF;
    t := date_trunc('minute', after AT TIME ZONE tz) + interval '1 minute';
    stop_year := extract(year FROM t)::int + 9;
    LOOP
        IF extract(year FROM t) > stop_year THEN
            RETURN NULL;
        END IF;
        v := extract(month FROM t);
        IF NOT v = ANY (p.months) THEN
            nv := NULL; -- the next allowed value (the arrays are sorted)
            FOREACH x IN ARRAY p.months LOOP
                IF x > v THEN nv := x; EXIT; END IF;
            END LOOP;
            v := nv;
            t := CASE WHEN v IS NULL
                      THEN make_timestamp(extract(year FROM t)::int + 1, p.months[1], 1, 0, 0, 0)
                      ELSE make_timestamp(extract(year FROM t)::int, v, 1, 0, 0, 0) END;
            CONTINUE;
        END IF;
        day_ok := CASE WHEN p.dom_any AND p.dow_any THEN true
                       WHEN p.dom_any THEN extract(dow FROM t)::int = ANY (p.dows)
                       WHEN p.dow_any THEN extract(day FROM t)::int = ANY (p.doms)
                       ELSE extract(dow FROM t)::int = ANY (p.dows)
                            OR extract(day FROM t)::int = ANY (p.doms) END;
        IF NOT day_ok THEN
            t := date_trunc('day', t) + interval '1 day';
            CONTINUE;
        END IF;
        v := extract(hour FROM t);
        IF NOT v = ANY (p.hours) THEN
            nv := NULL;
            FOREACH x IN ARRAY p.hours LOOP
                IF x > v THEN nv := x; EXIT; END IF;
            END LOOP;
            v := nv;
            t := CASE WHEN v IS NULL THEN date_trunc('day', t) + interval '1 day'
                      ELSE date_trunc('day', t) + make_interval(hours => v) END;
            CONTINUE;
        END IF;
        v := extract(minute FROM t);
        IF NOT v = ANY (p.minutes) THEN
            nv := NULL;
            FOREACH x IN ARRAY p.minutes LOOP
                IF x > v THEN nv := x; EXIT; END IF;
            END LOOP;
            v := nv;
            t := CASE WHEN v IS NULL THEN date_trunc('hour', t) + interval '1 hour'
                      ELSE date_trunc('hour', t) + make_interval(mins => v) END;
            CONTINUE;
        END IF;
        r := skipq.cron_instant(t, tz);
        IF r > after THEN
            RETURN r;
        END IF;
        t := t + interval '1 minute';
    END LOOP;
END $$;

-- The next n slots after `after` (for `skipq schedule ls` and people).
CREATE OR REPLACE FUNCTION skipq.cron_times(expr text, tz text DEFAULT 'UTC',
                                            after timestamptz DEFAULT now(), n int DEFAULT 5)
RETURNS SETOF timestamptz LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t timestamptz := after;
BEGIN
    FOR i IN 1 .. least(n, 1000) LOOP
        t := skipq.cron_next(expr, tz, t);
        EXIT WHEN t IS NULL;
        RETURN NEXT t;
    END LOOP;
END $$;

-- The latest slot in [first, at], given that first is a slot and not
-- after at. Found by looking back a minute, an hour, a day, a month, a
-- year, ten years from at (never before first) and walking forward from
-- the first window that holds a slot: a few steps, however long ago
-- first was (a worker that was down for a week).
CREATE OR REPLACE FUNCTION skipq.cron_latest(expr text, tz text, first timestamptz,
                                             at timestamptz)
RETURNS timestamptz LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p record := skipq.cron_parse(expr);
    w interval;
    t timestamptz;
    nx timestamptz;
BEGIN
    IF p.every_s IS NOT NULL THEN
        RETURN greatest(first,
            to_timestamp((floor(extract(epoch FROM at) / p.every_s) * p.every_s)::float8));
    END IF;
    FOREACH w IN ARRAY ARRAY[interval '1 minute', '1 hour', '1 day', '32 days',
                             '367 days', '10 years'] LOOP
        t := skipq.cron_next(expr, tz, greatest(at - w, first - interval '1 microsecond'));
        EXIT WHEN t <= at;
    END LOOP;
    IF t IS NULL OR t > at THEN
        RETURN first;
    END IF;
    LOOP
        nx := skipq.cron_next(expr, tz, t);
        EXIT WHEN nx IS NULL OR nx > at;
        t := nx;
    END LOOP;
    RETURN t;
END $$;

-- How many slots lie in [first, last): counted up to cap for cron
-- expressions, computed for @every.
CREATE OR REPLACE FUNCTION skipq.cron_count(expr text, tz text, first timestamptz,
                                            last timestamptz, cap int DEFAULT 1000)
RETURNS int LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p record := skipq.cron_parse(expr);
    t timestamptz := first;
    n int := 0;
BEGIN
    IF p.every_s IS NOT NULL THEN
        RETURN least(floor(extract(epoch FROM last - first) / p.every_s), 2147483647)::int;
    END IF;
    WHILE t < last AND n < cap LOOP
        n := n + 1;
        t := skipq.cron_next(expr, tz, t);
        EXIT WHEN t IS NULL;
    END LOOP;
    RETURN n;
END $$;

-- ---- defining schedules ----------------------------------------------

-- A definition checked: the expression, that it ever runs, the zone (one
-- PostgreSQL knows: a name of its time zone database such as
-- Europe/Berlin, whose daylight-saving rules it then follows), the policy
-- and the names. Raises 22023 naming the bad value.
CREATE OR REPLACE FUNCTION skipq.schedule_check(name text, cron text, time_zone text,
                                                kind text, queue text, missed text)
RETURNS void LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tz_known boolean := true;
BEGIN
    IF name IS NULL OR octet_length(name) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'invalid schedule name "%": 1 to 200 bytes', name
            USING ERRCODE = '22023';
    END IF;
    IF kind IS NULL OR octet_length(kind) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'invalid kind "%" for schedule "%": 1 to 200 bytes', kind, name
            USING ERRCODE = '22023';
    END IF;
    IF queue IS NULL OR octet_length(queue) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'invalid queue "%" for schedule "%": 1 to 200 bytes', queue, name
            USING ERRCODE = '22023';
    END IF;
    IF missed IS NULL OR missed NOT IN ('skip', 'catch_up') THEN
        RAISE EXCEPTION 'unknown missed-run policy "%" for schedule "%": use skip or catch_up',
            missed, name USING ERRCODE = '22023';
    END IF;
    BEGIN
        PERFORM now() AT TIME ZONE time_zone;
    EXCEPTION WHEN invalid_parameter_value OR feature_not_supported THEN
        tz_known := false;
    END;
    -- an offset ("+03:00", "UTC+3") is POSIX's, whose sign is the
    -- reverse of ISO 8601's: refused, Etc/GMT-3 says the same plainly
    IF time_zone IS NULL OR NOT tz_known
       OR (time_zone ~ '[0-9]' AND time_zone !~* '^etc/') THEN
        RAISE EXCEPTION 'unknown time zone "%" for schedule "%": use a name such as UTC or Europe/Berlin',
            time_zone, name USING ERRCODE = '22023';
    END IF;
    IF skipq.cron_next(cron, time_zone, now()) IS NULL THEN
        RAISE EXCEPTION 'cron expression "%" of schedule "%" never runs', cron, name
            USING ERRCODE = '22023';
    END IF;
END $$;

-- Create or change a schedule. Changing the expression or the zone starts
-- it afresh from now (no slot of the old expression is owed); the other
-- fields apply from the next slot. paused: NULL keeps the schedule's
-- state (a new one runs). A schedule that a worker's config defines is
-- changed in that config, not here. Returns the schedule's row.
CREATE OR REPLACE FUNCTION skipq.schedule(
    name      text,
    cron      text,
    kind      text,
    payload   jsonb DEFAULT '{}',
    queue     text DEFAULT 'default',
    priority  anycompatible DEFAULT 0,
    time_zone text DEFAULT 'UTC',
    missed    text DEFAULT 'skip',
    paused    boolean DEFAULT NULL)
RETURNS skipq.schedules LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    p smallint := skipq.priority_value(coalesce(priority::text, '0'));
    r skipq.schedules;
BEGIN
    PERFORM skipq.schedule_check(name, cron, time_zone, kind, queue, missed);
    IF payload IS NULL OR jsonb_typeof(payload) <> 'object' THEN
        RAISE EXCEPTION 'payload of schedule "%" must be a JSON object, not %', name,
            coalesce(jsonb_typeof(payload), 'null') USING ERRCODE = '22023';
    END IF;
    SELECT * INTO r FROM skipq.schedules s WHERE s.name = name FOR UPDATE;
    IF FOUND AND r.source = 'config' THEN
        RAISE EXCEPTION 'schedule "%" comes from a worker''s config (schedules:): change it there',
            name USING ERRCODE = '55000';
    END IF;
    INSERT INTO skipq.schedules AS s (name, cron, time_zone, kind, payload, queue, priority,
                                      missed, paused, source, next_slot)
    VALUES (name, cron, time_zone, kind, payload, queue, p, missed, coalesce(paused, false),
            'sql', skipq.cron_next(cron, time_zone, now()))
    ON CONFLICT ON CONSTRAINT schedules_pkey DO UPDATE
        SET cron = excluded.cron, time_zone = excluded.time_zone, kind = excluded.kind,
            payload = excluded.payload, queue = excluded.queue,
            priority = excluded.priority, missed = excluded.missed,
            paused = coalesce(paused, s.paused),
            next_slot = CASE WHEN (s.cron, s.time_zone) = (excluded.cron, excluded.time_zone)
                             THEN s.next_slot ELSE excluded.next_slot END,
            updated_at = now()
    RETURNING * INTO r;
    RETURN r;
END $$;

-- Remove a schedule; true if there was one. Jobs it enqueued stay. A
-- schedule from a worker's config comes back when such a worker starts.
CREATE OR REPLACE FUNCTION skipq.unschedule(name text)
RETURNS boolean LANGUAGE sql
SET search_path = pg_catalog, pg_temp AS $$
    WITH d AS (DELETE FROM skipq.schedules s WHERE s.name = unschedule.name RETURNING 1)
    SELECT count(*) > 0 FROM d
$$;

-- Pause or resume a schedule; true if it exists. While paused, no slot is
-- enqueued; at resume, the slots that passed meanwhile are missed runs,
-- dealt with by the schedule's policy. Allowed for config schedules too:
-- a worker's start leaves the state alone.
CREATE OR REPLACE FUNCTION skipq.schedule_pause(name text, paused boolean DEFAULT true)
RETURNS boolean LANGUAGE sql
SET search_path = pg_catalog, pg_temp AS $$
    WITH u AS (UPDATE skipq.schedules s SET paused = schedule_pause.paused, updated_at = now()
               WHERE s.name = schedule_pause.name RETURNING 1)
    SELECT count(*) > 0 FROM u
$$;

-- ---- the worker's config ----------------------------------------------

-- Make the schedules of source 'config' those of a worker's config: add
-- and change them, take over a schedule of the same name defined in SQL
-- (the config wins), and remove the config schedules it no longer lists.
-- Paused state and slots are kept unless the expression or the zone
-- changed. Returns what it did to each name: added, changed, replaced
-- (was defined in SQL), removed. Run by `skipq worker` at start, for a
-- config that has a schedules: section; serialized on the tick's turn.
CREATE OR REPLACE FUNCTION skipq.schedule_sync(
    names text[], crons text[], time_zones text[], kinds text[], payloads jsonb[],
    queues text[], priorities smallint[], misseds text[])
RETURNS TABLE (name text, action text) LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    i int;
    old skipq.schedules;
BEGIN
    PERFORM FROM skipq.maintenance m WHERE m.task = 'schedule' FOR UPDATE;
    FOR i IN 1 .. coalesce(cardinality(names), 0) LOOP
        BEGIN
            PERFORM skipq.schedule_check(names[i], crons[i], time_zones[i], kinds[i],
                                         queues[i], misseds[i]);
        EXCEPTION WHEN invalid_parameter_value THEN
            RAISE EXCEPTION 'schedule "%": %', names[i], SQLERRM USING ERRCODE = '22023';
        END;
        SELECT * INTO old FROM skipq.schedules s WHERE s.name = names[i] FOR UPDATE;
        IF FOUND AND (old.cron, old.time_zone, old.kind, old.payload, old.queue,
                      old.priority, old.missed, old.source)
                     IS NOT DISTINCT FROM (crons[i], time_zones[i], kinds[i], payloads[i],
                                           queues[i], priorities[i], misseds[i], 'config') THEN
            CONTINUE;
        END IF;
        INSERT INTO skipq.schedules AS s (name, cron, time_zone, kind, payload, queue,
                                          priority, missed, source, next_slot)
        VALUES (names[i], crons[i], time_zones[i], kinds[i], coalesce(payloads[i], '{}'),
                queues[i], priorities[i], misseds[i], 'config',
                skipq.cron_next(crons[i], time_zones[i], now()))
        ON CONFLICT ON CONSTRAINT schedules_pkey DO UPDATE
            SET cron = excluded.cron, time_zone = excluded.time_zone, kind = excluded.kind,
                payload = excluded.payload, queue = excluded.queue,
                priority = excluded.priority, missed = excluded.missed, source = 'config',
                next_slot = CASE WHEN (s.cron, s.time_zone) = (excluded.cron, excluded.time_zone)
                                 THEN s.next_slot ELSE excluded.next_slot END,
                updated_at = now();
        name := names[i];
        action := CASE WHEN old.name IS NULL THEN 'added'
                       WHEN old.source = 'sql' THEN 'replaced' ELSE 'changed' END;
        old := NULL;
        RETURN NEXT;
    END LOOP;
    RETURN QUERY
        DELETE FROM skipq.schedules s
        WHERE s.source = 'config' AND NOT (s.name = ANY (coalesce(names, '{}')))
        RETURNING s.name, 'removed'::text;
END $$;
REVOKE EXECUTE ON FUNCTION skipq.schedule_sync(text[], text[], text[], text[], jsonb[],
                                               text[], smallint[], text[]) FROM PUBLIC;

-- ---- the tick ------------------------------------------------------------

-- Enqueue the slots that are due at `at`, and say how long until the next
-- one. One caller at a time: the turn is the row 'schedule' of
-- skipq.maintenance, taken FOR UPDATE SKIP LOCKED (a caller that finds it
-- taken does nothing), and a schedule row someone else holds is left for
-- the next tick. For each due schedule, in one transaction: the
-- compare-and-set of next_slot and last_slot, then the job's insert; so a
-- slot is enqueued once, however many workers tick (test
-- four_workers_enqueue_each_slot_once).
--
-- The due slots of a schedule are those from next_slot to at. The latest
-- is the one to run; the ones before it were missed (no worker ticked, or
-- the schedule was paused). Policy skip: the latest runs if it is at most
-- a minute late, and the missed ones never. Policy catch_up: the latest
-- runs, however late, once for all of them. The job's meta says
-- {"schedule": name, "slot": time, "missed": slots passed over before it}.
-- A minute is the tolerance for a tick that is late (a worker restarting,
-- a busy server), not for an outage.
CREATE OR REPLACE FUNCTION skipq.schedule_tick_at(at timestamptz, OUT enqueued int,
                                                  OUT next_in_ms bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s skipq.schedules;
    latest timestamptz;
    nmissed int;
    job bigint;
BEGIN
    enqueued := 0;
    IF EXISTS (SELECT FROM skipq.schedules d WHERE NOT d.paused AND d.next_slot <= at)
       AND EXISTS (SELECT FROM skipq.maintenance m WHERE m.task = 'schedule'
                   FOR UPDATE SKIP LOCKED) THEN
        FOR s IN SELECT * FROM skipq.schedules d WHERE NOT d.paused AND d.next_slot <= at
                 ORDER BY d.next_slot FOR UPDATE SKIP LOCKED LOOP
            latest := skipq.cron_latest(s.cron, s.time_zone, s.next_slot, at);
            nmissed := skipq.cron_count(s.cron, s.time_zone, s.next_slot, latest);
            UPDATE skipq.schedules d
            SET last_slot = latest, next_slot = skipq.cron_next(s.cron, s.time_zone, latest)
            WHERE d.name = s.name AND d.next_slot = s.next_slot
              AND d.last_slot IS NOT DISTINCT FROM s.last_slot;
            CONTINUE WHEN NOT FOUND;
            CONTINUE WHEN s.missed = 'skip' AND at - latest > interval '1 minute';
            job := skipq.enqueue(s.kind, s.payload, s.queue, s.priority,
                                 meta => jsonb_build_object('schedule', s.name,
                                                            'slot', latest,
                                                            'missed', nmissed));
            UPDATE skipq.schedules d SET last_job_id = job WHERE d.name = s.name;
            enqueued := enqueued + 1;
        END LOOP;
    END IF;
    next_in_ms := (SELECT ceil(extract(epoch FROM min(d.next_slot) - at) * 1000)
                   FROM skipq.schedules d WHERE NOT d.paused);
END $$;
REVOKE EXECUTE ON FUNCTION skipq.schedule_tick_at(timestamptz) FROM PUBLIC;

-- The worker's tick: the same at the transaction's time. Callers cannot
-- choose the time (enqueueing slots of the future early).
CREATE OR REPLACE FUNCTION skipq.schedule_tick(OUT enqueued int, OUT next_in_ms bigint)
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.enqueued, t.next_in_ms FROM skipq.schedule_tick_at(now()) AS t
$$;
REVOKE EXECUTE ON FUNCTION skipq.schedule_tick() FROM PUBLIC;

-- Defining schedules is skipq_admin's (sql/roles.sql); reading the
-- expressions (cron_next, cron_times and their parts) is everybody's.
REVOKE EXECUTE ON FUNCTION
    skipq.schedule(text, text, text, jsonb, text, anycompatible, text, text, boolean),
    skipq.unschedule(text), skipq.schedule_pause(text, boolean)
    FROM PUBLIC;
