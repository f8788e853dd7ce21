/*
 * test_queue_pause.c - pausing and resuming queues (sql/queues.sql,
 * src/worker_pause.c, cli/cmd_queue.c): four busy workers stop claiming
 * from a paused queue within a second of the pause's commit and lose
 * nothing, a paused kind waits while the rest of its queue runs, a forged
 * NOTIFY changes nothing, a pause outlives a worker's restart, who may
 * pause, and the CLI.
 */
#include "skipq.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
stop_worker(pid_t w)
{
    kill(w, SIGTERM);
    tl_wait_pid(w, 15000);
}

struct claim_after {
    PGconn *pg;
    const char *since; /* a timestamptz literal */
};

/* A job of queue q claimed after `since`. */
static bool
claimed_after(void *arg)
{
    struct claim_after *c = arg;
    return tl_int(c->pg,
                  "SELECT count(*) FROM skipq.jobs WHERE queue = 'q'"
                  " AND started_at > '%s'::timestamptz",
                  c->since) > 0;
}

/*
 * Four workers at concurrency 4 run 0.1 s jobs of queue q; the queue is
 * paused while they are busy, and 40 more jobs are enqueued. The last
 * claim from q is at most one claim in flight after the pause's commit
 * (measured on the database clock and printed), no claim follows for
 * 1.5 s more, the jobs wait, and after the resume every job has run
 * once. Jobs claimed ahead and not started go back unstarted.
 */
TEST(pause_with_four_busy_workers_stops_claims_and_loses_nothing)
{
    PGconn *pg = tl_db();
    const char *cfg = tl_write_config("worker:\n  concurrency: 4\n");
    pid_t w[4];

    tl_exec(pg, "SELECT skipq.enqueue('s', queue => 'q') FROM generate_series(1, 240)");
    for (int i = 0; i < 4; i++)
        w[i] = tl_spawn(NULL,
                        "exec %s worker --config %s --queue q --handler 's=sleep 0.1'",
                        tl_skipq(), cfg);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT (count(*) >= 30)::int FROM skipq.jobs"
                            " WHERE status = 'succeeded'"));
    /* the statement's clock_timestamp() is before its commit: the delay
     * measured from it is an upper bound */
    char *t0 = tl_str(pg,
                      "SELECT skipq.queue_pause('q')::text || ' ' || clock_timestamp()");
    ASSERT_TRUE(strncmp(t0, "true ", 5) == 0);
    const char *paused_at = t0 + 5;
    tl_exec(pg, "SELECT skipq.enqueue('s', queue => 'q') FROM generate_series(1, 40)");
    ASSERT_TRUE(tl_wait_int(pg, 10000, 0,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"));
    char *delay = tl_str(pg,
                         "SELECT coalesce(round(extract(epoch FROM max(started_at) - '%s')"
                         " * 1000), 0) FROM skipq.jobs WHERE started_at > '%s'",
                         paused_at, paused_at);
    printf("pause: last claim %s ms after the pause's commit (%lld claims after it)\n",
           delay,
           (long long)tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE started_at > '%s'",
                             paused_at));
    ASSERT_TRUE(atoll(delay) < 1000);
    char since[128];
    snprintf(since, sizeof since, "%s", paused_at);
    char *later = tl_str(pg, "SELECT (timestamptz '%s' + interval '1 second')::text",
                         since);
    struct claim_after ca = {pg, later};
    ASSERT_TRUE(!wait_until(1500, claimed_after, &ca));
    ASSERT_TRUE(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'") >=
                40);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.queue_states"
                         " WHERE queue = 'q' AND paused"),
              1);

    ASSERT_EQ(tl_int(pg, "SELECT skipq.queue_resume('q')::int"), 1);
    ASSERT_TRUE(tl_wait_int(pg, 30000, 280,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE attempts <> 1"), 0);
    for (int i = 0; i < 4; i++)
        stop_worker(w[i]);
    free(t0);
    free(delay);
    free(later);
}

/* A paused kind waits while the other kind of its queue runs; resuming
 * the kind runs it. */
TEST(paused_kind_waits_while_the_rest_of_the_queue_runs)
{
    PGconn *pg = tl_db();
    ASSERT_EQ(tl_int(pg, "SELECT skipq.queue_pause('q', 'a')::int"), 1);
    ASSERT_EQ(tl_int(pg, "SELECT skipq.queue_pause('q', 'a')::int"), 0);
    tl_exec(pg, "SELECT skipq.enqueue(k, queue => 'q') FROM generate_series(1, 5),"
                " unnest(ARRAY['a', 'b']) AS k");
    pid_t w = tl_spawn(NULL, "exec %s worker --queue q --handler a=true --handler b=true",
                       tl_skipq());
    ASSERT_TRUE(tl_wait_int(pg, 10000, 5,
                            "SELECT count(*) FROM skipq.jobs WHERE kind = 'b'"
                            " AND status = 'succeeded'"));
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE kind = 'a'"
                         " AND status = 'queued'"),
              5);
    /* resuming another kind changes nothing */
    ASSERT_EQ(tl_int(pg, "SELECT skipq.queue_resume('q', 'b')::int"), 0);
    ASSERT_EQ(tl_int(pg, "SELECT skipq.queue_resume('q', 'a')::int"), 1);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 10,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    stop_worker(w);
}

