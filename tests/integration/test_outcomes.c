/*
 * test_outcomes.c - what handlers say besides "done" or "failed", for
 * every handler kind: fail for good, snooze (after a delay or until a
 * time, the attempt not counted), cancel, and progress while running,
 * each seen in the table and in `skipq jobs show`.
 *
 *   command_*       a command writes JSON lines on SKIPQ_CONTROL_FD
 *   persistent_*    a persistent handler answers "fail", "snooze" with
 *                   "until", "cancel", and sends progress lines
 *   c_handler_*     a C handler calls skipq_job_fail_permanent,
 *                   skipq_job_snooze_until, skipq_job_cancel and
 *                   skipq_job_progress
 *   worker_role_*   skipq.job_progress writes only the caller's claims
 *
 * Progress is waited for in the table while the handler still runs (the
 * handler waits for a file the test creates once it has seen it), never
 * slept for.
 */
#include "../handlers/faultlib.h"
#include "skipq.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* 2030-01-01T12:00:00Z, the snooze time the handlers ask for */
#define UNTIL_US INT64_C(1893499200000000)

/* A command handler in sh, driven by its payload's "mode". */
static const char command_script[] =
    "p=$(cat)\n"
    "case \"$p\" in\n"
    "*'\"mode\": \"fail\"'*)\n"
    "  echo '{\"outcome\": \"fail\", \"error\": \"bad input, never retry\"}'"
    " >&\"$SKIPQ_CONTROL_FD\"; exit 1;;\n"
    "*'\"mode\": \"snooze\"'*)\n"
    "  echo '{\"outcome\": \"snooze\", \"delay_ms\": 60000}' >&3;;\n"
    "*'\"mode\": \"until\"'*)\n"
    "  echo '{\"outcome\": \"snooze\", \"until\": \"2030-01-01T14:00:00+02:00\"}' >&3;;\n"
    "*'\"mode\": \"cancel\"'*)\n"
    "  echo '{\"outcome\": \"cancel\", \"reason\": \"not needed\"}' >&3; exit 3;;\n"
    "*'\"mode\": \"progress\"'*)\n"
    "  echo '{\"progress\": 40, \"message\": \"halfway\"}' >&3\n"
    "  while [ ! -e \"$OUTCOME_GO\" ]; do sleep 0.02; done\n"
    "  echo '{\"progress\": 100, \"message\": \"all done\"}' >&3;;\n"
    "*'\"mode\": \"junk\"'*)\n"
    "  printf 'not json\\n{\"outcome\": \"explode\"}\\n{\"progress\": 400}\\n"
    "\\033]0;title\\n' >&3;;\n"
    "esac\n";

/* The same vocabulary from a persistent handler. */
static const char persistent_script[] =
    "while IFS= read -r line; do\n"
    "  id=${line#*\\\"id\\\":}; id=${id%%,*}\n"
    "  case \"$line\" in\n"
    "  *'\"mode\": \"fail\"'*)\n"
    "    echo \"{\\\"id\\\": $id, \\\"outcome\\\": \\\"fail\\\","
    " \\\"error\\\": \\\"bad input\\\"}\";;\n"
    "  *'\"mode\": \"until\"'*)\n"
    "    echo \"{\\\"id\\\": $id, \\\"outcome\\\": \\\"snooze\\\","
    " \\\"until\\\": \\\"2030-01-01T12:00:00Z\\\"}\";;\n"
    "  *'\"mode\": \"cancel\"'*)\n"
    "    echo \"{\\\"id\\\": $id, \\\"outcome\\\": \\\"cancel\\\","
    " \\\"reason\\\": \\\"not needed\\\"}\";;\n"
    "  *'\"mode\": \"progress\"'*)\n"
    "    echo \"{\\\"id\\\": $id, \\\"progress\\\": 400}\"\n" /* logged, ignored */
    "    echo \"{\\\"id\\\": $id, \\\"progress\\\": 30, \\\"message\\\": \\\"a third\\\"}\"\n"
    "    while [ ! -e \"$OUTCOME_GO\" ]; do sleep 0.02; done\n"
    "    echo \"{\\\"id\\\": $id, \\\"progress\\\": 90, \\\"message\\\": \\\"nearly\\\"}\"\n"
    "    echo \"{\\\"id\\\": $id, \\\"outcome\\\": \\\"ok\\\"}\";;\n"
    "  *) echo \"{\\\"id\\\": $id, \\\"outcome\\\": \\\"ok\\\"}\";;\n"
    "  esac\n"
    "done\n";

