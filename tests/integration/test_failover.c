/*
 * test_failover.c - failover to a real standby mid-drain. A private
 * primary and a streaming replica of it (tests/pg.sh standby), producers
 * and two workers on a multi-host URL with target_session_attrs=
 * read-write; while jobs flow, the primary stops (immediate) and the
 * standby is promoted. Producers and workers find the new primary by
 * themselves. The accounting, from the producer's own list of the jobs
 * it was told were enqueued:
 *   - synchronous replication: every acknowledged job is on the new
 *     primary, and every job there succeeds;
 *   - asynchronous: the acknowledged jobs that did not reach the standby
 *     are counted (and printed); every job that did succeeds.
 * Printed: time to the first enqueue and the first completion on the
 * new primary, jobs lost, jobs run again (attempts > 1).
 */
#include "../handlers/faultlib.h"
#include "skipq.h"

#include <pthread.h>
#include <stdatomic.h>

#define NJOBS 3000

static char dir_a[128], dir_b[128];

static void
destroy_clusters(void)
{
    if (dir_b[0])
        tl_run(NULL, NULL, NULL, "%s/tests/pg.sh destroy %s", SKIPQ_TEST_SOURCE_DIR, dir_b);
    if (dir_a[0])
        tl_run(NULL, NULL, NULL, "%s/tests/pg.sh destroy %s", SKIPQ_TEST_SOURCE_DIR, dir_a);
}

/* The port in the exports pg.sh printed. */
static int
port_in(const char *exports)
{
    const char *p = strstr(exports, "PGPORT=");
    return p ? atoi(p + strlen("PGPORT=")) : 0;
}

static char *
pg_sh(const char *fmt, const char *a, const char *b)
{
    char *out = NULL, *err = NULL;
    if (tl_run(NULL, &out, &err, fmt, SKIPQ_TEST_SOURCE_DIR, a, b) != 0)
        HARNESS_FAIL("tests/pg.sh failed: %s", err);
    free(err);
    return out;
}

/* Jobs are named by the producer's sequence number i (payload {"i": i}),
 * not by id: after an asynchronous failover the new primary's id sequence
 * may hand out again ids that were acknowledged on the old one. */
struct producer {
    const char *url;
    atomic_int nacked;
    atomic_llong first_after_ms; /* first ack after the first failed call */
    int errors;
};

/* Enqueue NJOBS one by one; a failed call is made again on a new
 * connection (it may have committed: an in-doubt job, counted apart). */
static void *
produce(void *arg)
{
    struct producer *p = arg;
    skipq_conn *conn = NULL;
    int64_t give_up = tl_now_ms() + 120000;

    for (int i = 0; i < NJOBS && tl_now_ms() < give_up;) {
        skipq_error err = {0};
        if (!conn && skipq_conn_open(p->url, &conn, &err) != SKIPQ_OK) {
            usleep(50000);
            continue;
        }
        char payload[32];
        int64_t id = 0;
        snprintf(payload, sizeof payload, "{\"i\": %d}", i);
        if (skipq_enqueue(conn, "p", payload, NULL, &id, &err) != SKIPQ_OK) {
            p->errors++;
            skipq_conn_close(conn);
            conn = NULL;
            usleep(50000);
            continue;
        }
        (void)id;
        atomic_fetch_add(&p->nacked, 1);
        if (p->errors && !atomic_load(&p->first_after_ms))
            atomic_store(&p->first_after_ms, tl_now_ms());
        i++;
        usleep(1000); /* a steady flow through the failover, not one burst */
    }
    skipq_conn_close(conn);
    return NULL;
}

