/*
 * cmd_schedule.c - `skipq schedule ls|add|rm|pause|resume`: periodic jobs
 * (sql/schedules.sql). Every change is one call of the SQL API
 * (skipq.schedule, unschedule, schedule_pause), so the server checks a
 * cron expression and a time zone the same way for the CLI, psql and a
 * worker's config; a definition it refuses exits 2 with its message.
 */
#include "cli.h"
#include "queries.h"

#include "skipq_json.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: skipq schedule ls [--next N] [--json]\n"
    "       skipq schedule add NAME CRON KIND [JSON] [--tz ZONE] [--queue Q]\n"
    "                          [--priority P] [--missed skip|catch-up] [--paused]\n"
    "       skipq schedule rm NAME\n"
    "       skipq schedule pause NAME\n"
    "       skipq schedule resume NAME\n"
    "\n"
    "Periodic jobs: each slot of a schedule's cron expression is enqueued once,\n"
    "by a running worker.\n"
    "\n"
    "  CRON               5 fields (minute hour day-of-month month day-of-week;\n"
    "                     lists, ranges, steps, jan-dec, sun-sat), @yearly,\n"
    "                     @monthly, @weekly, @daily, @hourly, or @every 30s\n"
    "                     (s, m, h, d; slots counted from the Unix epoch)\n"
    "ls:\n"
    "    --next N         show the next N run times (default 1, at most 100)\n"
    "    --json           one JSON object per line\n"
    "add (replaces a schedule of the same name):\n"
    "    JSON             the jobs' payload, a JSON object (default {})\n"
    "    --tz ZONE        time zone of the cron fields (default UTC)\n"
    "    --queue Q        queue of the jobs (default \"default\")\n"
    "    --priority P     high, normal, low or a number (default normal)\n"
    "    --missed M       slots missed while no worker ran or the schedule was\n"
    "                     paused: skip (default) or catch-up (run once)\n"
    "    --paused         add it paused\n"
    "\n"
    "exit status: 0 done, 1 runtime failure or no such schedule,\n"
    "2 usage or bad input (a cron expression or zone the server refuses)\n";

enum {
    OPT_NEXT = CLI_OPT_LOCAL,
    OPT_JSON,
    OPT_TZ,
    OPT_QUEUE,
    OPT_PRIORITY,
    OPT_MISSED,
    OPT_PAUSED,
};

/* A timestamptz as ISO 8601 text, whatever the session's DateStyle. */
#define ISO(col) "pg_catalog.to_json(" col ") #>> '{}'::text[]"

/* ---- ls ------------------------------------------------------------ */

static void
print_ls_json(const PGresult *res)
{
    for (int r = 0; r < PQntuples(res); r++) {
        json_object *o = cli_schedule_ls_row(res, r);
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
    }
}

/* The next run times as "ts, ts" for people (buf). */
static void
format_next(const PGresult *res, int r, char *buf, size_t size)
{
    json_object *a = cli_cell_json(res, r, SLS_NEXT, 'j');
    size_t n = a && json_object_is_type(a, json_type_array) ? json_object_array_length(a)
                                                            : 0;
    size_t o = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n && o + 40 < size; i++) {
        char ts[64];
        cli_format_ts(json_object_get_string(json_object_array_get_idx(a, i)), ts,
                      sizeof ts);
        o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? ", " : "", ts);
    }
    if (n == 0)
        snprintf(buf, size, "never");
    json_object_put(a);
}

