/*
 * test_deps.c - jobs that depend on other jobs, and batches (sql/deps.sql):
 * a diamond runs in order and its last job sees its parents' results, also
 * when the parents' rows are deleted on success; a released child is
 * runnable in its parent's completion transaction; a failed parent cancels
 * the jobs below it (or they run anyway); missing parents and cycles are
 * refused; retry, recover and prune know about waiting jobs; a batch's
 * completion job runs exactly once with the right counts, also when two
 * workers race on its last members.
 */
#include "skipq.h"
#include "testlib.h"

#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static skipq_config *
test_config(int concurrency)
{
    skipq_error err;
    skipq_config *cfg = skipq_config_new();
    ASSERT_TRUE(cfg);
    ASSERT_OK(skipq_config_set_concurrency(cfg, concurrency, &err), &err);
    ASSERT_OK(skipq_config_set_poll_interval(cfg, 200, &err), &err);
    ASSERT_OK(skipq_config_set_heartbeat_interval(cfg, 200, &err), &err);
    ASSERT_OK(skipq_config_set_lease_timeout(cfg, 2000, &err), &err);
    ASSERT_OK(skipq_config_set_shutdown_timeout(cfg, 1000, &err), &err);
    ASSERT_OK(skipq_config_set_backoff(cfg, SKIPQ_BACKOFF_FIXED, 0, 0, 0, &err), &err);
    ASSERT_OK(skipq_config_set_database(cfg, tl_url(), &err), &err);
    return cfg;
}

struct running {
    pthread_t thread;
    skipq_worker *w;
    skipq_config *cfg;
    skipq_rc rc;
    skipq_error err;
};

static void *
run_thread(void *arg)
{
    struct running *r = arg;
    r->rc = skipq_worker_run(r->w, &r->err);
    return NULL;
}

/* A worker in a thread running handler for each of kinds (NULL-ended). */
static struct running *
start_worker(skipq_config *cfg, const char *const *kinds, skipq_handler_fn handler)
{
    skipq_error err;
    struct running *r = calloc(1, sizeof *r);
    ASSERT_TRUE(r);
    r->cfg = cfg;
    ASSERT_OK(skipq_worker_new(cfg, &r->w, &err), &err);
    for (int i = 0; kinds[i]; i++)
        ASSERT_OK(skipq_worker_register(r->w, kinds[i], handler, NULL, &err), &err);
    ASSERT_EQ(pthread_create(&r->thread, NULL, run_thread, r), 0);
    return r;
}

static void
stop_worker(struct running *r)
{
    skipq_worker_stop(r->w);
    pthread_join(r->thread, NULL);
    if (r->rc != SKIPQ_OK)
        HARNESS_FAIL("worker failed: %s", r->err.message);
    skipq_worker_free(r->w);
    skipq_config_free(r->cfg);
    free(r);
}

/* ---- the diamond ---------------------------------------------------------- */

static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static char seen_order[16];  /* the kinds, in the order their handlers started */
static char *seen_d_payload; /* what d's handler got */

/* Each job returns {"from": "<kind>"}; d's payload is kept. */
static skipq_outcome
diamond_handler(skipq_job *job, void *ud)
{
    (void)ud;
    const char *kind = skipq_job_kind(job);
    char result[64];
    skipq_error err;

    pthread_mutex_lock(&seen_mu);
    size_t n = strlen(seen_order);
    if (n + 1 < sizeof seen_order)
        seen_order[n] = kind[0];
    if (strcmp(kind, "d") == 0) {
        free(seen_d_payload);
        seen_d_payload = strdup(skipq_job_payload_text(job));
    }
    pthread_mutex_unlock(&seen_mu);
    usleep(20000); /* b and c overlap, if the order allowed it */
    snprintf(result, sizeof result, "{\"from\": \"%s\"}", kind);
    if (skipq_job_set_result_text(job, result, &err) != SKIPQ_OK)
        return skipq_job_fail(job, "%s", err.message);
    return SKIPQ_JOB_OK;
}

static const char *const diamond_kinds[] = {"a", "b", "c", "d", NULL};

