/*
 * statements.c - every statement the worker sends, in one registry.
 *
 * Each entry names the test that guards its plan or its behaviour. The
 * statements that change skipq.jobs run inside SECURITY DEFINER
 * functions (skipq__worker_functions_sql, created by `skipq migrate`
 * from these same texts); the worker calls those. The hot ones (the
 * cycle: settings, claim, completion) are prepared once a connection,
 * or sent unnamed when the worker's session says so
 * (skipq__stmt_run). skipq_sql_text() reads the texts by name.
 *
 * The producers' statements live in enqueue.c, the connection's and the
 * migrations' in conn.c, the supervisor's in supervise.c.
 */
#include "statements.h"

#include <string.h>


/*
 * The priorities of the queued rows of queue $1 in the band $2..$3,
 * highest first, one index descent each (a loose index scan), ending in
 * a NULL. The claim and the next-run-at lookup walk the band one priority
 * at a time because only with priority fixed is `run_at` a bound of the
 * index range (queue, priority DESC, run_at, id): over a whole band, the
 * rows waiting for a later run_at would be read and skipped by every
 * claim that comes back short and by every next-run-at lookup. The test
 * claim_and_next_run_at_skip_scheduled_rows guards it.
 */
#define SKIPQ_BAND_PRIORITIES(queue)                                                     \
    " p(pri) AS ("                                                                      \
    "  SELECT max(priority) FROM skipq.jobs WHERE status" SKIPQ__EQ "'queued'"          \
    "     AND queue = " queue " AND priority BETWEEN $2::int2 AND $3::int2"              \
    "  UNION ALL"                                                                       \
    "  SELECT (SELECT max(priority) FROM skipq.jobs WHERE status" SKIPQ__EQ "'queued'"  \
    "     AND queue = " queue " AND priority >= $2::int2 AND priority < p.pri)"          \
    "   FROM p WHERE p.pri IS NOT NULL)"

/* The update and the result of a claim, from the locked ids in c. */
#define SKIPQ_CLAIM_TAKE                                                                \
    " u AS (UPDATE skipq.jobs j SET status = 'running', attempts = j.attempts + 1,"    \
    "   claims = j.claims + 1, locked_by = $6::int8, started_at = now(),"             \
    "   updated_at = now()"                                                           \
    "  WHERE j.id = ANY (ARRAY(SELECT id FROM c))"                                    \
    "  RETURNING j.id, j.claims, j.kind, j.queue, j.priority, j.attempts,"            \
    "   j.payload::text, coalesce(j.max_attempts, 0),"                                \
    "   coalesce(j.backoff_strategy::text, ''),"                                      \
    "   coalesce((extract(epoch FROM j.backoff_base) * 1000.0)::int8, -1),"           \
    "   coalesce((extract(epoch FROM j.backoff_max) * 1000.0)::int8, -1),"            \
    "   coalesce((extract(epoch FROM j.timeout) * 1000.0)::int8, 0),"                 \
    "   j.cancel_requested_at IS NOT NULL, j.run_at)"                                 \
    " SELECT * FROM u ORDER BY priority DESC, run_at, id"

/*
 * Claim in claim order (priority DESC, run_at, id) from one queue and
 * priority band: per priority, highest first, the runnable rows in run_at
 * order, until $5 are locked. The locked set is materialized first: with
 * `UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`
 * the planner may re-run the subquery and claim more than n rows. Rows
 * are locked only as the outer LIMIT pulls them, so no more than $5 are
 * locked, and a lower priority is read only when the higher ones ran out.
 * The update finds them with `id = ANY (ARRAY(...))`, not a join: the
 * generic plan does not know $5, guesses a tenth of the table, and would
 * join by hashing a sequential scan of it. The rows come back in claim
 * order, the order the executors start them in. The test
 * claim_returns_exactly_n_uses_the_index_and_never_twice guards it.
 */
#define SKIPQ_CLAIM_SQL                                                                \
    "WITH RECURSIVE" SKIPQ_BAND_PRIORITIES("$1::text") ","                              \
    " c AS MATERIALIZED ("                                                              \
    "  SELECT k.id FROM p CROSS JOIN LATERAL ("                                         \
    "   SELECT id FROM skipq.jobs"                                                      \
    "    WHERE status" SKIPQ__EQ "'queued' AND queue = $1::text AND priority = p.pri"   \
    "      AND run_at <= now() AND kind = ANY ($4::text[])"                             \
    "    ORDER BY run_at, id LIMIT $5::int4"                                            \
    "    FOR NO KEY UPDATE SKIP LOCKED) k"                                              \
    "  LIMIT $5::int4)," SKIPQ_CLAIM_TAKE
const char skipq__claim_sql[] = SKIPQ_CLAIM_SQL;