/* A worker config with kind `c` run by script (persistent or not). */
static const char *
script_config(const char *script, bool persistent)
{
    const char *path = fl_file(".sh", "%s", script);
    char rest[1024];
    snprintf(rest, sizeof rest,
             "retry:\n  base: 100ms\n  jitter: 0\n"
             "handlers:\n"
             "  c:\n"
             "    command: [/bin/sh, %s]\n"
             "%s",
             path, persistent ? "    persistent: true\n    processes: 1\n" : "");
    return fl_worker_config(2, "200ms", NULL, rest);
}

static void
run_once(const char *cfg, char **err_out)
{
    char *err = NULL;
    int rc = tl_skipq_run(NULL, NULL, &err, "worker --once --config %s", cfg);
    if (rc != 0)
        fprintf(stderr, "%s", err ? err : "");
    ASSERT_EQ(rc, 0);
    if (err_out)
        *err_out = err;
    else
        free(err);
}

/* `skipq jobs show ID` must say each of want (NULL-terminated). */
static void
show_says(int64_t id, const char *const *want)
{
    char *out = NULL, *err = NULL;
    int rc = tl_skipq_run(NULL, &out, &err, "jobs show %" PRId64, id);
    if (rc != 0)
        fprintf(stderr, "%s", err ? err : "");
    ASSERT_EQ(rc, 0);
    for (const char *const *w = want; *w; w++)
        ASSERT_CONTAINS(out, *w);
    free(out);
    free(err);
}

static int64_t
enqueue_mode(PGconn *pg, const char *mode)
{
    return tl_int(pg, "SELECT skipq.enqueue('c', jsonb_build_object('mode', '%s'))", mode);
}

/* ---- the three outcomes, for command and persistent handlers ---------------- */

static void
outcomes_of(bool persistent)
{
    PGconn *pg = tl_db();
    fl_deadline(60);
    const char *cfg = script_config(persistent ? persistent_script : command_script,
                                    persistent);
    int64_t fail = enqueue_mode(pg, "fail");
    int64_t until = enqueue_mode(pg, "until");
    int64_t cancel = enqueue_mode(pg, "cancel");
    int64_t snooze = persistent ? 0 : enqueue_mode(pg, "snooze");
    run_once(cfg, NULL);

    /* failed for good at its first attempt, four attempts left */
    char *s = tl_str(pg,
                     "SELECT status || ' ' || attempts || ' ' || last_error || ' '"
                     " || jsonb_array_length(errors) FROM skipq.jobs WHERE id = %" PRId64,
                     fail);
    ASSERT_STREQ(s,
                 persistent ? "failed 1 bad input 1" : "failed 1 bad input, never retry 1");
    free(s);
    show_says(fail, (const char *const[]){"failed", "bad input", "attempt 1", NULL});

    /* snoozed until the time asked for, the attempt not counted */
    s = tl_str(pg,
               "SELECT status || ' ' || attempts || ' '"
               " || (abs(extract(epoch FROM run_at - '2030-01-01T12:00:00Z')) < 1)"
               " || ' '"
               " || jsonb_array_length(errors) FROM skipq.jobs WHERE id = %" PRId64,
               until);
    ASSERT_STREQ(s, "queued 0 true 0");
    free(s);
    show_says(until, (const char *const[]){"queued", "2030-01-01", NULL});
    if (snooze) {
        ASSERT_EQ(tl_int(pg,
                         "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                         " AND status = 'queued' AND attempts = 0"
                         " AND run_at > now() + interval '50 seconds'",
                         snooze),
                  1);
    }

    /* cancelled with its reason, whatever the exit status */
    s = tl_str(pg, "SELECT status || ' ' || last_error FROM skipq.jobs WHERE id = %" PRId64,
               cancel);
    ASSERT_STREQ(s, "cancelled not needed");
    free(s);
    show_says(cancel, (const char *const[]){"cancelled", "not needed", NULL});
}

