/*
 * statements.c - every statement the library sends, in one registry: the
 * worker's, the producers' (enqueue.c, enqueue_copy.c), the connection's
 * (conn.c), the migrations' (migrate.c) and the supervisor's
 * (supervise.c). The embedded sql/ and migrations/ files are not
 * statements of this kind: migrate.c applies them as they are.
 *
 * Each entry names the test that guards its plan or its behaviour. The
 * statements that change skipq.jobs run inside SECURITY DEFINER
 * functions (skipq__worker_functions_sql, created by `skipq migrate`
 * from these same texts); the worker calls those. The hot ones (the
 * worker's cycle: settings, claim, completion; a producer's inserts) are
 * prepared once a connection, or sent unnamed when the worker's session
 * or the skipq_conn says so (skipq__stmt_run).
 * skipq_sql_text() reads the texts by name.
 */
#include "statements.h"

#include <stdio.h>
#include <string.h>

/* The statements are laid out by hand, one clause a line. */
/* clang-format off */

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
 * statement. That made completion quadratic in the batch. The test
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
 * is deleted (under the same ownership check) instead of kept. A deleted
 * job with dependants or a batch passes its result on (f): its row is
 * gone before its triggers run, and only this statement still has the
 * result (sql/deps.sql, skipq.deps_deleted_on_success). f reads only
 * what the delete returned, no page of the table (test
 * plans_made_on_an_empty_queue_go_by_index). */
#define SKIPQ_COMPLETE_DELETE_SQL                                                       \
    "WITH r AS MATERIALIZED (SELECT * FROM" SKIPQ_COMPLETE_ROWS "),"                   \
    " d AS (DELETE FROM skipq.jobs j USING r"                                          \
    "   WHERE r.status = 'succeeded' AND j.id = r.id AND" SKIPQ_OWNED_BY("$2")         \
    "   RETURNING j.id, j.dependants, j.batch_id),"                                    \
    " u AS (UPDATE skipq.jobs j SET" SKIPQ_COMPLETE_SET                                \
    "   FROM r WHERE r.status <> 'succeeded' AND j.id = r.id AND" SKIPQ_OWNED_BY("$2") \
    "   RETURNING j.id),"                                                              \
    " f AS (SELECT skipq.deps_deleted_on_success(d.id, d.dependants, d.batch_id,"      \
    "   r.result::jsonb) FROM d JOIN r ON r.id = d.id"                                 \
    "   WHERE d.dependants OR d.batch_id IS NOT NULL)"                                 \
    " SELECT x.id FROM (SELECT id FROM d UNION ALL SELECT id FROM u) x,"               \
    "  (SELECT count(*) FROM f) c"
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
                  SKIPQ_CHECK_WORKER("$2", "$9")
                  " PERFORM pg_catalog.set_config('skipq.on_success', 'delete', true);",
                  SKIPQ_COMPLETE_DELETE_SQL)
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
/* Behind a transaction pooler the session's lock_timeout is not there:
 * the cycle's transaction sets its own, $1. */
#define SKIPQ_CYCLE_POOLED_LOCK ", pg_catalog.set_config('lock_timeout', $1, true)"


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
    " SELECT pg_catalog.count(pg_advisory_lock_shared(" SKIPQ__LOCK_CLASS_IDLE_S ", h))" \
    " FROM cfg, " IDLE_HASHES
#define SKIPQ_IDLE_UNLOCK_SQL                                                            \
    "SELECT pg_advisory_unlock_shared(" SKIPQ__LOCK_CLASS_IDLE_S ", h)"      \
    " FROM " IDLE_HASHES
/* after a wait that timed out: only those the statement took */
#define SKIPQ_IDLE_UNDO_SQL                                                              \
    "SELECT pg_advisory_unlock_shared(" SKIPQ__LOCK_CLASS_IDLE_S ", h)"      \
    " FROM " IDLE_HASHES " WHERE EXISTS (SELECT FROM pg_locks AS l"                     \
    "  WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted"        \
    "  AND l.mode = 'ShareLock' AND l.objsubid = 2"                                     \
    "  AND l.classid = " SKIPQ__LOCK_CLASS_IDLE_S "::int4::oid"              \
    "  AND l.objid = h::oid)"

/* The held jobs whose rows ask for a cancel (read_cancels). */
#define SKIPQ_READ_CANCELS_SQL                                                           \
    "SELECT j.id, j.claims FROM skipq.jobs j"                                            \
    " WHERE j.id = ANY ($1::int8[]) AND j.locked_by = $2::int8"                          \
    "   AND j.status OPERATOR(pg_catalog.=) 'running'::skipq.job_status"                 \
    "   AND j.cancel_requested_at IS NOT NULL"

/* The worker's queues that are paused, have paused kinds, or have flow
 * control settings (worker_pause.c): one row per paused kind; one with a
 * NULL kind for a queue paused whole, or with settings and no paused
 * kind. The third column: the queue has settings (its claims go through
 * skipq.claim_controlled), the fourth: a rate limit. */
