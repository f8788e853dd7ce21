/*
 * test_schedule.c - schedules (sql/schedules.sql, src/worker_schedule.c,
 * cli/cmd_schedule.c): cron evaluation in every field form and across
 * daylight-saving changes, refused expressions, the missed-run policies,
 * each slot enqueued once by four workers, the config's schedules, the
 * tick's turn that no other role can take away, privileges and the CLI.
 *
 * The four-worker run covers 12 s of an @every 2s schedule; SKIPQ_LONG=1
 * makes it three minutes.
 */
#include "skipq.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* cron_next(expr, tz, after) in UTC to the second, or "never". */
static void
expect_next(PGconn *pg, const char *expr, const char *tz, const char *after,
            const char *want)
{
    char *got = tl_str(pg,
                       "SELECT coalesce(to_char(skipq.cron_next('%s', '%s', '%s')"
                       " AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 'never')",
                       expr, tz, after);
    if (!got || strcmp(got, want) != 0)
        HARNESS_FAIL("cron_next('%s', '%s', '%s'): wanted %s, got %s", expr, tz, after,
                     want, got ? got : "NULL");
    free(got);
}

TEST(cron_next_reads_every_field_form)
{
    PGconn *pg = tl_db();
    const char *a = "2026-01-01 10:07:12+00"; /* a Thursday */
    expect_next(pg, "* * * * *", "UTC", a, "2026-01-01 10:08:00");
    expect_next(pg, "*/15 * * * *", "UTC", a, "2026-01-01 10:15:00");
    expect_next(pg, "5 * * * *", "UTC", a, "2026-01-01 11:05:00");
    expect_next(pg, "10-20/5 * * * *", "UTC", a, "2026-01-01 10:10:00");
    expect_next(pg, "50/5 * * * *", "UTC", a, "2026-01-01 10:50:00");
    expect_next(pg, "0,30 9,18 * * *", "UTC", a, "2026-01-01 18:00:00");
    expect_next(pg, "0 9 * * mon-fri", "UTC", "2026-01-02 10:00+00", "2026-01-05 09:00:00");
    expect_next(pg, "0 9 * * SAT,sun", "UTC", a, "2026-01-03 09:00:00");
    expect_next(pg, "0 0 * * 7", "UTC", a, "2026-01-04 00:00:00"); /* 7 is Sunday */
    expect_next(pg, "0 0 1 jun *", "UTC", a, "2026-06-01 00:00:00");
    expect_next(pg, "0 0 1 3-4 *", "UTC", a, "2026-03-01 00:00:00");
    expect_next(pg, "0 0 31 * *", "UTC", "2026-02-01 00:00+00", "2026-03-31 00:00:00");
    expect_next(pg, "0 0 29 2 *", "UTC", a, "2028-02-29 00:00:00");
    /* both day fields restricted: either matches (cron's rule) */
    expect_next(pg, "0 0 13 * fri", "UTC", a, "2026-01-02 00:00:00");
    expect_next(pg, "0 0 30 2 *", "UTC", a, "never");
    expect_next(pg, "@yearly", "UTC", a, "2027-01-01 00:00:00");
    expect_next(pg, "@annually", "UTC", a, "2027-01-01 00:00:00");
    expect_next(pg, "@monthly", "UTC", a, "2026-02-01 00:00:00");
    expect_next(pg, "@weekly", "UTC", a, "2026-01-04 00:00:00");
    expect_next(pg, "@daily", "UTC", a, "2026-01-02 00:00:00");
    expect_next(pg, "@midnight", "UTC", a, "2026-01-02 00:00:00");
    expect_next(pg, "@hourly", "UTC", a, "2026-01-01 11:00:00");
    expect_next(pg, "@daily", "Asia/Kolkata", a, "2026-01-01 18:30:00");
    /* @every: multiples of the interval since the Unix epoch, any zone */
    expect_next(pg, "@every 30s", "UTC", a, "2026-01-01 10:07:30");
    expect_next(pg, "@every 5m", "Europe/Berlin", a, "2026-01-01 10:10:00");
    expect_next(pg, "@every 1h30m", "UTC", a, "2026-01-01 10:30:00");
    expect_next(pg, "@every 2s", "UTC", "2026-01-01 10:07:12+00", "2026-01-01 10:07:14");
    expect_next(pg, "@EVERY 1D", "UTC", a, "2026-01-02 00:00:00");
    /* five next times of a sparse expression: one step per field, fast */
    int64_t t0 = tl_now_ms();
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.cron_times('0 0 29 2 1', 'UTC',"
                         " '2026-01-01', 50)"),
              50);
    fprintf(stderr, "50 slots of '0 0 29 2 1': %lld ms\n", (long long)(tl_now_ms() - t0));
}