TEST(command_handler_fails_permanently_snoozes_and_cancels)
{
    outcomes_of(false);
}

TEST(persistent_handler_fails_permanently_snoozes_and_cancels)
{
    outcomes_of(true);
}

/* ---- progress while running ------------------------------------------------- */

static void
progress_of(bool persistent, int first, const char *first_msg, int last,
            const char *last_msg)
{
    PGconn *pg = tl_db();
    fl_deadline(60);
    const char *go = fl_file(".go", "%s", "");
    unlink(go);
    setenv("OUTCOME_GO", go, 1);
    const char *cfg = script_config(persistent ? persistent_script : command_script,
                                    persistent);
    int64_t id = enqueue_mode(pg, "progress");
    const char *log = fl_log();
    pid_t w = fl_worker(log, cfg, NULL);

    /* seen in the table, the view and jobs show while the handler runs */
    if (!tl_wait_int(pg, 10000, 1,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND status = 'running' AND (progress->>'percent')::int = %d",
                     id, first))
        fl_dump("worker", log);
    char *s = tl_str(pg,
                     "SELECT progress_percent || ' ' || progress_message"
                     " FROM skipq.running_jobs WHERE id = %" PRId64,
                     id);
    char want[128];
    snprintf(want, sizeof want, "%d %s", first, first_msg);
    ASSERT_STREQ(s, want);
    free(s);
    snprintf(want, sizeof want, "%d%%", first);
    show_says(id, (const char *const[]){"running", want, first_msg, NULL});
    char *out = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "jobs ls --status running"), 0);
    ASSERT_CONTAINS(out, want);
    free(out);

    /* the last report is written with the job's end */
    tl_write_file(go, "go");
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                            " AND status = 'succeeded'",
                            id));
    s = tl_str(pg,
               "SELECT (progress->>'percent') || ' ' || (progress->>'message')"
               " FROM skipq.jobs WHERE id = %" PRId64,
               id);
    snprintf(want, sizeof want, "%d %s", last, last_msg);
    ASSERT_STREQ(s, want);
    free(s);
    tl_kill(w, SIGTERM);
    ASSERT_EQ(fl_wait_exit(w, 20000), 0);
}

TEST(command_handler_reports_progress_while_running)
{
    progress_of(false, 40, "halfway", 100, "all done");
}

TEST(persistent_handler_reports_progress_while_running)
{
    progress_of(true, 30, "a third", 90, "nearly");
}

/* Lines that are not the protocol are logged, escaped, and ignored: the
 * job ends by its exit status. */
TEST(command_bad_control_lines_are_logged_and_ignored)
{
    PGconn *pg = tl_db();
    fl_deadline(60);
    const char *cfg = script_config(command_script, false);
    int64_t id = enqueue_mode(pg, "junk");
    char *err = NULL;
    run_once(cfg, &err);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND status = 'succeeded' AND progress IS NULL",
                     id),
              1);
    ASSERT_CONTAINS(err, "(not JSON): not json");
    ASSERT_CONTAINS(err, "unknown outcome \"explode\"");
    ASSERT_CONTAINS(err, "\"progress\" must be a number from 0 to 100");
    ASSERT_CONTAINS(err, "\\u001b]0;title");
    ASSERT_TRUE(strchr(err, '\033') == NULL);
    free(err);
}

/* ---- C handlers ------------------------------------------------------------- */

static atomic_int c_go;

static skipq_outcome
c_handler(skipq_job *job, void *ud)
{
    (void)ud;
    const char *p = skipq_job_payload_text(job);
    skipq_error err;

    if (strstr(p, "\"fail\""))
        return skipq_job_fail_permanent(job, "bad input %d", 7);
    if (strstr(p, "\"until\""))
        return skipq_job_snooze_until(job, UNTIL_US);
    if (strstr(p, "\"cancel\""))
        return skipq_job_cancel(job, "not %s", "needed");
    if (strstr(p, "\"progress\"")) {
        if (skipq_job_progress(job, 101, "too far", &err) != SKIPQ_ERR_INVALID)
            return skipq_job_fail(job, "a percent of 101 was taken");
        for (int i = 0; i <= 55; i++) /* chatty: only the last is written */
            (void)skipq_job_progress(job, i, "working", &err);
        while (!atomic_load(&c_go) && !skipq_job_should_stop(job)) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        (void)skipq_job_progress(job, 100, NULL, &err);
    }
    return SKIPQ_JOB_OK;
}

