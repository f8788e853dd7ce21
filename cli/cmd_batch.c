/*
 * cmd_batch.c - `skipq batch new|add|seal|show` and `skipq chain`: batches
 * of jobs with a completion job, and chains of jobs each waiting for the
 * one before (sql/deps.sql does the work: skipq.batch_create,
 * skipq.batch_seal, skipq.enqueue(..., batch =>), skipq.enqueue_chain).
 *
 * Jobs come from stdin as JSON lines, each an object {"kind", "payload",
 * "queue", "priority"}; every line is checked before the database is
 * touched, and all of them are enqueued in one transaction: a bad line or
 * a refused job enqueues none.
 */
#include "cli.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: skipq batch new [--on-complete KIND] [--payload JSON] [--queue Q]\n"
    "                       [--priority P]\n"
    "       skipq batch add ID [--seal] < jobs.jsonl\n"
    "       skipq batch seal ID [--json]\n"
    "       skipq batch show ID [--json]\n"
    "       skipq chain [--batch ID] < jobs.jsonl\n"
    "\n"
    "A batch's completion job (kind --on-complete, with --payload plus\n"
    "\"skipq_batch\": {id, total, succeeded, failed, cancelled}) is enqueued\n"
    "once the batch is sealed and every member has finished.\n"
    "\n"
    "  new     create a batch; prints its id\n"
    "  add     enqueue the JSON lines on stdin into batch ID (one object a\n"
    "          line: kind, payload, queue, priority), in one transaction;\n"
    "          prints their ids. --seal: seal it in the same transaction\n"
    "  seal    no job joins the batch any more\n"
    "  show    the batch's counts and completion job\n"
    "  chain   enqueue the JSON lines on stdin, each waiting for the one\n"
    "          before (its payload gets \"skipq_parents\"); prints the ids\n";

enum {
    OPT_ON_COMPLETE = CLI_OPT_LOCAL,
    OPT_PAYLOAD,
    OPT_QUEUE,
    OPT_PRIORITY,
    OPT_SEAL,
    OPT_JSON,
    OPT_BATCH
};

/* Every line of stdin (blank lines skipped) as one JSON array text, each
 * element checked to be an object with a "kind" string. */
static int
read_jobs(char **out)
{
    json_object *arr = json_object_new_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int rc = 0;

    if (!arr)
        return cli_errorf(CLI_EXIT_FAIL, "out of memory");
    while ((len = getline(&line, &cap, stdin)) != -1) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (strspn(line, " \t") == (size_t)len)
            continue;
        json_object *o = json_tokener_parse(line), *kind = NULL;
        if (!o || !json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, "kind", &kind) ||
            !json_object_is_type(kind, json_type_string)) {
            json_object_put(o);
            rc = cli_errorf(CLI_EXIT_USAGE,
                            "stdin line %ld: want a JSON object with a \"kind\" string",
                            lineno);
            goto out;
        }
        json_object_array_add(arr, o);
    }
    if (json_object_array_length(arr) == 0) {
        rc = cli_errorf(CLI_EXIT_USAGE, "no jobs on stdin (one JSON object a line)");
        goto out;
    }
    *out = strdup(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
    if (!*out)
        rc = cli_errorf(CLI_EXIT_FAIL, "out of memory");
out:
    free(line);
    json_object_put(arr);
    return rc;
}

/* Run sql in one transaction and print the first column of every row. */
static int
run_and_print(struct cli_ctx *ctx, const char *what, const char *sql, int nparams,
              const char *const *params, const char *after_sql,
              const char *const *after_params)
{
    skipq_conn *conn = NULL;
    PGresult *res = NULL, *after = NULL;
    PGconn *pg;
    int rc;

    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    pg = skipq_conn_pg(conn);
    res = PQexec(pg, "BEGIN");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = cli_db_fail(pg, res, "could not begin");
        goto out;
    }
    PQclear(res);
    res = PQexecParams(pg, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = cli_db_fail(pg, res, "could not %s", what);
        goto rollback;
    }
    if (after_sql) {
        after = PQexecParams(pg, after_sql, 1, NULL, after_params, NULL, NULL, 0);
        if (PQresultStatus(after) != PGRES_TUPLES_OK) {
            rc = cli_db_fail(pg, after, "could not seal the batch");
            goto rollback;
        }
    }
    if ((rc = cli_commit(pg, what)) != 0)
        goto out;
    for (int r = 0; r < PQntuples(res); r++)
        printf("%s\n", PQgetvalue(res, r, 0));
    rc = CLI_EXIT_OK;
    goto out;
rollback:
    PQclear(PQexec(pg, "ROLLBACK"));
out:
    PQclear(res);
    PQclear(after);
    skipq_conn_close(conn);
    return rc;
}

static int
parse_batch_id(const char *cmd, int argc, char **argv, int64_t *id)
{
    if (optind >= argc)
        return cli_usage_error("batch %s needs a batch id", cmd);
    if (optind + 1 < argc)
        return cli_usage_error("batch %s takes one batch id, got \"%.64s\" too", cmd,
                               argv[optind + 1]);
    return cli_parse_id(argv[optind], id);
}