/*
 * A daily job at 02:30 in Europe/Berlin. Spring forward (29 March 2026,
 * 02:00 -> 03:00): 02:30 does not exist; it runs at 03:30 CEST (01:30
 * UTC), once. Fall back (25 October 2026, 03:00 -> 02:00): 02:30 comes
 * twice; it runs once, at the first (00:30 UTC). A job every 30 minutes
 * runs each wall-clock time once: it skips the repeated hour's second
 * pass. @every counts real time and does not notice.
 */
TEST(daylight_saving_runs_each_wall_time_once)
{
    PGconn *pg = tl_db();
    const char *b = "Europe/Berlin";
    expect_next(pg, "30 2 * * *", b, "2026-03-28 12:00+00", "2026-03-29 01:30:00");
    expect_next(pg, "30 2 * * *", b, "2026-03-29 01:30+00", "2026-03-30 00:30:00");
    expect_next(pg, "30 2 * * *", b, "2026-10-24 12:00+00", "2026-10-25 00:30:00");
    expect_next(pg, "30 2 * * *", b, "2026-10-25 00:30+00", "2026-10-26 01:30:00");
    /* a time in the repeated hour's second pass: the next day's */
    expect_next(pg, "30 2 * * *", b, "2026-10-25 01:10+00", "2026-10-26 01:30:00");
    char *s = tl_str(pg, "SELECT string_agg(to_char(t AT TIME ZONE 'UTC', 'HH24:MI'), ' ')"
                         " FROM skipq.cron_times('*/30 * * * *', 'Europe/Berlin',"
                         " '2026-10-24 23:00+00', 6) AS t");
    ASSERT_STREQ(s, "23:30 00:00 00:30 02:00 02:30 03:00");
    free(s);
    s = tl_str(pg, "SELECT string_agg(to_char(t AT TIME ZONE 'UTC', 'HH24:MI'), ' ')"
                   " FROM skipq.cron_times('*/30 * * * *', 'Europe/Berlin',"
                   " '2026-03-29 00:00+00', 4) AS t");
    ASSERT_STREQ(s, "00:30 01:00 01:30 02:00");
    free(s);
    s = tl_str(pg, "SELECT string_agg(to_char(t AT TIME ZONE 'UTC', 'HH24:MI'), ' ')"
                   " FROM skipq.cron_times('@every 1h', 'Europe/Berlin',"
                   " '2026-10-24 23:30+00', 4) AS t");
    ASSERT_STREQ(s, "00:00 01:00 02:00 03:00");
    free(s);
    /* the same in New York, a day the clocks go back there */
    expect_next(pg, "30 1 * * *", "America/New_York", "2026-11-01 04:00+00",
                "2026-11-01 05:30:00");
    expect_next(pg, "30 1 * * *", "America/New_York", "2026-11-01 05:30+00",
                "2026-11-02 06:30:00");
}

/* expr must be refused with 22023 and a message containing want. */
static void
expect_refused(PGconn *pg, const char *expr, const char *want)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT skipq.schedule('bad', '%s', 'k')", expr);
    PGresult *res = PQexec(pg, sql);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (PQresultStatus(res) != PGRES_FATAL_ERROR || !state || strcmp(state, "22023") != 0 ||
        !msg || !strstr(msg, want))
        HARNESS_FAIL("%s: wanted 22023 \"%s\", got %s %s", expr, want, state ? state : "-",
                     msg ? msg : PQresStatus(PQresultStatus(res)));
    PQclear(res);
}