/*
 * The claim from where the last one ended. Every claimed job leaves a
 * dead entry at the head of its range in jobs_runnable_idx until vacuum
 * removes it, and a claim from the head reads past all of them, twice
 * (the band's first priority, then its range): under a steady load the
 * first 100 queued rows cost 200 buffers just after an autovacuum and
 * 2,900 a minute later, just before the next. After a full claim, the
 * next ones start after the last row it took ($7 priority, $8 run_at,
 * $9 id), in that priority only, and only while no row of a higher
 * priority in the band is queued. A row behind that floor (its claimer
 * rolled back, it was given back, or enqueued with a past run_at) is
 * taken by the next claim from the head: the worker makes one whenever a
 * claim from the floor comes back short, and at least every FLOOR_MS
 * (worker_claim.c).
 */
#define SKIPQ_CLAIM_AFTER_SQL                                                          \
    "WITH c AS MATERIALIZED ("                                                          \
    "  SELECT id FROM skipq.jobs"                                                       \
    "   WHERE status" SKIPQ__EQ "'queued' AND queue = $1::text AND priority = $7::int2" \
    "     AND (run_at, id) > ($8::text::timestamptz, $9::int8)"                         \
    "     AND run_at <= now() AND kind = ANY ($4::text[])"                              \
    "     AND $7::int2 >= $2::int2"                                                     \
    "     AND NOT EXISTS (SELECT FROM skipq.jobs h WHERE h.status" SKIPQ__EQ "'queued'" \
    "       AND h.queue = $1::text AND h.priority > $7::int2 AND h.priority <= $3::int2)" \
    "   ORDER BY run_at, id LIMIT $5::int4"                                             \
    "   FOR NO KEY UPDATE SKIP LOCKED)," SKIPQ_CLAIM_TAKE
const char skipq__claim_after_sql[] = SKIPQ_CLAIM_AFTER_SQL;

/*
 * Milliseconds until the earliest queued job of queues $1 in the band
 * $2..$3 that was not runnable yet when the claim ran ($4: the claim
 * transaction's now(); NULL: now), or NULL. A row that became due since
 * gives 0 or less: claim again at once. A row that was runnable then and
 * that the claim left (locked by another worker's claim, or of a kind
 * this worker has no handler for) is not a reason to wake up: counted,
 * it made an idle worker claim again every millisecond.
 */
#define SKIPQ_NEXT_RUN_AT_SQL                                                          \
    "SELECT (extract(epoch FROM min(n.at) - now()) * 1000.0)::int8"                 \
    " FROM pg_catalog.unnest($1::text[]) AS q(name) CROSS JOIN LATERAL ("           \
    "  WITH RECURSIVE" SKIPQ_BAND_PRIORITIES("q.name")                              \
    "  SELECT (SELECT min(run_at) FROM skipq.jobs WHERE status" SKIPQ__EQ "'queued'" \
    "     AND queue = q.name AND priority = p.pri"                                  \
    "     AND run_at > coalesce($4::timestamptz, now())) AS at"                     \
    "  FROM p) n"
const char skipq__next_run_at_sql[] = SKIPQ_NEXT_RUN_AT_SQL;

/*
 * Finish a batch: each row only while it is still ours, from this claim.
 * status is the new status; handback is 1 when the attempt is given back
 * (snooze, shutdown) and 0 otherwise.
 *
 * Rows are found by primary key, one per array element. The ownership
 * check is written with IS NOT DISTINCT FROM (the same as `=` here: the
 * parameters are never NULL) on purpose: as `locked_by = $2 AND status =
 * 'running'` it matched jobs_running_idx's key and predicate, and the
 * generic plan drove the join through that index, reading every row the
 * worker held and every dead entry left since the last vacuum, per
 * statement. That made completion quadratic in the batch and cost 2.6x
 * of drain throughput (docs/performance.md). The test
 * completion_goes_by_primary_key guards the plan. status is compared as
 * text: IS NOT DISTINCT FROM takes no OPERATOR(), and on the enum it
 * would use pg_catalog's anyenum =, which one planted in public for
 * (job_status, job_status) would beat (internal.h).
 *
 * unnest of several arrays in FROM is safe as written: the parser makes
 * it ROWS FROM (pg_catalog.unnest(...), ...) itself.
 */
#define SKIPQ_OWNED_BY(worker)                                                          \
    " (j.claims, j.locked_by, j.status::text) IS NOT DISTINCT FROM"                   \
    " (r.claims, " worker "::int8, 'running')"

#define SKIPQ_COMPLETE_SET                                                              \
    "  status = r.status::skipq.job_status,"                                           \
    "  result = CASE WHEN r.status = 'succeeded' THEN r.result::jsonb"                 \
    "           ELSE j.result END,"                                                    \
    "  attempts = j.attempts - r.handback,"                                            \
    "  run_at = CASE WHEN r.status = 'queued'"                                         \
    "           THEN now() + r.delay_ms::float8 * interval '1 millisecond'"           \
    "           ELSE j.run_at END,"                                                    \
    "  last_error = coalesce(r.error, j.last_error),"                                  \
    "  errors = CASE WHEN r.error IS NULL THEN j.errors"                               \
    "           ELSE j.errors || pg_catalog.jsonb_build_object('attempt', j.attempts," \
    "                'at', now(), 'worker', $2::int8, 'error', r.error) END,"          \
    "  finished_at = CASE WHEN r.status = 'queued' THEN NULL ELSE now() END,"          \
    "  cancel_requested_at = NULL, locked_by = NULL, updated_at = now()"