#define SKIPQ_READ_PAUSES_SQL                                                            \
    "SELECT q.queue, k.kind, q.paused,"                                                  \
    "  q.max_running IS NOT NULL OR q.key_max_running IS NOT NULL"                       \
    "  OR q.rate_limit IS NOT NULL OR q.age_after IS NOT NULL,"                          \
    "  q.rate_limit IS NOT NULL"                                                         \
    " FROM skipq.queues q"                                                               \
    " LEFT JOIN LATERAL pg_catalog.unnest(CASE WHEN q.paused THEN NULL"                  \
    "   ELSE q.paused_kinds END) AS k(kind) ON true"                                     \
    " WHERE q.queue OPERATOR(pg_catalog.=) ANY ($1::text[])"                             \
    "   AND (q.paused OR pg_catalog.cardinality(q.paused_kinds) OPERATOR(pg_catalog.>) 0"  \
    "     OR q.max_running IS NOT NULL OR q.key_max_running IS NOT NULL"                 \
    "     OR q.rate_limit IS NOT NULL OR q.age_after IS NOT NULL)"

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

/* fn of one of the locks of class SKIPQ__LOCK_CLASS (lock_keys.h) */
#define SKIPQ_LOCK_CALL(fn, key)                                                         \
    "SELECT " fn "(" SKIPQ__LOCK_CLASS_S ", " SKIPQ__XSTR(key) ")"

/* ---- the producers' statements (enqueue.c, enqueue_copy.c) --------------- */

/* The statement behind skipq_enqueue and skipq_enqueue_tx. Times are
 * computed by the server: "now" is always the database's now(). Counts
 * of micro- and milliseconds are float8 (exact below 2^53): float8 *
 * interval is the operator PostgreSQL has, which an int8 reached by a
 * cast, and with the exact types no operator planted in public matches
 * better (internal.h). */
#define ENQ_COLUMNS                                                        \
    "INSERT INTO skipq.jobs (kind, payload, queue, priority, run_at, "     \
    "max_attempts, backoff_strategy, backoff_base, backoff_max, timeout) "
#define ENQ_VALUES                                                         \
    "$1::text, $2::jsonb, $3::text, $4::int2, "                            \
    "coalesce('epoch'::timestamptz + $5::float8 * interval '1 microsecond', " \
    "now() + $6::float8 * interval '1 millisecond'), $7::int4, "           \
    "$8::skipq.backoff_strategy, $9::float8 * interval '1 millisecond', "  \
    "$10::float8 * interval '1 millisecond', "                             \
    "$11::float8 * interval '1 millisecond'"

/* A job with any option of job control (unique key, dependencies, batch,
 * concurrency key, meta, tags) goes in through skipq.enqueue_unique,
 * which says whether it inserted a row: ENQ_VALUES, then those options. */
#define ENQ_UNIQUE                                                                  \
    "SELECT u.id, u.inserted FROM skipq.enqueue_unique(" ENQ_VALUES ", "            \
    "$12::text, $13::text, $14::float8 * interval '1 millisecond', $15::int8[], "   \
    "$16::text, $17::int8, $18::text, $19::jsonb, $20::text[]) u"

/*
 * Bulk enqueue with job control: the rows are copied into a private
 * staging table, then moved into skipq.jobs by one statement, in input
 * order. Keep mode (the default) is one INSERT ... ON CONFLICT DO NOTHING
 * against jobs_unique_idx, leaving out keys a window still holds; any
 * other option goes row by row through skipq.enqueue_unique. The
 * parameters are the batch's options, as in ENQ_UNIQUE (test
 * enqueue.batch_with_unique_keys_inserts_each_key_once).
 */
#define COPY_STAGE_COLUMNS                                                          \
    "kind text NOT NULL, payload jsonb NOT NULL, queue text NOT NULL, "             \
    "priority int2 NOT NULL, run_at timestamptz, max_attempts int, "                \
    "backoff_strategy skipq.backoff_strategy, backoff_base interval, "              \
    "backoff_max interval, timeout interval, unique_key text"
#define COPY_STAGE_SELECT                                                           \
    "s.kind, s.payload, s.queue, s.priority, coalesce(s.run_at, now()), "           \
    "s.max_attempts, s.backoff_strategy, s.backoff_base, s.backoff_max, s.timeout"

/* The usual job has no option but its queue and priority: for it, a
 * statement of four parameters, whose other columns take their defaults,
 * so the server evaluates no run_at or interval expressions. */
#define ENQ_PLAIN_COLUMNS "INSERT INTO skipq.jobs (kind, payload, queue, priority) "
#define ENQ_PLAIN_VALUES "$1::text, $2::jsonb, $3::text, $4::int2"