static void
run_diamond(bool delete_on_success)
{
    PGconn *pg = tl_db();
    skipq_error err;
    memset(seen_order, 0, sizeof seen_order);
    int64_t a = tl_int(pg, "SELECT skipq.enqueue('a')");
    int64_t b = tl_int(pg, "SELECT skipq.enqueue('b', depends_on => ARRAY[%lld])",
                       (long long)a);
    int64_t c = tl_int(pg, "SELECT skipq.enqueue('c', depends_on => ARRAY[%lld])",
                       (long long)a);
    int64_t d = tl_int(
        pg, "SELECT skipq.enqueue('d', '{\"mine\": 1}', depends_on => ARRAY[%lld, %lld])",
        (long long)b, (long long)c);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'waiting'"), 3);

    skipq_config *cfg = test_config(4);
    if (delete_on_success)
        ASSERT_OK(skipq_config_set_on_success(cfg, SKIPQ_ON_SUCCESS_DELETE, &err), &err);
    struct running *r = start_worker(cfg, diamond_kinds, diamond_handler);
    if (delete_on_success)
        ASSERT_TRUE(tl_wait_int(pg, 10000, 0, "SELECT count(*) FROM skipq.jobs"));
    else
        ASSERT_TRUE(tl_wait_int(
            pg, 10000, 4, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    stop_worker(r);

    /* a first, d last, b and c in between in either order */
    ASSERT_EQ(strlen(seen_order), 4);
    ASSERT_EQ(seen_order[0], 'a');
    ASSERT_EQ(seen_order[3], 'd');
    char want[160];
    snprintf(
        want, sizeof want,
        "\"skipq_parents\": {\"%lld\": {\"from\": \"b\"}, \"%lld\": {\"from\": \"c\"}}",
        (long long)b, (long long)c);
    ASSERT_TRUE(seen_d_payload);
    ASSERT_CONTAINS(seen_d_payload, want);
    ASSERT_CONTAINS(seen_d_payload, "\"mine\": 1");
    if (!delete_on_success) {
        /* each child started after its parents finished */
        ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs ch, skipq.job_dependencies l,"
                             " skipq.jobs p WHERE l.child = ch.id AND p.id = l.parent"
                             " AND ch.started_at >= p.finished_at"),
                  4);
        ASSERT_EQ(
            tl_int(
                pg,
                "SELECT count(*) FROM skipq.jobs WHERE id = %lld"
                " AND payload->'skipq_parents' = jsonb_build_object('%lld', '{\"from\": \"b\"}'::jsonb,"
                " '%lld', '{\"from\": \"c\"}'::jsonb)",
                (long long)d, (long long)b, (long long)c),
            1);
    } else {
        /* nothing is left behind: links and counters went with the rows */
        ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.job_dependencies"), 0);
        ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.job_waits"), 0);
    }
    free(seen_d_payload);
    seen_d_payload = NULL;
}

TEST(diamond_runs_in_order_and_sees_results)
{
    run_diamond(false);
}

TEST(diamond_with_on_success_delete)
{
    run_diamond(true);
}

static const char *const only_a[] = {"a", NULL};

/* The child is queued in the transaction that finished its parent: its
 * updated_at is the parent's finished_at, and the queue is woken. */
TEST(released_child_updated_at_is_parent_finished_at)
{
    PGconn *pg = tl_db();
    PGconn *l = tl_connect();
    int64_t a = tl_int(pg, "SELECT skipq.enqueue('a')");
    int64_t b =
        tl_int(pg, "SELECT skipq.enqueue('b', queue => 'later', depends_on => ARRAY[%lld])",
               (long long)a);
    tl_exec(l, "LISTEN skipq");
    struct running *r = start_worker(test_config(1), only_a, diamond_handler);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"
                            " AND id = %lld",
                            (long long)b));
    stop_worker(r);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs ch, skipq.jobs p WHERE ch.id = %lld"
                     " AND p.id = %lld AND ch.updated_at = p.finished_at"
                     " AND ch.run_at <= now()",
                     (long long)b, (long long)a),
              1);
    ASSERT_EQ(tl_count_notifies(l, 1000, "later"), 1);
    PQfinish(l);
}

/* ---- failures -------------------------------------------------------------- */

static void
finish(PGconn *pg, int64_t id, const char *status)
{
    tl_exec(pg,
            "UPDATE skipq.jobs SET status = '%s', finished_at = now(), updated_at = now(),"
            " result = CASE WHEN '%s' = 'succeeded' THEN jsonb_build_object('id', id) END"
            " WHERE id = %lld",
            status, status, (long long)id);
}