#define SKIPQ_COMPLETE_ROWS                                                             \
    " unnest($1::int8[], $3::int4[], $4::text[], $5::text[], $6::text[],"              \
    "        $7::int8[], $8::int4[])"                                                  \
    "      AS r(id, claims, status, result, error, delay_ms, handback)"

#define SKIPQ_COMPLETE_SQL                                                              \
    "UPDATE skipq.jobs j SET" SKIPQ_COMPLETE_SET                                       \
    " FROM" SKIPQ_COMPLETE_ROWS                                                        \
    " WHERE j.id = r.id AND" SKIPQ_OWNED_BY("$2")                                      \
    " RETURNING j.id"
const char skipq__complete_sql[] = SKIPQ_COMPLETE_SQL;

/* worker.on_success: delete. The same, except that a row that succeeded
 * is deleted (under the same ownership check) instead of kept. */
#define SKIPQ_COMPLETE_DELETE_SQL                                                       \
    "WITH r AS MATERIALIZED (SELECT * FROM" SKIPQ_COMPLETE_ROWS "),"                   \
    " d AS (DELETE FROM skipq.jobs j USING r"                                          \
    "   WHERE r.status = 'succeeded' AND j.id = r.id AND" SKIPQ_OWNED_BY("$2")         \
    "   RETURNING j.id),"                                                              \
    " u AS (UPDATE skipq.jobs j SET" SKIPQ_COMPLETE_SET                                \
    "   FROM r WHERE r.status <> 'succeeded' AND j.id = r.id AND" SKIPQ_OWNED_BY("$2") \
    "   RETURNING j.id)"                                                               \
    " SELECT id FROM d UNION ALL SELECT id FROM u"
const char skipq__complete_delete_sql[] = SKIPQ_COMPLETE_DELETE_SQL;

/*
 * Reconcile after a reconnect (skipq__reconcile, worker_complete.c): $1 the worker, $2/$3 the
 * ids and claim tokens it holds.
 */
#define SKIPQ_RECONCILE_SQL                                                             \
    "WITH h AS (SELECT * FROM unnest($2::int8[], $3::int4[]) AS h(id, claims)),"       \
    " back AS (SELECT r.id FROM skipq.release(ARRAY("                                  \
    "     SELECT j.id FROM skipq.jobs j"                                               \
    "     WHERE j.status" SKIPQ__EQ "'running' AND j.locked_by = $1::int8"             \
    "       AND j.id NOT IN (SELECT id FROM h) FOR NO KEY UPDATE),"                    \
    "   '{running}', refund => true) r)"                                               \
    " SELECT true, id FROM back"                                                       \
    " UNION ALL"                                                                       \
    " SELECT false, h.id FROM h WHERE NOT EXISTS (SELECT 1 FROM skipq.jobs j"          \
    "   WHERE j.id = h.id AND (j.claims, j.locked_by, j.status::text) IS NOT DISTINCT FROM" \
    "       (h.claims, $1::int8, 'running'))"
const char skipq__reconcile_sql[] = SKIPQ_RECONCILE_SQL;

/* Hand back unfinished jobs (skipq__hand_back_rows, worker_complete.c):
 * $1/$2 ids and tokens, $3 the worker. */
#define SKIPQ_HAND_BACK_SQL                                                             \
    "SELECT b.id FROM skipq.release(ARRAY("                                            \
    "   SELECT j.id FROM skipq.jobs j, unnest($1::int8[], $2::int4[]) AS r(id, claims)" \
    "   WHERE j.id = r.id AND" SKIPQ_OWNED_BY("$3") " FOR NO KEY UPDATE OF j),"        \
    "  '{running}', refund => true) b"
const char skipq__hand_back_sql[] = SKIPQ_HAND_BACK_SQL;

/*
 * The statements above that change skipq.jobs, as functions that run
 * with their owner's rights and first check that the caller is the
 * worker it names (its secret, skipq.worker_register): sql/roles.sql
 * gives skipq_worker no UPDATE on skipq.jobs, so a worker role can claim
 * queued jobs and finish only its own claims, never set the state of
 * another worker's job (test worker_role_cannot_complete_another_workers_job).
 * `skipq migrate` creates them from these same texts (apply_files in
 * conn.c), so a plan the tests check is the plan the function runs. The
 * session's plan settings (skipq__cycle_sql) apply inside them.
 */