static int
print_ls_table(const PGresult *res)
{
    static const char *const header[] = {"name",  "cron",   "tz",        "kind",
                                         "queue", "paused", "last slot", "next run"};
    struct cli_table t;
    int rc = cli_table_init(&t, 8);

    rc |= cli_table_add(&t, header);
    for (int r = 0; r < PQntuples(res) && rc == 0; r++) {
        char last[64], next[4096];
        const char *cells[8];
        if (PQgetisnull(res, r, SLS_LAST))
            snprintf(last, sizeof last, "-");
        else
            cli_format_ts(PQgetvalue(res, r, SLS_LAST), last, sizeof last);
        format_next(res, r, next, sizeof next);
        cells[0] = PQgetvalue(res, r, SLS_NAME);
        cells[1] = PQgetvalue(res, r, SLS_CRON);
        cells[2] = PQgetvalue(res, r, SLS_TZ);
        cells[3] = PQgetvalue(res, r, SLS_KIND);
        cells[4] = PQgetvalue(res, r, SLS_QUEUE);
        cells[5] = PQgetvalue(res, r, SLS_PAUSED)[0] == 't' ? "yes" : "no";
        cells[6] = last;
        cells[7] = next;
        rc |= cli_table_add(&t, cells);
    }
    if (rc == 0) {
        if (PQntuples(res) == 0)
            printf("no schedules\n");
        else
            cli_table_print(&t, 0);
    }
    cli_table_free(&t);
    return rc ? cli_errorf(CLI_EXIT_FAIL, "out of memory") : CLI_EXIT_OK;
}

static int
schedule_ls(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        {"next", required_argument, NULL, OPT_NEXT},
        {"json", no_argument, NULL, OPT_JSON},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    long long next = 1;
    int json = 0, c, rc;
    char next_s[16];
    skipq_conn *conn = NULL;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        if (c == OPT_NEXT) {
            if ((rc = cli_parse_int("--next", optarg, 1, 100, &next)) != 0)
                return rc;
        } else if (c == OPT_JSON) {
            json = 1;
        } else if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT) {
            return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error("schedule ls takes no arguments, got \"%.64s\"",
                               argv[optind]);
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    snprintf(next_s, sizeof next_s, "%lld", next);
    const char *params[1] = {next_s};
    PGresult *res = PQexecParams(skipq_conn_pg(conn), cli_schedule_ls_sql, 1, NULL, params,
                                 NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = cli_db_fail(skipq_conn_pg(conn), res, "could not list schedules");
    else if (json)
        print_ls_json(res), rc = CLI_EXIT_OK;
    else
        rc = print_ls_table(res);
    PQclear(res);
    skipq_conn_close(conn);
    return rc;
}

/* ---- add ------------------------------------------------------------ */

/* What add sends: $1 name, $2 cron, $3 kind, $4 payload, $5 queue, $6
 * priority (a name or a number, as skipq.enqueue takes it), $7 zone, $8
 * policy, $9 paused. */
static const char add_sql[] =
    "SELECT " ISO("s.next_slot") " FROM skipq.schedule($1, $2, $3, $4::jsonb, $5,"
                                 " $6::text, $7, $8, $9::bool) AS s";

static int
add_parse(int argc, char **argv, struct cli_ctx *ctx, const char **v)
{
    static const struct option longopts[] = {
        {"tz", required_argument, NULL, OPT_TZ},
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"priority", required_argument, NULL, OPT_PRIORITY},
        {"missed", required_argument, NULL, OPT_MISSED},
        {"paused", no_argument, NULL, OPT_PAUSED},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    int c, rc;
    int16_t prio;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        switch (c) {
        case OPT_TZ:
            v[6] = optarg;
            break;
        case OPT_QUEUE:
            if ((rc = cli_check_name("queue", optarg)) != 0)
                return rc;
            v[4] = optarg;
            break;
        case OPT_PRIORITY:
            if ((rc = cli_parse_priority("--priority", optarg, &prio)) != 0)
                return rc;
            v[5] = optarg;
            break;
        case OPT_MISSED:
            if (strcmp(optarg, "skip") == 0)
                v[7] = "skip";
            else if (strcmp(optarg, "catch-up") == 0 || strcmp(optarg, "catch_up") == 0)
                v[7] = "catch_up";
            else
                return cli_usage_error("--missed: unknown policy \"%.64s\": use skip or "
                                       "catch-up",
                                       optarg);
            break;
        case OPT_PAUSED:
            v[8] = "true";
            break;
        default:
            if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
                return rc;
        }
    }
    if (argc - optind < 3 || argc - optind > 4)
        return cli_usage_error("schedule add takes NAME CRON KIND [JSON]");
    v[0] = argv[optind];
    v[1] = argv[optind + 1];
    v[2] = argv[optind + 2];
    if (argc - optind == 4)
        v[3] = argv[optind + 3];
    if ((rc = cli_check_name("schedule name", v[0])) != 0 ||
        (rc = cli_check_name("cron expression", v[1])) != 0 ||
        (rc = cli_check_name("kind", v[2])) != 0)
        return rc;
    skipq_error err = {0};
    if (skipq_check_payload(v[3], strlen(v[3]), 0, &err) != SKIPQ_OK)
        return cli_errorf(CLI_EXIT_USAGE, "%s", err.message);
    return 0;
}