static char *
status_of(PGconn *pg, int64_t id)
{
    return tl_str(pg,
                  "SELECT status || coalesce(': ' || last_error, '') FROM skipq.jobs"
                  " WHERE id = %lld",
                  (long long)id);
}

static void
assert_status(PGconn *pg, int64_t id, const char *want)
{
    char *s = status_of(pg, id);
    ASSERT_STREQ(s, want);
    free(s);
}

/* a -> b -> d, a -> c (run anyway) -> d, d -> e */
struct graph {
    int64_t a, b, c, d, e;
};

static void
make_graph(PGconn *pg, struct graph *g)
{
    g->a = tl_int(pg, "SELECT skipq.enqueue('a')");
    g->b = tl_int(pg, "SELECT skipq.enqueue('b', depends_on => ARRAY[%lld])",
                  (long long)g->a);
    g->c = tl_int(pg,
                  "SELECT skipq.enqueue('c', depends_on => ARRAY[%lld],"
                  " on_parent_failure => 'run')",
                  (long long)g->a);
    g->d = tl_int(pg, "SELECT skipq.enqueue('d', depends_on => ARRAY[%lld, %lld])",
                  (long long)g->b, (long long)g->c);
    g->e = tl_int(pg, "SELECT skipq.enqueue('e', depends_on => ARRAY[%lld])",
                  (long long)g->d);
}

TEST(failed_parent_cancels_dependants_with_reason)
{
    PGconn *pg = tl_db();
    struct graph g;
    char want[160];
    make_graph(pg, &g);
    finish(pg, g.a, "failed");
    snprintf(want, sizeof want, "cancelled: parent %lld failed", (long long)g.a);
    assert_status(pg, g.b, want);
    snprintf(want, sizeof want,
             "cancelled: parent %lld cancelled (after parent %lld failed)", (long long)g.b,
             (long long)g.a);
    assert_status(pg, g.d, want);
    snprintf(want, sizeof want,
             "cancelled: parent %lld cancelled (after parent %lld failed)", (long long)g.d,
             (long long)g.a);
    assert_status(pg, g.e, want);
    /* on_parent_failure 'run': released, told which parent failed */
    assert_status(pg, g.c, "queued");
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %lld"
                     " AND payload = jsonb_build_object('skipq_parents', '{}'::jsonb,"
                     " 'skipq_failed_parents', jsonb_build_object('%lld', 'failed'))",
                     (long long)g.c, (long long)g.a),
              1);
    /* a child enqueued after its parent failed is cancelled at once */
    int64_t late = tl_int(pg, "SELECT skipq.enqueue('late', depends_on => ARRAY[%lld])",
                          (long long)g.a);
    snprintf(want, sizeof want, "cancelled: parent %lld failed", (long long)g.a);
    assert_status(pg, late, want);
}

/* A waiting job can be cancelled; the jobs below it are cancelled too. */
TEST(cancelling_a_waiting_job_cancels_below)
{
    PGconn *pg = tl_db();
    struct graph g;
    char want[160];
    make_graph(pg, &g);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.cancel(ARRAY[%lld]::int8[])"
                     " WHERE outcome = 'cancelled'",
                     (long long)g.b),
              1);
    snprintf(want, sizeof want, "cancelled: parent %lld cancelled", (long long)g.b);
    assert_status(pg, g.d, want);
    assert_status(pg, g.c, "waiting");
    ASSERT_EQ(tl_int(pg, "SELECT waiting FROM skipq.queue_stats WHERE queue = 'default'"),
              1);
}