#define SKIPQ_CHECK_WORKER(id, secret)                                                 \
    " IF NOT EXISTS (SELECT 1 FROM skipq.workers k WHERE k.id = " id                   \
    "     AND k.secret = " secret ") THEN"                                             \
    "  RAISE EXCEPTION 'worker % is not registered with this secret', " id             \
    "   USING ERRCODE = '42501';"                                                      \
    " END IF;"
#define SKIPQ_DEFINER(name, args, argtypes, returns, check, body)                       \
    "CREATE OR REPLACE FUNCTION skipq." name "(" args ") RETURNS " returns             \
    " LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp"         \
    " AS $skipq$\n#variable_conflict use_column\nBEGIN" check                          \
    " RETURN QUERY " body "; END $skipq$;\n"                                           \
    "REVOKE EXECUTE ON FUNCTION skipq." name "(" argtypes ") FROM PUBLIC;\n"
#define SKIPQ_CLAIM_RETURNS                                                             \
    "TABLE (id int8, claims int4, kind text, queue text, priority int2, attempts int4," \
    " payload text, max_attempts int4, backoff_strategy text, backoff_base_ms int8,"   \
    " backoff_max_ms int8, timeout_ms int8, cancel_requested boolean, run_at timestamptz)"
#define SKIPQ_COMPLETE_ARGS                                                             \
    "p_ids int8[], p_worker int8, p_claims int4[], p_statuses text[], p_results text[]," \
    " p_errors text[], p_delays int8[], p_handbacks int4[], p_secret uuid"
#define SKIPQ_COMPLETE_TYPES                                                            \
    "int8[], int8, int4[], text[], text[], text[], int8[], int4[], uuid"

const char skipq__worker_functions_sql[] =
    SKIPQ_DEFINER("claim",
                  "p_queue text, p_lo int2, p_hi int2, p_kinds text[], p_n int4,"
                  " p_worker int8, p_secret uuid",
                  "text, int2, int2, text[], int4, int8, uuid", SKIPQ_CLAIM_RETURNS,
                  SKIPQ_CHECK_WORKER("$6", "$7"), SKIPQ_CLAIM_SQL)
    SKIPQ_DEFINER("claim_after",
                  "p_queue text, p_lo int2, p_hi int2, p_kinds text[], p_n int4,"
                  " p_worker int8, p_priority int2, p_run_at text, p_id int8, p_secret uuid",
                  "text, int2, int2, text[], int4, int8, int2, text, int8, uuid",
                  SKIPQ_CLAIM_RETURNS, SKIPQ_CHECK_WORKER("$6", "$10"), SKIPQ_CLAIM_AFTER_SQL)
    SKIPQ_DEFINER("complete", SKIPQ_COMPLETE_ARGS, SKIPQ_COMPLETE_TYPES, "SETOF int8",
                  SKIPQ_CHECK_WORKER("$2", "$9"), SKIPQ_COMPLETE_SQL)
    SKIPQ_DEFINER("complete_delete", SKIPQ_COMPLETE_ARGS, SKIPQ_COMPLETE_TYPES, "SETOF int8",
                  SKIPQ_CHECK_WORKER("$2", "$9"), SKIPQ_COMPLETE_DELETE_SQL)
    SKIPQ_DEFINER("hand_back", "p_ids int8[], p_claims int4[], p_worker int8, p_secret uuid",
                  "int8[], int4[], int8, uuid", "SETOF int8",
                  SKIPQ_CHECK_WORKER("$3", "$4"), SKIPQ_HAND_BACK_SQL)
    SKIPQ_DEFINER("reconcile", "p_worker int8, p_ids int8[], p_claims int4[], p_secret uuid",
                  "int8, int8[], int4[], uuid", "TABLE (put_back boolean, id int8)",
                  SKIPQ_CHECK_WORKER("$1", "$4"), SKIPQ_RECONCILE_SQL);

/*
 * The first statement of every claim and completion transaction: the
 * transaction's now() (see skipq__next_run_at_sql) and its settings.
 *
 * Generic plans, planned once a connection (see complete_and_claim in
 * worker_claim.c).
 *
 * No sequential scans: the plans are made at the first execution, and a
 * worker usually starts on an empty queue. Planned on an empty table, the
 * claim's update would find its rows by a sequential scan and the
 * completion by a nested loop over one, and the plans would stay when
 * the jobs came, until autovacuum's next analyze replanned them.
 * Every statement of these transactions has an index path; this leaves
 * the planner no other.
 *
 * No JIT: the generic claim plan, not knowing its LIMIT, is costed at a
 * tenth of the table, which on a large table passes jit_above_cost and
 * would compile the claim at every execution.
 *
 * The quick variant is for a claim alone, which commits without waiting
 * for its flush. The test plans_made_on_an_empty_queue_go_by_index
 * guards the plans.
 */
#define SKIPQ_CYCLE_SETTINGS                                                            \
    "SELECT now()::text,"                                                              \
    " pg_catalog.set_config('plan_cache_mode', 'force_generic_plan', true),"           \
    " pg_catalog.set_config('enable_seqscan', 'off', true),"                           \
    " pg_catalog.set_config('jit', 'off', true)"