struct running {
    pthread_t thread;
    skipq_worker *w;
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

TEST(c_handler_fails_permanently_snoozes_cancels_and_reports_progress)
{
    PGconn *pg = tl_db();
    skipq_error err;
    skipq_config *cfg = skipq_config_new();
    fl_deadline(60);
    ASSERT_OK(skipq_config_set_concurrency(cfg, 4, &err), &err);
    ASSERT_OK(skipq_config_set_poll_interval(cfg, 200, &err), &err);
    ASSERT_OK(skipq_config_set_database(cfg, tl_url(), &err), &err);
    int64_t fail = enqueue_mode(pg, "fail");
    int64_t until = enqueue_mode(pg, "until");
    int64_t cancel = enqueue_mode(pg, "cancel");
    int64_t prog = enqueue_mode(pg, "progress");
    struct running r = {0};
    ASSERT_OK(skipq_worker_new(cfg, &r.w, &err), &err);
    ASSERT_OK(skipq_worker_register(r.w, "c", c_handler, NULL, &err), &err);
    ASSERT_EQ(pthread_create(&r.thread, NULL, run_thread, &r), 0);

    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                            " AND status = 'running' AND (progress->>'percent')::int = 55",
                            prog));
    show_says(prog, (const char *const[]){"55%", "working", NULL});
    atomic_store(&c_go, 1);
    ASSERT_TRUE(tl_wait_int(pg, 10000, 4,
                            "SELECT count(*) FROM skipq.jobs"
                            " WHERE status IN ('failed', 'cancelled', 'succeeded')"
                            " OR run_at > '2029-01-01'"));
    skipq_worker_stop(r.w);
    pthread_join(r.thread, NULL);
    ASSERT_OK(r.rc, &r.err);
    skipq_worker_free(r.w);
    skipq_config_free(cfg);

    char *s = tl_str(pg,
                     "SELECT status || ' ' || attempts || ' ' || last_error"
                     " FROM skipq.jobs WHERE id = %" PRId64,
                     fail);
    ASSERT_STREQ(s, "failed 1 bad input 7");
    free(s);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE id = %" PRId64
                     " AND status = 'queued' AND attempts = 0"
                     " AND abs(extract(epoch FROM run_at - '2030-01-01T12:00:00Z')) < 1",
                     until),
              1);
    s = tl_str(pg, "SELECT status || ' ' || last_error FROM skipq.jobs WHERE id = %" PRId64,
               cancel);
    ASSERT_STREQ(s, "cancelled not needed");
    free(s);
    /* percent 100 without a message: the final report, written at the end */
    s = tl_str(pg, "SELECT progress::text FROM skipq.jobs WHERE id = %" PRId64, prog);
    ASSERT_CONTAINS(s, "\"percent\": 100");
    ASSERT_TRUE(strstr(s, "message") == NULL);
    free(s);
}

/* ---- privileges --------------------------------------------------------------- */

/* A worker role writes progress only into the rows it holds by its own
 * claim, and only with its secret. */