TEST(missing_parent_and_cycle_are_refused)
{
    PGconn *pg = tl_db();
    int64_t a = tl_int(pg, "SELECT skipq.enqueue('a')");
    struct {
        const char *sql, *state, *msg;
    } cases[] = {
        {"SELECT skipq.enqueue('x', depends_on => ARRAY[%lld + 1000])", "23503",
         "parent job"},
        {"SELECT skipq.enqueue('x', depends_on => ARRAY[%lld, NULL])", "22023",
         "depends_on must not contain null"},
        {"SELECT skipq.enqueue('x', depends_on => ARRAY[%lld],"
         " on_parent_failure => 'retry')",
         "22023", "unknown on_parent_failure \"retry\""},
        /* the job's own id, the next the sequence gives */
        {"SELECT skipq.enqueue('x', depends_on => ARRAY[%lld,"
         " (SELECT last_value + 1 FROM skipq.jobs_id_seq)])",
         "22023", "cannot depend on itself (a cycle)"},
        {"SELECT skipq.enqueue('x', batch => %lld + 1000)", "23503", "batch"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char sql[256];
        snprintf(sql, sizeof sql, cases[i].sql, (long long)a);
        PGresult *res = PQexec(pg, sql);
        ASSERT_EQ(PQresultStatus(res), PGRES_FATAL_ERROR);
        ASSERT_STREQ(PQresultErrorField(res, PG_DIAG_SQLSTATE), cases[i].state);
        ASSERT_CONTAINS(PQresultErrorMessage(res), cases[i].msg);
        PQclear(res);
    }
    char want[64];
    PGresult *res = PQexecParams(pg,
                                 "SELECT skipq.enqueue('x', depends_on => ARRAY[$1::int8])",
                                 1, NULL, (const char *[]){"999999"}, NULL, NULL, 0);
    snprintf(want, sizeof want, "parent job 999999 does not exist");
    ASSERT_CONTAINS(PQresultErrorMessage(res), want);
    PQclear(res);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 1);
}

/* ---- retry, recover, prune ------------------------------------------------- */

/* Retrying a job its parent's failure cancelled does not run it: it waits
 * for that parent, and runs once the parent is recovered and succeeds. */
TEST(retry_of_cancelled_child_waits_again)
{
    PGconn *pg = tl_db();
    struct graph g;
    make_graph(pg, &g);
    finish(pg, g.a, "failed");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.retry(ARRAY[%lld]::int8[])",
                     (long long)g.b),
              1);
    assert_status(pg, g.b, "waiting");
    /* its dependants come back with it */
    assert_status(pg, g.d, "waiting");
    assert_status(pg, g.e, "waiting");
    /* a retried job whose parents all succeeded runs */
    int64_t p = tl_int(pg, "SELECT skipq.enqueue('p')");
    int64_t ch = tl_int(pg, "SELECT skipq.enqueue('ch', depends_on => ARRAY[%lld])",
                        (long long)p);
    finish(pg, p, "succeeded");
    finish(pg, ch, "failed");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.retry(ARRAY[%lld]::int8[])",
                     (long long)ch),
              1);
    assert_status(pg, ch, "queued");
}

TEST(recover_parent_brings_back_cancelled_chain)
{
    PGconn *pg = tl_db();
    struct graph g;
    make_graph(pg, &g);
    tl_exec(pg,
            "UPDATE skipq.jobs SET updated_at = now() - interval '1 hour' WHERE id = %lld",
            (long long)g.a);
    finish(pg, g.a, "failed");
    tl_exec(pg, "UPDATE skipq.jobs SET updated_at = now() - interval '1 hour'");
    ASSERT_EQ(
        tl_int(pg,
               "SELECT sum(jobs) FROM skipq.recover('failed', older_than => '1 minute')"),
        1);
    assert_status(pg, g.a, "queued");
    assert_status(pg, g.b, "waiting");
    assert_status(pg, g.d, "waiting");
    assert_status(pg, g.e, "waiting");
    /* c, released by the failure (run anyway), is left as it is */
    assert_status(pg, g.c, "queued");
    /* this time a succeeds: b, then d and e run */
    finish(pg, g.a, "succeeded");
    assert_status(pg, g.b, "queued");
    finish(pg, g.b, "succeeded");
    assert_status(pg, g.d, "waiting");
    finish(pg, g.c, "succeeded");
    assert_status(pg, g.d, "queued");
    finish(pg, g.d, "succeeded");
    assert_status(pg, g.e, "queued");
}

/* recover says what it did: a failed child whose parent has not
 * succeeded goes back to waiting, and is reported as waiting. */
TEST(recover_reports_a_child_that_waits_again)
{
    PGconn *pg = tl_db();
    int64_t p = tl_int(pg, "SELECT skipq.enqueue('p')");
    int64_t ch = tl_int(pg, "SELECT skipq.enqueue('ch', depends_on => ARRAY[%lld])",
                        (long long)p);
    int64_t lone = tl_int(pg, "SELECT skipq.enqueue('ch')");
    tl_exec(
        pg,
        "UPDATE skipq.jobs SET status = 'failed', updated_at = now() - interval '1 hour'"
        " WHERE id IN (%lld, %lld)",
        (long long)ch, (long long)lone);
    char *s = tl_str(pg, "SELECT string_agg(from_status || '>' || to_status || ':' || jobs,"
                         " ' ' ORDER BY to_status)"
                         " FROM skipq.recover('failed', older_than => '1 minute')");
    ASSERT_STREQ(s, "failed>waiting:1 failed>queued:1");
    free(s);
    assert_status(pg, ch, "waiting");
    assert_status(pg, lone, "queued");
}