/* The NOTIFY is only a hint: a worker role can send one but can pause
 * nothing, and a forged "resume" does not resume a paused queue. */
TEST(forged_notify_pauses_nothing)
{
    PGconn *pg = tl_db();
    char role[64];
    tl_apply_roles();
    snprintf(role, sizeof role, "qp_worker_%d", (int)getpid());
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_worker", role);
    PGconn *cw = tl_connect_as(role);
    tl_expect_denied(cw, "SELECT skipq.queue_pause('q')");
    tl_expect_denied(cw, "INSERT INTO skipq.queues (queue, paused) VALUES ('q', true)");
    tl_expect_denied(cw, "UPDATE skipq.queues SET paused = true");
    ASSERT_EQ(tl_int(cw, "SELECT count(*) FROM skipq.queues"), 0);

    pid_t w = tl_spawn(NULL, "exec %s worker --queue q --handler s=true", tl_skipq());
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1, "SELECT count(*) FROM skipq.active_workers"));
    tl_exec(cw, "SELECT pg_notify('skipq_control', 'pause q')");
    tl_exec(pg, "SELECT skipq.enqueue('s', queue => 'q') FROM generate_series(1, 3)");
    ASSERT_TRUE(tl_wait_int(pg, 10000, 3,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));

    ASSERT_EQ(tl_int(pg, "SELECT skipq.queue_pause('q')::int"), 1);
    tl_exec(cw, "SELECT pg_notify('skipq_control', 'resume q')");
    tl_exec(pg, "SELECT skipq.enqueue('s', queue => 'q') FROM generate_series(1, 3)");
    ASSERT_TRUE(!tl_wait_int(pg, 1500, 4,
                             "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    ASSERT_EQ(tl_int(pg, "SELECT skipq.queue_resume('q')::int"), 1);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 6,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    stop_worker(w);
    PQfinish(cw);
    tl_exec(pg, "DROP ROLE %s", role);
}

/* The pause is a row: a worker started afterwards (--once, then a
 * long-running one) claims nothing from the queue until the resume,
 * which wakes it; a pause written without a NOTIFY is read at the next
 * heartbeat. */
TEST(pause_survives_a_worker_restart)
{
    PGconn *pg = tl_db();
    ASSERT_EQ(tl_int(pg, "SELECT skipq.queue_pause('q')::int"), 1);
    tl_exec(pg, "SELECT skipq.enqueue('s', queue => q) FROM generate_series(1, 3),"
                " unnest(ARRAY['q', 'r']) AS q");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL,
                           "worker --once --queue q --queue r"
                           " --handler s=true"),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE queue = 'q'"
                         " AND status = 'queued'"),
              3);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE queue = 'r'"
                         " AND status = 'succeeded'"),
              3);
    const char *cfg = tl_write_config("worker:\n  heartbeat_interval: 1s\n"
                                      "  lease_timeout: 5s\n");
    const char *log = tl_tmpfile(".log");
    pid_t w = tl_spawn(log,
                       "exec %s worker --config %s --queue q --queue r --handler s=true",
                       tl_skipq(), cfg);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1, "SELECT count(*) FROM skipq.active_workers"));
    ASSERT_TRUE(!tl_wait_int(pg, 1000, 1,
                             "SELECT count(*) FROM skipq.jobs WHERE queue = 'q'"
                             " AND status = 'succeeded'"));
    ASSERT_EQ(tl_int(pg, "SELECT skipq.queue_resume('q')::int"), 1);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 6,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    /* no NOTIFY: the heartbeat reads it */
    tl_exec(pg, "INSERT INTO skipq.queues (queue, paused) VALUES ('r', true)");
    ASSERT_TRUE(tl_wait_file_has(log, "queue \"r\" paused", 5000));
    tl_exec(pg, "SELECT skipq.enqueue('s', queue => 'r')");
    ASSERT_TRUE(!tl_wait_int(pg, 1000, 7,
                             "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    stop_worker(w);
}

TEST(cli_queue_ls_pause_resume)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;
    tl_exec(pg, "SELECT skipq.enqueue('s', queue => 'q') FROM generate_series(1, 2)");
    tl_exec(pg, "SELECT skipq.enqueue('s', queue => 'e' || chr(27) || 'x')");
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "queue ls"), 0);
    ASSERT_CONTAINS(out, "queue");
    ASSERT_CONTAINS(out, "state");
    ASSERT_CONTAINS(out, "e\\u001bx");
    ASSERT_TRUE(strchr(out, 27) == NULL);
    ASSERT_CONTAINS(out, "active");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "queue pause q"), 0);
    ASSERT_CONTAINS(out, "queue q paused");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "queue pause q"), 0);
    ASSERT_CONTAINS(out, "queue q was paused already");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "queue pause other --kind k"), 0);
    ASSERT_CONTAINS(out, "kind k in queue other paused");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "queue ls"), 0);
    ASSERT_CONTAINS(out, "paused kinds: k");
    ASSERT_CONTAINS(out, "paused");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "queue ls --json"), 0);
    ASSERT_CONTAINS(out, "{\"queue\":\"q\",\"paused\":true,\"paused_kinds\":[],"
                         "\"runnable\":2,\"scheduled\":0,\"waiting\":0,\"running\":0,"
                         "\"succeeded\":0,\"failed\":0,\"cancelled\":0,"
                         "\"max_running\":null,\"max_running_per_key\":null,\"rate\":null,"
                         "\"age_after\":null,\"rate_by\":null}");
    ASSERT_CONTAINS(out, "{\"queue\":\"other\",\"paused\":false,\"paused_kinds\":[\"k\"],");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "stats"), 0);
    ASSERT_CONTAINS(out, "q (paused)");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "stats --json"), 0);
    ASSERT_CONTAINS(out, "\"paused\":true,\"paused_kinds\":[]");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "queue resume q"), 0);
    ASSERT_CONTAINS(out, "queue q resumed");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "queue resume q"), 0);
    ASSERT_CONTAINS(out, "queue q was not paused");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "queue resume other"), 0);
    ASSERT_CONTAINS(out, "queue other resumed");
    free(out);

    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "queue pause"), 2);
    ASSERT_CONTAINS(err, "queue pause takes one NAME");
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "queue pause a b"), 2);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "queue pause q --kind ''"), 2);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "queue frob"), 2);
    ASSERT_CONTAINS(err, "unknown queue command \"frob\"");
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "queue ls extra"), 2);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "queue"), 2);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "queue --help"), 0);
    ASSERT_CONTAINS(out, "usage: skipq queue ls");
    free(out);
}

/* Only skipq_admin pauses; a producer gets exit 1 and the server's
 * message from the CLI. */
TEST(cli_queue_pause_needs_the_admin)
{
    PGconn *pg = tl_db();
    char role[64], *err = NULL, *out = NULL;
    tl_apply_roles();
    snprintf(role, sizeof role, "qp_producer_%d", (int)getpid());
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_producer", role);
    char *url = tl_url_as(role);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "queue pause q --database '%s'", url), 1);
    ASSERT_CONTAINS(err, "could not pause queue \"q\"");
    ASSERT_CONTAINS(err, "permission denied");
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "queue ls --database '%s'", url), 0);
    free(out);
    free(url);
    tl_exec(pg, "DROP ROLE %s", role);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
