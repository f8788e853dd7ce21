/*
 * cmd_jobs.c - `skipq jobs ls|show`: looking at jobs, their tags, meta
 * and the handler's progress. `jobs retry|cancel|delete` are
 * cmd_jobs_act.c's.
 */
#include "cli.h"
#include "queries.h"
#include "skipq_json.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: skipq jobs ls [--status S[,S]] [--queue Q] [--kind K] [--tag T]\n"
    "                     [--meta KEY=VALUE] [--limit N] [--since D|TS] [--archived]\n"
    "                     [--json]\n"
    "       skipq jobs show ID [--json]\n"
    "       skipq jobs retry|cancel ID... | FILTERS [--dry-run]\n"
    "       skipq jobs delete ID...\n"
    "\n"
    "  ls       newest first: id, queue, kind, priority, status, attempts,\n"
    "           run_at (queued) or updated_at, progress, last error\n"
    "    --status S       waiting, queued, running, succeeded, failed,\n"
    "                     cancelled (comma-separated)\n"
    "    --tag T          has tag T (repeatable: every one)\n"
    "    --meta KEY=VALUE meta contains it (repeatable; VALUE is JSON when\n"
    "                     it parses as JSON, else a string)\n"
    "    --limit N        at most N rows (default 50; 0: no limit)\n"
    "    --since D|TS     updated within D (10m) or since timestamp TS\n"
    "    --archived       list the archive (skipq.jobs_done: finished jobs\n"
    "                     a worker with archive_after moved there) instead\n"
    "    --json           one JSON object per line\n"
    "  show     every field, progress, tags, meta, payload and result, the\n"
    "           error history; archived jobs too\n"
    "  retry    jobs that are not running go back to queued, runnable now\n"
    "  cancel   queued jobs become cancelled; running jobs are asked to\n"
    "           stop (their worker ends them cancelled)\n"
    "  delete   jobs that are not running are removed for good\n"
    "  (skipq jobs retry --help: the filters and --dry-run)\n"
    "\n"
    "exit status 1 when an id does not exist\n";

enum {
    OPT_STATUS = CLI_OPT_LOCAL,
    OPT_QUEUE,
    OPT_KIND,
    OPT_LIMIT,
    OPT_SINCE,
    OPT_JSON,
    OPT_ARCHIVED,
};

/* ---- ls ------------------------------------------------------------ */

/* One line of text, at most max code points, "..." when cut. */
static void
one_line(const char *s, size_t max, char *buf, size_t size)
{
    size_t o = 0, cps = 0;

    for (; *s && o + 8 < size; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch & 0xC0) != 0x80 && cps++ == max) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        buf[o++] = (ch == '\n' || ch == '\r' || ch == '\t') ? ' ' : (char)ch;
    }
    /* do not leave half a UTF-8 sequence behind when the buffer ran out */
    while (o > 0 && ((unsigned char)buf[o - 1] & 0xC0) == 0x80 && *s &&
           ((unsigned char)*s & 0xC0) == 0x80)
        o--;
    buf[o] = '\0';
}

/* "40% copying files", cut to one short line; "" when none */
static void
progress_cell(const PGresult *res, int r, char *buf, size_t size)
{
    char msg[96];

    one_line(PQgetvalue(res, r, JLS_MESSAGE), 24, msg, sizeof msg);
    if (PQgetisnull(res, r, JLS_PERCENT))
        snprintf(buf, size, "%s", msg);
    else
        snprintf(buf, size, "%s%%%s%s", PQgetvalue(res, r, JLS_PERCENT), *msg ? " " : "",
                 msg);
}

static void
print_ls_json(const PGresult *res, int nrows)
{
    for (int r = 0; r < nrows; r++) {
        json_object *o = cli_jobs_ls_row(res, r);
        if (!o)
            return;
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
    }
}