/*
 * The same insert for skipq_enqueue's own transaction: it tells the
 * statement trigger not to NOTIFY (skipq.notify, for this transaction
 * only), and skipq_enqueue sends the NOTIFY itself in a second
 * transaction right after the commit, in the same round trip. Why: a
 * transaction that notifies takes one database-wide lock at commit and
 * holds it through its WAL flush, so notifying producers commit one at a
 * time. The notify-only transaction writes no WAL to wait for.
 */
#define ENQ_QUIET                                                                  \
    "WITH quiet AS (SELECT pg_catalog.set_config('skipq.notify', 'after_commit', true)) "

/*
 * The insert and the idle lock's try (ENQ_NOTIFY's) in one autocommit
 * statement: one transaction, as a plain INSERT is. Column t is true
 * when no worker of the queue waits: then nobody needs a NOTIFY. When one
 * may wait, column n is true if this is the only producer connection
 * (the try of the producers' lock, held shared by every other), and then
 * the statement notifies in the insert's own transaction, as the
 * trigger would; otherwise the caller sends the NOTIFY after the commit
 * (enqueue_in_one, enqueue.c). CASE, because only it fixes the order of
 * evaluation.
 */
#define ENQ_TRY(columns, values)                                             \
    "WITH quiet AS (SELECT pg_catalog.set_config('skipq.notify', 'after_commit', true)), " \
    "ins AS (" columns "SELECT " values " FROM quiet RETURNING id) "          \
    "SELECT id, t, n, CASE WHEN n THEN pg_catalog.pg_notify('skipq', $3) END FROM (" \
    "SELECT id, t, CASE WHEN t THEN false ELSE pg_try_advisory_xact_lock("     \
    SKIPQ__LOCK_CLASS_S ", " SKIPQ__LOCK_PRODUCER_S ") END n " \
    "FROM (SELECT id, pg_try_advisory_xact_lock(" SKIPQ__LOCK_CLASS_IDLE_S \
    ", hashtext($3)) t FROM ins OFFSET 0) a OFFSET 0) b"

/* Only if a worker of the queue may be waiting for it: see idle_lock()
 * in worker_session.c. The try takes no transaction id, and when it
 * succeeds the transaction writes nothing and returns no row. When it
 * notifies, its row says whether this is now the only producer
 * connection (the producers' lock, as in ENQ_TRY): then the next call
 * goes back to the one statement, which notifies in its own transaction. */
#define ENQ_NOTIFY                                                                     \
    "SELECT pg_try_advisory_xact_lock(" SKIPQ__LOCK_CLASS_S ", "            \
    SKIPQ__LOCK_PRODUCER_S ") FROM (SELECT pg_catalog.pg_notify('skipq', $1) " \
    "WHERE NOT pg_try_advisory_xact_lock(" SKIPQ__LOCK_CLASS_IDLE_S          \
    ", hashtext($1)) OFFSET 0) n"

/* ---- the schema's statements (migrate.c) ---------------------------------- */

/*
 * Every lock the migration waits for is waited for within a bound: the
 * caller's lock_timeout, else 10 s. DDL on skipq.jobs queues behind any
 * open transaction that touched the table, and every claim and insert
 * then queues behind the DDL: a migrate stuck behind an operator's
 * forgotten transaction stalled the whole queue (test
 * migrate_behind_a_row_lock_gives_up).
 */
#define MIGRATE_LOCK_TIMEOUT_SQL                                                       \
    "SELECT pg_catalog.set_config('lock_timeout', CASE"                               \
    " WHEN pg_catalog.current_setting('lock_timeout') OPERATOR(pg_catalog.=) '0'"     \
    " THEN '10s' ELSE pg_catalog.current_setting('lock_timeout') END, true)"

/* Whether a worker's maintenance connection holds the vacuum lock (see
 * lock_migrations in migrate.c). */
#define MIGRATE_VACUUM_HOLDER_SQL                                                      \
    "SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"   \
    " WHERE l.locktype = 'advisory' AND l.classid = " SKIPQ__LOCK_CLASS_S   \
    " AND l.objid = " SKIPQ__LOCK_VACUUM_S                                  \
    " AND l.objsubid = 2 AND l.granted AND l.database = (SELECT oid FROM pg_database"  \
    " WHERE datname = current_database())"                                            \
    " AND a.application_name = 'skipq maintenance')"

/*
 * A migration's transaction resolves names as skipq's functions do
 * (sql/functions.sql): what it creates (views, column defaults, checks,
 * the trigger's condition) is bound to what each name means when it is
 * created, and that must never be a function or operator another role
 * planted in public, which would also run at once with the rights of
 * whoever migrates, often a superuser. Everything skipq creates is named
 * by schema. SET LOCAL ends with the transaction: the caller's connection
 * keeps its own search_path.
 */
#define MIGRATE_BEGIN_SQL "BEGIN; SET LOCAL search_path = pg_catalog, pg_temp"

/* ---- the supervisor's statements (supervise.c) ---------------------------- */

/* The dead child's jobs put back with the signal named ($3), and how many
 * it still holds: $1/$2 its host and pid, $4 max_attempts. */