static void
failover(bool sync)
{
    fl_deadline(300);
    snprintf(dir_a, sizeof dir_a, "/tmp/skipq-failover-a-%d", (int)getpid());
    snprintf(dir_b, sizeof dir_b, "/tmp/skipq-failover-b-%d", (int)getpid());
    atexit(destroy_clusters);
    char *ea = pg_sh("%s/tests/pg.sh start %s%s", dir_a, "");
    int pa = port_in(ea);
    char url_a[256], multi[512];
    snprintf(url_a, sizeof url_a, "postgresql://postgres@127.0.0.1:%d/postgres", pa);
    PGconn *a = PQconnectdb(url_a);
    ASSERT_TRUE(PQstatus(a) == CONNECTION_OK);
    ASSERT_EQ(tl_run(NULL, NULL, NULL, "%s migrate --database %s", tl_skipq(), url_a), 0);
    char *eb = pg_sh("%s/tests/pg.sh standby %s %s", dir_b, dir_a);
    int pb = port_in(eb);
    ASSERT_TRUE(pa > 0 && pb > 0);
    if (sync) { /* once the standby is there: commits wait for it from now on */
        tl_exec(a, "ALTER SYSTEM SET synchronous_standby_names = '*'");
        tl_exec(a, "ALTER SYSTEM SET synchronous_commit = on");
        tl_exec(a, "SELECT pg_reload_conf()");
    }
    ASSERT_TRUE(tl_wait_int(a, 30000, 1,
                            sync ? "SELECT count(*) FROM pg_stat_replication"
                                   " WHERE sync_state = 'sync'"
                                 : "SELECT count(*) FROM pg_stat_replication"
                                   " WHERE state = 'streaming'"));
    snprintf(multi, sizeof multi,
             "postgresql://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres"
             "?target_session_attrs=read-write&connect_timeout=2",
             pa, pb);

    const char *cfg = fl_file(".yaml",
                              "database: \"%s\"\n"
                              "worker:\n"
                              "  concurrency: 8\n"
                              "  poll_interval: 200ms\n"
                              "  heartbeat_interval: 500ms\n"
                              "  lease_timeout: 3s\n"
                              "retry:\n"
                              "  max_attempts: 20\n"
                              "  base: 100ms\n"
                              "  max: 1s\n"
                              "handlers:\n"
                              "  p:\n"
                              "    command: [\"/bin/true\"]\n",
                              multi);
    const char *logs[2] = {fl_log(), fl_log()};
    for (int i = 0; i < 2; i++)
        (void)fl_worker(logs[i], cfg, NULL);

    static struct producer prod;
    memset(&prod, 0, sizeof prod);
    prod.url = multi;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, produce, &prod), 0);

    /* mid-drain, mid-flow: the primary goes, the standby takes over */
    ASSERT_TRUE(tl_wait_int(a, 60000, 1,
                            "SELECT (count(*) >= 500)::int FROM skipq.jobs"
                            " WHERE status = 'succeeded'"));
    while (atomic_load(&prod.nacked) < NJOBS / 3)
        usleep(10000);
    ASSERT_TRUE(atomic_load(&prod.nacked) < NJOBS); /* still producing */
    PQfinish(a);
    int64_t t0 = tl_now_ms();
    free(pg_sh("%s/tests/pg.sh stop %s%s", dir_a, ""));
    free(pg_sh("%s/tests/pg.sh promote %s%s", dir_b, ""));
    int64_t promoted = tl_now_ms();

    char url_b[256];
    snprintf(url_b, sizeof url_b, "postgresql://postgres@127.0.0.1:%d/postgres", pb);
    PGconn *b = PQconnectdb(url_b);
    ASSERT_TRUE(PQstatus(b) == CONNECTION_OK);
    int64_t before = tl_int(b,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'");
    if (!tl_wait_int(b, 60000, 1,
                     "SELECT (count(*) > %" PRId64 ")::int FROM skipq.jobs"
                     " WHERE status = 'succeeded'",
                     before)) {
        fl_dump("worker", logs[0]);
        HARNESS_FAIL("no job completed on the new primary");
    }
    int64_t first_done = tl_now_ms();
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(atomic_load(&prod.nacked), NJOBS);
    /* everything on the new primary ends succeeded */
    if (!tl_wait_int(b, 120000, 0,
                     "SELECT count(*) FROM skipq.jobs WHERE status <> 'succeeded'")) {
        fl_dump("worker", logs[0]);
        fl_dump("worker", logs[1]);
        HARNESS_FAIL("jobs left unfinished on the new primary");
    }

    /* every i was acknowledged once (a failed call was made again) */
    int64_t lost = tl_int(b,
                          "SELECT count(*) FROM generate_series(0, %d) i WHERE NOT EXISTS"
                          " (SELECT FROM skipq.jobs j WHERE (j.payload->>'i')::int = i)",
                          NJOBS - 1);
    int64_t rerun = tl_int(b, "SELECT count(*) FROM skipq.jobs WHERE attempts > 1");
    /* a call cut off by the failover that had committed: its i twice */
    int64_t in_doubt = tl_int(b, "SELECT count(*) - count(DISTINCT payload->>'i')"
                                 " FROM skipq.jobs");
    printf("failover (%s replication): %d jobs acknowledged, %" PRId64
           " of them lost; %" PRId64 " run again; %" PRId64
           " enqueued but not acknowledged (a call cut off by the failover);"
           " promote took %" PRId64 " ms; first enqueue on the new primary %" PRId64
           " ms and first completion %" PRId64 " ms after the primary stopped;"
           " %d enqueue calls failed and were made again\n",
           sync ? "synchronous" : "asynchronous", NJOBS, lost, rerun, in_doubt,
           promoted - t0, (int64_t)atomic_load(&prod.first_after_ms) - t0, first_done - t0,
           prod.errors);
    if (sync)
        ASSERT_EQ(lost, 0);
    /* an unacknowledged job is one a cut-off call committed: at most one
     * per failed call */
    ASSERT_TRUE(in_doubt <= prod.errors);
    ASSERT_TRUE(prod.errors >= 1); /* the failover did cut the producer off */
    PQfinish(b);
    free(ea);
    free(eb);
}

TEST(failover_with_synchronous_replication_loses_nothing_acknowledged)
{
    failover(true);
}

TEST(failover_with_asynchronous_replication_counts_what_it_lost)
{
    failover(false);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