TEST(bad_expressions_are_refused_naming_the_field)
{
    PGconn *pg = tl_db();
    expect_refused(pg, "61 * * * *", "minute \"61\" is out of range 0-59");
    expect_refused(pg, "* 24 * * *", "hour \"24\" is out of range 0-23");
    expect_refused(pg, "* * 0 * *", "day of month \"0\" is out of range 1-31");
    expect_refused(pg, "* * * 13 *", "month \"13\" is out of range 1-12");
    expect_refused(pg, "* * * * 8", "day of week \"8\" is out of range 0-7");
    expect_refused(pg, "* * * foo *", "month \"foo\" is not a number or a name");
    expect_refused(pg, "* * * * mon-sun", "day of week range \"mon-sun\" runs backwards");
    expect_refused(pg, "5-1 * * * *", "minute range \"5-1\" runs backwards");
    expect_refused(pg, "*/0 * * * *", "minute step \"0\" is out of range 1-59");
    expect_refused(pg, "1,,2 * * * *", "minute \"\" is not a value, range or step");
    expect_refused(pg, "1-2-3 * * * *", "minute \"1-2-3\" is not a value, range or step");
    expect_refused(pg, "*/ab * * * *", "minute step \"ab\" is not a number");
    expect_refused(pg, "x * * * *", "minute \"x\" is not a number");
    expect_refused(pg, "* * * *", "expected 5 fields");
    expect_refused(pg, "* * * * * *", "got 6");
    expect_refused(pg, "", "got 0");
    expect_refused(pg, "@fortnightly", "unknown name \"@fortnightly\"");
    expect_refused(pg, "@every 0s", "@every \"0s\" must be between 1s and 366d");
    expect_refused(pg, "@every 5", "@every takes a duration");
    expect_refused(pg, "@every 2 weeks", "@every takes a duration");
    expect_refused(pg, "0 0 30 2 *", "never runs");
    tl_exec(pg, "SELECT 1"); /* the connection is still good */
    PGresult *res = PQexec(pg, "SELECT skipq.schedule('z', '* * * * *', 'k',"
                               " time_zone => 'Mars/Olympus')");
    ASSERT_CONTAINS(PQresultErrorMessage(res), "unknown time zone \"Mars/Olympus\"");
    PQclear(res);
    res = PQexec(pg, "SELECT skipq.schedule('z', '* * * * *', 'k', time_zone => '+03:00')");
    ASSERT_CONTAINS(PQresultErrorMessage(res), "unknown time zone \"+03:00\"");
    PQclear(res);
    res = PQexec(pg, "SELECT skipq.schedule('z', '* * * * *', 'k', missed => 'all')");
    ASSERT_CONTAINS(PQresultErrorMessage(res), "unknown missed-run policy \"all\"");
    PQclear(res);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.schedules"), 0);
}

/*
 * The policies, at chosen times: an hourly schedule whose worker was
 * away from 10:00 to 13:xx. skip: nothing for the missed slots, and the
 * latest only while it is at most a minute late; catch_up: one job for
 * the latest, however late, saying how many it stands for. A second tick
 * at the same time enqueues nothing; a paused schedule nothing.
 */
TEST(missed_runs_follow_the_policy)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "SELECT skipq.schedule('s', '@hourly', 'k'),"
                " skipq.schedule('c', '@hourly', 'k', missed => 'catch_up'),"
                " skipq.schedule('p', '@hourly', 'k', paused => true)");
    tl_exec(pg, "UPDATE skipq.schedules SET next_slot = '2026-01-01 10:00+00'");
    ASSERT_EQ(tl_int(pg,
                     "SELECT enqueued FROM skipq.schedule_tick_at('2026-01-01 13:30+00')"),
              1);
    char *s = tl_str(pg, "SELECT string_agg(s.name || ' ' || coalesce(j.meta::text, '-')"
                         " || ' ' || s.last_slot AT TIME ZONE 'UTC' || ' '"
                         " || s.next_slot AT TIME ZONE 'UTC', '; ' ORDER BY s.name)"
                         " FROM skipq.schedules s LEFT JOIN skipq.jobs j"
                         " ON j.id = s.last_job_id WHERE NOT s.paused");
    ASSERT_STREQ(s,
                 "c {\"slot\": \"2026-01-01T13:00:00+00:00\", \"missed\": 3, \"schedule\": "
                 "\"c\"} 2026-01-01 13:00:00 2026-01-01 14:00:00; "
                 "s - 2026-01-01 13:00:00 2026-01-01 14:00:00");
    free(s);
    ASSERT_EQ(tl_int(pg,
                     "SELECT enqueued FROM skipq.schedule_tick_at('2026-01-01 13:30+00')"),
              0);
    /* a tick at most a minute late: skip runs the latest slot too */
    tl_exec(pg, "UPDATE skipq.schedules SET next_slot = '2026-01-01 10:00+00'");
    ASSERT_EQ(
        tl_int(pg, "SELECT enqueued FROM skipq.schedule_tick_at('2026-01-01 13:00:40+00')"),
        2);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE meta->>'schedule' = 's'"
                         " AND (meta->>'missed')::int = 3 AND kind = 'k'"),
              1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE meta->>'schedule' = 'p'"),
              0);
    /* changing the expression starts afresh; other changes keep the slot */
    tl_exec(pg, "SELECT skipq.schedule('s', '@hourly', 'k2', priority => 'high')");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.schedules WHERE name = 's'"
                         " AND next_slot = '2026-01-01 14:00+00' AND priority = 10"),
              1);
    tl_exec(pg, "SELECT skipq.schedule('s', '@daily', 'k2')");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.schedules WHERE name = 's'"
                         " AND next_slot > now()"),
              1);
    ASSERT_EQ(tl_int(pg, "SELECT skipq.unschedule('s')::int + skipq.unschedule('s')::int"),
              1);
}