const char skipq__cycle_sql[] = SKIPQ_CYCLE_SETTINGS;
#define SKIPQ_CYCLE_QUICK_SETTINGS                                                      \
    SKIPQ_CYCLE_SETTINGS ", pg_catalog.set_config('synchronous_commit', 'off', true)"
const char skipq__cycle_quick_sql[] = SKIPQ_CYCLE_QUICK_SETTINGS;

/* ---- the calls the worker makes ----------------------------------------- */

#define SKIPQ_COMPLETE_CALL_ARGS                                                        \
    "($1::int8[], $2::int8, $3::int4[], $4::text[], $5::text[], $6::text[], $7::int8[]," \
    " $8::int4[], $9::text::uuid)"

/* The worker session's settings: a format, the session fills in its
 * lock_timeout (connect_worker, worker_session.c). */
#define SKIPQ_SETTINGS_FORMAT                                                           \
    "SET application_name = 'skipq worker'; SET DateStyle = ISO; "                     \
    "SET lock_timeout = '%lldms'"

/*
 * The idle locks (see idle_lock in worker_session.c). Each lock once,
 * however many of the queues' names share its hash. A worker going idle
 * waits up to IDLE_WAIT_MS for them.
 */
#define IDLE_WAIT_MS 20
#define IDLE_HASHES                                                                      \
    "(SELECT DISTINCT hashtext(q) AS h FROM pg_catalog.unnest($1::text[]) AS q) AS t"
#define SKIPQ_IDLE_LOCK_SQL                                                              \
    "WITH cfg AS MATERIALIZED ("                                                         \
    "  SELECT pg_catalog.set_config('lock_timeout', '" SKIPQ__XSTR(IDLE_WAIT_MS) "ms', true))" \
    " SELECT pg_catalog.count(pg_advisory_lock_shared(" SKIPQ__XSTR(SKIPQ__LOCK_CLASS_IDLE) ", h))" \
    " FROM cfg, " IDLE_HASHES
#define SKIPQ_IDLE_UNLOCK_SQL                                                            \
    "SELECT pg_advisory_unlock_shared(" SKIPQ__XSTR(SKIPQ__LOCK_CLASS_IDLE) ", h)"      \
    " FROM " IDLE_HASHES
/* after a wait that timed out: only those the statement took */
#define SKIPQ_IDLE_UNDO_SQL                                                              \
    "SELECT pg_advisory_unlock_shared(" SKIPQ__XSTR(SKIPQ__LOCK_CLASS_IDLE) ", h)"      \
    " FROM " IDLE_HASHES " WHERE EXISTS (SELECT FROM pg_locks AS l"                     \
    "  WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted"        \
    "  AND l.mode = 'ShareLock' AND l.objsubid = 2"                                     \
    "  AND l.classid = " SKIPQ__XSTR(SKIPQ__LOCK_CLASS_IDLE) "::int4::oid"              \
    "  AND l.objid = h::oid)"

/* The held jobs whose rows ask for a cancel (read_cancels). */
#define SKIPQ_READ_CANCELS_SQL                                                           \
    "SELECT j.id, j.claims FROM skipq.jobs j"                                            \
    " WHERE j.id = ANY ($1::int8[]) AND j.locked_by = $2::int8"                          \
    "   AND j.status OPERATOR(pg_catalog.=) 'running'::skipq.job_status"                 \
    "   AND j.cancel_requested_at IS NOT NULL"

/* Whose turn it is to rescue, and whether the last rescue is late (see
 * rescue in worker_maint.c). $1 the lease. */
#define SKIPQ_RESCUE_TURN_SQL                                                            \
    "SELECT m.task IS NOT NULL,"                                                         \
    " (SELECT (pg_catalog.now() OPERATOR(pg_catalog.-) s.last_run_at)"                   \
    "     OPERATOR(pg_catalog.>) (2 OPERATOR(pg_catalog.*) $1::interval)"                \
    "  FROM skipq.maintenance s WHERE s.task = 'rescue')"                                \
    " FROM (SELECT 1) AS one LEFT JOIN (SELECT t.task FROM skipq.maintenance t"          \
    "   WHERE t.task = 'rescue' FOR UPDATE SKIP LOCKED) AS m ON true"

#define SKIPQ_VACUUM_PERMITTED_SQL(maintain)                                             \
    "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')"                                 \
    " OR pg_catalog.pg_has_role(d.datdba, 'USAGE')" maintain                             \
    " FROM pg_class c, pg_database d"                                                    \
    " WHERE c.oid = 'skipq.jobs'::regclass::oid AND d.datname = current_database()"

/* The dead row versions of skipq.jobs, and whether to vacuum now (see
 * vacuum_due in worker_maint.c): $1 vacuum_interval, $2 what our last
 * vacuum left, $3 VACUUM_MIN_DEAD. */