#define SUPERVISE_RESCUE_SQL                                                           \
    "WITH w AS (SELECT id FROM skipq.workers WHERE host = $1 AND pid = $2::int"        \
    "           ORDER BY id DESC LIMIT 1),"                                            \
    " r AS (SELECT r.* FROM w, skipq.rescue(NULL::interval, NULL::int8, $4::int,"      \
    "       1000000, false, NULL, NULL, NULL, NULL, w.id, $3) r)"                      \
    " SELECT (SELECT count(*) FROM r),"                                                \
    "        (SELECT count(*) FROM skipq.jobs j, w"                                    \
    "         WHERE j.status" SKIPQ__EQ "'running' AND j.locked_by = w.id)"

/* clang-format on */

#define T(name) "integration.test_" name
const skipq__stmt skipq__stmts[SKIPQ__STMT_COUNT] = {
    [SKIPQ__STMT_CYCLE] = {"cycle", "skipq_cycle", SKIPQ_CYCLE_SETTINGS,
                           T("worker.plans_made_on_an_empty_queue_go_by_index")},
    [SKIPQ__STMT_CYCLE_QUICK] = {"cycle_quick", "skipq_cycle_quick",
                                 SKIPQ_CYCLE_QUICK_SETTINGS,
                                 T("worker.plans_made_on_an_empty_queue_go_by_index")},
    [SKIPQ__STMT_CYCLE_POOLED] = {"cycle_pooled", NULL,
                                  SKIPQ_CYCLE_SETTINGS SKIPQ_CYCLE_POOLED_LOCK,
                                  T("pooler.two_pooled_workers_drain_through_pgbouncer")},
    [SKIPQ__STMT_CYCLE_QUICK_POOLED] =
        {"cycle_quick_pooled", NULL, SKIPQ_CYCLE_QUICK_SETTINGS SKIPQ_CYCLE_POOLED_LOCK,
         T("pooler.two_pooled_workers_drain_through_pgbouncer")},
    [SKIPQ__STMT_CLAIM] = {"claim_call", "skipq_claim",
                           "SELECT * FROM skipq.claim($1::text, $2::int2, $3::int2,"
                           " $4::text[], $5::int4, $6::int8, $7::text::uuid)",
                           T("worker.claim_and_next_run_at_skip_scheduled_rows")},
    [SKIPQ__STMT_CLAIM_AFTER] =
        {"claim_after_call", "skipq_claim_after",
         "SELECT * FROM skipq.claim_after($1::text, $2::int2, $3::int2,"
         " $4::text[], $5::int4, $6::int8, $7::int2, $8::text, $9::int8,"
         " $10::text::uuid)",
         T("worker.plans_made_on_an_empty_queue_go_by_index")},
    [SKIPQ__STMT_CLAIM_CONTROLLED] =
        {"claim_controlled_call", NULL,
         "SELECT * FROM skipq.claim_controlled($1::text, $2::int2, $3::int2,"
         " $4::text[], $5::int4, $6::int8, $7::text::uuid)",
         T("flow_control.max_running_holds_across_four_workers")},
    [SKIPQ__STMT_RATE_WAIT] = {"rate_wait", NULL, "SELECT skipq.rate_wait_ms($1::text[])",
                               T("flow_control.rate_limit_holds_in_every_window")},
    [SKIPQ__STMT_COMPLETE] = {"complete_call", "skipq_complete",
                              "SELECT * FROM skipq.complete" SKIPQ_COMPLETE_CALL_ARGS,
                              T("worker.completion_goes_by_primary_key")},
    [SKIPQ__STMT_COMPLETE_DELETE] =
        {"complete_delete_call", "skipq_complete_delete",
         "SELECT * FROM skipq.complete_delete" SKIPQ_COMPLETE_CALL_ARGS,
         T("worker.completion_that_deletes_goes_by_primary_key")},
    [SKIPQ__STMT_NEXT_RUN_AT] = {"next_run_at", NULL, SKIPQ_NEXT_RUN_AT_SQL,
                                 T("worker.claim_and_next_run_at_skip_scheduled_rows")},

    [SKIPQ__STMT_SETTINGS] = {"settings", NULL, SKIPQ_SETTINGS_FORMAT,
                              T("liveness.a_row_lock_on_one_job_delays_only_that_job")},
    [SKIPQ__STMT_DELETE_PRIVILEGE] =
        {"delete_privilege", NULL,
         "SELECT pg_catalog.has_table_privilege('skipq.jobs', 'DELETE'), current_user",
         T("privileges.on_success_delete_needs_the_delete_privilege")},
    [SKIPQ__STMT_LISTEN] =
        {"listen", NULL, "LISTEN " SKIPQ__CHANNEL,
         T("worker.skipq_enqueue_wakes_an_idle_worker_and_spares_a_busy_one")},
    [SKIPQ__STMT_LISTEN_CONTROL] = {"listen_control", NULL,
                                    "LISTEN " SKIPQ__CONTROL_CHANNEL,
                                    T("liveness.forged_cancel_notify_is_ignored")},
    [SKIPQ__STMT_REGISTER] =
        {"register", NULL,
         "SELECT id, secret FROM skipq.worker_register($1, $2::int4, $3::text[],"
         " $4, $5::int4, $6, $7::interval, $8::interval, $9::int8, $10::uuid)",
         T("liveness.reconnect_with_a_stale_backend_holding_the_lock")},
    [SKIPQ__STMT_LIVENESS] =
        {"liveness", NULL,
         "SELECT got, holders FROM skipq.worker_liveness($1::int8, $2::uuid)",
         T("liveness.liveness_lock_held_by_another_role_does_not_stall")},
    [SKIPQ__STMT_HEARTBEAT] = {"heartbeat", NULL,
                               "SELECT skipq.worker_beat($1::int8, $2::uuid)",
                               T("liveness.a_row_lock_on_one_job_delays_only_that_job")},
    [SKIPQ__STMT_UNREGISTER] = {"unregister", NULL,
                                "SELECT skipq.worker_unregister($1::int8, $2::uuid)", NULL},
    [SKIPQ__STMT_READ_CANCELS] = {"read_cancels", NULL, SKIPQ_READ_CANCELS_SQL,
                                  T("liveness.forged_cancel_notify_is_ignored")},
    [SKIPQ__STMT_READ_PAUSES] = {"read_pauses", NULL, SKIPQ_READ_PAUSES_SQL,
                                 T("queue_pause.forged_notify_pauses_nothing")},
    [SKIPQ__STMT_IDLE_LOCK] =
        {"idle_lock", NULL, SKIPQ_IDLE_LOCK_SQL,
         T("worker.worker_waits_for_its_idle_locks_briefly_and_all_or_none")},
    [SKIPQ__STMT_IDLE_UNLOCK] =
        {"idle_unlock", NULL, SKIPQ_IDLE_UNLOCK_SQL,
         T("worker.worker_waits_for_its_idle_locks_briefly_and_all_or_none")},
    [SKIPQ__STMT_IDLE_UNDO] =
        {"idle_undo", NULL, SKIPQ_IDLE_UNDO_SQL,
         T("worker.worker_waits_for_its_idle_locks_briefly_and_all_or_none")},

    [SKIPQ__STMT_RECONCILE] =
        {"reconcile_call", NULL,
         "SELECT * FROM skipq.reconcile($1::int8, $2::int8[], $3::int4[],"
         " $4::text::uuid)",
         T("worker.claim_lost_with_the_server_is_not_completed_by_the_old_run")},
    [SKIPQ__STMT_HAND_BACK] =
        {"hand_back_call", NULL,
         "SELECT * FROM skipq.hand_back($1::int8[], $2::int4[], $3::int8, $4::text::uuid)",
         T("worker.sigterm_finishes_short_jobs_and_hands_back_long_ones")},
    [SKIPQ__STMT_PROGRESS] =
        {"progress_call", NULL,
         "SELECT * FROM skipq.job_progress($1::int8[], $2::int4[], $3::int4[],"
         " $4::text[], $5::int8, $6::text::uuid)",
         T("outcomes.command_handler_reports_progress_while_running")},

    [SKIPQ__STMT_MAINT_SETTINGS] =
        {"maintenance_settings", NULL, "SET application_name = 'skipq maintenance'",
         T("recover.retention_and_rescue_have_their_own_connection")},
    /* bounded: an operator's transaction may hold a workers row */
    [SKIPQ__STMT_RESCUE_BEGIN] =
        {"rescue_begin", NULL, "BEGIN; SET LOCAL lock_timeout = '5s'",
         T("liveness.rescue_runs_while_another_role_holds_old_key")},
    [SKIPQ__STMT_RESCUE_TURN] =
        {"rescue_turn", NULL, SKIPQ_RESCUE_TURN_SQL,
         T("liveness.rescue_runs_while_another_role_holds_old_key")},
    [SKIPQ__STMT_RESCUE] =
        {"rescue", NULL, "SELECT id, kind, status FROM skipq.rescue($1::interval, $2, $3)",
         T("fault_kill.kill_workers")},
    [SKIPQ__STMT_FORGET_WORKERS] =
        {"forget_workers", NULL, "SELECT skipq.forget_workers($1::interval, $2::int8)",
         T("recover.rescue_sql_takes_holderless_rows_and_only_the_named_worker")},
    [SKIPQ__STMT_RESCUE_DONE] =
        {"rescue_done", NULL,
         "UPDATE skipq.maintenance SET last_run_at = pg_catalog.now(),"
         " last_run_by = $1::int8 WHERE task = 'rescue'",
         T("liveness.rescue_runs_while_another_role_holds_old_key")},
    [SKIPQ__STMT_COMMIT] = {"commit", NULL, "COMMIT", NULL},
    [SKIPQ__STMT_ROLLBACK] = {"rollback", NULL, "ROLLBACK", NULL},
    [SKIPQ__STMT_RETENTION_LOCK] = {"retention_lock", NULL,
                                    SKIPQ_LOCK_CALL("pg_try_advisory_lock",
                                                    SKIPQ__LOCK_RETENTION),
                                    T("recover.worker_retention_prunes_old_finished_rows")},
    [SKIPQ__STMT_RETENTION_UNLOCK] =
        {"retention_unlock", NULL,
         SKIPQ_LOCK_CALL("pg_advisory_unlock", SKIPQ__LOCK_RETENTION),
         T("recover.worker_retention_prunes_old_finished_rows")},
    [SKIPQ__STMT_PRUNE] =
        {"prune", NULL,
         "SELECT skipq.prune($1::interval, '{succeeded,cancelled}', $2::int4)",
         T("recover.worker_retention_prunes_old_finished_rows")},
    [SKIPQ__STMT_ARCHIVE] = {"archive", NULL,
                             "SELECT skipq.archive($1::interval, $2::interval, $3::int4)",
                             T("archive.worker_moves_rows_and_drops_old_partitions")},
    [SKIPQ__STMT_ARCHIVE_DROP] = {"archive_drop", NULL,
                                  "SELECT skipq.archive_drop($1::interval)",
                                  T("archive.worker_moves_rows_and_drops_old_partitions")},
    [SKIPQ__STMT_ARCHIVE_PRIVILEGE] =
        {"archive_privilege", NULL,
         "SELECT pg_catalog.has_function_privilege("
         "'skipq.archive(interval, interval, integer)', 'EXECUTE')"
         " AND pg_catalog.has_function_privilege('skipq.archive_drop(interval)', 'EXECUTE'),"
         " current_user",
         T("archive.worker_without_the_grant_says_so")},
    [SKIPQ__STMT_VACUUM_PERMITTED] =
        {"vacuum_permitted", NULL,
         SKIPQ_VACUUM_PERMITTED_SQL(
             " OR pg_catalog.has_table_privilege(c.oid, 'MAINTAIN')"),
         T("privileges.worker_role_leaves_the_vacuum_to_autovacuum")},
    [SKIPQ__STMT_VACUUM_PERMITTED_16] =
        {"vacuum_permitted_16", NULL, SKIPQ_VACUUM_PERMITTED_SQL(""),
         T("privileges.worker_role_leaves_the_vacuum_to_autovacuum")},
    [SKIPQ__STMT_VACUUM_DUE] =
        {"vacuum_due", NULL, SKIPQ_VACUUM_DUE_SQL,
         T("recover.worker_vacuums_its_table_when_dead_rows_pile_up")},
    [SKIPQ__STMT_VACUUM_LOCK] =
        {"vacuum_lock", NULL, SKIPQ_LOCK_CALL("pg_try_advisory_lock", SKIPQ__LOCK_VACUUM),
         T("recover.worker_vacuums_its_table_when_dead_rows_pile_up")},
    [SKIPQ__STMT_VACUUM_UNLOCK] =
        {"vacuum_unlock", NULL, SKIPQ_LOCK_CALL("pg_advisory_unlock", SKIPQ__LOCK_VACUUM),
         T("recover.worker_vacuums_its_table_when_dead_rows_pile_up")},
    /* no statement_timeout of the role's: a cancelled vacuum keeps
     * little of its work, and would be tried again and again */
    [SKIPQ__STMT_NO_STATEMENT_TIMEOUT] = {"no_statement_timeout", NULL,
                                          "SET statement_timeout = 0", NULL},
    [SKIPQ__STMT_VACUUM] = {"vacuum", NULL,
                            "VACUUM (SKIP_LOCKED, TRUNCATE false) skipq.jobs",
                            T("recover.worker_vacuums_its_table_when_dead_rows_pile_up")},
    [SKIPQ__STMT_RESET_STATEMENT_TIMEOUT] = {"reset_statement_timeout", NULL,
                                             "RESET statement_timeout", NULL},
    [SKIPQ__STMT_SCHEDULE_TICK] = {"schedule_tick", NULL,
                                   "SELECT enqueued, next_in_ms FROM skipq.schedule_tick()",
                                   T("schedule.four_workers_enqueue_each_slot_once")},
    [SKIPQ__STMT_SCHEDULE_SYNC] =
        {"schedule_sync", NULL,
         "SELECT name, action FROM skipq.schedule_sync($1::text[], $2::text[], $3::text[],"
         " $4::text[], $5::jsonb[], $6::text[], $7::int2[], $8::text[])",
         T("schedule.config_schedules_win_and_leave_with_the_config")},

    [SKIPQ__STMT_ENQUEUE] = {"enqueue", "skipq_enqueue",
                             ENQ_COLUMNS "VALUES (" ENQ_VALUES ") RETURNING id",
                             T("enqueue.single_enqueue_options_land_in_the_row")},
    [SKIPQ__STMT_ENQUEUE_PLAIN] = {"enqueue_plain", "skipq_enqueue_plain",
                                   ENQ_PLAIN_COLUMNS "VALUES (" ENQ_PLAIN_VALUES
                                                     ") RETURNING id",
                                   T("enqueue.single_enqueue_options_land_in_the_row")},
    [SKIPQ__STMT_ENQUEUE_THEN_NOTIFY] =
        {"enqueue_then_notify", "skipq_enqueue_then_notify",
         ENQ_QUIET ENQ_COLUMNS "SELECT " ENQ_VALUES " FROM quiet RETURNING id",
         T("enqueue.single_enqueue_notifies_once_after_its_commit")},
    [SKIPQ__STMT_ENQUEUE_PLAIN_THEN_NOTIFY] =
        {"enqueue_plain_then_notify", "skipq_enqueue_plain_then_notify",
         ENQ_QUIET ENQ_PLAIN_COLUMNS "SELECT " ENQ_PLAIN_VALUES " FROM quiet RETURNING id",
         T("enqueue.single_enqueue_notifies_once_after_its_commit")},
    [SKIPQ__STMT_ENQUEUE_TRY] =
        {"enqueue_try", "skipq_enqueue_try", ENQ_TRY(ENQ_COLUMNS, ENQ_VALUES),
         T("enqueue.single_enqueue_tries_the_idle_lock_in_its_commit_until_a_worker_waits")},
    [SKIPQ__STMT_ENQUEUE_PLAIN_TRY] =
        {"enqueue_plain_try", "skipq_enqueue_plain_try",
         ENQ_TRY(ENQ_PLAIN_COLUMNS, ENQ_PLAIN_VALUES),
         T("enqueue.single_enqueue_tries_the_idle_lock_in_its_commit_until_a_worker_waits")},
    [SKIPQ__STMT_NOTIFY] = {"notify", "skipq_notify", ENQ_NOTIFY,
                            T("enqueue.single_enqueue_notifies_once_after_its_commit")},
    [SKIPQ__STMT_PRODUCER_LOCK] =
        {"producer_lock", NULL,
         SKIPQ_LOCK_CALL("pg_try_advisory_lock_shared", SKIPQ__LOCK_PRODUCER),
         T("enqueue.the_producers_lock_is_tried_outside_transactions")},
    /* the run_at of every row of a batch: $1 run_at_us (NULL: none), $2 delay_ms */
    [SKIPQ__STMT_COPY_RUN_AT] =
        {"copy_run_at", NULL,
         "SELECT coalesce('epoch'::timestamptz + $1::float8 * interval '1 microsecond', "
         "now() + $2::float8 * interval '1 millisecond')::text",
         T("search_path.cli_commands_run_no_planted_object")},
    /* a format: the batch names the columns it sets (skipq_copy_begin) */
    [SKIPQ__STMT_COPY] = {"copy", NULL, "COPY skipq.jobs (%s) FROM STDIN",
                          T("enqueue.batch_of_10000_is_one_copy_and_one_notify")},
    [SKIPQ__STMT_ENQUEUE_UNIQUE] = {"enqueue_unique", NULL, ENQ_UNIQUE,
                                    T("enqueue.c_api_unique_key_keeps_one_row")},
    [SKIPQ__STMT_COPY_STAGE] =
        {"copy_stage", NULL,
         "SELECT pg_catalog.set_config('client_min_messages', 'warning', true); "
         "CREATE TEMP TABLE IF NOT EXISTS skipq_stage (ord bigint GENERATED ALWAYS AS "
         "IDENTITY, " COPY_STAGE_COLUMNS "); TRUNCATE pg_temp.skipq_stage",
         T("enqueue.batch_with_unique_keys_inserts_each_key_once")},
    [SKIPQ__STMT_COPY_STAGE_IN] =
        {"copy_stage_in", NULL, "COPY pg_temp.skipq_stage (%s) FROM STDIN",
         T("enqueue.batch_with_unique_keys_inserts_each_key_once")},
    [SKIPQ__STMT_COPY_STAGE_KEEP] =
        {"copy_stage_keep", NULL,
         "WITH i AS (INSERT INTO skipq.jobs AS j (kind, payload, queue, priority, run_at, "
         "max_attempts, backoff_strategy, backoff_base, backoff_max, timeout, unique_key, "
         "unique_window, concurrency_key, meta, tags) "
         "SELECT " COPY_STAGE_SELECT ", s.unique_key, "
         "$1::float8 * interval '1 millisecond', $2::text, $3::jsonb, $4::text[] "
         "FROM pg_temp.skipq_stage s "
         "WHERE s.unique_key IS NULL OR NOT EXISTS (SELECT 1 FROM skipq.unique_windows w "
         "  WHERE w.unique_key = s.unique_key AND w.until > now()) "
         "ORDER BY s.ord "
         "ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL "
         "  AND status IN ('waiting', 'queued', 'running') DO NOTHING RETURNING 1) "
         "SELECT (SELECT count(*) FROM i), (SELECT count(*) FROM pg_temp.skipq_stage)",
         T("enqueue.batch_with_unique_keys_inserts_each_key_once")},
    [SKIPQ__STMT_COPY_STAGE_EACH] =
        {"copy_stage_each", NULL,
         "SELECT count(*) FILTER (WHERE u.inserted), count(*) "
         "FROM (SELECT * FROM pg_temp.skipq_stage ORDER BY ord) s "
         "CROSS JOIN LATERAL skipq.enqueue_unique(" COPY_STAGE_SELECT ", s.unique_key, "
         "$1::text, $2::float8 * interval '1 millisecond', $3::int8[], $4::text, $5::int8, "
         "$6::text, $7::jsonb, $8::text[]) u",
         T("enqueue.batch_with_unique_keys_inserts_each_key_once")},

    /* our own NOTICEs (IF NOT EXISTS ...) are noise for callers */
    [SKIPQ__STMT_QUIET_NOTICES] = {"quiet_notices", NULL,
                                   "SET client_min_messages = warning", NULL},

    [SKIPQ__STMT_MIGRATE_BEGIN] =
        {"migrate_begin", NULL, MIGRATE_BEGIN_SQL,
         T("search_path.first_migrate_binds_and_runs_no_planted_object")},
    [SKIPQ__STMT_MIGRATE_LOCK_TIMEOUT] = {"migrate_lock_timeout", NULL,
                                          MIGRATE_LOCK_TIMEOUT_SQL,
                                          T("liveness.migrate_behind_a_row_lock_gives_up")},
    [SKIPQ__STMT_MIGRATE_LOCK] = {"migrate_lock", NULL,
                                  SKIPQ_LOCK_CALL("pg_advisory_xact_lock",
                                                  SKIPQ__LOCK_MIGRATE),
                                  T("cli.migrate_concurrent")},
    [SKIPQ__STMT_MIGRATE_TRY_VACUUM_LOCK] =
        {"migrate_try_vacuum_lock", NULL,
         SKIPQ_LOCK_CALL("pg_try_advisory_xact_lock", SKIPQ__LOCK_VACUUM),
         T("cli.migrate_waits_for_a_workers_vacuum_outside_the_table")},
    [SKIPQ__STMT_MIGRATE_VACUUM_HOLDER] =
        {"migrate_vacuum_holder", NULL, MIGRATE_VACUUM_HOLDER_SQL,
         T("cli.migrate_waits_for_a_workers_vacuum_outside_the_table")},
    [SKIPQ__STMT_MIGRATE_VACUUM_LOCK] =
        {"migrate_vacuum_lock", NULL,
         SKIPQ_LOCK_CALL("pg_advisory_xact_lock", SKIPQ__LOCK_VACUUM),
         T("cli.migrate_waits_for_a_workers_vacuum_outside_the_table")},
    [SKIPQ__STMT_MIGRATIONS_EXIST] =
        {"migrations_exist", NULL,
         "SELECT pg_catalog.to_regclass('skipq.schema_migrations') IS NOT NULL",
         T("fault_schema.no_schema")},
    [SKIPQ__STMT_MIGRATIONS_READ] =
        {"migrations_read", NULL,
         "SELECT version, name, compatible FROM skipq.schema_migrations ORDER BY version",
         T("fault_schema.newer_schema_refused")},
    [SKIPQ__STMT_MIGRATION_RECORD] =
        {"migration_record", NULL,
         "INSERT INTO skipq.schema_migrations (version, name, compatible) VALUES ($1, $2, $3)",
         T("cli.migrate_twice")},
    /* after sql/, whose functions these call (apply_files, migrate.c) */
    [SKIPQ__STMT_WORKER_FUNCTIONS] =
        {"worker_functions", NULL, skipq__worker_functions_sql,
         T("worker_role.worker_role_cannot_complete_another_workers_job")},
    /* from the catalog: readable by any role, whatever EXECUTE grants */
    [SKIPQ__STMT_SCHEMA_DIGEST] =
        {"schema_digest", NULL,
         "SELECT p.prosrc FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n"
         " ON n.oid OPERATOR(pg_catalog.=) p.pronamespace"
         " WHERE n.nspname OPERATOR(pg_catalog.=) 'skipq'"
         " AND p.proname OPERATOR(pg_catalog.=) 'schema_digest'",
         T("cli.migrate_print_sql_applied_by_psql_is_current")},

    [SKIPQ__STMT_SUPERVISE_RESCUE] =
        {"supervise_rescue", NULL, SUPERVISE_RESCUE_SQL,
         T("supervise.crashing_c_handler_is_recorded_and_worker_restarts")},
    /* only rows of workers that are gone: skipq.forget_workers checks */
    [SKIPQ__STMT_SUPERVISE_FORGET] =
        {"supervise_forget", NULL, "SELECT skipq.forget_workers(NULL, NULL, $1, $2::int4)",
         T("search_path.supervisor_rescue_runs_no_planted_object")},
};
#undef T