/* While one tick holds the turn (its transaction open), another returns
 * at once having enqueued nothing, and enqueues nothing after the first
 * commits: the slot is taken. */
TEST(a_second_tick_neither_waits_nor_enqueues_twice)
{
    PGconn *pg = tl_db();
    PGconn *other = tl_connect();
    tl_exec(pg, "SELECT skipq.schedule('t', '@hourly', 'k')");
    tl_exec(pg, "UPDATE skipq.schedules SET next_slot = '2026-01-01 10:00+00'");
    tl_exec(pg, "BEGIN");
    ASSERT_EQ(
        tl_int(pg, "SELECT enqueued FROM skipq.schedule_tick_at('2026-01-01 10:00:05+00')"),
        1);
    int64_t t0 = tl_now_ms();
    ASSERT_EQ(
        tl_int(other,
               "SELECT enqueued FROM skipq.schedule_tick_at('2026-01-01 10:00:05+00')"),
        0);
    ASSERT_TRUE(tl_now_ms() - t0 < 2000);
    tl_exec(pg, "COMMIT");
    ASSERT_EQ(
        tl_int(other,
               "SELECT enqueued FROM skipq.schedule_tick_at('2026-01-01 10:00:05+00')"),
        0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 1);
    PQfinish(other);
}

static pid_t
start_worker(const char *log)
{
    return tl_spawn(log, "exec %s worker --handler ok=true --concurrency 2", tl_skipq());
}

static void
stop_workers(pid_t *w, int n)
{
    for (int i = 0; i < n; i++)
        kill(w[i], SIGTERM);
    for (int i = 0; i < n; i++)
        ASSERT_EQ(tl_wait_pid(w[i], 15000), 0);
}

/* The slots of schedule t's jobs: all distinct, each 2 s after the one
 * before, from `from` on (an SQL timestamptz expression). */
static void
expect_contiguous(PGconn *pg, const char *from)
{
    ASSERT_EQ(
        tl_int(pg,
               "WITH s AS (SELECT (meta->>'slot')::timestamptz AS slot FROM skipq.jobs"
               " WHERE meta->>'schedule' = 't' AND (meta->>'slot')::timestamptz >= %s)"
               " SELECT (count(*) = count(DISTINCT slot) AND max(slot) - min(slot)"
               " = (count(*) - 1) * interval '2 s'"
               " AND bool_and(extract(epoch FROM slot)::int8 %% 2 = 0))::int FROM s",
               from),
        1);
}

/*
 * Acceptance: four workers on an @every 2s schedule for 12 s (three
 * minutes with SKIPQ_LONG=1): every slot enqueued exactly once and the
 * slots contiguous, each on time (its job created within 2 s of its slot;
 * the worst is printed).
 */