static int
batch_new(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        {"on-complete", required_argument, NULL, OPT_ON_COMPLETE},
        {"payload", required_argument, NULL, OPT_PAYLOAD},
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"priority", required_argument, NULL, OPT_PRIORITY},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    const char *params[4] = {NULL, "{}", "default", "0"};
    int16_t prio;
    int c, rc;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        switch (c) {
        case OPT_ON_COMPLETE:
            if ((rc = cli_check_name("kind", optarg)) != 0)
                return rc;
            params[0] = optarg;
            break;
        case OPT_PAYLOAD: {
            json_object *o = json_tokener_parse(optarg);
            int ok = o && json_object_is_type(o, json_type_object);
            json_object_put(o);
            if (!ok)
                return cli_usage_error("--payload must be a JSON object");
            params[1] = optarg;
            break;
        }
        case OPT_QUEUE:
            if ((rc = cli_check_name("queue", optarg)) != 0)
                return rc;
            params[2] = optarg;
            break;
        case OPT_PRIORITY:
            if ((rc = cli_parse_priority("--priority", optarg, &prio)) != 0)
                return rc;
            params[3] = optarg;
            break;
        default:
            if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
                return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error("batch new takes no arguments, got \"%.64s\"", argv[optind]);
    return run_and_print(ctx, "create the batch",
                         "SELECT skipq.batch_create($1, $2::jsonb, $3, $4::text)", 4,
                         params, NULL, NULL);
}

static int
batch_add(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        {"seal", no_argument, NULL, OPT_SEAL},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    int64_t id;
    char id_s[24], *jobs = NULL;
    int c, rc, seal = 0;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == OPT_SEAL)
            seal = 1;
        else if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
            return rc;
    }
    if ((rc = parse_batch_id("add", argc, argv, &id)) != 0)
        return rc;
    if ((rc = read_jobs(&jobs)) != 0)
        return rc;
    snprintf(id_s, sizeof id_s, "%lld", (long long)id);
    const char *params[2] = {id_s, jobs};
    rc = run_and_print(ctx, "add the jobs",
                       "SELECT skipq.enqueue(e->>'kind', coalesce(e->'payload', '{}'),"
                       " coalesce(e->>'queue', 'default'), coalesce(e->>'priority', '0'),"
                       " batch => $1::int8)"
                       " FROM pg_catalog.jsonb_array_elements($2::jsonb) WITH ORDINALITY"
                       " AS x(e, n) ORDER BY x.n",
                       2, params, seal ? "SELECT skipq.batch_seal($1::int8)" : NULL,
                       params);
    free(jobs);
    return rc;
}

/* The batch's counts, as a table or one JSON object. */
static int
batch_show(int argc, char **argv, struct cli_ctx *ctx, int seal)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    int64_t id;
    char id_s[24];
    int c, rc, json = 0;
    skipq_conn *conn = NULL;
    PGresult *res = NULL;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == OPT_JSON)
            json = 1;
        else if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
            return rc;
    }
    if ((rc = parse_batch_id(seal ? "seal" : "show", argc, argv, &id)) != 0)
        return rc;
    snprintf(id_s, sizeof id_s, "%lld", (long long)id);
    const char *params[1] = {id_s};
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    res = PQexecParams(skipq_conn_pg(conn),
                       seal ? "SELECT pg_catalog.row_to_json(b)::text FROM"
                              " skipq.batch_seal($1::int8) b"
                            : "SELECT pg_catalog.row_to_json(b)::text FROM skipq.batches b"
                              " WHERE b.id = $1::int8",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = cli_db_fail(skipq_conn_pg(conn), res, "could not %s batch %lld",
                         seal ? "seal" : "read", (long long)id);
        goto out;
    }
    if (PQntuples(res) == 0) {
        rc = cli_errorf(CLI_EXIT_FAIL, "batch %lld does not exist", (long long)id);
        goto out;
    }
    if (json) {
        printf("%s\n", PQgetvalue(res, 0, 0));
    } else {
        json_object *o = json_tokener_parse(PQgetvalue(res, 0, 0)), *v;
        static const char *const keys[] = {
            "id",        "on_complete_kind", "total",       "succeeded",     "failed",
            "cancelled", "sealed_at",        "finished_at", "completion_job"};
        for (size_t k = 0; o && k < sizeof keys / sizeof keys[0]; k++) {
            const char *s = json_object_object_get_ex(o, keys[k], &v) && v
                                ? json_object_get_string(v)
                                : "-";
            printf("%-16s ", keys[k]);
            cli_print_escaped(s, 0);
            putchar('\n');
        }
        json_object_put(o);
    }
    rc = CLI_EXIT_OK;
out:
    PQclear(res);
    skipq_conn_close(conn);
    return rc;
}

int
cmd_batch(int argc, char **argv, struct cli_ctx *ctx)
{
    const char *sub;
    int rc = cli_subcommand(&argc, &argv, usage, &sub);

    if (rc != CLI_NEXT)
        return rc;
    if (strcmp(sub, "new") == 0)
        return batch_new(argc, argv, ctx);
    if (strcmp(sub, "add") == 0)
        return batch_add(argc, argv, ctx);
    if (strcmp(sub, "seal") == 0)
        return batch_show(argc, argv, ctx, 1);
    if (strcmp(sub, "show") == 0)
        return batch_show(argc, argv, ctx, 0);
    return cli_usage_error("unknown batch command \"%.64s\": use new, add, seal or show",
                           sub);
}

int
cmd_chain(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        {"batch", required_argument, NULL, OPT_BATCH},
        CLI_COMMON_LONGOPTS,
        {0},
    };
    int64_t batch = 0;
    char batch_s[24], *jobs = NULL;
    int c, rc;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        if (c == OPT_BATCH) {
            if ((rc = cli_parse_id(optarg, &batch)) != 0)
                return rc;
        } else if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT) {
            return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error("chain takes no arguments, got \"%.64s\"", argv[optind]);
    if ((rc = read_jobs(&jobs)) != 0)
        return rc;
    snprintf(batch_s, sizeof batch_s, "%lld", (long long)batch);
    const char *params[2] = {jobs, batch ? batch_s : NULL};
    rc = run_and_print(ctx, "enqueue the chain",
                       "SELECT pg_catalog.unnest(skipq.enqueue_chain($1::jsonb, $2::int8))",
                       2, params, NULL, NULL);
    free(jobs);
    return rc;
}