static int
print_ls_table(const PGresult *res, int nrows)
{
    static const char *const header[] = {"id",       "queue",    "kind",
                                         "priority", "status",   "attempts",
                                         "when",     "progress", "last_error"};
    struct cli_table t;
    int rc = 0;

    cli_table_init(&t, 9);
    rc |= cli_table_add(&t, header);
    for (int r = 0; r < nrows && rc == 0; r++) {
        char att[32], when[64], err[128], queue[64], kind[64], prog[128];
        int queued = strcmp(PQgetvalue(res, r, JLS_STATUS), "queued") == 0;
        const char *cells[9];

        if (PQgetisnull(res, r, JLS_MAX))
            snprintf(att, sizeof att, "%s", PQgetvalue(res, r, JLS_ATT));
        else
            snprintf(att, sizeof att, "%s/%s", PQgetvalue(res, r, JLS_ATT),
                     PQgetvalue(res, r, JLS_MAX));
        cli_format_ts(PQgetvalue(res, r, queued ? JLS_RUN_AT : JLS_UPDATED), when,
                      sizeof when);
        one_line(PQgetvalue(res, r, JLS_ERROR), 40, err, sizeof err);
        one_line(PQgetvalue(res, r, JLS_QUEUE), 24, queue, sizeof queue);
        one_line(PQgetvalue(res, r, JLS_KIND), 24, kind, sizeof kind);
        progress_cell(res, r, prog, sizeof prog);
        cells[0] = PQgetvalue(res, r, JLS_ID);
        cells[1] = queue;
        cells[2] = kind;
        cells[3] = PQgetvalue(res, r, JLS_PRIO);
        cells[4] = PQgetvalue(res, r, JLS_STATUS);
        cells[5] = att;
        cells[6] = when;
        cells[7] = prog;
        cells[8] = err;
        rc |= cli_table_add(&t, cells);
    }
    if (rc == 0) {
        if (nrows == 0)
            printf("no jobs\n");
        else
            cli_table_print(&t, 1u << 0 | 1u << 3);
    }
    cli_table_free(&t);
    return rc ? cli_errorf(CLI_EXIT_FAIL, "out of memory") : CLI_EXIT_OK;
}

