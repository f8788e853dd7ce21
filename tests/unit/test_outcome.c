/*
 * test_outcome.c - reading what a handler says besides its result
 * (src/outcome.c): ISO times, each outcome and progress line, the
 * lines refused and why, and a command's control lines fed in pieces.
 */
#include "harness.h"

#include "worker_internal.h"

#include <json-c/json.h>

#define NOW_US INT64_C(1893499200000000) /* 2030-01-01T12:00:00Z */

TEST(iso_times_with_their_zone)
{
    int64_t us = 0;
    ASSERT_TRUE(skipq__parse_iso_time("2030-01-01T12:00:00Z", &us));
    ASSERT_EQ(us, NOW_US);
    ASSERT_TRUE(skipq__parse_iso_time("2030-01-01T14:00:00+02:00", &us));
    ASSERT_EQ(us, NOW_US);
    ASSERT_TRUE(skipq__parse_iso_time("2030-01-01 07:30:00.25-0430", &us));
    ASSERT_EQ(us, NOW_US + 250000);
    ASSERT_TRUE(skipq__parse_iso_time("2030-01-01T12:01Z", &us));
    ASSERT_EQ(us, NOW_US + 60000000);
    ASSERT_TRUE(skipq__parse_iso_time("1970-01-01T00:00:00Z", &us));
    ASSERT_EQ(us, 0);
    ASSERT_TRUE(skipq__parse_iso_time("2024-02-29T00:00:00Z", &us));
    ASSERT_EQ(us, INT64_C(1709164800000000));
}

TEST(iso_times_refused)
{
    static const char *const bad[] = {
        "",
        "2030-01-01T12:00:00",  /* no zone: whose noon? */
        "2030-01-01",           /* no time */
        "2030-13-01T12:00:00Z", /* month */
        "2030-01-01T24:00:00Z", /* hour */
        "2030-01-01T12:00:00Zx",
        "2030-01-01T12:00:00.Z",
        "in 5 minutes",
        NULL,
    };
    int64_t us = 7;
    for (const char *const *b = bad; *b; b++)
        ASSERT_TRUE(!skipq__parse_iso_time(*b, &us));
    ASSERT_TRUE(!skipq__parse_iso_time(NULL, &us));
    ASSERT_EQ(us, 7);
}

/* Read one line as a report; returns 0 or -1, *why malloc'd or NULL. */
static int
read_line(const char *line, unsigned allow, skipq__report *r, char **why)
{
    json_object *obj = json_tokener_parse(line);
    ASSERT_TRUE(obj != NULL);
    int rc = skipq__report_read(obj, allow, NOW_US, r, why);
    json_object_put(obj);
    return rc;
}

TEST(each_outcome_and_progress)
{
    skipq__report r = {.percent = -1};
    char *why = NULL;

    ASSERT_EQ(read_line("{\"outcome\": \"fail\", \"error\": \"bad input\"}", 0, &r, &why),
              0);
    ASSERT_EQ(r.kind, SKIPQ__REPORT_OUTCOME);
    ASSERT_EQ(r.outcome, SKIPQ_JOB_FAIL_PERMANENT);
    ASSERT_STREQ(r.text, "bad input");

    ASSERT_EQ(read_line("{\"outcome\": \"cancel\", \"reason\": \"not needed\"}", 0, &r,
                        &why),
              0);
    ASSERT_EQ(r.outcome, SKIPQ_JOB_CANCELLED);
    ASSERT_STREQ(r.text, "not needed");

    ASSERT_EQ(read_line("{\"outcome\": \"snooze\", \"delay_ms\": 1500}", 0, &r, &why), 0);
    ASSERT_EQ(r.outcome, SKIPQ_JOB_SNOOZE);
    ASSERT_EQ(r.delay_ms, 1500);
    ASSERT_EQ(
        read_line("{\"outcome\": \"snooze\", \"until\": \"2030-01-01T12:00:02.0001Z\"}", 0,
                  &r, &why),
        0);
    ASSERT_EQ(r.delay_ms, 2001); /* rounded up: never early */
    ASSERT_EQ(read_line("{\"outcome\": \"snooze\", \"until\": \"2029-01-01T00:00:00Z\"}", 0,
                        &r, &why),
              0);
    ASSERT_EQ(r.delay_ms, 0); /* past: at once */

    ASSERT_EQ(read_line("{\"progress\": 40, \"message\": \"halfway\"}", 0, &r, &why), 0);
    ASSERT_EQ(r.kind, SKIPQ__REPORT_PROGRESS);
    ASSERT_EQ(r.percent, 40);
    ASSERT_STREQ(r.text, "halfway");
    ASSERT_EQ(read_line("{\"progress\": 12.7}", 0, &r, &why), 0);
    ASSERT_EQ(r.percent, 12);
    ASSERT_TRUE(r.text == NULL);
    ASSERT_EQ(read_line("{\"message\": \"only words\"}", 0, &r, &why), 0);
    ASSERT_EQ(r.percent, -1);

    /* "ok" and "error" only where allowed (persistent answers) */
    ASSERT_EQ(read_line("{\"outcome\": \"ok\", \"result\": {\"n\": 1}}",
                        SKIPQ__REPORT_ALLOW_OK, &r, &why),
              0);
    ASSERT_EQ(r.outcome, SKIPQ_JOB_OK);
    ASSERT_STREQ(r.result, "{\"n\":1}");
    ASSERT_EQ(read_line("{\"outcome\": \"ok\"}", 0, &r, &why), -1);
    ASSERT_STREQ(why, "unknown outcome \"ok\"");
    free(why);
    skipq__report_clear(&r);
}