static int
schedule_add(int argc, char **argv, struct cli_ctx *ctx)
{
    const char *v[9] = {NULL, NULL, NULL, "{}", "default", "0", "UTC", "skip", NULL};
    skipq_conn *conn = NULL;
    int rc;

    if ((rc = add_parse(argc, argv, ctx, v)) != 0)
        return rc;
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    PGresult *res = PQexecParams(skipq_conn_pg(conn), add_sql, 9, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char *name = cli_escape(v[0], 0);
        rc = cli_db_fail(skipq_conn_pg(conn), res, "could not add schedule \"%s\"",
                         name ? name : "?");
        free(name);
    } else {
        char ts[64];
        printf("schedule ");
        cli_print_escaped(v[0], 0);
        printf(": next run %s\n", cli_format_ts(PQgetvalue(res, 0, 0), ts, sizeof ts));
        rc = CLI_EXIT_OK;
    }
    PQclear(res);
    skipq_conn_close(conn);
    return rc;
}

/* ---- rm, pause, resume ------------------------------------------------ */

static int
schedule_one(int argc, char **argv, struct cli_ctx *ctx, const char *sql, const char *done)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS, {0}};
    skipq_conn *conn = NULL;
    int c, rc;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
            return rc;
    }
    if (argc - optind != 1)
        return cli_usage_error("schedule %s takes one NAME", argv[0]);
    const char *name = argv[optind];
    if ((rc = cli_check_name("schedule name", name)) != 0)
        return rc;
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    char *shown = cli_escape(name, 0);
    PGresult *res = PQexecParams(skipq_conn_pg(conn), sql, 1, NULL, &name, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = cli_db_fail(skipq_conn_pg(conn), res, "could not %s schedule \"%s\"", argv[0],
                         shown ? shown : "?");
    else if (PQgetvalue(res, 0, 0)[0] != 't')
        rc = cli_errorf(CLI_EXIT_FAIL, "schedule \"%s\" does not exist",
                        shown ? shown : "?");
    else
        printf("schedule %s %s\n", shown ? shown : "?", done), rc = CLI_EXIT_OK;
    free(shown);
    PQclear(res);
    skipq_conn_close(conn);
    return rc;
}

int
cmd_schedule(int argc, char **argv, struct cli_ctx *ctx)
{
    const char *sub;
    int rc = cli_subcommand(&argc, &argv, usage, &sub);

    if (rc != CLI_NEXT)
        return rc;
    if (strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0)
        return schedule_ls(argc, argv, ctx);
    if (strcmp(sub, "add") == 0)
        return schedule_add(argc, argv, ctx);
    if (strcmp(sub, "rm") == 0)
        return schedule_one(argc, argv, ctx, "SELECT skipq.unschedule($1)", "removed");
    if (strcmp(sub, "pause") == 0)
        return schedule_one(argc, argv, ctx, cli_schedule_pause_sql, "paused");
    if (strcmp(sub, "resume") == 0)
        return schedule_one(argc, argv, ctx, cli_schedule_resume_sql, "resumed");
    return cli_usage_error("unknown schedule command \"%.64s\": use ls, add, rm, pause or "
                           "resume",
                           sub);
}