#define SKIPQ_VACUUM_DUE_SQL                                                             \
    "SELECT dead,"                                                                       \
    " dead - CASE WHEN dead < $2::int8 THEN 0 ELSE $2::int8 END"                         \
    "   >= greatest($3::int8, live / 50)"                                                \
    " AND coalesce(greatest(pg_stat_get_last_vacuum_time(t),"                            \
    "   pg_stat_get_last_autovacuum_time(t))"                                            \
    "   < now() - $1::interval, true)"                                                   \
    " AND NOT EXISTS (SELECT 1 FROM pg_locks l"                                          \
    "   WHERE l.locktype = 'relation' AND l.relation = t"                                \
    "   AND l.database = (SELECT oid FROM pg_database"                                   \
    "                     WHERE datname = current_database())"                           \
    "   AND l.mode = 'ShareUpdateExclusiveLock')"                                        \
    " FROM (SELECT t, pg_stat_get_dead_tuples(t) AS dead,"                               \
    "   pg_stat_get_live_tuples(t) AS live"                                              \
    "   FROM (SELECT 'skipq.jobs'::regclass::oid) o(t)) s"

#define SKIPQ_SESSION_LOCK(fn, key)                                                      \
    "SELECT " fn "(" SKIPQ__XSTR(SKIPQ__LOCK_CLASS) ", " SKIPQ__XSTR(key) ")"