TEST(prune_keeps_a_parent_whose_child_waits)
{
    PGconn *pg = tl_db();
    int64_t a = tl_int(pg, "SELECT skipq.enqueue('a')");
    int64_t x = tl_int(pg, "SELECT skipq.enqueue('x')");
    int64_t b = tl_int(pg, "SELECT skipq.enqueue('b', depends_on => ARRAY[%lld, %lld])",
                       (long long)a, (long long)x);
    finish(pg, a, "succeeded");
    tl_exec(pg,
            "UPDATE skipq.jobs SET updated_at = now() - interval '1 day' WHERE id = %lld",
            (long long)a);
    ASSERT_EQ(tl_int(pg, "SELECT skipq.prune('1 hour')"), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE id = %lld", (long long)a),
              1);
    /* once the child is released, the parent may go; the child keeps a's result */
    finish(pg, x, "succeeded");
    tl_exec(pg,
            "UPDATE skipq.jobs SET updated_at = now() - interval '1 day' WHERE id <> %lld",
            (long long)b);
    ASSERT_EQ(tl_int(pg, "SELECT skipq.prune('1 hour')"), 2);
    ASSERT_EQ(
        tl_int(pg,
               "SELECT count(*) FROM skipq.jobs WHERE id = %lld AND status = 'queued'"
               " AND payload->'skipq_parents'->'%lld' = jsonb_build_object('id', %lld)",
               (long long)b, (long long)a, (long long)a),
        1);
}

/* A parent that finishes while a producer is enqueueing its child waits
 * for the producer's commit, then releases the child. */
TEST(parent_finishing_while_child_is_enqueued)
{
    PGconn *pg = tl_db();
    PGconn *other = tl_connect();
    int64_t a = tl_int(pg, "SELECT skipq.enqueue('a')");
    tl_exec(pg, "BEGIN");
    int64_t b = tl_int(pg, "SELECT skipq.enqueue('b', depends_on => ARRAY[%lld])",
                       (long long)a);
    char sql[200];
    snprintf(
        sql, sizeof sql,
        "UPDATE skipq.jobs SET status = 'succeeded', finished_at = now() WHERE id = %lld",
        (long long)a);
    ASSERT_EQ(PQsendQuery(other, sql), 1);
    usleep(200000); /* let it block on the producer's lock (it must not finish first) */
    ASSERT_EQ(PQisBusy(other) || !PQconsumeInput(other) || PQisBusy(other), 1);
    tl_exec(pg, "COMMIT");
    PGresult *res;
    while ((res = PQgetResult(other))) {
        ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
    }
    assert_status(pg, b, "queued");
    PQfinish(other);
}

/* ---- batches ---------------------------------------------------------------- */

/* Members with an "i" divisible by 10 fail (no further attempt). */
static skipq_outcome
member_handler(skipq_job *job, void *ud)
{
    (void)ud;
    const char *p = skipq_job_payload_text(job);
    const char *i = strstr(p, "\"i\": ");
    if (i && atoi(i + 5) % 10 == 0)
        return skipq_job_fail(job, "ten");
    return SKIPQ_JOB_OK;
}

static const char *const members[] = {"m", NULL};