TEST(lines_refused_say_why)
{
    static const struct {
        const char *line, *why;
    } bad[] = {
        {"{\"outcome\": \"explode\"}", "unknown outcome \"explode\""},
        {"{\"outcome\": 3}", "\"outcome\" must be a string"},
        {"{\"progress\": 101}", "\"progress\" must be a number from 0 to 100"},
        {"{\"progress\": \"40\"}", "\"progress\" must be a number from 0 to 100"},
        {"{\"outcome\": \"snooze\", \"delay_ms\": -1}",
         "\"delay_ms\" must be a number of milliseconds"},
        {"{\"outcome\": \"snooze\", \"until\": \"tomorrow\"}",
         "\"until\" must be an ISO 8601 time with its zone, as \"2030-01-01T14:00:00Z\""},
        {"{\"hello\": 1}", "neither an \"outcome\" nor \"progress\""},
        {"[1]", "not a JSON object"},
    };
    skipq__report r = {.percent = -1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *why = NULL;
        ASSERT_EQ(read_line(bad[i].line, 0, &r, &why), -1);
        ASSERT_STREQ(why, bad[i].why);
        free(why);
    }
    skipq__report_clear(&r);
}

TEST(control_lines_in_pieces_and_the_last_outcome_wins)
{
    skipq_job job = {.id = 1};
    skipq__control c = {0};
    static const char *const pieces[] = {
        "{\"outcome\": \"fail\", \"error\": \"first\"}\n{\"outcome\": \"sn",
        "ooze\", \"delay_ms\": 5}",
        "\r\n\n   \n",
        "not json at all\n",
    };
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++)
        skipq__control_feed(&c, &job, pieces[i], strlen(pieces[i]));
    ASSERT_EQ(c.said.kind, SKIPQ__REPORT_OUTCOME);
    ASSERT_EQ(c.said.outcome, SKIPQ_JOB_SNOOZE);
    ASSERT_EQ(c.said.delay_ms, 5);

    /* a line past the limit is dropped whole; the next one counts */
    size_t big = SKIPQ__CONTROL_LINE_MAX + 10;
    char *junk = malloc(big);
    memset(junk, 'x', big);
    skipq__control_feed(&c, &job, junk, big);
    skipq__control_feed(&c, &job, "\"}\n", 3);
    free(junk);
    ASSERT_EQ(c.said.outcome, SKIPQ_JOB_SNOOZE);
    const char *last = "{\"outcome\": \"cancel\"}"; /* no newline: the end counts */
    skipq__control_feed(&c, &job, last, strlen(last));
    ASSERT_EQ(c.said.outcome, SKIPQ_JOB_SNOOZE);
    skipq__control_end(&c, &job);
    ASSERT_EQ(c.said.outcome, SKIPQ_JOB_CANCELLED);
    ASSERT_TRUE(c.said.text == NULL);
    skipq__control_free(&c);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