#define T(name) "integration.test_" name
const skipq__stmt skipq__stmts[SKIPQ__STMT_COUNT] = {
    [SKIPQ__STMT_CYCLE] = {"cycle", "skipq_cycle", SKIPQ_CYCLE_SETTINGS,
        T("worker.plans_made_on_an_empty_queue_go_by_index")},
    [SKIPQ__STMT_CYCLE_QUICK] = {"cycle_quick", "skipq_cycle_quick",
        SKIPQ_CYCLE_QUICK_SETTINGS,
        T("worker.plans_made_on_an_empty_queue_go_by_index")},
    [SKIPQ__STMT_CLAIM] = {"claim_call", "skipq_claim",
        "SELECT * FROM skipq.claim($1::text, $2::int2, $3::int2,"
        " $4::text[], $5::int4, $6::int8, $7::text::uuid)",
        T("worker.claim_and_next_run_at_skip_scheduled_rows")},
    [SKIPQ__STMT_CLAIM_AFTER] = {"claim_after_call", "skipq_claim_after",
        "SELECT * FROM skipq.claim_after($1::text, $2::int2, $3::int2,"
        " $4::text[], $5::int4, $6::int8, $7::int2, $8::text, $9::int8,"
        " $10::text::uuid)",
        T("worker.plans_made_on_an_empty_queue_go_by_index")},
    [SKIPQ__STMT_COMPLETE] = {"complete_call", "skipq_complete",
        "SELECT * FROM skipq.complete" SKIPQ_COMPLETE_CALL_ARGS,
        T("worker.completion_goes_by_primary_key")},
    [SKIPQ__STMT_COMPLETE_DELETE] = {"complete_delete_call", "skipq_complete_delete",
        "SELECT * FROM skipq.complete_delete" SKIPQ_COMPLETE_CALL_ARGS,
        T("worker.completion_that_deletes_goes_by_primary_key")},
    [SKIPQ__STMT_NEXT_RUN_AT] = {"next_run_at", NULL, SKIPQ_NEXT_RUN_AT_SQL,
        T("worker.claim_and_next_run_at_skip_scheduled_rows")},

    [SKIPQ__STMT_SETTINGS] = {"settings", NULL, SKIPQ_SETTINGS_FORMAT,
        T("liveness.a_row_lock_on_one_job_delays_only_that_job")},
    [SKIPQ__STMT_DELETE_PRIVILEGE] = {"delete_privilege", NULL,
        "SELECT pg_catalog.has_table_privilege('skipq.jobs', 'DELETE'), current_user",
        T("privileges.on_success_delete_needs_the_delete_privilege")},
    [SKIPQ__STMT_LISTEN] = {"listen", NULL, "LISTEN " SKIPQ__CHANNEL,
        T("worker.skipq_enqueue_wakes_an_idle_worker_and_spares_a_busy_one")},
    [SKIPQ__STMT_LISTEN_CONTROL] = {"listen_control", NULL, "LISTEN " SKIPQ__CONTROL_CHANNEL,
        T("liveness.forged_cancel_notify_is_ignored")},
    [SKIPQ__STMT_REGISTER] = {"register", NULL,
        "SELECT id, secret FROM skipq.worker_register($1, $2::int4, $3::text[],"
        " $4, $5::int4, $6, $7::interval, $8::interval, $9::int8, $10::uuid)",
        T("liveness.reconnect_with_a_stale_backend_holding_the_lock")},
    [SKIPQ__STMT_LIVENESS] = {"liveness", NULL,
        "SELECT got, holders FROM skipq.worker_liveness($1::int8, $2::uuid)",
        T("liveness.liveness_lock_held_by_another_role_does_not_stall")},
    [SKIPQ__STMT_HEARTBEAT] = {"heartbeat", NULL, "SELECT skipq.worker_beat($1::int8, $2::uuid)",
        T("liveness.a_row_lock_on_one_job_delays_only_that_job")},
    [SKIPQ__STMT_UNREGISTER] = {"unregister", NULL,
        "SELECT skipq.worker_unregister($1::int8, $2::uuid)",
        NULL},
    [SKIPQ__STMT_READ_CANCELS] = {"read_cancels", NULL, SKIPQ_READ_CANCELS_SQL,
        T("liveness.forged_cancel_notify_is_ignored")},
    [SKIPQ__STMT_IDLE_LOCK] = {"idle_lock", NULL, SKIPQ_IDLE_LOCK_SQL,
        T("worker.worker_waits_for_its_idle_locks_briefly_and_all_or_none")},
    [SKIPQ__STMT_IDLE_UNLOCK] = {"idle_unlock", NULL, SKIPQ_IDLE_UNLOCK_SQL,
        T("worker.worker_waits_for_its_idle_locks_briefly_and_all_or_none")},
    [SKIPQ__STMT_IDLE_UNDO] = {"idle_undo", NULL, SKIPQ_IDLE_UNDO_SQL,
        T("worker.worker_waits_for_its_idle_locks_briefly_and_all_or_none")},

    [SKIPQ__STMT_RECONCILE] = {"reconcile_call", NULL,
        "SELECT * FROM skipq.reconcile($1::int8, $2::int8[], $3::int4[],"
        " $4::text::uuid)",
        T("worker.claim_lost_with_the_server_is_not_completed_by_the_old_run")},
    [SKIPQ__STMT_HAND_BACK] = {"hand_back_call", NULL,
        "SELECT * FROM skipq.hand_back($1::int8[], $2::int4[], $3::int8, $4::text::uuid)",
        T("worker.sigterm_finishes_short_jobs_and_hands_back_long_ones")},

    [SKIPQ__STMT_MAINT_SETTINGS] = {"maintenance_settings", NULL,
        "SET application_name = 'skipq maintenance'",
        T("recover.retention_and_rescue_have_their_own_connection")},
    /* bounded: an operator's transaction may hold a workers row */
    [SKIPQ__STMT_RESCUE_BEGIN] = {"rescue_begin", NULL, "BEGIN; SET LOCAL lock_timeout = '5s'",
        T("liveness.rescue_runs_while_another_role_holds_old_key")},
    [SKIPQ__STMT_RESCUE_TURN] = {"rescue_turn", NULL, SKIPQ_RESCUE_TURN_SQL,
        T("liveness.rescue_runs_while_another_role_holds_old_key")},
    [SKIPQ__STMT_RESCUE] = {"rescue", NULL,
        "SELECT id, kind, status FROM skipq.rescue($1::interval, $2, $3)",
        T("fault_kill.kill_workers")},
    [SKIPQ__STMT_FORGET_WORKERS] = {"forget_workers", NULL,
        "SELECT skipq.forget_workers($1::interval, $2::int8)",
        T("recover.rescue_sql_takes_holderless_rows_and_only_the_named_worker")},
    [SKIPQ__STMT_RESCUE_DONE] = {"rescue_done", NULL,
        "UPDATE skipq.maintenance SET last_run_at = pg_catalog.now(),"
        " last_run_by = $1::int8 WHERE task = 'rescue'",
        T("liveness.rescue_runs_while_another_role_holds_old_key")},
    [SKIPQ__STMT_COMMIT] = {"commit", NULL, "COMMIT", NULL},
    [SKIPQ__STMT_ROLLBACK] = {"rollback", NULL, "ROLLBACK", NULL},
    [SKIPQ__STMT_RETENTION_LOCK] = {"retention_lock", NULL,
        SKIPQ_SESSION_LOCK("pg_try_advisory_lock", SKIPQ__LOCK_RETENTION),
        T("recover.worker_retention_prunes_old_finished_rows")},
    [SKIPQ__STMT_RETENTION_UNLOCK] = {"retention_unlock", NULL,
        SKIPQ_SESSION_LOCK("pg_advisory_unlock", SKIPQ__LOCK_RETENTION),
        T("recover.worker_retention_prunes_old_finished_rows")},
    [SKIPQ__STMT_PRUNE] = {"prune", NULL,
        "SELECT skipq.prune($1::interval, '{succeeded,cancelled}', $2::int4)",
        T("recover.worker_retention_prunes_old_finished_rows")},
    [SKIPQ__STMT_VACUUM_PERMITTED] = {"vacuum_permitted", NULL,
        SKIPQ_VACUUM_PERMITTED_SQL(" OR pg_catalog.has_table_privilege(c.oid, 'MAINTAIN')"),
        T("privileges.worker_role_leaves_the_vacuum_to_autovacuum")},
    [SKIPQ__STMT_VACUUM_PERMITTED_16] = {"vacuum_permitted_16", NULL,
        SKIPQ_VACUUM_PERMITTED_SQL(""),
        T("privileges.worker_role_leaves_the_vacuum_to_autovacuum")},
    [SKIPQ__STMT_VACUUM_DUE] = {"vacuum_due", NULL, SKIPQ_VACUUM_DUE_SQL,
        T("recover.worker_vacuums_its_table_when_dead_rows_pile_up")},
    [SKIPQ__STMT_VACUUM_LOCK] = {"vacuum_lock", NULL,
        SKIPQ_SESSION_LOCK("pg_try_advisory_lock", SKIPQ__LOCK_VACUUM),
        T("recover.worker_vacuums_its_table_when_dead_rows_pile_up")},
    [SKIPQ__STMT_VACUUM_UNLOCK] = {"vacuum_unlock", NULL,
        SKIPQ_SESSION_LOCK("pg_advisory_unlock", SKIPQ__LOCK_VACUUM),
        T("recover.worker_vacuums_its_table_when_dead_rows_pile_up")},
    /* no statement_timeout of the role's: a cancelled vacuum keeps
     * little of its work, and would be tried again and again */
    [SKIPQ__STMT_NO_STATEMENT_TIMEOUT] = {"no_statement_timeout", NULL,
        "SET statement_timeout = 0", NULL},
    [SKIPQ__STMT_VACUUM] = {"vacuum", NULL, "VACUUM (SKIP_LOCKED, TRUNCATE false) skipq.jobs",
        T("recover.worker_vacuums_its_table_when_dead_rows_pile_up")},
    [SKIPQ__STMT_RESET_STATEMENT_TIMEOUT] = {"reset_statement_timeout", NULL,
        "RESET statement_timeout", NULL},
};
#undef T