TEST(four_workers_enqueue_each_slot_once)
{
    PGconn *pg = tl_db();
    int want = getenv("SKIPQ_LONG") ? 90 : 6;
    const char *log = tl_tmpfile(".log");
    pid_t w[4];

    tl_exec(pg, "SELECT skipq.schedule('t', '@every 2s', 'ok')");
    for (int i = 0; i < 4; i++)
        w[i] = start_worker(log);
    ASSERT_TRUE(tl_wait_int(pg, want * 2000 + 15000, want,
                            "SELECT least(count(*), %d) FROM skipq.jobs"
                            " WHERE meta->>'schedule' = 't'",
                            want));
    /* paused, so that every job it enqueued can finish before the stop */
    tl_exec(pg, "SELECT skipq.schedule_pause('t')");
    ASSERT_TRUE(tl_wait_int(pg, 15000, 0,
                            "SELECT count(*) FROM skipq.jobs WHERE status <> 'succeeded'"));
    stop_workers(w, 4);
    expect_contiguous(pg, "'-infinity'");
    int64_t n = tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE meta->>'schedule' = 't'");
    ASSERT_TRUE(n >= want);
    char *late = tl_str(pg, "SELECT max(created_at - (meta->>'slot')::timestamptz)"
                            " FROM skipq.jobs WHERE meta->>'schedule' = 't'");
    fprintf(stderr, "%lld slots, four workers; latest enqueue after its slot: %s\n",
            (long long)n, late);
    free(late);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE meta->>'schedule' = 't'"
                         " AND created_at - (meta->>'slot')::timestamptz > interval '2 s'"),
              0);
}

/* Wait until the database's clock is `s` seconds past the timestamptz
 * expression `since` (slots must pass: nothing else to wait on). */
static void
wait_past(PGconn *pg, const char *since, double s)
{
    ASSERT_TRUE(tl_wait_int(pg, (int)(s * 1000) + 5000, 1,
                            "SELECT (now() > %s + interval '%g s')::int", since, s));
}

/*
 * Acceptance, second half: after a pause and resume (policy skip) and
 * after all workers stopped and started again (policy catch_up), the
 * slots that passed meanwhile are not enqueued one by one: one job, for
 * the latest, says how many it stands for, and the slots go on
 * contiguous from there.
 */
TEST(pause_resume_and_restart_follow_the_policy)
{
    PGconn *pg = tl_db();
    const char *log = tl_tmpfile(".log");
    pid_t w[2];

    tl_exec(pg, "SELECT skipq.schedule('t', '@every 2s', 'ok')");
    tl_exec(pg, "CREATE TABLE marks (what text PRIMARY KEY, at timestamptz)");
    for (int i = 0; i < 2; i++)
        w[i] = start_worker(log);
    ASSERT_TRUE(tl_wait_int(pg, 15000, 1, "SELECT least(count(*), 1) FROM skipq.jobs"));
    /* pause for over 4 s: two slots or more pass */
    tl_exec(pg, "SELECT skipq.schedule_pause('t')");
    tl_exec(pg, "INSERT INTO marks SELECT 'paused', last_slot FROM skipq.schedules");
    wait_past(pg, "(SELECT at FROM marks WHERE what = 'paused')", 5.0);
    tl_exec(pg, "SELECT skipq.schedule_pause('t', false)");
    ASSERT_TRUE(tl_wait_int(pg, 10000, 2,
                            "SELECT least(count(*), 2) FROM skipq.jobs"
                            " WHERE (meta->>'slot')::timestamptz >"
                            " (SELECT at FROM marks WHERE what = 'paused')"));
    /* the first job after the pause stands for the slots it skipped */
    ASSERT_EQ(tl_int(pg, "SELECT ((meta->>'missed')::int = extract(epoch FROM"
                         " (meta->>'slot')::timestamptz - m.at)::int / 2 - 1"
                         " AND (meta->>'missed')::int >= 1)::int"
                         " FROM skipq.jobs, marks m WHERE m.what = 'paused'"
                         " AND (meta->>'slot')::timestamptz > m.at"
                         " ORDER BY (meta->>'slot')::timestamptz LIMIT 1"),
              1);
    /* every worker stopped: slots pass; catch_up now */
    tl_exec(pg, "SELECT skipq.schedule('t', '@every 2s', 'ok', missed => 'catch_up')");
    stop_workers(w, 2);
    tl_exec(pg, "INSERT INTO marks SELECT 'stopped', last_slot FROM skipq.schedules");
    wait_past(pg, "(SELECT at FROM marks WHERE what = 'stopped')", 5.0);
    for (int i = 0; i < 2; i++)
        w[i] = start_worker(log);
    ASSERT_TRUE(tl_wait_int(pg, 15000, 2,
                            "SELECT least(count(*), 2) FROM skipq.jobs"
                            " WHERE (meta->>'slot')::timestamptz >"
                            " (SELECT at FROM marks WHERE what = 'stopped')"));
    stop_workers(w, 2);
    ASSERT_EQ(tl_int(pg, "SELECT ((meta->>'missed')::int >= 1)::int"
                         " FROM skipq.jobs, marks m WHERE m.what = 'stopped'"
                         " AND (meta->>'slot')::timestamptz > m.at"
                         " ORDER BY (meta->>'slot')::timestamptz LIMIT 1"),
              1);
    /* no slot of the pause or the stop was enqueued on its own */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) - count(DISTINCT meta->>'slot') FROM skipq.jobs"),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs, marks m WHERE m.what = 'paused'"
                         " AND (meta->>'slot')::timestamptz > m.at"
                         " AND (meta->>'slot')::timestamptz < m.at + interval '4 s'"),
              0);
    expect_contiguous(pg, "(SELECT at FROM marks WHERE what = 'stopped') + interval '5 s'");
}

