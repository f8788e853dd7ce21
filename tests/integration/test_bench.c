/*
 * test_bench.c - a small `skipq bench` run, so the command cannot rot: every
 * measurement at a tiny N, its JSON lines parsed and their fields checked,
 * bad options refused with exit 2, and the throwaway database dropped, also
 * after Ctrl-C. The figures themselves are not checked: CI machines are
 * too noisy for that (bench/compare.sh is the real run).
 */
#include "testlib.h"

#include "skipq.h"

#include <json-c/json.h>
#include <signal.h>
#include <unistd.h>

/* How many bench databases of process pid exist. */
static int64_t
bench_dbs(PGconn *pg, long pid)
{
    return tl_int(pg,
                  "SELECT count(*) FROM pg_database WHERE datname = "
                  "'skipq_bench_%ld'",
                  pid);
}

static json_object *
field(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v))
        HARNESS_FAIL("missing \"%s\" in %s", key, json_object_to_json_string(o));
    return v;
}

static double
num(json_object *o, const char *key)
{
    json_object *v = field(o, key);
    ASSERT_TRUE(json_object_is_type(v, json_type_double) ||
                json_object_is_type(v, json_type_int));
    return json_object_get_double(v);
}

static bool
has(json_object *o, const char *key)
{
    return json_object_object_get_ex(o, key, NULL);
}

TEST(json_lines_every_measurement)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;
    /* sh prints its pid, then becomes skipq: the database is named by it */
    int rc = tl_run(NULL, &out, &err,
                    "echo $$; exec %s bench enqueue drain latency steady deep "
                    "command --jobs 300 --concurrency 4 --latency-jobs 20 "
                    "--rate 100 --duration 1s --deep-jobs 2000 --json",
                    tl_skipq());
    if (rc != 0)
        HARNESS_FAIL("exit %d: %s", rc, err ? err : "");
    char *save = NULL, *line = strtok_r(out, "\n", &save);
    ASSERT_TRUE(line != NULL);
    long pid = strtol(line, NULL, 10);
    ASSERT_TRUE(pid > 0);
    ASSERT_EQ(bench_dbs(pg, pid), 0);

    unsigned seen = 0;
    int lines = 0;
    static const char *const metrics[] = {"enqueue_single", "enqueue_bulk", "drain",
                                          "latency",        "steady",       "deep",
                                          "command_drain"};
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        json_object *o = json_tokener_parse(line);
        if (!o)
            HARNESS_FAIL("not JSON: %s", line);
        lines++;
        ASSERT_STREQ(json_object_get_string(field(o, "system")), "skipq");
        ASSERT_STREQ(json_object_get_string(field(o, "version")), SKIPQ_VERSION);
        ASSERT_TRUE(strlen(json_object_get_string(field(o, "config"))) > 0);
        const char *m = json_object_get_string(field(o, "metric"));
        ASSERT_TRUE(num(o, "jobs") > 0);
        for (size_t i = 0; i < sizeof metrics / sizeof metrics[0]; i++)
            if (strcmp(m, metrics[i]) == 0)
                seen |= 1u << i;
        if (strcmp(m, "latency") == 0 || strcmp(m, "steady") == 0) {
            double p50 = num(o, "p50_ms"), p95 = num(o, "p95_ms");
            double p99 = num(o, "p99_ms"), max = num(o, "max_ms");
            ASSERT_TRUE(p50 >= 0 && p50 <= p95 && p95 <= p99 && p99 <= max);
            if (strcmp(m, "latency") == 0) { /* also from the enqueue's commit */
                ASSERT_TRUE(num(o, "from_commit_p50_ms") >= 0);
                ASSERT_TRUE(num(o, "from_commit_p99_ms") >= num(o, "from_commit_p50_ms"));
                ASSERT_TRUE(num(o, "enqueue_p50_ms") > 0);
            }
        } else {
            ASSERT_TRUE(num(o, "seconds") > 0);
            ASSERT_TRUE(num(o, "jobs_per_s") > 0);
            ASSERT_TRUE(!has(o, "p50_ms"));
        }
        if (strcmp(m, "drain") == 0 || strcmp(m, "command_drain") == 0 ||
            strcmp(m, "deep") == 0) {
            ASSERT_TRUE(num(o, "max_rss_kb") > 0);
            ASSERT_TRUE(num(o, "cpu_s") >= 0);
        }
        if (strcmp(m, "deep") == 0) {
            ASSERT_TRUE(num(o, "backlog") >= 2000);
            ASSERT_TRUE(num(o, "claim_p50_ms") > 0);
            /* the claim must use the partial index, at any depth */
            ASSERT_TRUE(json_object_get_boolean(field(o, "claim_uses_index")));
        }
        if (strcmp(m, "steady") == 0)
            ASSERT_TRUE(num(o, "worst_stall_ms") >= 0);
        if (strncmp(json_object_get_string(field(o, "config")), "1conn-vs-insert", 15) == 0)
            ASSERT_TRUE(num(o, "insert_jobs_per_s") > 0); /* the INSERT's side */
        else
            ASSERT_TRUE(!has(o, "insert_jobs_per_s"));
        /* the persistent example handler against the same one forked */
        const char *cfg = json_object_get_string(field(o, "config"));
        if (strcmp(cfg, "c8 example persistent") == 0)
            ASSERT_TRUE(num(o, "fork_jobs_per_s") > 0);
        else
            ASSERT_TRUE(!has(o, "fork_jobs_per_s"));
        json_object_put(o);
    }
    /* 5 single (1conn, 8conn, 8conn-waiting and the two interleaved),
     * 2 bulk, drain, latency, steady, 3 deep, 3 command (/bin/true, the
     * example forked, the example persistent) */
    ASSERT_EQ(lines, 16);
    ASSERT_EQ(seen, (1u << 7) - 1);
    free(out);
    free(err);
}