static void
run_batch(int workers)
{
    PGconn *pg = tl_db();
    int64_t bt =
        tl_int(pg, "SELECT skipq.batch_create('done', '{\"report\": true}', 'reports')");
    tl_exec(pg,
            "SELECT skipq.enqueue('m', jsonb_build_object('i', g), max_attempts => 1,"
            " batch => %lld) FROM generate_series(1, 1000) g",
            (long long)bt);
    /* five cancelled before they ran */
    tl_exec(pg, "SELECT skipq.cancel(ARRAY(SELECT id FROM skipq.jobs"
                " WHERE (payload->>'i')::int IN (1, 2, 3, 4, 5)))");
    ASSERT_EQ(tl_int(pg, "SELECT (skipq.batch_seal(%lld)).total", (long long)bt), 1000);
    struct running *r[2];
    for (int k = 0; k < workers; k++)
        r[k] = start_worker(test_config(8), members, member_handler);
    ASSERT_TRUE(tl_wait_int(
        pg, 20000, 1, "SELECT count(*) FROM skipq.batches WHERE finished_at IS NOT NULL"));
    for (int k = 0; k < workers; k++)
        stop_worker(r[k]);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'done'"), 1);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs j, skipq.batches b"
                     " WHERE j.kind = 'done' AND b.completion_job = j.id"
                     " AND j.queue = 'reports' AND j.status = 'queued'"
                     " AND j.payload = '{\"report\": true, \"skipq_batch\": {\"id\": %lld,"
                     " \"total\": 1000, \"succeeded\": 895, \"failed\": 100,"
                     " \"cancelled\": 5}}'",
                     (long long)bt),
              1);
    /* finished members count no more: a retry changes nothing */
    tl_exec(pg, "SELECT skipq.retry(ARRAY(SELECT id FROM skipq.jobs WHERE kind = 'm'"
                " AND status = 'failed' LIMIT 3))");
    ASSERT_EQ(tl_int(pg, "SELECT failed FROM skipq.batches"), 100);
}

TEST(batch_of_1000_completes_once)
{
    run_batch(1);
}

/* Two workers finish the last members at once. */
TEST(batch_of_1000_with_two_workers_completes_once)
{
    run_batch(2);
}

/* The same, forced: two transactions finish the last two members at
 * once, the second waiting on the batch's row. */
TEST(batch_last_two_members_finishing_at_once_complete_once)
{
    PGconn *pg = tl_db();
    PGconn *other = tl_connect();
    int64_t bt = tl_int(pg, "SELECT skipq.batch_create('done')");
    int64_t m1 = tl_int(pg, "SELECT skipq.enqueue('m', batch => %lld)", (long long)bt);
    int64_t m2 = tl_int(pg, "SELECT skipq.enqueue('m', batch => %lld)", (long long)bt);
    tl_exec(pg, "SELECT skipq.batch_seal(%lld)", (long long)bt);
    tl_exec(pg, "BEGIN");
    finish(pg, m1, "succeeded");
    char sql[200];
    snprintf(sql, sizeof sql,
             "UPDATE skipq.jobs SET status = 'failed', finished_at = now() WHERE id = %lld",
             (long long)m2);
    ASSERT_EQ(PQsendQuery(other, sql), 1);
    usleep(100000);
    tl_exec(pg, "COMMIT");
    PGresult *res;
    while ((res = PQgetResult(other))) {
        ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
    }
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE kind = 'done'"
                     " AND payload->'skipq_batch' @> '{\"succeeded\": 1, \"failed\": 1}'"),
              1);
    PQfinish(other);
}

/* Sealing a batch whose members all finished enqueues its job at once;
 * an empty batch too; a sealed batch takes no new member. */