/* A role that may connect and nothing more holds every skipq advisory
 * key (and more): the tick's turn is a row it cannot lock, so slots are
 * enqueued as ever. */
TEST(another_roles_advisory_locks_cannot_stop_the_tick)
{
    PGconn *pg = tl_db();
    char role[64];
    snprintf(role, sizeof role, "ts_squat_%d", (int)getpid());
    tl_exec(pg, "CREATE ROLE %s LOGIN", role);
    PGconn *squat = tl_connect_as(role);
    tl_exec(squat, "SELECT pg_advisory_lock(c, k) FROM unnest(ARRAY[1936421120, 1936421121,"
                   " 1936421122, 0]) AS c, generate_series(0, 64) AS k");
    tl_exec(squat, "SELECT pg_advisory_lock(k) FROM generate_series(0, 64) AS k");
    PGresult *res = PQexec(squat, "SELECT FROM skipq.maintenance FOR UPDATE");
    ASSERT_CONTAINS(PQresultErrorMessage(res), "permission denied");
    PQclear(res);
    tl_exec(pg, "SELECT skipq.schedule('t', '@every 1s', 'ok')");
    const char *log = tl_tmpfile(".log");
    pid_t w = start_worker(log);
    ASSERT_TRUE(tl_wait_int(pg, 15000, 3, "SELECT least(count(*), 3) FROM skipq.jobs"));
    stop_workers(&w, 1);
    PQfinish(squat);
    tl_exec(pg, "DROP ROLE %s", role);
}

/*
 * The config's schedules: at the worker's start they are added; one of the
 * same name defined in SQL is replaced (logged); SQL may not change a
 * config schedule; a config whose schedules: no longer lists one removes
 * it, a config without schedules: leaves them alone. A cron expression the
 * server refuses stops the start (exit 2, with the schedule's name); a
 * schedule without a kind is the loader's error, with line and column.
 */