/* Run `skipq bench ARGS --json` for one measurement: it must exit 0,
 * print one JSON line and leave no database behind. Returns the line,
 * parsed (the caller puts it), and stderr in *err_out if asked (the
 * caller frees it). */
static json_object *
bench_one(const char *args, char **err_out)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;
    /* sh prints its pid, then becomes skipq: the database is named by it */
    int rc = tl_run(NULL, &out, &err, "echo $$; exec %s bench %s --json", tl_skipq(), args);
    if (rc != 0)
        HARNESS_FAIL("exit %d: %s", rc, err ? err : "");
    char *save = NULL, *line = strtok_r(out, "\n", &save);
    ASSERT_EQ(bench_dbs(pg, strtol(line, NULL, 10)), 0);
    line = strtok_r(NULL, "\n", &save);
    ASSERT_TRUE(line != NULL);
    json_object *o = json_tokener_parse(line);
    if (!o)
        HARNESS_FAIL("not JSON: %s", line);
    ASSERT_TRUE(strtok_r(NULL, "\n", &save) == NULL);
    free(out);
    if (err_out)
        *err_out = err;
    else
        free(err);
    return o;
}

/* soak is not part of all: a short one, its windows and sizes */
TEST(soak_smoke)
{
    char *err = NULL;
    json_object *o = bench_one("soak --jobs 500 --duration 2s --rate 300"
                               " --retention 1s --concurrency 4",
                               &err);
    ASSERT_STREQ(json_object_get_string(field(o, "metric")), "soak");
    ASSERT_STREQ(json_object_get_string(field(o, "config")), "r300c4");
    /* the producer keeps its rate (it catches up after a slow batch), so
     * jobs = rate x the run's length, which a loaded machine stretches */
    ASSERT_TRUE(num(o, "seconds") >= 2.0);
    ASSERT_TRUE(num(o, "jobs") >= 500);
    ASSERT_TRUE(num(o, "jobs_per_s") >= 200 && num(o, "jobs_per_s") <= 330);
    ASSERT_TRUE(num(o, "max_jobs_per_s") > 0);
    /* a loaded CI machine may start no job in a 200 ms window */
    ASSERT_TRUE(num(o, "first_window_jobs_per_s") >= 0);
    ASSERT_TRUE(num(o, "last_window_jobs_per_s") >= 0);
    ASSERT_TRUE(num(o, "table_kb_mid") > 0 && num(o, "table_kb_end") > 0);
    ASSERT_TRUE(num(o, "indexes_kb_mid") > 0 && num(o, "indexes_kb_end") > 0);
    ASSERT_TRUE(num(o, "backlog") >= 0);
    /* without --archive-after nothing is archived */
    ASSERT_EQ((long long)num(o, "archive_kb_end"), 0);
    ASSERT_EQ((long long)num(o, "archive_partitions_end"), 0);
    /* left out only if no window saw a pickup */
    if (has(o, "latency_p50_first_ms")) {
        ASSERT_TRUE(num(o, "latency_p50_first_ms") >= 0);
        ASSERT_TRUE(num(o, "latency_p50_last_ms") >= 0);
        ASSERT_TRUE(num(o, "latency_p50_max_drift") >= 0);
    }
    json_object_put(o);
    /* ten windows on stderr */
    ASSERT_CONTAINS(err, "soak: window 10:");
    ASSERT_CONTAINS(err, "pickup p50/p99");
    free(err);
}

/* --windows and the archive options reach the run: three windows, the
 * worker accepts archive_after and archive_partition, and the config says
 * the archive is on */
