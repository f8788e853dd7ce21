/*
 * test_cli_metrics.c - `skipq metrics` (cli/cmd_metrics.c): its output
 * parses as the Prometheus text format (every sample's family declared
 * first, names under skipq_, label values escaped and read back exactly,
 * values numbers), its figures match SQL, including a queue whose name
 * holds a quote, a backslash and a newline, and a failed read prints
 * nothing and exits 1.
 */
#include "skipq.h"
#include "testlib.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAMILIES 64

/* The families declared so far (# TYPE lines). */
struct families {
    char names[MAX_FAMILIES][96];
    int n;
};

static bool
declared(const struct families *f, const char *name, size_t len)
{
    for (int i = 0; i < f->n; i++)
        if (strlen(f->names[i]) == len && strncmp(f->names[i], name, len) == 0)
            return true;
    return false;
}

/* Read a label value at *p (after the opening quote) into out, undoing
 * the three escapes the format has; false on anything else. */
static bool
read_label_value(const char **p, char *out, size_t size)
{
    size_t o = 0;
    for (const char *s = *p; *s; s++) {
        char c = *s;
        if (c == '"') {
            out[o] = '\0';
            *p = s + 1;
            return true;
        }
        if (c == '\n')
            return false;
        if (c == '\\') {
            s++;
            if (*s == 'n')
                c = '\n';
            else if (*s == '\\' || *s == '"')
                c = *s;
            else
                return false;
        }
        if (o + 1 >= size)
            return false;
        out[o++] = c;
    }
    return false;
}

/*
 * Check one sample line against the format, and when its name and first
 * label's value are want_name and want_label (want_label may be NULL: any
 * labels), store its value in *value. Fails the test on a malformed line.
 */
static void
check_sample(const char *line, const struct families *f, const char *want_name,
             const char *want_label, const char *want_status, double *value)
{
    const char *p = line;
    while (isalnum((unsigned char)*p) || *p == '_' || *p == ':')
        p++;
    size_t nlen = (size_t)(p - line);
    if (nlen == 0 || strncmp(line, "skipq_", 6) != 0 || !declared(f, line, nlen))
        HARNESS_FAIL("sample of an undeclared family or not under skipq_: %s", line);
    char first[256] = "", status[64] = "";
    if (*p == '{') {
        p++;
        for (int i = 0; *p != '}'; i++) {
            const char *name = p;
            while (isalnum((unsigned char)*p) || *p == '_')
                p++;
            char val[256];
            if (p == name || p[0] != '=' || p[1] != '"')
                HARNESS_FAIL("bad label in: %s", line);
            p += 2;
            if (!read_label_value(&p, val, sizeof val))
                HARNESS_FAIL("bad label value in: %s", line);
            if (i == 0)
                snprintf(first, sizeof first, "%s", val);
            if (strncmp(name, "status=", 7) == 0)
                snprintf(status, sizeof status, "%s", val);
            if (*p == ',')
                p++;
            else if (*p != '}')
                HARNESS_FAIL("bad label list in: %s", line);
        }
        p++;
    }
    if (*p != ' ')
        HARNESS_FAIL("no value in: %s", line);
    char *end;
    double v = strtod(p + 1, &end);
    if (end == p + 1 || *end != '\0')
        HARNESS_FAIL("value is not a number in: %s", line);
    if (strlen(want_name) == nlen && strncmp(line, want_name, nlen) == 0 &&
        (!want_label || strcmp(first, want_label) == 0) &&
        (!want_status || strcmp(status, want_status) == 0))
        *value = v;
}

/* Parse the whole output; the value of the sample named want_name whose
 * first label is want_label (and whose status is want_status, if given),
 * or -1 if there is none. */
static double
metric(const char *out, const char *want_name, const char *want_label,
       const char *want_status)
{
    struct families f = {.n = 0};
    double value = -1;
    char *copy = strdup(out);
    ASSERT_TRUE(copy != NULL);
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "# HELP ", 7) == 0)
            continue;
        if (strncmp(line, "# TYPE ", 7) == 0) {
            ASSERT_TRUE(f.n < MAX_FAMILIES);
            if (sscanf(line + 7, "%95s", f.names[f.n]) != 1)
                HARNESS_FAIL("bad TYPE line: %s", line);
            ASSERT_TRUE(strstr(line, " gauge") || strstr(line, " counter"));
            f.n++;
            continue;
        }
        check_sample(line, &f, want_name, want_label, want_status, &value);
    }
    free(copy);
    return value;
}

TEST(metrics_parse_and_match_sql)
{
    PGconn *pg = tl_db();
    const char *odd = "we\"ird\\q\nx";
    tl_exec(pg, "SELECT skipq.enqueue('k') FROM generate_series(1, 3)");
    tl_exec(pg, "SELECT skipq.enqueue('k', run_at => now() + interval '1 hour')");
    tl_exec(pg, "SELECT skipq.enqueue('k', queue => E'we\"ird\\\\q\\nx')");
    tl_exec(pg, "UPDATE skipq.jobs SET status = 'failed', finished_at = now()"
                " WHERE id = (SELECT min(id) FROM skipq.jobs)");
    tl_exec(pg, "SELECT skipq.queue_set('api', max_running => '3', rate => '20/500ms')");
    tl_exec(pg, "SELECT skipq.queue_pause('api')");
    tl_exec(pg, "SELECT skipq.schedule('nightly', '0 3 * * *', 'report')");
    char *out = NULL, *err = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "metrics"), 0);
    ASSERT_EQ(metric(out, "skipq_up", NULL, NULL), 1);
    ASSERT_EQ(metric(out, "skipq_jobs", "default", "runnable"), 2);
    ASSERT_EQ(metric(out, "skipq_jobs", "default", "scheduled"), 1);
    ASSERT_EQ(metric(out, "skipq_jobs", "default", "failed"), 1);
    ASSERT_EQ(metric(out, "skipq_jobs", odd, "runnable"), 1);
    ASSERT_EQ(metric(out, "skipq_jobs_finished_last_minute", "default", NULL), 1);
    ASSERT_TRUE(metric(out, "skipq_oldest_runnable_age_seconds", odd, NULL) >= 0);
    ASSERT_EQ(metric(out, "skipq_queue_paused", "api", NULL), 1);
    ASSERT_EQ(metric(out, "skipq_queue_max_running", "api", NULL), 3);
    ASSERT_EQ(metric(out, "skipq_queue_rate_limit_per_second", "api", NULL), 40);
    ASSERT_EQ(metric(out, "skipq_workers", "alive", NULL), 0);
    ASSERT_EQ(metric(out, "skipq_schedule_next_run_timestamp_seconds", "nightly", NULL),
              (double)tl_int(pg, "SELECT extract(epoch FROM next_slot)::int8"
                                 " FROM skipq.schedules WHERE name = 'nightly'"));
    free(out);
    free(err);
}

/* A database without the schema: exit 1, a message saying so, nothing on
 * stdout (a textfile collector's file is never half written). */
TEST(metrics_print_nothing_when_the_read_fails)
{
    PGconn *pg = tl_empty_db();
    (void)pg;
    char *out = NULL, *err = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "metrics"), 1);
    ASSERT_STREQ(out, "");
    ASSERT_TRUE(strstr(err, "run skipq migrate") != NULL);
    free(out);
    free(err);
    ASSERT_EQ(tl_skipq_run(NULL, &out, &err, "metrics extra"), 2);
    free(out);
    free(err);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