TEST(config_schedules_win_and_leave_with_the_config)
{
    PGconn *pg = tl_db();
    char *err = NULL;
    tl_exec(pg, "SELECT skipq.schedule('x', '@hourly', 'sqlkind')");
    const char *c1 = tl_write_config("schedules:\n"
                                     "  x:\n"
                                     "    cron: '*/5 * * * *'\n"
                                     "    kind: ok\n"
                                     "    payload: {a: 1, b: [two, '3'], c: true}\n"
                                     "    time_zone: Europe/Berlin\n"
                                     "    priority: high\n"
                                     "    missed: catch-up\n"
                                     "  y:\n"
                                     "    cron: '@every 1m'\n"
                                     "    kind: ok\n"
                                     "    payload: '{\"n\": 1}'\n");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "worker --once --handler ok=true --config %s",
                           c1),
              0);
    ASSERT_CONTAINS(err, "schedule \"x\" was defined in SQL; the config's definition "
                         "replaces it");
    free(err);
    char *s = tl_str(pg, "SELECT string_agg(concat_ws(' ', name, cron, time_zone, kind,"
                         " payload::text, priority, missed, source), '; ' ORDER BY name)"
                         " FROM skipq.schedules");
    ASSERT_STREQ(s, "x */5 * * * * Europe/Berlin ok {\"a\": 1, \"b\": [\"two\", \"3\"], "
                    "\"c\": true} 10 catch_up config; "
                    "y @every 1m UTC ok {\"n\": 1} 0 skip config");
    free(s);
    PGresult *res = PQexec(pg, "SELECT skipq.schedule('x', '@daily', 'k')");
    ASSERT_CONTAINS(PQresultErrorMessage(res), "comes from a worker's config");
    PQclear(res);
    /* pausing is operations, not definition: a restart keeps it */
    tl_exec(pg, "SELECT skipq.schedule_pause('y')");
    const char *c2 =
        tl_write_config("schedules:\n  y:\n    cron: '@every 1m'\n    kind: ok\n"
                        "    payload: '{\"n\": 1}'\n");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "worker --once --handler ok=true --config %s",
                           c2),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.schedules"), 1);
    ASSERT_EQ(tl_int(pg, "SELECT paused::int FROM skipq.schedules WHERE name = 'y'"), 1);
    const char *c3 = tl_write_config("worker:\n  concurrency: 1\n");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "worker --once --handler ok=true --config %s",
                           c3),
              0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.schedules"), 1);
    const char *bad =
        tl_write_config("schedules:\n  z:\n    cron: '0 25 * * *'\n    kind: ok\n");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "worker --once --handler ok=true --config %s",
                           bad),
              2);
    ASSERT_CONTAINS(err, "hour \"25\" is out of range 0-23");
    ASSERT_CONTAINS(err, "\"z\"");
    free(err);
    const char *nokind = tl_write_config("schedules:\n  z:\n    cron: '0 5 * * *'\n");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "worker --once --handler ok=true --config %s",
                           nokind),
              2);
    ASSERT_CONTAINS(err, "line 3, column 5: schedule \"z\" needs a kind (kind:)");
    free(err);
    const char *badprio =
        tl_write_config("schedules:\n  z:\n    cron: '0 5 * * *'\n    kind: ok\n"
                        "    priority: urgent\n");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "worker --once --handler ok=true --config %s",
                           badprio),
              2);
    ASSERT_CONTAINS(err, "line 5, column 15");
    free(err);
    const char *dup = tl_write_config("schedules:\n  z: {cron: '@daily', kind: ok}\n"
                                      "  z: {cron: '@hourly', kind: ok}\n");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "worker --once --handler ok=true --config %s",
                           dup),
              2);
    ASSERT_CONTAINS(err, "line 3, column 3: duplicate schedule \"z\"");
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.schedules"), 1);
}

/* Only skipq_admin defines schedules; producers and workers read them; a
 * worker ticks (at the server's time only) and syncs its config. */
TEST(only_the_admin_defines_schedules)
{
    PGconn *pg = tl_db();
    char p[64], w[64], a[64];
    tl_apply_roles();
    snprintf(p, sizeof p, "ts_producer_%d", (int)getpid());
    snprintf(w, sizeof w, "ts_worker_%d", (int)getpid());
    snprintf(a, sizeof a, "ts_admin_%d", (int)getpid());
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_producer", p);
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_worker", w);
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_admin", a);
    PGconn *cp = tl_connect_as(p), *cw = tl_connect_as(w), *ca = tl_connect_as(a);
    tl_exec(ca, "SELECT skipq.schedule('t', '@every 1s', 'k')");
    ASSERT_EQ(tl_int(cp, "SELECT count(*) FROM skipq.schedules"), 1);
    ASSERT_EQ(tl_int(cw, "SELECT count(*) FROM skipq.schedules"), 1);
    tl_expect_denied(cp, "SELECT skipq.schedule('u', '@daily', 'k')");
    tl_expect_denied(cw, "SELECT skipq.schedule('u', '@daily', 'k')");
    tl_expect_denied(cp, "SELECT skipq.unschedule('t')");
    tl_expect_denied(cw, "SELECT skipq.schedule_pause('t')");
    tl_expect_denied(cp, "SELECT * FROM skipq.schedule_tick()");
    tl_expect_denied(cw, "SELECT * FROM skipq.schedule_tick_at(now() + interval '1 year')");
    tl_expect_denied(cw, "UPDATE skipq.schedules SET paused = true");
    ASSERT_TRUE(tl_wait_int(cw, 5000, 1,
                            "SELECT least(enqueued, 1) FROM skipq.schedule_tick()"));
    ASSERT_EQ(tl_int(cw, "SELECT count(*) FROM skipq.schedule_sync('{}', '{}', '{}', '{}',"
                         " '{}', '{}', '{}', '{}')"),
              0);
    ASSERT_EQ(tl_int(cp,
                     "SELECT count(*) FROM skipq.cron_times('@daily', 'UTC', now(), 2)"),
              2);
    PQfinish(cp);
    PQfinish(cw);
    PQfinish(ca);
    tl_exec(pg, "DROP ROLE %s, %s, %s", p, w, a);
}