TEST(soak_windows_and_archive)
{
    char *err = NULL;
    json_object *o = bench_one("soak --jobs 500 --duration 2s --rate 300 --windows 3"
                               " --retention 2s --archive-after 1s --archive-partition 1m"
                               " --concurrency 4",
                               &err);
    ASSERT_STREQ(json_object_get_string(field(o, "config")), "r300c4a1000");
    ASSERT_TRUE(num(o, "archive_kb_mid") >= 0 && num(o, "archive_kb_end") >= 0);
    ASSERT_TRUE(num(o, "archive_partitions_end") >= 0);
    json_object_put(o);
    ASSERT_CONTAINS(err, "soak: window 3:");
    ASSERT_CONTAINS(err, "archive_after 1s, archive_partition 60s");
    ASSERT_TRUE(strstr(err, "soak: window 4:") == NULL);
    free(err);
}

TEST(human_table)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;
    int rc = tl_run(NULL, &out, &err, "echo $$; exec %s bench drain --jobs 200 --quiet",
                    tl_skipq());
    if (rc != 0)
        HARNESS_FAIL("exit %d: %s", rc, err ? err : "");
    ASSERT_EQ(bench_dbs(pg, strtol(out, NULL, 10)), 0);
    ASSERT_CONTAINS(out, "metric");
    ASSERT_CONTAINS(out, "jobs/s");
    ASSERT_CONTAINS(out, "drain");
    ASSERT_CONTAINS(out, "c16");
    free(out);
    free(err);
}

/* drain with on_success delete: the bench counts deleted rows as done
 * (it would wait forever for `succeeded` rows otherwise) */
TEST(drain_with_on_success_delete)
{
    json_object *o = bench_one("drain --jobs 300 --concurrency 4 --on-success delete",
                               NULL);
    ASSERT_STREQ(json_object_get_string(field(o, "config")), "c4del");
    ASSERT_EQ((long long)num(o, "jobs"), 300);
    ASSERT_TRUE(num(o, "jobs_per_s") > 0);
    json_object_put(o);
}

TEST(bad_options_exit_2)
{
    static const char *const bad[][2] = {
        {"--jobs 0", "--jobs"},
        {"--concurrency x", "--concurrency"},
        {"--duration 0", "--duration"},
        {"--workers 1000", "--workers"},
        {"--on-success drop", "--on-success must be keep or delete"},
        {"sprint", "unknown measurement \"sprint\""},
        {"--nope", "--nope"},
        {"--windows 0", "--windows"},
        {"--archive-partition 30s", "archive_partition"},
        {"--archive-after 1m",
         "--archive-after (60000 ms) must be shorter than --retention"},
    };
    tl_db();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *err = NULL;
        int rc = tl_skipq_run(NULL, NULL, &err, "bench %s", bad[i][0]);
        if (rc != 2)
            HARNESS_FAIL("bench %s: exit %d, want 2 (%s)", bad[i][0], rc, err ? err : "");
        ASSERT_CONTAINS(err, bad[i][1]);
        free(err);
    }
}

/* --help and --version answer before any database is touched: the man
 * pages are made from `skipq bench --help` at build time, where there is
 * none (scripts/man.sh). A closed port stands for "no database". */
TEST(help_and_version_need_no_database)
{
    char *out = NULL, *err = NULL;

    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "bench --help --database postgresql://127.0.0.1:1/x"),
              0);
    ASSERT_CONTAINS(out, "usage: skipq bench");
    free(out);
    free(err);
    out = err = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err,
                           "bench --version --database postgresql://127.0.0.1:1/x"),
              0);
    ASSERT_CONTAINS(out, "skipq ");
    free(out);
    free(err);
}

struct dbwait {
    PGconn *pg;
    long pid;
};

static bool
db_exists(void *arg)
{
    struct dbwait *w = arg;
    return bench_dbs(w->pg, w->pid) == 1;
}

static bool
db_gone(void *arg)
{
    struct dbwait *w = arg;
    return bench_dbs(w->pg, w->pid) == 0;
}

TEST(interrupt_drops_database)
{
    PGconn *pg = tl_db();
    const char *log = tl_tmpfile(".log");
    pid_t pid = tl_spawn(log, "exec %s bench steady --rate 50 --duration 60s", tl_skipq());
    struct dbwait w = {pg, (long)pid};

    ASSERT_TRUE(wait_until(15000, db_exists, &w));
    usleep(1500 * 1000); /* into the measurement */
    tl_kill(pid, SIGINT);
    int rc = tl_wait_pid(pid, 20000);
    ASSERT_EQ(rc, 1);
    ASSERT_TRUE(wait_until(5000, db_gone, &w));
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