TEST(batch_sealed_after_its_members_finished)
{
    PGconn *pg = tl_db();
    int64_t bt = tl_int(pg, "SELECT skipq.batch_create('done')");
    int64_t m = tl_int(pg, "SELECT skipq.enqueue('m', batch => %lld)", (long long)bt);
    finish(pg, m, "succeeded");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'done'"), 0);
    ASSERT_TRUE(tl_int(pg, "SELECT (skipq.batch_seal(%lld)).completion_job",
                       (long long)bt) > 0);
    int64_t empty = tl_int(pg, "SELECT skipq.batch_create('done')");
    ASSERT_TRUE(tl_int(pg, "SELECT (skipq.batch_seal(%lld)).completion_job",
                       (long long)empty) > 0);
    PGresult *res = PQexec(pg, "SELECT skipq.enqueue('m', batch => 1)");
    ASSERT_STREQ(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22023");
    ASSERT_CONTAINS(PQresultErrorMessage(res), "is sealed");
    PQclear(res);
}

/* ---- chains and privileges ------------------------------------------------- */

TEST(chain_runs_one_after_another)
{
    PGconn *pg = tl_db();
    char *ids = tl_str(
        pg, "SELECT skipq.enqueue_chain('[{\"kind\": \"a\"},"
            " {\"kind\": \"b\", \"payload\": {\"x\": 1}}, {\"kind\": \"c\"}]')::text");
    ASSERT_TRUE(ids);
    free(ids);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'waiting'"), 2);
    int64_t first = tl_int(pg, "SELECT min(id) FROM skipq.jobs");
    finish(pg, first, "succeeded");
    ASSERT_EQ(
        tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'b' AND status = 'queued'"
                   " AND payload->>'x' = '1' AND payload ? 'skipq_parents'"),
        1);
    PGresult *res = PQexec(pg, "SELECT skipq.enqueue_chain('[]')");
    ASSERT_STREQ(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22023");
    PQclear(res);
}

/* A producer enqueues children and batch members without UPDATE on jobs;
 * a worker role's completion releases them. */
TEST(producer_and_worker_roles_use_dependencies)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;
    int st = tl_skipq_run(NULL, &out, &err, "migrate --roles");
    if (st != 0)
        HARNESS_FAIL("migrate --roles: exit %d: %s", st, err);
    free(out);
    free(err);
    char prod[64], work[64];
    snprintf(prod, sizeof prod, "td_producer_%d", (int)getpid());
    snprintf(work, sizeof work, "td_worker_%d", (int)getpid());
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_producer", prod);
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_worker", work);
    PGconn *p = tl_connect_as(prod);
    int64_t a = tl_int(p, "SELECT skipq.enqueue('a')");
    int64_t bt = tl_int(p, "SELECT skipq.batch_create('done')");
    int64_t b =
        tl_int(p, "SELECT skipq.enqueue('b', depends_on => ARRAY[%lld], batch => %lld)",
               (long long)a, (long long)bt);
    tl_exec(p, "SELECT skipq.batch_seal(%lld)", (long long)bt);
    /* and cannot make another job wait */
    PGresult *res = PQexecParams(p,
                                 "SELECT skipq.deps_attach($1::int8, '{}', 'cancel', NULL)",
                                 1, NULL, (const char *[]){"1"}, NULL, NULL, 0);
    ASSERT_EQ(PQresultStatus(res), PGRES_FATAL_ERROR);
    ASSERT_CONTAINS(PQresultErrorMessage(res), "was not enqueued by this transaction");
    PQclear(res);
    PQfinish(p);

    char *url = tl_url_as(work);
    skipq_error e;
    skipq_config *cfg = test_config(2);
    ASSERT_OK(skipq_config_set_database(cfg, url, &e), &e);
    free(url);
    struct running *r = start_worker(cfg, diamond_kinds, diamond_handler);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE id = %lld"
                            " AND status = 'succeeded'",
                            (long long)b));
    ASSERT_TRUE(tl_wait_int(pg, 5000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'done'"));
    stop_worker(r);
    free(seen_d_payload);
    seen_d_payload = NULL;
    tl_exec(pg, "DROP ROLE %s, %s", prod, work);
}

/* ---- the command ------------------------------------------------------------ */

TEST(cli_batch_chain_and_waiting_status)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "batch new --on-complete done --payload '{\"a\": 1}' --queue r"),
              0);
    int64_t bt = strtoll(out, NULL, 10);
    ASSERT_TRUE(bt > 0);
    free(out);
    free(err);
    ASSERT_EQ(
        tl_skipq_run("{\"kind\": \"m\", \"payload\": {\"i\": 1}}\n\n{\"kind\": \"m\"}\n",
                     &out, &err, "batch add %lld --seal", (long long)bt),
        0);
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "batch show %lld", (long long)bt), 0);
    ASSERT_CONTAINS(out, "total            2");
    free(out);
    free(err);
    /* a bad line enqueues nothing */
    ASSERT_EQ(tl_skipq_run("{\"kind\": \"s\"}\n[1]\n", &out, &err, "chain"), 2);
    ASSERT_CONTAINS(err, "stdin line 2");
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run("{\"kind\": \"s1\"}\n{\"kind\": \"s2\"}\n", &out, &err, "chain"),
              0);
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs ls --status waiting --json"), 0);
    ASSERT_CONTAINS(out, "\"kind\":\"s2\"");
    free(out);
    free(err);
    int64_t s2 = tl_int(pg, "SELECT id FROM skipq.jobs WHERE kind = 's2'");
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs cancel %lld", (long long)s2), 0);
    ASSERT_CONTAINS(out, "cancelled");
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs retry %lld", (long long)s2), 0);
    ASSERT_CONTAINS(out, "cancelled -> waiting");
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "jobs retry %lld", (long long)s2), 0);
    ASSERT_CONTAINS(out, "waiting; not retried");
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "stats --json"), 0);
    ASSERT_CONTAINS(out, "\"waiting\":1");
    free(out);
    free(err);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