static int
ls_run(int argc, char **argv, struct cli_ctx *ctx, struct cli_job_filter *fp)
{
    static const struct option longopts[] = {
        {"status", required_argument, NULL, OPT_STATUS},
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"kind", required_argument, NULL, OPT_KIND},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"since", required_argument, NULL, OPT_SINCE},
        {"json", no_argument, NULL, OPT_JSON},
        {"archived", no_argument, NULL, OPT_ARCHIVED},
        CLI_FILTER_LONGOPTS,
        CLI_COMMON_LONGOPTS,
        {0},
    };
    int archived = 0;
    char statuses[64], limit_s[24], since_ms_s[24];
    const char *params[CLI_JOBS_LS_NPARAMS] = {NULL};
    const char *since = NULL;
    long long limit = 50;
    int64_t since_ms = 0;
    int json = 0, c, rc;
    skipq_conn *conn = NULL;
    PGresult *res;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c != CLI_OPT_TAG && c != CLI_OPT_META && (rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        if ((rc = cli_filter_opt(fp, c, optarg)) != CLI_NEXT) {
            if (rc != 0)
                return rc;
            continue;
        }
        switch (c) {
        case OPT_STATUS:
            if ((rc = cli_parse_statuses("--status", optarg, CLI_ST_ALL, statuses,
                                         sizeof statuses)) != 0)
                return rc;
            params[0] = statuses;
            break;
        case OPT_QUEUE:
            params[1] = optarg;
            break;
        case OPT_KIND:
            params[2] = optarg;
            break;
        case OPT_LIMIT:
            if ((rc = cli_parse_int("--limit", optarg, 0, INT32_MAX, &limit)) != 0)
                return rc;
            break;
        case OPT_SINCE:
            since = optarg;
            break;
        case OPT_ARCHIVED:
            archived = 1;
            break;
        case OPT_JSON:
            json = 1;
            break;
        default:
            if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
                return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error("jobs ls takes no arguments, got \"%.64s\"", argv[optind]);
    if (params[1] && (rc = cli_check_name("queue", params[1])) != 0)
        return rc;
    if (params[2] && (rc = cli_check_name("kind", params[2])) != 0)
        return rc;
    if (limit > 0) {
        /* one row more than shown: says whether the list was cut */
        snprintf(limit_s, sizeof limit_s, "%lld", limit + 1);
        params[3] = limit_s;
    }
    if (since) {
        /* a duration ("10m") or else a timestamp the server parses */
        skipq_error err = {0};
        if (skipq_parse_duration(since, &since_ms, &err) == SKIPQ_OK) {
            if (since_ms > CLI_MAX_DURATION_MS)
                return cli_usage_error("--since: invalid duration \"%.64s\": "
                                       "at most 36500d",
                                       since);
            snprintf(since_ms_s, sizeof since_ms_s, "%lld", (long long)since_ms);
            params[4] = since_ms_s;
        } else if (since[0] >= '0' && since[0] <= '9' && strpbrk(since, "-:/ T") != NULL) {
            params[5] = since;
        } else {
            return cli_usage_error("--since: %s (or a timestamp)", err.message);
        }
    }
    params[6] = cli_filter_tags(fp);
    params[7] = cli_filter_meta(fp);
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    res = PQexecParams(skipq_conn_pg(conn),
                       archived ? cli_jobs_ls_archived_sql : cli_jobs_ls_sql,
                       CLI_JOBS_LS_NPARAMS, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = cli_db_fail(skipq_conn_pg(conn), res, "could not list jobs");
    } else {
        int nrows = PQntuples(res);
        int cut = limit > 0 && nrows > limit;
        if (cut)
            nrows = (int)limit;
        if (json)
            print_ls_json(res, nrows), rc = CLI_EXIT_OK;
        else
            rc = print_ls_table(res, nrows);
        /* on stderr, so stdout stays the rows (and JSON lines) alone */
        if (rc == CLI_EXIT_OK && cut && ctx->log_level <= SKIPQ_LOG_INFO) {
            fflush(stdout);
            fprintf(stderr,
                    "skipq: showing the newest %lld jobs; more match "
                    "(--limit N for more, --limit 0 for all)\n",
                    limit);
        }
    }
    PQclear(res);
    skipq_conn_close(conn);
    return rc;
}

static int
jobs_ls(int argc, char **argv, struct cli_ctx *ctx)
{
    struct cli_job_filter f = {0};
    int rc = ls_run(argc, argv, ctx, &f);
    cli_filter_free(&f);
    return rc;
}

/* ---- show ------------------------------------------------------------ */

/*
 * Print text line by line, each line after the first (or every line,
 * unless skip_first) prefixed with indent. The text is a job's (an
 * error, a name, the payload): its control and bidi characters are shown
 * escaped, never sent to the terminal.
 */
static void
print_indented(const char *raw, const char *indent, int skip_first)
{
    char *text = cli_escape(raw, CLI_ESC_MULTILINE);
    const char *p = text ? text : "?";

    if (!*p)
        putchar('\n');
    while (*p) {
        size_t n = strcspn(p, "\n");
        printf("%s%.*s\n", skip_first && p == text ? "" : indent, (int)n, p);
        p += n;
        if (*p)
            p++;
    }
    free(text);
}

static const char *
entry_string(json_object *e, const char *key)
{
    json_object *v = NULL;

    return json_object_object_get_ex(e, key, &v) && v ? json_object_get_string(v) : "?";
}

static void
print_error_entry(size_t i, json_object *e)
{
    json_object *v;
    const char *at = json_object_object_get_ex(e, "at", &v) ? json_object_get_string(v)
                                                            : "";
    char when[64], *line = NULL;
    int n;

    cli_format_ts(at ? at : "", when, sizeof when);
    if (json_object_object_get_ex(e, "recovered", NULL) ||
        json_object_object_get_ex(e, "retried", NULL)) {
        n = asprintf(&line, "%s from %s by %s",
                     json_object_object_get_ex(e, "recovered", NULL) ? "recovered"
                                                                     : "retried",
                     entry_string(e, "from"), entry_string(e, "by"));
    } else if (json_object_object_get_ex(e, "error", &v)) {
        json_object *att = NULL;
        n = json_object_object_get_ex(e, "attempt", &att)
                ? asprintf(&line, "attempt %s: %s", json_object_get_string(att),
                           json_object_get_string(v))
                : asprintf(&line, "%s", json_object_get_string(v));
    } else {
        n = asprintf(&line, "%s",
                     json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN |
                                                           JSON_C_TO_STRING_NOSLASHESCAPE));
    }
    printf("  %zu. %s  ", i, when);
    print_indented(n >= 0 ? line : "?", "     ", 1);
    if (n >= 0)
        free(line);
}

/* "40% copying files (at 2024-05-01 12:00:00+02:00)"; "-" when none */
static void
show_progress(const PGresult *res)
{
    json_object *p = cli_job_column(res, CLI_JOB_PROGRESS), *v;
    char line[512] = "-", when[64] = "";
    size_t n = 0;

    if (p && json_object_object_get_ex(p, "percent", &v))
        n += (size_t)snprintf(line, sizeof line, "%d%% ", json_object_get_int(v));
    if (p && json_object_object_get_ex(p, "message", &v) && n < sizeof line)
        n += (size_t)snprintf(line + n, sizeof line - n, "%s ", json_object_get_string(v));
    if (p && json_object_object_get_ex(p, "at", &v) && n < sizeof line)
        snprintf(line + n, sizeof line - n, "(at %s)",
                 cli_format_ts(json_object_get_string(v), when, sizeof when));
    printf("%-20s ", "progress");
    print_indented(line, "                     ", 1);
    json_object_put(p);
}