TEST(worker_role_writes_progress_of_its_own_claims_only)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "SELECT skipq.enqueue('p')");
    tl_exec(pg, "SELECT skipq.enqueue('p')");
    int64_t wid = tl_int(pg, "SELECT id FROM skipq.worker_register('h', 1, '{default}',"
                             " 'normal', 1, 'v', '1s', '10s')");
    char *secret = tl_str(pg, "SELECT secret FROM skipq.workers WHERE id = %" PRId64, wid);
    int64_t claimed = tl_int(pg,
                             "SELECT id FROM skipq.claim('default', -9::int2, 9::int2,"
                             " '{p}', 1, %" PRId64 ", '%s')",
                             wid, secret);
    int64_t other = tl_int(pg, "SELECT max(id) FROM skipq.jobs WHERE id <> %" PRId64,
                           claimed);
    int claims = (int)tl_int(pg, "SELECT claims FROM skipq.jobs WHERE id = %" PRId64,
                             claimed);
    /* the right claim: written; a wrong token or a queued row: nothing */
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.job_progress(ARRAY[%" PRId64 ", %" PRId64
                     "], ARRAY[%d, 1], ARRAY[20, 30], ARRAY['x', 'y'], %" PRId64 ", '%s')",
                     claimed, other, claims, wid, secret),
              1);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.job_progress(ARRAY[%" PRId64
                     "], ARRAY[%d], ARRAY[20], ARRAY['x'], %" PRId64 ", '%s')",
                     claimed, claims + 1, wid, secret),
              0);
    PGresult *res = PQexec(pg, "SELECT skipq.job_progress('{1}', '{1}', '{1}', '{x}', 1,"
                               " gen_random_uuid())");
    ASSERT_STREQ(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42501");
    PQclear(res);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE progress IS NOT NULL"), 1);
    free(secret);
}

/* examples/handlers/outcomes.sh, as docs/worker.md shows it. */
TEST(example_outcomes_sh_runs_under_the_worker)
{
    PGconn *pg = tl_db();
    fl_deadline(60);
    char rest[1024];
    snprintf(
        rest, sizeof rest,
        "handlers:\n  demo:\n    command: [/bin/sh, %s/examples/handlers/outcomes.sh]\n",
        SKIPQ_TEST_SOURCE_DIR);
    const char *cfg = fl_worker_config(4, "200ms", NULL, rest);
    int64_t ok = tl_int(pg, "SELECT skipq.enqueue('demo', '{\"steps\": 1}')");
    int64_t bad = tl_int(pg, "SELECT skipq.enqueue('demo', '{\"mode\": \"bad\"}')");
    int64_t later = tl_int(pg, "SELECT skipq.enqueue('demo', '{\"mode\": \"later\"}')");
    int64_t drop = tl_int(pg, "SELECT skipq.enqueue('demo', '{\"mode\": \"drop\"}')");
    run_once(cfg, NULL);
    char *s = tl_str(pg,
                     "SELECT string_agg(status || ':' || attempts || ':'"
                     " || coalesce(progress->>'percent', '-'), ' ' ORDER BY id)"
                     " FROM skipq.jobs WHERE id IN (%" PRId64 ", %" PRId64 ", %" PRId64
                     ", %" PRId64 ")",
                     ok, bad, later, drop);
    ASSERT_STREQ(s, "succeeded:1:100 failed:1:- queued:0:- cancelled:1:-");
    free(s);
}

/* ---- tags, meta, delete, bulk by filter (the CLI) ---------------------------- */

/* Four jobs: 1 tags {a,b} meta {"customer": 42, "plan": "pro"}; 2 tags
 * {a} meta {"customer": 42}; 3 tags {b} meta {"customer": "42"}; 4 none.
 * Their ids in ids[0..3]. */
static void
tagged_jobs(PGconn *pg, int64_t ids[4])
{
    ids[0] = tl_int(pg, "SELECT skipq.enqueue('t', tags => '{a,b}',"
                        " meta => '{\"customer\": 42, \"plan\": \"pro\"}')");
    ids[1] = tl_int(pg, "SELECT skipq.enqueue('t', tags => '{a}',"
                        " meta => '{\"customer\": 42}')");
    ids[2] = tl_int(pg, "SELECT skipq.enqueue('t', tags => '{b}',"
                        " meta => '{\"customer\": \"42\"}')");
    ids[3] = tl_int(pg, "SELECT skipq.enqueue('u')");
}

/* `skipq ARGS`: its exit status, stdout in *out (caller frees). */
static int
cli(char **out, const char *args)
{
    char *err = NULL;
    int rc = tl_skipq_run(NULL, out, &err, "%s", args);
    if (rc != 0 && rc != 1)
        fprintf(stderr, "skipq %s: %s", args, err ? err : "");
    free(err);
    return rc;
}