TEST(cli_schedule_add_ls_pause_rm)
{
    PGconn *pg = tl_db();
    char *out = NULL, *err = NULL;
    ASSERT_EQ(
        tl_skipq_run(NULL, &out, NULL,
                     "schedule add nightly '30 2 * * *' report '{\"full\": true}'"
                     " --tz Europe/Berlin --queue q --priority high --missed catch-up"),
        0);
    ASSERT_CONTAINS(out, "schedule nightly: next run ");
    free(out);
    tl_exec(pg, "UPDATE skipq.schedules SET next_slot = '2026-10-25 00:30+00'");
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "schedule ls --next 3"), 0);
    ASSERT_CONTAINS(out, "next run");
    ASSERT_CONTAINS(out, "nightly  30 2 * * *  Europe/Berlin  report  q      no      -");
    /* in the session's zone (UTC here): the DST day's first 02:30, then CET */
    ASSERT_CONTAINS(out, "2026-10-25 00:30:00+00:00, 2026-10-26 01:30:00+00:00, "
                         "2026-10-27 01:30:00+00:00");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "schedule ls --json"), 0);
    ASSERT_CONTAINS(out, "\"name\":\"nightly\",\"cron\":\"30 2 * * *\","
                         "\"time_zone\":\"Europe/Berlin\",\"kind\":\"report\","
                         "\"queue\":\"q\",\"priority\":10,\"missed\":\"catch_up\","
                         "\"paused\":false,\"source\":\"sql\",\"last_slot\":null,"
                         "\"last_job_id\":null,\"payload\":{\"full\":true},"
                         "\"next_runs\":[\"2026-10-25T00:30:00+00:00\"]");
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "schedule pause nightly"), 0);
    ASSERT_CONTAINS(out, "schedule nightly paused");
    free(out);
    ASSERT_EQ(tl_int(pg, "SELECT paused::int FROM skipq.schedules"), 1);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "schedule resume nightly"), 0);
    ASSERT_EQ(tl_int(pg, "SELECT paused::int FROM skipq.schedules"), 0);
    /* refused input: exit 2, the server's message */
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "schedule add b '61 * * * *' k"), 2);
    ASSERT_CONTAINS(err, "skipq: could not add schedule \"b\": invalid cron expression "
                         "\"61 * * * *\": minute \"61\" is out of range 0-59");
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "schedule add b '@daily' k --tz Nowhere/X"),
              2);
    ASSERT_CONTAINS(err, "unknown time zone \"Nowhere/X\"");
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "schedule add b '@daily' k '[1]'"), 2);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "schedule add b '@daily' k --missed all"), 2);
    ASSERT_CONTAINS(err, "--missed: unknown policy \"all\"");
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "schedule add b '@daily'"), 2);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "schedule frob"), 2);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "schedule rm nope"), 1);
    ASSERT_CONTAINS(err, "schedule \"nope\" does not exist");
    free(err);
    /* a name with a terminal escape is printed escaped */
    tl_exec(pg, "SELECT skipq.schedule(E'e\\x1b[31m', '@daily', 'k')");
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "schedule ls"), 0);
    ASSERT_TRUE(strchr(out, 0x1b) == NULL);
    free(out);
    ASSERT_EQ(tl_skipq_run(NULL, &out, NULL, "schedule rm nightly"), 0);
    ASSERT_CONTAINS(out, "schedule nightly removed");
    free(out);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.schedules"), 1);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