/* "a, b", or "-" */
static void
show_tags(const PGresult *res)
{
    json_object *t = cli_job_column(res, CLI_JOB_TAGS);
    size_t n = t && json_object_is_type(t, json_type_array) ? json_object_array_length(t)
                                                            : 0;

    printf("%-20s ", "tags");
    if (n == 0)
        fputs("-", stdout);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ", " : "", stdout);
        cli_print_escaped(json_object_get_string(json_object_array_get_idx(t, i)), 0);
    }
    putchar('\n');
    json_object_put(t);
}

static void
show_text(const PGresult *res)
{
    char buf[64];

    for (int c = 0; c < CLI_JOB_FIRST_JSON; c++) {
        const char *v = PQgetisnull(res, 0, c) ? "-" : PQgetvalue(res, 0, c);
        if (c == 11 || (c >= 14 && c <= 18))
            v = PQgetisnull(res, 0, c) ? "-" : cli_format_ts(v, buf, sizeof buf);
        if (c == 6 && PQgetisnull(res, 0, c))
            v = "- (the worker's default)";
        printf("%-20s ", cli_job_cols[c]);
        print_indented(v, "                     ", 1);
    }
    if (strcmp(PQgetvalue(res, 0, CLI_JOB_ARCHIVED), "true") == 0)
        printf("%-20s yes (skipq.jobs_done: read only)\n", cli_job_cols[CLI_JOB_ARCHIVED]);
    show_progress(res);
    show_tags(res);
    static const int blocks[] = {CLI_JOB_META, CLI_JOB_FIRST_JSON, CLI_JOB_FIRST_JSON + 1};
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
        int c = blocks[b];
        json_object *o = cli_job_column(res, c);
        if (!o) {
            printf("%-20s -\n", cli_job_cols[c]);
            continue;
        }
        printf("%s\n", cli_job_cols[c]);
        print_indented(json_object_to_json_string_ext(o,
                                                      JSON_C_TO_STRING_PRETTY |
                                                          JSON_C_TO_STRING_SPACED |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE),
                       "  ", 0);
        json_object_put(o);
    }
    json_object *errs = cli_job_column(res, CLI_JOB_FIRST_JSON + 2);
    size_t n = errs && json_object_is_type(errs, json_type_array)
                   ? json_object_array_length(errs)
                   : 0;
    printf("errors (%zu)\n", n);
    for (size_t i = 0; i < n; i++)
        print_error_entry(i + 1, json_object_array_get_idx(errs, i));
    json_object_put(errs);
}

static void
show_json(const PGresult *res)
{
    json_object *o = cli_job_json(res);

    if (!o)
        return;
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                               JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

static int
jobs_show(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    int json = 0, c, rc;
    int64_t id;
    char id_s[24];
    const char *params[1] = {id_s};
    skipq_conn *conn = NULL;
    PGresult *res;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        if (c == OPT_JSON)
            json = 1;
        else if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
            return rc;
    }
    if (optind + 1 != argc)
        return cli_usage_error("jobs show takes one job id");
    if ((rc = cli_parse_id(argv[optind], &id)) != 0)
        return rc;
    snprintf(id_s, sizeof id_s, "%lld", (long long)id);
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    res = PQexecParams(skipq_conn_pg(conn), cli_job_show_sql, 1, NULL, params, NULL, NULL,
                       0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = cli_db_fail(skipq_conn_pg(conn), res, "could not read job %lld",
                         (long long)id);
    } else if (PQntuples(res) == 0) {
        rc = cli_errorf(CLI_EXIT_FAIL, "job %lld does not exist", (long long)id);
    } else {
        if (json)
            show_json(res);
        else
            show_text(res);
        rc = CLI_EXIT_OK;
    }
    PQclear(res);
    skipq_conn_close(conn);
    return rc;
}

int
cmd_jobs(int argc, char **argv, struct cli_ctx *ctx)
{
    const char *sub;
    int rc = cli_subcommand(&argc, &argv, usage, &sub);

    if (rc != CLI_NEXT)
        return rc;
    if (strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0)
        return jobs_ls(argc, argv, ctx);
    if (strcmp(sub, "show") == 0)
        return jobs_show(argc, argv, ctx);
    if (strcmp(sub, "retry") == 0 || strcmp(sub, "cancel") == 0 ||
        strcmp(sub, "delete") == 0)
        return cmd_jobs_act(argc, argv, ctx);
    return cli_usage_error("unknown jobs command \"%.64s\": use ls, show, "
                           "retry, cancel or delete",
                           sub);
}