/* The ids `jobs ls --json ARGS` lists, as "1 2 3" (ascending). */
static char *
ls_ids(const char *args)
{
    char cmd[512], *out = NULL, *list = calloc(1, 4096);
    long long ids[64];
    int n = 0;
    snprintf(cmd, sizeof cmd, "jobs ls --json %s", args);
    ASSERT_EQ(cli(&out, cmd), 0);
    for (char *p = out; p && (p = strstr(p, "{\"id\":")) && n < 64; p++)
        ids[n++] = strtoll(p + 6, NULL, 10);
    for (int i = n - 1; i >= 0; i--) /* ls is newest first */
        snprintf(list + strlen(list), 4096 - strlen(list), "%s%lld", i == n - 1 ? "" : " ",
                 ids[i]);
    free(out);
    return list;
}

static void
assert_ls(const char *args, const char *want)
{
    char *got = ls_ids(args);
    ASSERT_STREQ(got, want);
    free(got);
}

TEST(ls_filters_by_tags_and_meta_and_shows_them)
{
    PGconn *pg = tl_db();
    int64_t id[4];
    char want[128], *out = NULL;
    tagged_jobs(pg, id);

    snprintf(want, sizeof want, "%lld %lld", (long long)id[0], (long long)id[1]);
    assert_ls("--tag a", want);
    snprintf(want, sizeof want, "%lld", (long long)id[0]);
    assert_ls("--tag a --tag b", want);
    snprintf(want, sizeof want, "%lld %lld", (long long)id[0], (long long)id[1]);
    assert_ls("--meta customer=42", want); /* the number, not the string */
    snprintf(want, sizeof want, "%lld", (long long)id[2]);
    assert_ls("--meta 'customer=\"42\"'", want);
    snprintf(want, sizeof want, "%lld", (long long)id[0]);
    assert_ls("--meta customer=42 --meta plan=pro --tag b", want);
    assert_ls("--tag nope", "");

    /* jobs show prints them; --json carries them */
    snprintf(want, sizeof want, "jobs show %lld", (long long)id[0]);
    ASSERT_EQ(cli(&out, want), 0);
    ASSERT_CONTAINS(out, "a, b");
    ASSERT_CONTAINS(out, "\"customer\": 42");
    free(out);
    snprintf(want, sizeof want, "jobs show --json %lld", (long long)id[0]);
    ASSERT_EQ(cli(&out, want), 0);
    ASSERT_CONTAINS(out, "\"tags\":[\"a\",\"b\"]");
    ASSERT_CONTAINS(out, "\"customer\":42");
    ASSERT_CONTAINS(out, "\"plan\":\"pro\"");
    free(out);

    /* bad filters are usage errors */
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "jobs ls --meta customer"), 2);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "jobs ls --tag ''"), 2);
}

/* The ids a bulk run printed ("job N: ..." lines), as "1 2 3". */
static char *
printed_ids(const char *out)
{
    char *list = calloc(1, 4096);
    for (const char *p = out; (p = strstr(p, "job ")); p += 4) {
        if (p != out && p[-1] != '\n')
            continue;
        snprintf(list + strlen(list), 4096 - strlen(list), "%s%lld", *list ? " " : "",
                 strtoll(p + 4, NULL, 10));
    }
    return list;
}