skipq_rc
skipq__stmt_prepare(PGconn *pg, skipq__stmt_id id, skipq_error *err)
{
    const skipq__stmt *st = &skipq__stmts[id];
    PGresult *res = PQprepare(pg, st->prepared, st->text, 0, NULL);
    skipq_rc rc = SKIPQ_OK;

    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = skipq__db_fail(err, pg, res, "could not prepare %s", st->prepared);
    PQclear(res);
    return rc;
}

bool
skipq__stmt_run(PGconn *pg, bool unnamed, skipq__stmt_id id, PGparam *prm, int n,
                const char *const *v, PGresult **out)
{
    const skipq__stmt *st = &skipq__stmts[id];
    bool named = st->prepared && !unnamed;
    PGresult *res;

    if (!out) {
        if (prm)
            return named ? PQparamSendQueryPrepared(pg, prm, st->prepared, 0) != 0
                         : PQparamSendQuery(pg, prm, st->text, 0) != 0;
        return named ? PQsendQueryPrepared(pg, st->prepared, n, v, NULL, NULL, 0) != 0
                     : PQsendQueryParams(pg, st->text, n, NULL, v, NULL, NULL, 0) != 0;
    }
    if (prm)
        res = named ? PQparamExecPrepared(pg, prm, st->prepared, 0)
                    : PQparamExec(pg, prm, st->text, 0);
    else if (named)
        res = PQexecPrepared(pg, st->prepared, n, v, NULL, NULL, 0);
    else if (n == 0 && !st->prepared)
        res = PQexec(pg, st->text);
    else
        res = PQexecParams(pg, st->text, n, NULL, v, NULL, NULL, 0);
    *out = res;
    ExecStatusType s = PQresultStatus(res);
    return res && (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK);
}

skipq_rc
skipq__stmt_exec(PGconn *pg, bool unnamed, skipq__stmt_id id, int n, const char *const *v,
                 PGresult **out, skipq_error *err)
{
    PGresult *res = NULL;
    skipq_rc rc = SKIPQ_OK;

    if (!skipq__stmt_run(pg, unnamed, id, NULL, n, v, &res)) {
        if (n == 0 && !skipq__stmts[id].prepared)
            rc = skipq__db_fail(err, pg, res, "could not run \"%.60s\"", skipq__stmts[id].text);
        else
            rc = skipq__db_fail(err, pg, res, "could not run worker statement");
        PQclear(res);
        res = NULL;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return rc;
}

/* ---- by name ------------------------------------------------------------- */

static const struct {
    const char *name;
    const char *text;
} by_name[] = {
    {"claim", skipq__claim_sql},
    {"claim_after", skipq__claim_after_sql},
    {"next_run_at", skipq__next_run_at_sql},
    {"cycle", skipq__cycle_sql},
    {"cycle_quick", skipq__cycle_quick_sql},
    {"complete", skipq__complete_sql},
    {"complete_delete", skipq__complete_delete_sql},
};

const char *
skipq_sql_text(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof by_name / sizeof by_name[0]; i++)
        if (strcmp(by_name[i].name, name) == 0)
            return by_name[i].text;
    return NULL;
}