TEST(bulk_dry_run_changes_nothing_and_the_run_changes_its_set)
{
    PGconn *pg = tl_db();
    int64_t id[4];
    char *out = NULL;
    tagged_jobs(pg, id);
    tl_exec(pg,
            "UPDATE skipq.jobs SET status = 'failed', finished_at = now()"
            " WHERE id IN (%lld, %lld)",
            (long long)id[1], (long long)id[3]);
    char *before = tl_str(pg, "SELECT string_agg(id || status::text || updated_at, ',')"
                              " FROM skipq.jobs");

    /* cancel by tag: queued jobs only, the failed one is left */
    ASSERT_EQ(cli(&out, "jobs cancel --tag a --queue default --dry-run"), 0);
    ASSERT_CONTAINS(out, "would change 1 job; nothing changed");
    char *dry = printed_ids(out);
    free(out);
    char *after = tl_str(pg, "SELECT string_agg(id || status::text || updated_at, ',')"
                             " FROM skipq.jobs");
    ASSERT_STREQ(after, before);
    free(after);
    ASSERT_EQ(cli(&out, "jobs cancel --tag a --queue default"), 0);
    char *real = printed_ids(out);
    free(out);
    ASSERT_STREQ(real, dry);
    char want[64];
    snprintf(want, sizeof want, "%lld", (long long)id[0]);
    ASSERT_STREQ(real, want);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'cancelled'"), 1);
    free(dry);
    free(real);

    /* retry by filter needs --status; the failed ones with customer 42 */
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "jobs retry --meta customer=42"), 2);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "jobs retry --status running --kind t"), 2);
    ASSERT_EQ(cli(&out,
                  "jobs retry --status failed,cancelled --meta customer=42 --dry-run"),
              0);
    dry = printed_ids(out);
    free(out);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 1);
    ASSERT_EQ(cli(&out, "jobs retry --status failed,cancelled --meta customer=42"), 0);
    real = printed_ids(out);
    free(out);
    ASSERT_STREQ(real, dry);
    snprintf(want, sizeof want, "%lld %lld", (long long)id[0], (long long)id[1]);
    ASSERT_STREQ(real, want);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"), 3);
    free(dry);
    free(real);
    free(before);

    /* ids and filters do not mix; nothing at all is a usage error */
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "jobs cancel 1 --tag a"), 2);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "jobs cancel"), 2);
}

TEST(recover_takes_tag_and_meta_filters)
{
    PGconn *pg = tl_db();
    int64_t id[4];
    char *out = NULL;
    tagged_jobs(pg, id);
    tl_exec(pg, "UPDATE skipq.jobs SET status = 'failed', finished_at = now(),"
                " updated_at = now() - interval '1 hour'");
    ASSERT_EQ(cli(&out, "recover --status failed --tag b --meta plan=pro --dry-run"), 0);
    ASSERT_CONTAINS(out, "would requeue 1 failed job");
    free(out);
    ASSERT_EQ(cli(&out, "recover --status failed --tag b"), 0);
    ASSERT_CONTAINS(out, "requeued 2 failed jobs");
    free(out);
    ASSERT_EQ(tl_int(pg,
                     "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"
                     " AND id IN (%lld, %lld)",
                     (long long)id[0], (long long)id[2]),
              2);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'failed'"), 2);
}

TEST(delete_removes_jobs_but_not_running_ones)
{
    PGconn *pg = tl_db();
    char cmd[128], *out = NULL;
    int64_t a = tl_int(pg, "SELECT skipq.enqueue('d')");
    int64_t b = tl_int(pg, "SELECT skipq.enqueue('d')");
    tl_exec(pg,
            "UPDATE skipq.jobs SET status = 'running', started_at = now()"
            " WHERE id = %lld",
            (long long)b);

    snprintf(cmd, sizeof cmd, "jobs delete %lld", (long long)a);
    ASSERT_EQ(cli(&out, cmd), 0);
    ASSERT_CONTAINS(out, "deleted (was queued)");
    free(out);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE id = %lld", (long long)a),
              0);

    /* running: refused, exit 1; a missing id: exit 1 */
    snprintf(cmd, sizeof cmd, "jobs delete %lld", (long long)b);
    ASSERT_EQ(cli(&out, cmd), 1);
    ASSERT_CONTAINS(out, "running; not deleted (cancel it first)");
    free(out);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE id = %lld", (long long)b),
              1);
    snprintf(cmd, sizeof cmd, "jobs delete %lld", (long long)a);
    ASSERT_EQ(cli(NULL, cmd), 1);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "jobs delete --tag a"), 2);

    /* admin only: no producer or worker may delete */
    PGresult *res;
    tl_exec(
        pg,
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles"
        " WHERE rolname = 'skipq_worker') THEN CREATE ROLE skipq_worker; END IF; END $$");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM pg_roles WHERE rolname = 'skipq_worker'"),
              1);
    res = PQexec(pg, "SELECT has_function_privilege('skipq_worker',"
                     " 'skipq.delete_jobs(bigint[])', 'EXECUTE')");
    ASSERT_STREQ(PQgetvalue(res, 0, 0), "f");
    PQclear(res);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
